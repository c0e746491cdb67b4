//! Wire translation: gRPC `SearchService.Query` and the HTTP debug endpoint.

pub mod grpc;
pub mod http;
