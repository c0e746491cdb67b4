//! The service kit stops a whole service when one part fails: a dead HTTP
//! listener takes the gRPC server down with it, and `run` returns the error.

use std::{os::fd::AsFd, time::Duration};

use shopstream_platform::{
    config::{Endpoints, Ports, ServiceConfig},
    service::{Listeners, Service, ServiceError},
};
use shopstream_proto::identity::v1::identity_service_server::IdentityServiceServer;
use tokio_util::sync::CancellationToken;

use crate::grpc_server::Identity;

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_http_listener_stops_grpc_and_run_returns_the_error() {
    let cfg = ServiceConfig::new("kit-it", Endpoints::native(Ports::TEST));
    let listeners = Listeners::ephemeral(true).await.unwrap();
    let grpc_addr = listeners.grpc_addr().unwrap();
    // A second handle on the HTTP listening socket, to break it from outside.
    let http_socket = socket2::Socket::from(listeners.http.as_fd().try_clone_to_owned().unwrap());
    let service = tokio::spawn(async move {
        // The kit's futures are not Send: run it on a thread of its own.
        tokio::task::spawn_blocking(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(
                    Service::new(&cfg)
                        .grpc(IdentityServiceServer::new(Identity))
                        .run(listeners, CancellationToken::new()),
                )
        })
        .await
        .unwrap()
    });

    // gRPC serves while HTTP is healthy.
    let grpc_url = format!("http://{grpc_addr}");
    let connected = shopstream_runtime::testkit::try_eventually(Duration::from_secs(10), || {
        let url = grpc_url.clone();
        async move {
            tonic::transport::Endpoint::from_shared(url)
                .ok()?
                .connect()
                .await
                .ok()
        }
    })
    .await;
    assert!(connected.is_some(), "gRPC never served");

    // Shutting a listening socket down makes every further accept fail (EINVAL).
    http_socket.shutdown(std::net::Shutdown::Both).unwrap();

    let result = tokio::time::timeout(Duration::from_secs(20), service)
        .await
        .expect("run did not return after its HTTP listener failed")
        .unwrap();
    let err = result.expect_err("run must return the listener's error");
    assert!(matches!(err, ServiceError::HttpListener { .. }), "{err}");
    // And the gRPC server stopped with it.
    let refused = tokio::net::TcpStream::connect(grpc_addr).await;
    assert!(refused.is_err(), "gRPC still accepts after HTTP died");
}
