#!/usr/bin/env bash
# Fuzz the gateway against its own OpenAPI document with schemathesis: every
# operation, all checks, twice (a customer's token, then an admin's). Fails on
# any server error or any answer the document does not describe, and when an
# operation was never reached (only 401/403/404 answers in both passes).
#
# Runs against a running stack: the one under $SHOPSTREAM_STATE_DIR (or
# --state-dir DIR) on the ports of the SHOPSTREAM_*_PORT variables, as the
# `shopstream` binary reads them. It writes: a fresh admin account (through
# `shopstream seed`, which also loads the demo catalog if missing), a fresh
# customer, and whatever the fuzzer creates, so point it at a throwaway stack.
#
# Environment: SHOPSTREAM_BIN (default target/debug/shopstream),
# API_FUZZ_EXAMPLES (cases per operation and phase, default 8),
# API_FUZZ_SEED (default 1), API_FUZZ_REPORT_DIR (default target/api-fuzz;
# each pass's output and its requests as HAR land there). What the document
# cannot state is listed, rule by rule, in scripts/api-fuzz.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)

SCHEMATHESIS_VERSION=4.32.5
bin="${SHOPSTREAM_BIN:-target/debug/shopstream}"
examples="${API_FUZZ_EXAMPLES:-8}"
seed="${API_FUZZ_SEED:-1}"
report_dir="${API_FUZZ_REPORT_DIR:-target/api-fuzz}"
if [ "${1:-}" = "--state-dir" ] && [ -n "${2:-}" ]; then
  export SHOPSTREAM_STATE_DIR="$2"
fi
gateway="http://127.0.0.1:${SHOPSTREAM_SERVICES_PORT_BASE:-18080}"

# schemathesis, pinned, in a venv of its own in the tool cache (where
# `shopstream doctor --fix` puts tansu and temporal), installed once.
cache="${SHOPSTREAM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/shopstream}"
venv="$cache/schemathesis-venv"
st="$venv/bin/schemathesis"
if ! "$st" --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION"; then
  echo "api-fuzz: installing schemathesis $SCHEMATHESIS_VERSION into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
py="$venv/bin/python"

if ! curl -fsS -o /dev/null --max-time 5 "$gateway/readyz"; then
  echo "api-fuzz: no ready gateway at $gateway (start the stack with \`shopstream up\`)" >&2
  exit 2
fi

# Two callers. Unique e-mails, so a re-run against the same stack works.
run_id="$(date +%s)-$$"
admin_email="api-fuzz-admin-$run_id@shopstream.local"
customer_email="api-fuzz-$run_id@example.com"
customer_password="correct horse battery staple $run_id"
admin_password=$("$bin" seed --admin-email "$admin_email" --images 0 --json |
  "$py" -c 'import json,sys; print(json.load(sys.stdin)["admin_password"] or "")')
if [ -z "$admin_password" ]; then
  echo "api-fuzz: seed did not create $admin_email" >&2
  exit 1
fi
json_body() { "$py" -c 'import json,sys; print(json.dumps({"email": sys.argv[1], "password": sys.argv[2]}))' "$1" "$2"; }
token() {
  curl -fsS --max-time 10 -X POST "$gateway/auth/login" -H 'content-type: application/json' \
    -d "$(json_body "$1" "$2")" | "$py" -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}
curl -fsS --max-time 10 -o /dev/null -X POST "$gateway/auth/signup" -H 'content-type: application/json' \
  -d "$(json_body "$customer_email" "$customer_password")"
customer_token=$(token "$customer_email" "$customer_password")
API_FUZZ_CUSTOMER_ID=$(curl -fsS --max-time 10 "$gateway/me" -H "authorization: Bearer $customer_token" |
  "$py" -c 'import json,sys; print(json.load(sys.stdin)["id"])')
export API_FUZZ_CUSTOMER_ID
admin_token=$(token "$admin_email" "$admin_password")

# One real order of the customer, for the operations that read an order.
order_body=$(curl -fsS --max-time 10 "$gateway/products?limit=1" | "$py" -c '
import json, sys
p = json.load(sys.stdin)["items"][0]
print(json.dumps({"items": [{"product_id": p["id"], "sku_id": p["skus"][0]["id"], "quantity": 1}],
                  "payment_method": "pm_card_visa"}))')
API_FUZZ_ORDER_ID=$(curl -fsS --max-time 10 -X POST "$gateway/orders" -H 'content-type: application/json' \
  -H "authorization: Bearer $customer_token" -H "idempotency-key: api-fuzz-$run_id" -d "$order_body" |
  "$py" -c 'import json,sys; print(json.load(sys.stdin)["order_id"])')
export API_FUZZ_ORDER_ID

# One declared upload of the customer (not uploaded: it stays
# awaiting_upload), for the operations that read or block an asset.
API_FUZZ_ASSET_ID=$(curl -fsS --max-time 10 -X POST "$gateway/media/uploads" -H 'content-type: application/json' \
  -H "authorization: Bearer $customer_token" \
  -d '{"kind": "image", "content_type": "image/jpeg", "size_bytes": 1000}' |
  "$py" -c 'import json,sys; print(json.load(sys.stdin)["asset"]["asset_id"])')
export API_FUZZ_ASSET_ID

# One DSAR (an export of the customer), for the operation that reads one.
API_FUZZ_DSAR_ID=$(curl -fsS --max-time 10 -X POST "$gateway/admin/dsar" -H 'content-type: application/json' \
  -H "authorization: Bearer $admin_token" \
  -d "{\"subject\": \"$API_FUZZ_CUSTOMER_ID\", \"kind\": \"export\"}" |
  "$py" -c 'import json,sys; print(json.load(sys.stdin)["dsar_id"])')
export API_FUZZ_DSAR_ID

rm -rf "$report_dir"
mkdir -p "$report_dir"
status=0
for who in customer admin; do
  tok_var="${who}_token"
  echo "== api-fuzz: every operation with a $who token"
  # examples, coverage and fuzzing phases: the stateful phase needs links the
  # document does not declare. One worker: with two, Python 3.11 now and then
  # fails inside schemathesis ("AST constructor recursion depth mismatch").
  set +e
  "$st" --config-file scripts/api-fuzz.toml run "$gateway/openapi.json" \
    --checks all \
    --phases examples,coverage,fuzzing \
    --max-examples "$examples" \
    --seed "$seed" \
    --workers 1 \
    --request-timeout 10 \
    --generation-database none \
    --header "Authorization: Bearer ${!tok_var}" \
    --report har --report-har-path "$report_dir/$who.har" \
    --no-color 2>&1 | tee "$report_dir/$who.log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  set -e
done

# Which operations answered something other than 401/403/404 in either pass.
echo "== api-fuzz: operations reached"
if ! "$py" - "$gateway/openapi.json" scripts/api-fuzz.toml "$report_dir"/customer.har "$report_dir"/admin.har <<'EOF'; then
import json, re, sys, tomllib, urllib.parse, urllib.request

doc = json.load(urllib.request.urlopen(sys.argv[1], timeout=10))
# Operations the settings switch off (streams the fuzzer cannot read).
with open(sys.argv[2], "rb") as f:
    disabled = {o["include-name"] for o in tomllib.load(f).get("operations", [])
                if o.get("enabled") is False}
ops = []  # (method, path template, regex); literal paths win over templated ones
for path, item in doc["paths"].items():
    rx = re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path)) + "$")
    for method in item:
        if method in ("get", "put", "post", "delete", "patch", "head", "options"):
            if f"{method.upper()} {path}" not in disabled:
                ops.append((method.upper(), path, rx))
ops.sort(key=lambda o: o[1].count("{"))
reached = {f"{m} {p}": set() for m, p, _ in ops}
for har in sys.argv[3:]:
    for e in json.load(open(har))["log"]["entries"]:
        method = e["request"]["method"]
        path = urllib.parse.unquote(urllib.parse.urlsplit(e["request"]["url"]).path)
        for m, p, rx in ops:
            if m == method and rx.match(path):
                reached[f"{m} {p}"].add(e["response"]["status"])
                break
missed = []
for op, statuses in reached.items():
    useful = sorted(s for s in statuses if s not in (0, 401, 403, 404))
    print(f"  {op:<40} {', '.join(map(str, useful)) or 'NOT REACHED (' + ', '.join(map(str, sorted(statuses))) + ')'}")
    if not useful:
        missed.append(op)
print(f"{len(reached) - len(missed)} of {len(reached)} operations reached with an answer other than 401/403/404")
sys.exit(1 if missed else 0)
EOF
  status=1
fi
echo "== api-fuzz finished in $(( $(date +%s) - started ))s (exit $status)"
exit "$status"
