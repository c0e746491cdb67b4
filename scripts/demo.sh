#!/usr/bin/env bash
# Boot Shopstream natively on a fresh Debian/Ubuntu machine and show it running.
# Installs what it needs (idempotently), builds the one binary, starts the
# infrastructure and prints its status. Services and the headline lab join this
# script as they land; today it boots the infrastructure.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh
echo "== build"
cargo build -p shopstream
bin=target/debug/shopstream
"$bin" doctor --fix
echo "== up"
"$bin" up
echo "== status"
"$bin" status
echo
echo "Stop everything with: $bin down   (add --purge to delete all state)"
