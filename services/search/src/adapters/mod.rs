//! Adapters: the index backends (`tantivy`, `opensearch`), which both pass
//! `contract`, and the catalog over gRPC.

pub mod catalog_grpc;
#[cfg(any(test, feature = "contract-tests"))]
pub mod contract;
pub mod opensearch;
pub mod tantivy;
