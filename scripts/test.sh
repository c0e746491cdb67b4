#!/usr/bin/env bash
# The whole test suite on a fresh Debian/Ubuntu machine: installs what it needs
# (idempotently), builds, starts the shared test stack through the test kit,
# runs every test, and stops and removes the test stack at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
# Each step's header says how far into the run it starts, so a slow CI run
# shows where its time went.
step() { echo "== $1 (at $(( $(date +%s) - started ))s)"; }

scripts/bootstrap.sh
# CI builds once from a fresh clone, so incremental-compilation state would
# only take disk (it is kept per crate for the test build and again for
# clippy's); a CI run once ran out of space during clippy.
if [ -n "${CI:-}" ]; then
  export CARGO_INCREMENTAL=0
fi
step "build (tansu builds alongside it; its log: target/install-broker.log)"
mkdir -p target
scripts/install-broker.sh "$PWD/target/install-broker.log" &
broker_install=$!
# One build for everything below: the tests, and the binary they start, with
# the test-only features (the test kit, the adapters' contract suites) that
# the dev-dependencies switch on. `cargo build -p shopstream` would build the
# shipped feature set, and `cargo test` would then build most of it again.
cargo test --workspace --no-run
bin=target/debug/shopstream
wait "$broker_install" || echo "tansu's build failed (target/install-broker.log); doctor --fix tries again"
broker_install=""
step "prerequisites (installs tansu and temporal into the cache if missing)"
"$bin" doctor --fix

stack_dir="${SHOPSTREAM_TEST_STACK_DIR:-$PWD/target/test-stack}"
# The API fuzz pass boots a whole stack (services included) of its own, on
# ports no other stack uses, and removes it afterwards.
fuzz_dir="$PWD/target/api-fuzz-stack"
fuzz_env=(SHOPSTREAM_PG_PORT=24432 SHOPSTREAM_REDIS_PORT=24379 SHOPSTREAM_KAFKA_PORT=24092
  SHOPSTREAM_TEMPORAL_PORT=24233 SHOPSTREAM_TEMPORAL_HTTP_PORT=24243
  SHOPSTREAM_TEMPORAL_METRICS_PORT=24263 SHOPSTREAM_S3_PORT=24000
  SHOPSTREAM_SERVICES_PORT_BASE=24100)
fuzz_down() { env "${fuzz_env[@]}" "$bin" down --purge --state-dir "$fuzz_dir" >/dev/null 2>&1 || true; }
cleanup() {
  [ -z "${broker_install:-}" ] || kill "$broker_install" 2>/dev/null || true
  "$bin" down --purge --state-dir "$stack_dir" >/dev/null 2>&1 || true
  fuzz_down
}
trap cleanup EXIT
# Steps that failed, named again at the end so a failure is not lost in the log.
failed=()

step "tests"
set +e
# --show-output prints what passing tests measured (e.g. the Kafka contract rates);
# --no-fail-fast runs every crate's tests even after one fails, so one red
# crate does not hide another. The simulator's bug zoo runs here too (a unit
# test of shopstream-sim: every deliberately broken variant caught within
# 1,000 seeds), with no second build under the `bug-zoo` feature.
cargo test --workspace --no-fail-fast -- --show-output 2>&1 | tee target/test-output.log
status=${PIPESTATUS[0]}
[ "$status" -eq 0 ] || failed+=("cargo test")
# The gateway's OpenAPI document says what the gateway does: schemathesis
# over every operation with a customer's and an admin's token (see the script).
step "api fuzz"
fuzz_down
if env "${fuzz_env[@]}" "$bin" up --no-install --state-dir "$fuzz_dir" >/dev/null; then
  env "${fuzz_env[@]}" SHOPSTREAM_BIN="$bin" scripts/api-fuzz.sh --state-dir "$fuzz_dir"
  fuzz=$?
else
  echo "api fuzz: the stack did not come up (logs in $fuzz_dir/logs)"
  fuzz=1
fi
fuzz_down
[ "$fuzz" -eq 0 ] || failed+=("api fuzz")
[ "$status" -eq 0 ] && status=$fuzz
# The three-minute tour (`shopstream demo`, what scripts/demo.sh ends with),
# on a fresh stack of its own on the fuzz ports: every step must pass; it
# prints its own time against the 180 s budget. Seeded without pictures
# (the tour needs products, not their thumbnails).
step "demo"
if env "${fuzz_env[@]}" "$bin" up --no-install --state-dir "$fuzz_dir" >/dev/null &&
  env "${fuzz_env[@]}" "$bin" seed --images 0 --state-dir "$fuzz_dir" >/dev/null; then
  env "${fuzz_env[@]}" timeout 600 "$bin" demo --no-pause --pace fast --state-dir "$fuzz_dir" \
    >target/demo-output.log 2>&1
  demo=$?
  tail -n 25 target/demo-output.log
else
  echo "demo: the stack did not come up or could not be seeded (logs in $fuzz_dir/logs)"
  demo=1
fi
fuzz_down
[ "$demo" -eq 0 ] || failed+=("demo (its output: target/demo-output.log)")
[ "$status" -eq 0 ] && status=$demo
# The book builds, and every `shopstream` command the docs show names a
# subcommand and flags that the binary's --help lists.
step "book"
cache_dir="${SHOPSTREAM_CACHE_DIR:-${XDG_CACHE_HOME:+$XDG_CACHE_HOME/shopstream}}"
cache_dir="${cache_dir:-$HOME/.cache/shopstream}"
"$cache_dir/bin/mdbook" build book -d "$PWD/target/book" && scripts/check-book-commands.sh "$bin"
book=$?
[ "$book" -eq 0 ] || failed+=("book")
[ "$status" -eq 0 ] && status=$book
# The deployment files (Dockerfile, compose/, infra/), checked statically:
# nothing here has a Docker engine or a cloud account (see the script).
step "deployment files"
scripts/validate-deploy.sh
deploy=$?
[ "$deploy" -eq 0 ] || failed+=("deployment files")
[ "$status" -eq 0 ] && status=$deploy
# What a reviewer checks: formatting, and clippy with warnings denied (it
# reuses the check profile's artifacts, not the test build's).
step "cargo fmt --check"
cargo fmt --all --check
fmt=$?
[ "$fmt" -eq 0 ] || failed+=("cargo fmt --check (run: cargo fmt --all)")
[ "$status" -eq 0 ] && status=$fmt
step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
clippy=$?
[ "$clippy" -eq 0 ] || failed+=("cargo clippy -D warnings")
[ "$status" -eq 0 ] && status=$clippy
set -e
echo "== measured"
grep -hE '^(kafka contract|memory contract):' target/test-output.log || true
echo "disk: target $(du -sh target 2>/dev/null | cut -f1), $(df -h --output=avail . | tail -1 | tr -d ' ') free"
for what in "${failed[@]}"; do
  echo "FAILED: $what"
done
echo "== test suite finished in $(( $(date +%s) - started ))s (exit $status)"
exit "$status"
