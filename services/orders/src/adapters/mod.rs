//! Adapters of the orders ports; `memory` and `postgres` both pass `contract`.

#[cfg(any(test, feature = "contract-tests"))]
pub mod contract;
pub mod grpc;
pub mod memory;
pub mod postgres;
