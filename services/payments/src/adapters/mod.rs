//! Implementations of the ports: the payment store (Postgres, memory) and the
//! provider (Stripe through async-stripe).

#[cfg(any(test, feature = "contract-tests"))]
pub mod contract;
pub mod memory;
pub mod postgres;
pub mod stripe;
