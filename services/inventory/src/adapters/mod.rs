//! Implementations of the inventory store.

#[cfg(any(test, feature = "contract-tests"))]
pub mod contract;
pub mod memory;
pub mod postgres;
