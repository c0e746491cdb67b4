#!/usr/bin/env bash
# Boot Shopstream natively on a fresh Debian/Ubuntu machine and show it running.
# Installs what it needs (idempotently), builds the one binary, starts the
# infrastructure and the services, seeds the demo data, prints the status, and
# runs the headline lab: a checkout whose payment fails at capture, compensated
# by the saga (stock returned, payment voided, order cancelled with a reason).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh
echo "== build"
cargo build -p shopstream
bin=target/debug/shopstream
"$bin" doctor --fix
echo "== up"
"$bin" up
echo "== seed (admin account, 600 products, their pictures through the media pipeline; idempotent)"
"$bin" seed
echo "== status"
"$bin" status
echo "== headline lab: checkout-failure"
"$bin" lab run checkout-failure --no-boot
echo
echo "Gateway: http://127.0.0.1:18080  (API docs: http://127.0.0.1:18080/docs/)"
echo "Stop everything with: $bin down   (add --purge to delete all state)"
