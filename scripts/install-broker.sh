#!/usr/bin/env bash
# Install the Kafka-protocol broker (tansu) into Shopstream's cache if it is
# missing: the same command `shopstream doctor --fix` runs (a unit test in
# services/runtime/src/prereq.rs keeps the two equal). It is a release build
# of ~420 crates, the longest step of a fresh machine's setup, so the README's
# two scripts run it in the background while they build the workspace: the
# two builds share the cores where either alone would leave one idle (link
# steps, long single crates). Idempotent; output goes to the log given as $1.
set -euo pipefail
TANSU_VERSION=0.6.0
TANSU_FEATURES=libsql,dynostore
log="${1:-/dev/stdout}"
cache_dir="${SHOPSTREAM_CACHE_DIR:-${XDG_CACHE_HOME:+$XDG_CACHE_HOME/shopstream}}"
cache_dir="${cache_dir:-$HOME/.cache/shopstream}"
if [ -x "$cache_dir/bin/tansu" ] || command -v tansu >/dev/null; then
  echo "install-broker: tansu present" >>"$log"
  exit 0
fi
echo "install-broker: building tansu $TANSU_VERSION into $cache_dir" >>"$log"
started=$(date +%s)
cargo install tansu --version "$TANSU_VERSION" --locked --features "$TANSU_FEATURES" \
  --root "$cache_dir" >>"$log" 2>&1
echo "install-broker: tansu built in $(( $(date +%s) - started ))s" >>"$log"
