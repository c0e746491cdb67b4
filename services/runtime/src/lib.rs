//! The native runtime: Shopstream's infrastructure from the host's own binaries,
//! no Docker. [`Stack`] starts PostgreSQL, Redis, the tansu Kafka-protocol
//! broker, the Temporal dev server and the embedded S3 server as detached
//! processes under one state directory, waits until each is ready, reports
//! their status and stops them again. The CLI's `up`/`down`/`status` and the
//! test kit are both thin layers over it. [`admin`] gets an admin account
//! through identity's operator gRPC call.

pub mod admin;
pub mod components;
pub mod containers;
pub mod docker;
pub mod fault_proxy;
pub mod links;
pub mod lossy_path;
pub mod otel;
pub mod prereq;
pub mod process;
pub mod s3_server;
pub mod stack;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

pub use components::Kind;
pub use stack::{ComponentStatus, Progress, RestartPolicy, RuntimeRecord, Stack, StackError};
