//! Integration tests of the platform against real backends from the test kit
//! (one binary: the modules below link once).

mod events_kafka;
mod objects;
mod postgres;
mod redis_cache;
mod temporal_workflow;
mod trace_propagation;
