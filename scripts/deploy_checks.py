"""The Python half of scripts/validate-deploy.sh: one subcommand a check.

The compose and Terraform checks ask the same questions of the code (which
services there are, which crates each is built from, which SHOPSTREAM_*
variables it reads), so the answers live here once and both checks use them.

Each check prints its problems, one a line, then optionally a `NOTES ...`
line the shell script puts in its PASS/FAIL line, and exits 1 if there were
problems. Run with the deploy venv's python (yaml and hcl2 come with checkov):

    python scripts/deploy_checks.py dockerfile
    python scripts/deploy_checks.py compose-wiring MINIMAL.json FULL.json
    python scripts/deploy_checks.py observability
    python scripts/deploy_checks.py terraform-env COMPOSE-ROUTES.json
    python scripts/deploy_checks.py checkov-summary CHECKOV.json
"""
import functools
import json
import re
import sys
from pathlib import Path

# This file sits in scripts/, one below the workspace root it checks.
root = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- what the code says

@functools.cache
def config_rs():
    return (root / "services/platform/src/config.rs").read_text()


# Services of SERVICE_NAMES that only the native runtime runs, and why.
NATIVE_ONLY = {
    "otel": "the native runtime's trace collector; compose sends traces to Jaeger "
    "(full profile) and AWS to the ADOT collector (ADR 0015)",
}


@functools.cache
def all_service_names():
    """SERVICE_NAMES, in order: service i listens on 18080 + i."""
    return re.findall(r'"([a-z-]+)"', re.search(r"pub const SERVICE_NAMES: &\[&str\] = &\[(.*?)\];", config_rs(), re.S).group(1))


@functools.cache
def service_names():
    """The services compose and Terraform deploy: SERVICE_NAMES without the
    native-only ones. Those come last, so every other service keeps its index."""
    names = all_service_names()
    deployed = [n for n in names if n not in NATIVE_ONLY]
    assert deployed == names[: len(deployed)], f"native-only services must come last in SERVICE_NAMES: {names}"
    return deployed


@functools.cache
def participants():
    """The services compliance reaches over gRPC, one SHOPSTREAM_<P>_GRPC_URL each."""
    return re.findall(r'"([a-z-]+)"', re.search(r"pub const PARTICIPANTS: &\[&str\] = &\[(.*?)\];",
                      (root / "services/compliance/src/lib.rs").read_text(), re.S).group(1))


def crate_dir(name):
    return root / "services" / name


def literal_vars(paths):
    out = set()
    for p in paths:
        for f in p.rglob("*.rs"):
            out |= set(re.findall(r'"(SHOPSTREAM_[A-Z0-9_]+)"', f.read_text()))
    return out


def deps_of(name, seen=None):
    """The workspace crates (as source dirs) a service's code is made of."""
    seen = seen or set()
    d = crate_dir(name)
    if name in seen or not (d / "Cargo.toml").exists():
        return seen
    seen.add(name)
    for dep in re.findall(r"^shopstream-([a-z-]+)\s*=", (d / "Cargo.toml").read_text(), re.M):
        deps_of(dep, seen)
    return seen


def upper(n):
    return n.upper().replace("-", "_")


def reads(name):
    """Every SHOPSTREAM_* variable a service's code can read, so that a deployment
    setting any other one (a typo, a renamed variable) is caught."""
    crates = deps_of(name) | {"platform"}
    vars_ = literal_vars([crate_dir(c) / "src" for c in crates])
    # These names are built with format! (platform's config.rs, compliance's
    # participant URLs), so no string literal spells them out.
    vars_ |= {f"SHOPSTREAM_{upper(name)}_HTTP_ADDR", f"SHOPSTREAM_{upper(name)}_GRPC_ADDR"}
    if name == "compliance":
        vars_ |= {f"SHOPSTREAM_{upper(p)}_GRPC_URL" for p in participants()}
    return vars_


# ---------------------------------------------------------------- Dockerfile

def dockerfile():
    text = open(f"{root}/Dockerfile").read()
    lines = [l.strip() for l in text.replace("\\\n", " ").splitlines() if l.strip() and not l.strip().startswith("#")]
    problems = []
    args = {}
    for l in lines:
        m = re.match(r"ARG\s+(\w+)=(\S+)", l)
        if m:
            args[m.group(1)] = m.group(2)
    froms = [l for l in lines if l.upper().startswith("FROM ")]
    stages = set()
    for f in froms:
        ref = f.split()[1]
        ref = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), ref)
        if ref in stages:
            continue
        if ":" not in ref or ref.endswith(":latest") or "${" in ref:
            problems.append(f"base image not pinned by tag: {f}")
        if " AS " in f.upper():
            stages.add(f.split()[-1])
    if len(froms) < 2:
        problems.append("not a multi-stage build")
    users = [l.split()[1] for l in lines if l.upper().startswith("USER ")]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append("the final stage does not switch to a non-root USER")
    for l in lines:
        if l.upper().startswith("ADD ") and re.search(r"https?://", l):
            problems.append(f"ADD of a URL: {l}")
    if 'ENTRYPOINT ["shopstream"]' not in lines:
        problems.append('no ENTRYPOINT ["shopstream"]')
    if not re.search(r"cargo build --release --locked --package shopstream", text):
        problems.append("no release build of the shopstream package")
    if "ffmpeg" not in text:
        problems.append("ffmpeg (media) is not installed in the runtime image")
    ignore = open(f"{root}/.dockerignore").read().split()
    for must in ("target/", ".git", ".shopstream/"):
        if must not in ignore:
            problems.append(f".dockerignore does not exclude {must}")
    print("\n".join(problems))
    return 1 if problems else 0


# ---------------------------------------------------------------- compose

def compose_wiring(minimal_json, full_json):
    """The services' own wiring, in both profiles: the variables, the ports, the
    links of the native runtime, health checks, dependencies, memory limits.
    Leaves compose-routes.json beside minimal_json for terraform-env."""
    problems, notes = [], []

    names = service_names()
    base, grpc_offset = 18080, int(re.search(r"GRPC_PORT_OFFSET: u16 = (\d+)", config_rs()).group(1))
    http_port = {n: base + i for i, n in enumerate(names)}
    grpc_port = {n: base + grpc_offset + i for i, n in enumerate(names)}

    # The native runtime's links (services/runtime/src/links.rs ROUTES).
    links = (root / "services/runtime/src/links.rs").read_text()
    table = links[links.index("pub const ROUTES"):links.index("impl Route")]
    def kind(camel):
        return re.sub(r"(?<!^)([A-Z])", r"-\1", camel).lower()
    routes = []
    for m in re.finditer(r'service\((\w+), (\w+), "(SHOPSTREAM_\w+)", (Http|Grpc|Smtp)\)', table):
        routes.append((kind(m.group(1)), kind(m.group(2)), m.group(3), m.group(4), ""))
    for m in re.finditer(r'Route \{\s*from: (\w+),\s*to: (\w+),\s*var: "(SHOPSTREAM_\w+)",\s*listener: (\w+),\s*path: "([^"]*)"', table):
        routes.append((kind(m.group(1)), kind(m.group(2)), m.group(3), m.group(4), m.group(5)))
    backend_var = {"postgres": "SHOPSTREAM_POSTGRES_URL", "redis": "SHOPSTREAM_REDIS_URL", "kafka": "SHOPSTREAM_KAFKA_BROKERS",
                   "temporal": "SHOPSTREAM_TEMPORAL_URL", "s3": "SHOPSTREAM_S3_ENDPOINT"}
    backends = [(kind(a), kind(b)) for a, b in re.findall(r"backend\((\w+), (\w+)\)", table)]
    if len(routes) < 20 or len(backends) < 20:
        problems.append(f"could not read links.rs ROUTES ({len(routes)} service routes, {len(backends)} backend routes)")

    def expected(to, listener, path, host):
        if listener == "Http":
            return f"http://{host}:{http_port[to]}{path}"
        if listener == "Grpc":
            return f"http://{host}:{grpc_port[to]}"
        return f"{host}:{grpc_port[to]}"

    compose_host = {"postgres": "postgres", "redis": "redis", "kafka": "kafka", "temporal": "temporal", "s3": "minio"}

    def mem_bytes(v):
        if isinstance(v, (int, float)):
            return int(v)
        m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgKMG]?)[bB]?", str(v).strip())
        mult = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[m.group(2).lower()]
        return int(float(m.group(1)) * mult)

    route_vars_by_service = {}
    for profile, path in (("minimal", minimal_json), ("full", full_json)):
        try:
            cfg = json.load(open(path))
        except Exception as e:
            problems.append(f"{profile}: no compose config to check ({e})")
            continue
        services = cfg["services"]
        ours = {}
        total, oneshot = 0, 0
        for sname, s in services.items():
            limit = (((s.get("deploy") or {}).get("resources") or {}).get("limits") or {}).get("memory") or s.get("mem_limit")
            if not limit:
                problems.append(f"{profile}: {sname} has no memory limit")
            else:
                if s.get("restart") == "no":
                    oneshot += mem_bytes(limit)
                else:
                    total += mem_bytes(limit)
            if s.get("restart") != "no" and not s.get("healthcheck"):
                problems.append(f"{profile}: {sname} has no health check")
            for dep, d in (s.get("depends_on") or {}).items():
                cond = d.get("condition")
                if dep not in services:
                    if d.get("required", True):
                        problems.append(f"{profile}: {sname} depends on {dep}, which is not in the profile")
                    continue
                if cond == "service_healthy" and not services[dep].get("healthcheck"):
                    problems.append(f"{profile}: {sname} waits for {dep} to be healthy, but {dep} has no health check")
                if cond not in ("service_healthy", "service_completed_successfully"):
                    problems.append(f"{profile}: {sname} depends on {dep} without a health condition ({cond})")
            cmd = s.get("command") or []
            if cmd[:1] == ["serve"]:
                ours[sname] = s
        missing = set(names) - set(ours)
        if missing:
            problems.append(f"{profile}: services missing: {sorted(missing)}")
        for must in ("postgres", "redis", "kafka", "temporal", "minio"):
            if must not in services:
                problems.append(f"{profile}: {must} missing")
        extra = {"opensearch", "scylla", "jaeger", "prometheus", "grafana"}
        if profile == "minimal" and extra & set(services):
            problems.append(f"minimal runs {sorted(extra & set(services))}, which belong to full only")
        if profile == "full" and extra - set(services):
            problems.append(f"full lacks {sorted(extra - set(services))}")
        for sname, s in ours.items():
            name = s["command"][1]
            if name != sname:
                problems.append(f"{profile}: compose service {sname} runs `serve {name}`: the DNS name must be the service name")
                continue
            env = s.get("environment") or {}
            allowed = reads(name)
            for var in env:
                if var.startswith("SHOPSTREAM_") and var not in allowed:
                    problems.append(f"{profile}: {name} sets {var}, which its code never reads")
            u = upper(name)
            want_http = f"0.0.0.0:{http_port[name]}"
            second = "SHOPSTREAM_MAIL_SIM_SMTP_ADDR" if name == "mail-sim" else f"SHOPSTREAM_{u}_GRPC_ADDR"
            want_grpc = f"0.0.0.0:{grpc_port[name]}"
            if env.get(f"SHOPSTREAM_{u}_HTTP_ADDR") != want_http:
                problems.append(f"{profile}: {name} HTTP address is {env.get(f'SHOPSTREAM_{u}_HTTP_ADDR')}, the native scheme says {want_http}")
            if env.get(second) != want_grpc:
                problems.append(f"{profile}: {name} {second} is {env.get(second)}, the native scheme says {want_grpc}")
            test = " ".join((s.get("healthcheck") or {}).get("test") or [])
            if f"127.0.0.1:{http_port[name]}/readyz" not in test:
                problems.append(f"{profile}: {name}'s health check does not GET /readyz on its HTTP port {http_port[name]}")
            for frm, to, var, listener, p in routes:
                if frm != name:
                    continue
                want = expected(to, listener, p, to)
                if env.get(var) != want:
                    problems.append(f"{profile}: {name} should reach {to} with {var}={want} (links.rs), has {env.get(var)!r}")
            for frm, to in backends:
                if frm != name:
                    continue
                var = backend_var[to]
                if compose_host[to] not in str(env.get(var, "")):
                    problems.append(f"{profile}: {name} should reach {to} via {var} at {compose_host[to]}, has {env.get(var)!r}")
            route_vars_by_service[name] = {v: env[v] for v in env if any(r[0] == name and r[2] == v for r in routes)}
        # Adapters the profile promises.
        if profile == "full" and "search" in ours and "feed" in ours:
            e = ours["search"]["environment"]
            if e.get("SHOPSTREAM_SEARCH_BACKEND") != "opensearch" or "opensearch:9200" not in e.get("SHOPSTREAM_OPENSEARCH_URL", ""):
                problems.append("full: search does not use the OpenSearch adapter")
            if "scylla:" not in (ours["feed"]["environment"].get("SHOPSTREAM_SCYLLA_URL") or ""):
                problems.append("full: feed does not use the Scylla timeline")
            if not (ours["gateway"]["environment"].get("SHOPSTREAM_OTLP_ENDPOINT") or "").startswith("http://jaeger:"):
                problems.append("full: traces are not exported to Jaeger")
        if profile == "minimal" and "search" in ours:
            if ours["search"]["environment"].get("SHOPSTREAM_SEARCH_BACKEND") != "tantivy":
                problems.append("minimal: search should use its Tantivy index")
            if ours["feed"]["environment"].get("SHOPSTREAM_SCYLLA_URL"):
                problems.append("minimal: feed should use the Postgres timeline")
        mib = total // 1024**2
        notes.append(f"{profile}: {len(services)} containers, memory limits {mib} MiB ({mib/1024:.2f} GiB) long-running"
                     + (f" + {oneshot // 1024**2} MiB one-shot" if oneshot else ""))
        if profile == "minimal" and total > 2 * 1024**3:
            problems.append(f"minimal: memory limits sum to {mib} MiB, over the 2 GiB target")

    json.dump(route_vars_by_service, open(Path(minimal_json).with_name("compose-routes.json"), "w"))
    print("\n".join(problems))
    print("NOTES " + "; ".join(notes))
    return 1 if problems else 0


def observability():
    """Prometheus targets and Grafana dashboards name real ports and real metrics."""
    import yaml
    problems = []
    names = service_names()
    prom = yaml.safe_load((root / "compose/prometheus/prometheus.yml").read_text())
    targets = {t for job in prom["scrape_configs"] for sc in job.get("static_configs", []) for t in sc["targets"]}
    for i, n in enumerate(names):
        if f"{n}:{18080 + i}" not in targets:
            problems.append(f"prometheus does not scrape {n}:{18080 + i}")
    registered = set()
    for f in (root / "services").rglob("*.rs"):
        registered |= set(re.findall(r'\.register\(\s*"([a-z_0-9]+)"', f.read_text()))
    known = set()
    for r in registered:
        known |= {f"shopstream_{r}{s}" for s in ("", "_total", "_bucket", "_sum", "_count", "_created")}
    used = 0
    for d in sorted((root / "compose/grafana/dashboards").glob("*.json")):
        dash = json.loads(d.read_text())
        for p in dash["panels"]:
            for t in p.get("targets", []):
                for m in re.findall(r"\bshopstream_[a-z_0-9]+", t["expr"]):
                    used += 1
                    if m not in known:
                        problems.append(f"{d.name}: panel {p['title']!r} uses {m}, which no service registers")
    for y in (root / "compose/grafana/provisioning").rglob("*.yaml"):
        yaml.safe_load(y.read_text())
    print("\n".join(problems))
    print(f"NOTES {len(targets)} scrape targets, {used} metric references in {len(list((root / 'compose/grafana/dashboards').glob('*.json')))} dashboards")
    return 1 if problems else 0


# ---------------------------------------------------------------- Terraform

def terraform_env(compose_routes_json):
    """The ECS services get the variables compose gives them (same names, peers
    at their Cloud Map names), and only variables the code reads."""
    import hcl2
    problems = []
    with open(root / "infra/30-compute/services.tf") as f:
        doc = hcl2.load(f)
    def one(v):
        # python-hcl2 wraps attribute values in one-element lists (older releases).
        return v[0] if isinstance(v, list) and len(v) == 1 and isinstance(v[0], dict) else v
    loc = {}
    for block in doc.get("locals", []):
        loc.update({k: one(v) for k, v in block.items()})
    services, common_env, common_secrets = loc["services"], loc["common_env"], loc["common_secrets"]
    compose_routes = json.load(open(compose_routes_json))

    names = service_names()
    if set(services) != set(names):
        problems.append(f"services.tf has {sorted(services)}, SERVICE_NAMES has {sorted(names)}")
    for name, s in services.items():
        if s["index"] != names.index(name):
            problems.append(f"{name}: index {s['index']} but it is service {names.index(name)} in SERVICE_NAMES")
        env = dict(common_env, **s["env"])
        sec = dict(common_secrets, **s["secrets"])
        allowed = reads(name)
        for var in list(env) + list(sec):
            if var.startswith("SHOPSTREAM_") and var not in allowed:
                problems.append(f"{name} sets {var}, which its code never reads")
        for var, want in compose_routes.get(name, {}).items():
            got = env.get(var)
            norm = (got or "").replace(".${local.ns}", "")
            if norm != want:
                problems.append(f"{name}: {var} is {got!r} on AWS but {want!r} in compose")
        for var in ("SHOPSTREAM_POSTGRES_URL", "SHOPSTREAM_REDIS_URL", "SHOPSTREAM_KAFKA_BROKERS", "SHOPSTREAM_TEMPORAL_URL", "SHOPSTREAM_S3_ENDPOINT"):
            if var not in env and var not in sec:
                problems.append(f"{name}: {var} is not set")
    print("\n".join(problems))
    return 1 if problems else 0


def checkov_summary(checkov_json):
    try:
        data = json.load(open(checkov_json))
    except Exception as e:
        print(f"no Checkov report: {e}")
        return 1
    if isinstance(data, dict):
        data = [data]
    p = f = s = 0
    for r in data:
        summ = r.get("summary", {})
        p += summ.get("passed", 0); f += summ.get("failed", 0); s += summ.get("skipped", 0)
        for c in r.get("results", {}).get("failed_checks", []):
            print(f"{c['check_id']} {c['resource']} {c['file_path']}:{c['file_line_range'][0]} {c['check_name']}")
    print(f"NOTES {p} passed, {f} failed, {s} skipped")
    return 1 if f or p == 0 else 0


CHECKS = {
    "dockerfile": dockerfile,
    "compose-wiring": compose_wiring,
    "observability": observability,
    "terraform-env": terraform_env,
    "checkov-summary": checkov_summary,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in CHECKS:
        sys.exit(f"usage: {sys.argv[0]} {{{'|'.join(CHECKS)}}} [ARGS...]")
    sys.exit(CHECKS[sys.argv[1]](*sys.argv[2:]))
