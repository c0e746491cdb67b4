//! The orders domain: no I/O, no async, no clock reads.

pub mod checkout;
pub mod listing;
pub mod order;
pub mod saga;
