//! Implementations of the inventory store.

pub mod contract;
pub mod memory;
pub mod postgres;
