//! The gateway's end of the realtime fan-out (`platform::realtime`): one Redis
//! pattern subscription per tenant for the whole gateway, routed to the live
//! connections that asked for each topic.
//!
//! Each connection has one bounded queue for all its topics. A connection
//! whose queue is full is told so (its `lagged` token fires) and is closed by
//! its handler; it loses nothing, because a client resumes from its last
//! sequence number and the gateway re-reads the topic's source of truth. The
//! same re-read happens after the subscription was re-established (Redis
//! restarted): pub/sub keeps nothing for a subscriber that was away, so the
//! hub bumps an epoch that every connection watches.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;
use prometheus_client::metrics::{counter::Counter, gauge::Gauge};
use shopstream_platform::{
    cache::REDIS_TIMEOUT,
    metrics::Metrics,
    realtime::{self, LiveEvent, Topic},
    shutdown::sleep_or_stop,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

/// Limits on live connections; each can be set with `SHOPSTREAM_LIVE_*`.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Live connections (WebSocket, SSE and waiting long-polls) one user may hold.
    pub per_user: usize,
    /// Live connections one gateway process holds.
    pub per_gateway: usize,
    /// Topics one connection may follow at once.
    pub subscriptions: usize,
    /// Largest client frame in bytes; larger closes the socket with 1009.
    pub max_frame: usize,
    /// Events queued for one connection before it counts as too slow (1013).
    pub queue: usize,
    /// A WebSocket with no frame from its client for this long is closed.
    pub idle: Duration,
}

impl Limits {
    pub const PER_USER: usize = 16;
    pub const PER_GATEWAY: usize = 10_000;
    pub const SUBSCRIPTIONS: usize = 32;
    pub const MAX_FRAME: usize = 16 * 1024;
    pub const QUEUE: usize = 256;
    pub const IDLE: Duration = Duration::from_secs(120);
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_user: Self::PER_USER,
            per_gateway: Self::PER_GATEWAY,
            subscriptions: Self::SUBSCRIPTIONS,
            max_frame: Self::MAX_FRAME,
            queue: Self::QUEUE,
            idle: Self::IDLE,
        }
    }
}

/// SSE comment heartbeat period.
pub const SSE_HEARTBEAT: Duration = Duration::from_secs(15);
/// Longest `wait_ms` a long-poll may ask for.
pub const MAX_WAIT_MS: u64 = 30_000;
/// Pause before re-subscribing after the pub/sub connection broke.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

/// Why a connection or subscription was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LiveError {
    #[error("this user already has {0} live connections")]
    TooManyForUser(usize),
    #[error("this gateway already holds {0} live connections")]
    TooManyForGateway(usize),
    #[error("a connection follows at most {0} channels")]
    TooManySubscriptions(usize),
    #[error("the realtime fan-out is unavailable (Redis)")]
    Unavailable,
}

#[derive(Clone)]
struct Route {
    conn: u64,
    tx: mpsc::Sender<LiveEvent>,
    lagged: CancellationToken,
}

struct Inner {
    limits: Limits,
    routes: Mutex<HashMap<String, Vec<Route>>>,
    users: Mutex<HashMap<String, usize>>,
    /// Tenants whose pattern is subscribed on the current pub/sub connection.
    active: Mutex<BTreeSet<String>>,
    commands: mpsc::UnboundedSender<(String, oneshot::Sender<()>)>,
    epoch: watch::Sender<u64>,
    next_conn: AtomicU64,
    connections: Gauge,
    delivered: Counter,
    slow: Counter,
    resyncs: Counter,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The fan-out hub. Cheap to clone.
#[derive(Clone)]
pub struct Hub(Arc<Inner>);

/// The hub's Redis side; run it as one of the gateway's workers.
pub struct Subscriber {
    inner: Arc<Inner>,
    redis_url: String,
    tenants: BTreeSet<String>,
    commands: mpsc::UnboundedReceiver<(String, oneshot::Sender<()>)>,
}

impl Hub {
    /// A hub for `redis_url` that subscribes `default_tenant`'s pattern at once.
    pub fn new(
        redis_url: &str,
        default_tenant: &str,
        limits: Limits,
        metrics: &Metrics,
    ) -> (Hub, Subscriber) {
        let (commands, rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            limits,
            routes: Mutex::default(),
            users: Mutex::default(),
            active: Mutex::default(),
            commands,
            epoch: watch::channel(0).0,
            next_conn: AtomicU64::new(1),
            connections: Gauge::default(),
            delivered: Counter::default(),
            slow: Counter::default(),
            resyncs: Counter::default(),
        });
        metrics.register(
            "live_connections",
            "Live connections held (WebSocket, SSE, waiting long-polls)",
            inner.connections.clone(),
        );
        metrics.register(
            "live_events_delivered",
            "Live events queued to a connection",
            inner.delivered.clone(),
        );
        metrics.register(
            "live_slow_disconnects",
            "Connections closed because their queue was full",
            inner.slow.clone(),
        );
        metrics.register(
            "live_resyncs",
            "Times the pub/sub subscription was (re-)established",
            inner.resyncs.clone(),
        );
        let subscriber = Subscriber {
            inner: inner.clone(),
            redis_url: redis_url.to_string(),
            tenants: BTreeSet::from([default_tenant.to_string()]),
            commands: rx,
        };
        (Hub(inner), subscriber)
    }

    pub fn limits(&self) -> &Limits {
        &self.0.limits
    }

    /// Whether the pub/sub subscription is up (readiness).
    pub fn ready(&self) -> bool {
        !lock(&self.0.active).is_empty()
    }

    /// Open a live connection for `user`, within the limits.
    pub fn connect(&self, user: &str) -> Result<Conn, LiveError> {
        let l = &self.0.limits;
        {
            let mut users = lock(&self.0.users);
            let total: usize = users.values().sum();
            if total >= l.per_gateway {
                return Err(LiveError::TooManyForGateway(l.per_gateway));
            }
            let n = users.entry(user.to_string()).or_default();
            if *n >= l.per_user {
                return Err(LiveError::TooManyForUser(l.per_user));
            }
            *n += 1;
        }
        self.0.connections.inc();
        let (tx, rx) = mpsc::channel(l.queue);
        Ok(Conn {
            hub: self.clone(),
            id: self.0.next_conn.fetch_add(1, Ordering::Relaxed),
            user: user.to_string(),
            tx,
            rx,
            lagged: CancellationToken::new(),
            channels: BTreeSet::new(),
            epoch: self.0.epoch.subscribe(),
        })
    }

    /// Make sure `tenant`'s pattern is subscribed before the caller reads a
    /// source of truth (otherwise an update between the read and the
    /// subscription would be lost).
    async fn ensure_tenant(&self, tenant: &str) -> Result<(), LiveError> {
        if lock(&self.0.active).contains(tenant) {
            return Ok(());
        }
        let (ack, done) = oneshot::channel();
        self.0
            .commands
            .send((tenant.to_string(), ack))
            .map_err(|_| LiveError::Unavailable)?;
        match tokio::time::timeout(REDIS_TIMEOUT, done).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(LiveError::Unavailable),
        }
    }

    fn dispatch(&self, channel: &str, payload: &str) {
        let Ok(event) = serde_json::from_str::<LiveEvent>(payload) else {
            tracing::warn!(channel, "ignoring a live event that does not parse");
            return;
        };
        let routes = lock(&self.0.routes)
            .get(channel)
            .cloned()
            .unwrap_or_default();
        for r in routes {
            match r.tx.try_send(event.clone()) {
                Ok(()) => {
                    self.0.delivered.inc();
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    if !r.lagged.is_cancelled() {
                        self.0.slow.inc();
                        r.lagged.cancel();
                    }
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
    }
}

impl Subscriber {
    /// Keep the pattern subscriptions up until `stop`, reconnecting after
    /// any failure and bumping the epoch each time they are (re)established.
    pub async fn run(mut self, stop: CancellationToken) {
        let hub = Hub(self.inner.clone());
        loop {
            if let Err(e) = self.session(&hub, &stop).await {
                tracing::warn!(error = %e, "realtime pub/sub connection lost; reconnecting");
            }
            lock(&self.inner.active).clear();
            if !sleep_or_stop(&stop, RECONNECT_PAUSE).await {
                return;
            }
        }
    }

    /// One pub/sub connection's life; Ok when `stop` fired.
    async fn session(&mut self, hub: &Hub, stop: &CancellationToken) -> redis::RedisResult<()> {
        let client = redis::Client::open(self.redis_url.as_str())?;
        let pubsub = tokio::time::timeout(REDIS_TIMEOUT, client.get_async_pubsub())
            .await
            .map_err(|_| timeout_error())??;
        let (mut sink, mut stream) = pubsub.split();
        for t in &self.tenants {
            sink.psubscribe(realtime::tenant_pattern(t)).await?;
        }
        *lock(&self.inner.active) = self.tenants.clone();
        self.inner.resyncs.inc();
        self.inner.epoch.send_modify(|e| *e += 1);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                msg = stream.next() => {
                    let Some(msg) = msg else {
                        return Err(timeout_error());
                    };
                    let payload: String = msg.get_payload().unwrap_or_default();
                    hub.dispatch(msg.get_channel_name(), &payload);
                }
                cmd = self.commands.recv() => {
                    let Some((tenant, ack)) = cmd else { return Ok(()) };
                    if self.tenants.insert(tenant.clone()) {
                        sink.psubscribe(realtime::tenant_pattern(&tenant)).await?;
                        lock(&self.inner.active).insert(tenant);
                    }
                    let _ = ack.send(());
                }
            }
        }
    }
}

fn timeout_error() -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, "pub/sub connection closed"))
}

/// One live connection: its queue, its topics and its place in the limits.
/// Dropping it leaves every topic and frees its slot.
pub struct Conn {
    hub: Hub,
    id: u64,
    user: String,
    tx: mpsc::Sender<LiveEvent>,
    rx: mpsc::Receiver<LiveEvent>,
    lagged: CancellationToken,
    channels: BTreeSet<String>,
    epoch: watch::Receiver<u64>,
}

impl Conn {
    /// Follow `topic` of `tenant`. Returns once the fan-out for the tenant is
    /// subscribed, so a source read after this misses nothing.
    pub async fn subscribe(&mut self, tenant: &str, topic: &Topic) -> Result<(), LiveError> {
        let channel = realtime::channel(tenant, topic);
        if !self.channels.contains(&channel) {
            let max = self.hub.0.limits.subscriptions;
            if self.channels.len() >= max {
                return Err(LiveError::TooManySubscriptions(max));
            }
            lock(&self.hub.0.routes)
                .entry(channel.clone())
                .or_default()
                .push(Route {
                    conn: self.id,
                    tx: self.tx.clone(),
                    lagged: self.lagged.clone(),
                });
            self.channels.insert(channel);
        }
        self.hub.ensure_tenant(tenant).await
    }

    pub fn unsubscribe(&mut self, tenant: &str, topic: &Topic) {
        let channel = realtime::channel(tenant, topic);
        if self.channels.remove(&channel) {
            self.hub.remove_route(&channel, self.id);
        }
    }

    /// The next live event (None never happens while the connection lives).
    pub async fn recv(&mut self) -> Option<LiveEvent> {
        self.rx.recv().await
    }

    /// Fires when this connection's queue overflowed: close it (1013).
    pub fn lagged(&self) -> CancellationToken {
        self.lagged.clone()
    }

    /// Signals each time the fan-out was re-established: then re-read every
    /// topic's source, since pub/sub kept nothing while it was down.
    pub fn resyncs(&self) -> Resyncs {
        Resyncs(self.epoch.clone())
    }
}

/// See [`Conn::resyncs`].
pub struct Resyncs(watch::Receiver<u64>);

impl Resyncs {
    /// Resolves at the next re-establishment (never, once the hub is gone).
    pub async fn next(&mut self) {
        if self.0.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Hub {
    fn remove_route(&self, channel: &str, conn: u64) {
        let mut routes = lock(&self.0.routes);
        if let Some(list) = routes.get_mut(channel) {
            list.retain(|r| r.conn != conn);
            if list.is_empty() {
                routes.remove(channel);
            }
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        for c in std::mem::take(&mut self.channels) {
            self.hub.remove_route(&c, self.id);
        }
        let mut users = lock(&self.hub.0.users);
        if let Some(n) = users.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                users.remove(&self.user);
            }
        }
        self.hub.0.connections.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn hub(limits: Limits) -> Hub {
        Hub::new("redis://127.0.0.1:9", "t", limits, &Metrics::new("test")).0
    }

    fn event(topic: &Topic, seq: u64) -> String {
        serde_json::to_string(&LiveEvent {
            topic: topic.to_string(),
            seq,
            kind: "order.step".into(),
            data: serde_json::json!({}),
            committed_ms: 0,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn connections_are_limited_per_user_and_per_gateway_and_freed_on_drop() {
        let h = hub(Limits {
            per_user: 2,
            per_gateway: 3,
            ..Limits::default()
        });
        let a1 = h.connect("a").unwrap();
        let _a2 = h.connect("a").unwrap();
        assert_eq!(h.connect("a").err(), Some(LiveError::TooManyForUser(2)));
        let _b1 = h.connect("b").unwrap();
        assert_eq!(h.connect("c").err(), Some(LiveError::TooManyForGateway(3)));
        drop(a1);
        assert!(h.connect("a").is_ok());
    }

    #[tokio::test]
    async fn events_reach_only_their_topic_and_a_full_queue_marks_the_connection_lagged() {
        let h = hub(Limits {
            queue: 2,
            subscriptions: 1,
            ..Limits::default()
        });
        // The tenant counts as subscribed, as after the first connection.
        lock(&h.0.active).insert("t".into());
        let (one, two) = (Topic::Order(Uuid::now_v7()), Topic::Order(Uuid::now_v7()));
        let mut c = h.connect("u").unwrap();
        c.subscribe("t", &one).await.unwrap();
        assert_eq!(
            c.subscribe("t", &two).await,
            Err(LiveError::TooManySubscriptions(1))
        );
        h.dispatch(&realtime::channel("t", &two), &event(&two, 1));
        h.dispatch(&realtime::channel("other", &one), &event(&one, 1));
        h.dispatch(&realtime::channel("t", &one), &event(&one, 1));
        assert_eq!(c.recv().await.unwrap().seq, 1);
        assert!(c.rx.try_recv().is_err(), "only its own topic and tenant");
        for seq in 2..=4 {
            h.dispatch(&realtime::channel("t", &one), &event(&one, seq));
        }
        assert!(
            c.lagged().is_cancelled(),
            "the third queued event overflowed"
        );
        c.unsubscribe("t", &one);
        assert!(lock(&h.0.routes).is_empty());
    }
}
