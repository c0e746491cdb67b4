//! CDC against the real test stack: catalog outbox writes stream to Kafka in
//! commit order with the Debezium-style envelope and the writer's trace, a
//! crash mid-stream loses nothing, lag metrics exist, and commit→Kafka
//! latency is measured. One binary; each test has its own catalog database,
//! slot, topic and cdc database.

mod rows;
mod streaming;
mod support;
