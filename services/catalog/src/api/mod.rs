//! Thin translation between the wire and the use cases: JSON over HTTP and
//! protobuf over gRPC.

pub mod grpc;
pub mod http;
