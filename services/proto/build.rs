//! Compiles the protobuf contracts under `proto/` with protox (pure Rust, no
//! system `protoc`) and generates prost messages plus tonic clients and
//! servers. The encoded `FileDescriptorSet` is written to
//! `$OUT_DIR/shopstream_descriptor.bin` for gRPC reflection.

use std::path::PathBuf;

use prost::Message;

/// Every file we compile. Keep in sync with `proto/` (a new service needs a
/// line here and a module in `src/lib.rs`).
const PROTOS: &[&str] = &[
    "proto/shopstream/common/v1/common.proto",
    "proto/shopstream/identity/v1/identity.proto",
    "proto/shopstream/catalog/v1/catalog.proto",
    "proto/shopstream/inventory/v1/inventory.proto",
    "proto/shopstream/orders/v1/orders.proto",
    "proto/shopstream/payments/v1/payments.proto",
    "proto/shopstream/media/v1/media.proto",
    "proto/shopstream/feed/v1/feed.proto",
    "proto/shopstream/search/v1/search.proto",
    "proto/shopstream/notifications/v1/notifications.proto",
    "proto/shopstream/analytics/v1/analytics.proto",
    "proto/shopstream/compliance/v1/compliance.proto",
    "proto/shopstream/dsar/v1/dsar.proto",
    "proto/shopstream/events/v1/events.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=build.rs");

    let fds = protox::compile(PROTOS, ["proto"])?;

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("shopstream_descriptor.bin"),
        fds.encode_to_vec(),
    )?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;

    Ok(())
}
