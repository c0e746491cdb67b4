//! Identity end to end over HTTP and gRPC against the real test stack.

mod flows;
mod stores;

use std::{net::SocketAddr, time::Duration};

use shopstream_identity::Config;
use shopstream_platform::config::ServiceConfig;
use shopstream_runtime::testkit;
use tokio_util::sync::CancellationToken;

/// A running identity service on ephemeral ports with its own database.
pub struct Running {
    pub http: String,
    pub grpc: String,
    pub shutdown: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn start(login_limit: u32) -> Running {
    let stack = testkit::stack().await;
    let http_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (h, g): (SocketAddr, SocketAddr) =
        (http_l.local_addr().unwrap(), grpc_l.local_addr().unwrap());
    let cfg = Config {
        service: ServiceConfig {
            name: "identity".into(),
            http_addr: h,
            grpc_addr: g,
            endpoints: stack.endpoints.clone(),
            request_timeout: Duration::from_secs(10),
            body_limit_bytes: 64 * 1024,
            default_tenant: "default".into(),
        },
        database: testkit::unique("it_identity"),
        key_dir: testkit::stack_dir()
            .join("keys")
            .join(testkit::unique("identity")),
        cookie_secure: false,
        login_limit,
        login_window_s: 60,
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(shopstream_identity::run(
        cfg,
        http_l,
        grpc_l,
        shutdown.clone(),
    ));
    let running = Running {
        http: format!("http://{h}"),
        grpc: format!("http://{g}"),
        shutdown,
    };
    // It serves once migrations have run.
    testkit::wait_http_ok(&format!("{}/readyz", running.http), Duration::from_secs(10)).await;
    running
}
