//! Shared plumbing for every Shopstream service: typed configuration, telemetry,
//! HTTP and gRPC server helpers, Postgres, the event bus, Redis, S3, Temporal,
//! health and metrics, and the `Clock`/`IdGen` ports.
//!
//! Each module is small and usable on its own. Services wire them together in
//! their `run(config)` entry point; nothing here holds business rules.

pub mod auth;
pub mod cache;
pub mod clock;
pub mod config;
pub mod db;
pub mod error;
pub mod events;
pub mod faults;
pub mod grpc;
pub mod health;
pub mod http;
pub mod idempotency;
pub mod ids;
pub mod metrics;
pub mod object_store;
pub mod outbox;
pub mod product_events;
pub mod realtime;
pub mod service;
pub mod shutdown;
pub mod stripe_signature;
pub mod telemetry;
pub mod temporal;

pub use error::{ErrorCode, FieldError, Problem};
