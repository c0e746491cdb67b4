//! Temporal: a client connected with a deadline, and worker options tuned as
//! measured on the native dev server (a fixed poller count; the SDK's default
//! autoscaling polled too slowly for small workloads).

use std::time::Duration;

pub use temporalio_client::{Client, ClientOptions, Connection, ConnectionOptions};
pub use temporalio_sdk::{Runtime, Worker, WorkerOptions, runtime::PollerBehavior};

/// Bound on connecting to the frontend.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pollers per task type (workflow and activity).
pub const POLLERS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum TemporalError {
    #[error("invalid temporal url {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("temporal at {url}: {reason}")]
    Connect { url: String, reason: String },
}

/// Connect a client to `url` (e.g. `http://127.0.0.1:17233`) in `namespace`.
pub async fn connect(url: &str, namespace: &str, identity: &str) -> Result<Client, TemporalError> {
    let target: url::Url = url
        .parse()
        .map_err(|e: url::ParseError| TemporalError::Url {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
    let opts = ConnectionOptions::new(target)
        .identity(identity.to_string())
        .connect_timeout(CONNECT_TIMEOUT)
        .build();
    let conn = tokio::time::timeout(CONNECT_TIMEOUT * 2, Connection::connect(opts))
        .await
        .map_err(|_| TemporalError::Connect {
            url: url.to_string(),
            reason: format!("no answer within {:?}", CONNECT_TIMEOUT * 2),
        })?
        .map_err(|e| TemporalError::Connect {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
    Client::new(conn, ClientOptions::new(namespace.to_string()).build()).map_err(|e| {
        TemporalError::Connect {
            url: url.to_string(),
            reason: e.to_string(),
        }
    })
}

/// The SDK runtime on the current tokio runtime.
pub fn runtime() -> Result<Runtime, TemporalError> {
    Runtime::from_current_tokio(Default::default()).map_err(|e| TemporalError::Connect {
        url: String::new(),
        reason: e.to_string(),
    })
}
