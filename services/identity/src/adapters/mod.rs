//! Real and in-memory implementations of identity's ports, plus its crypto.

#[cfg(any(test, feature = "contract-tests"))]
pub mod contract;
pub mod keys;
pub mod memory;
pub mod passwords;
pub mod postgres;
pub mod ratelimit;
