//! Adapters of the orders ports.

pub mod grpc;
pub mod postgres;
