#!/usr/bin/env bash
# Install what building and running Shopstream natively needs, idempotently.
# Debian/Ubuntu packages via apt (only the missing ones), then mdbook into
# ~/.cache/shopstream; tansu and the Temporal CLI are installed by
# `shopstream doctor --fix` into the same cache, because they need no root.
set -euo pipefail

need_pkgs=()
for pkg in postgresql redis-server sqlite3 protobuf-compiler libprotobuf-dev mold python3-venv build-essential pkg-config curl ffmpeg iproute2 nftables tmux; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_pkgs+=("$pkg")
done
# libprotobuf-dev: the well-known .proto files (field_mask.proto, ...) that the
# Temporal SDK build imports; --no-install-recommends leaves it out otherwise.
# postgresql pulls the versioned server package; its binaries live off PATH.
# ffmpeg: media's clip steps (and the tests and benchmark that make clips).
# tmux: the test that drives `shopstream dash` in a real terminal.
# iproute2, nftables: `packet-loss` chaos (a private network namespace whose
# kernel drops real packets; services/runtime/src/lossy_path.rs).
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

# mdbook builds the book (scripts/test.sh runs `mdbook build book`). Like
# tansu it needs no root, so it goes into the same cache
# ($SHOPSTREAM_CACHE_DIR, else $XDG_CACHE_HOME/shopstream, else
# ~/.cache/shopstream), built once from the crate registry with the lockfile
# it was released with; only the HTML renderer and search (no local server,
# no file watcher).
MDBOOK_VERSION=0.5.4
cache_dir="${SHOPSTREAM_CACHE_DIR:-${XDG_CACHE_HOME:+$XDG_CACHE_HOME/shopstream}}"
cache_dir="${cache_dir:-$HOME/.cache/shopstream}"
if "$cache_dir/bin/mdbook" --version 2>/dev/null | grep -qx "mdbook v$MDBOOK_VERSION"; then
  echo "bootstrap: mdbook $MDBOOK_VERSION present"
else
  echo "bootstrap: installing mdbook $MDBOOK_VERSION into $cache_dir (a cargo build, about 2 minutes once)"
  cargo install mdbook --version "$MDBOOK_VERSION" --locked --no-default-features --features search \
    --root "$cache_dir" --quiet
fi
