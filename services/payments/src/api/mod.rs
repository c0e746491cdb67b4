//! Wire surfaces: gRPC `PaymentsService` and the HTTP webhook endpoint.

pub mod grpc;
pub mod http;
