#!/usr/bin/env bash
# Boot Shopstream natively on a fresh Debian/Ubuntu machine and show it running.
# Installs what it needs (idempotently), builds the one binary, starts the
# infrastructure and the services, seeds the demo data, prints the status, and
# ends with `shopstream demo`: a narrated tour (search freshness, a live order
# and its trace, a payment failure compensated, a refund, the simulator, a DSAR
# certificate, a flash sale) in at most three minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh
echo "== build (tansu, the broker, builds alongside it once; its log: target/install-broker.log)"
mkdir -p target
scripts/install-broker.sh "$PWD/target/install-broker.log" &
broker_install=$!
cargo build -p shopstream
bin=target/debug/shopstream
wait "$broker_install" || echo "tansu's build failed (target/install-broker.log); doctor --fix tries again"
"$bin" doctor --fix
echo "== up"
"$bin" up
echo "== seed (admin account, 600 products, their pictures through the media pipeline; idempotent)"
"$bin" seed
echo "== status"
"$bin" status
echo
echo "Gateway: http://127.0.0.1:18080  (API docs: http://127.0.0.1:18080/docs/)"
echo "Stop everything with: $bin down   (add --purge to delete all state)"
echo "== the tour (watch it live with \`$bin dash\` in a second terminal)"
"$bin" demo --no-pause
