//! Redis: a connection manager (reconnects by itself) with bounded connect and
//! response timeouts, so a dead Redis is an error, not a hang.

use std::time::Duration;

pub use redis::aio::ConnectionManager;

/// Bound on connecting and on each command.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("redis at {url}: {source}")]
    Connect {
        url: String,
        source: redis::RedisError,
    },
}

/// Connect to `url` (e.g. `redis://127.0.0.1:16379`).
pub async fn connect(url: &str) -> Result<ConnectionManager, CacheError> {
    let err = |source| CacheError::Connect {
        url: url.to_string(),
        source,
    };
    let client = redis::Client::open(url).map_err(err)?;
    let cfg = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(REDIS_TIMEOUT))
        .set_response_timeout(Some(REDIS_TIMEOUT))
        .set_number_of_retries(2);
    client
        .get_connection_manager_with_config(cfg)
        .await
        .map_err(err)
}

/// `PING`, as a readiness check: Ok, or why not.
pub async fn ping(redis: &ConnectionManager) -> Result<(), String> {
    let mut r = redis.clone();
    redis::cmd("PING")
        .query_async::<String>(&mut r)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}
