//! Identity end to end over HTTP and gRPC against the real test stack.

mod dsar;
mod flows;
mod stores;

use shopstream_identity::Config;
use shopstream_runtime::testkit;

/// A running identity service on ephemeral ports with its own database.
pub struct Running {
    pub http: String,
    pub grpc: String,
    _service: testkit::RunningService,
}

pub async fn start(login_limit: u32) -> Running {
    // It serves once migrations have run.
    let service = testkit::spawn_service::<shopstream_identity::Server>(|mut service| {
        service.body_limit_bytes = 64 * 1024;
        Config {
            service,
            database: testkit::unique("it_identity"),
            key_dir: testkit::stack_dir()
                .join("keys")
                .join(testkit::unique("identity")),
            cookie_secure: false,
            login_limit,
            login_window_s: 60,
        }
    })
    .await;
    Running {
        http: service.http.clone(),
        grpc: service.grpc_url(),
        _service: service,
    }
}
