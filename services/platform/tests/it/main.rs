//! Integration tests of the platform against real backends from the test kit
//! (one binary: the modules below link once).

mod consumer_stall;
mod dedupe_pg;
mod events_kafka;
mod grpc_server;
mod objects;
mod outbox;
mod postgres;
mod redis_cache;
mod service_kit;
mod temporal_workflow;
mod trace_propagation;
