#!/usr/bin/env bash
# The numbers issue 17's closing note asks for, on a booted stack:
#   1. `shopstream dash` at rest: its CPU (share of one core) and PSS;
#   2. the same while a flash-sale scenario runs;
#   3. the trace collector's PSS once it holds its limit of traces.
# Usage: scripts/measure-dash.sh [BIN] [SECONDS]   (BIN defaults to
# target/release/shopstream; the stack must be up and seeded, e.g.
# `BIN up && BIN seed`). The dash runs in a detached tmux session, so it has
# a real terminal (140x45) and redraws as it would for a user.
set -euo pipefail
bin="${1:-target/release/shopstream}"
window="${2:-30}"
otel_http="${SHOPSTREAM_OTEL_URL:-http://127.0.0.1:18095}"
socket="measure-dash-$$"
tck=$(getconf CLK_TCK)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
pss_mib() { awk '/^Pss:/ {printf "%.1f", $2 / 1024}' "/proc/$1/smaps_rollup"; }
# CPU share of one core over $window seconds, as a percentage.
cpu_pct() {
  local pid=$1 a b
  a=$(cpu_ticks "$pid")
  sleep "$window"
  b=$(cpu_ticks "$pid")
  awk -v a="$a" -v b="$b" -v t="$tck" -v w="$window" 'BEGIN {printf "%.2f", (b - a) / t / w * 100}'
}

tmux -L "$socket" new-session -d -x 140 -y 45 "$bin dash"
trap 'tmux -L "$socket" kill-server 2>/dev/null || true' EXIT
# Wait (at most 10 s) for the dash to run.
dash=""
for _ in $(seq 50); do
  dash=$(pgrep -f -n "^$bin dash$" || true)
  [ -n "$dash" ] && break
  sleep 0.2
done
[ -n "$dash" ] || { echo "the dash did not start" >&2; exit 1; }
echo "dash pid $dash ($bin), window ${window}s"

echo "1. at rest: dash CPU $(cpu_pct "$dash") % of a core, PSS $(pss_mib "$dash") MiB"

progress="${SHOPSTREAM_STATE_DIR:-.shopstream}/scenario-progress.json"
rm -f "$progress"
# Ten thousand buyers arriving 300 a second: about 33 s of load (each buyer
# makes one attempt, so --duration alone would not make it last).
"$bin" test --scenario flash-sale --users 10000 --rate 300 --json >/tmp/measure-dash-scenario.json 2>/dev/null &
scenario=$!
# Measure once the load runs: the scenario writes its progress file every
# second while Goose runs (at most 60 s for its buyers to be prepared).
for _ in $(seq 300); do
  [ -s "$progress" ] && break
  sleep 0.2
done
echo "2. flash sale: dash CPU $(cpu_pct "$dash") % of a core, PSS $(pss_mib "$dash") MiB"
wait "$scenario" || echo "   (the scenario's verdict was not a pass: /tmp/measure-dash-scenario.json)"
python3 - /tmp/measure-dash-scenario.json <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
h = r["headline"]
held = sum(i["pass"] for i in r["invariants"])
print("   the flash sale: %d attempts at %.0f/s, p99 %.0f ms; %d of %d invariants held"
      % (h["count"], h["rate_per_s"], h["p99_us"] / 1000, held, len(r["invariants"])))
PY

otel=$("$bin" status --json | python3 -c 'import json, sys; print(next(c["pid"] for c in json.load(sys.stdin)["components"] if c["name"] == "otel"))')
traces=$(curl -s --max-time 5 "$otel_http/metrics" | awk '/^shopstream_otel_traces[{ ]/ {print $NF}')
evicted=$(curl -s --max-time 5 "$otel_http/metrics" | awk '/^shopstream_otel_traces_evicted_total/ {s += $NF} END {print s + 0}')
echo "3. collector: $traces traces held, $evicted evicted, PSS $(pss_mib "$otel") MiB"
