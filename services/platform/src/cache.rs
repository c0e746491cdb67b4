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

/// Subscribe to `channel` and stay subscribed: `subscribed` is called once
/// the subscription stands, `heard` with each message's payload. Redis is
/// pinged every `ping_every`; connecting, subscribing or a ping taking
/// longer than [`REDIS_TIMEOUT`] ends the subscription. Returns why it
/// ended; the caller decides when to subscribe again. (The event doorbell
/// and the fault store's change announcements listen through it.)
pub async fn listen(
    client: &redis::Client,
    channel: &str,
    ping_every: Duration,
    mut subscribed: impl FnMut(),
    mut heard: impl FnMut(String),
) -> Result<std::convert::Infallible, String> {
    use futures::StreamExt as _;
    let mut pubsub = tokio::time::timeout(REDIS_TIMEOUT, client.get_async_pubsub())
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    tokio::time::timeout(REDIS_TIMEOUT, pubsub.subscribe(channel))
        .await
        .map_err(|_| "subscribe timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let (mut sink, mut stream) = pubsub.split();
    subscribed();
    let mut ping = tokio::time::interval(ping_every);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    loop {
        tokio::select! {
            msg = stream.next() => {
                let Some(msg) = msg else {
                    return Err("connection closed".into());
                };
                if let Ok(payload) = msg.get_payload::<String>() {
                    heard(payload);
                }
            }
            _ = ping.tick() => {
                match tokio::time::timeout(REDIS_TIMEOUT, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(e.to_string()),
                    Err(_) => return Err("ping timed out".into()),
                }
            }
        }
    }
}
