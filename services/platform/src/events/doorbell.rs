//! The event doorbell: a Redis pub/sub channel on which a publisher names a
//! topic right after the broker acknowledged records on it, so idle
//! consumers can stop asking the broker for records that are not there.
//!
//! Why: the native broker (tansu) holds every fetch for the consumer's full
//! `fetch.wait.max.ms` and never answers early when records arrive, so a
//! consumer either waits long (every delivery pays the wait) or asks often
//! (about 200 empty fetches a second per consumer at 5 ms; with the stack's
//! consumer groups that kept the broker at a whole core with no traffic).
//! With the doorbell, a consumer with nothing to do pauses its partitions
//! (no fetches; heartbeats go on) and resumes them when the doorbell names
//! one of its topics. See `docs/adr/0017-event-doorbell.md`.
//!
//! The doorbell is a hint, never the data: a ring that is lost only delays
//! delivery, because
//! - while the listener is not connected to Redis (at start, Redis down or
//!   silent: a ping every [`PING_EVERY`] must be answered) consumers do not
//!   pause at all, and every (re)connection wakes every consumer;
//! - a paused consumer asks the broker once every safety interval
//!   (`KafkaSettings::doorbell_safety`) whether records wait for it, which
//!   bounds what a ring lost on the way (a publisher that could not reach
//!   Redis, a producer that does not ring) can cost.

use std::{
    collections::BTreeSet,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

/// The pub/sub channel; a message is one topic's name.
pub const CHANNEL: &str = "shopstream:events:doorbell";
/// The listener pings Redis this often while subscribed...
pub const PING_EVERY: Duration = Duration::from_secs(5);
/// ...and takes the connection for dead when an answer takes longer than this.
pub const PING_TIMEOUT: Duration = crate::cache::REDIS_TIMEOUT;
/// Bound on connecting and on one publish.
const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// Rings buffered per listening subscription before it counts as lagged
/// (a lagged subscription wakes, so nothing is lost by a small buffer).
const FAN_OUT: usize = 256;

/// What the listener heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ring {
    /// Records were acknowledged on this topic.
    Topic(Arc<str>),
    /// Anything may have been missed (the listener (re)connected): every
    /// consumer wakes.
    All,
}

/// One process's doorbell: rings go out through one connection, and one
/// listener fans what it hears out to the process's subscriptions. Both
/// tasks start on first use, on the caller's runtime.
pub struct Doorbell {
    client: redis::Client,
    ringer: OnceLock<mpsc::UnboundedSender<String>>,
    listener: OnceLock<()>,
    heard: broadcast::Sender<Ring>,
    connected: Arc<AtomicBool>,
    /// Stops the listener when the doorbell is dropped.
    _stop: tokio_util::sync::DropGuard,
    stop: CancellationToken,
}

impl std::fmt::Debug for Doorbell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Doorbell")
            .field("connected", &self.connected())
            .finish()
    }
}

impl Doorbell {
    /// A doorbell on the Redis at `url` (nothing connects until first use).
    pub fn new(url: &str) -> Result<Doorbell, redis::RedisError> {
        let stop = CancellationToken::new();
        Ok(Doorbell {
            _stop: stop.clone().drop_guard(),
            stop,
            client: redis::Client::open(url)?,
            ringer: OnceLock::new(),
            listener: OnceLock::new(),
            heard: broadcast::channel(FAN_OUT).0,
            connected: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Name `topic` on the doorbell. Never waits: the ring is queued for the
    /// ringer task, which coalesces rings queued together.
    pub fn ring(&self, topic: &str) {
        let tx = self.ringer.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(ringer(self.client.clone(), rx));
            tx
        });
        let _ = tx.send(topic.to_string());
    }

    /// What the listener hears from now on (the listener starts on first call).
    pub fn listen(&self) -> broadcast::Receiver<Ring> {
        let rx = self.heard.subscribe();
        self.listener.get_or_init(|| {
            let (client, heard, connected) = (
                self.client.clone(),
                self.heard.clone(),
                self.connected.clone(),
            );
            let stop = self.stop.clone();
            tokio::spawn(async move {
                stop.run_until_cancelled(listener(client, heard, connected))
                    .await;
            });
        });
        rx
    }

    /// Whether the listener is subscribed right now. While it is not, rings
    /// can be missed, so consumers must not pause.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }
}

/// Publishes queued rings, each distinct topic once per batch.
async fn ringer(client: redis::Client, mut rx: mpsc::UnboundedReceiver<String>) {
    let mut conn: Option<redis::aio::MultiplexedConnection> = None;
    let mut warned = false;
    while let Some(first) = rx.recv().await {
        let mut topics = BTreeSet::from([first]);
        while let Ok(t) = rx.try_recv() {
            topics.insert(t);
        }
        for topic in topics {
            if conn.is_none() {
                conn = tokio::time::timeout(OP_TIMEOUT, client.get_multiplexed_async_connection())
                    .await
                    .ok()
                    .and_then(Result::ok);
            }
            let Some(c) = conn.as_mut() else {
                if !warned {
                    tracing::warn!(
                        "event doorbell: cannot reach Redis; consumers fall back to their safety check"
                    );
                    warned = true;
                }
                continue;
            };
            let sent = tokio::time::timeout(
                OP_TIMEOUT,
                redis::cmd("PUBLISH")
                    .arg(CHANNEL)
                    .arg(&topic)
                    .query_async::<i64>(c),
            )
            .await;
            match sent {
                Ok(Ok(_)) => warned = false,
                _ => {
                    conn = None;
                    if !warned {
                        tracing::warn!(
                            topic,
                            "event doorbell: a ring was lost; consumers fall back to their safety check"
                        );
                        warned = true;
                    }
                }
            }
        }
    }
}

/// Subscribes, forwards what it hears, pings, and reconnects, until the
/// doorbell is dropped.
async fn listener(
    client: redis::Client,
    heard: broadcast::Sender<Ring>,
    connected: Arc<AtomicBool>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let Err(e) = listen_once(&client, &heard, &connected).await;
        tracing::debug!(error = %e, "event doorbell: listener disconnected");
        if connected.swap(false, Ordering::AcqRel) {
            tracing::info!("event doorbell: not listening; consumers fetch without pausing");
            backoff = Duration::from_millis(200);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn listen_once(
    client: &redis::Client,
    heard: &broadcast::Sender<Ring>,
    connected: &AtomicBool,
) -> Result<std::convert::Infallible, String> {
    crate::cache::listen(
        client,
        CHANNEL,
        PING_EVERY,
        || {
            connected.store(true, Ordering::Release);
            // Whatever was rung while nobody listened is unknown: wake everyone.
            let _ = heard.send(Ring::All);
        },
        |topic| {
            let _ = heard.send(Ring::Topic(topic.into()));
        },
    )
    .await
}
