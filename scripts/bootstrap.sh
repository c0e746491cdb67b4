#!/usr/bin/env bash
# Install what building and running Shopstream natively needs, idempotently.
# Debian/Ubuntu packages via apt (only the missing ones), then nothing else:
# tansu and the Temporal CLI are installed by `shopstream doctor --fix` into
# ~/.cache/shopstream, because they need no root.
set -euo pipefail

need_pkgs=()
for pkg in postgresql redis-server sqlite3 protobuf-compiler libprotobuf-dev mold python3-venv build-essential pkg-config curl; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_pkgs+=("$pkg")
done
# libprotobuf-dev: the well-known .proto files (field_mask.proto, ...) that the
# Temporal SDK build imports; --no-install-recommends leaves it out otherwise.
# postgresql pulls the versioned server package; its binaries live off PATH.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null; then
  need_pkgs+=(postgresql)
fi

if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "bootstrap: installing ${need_pkgs[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  # The package may start its own cluster/server on the default ports; Shopstream
  # does not use them (it runs its own instances on other ports), so leave them be.
else
  echo "bootstrap: system packages present"
fi

if ! command -v cargo >/dev/null; then
  echo "bootstrap: cargo not found. Install Rust with rustup (https://rustup.rs), then re-run." >&2
  exit 3
fi
