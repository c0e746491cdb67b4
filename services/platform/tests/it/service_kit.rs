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

/// `examples/minimal_service.rs` runs as a reader would run it: it serves its
/// route and the ops endpoints, its worker's metric grows, and SIGTERM stops
/// every part and ends the process with success.
#[tokio::test(flavor = "multi_thread")]
async fn the_minimal_example_serves_counts_and_stops_on_sigterm() {
    use shopstream_runtime::testkit::{READY_TIMEOUT, eventually, metric, wait_http_ok};
    // `cargo test` builds the examples next to the test binaries' `deps/`.
    let exe = std::env::current_exe().unwrap();
    let exe = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("minimal_service");
    assert!(exe.exists(), "no example binary at {}", exe.display());
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut child = tokio::process::Command::new(&exe)
        .env("SHOPSTREAM_HELLO_HTTP_ADDR", addr.to_string())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://{addr}");
    wait_http_ok(&format!("{base}/readyz"), READY_TIMEOUT).await;
    let hello = reqwest::get(format!("{base}/hello")).await.unwrap();
    assert_eq!(hello.text().await.unwrap(), "hello\n");

    let beats = || metric(&base, "shopstream_hello_heartbeats_total", &[]);
    let first = eventually("a heartbeat on /metrics", READY_TIMEOUT, || async {
        Some(beats().await).filter(|n| *n >= 1.0)
    })
    .await;
    eventually("the heartbeat count grows", READY_TIMEOUT, || async {
        Some(beats().await).filter(|n| *n > first)
    })
    .await;

    let pid = child.id().unwrap().to_string();
    let term = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    assert!(term.await.unwrap().success());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("the example did not stop within 20 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "the example ended with {status}");
}
