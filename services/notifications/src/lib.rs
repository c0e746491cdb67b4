//! Notifications: consumes `order.lifecycle` (each event once per consumer
//! group: ids are deduplicated in its own Postgres database), decides who is
//! told what ([`domain::notices`], pure) and delivers it. Live updates go onto
//! the realtime fan-out (`platform::realtime`), which every gateway holds one
//! subscription to and passes on to its WebSocket, SSE and long-poll clients.

pub mod domain;

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use prometheus_client::metrics::{counter::Counter, histogram::Histogram};
use shopstream_platform::{
    cache,
    clock::{Clock, SystemClock},
    config::{ConfigError, ServiceConfig, env_or},
    db,
    events::{
        Delivery,
        dedupe::PgDeduper,
        dlq_topic,
        kafka::KafkaBus,
        runner::{self, Handler, HandlerError, RunnerConfig},
    },
    metrics::Metrics,
    realtime,
    service::{Listeners, Service},
};
use tokio_util::sync::CancellationToken;

use crate::domain::Notice;

/// The topic whose steps become live updates.
pub const ORDER_TOPIC: &str = "order.lifecycle";
/// Partitions `order.lifecycle` is created with when absent (as orders does).
const TOPIC_PARTITIONS: i32 = 3;
/// Attempts per event before it is dead-lettered (Redis down for a few seconds
/// is ridden out with the runner's backoff).
const MAX_ATTEMPTS: u32 = 8;
/// Pause before a failed consumer loop starts again.
const CONSUMER_RESTART_DELAY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct Config {
    pub service: ServiceConfig,
    /// Its Postgres database (processed event ids).
    pub database: String,
    /// Its consumer group on `order.lifecycle`.
    pub consumer_group: String,
}

impl Config {
    /// `SHOPSTREAM_NOTIFICATIONS_DATABASE` (default `notifications`),
    /// `SHOPSTREAM_NOTIFICATIONS_GROUP` (default `notifications`) and the
    /// shared variables of [`ServiceConfig::from_env`].
    pub fn from_env() -> Result<Config, ConfigError> {
        Ok(Config {
            service: ServiceConfig::from_env("notifications")?,
            database: env_or("SHOPSTREAM_NOTIFICATIONS_DATABASE", "notifications"),
            consumer_group: env_or("SHOPSTREAM_NOTIFICATIONS_GROUP", "notifications"),
        })
    }
}

shopstream_platform::service_entry! {
    /// Notifications as `shopstream serve notifications` and the test kit start it.
    Server { name: "notifications", grpc: false, config: Config, run: run }
}

/// Puts each event's notices where they go.
pub struct Deliver {
    pub redis: cache::ConnectionManager,
    pub clock: Arc<dyn Clock>,
    /// `shopstream_notifications_live_published_total`.
    pub published: Counter,
    /// `shopstream_notifications_commit_to_fanout_seconds`.
    pub commit_to_fanout: Histogram,
}

impl Deliver {
    pub fn new(redis: cache::ConnectionManager, metrics: &Metrics) -> Deliver {
        let published = Counter::default();
        // 1 ms .. ~16 s
        let commit_to_fanout = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 15),
        );
        metrics.register(
            "notifications_live_published",
            "Live updates published on the realtime fan-out",
            published.clone(),
        );
        metrics.register(
            "notifications_commit_to_fanout_seconds",
            "Source commit of an event to its live update on the fan-out",
            commit_to_fanout.clone(),
        );
        Deliver {
            redis,
            clock: Arc::new(SystemClock),
            published,
            commit_to_fanout,
        }
    }
}

#[async_trait]
impl Handler for Deliver {
    async fn handle(&self, d: &Delivery) -> Result<(), HandlerError> {
        let e = &d.envelope;
        let notices = domain::notices(&e.event_type, &e.payload, e.occurred_at_ms)
            .map_err(|err| HandlerError::Permanent(err.to_string()))?;
        for n in notices {
            match n {
                Notice::Live { topic, event } => {
                    let mut redis = self.redis.clone();
                    realtime::publish(&mut redis, &e.tenant_id, &topic, &event)
                        .await
                        .map_err(|err| HandlerError::Retryable(format!("redis: {err}")))?;
                    self.published.inc();
                    let lag_ms = (self.clock.now_ms() - event.committed_ms).max(0);
                    self.commit_to_fanout.observe(lag_ms as f64 / 1000.0);
                }
            }
        }
        Ok(())
    }
}

/// Consume `order.lifecycle` and serve the operational endpoints until
/// `shutdown` (see [`Service::run`]).
pub async fn run(
    cfg: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let svc = Service::new(&cfg.service);
    let pool = db::connect(&cfg.service.endpoints.postgres_url, &cfg.database).await?;
    let dedupe = Arc::new(PgDeduper::new(pool.clone()).await?);
    let redis = cache::connect(&cfg.service.endpoints.redis_url).await?;
    let deliver = Arc::new(Deliver::new(redis.clone(), svc.metrics()));
    let bus = KafkaBus::connect(&cfg.service.endpoints)?;
    bus.ensure_topic(ORDER_TOPIC, TOPIC_PARTITIONS).await?;
    bus.ensure_topic(&dlq_topic(ORDER_TOPIC), 1).await?;
    let rcfg = RunnerConfig {
        max_attempts: MAX_ATTEMPTS,
        ..RunnerConfig::new(&cfg.consumer_group, &[ORDER_TOPIC])
    };
    svc.check_postgres("postgres", pool)
        .check("redis", move || {
            let r = redis.clone();
            async move { cache::ping(&r).await }
        })
        .task("order-lifecycle", move |stop| {
            runner::run_until_stopped(bus, dedupe, deliver, rcfg, stop, CONSUMER_RESTART_DELAY)
        })
        .run(listeners, shutdown)
        .await?;
    Ok(())
}
