//! Integration tests of the catalog against the real test stack (one binary:
//! the modules below link once). Each test gets its own database.

mod contract_pg;
mod grpc_api;
mod http_api;
mod listing;
mod outbox;
mod seed;
mod support;
