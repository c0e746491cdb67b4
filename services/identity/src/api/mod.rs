//! Wire translations: REST (`http`) and gRPC (`grpc`).

pub mod grpc;
pub mod http;
