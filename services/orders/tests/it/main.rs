//! Orders against real Postgres, Kafka and Temporal (the shared test stack):
//! the checkout workflow drives the saga through scripted steps.

mod dsar;
mod saga;
mod store;
