#!/usr/bin/env bash
# The whole test suite on a fresh Debian/Ubuntu machine: installs what it needs
# (idempotently), builds, starts the shared test stack through the test kit,
# runs every test, and stops and removes the test stack at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)

scripts/bootstrap.sh
echo "== build"
cargo build -p shopstream
bin=target/debug/shopstream
echo "== prerequisites (installs tansu and temporal into the cache if missing)"
"$bin" doctor --fix

stack_dir="${SHOPSTREAM_TEST_STACK_DIR:-$PWD/target/test-stack}"
cleanup() { "$bin" down --purge --state-dir "$stack_dir" >/dev/null 2>&1 || true; }
trap cleanup EXIT

echo "== tests"
set +e
# --show-output prints what passing tests measured (e.g. the Kafka contract rates)
cargo test --workspace -- --show-output 2>&1 | tee target/test-output.log
status=${PIPESTATUS[0]}
# The simulator's bug zoo (a cargo feature): every deliberately broken variant
# must be caught within 1,000 seeds.
echo "== simulation bug zoo"
cargo test -p shopstream-sim --features bug-zoo --test it every_zoo -- --nocapture 2>&1 | tee -a target/test-output.log
zoo=${PIPESTATUS[0]}
[ "$status" -eq 0 ] && status=$zoo
# The book builds, and every `shopstream` command the docs show names a
# subcommand and flags that the binary's --help lists.
echo "== book"
cache_dir="${SHOPSTREAM_CACHE_DIR:-${XDG_CACHE_HOME:+$XDG_CACHE_HOME/shopstream}}"
cache_dir="${cache_dir:-$HOME/.cache/shopstream}"
"$cache_dir/bin/mdbook" build book -d "$PWD/target/book" && scripts/check-book-commands.sh "$bin"
book=$?
[ "$status" -eq 0 ] && status=$book
set -e
echo "== measured"
grep -hE '^(kafka contract|memory contract):' target/test-output.log || true
echo "== test suite finished in $(( $(date +%s) - started ))s (exit $status)"
exit "$status"
