# syntax=docker/dockerfile:1.7
#
# The one Shopstream image: the `shopstream` binary (package `shopstream` in
# cli/), release build. Every service is this image with another command:
#
#   docker run --rm shopstream:dev serve catalog
#
# Used by compose/compose.yaml (every service) and infra/ (every ECS service).
# Build from the repository root:  docker build -t shopstream:dev .
#
# Stages:
#   chef     the Rust toolchain plus what the build needs (protoc, the
#            well-known .proto files, a C toolchain for librdkafka and
#            aws-lc, mold because .cargo/config.toml links with it)
#   planner  `cargo chef prepare`: a recipe of the workspace's manifests
#   builder  `cargo chef cook` builds the dependencies alone (a layer that
#            changes only when Cargo.toml/Cargo.lock change), then the binary
#   runtime  Debian slim with ffmpeg (media's clip steps) and curl (health
#            checks), a non-root user, ENTRYPOINT ["shopstream"]
#
# Not built on the machines this repository is developed on (no Docker
# engine there); checked by scripts/validate-deploy.sh (hadolint and a
# checklist). See compose/README.md.

ARG RUST_IMAGE=rust:1.95-slim-trixie
ARG RUNTIME_IMAGE=debian:trixie-slim

FROM ${RUST_IMAGE} AS chef
# Same packages scripts/bootstrap.sh installs for a native build:
# protobuf-compiler + libprotobuf-dev (the Temporal SDK's build runs protoc and
# imports the well-known types), build-essential/pkg-config/cmake (bundled
# librdkafka, aws-lc-sys, zstd), zlib1g-dev (librdkafka's libz feature), mold
# (the linker .cargo/config.toml names for x86_64).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential pkg-config cmake protobuf-compiler libprotobuf-dev \
      zlib1g-dev mold perl ca-certificates \
 && rm -rf /var/lib/apt/lists/*
ARG CARGO_CHEF_VERSION=0.1.77
RUN cargo install cargo-chef --version "${CARGO_CHEF_VERSION}" --locked \
 && rm -rf "${CARGO_HOME:-/usr/local/cargo}/registry"
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
COPY .cargo .cargo
# Dependencies only: this layer is reused until a manifest or the lockfile changes.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    cargo chef cook --release --locked --package shopstream --bin shopstream --recipe-path recipe.json
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    cargo build --release --locked --package shopstream --bin shopstream \
 && install -D -m 0755 target/release/shopstream /out/shopstream

FROM ${RUNTIME_IMAGE} AS runtime
# ffmpeg: media's thumbnail/transcode steps for clips. curl: the health
# checks in compose/compose.yaml (GET /readyz on each service's HTTP port).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg curl ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# A fixed uid/gid so volumes and ECS task definitions can rely on it. The
# directories are the mount points compose uses for state (identity's signing
# keys, mail-sim's messages, the Tantivy index); a named volume mounted there
# starts with this ownership.
RUN groupadd --system --gid 10001 shopstream \
 && useradd --system --uid 10001 --gid shopstream --home-dir /var/lib/shopstream \
      --shell /usr/sbin/nologin shopstream \
 && install -d -o shopstream -g shopstream -m 0750 \
      /var/lib/shopstream /var/lib/shopstream/keys /var/lib/shopstream/mail-sim \
      /var/lib/shopstream/search /var/lib/shopstream/media
COPY --from=builder /out/shopstream /usr/local/bin/shopstream
USER 10001:10001
WORKDIR /var/lib/shopstream
ENV SHOPSTREAM_LOG_FORMAT=json
ENTRYPOINT ["shopstream"]
CMD ["--help"]
