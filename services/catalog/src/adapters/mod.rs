//! Backends of the [`crate::ports::ProductRepository`] port: Postgres for every
//! runtime, in-memory for unit tests and the simulator, and the [`contract`]
//! suite both pass.

#[cfg(any(test, feature = "contract-tests"))]
pub mod contract;
pub mod memory;
pub mod postgres;
