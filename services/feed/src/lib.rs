//! Feed: what shoppers do to products and to each other, and the ranked
//! feed it turns into.
//!
//! - `PublishActivity` records a like, unlike, view, comment or follow
//!   (idempotent on the client's id), appends it to the user's **timeline**
//!   ([`timeline`]: Postgres by default, Scylla with the same keys) and
//!   publishes it on `activity.raw` through the outbox.
//! - The **feature job** ([`job`]) reads `activity.raw`, `analytics.raw`,
//!   `order.lifecycle`, `media.events` and `product.events`, folds their
//!   signals into per-item and per-user features ([`domain::features`]) and
//!   recomputes the slices they change: Redis sorted sets, copied to
//!   Postgres ([`slices`]).
//! - `GetPage` serves a page from Redis, else from Postgres (putting it back
//!   in Redis), else computes a new user's slice on the spot (the backfill),
//!   so a first page is never empty while the catalog has products.
//! - `Recommend` ranks popular items a customer has not bought.
//! - The DSAR participant ([`dsar`]) exports, erases and scans one person's
//!   data in every store above, the in-memory features included.

pub mod api;
pub mod domain;
pub mod dsar;
pub mod engine;
pub mod job;
pub mod slices;
pub mod timeline;
pub mod warm;

use std::{
    sync::{Arc, atomic::AtomicI64},
    time::Duration,
};

use shopstream_platform::{
    cache,
    clock::{Clock, SystemClock},
    config::{ConfigError, ServiceConfig, env_or},
    db,
    events::{
        dlq_topic,
        kafka::KafkaBus,
        runner::{self, RunnerConfig},
    },
    outbox::{self, Relay},
    service::{Listeners, Service},
};
use shopstream_proto::feed::v1::feed_service_server::FeedServiceServer;
use tokio_util::sync::CancellationToken;

use crate::{
    domain::{cursor::Sealer, features::Weights},
    engine::Engine,
    slices::Slices,
    timeline::{TimelineStore, postgres::PgTimeline, scylla::ScyllaTimeline},
};

/// Partitions the topics are created with when absent.
const TOPIC_PARTITIONS: i32 = 3;
/// Attempts per event before it is dead-lettered.
const MAX_ATTEMPTS: u32 = 8;
/// Pause before a failed consumer loop starts again.
const CONSUMER_RESTART_DELAY: Duration = Duration::from_secs(1);
/// The cursor key of a stack that sets none (set your own anywhere else).
pub const DEV_CURSOR_KEY: &str = "shopstream-dev-feed-cursor-key";

/// Which timeline adapter to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimelineBackend {
    Postgres,
    /// Contact points, e.g. `127.0.0.1:9042`, and the keyspace.
    Scylla {
        nodes: Vec<String>,
        keyspace: String,
    },
}

#[derive(Clone)]
pub struct Config {
    pub service: ServiceConfig,
    pub database: String,
    pub consumer_group: String,
    pub timeline: TimelineBackend,
    pub cursor_key: String,
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("service", &self.service)
            .field("database", &self.database)
            .field("consumer_group", &self.consumer_group)
            .field("timeline", &self.timeline)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// `SHOPSTREAM_FEED_DATABASE` (default `feed`), `SHOPSTREAM_FEED_GROUP`
    /// (default `feed`), `SHOPSTREAM_FEED_CURSOR_KEY`, and the timeline:
    /// Scylla when `SHOPSTREAM_SCYLLA_URL` (`host:port[,host:port]`) is set
    /// (keyspace `SHOPSTREAM_FEED_KEYSPACE`, default `shopstream_feed`),
    /// else Postgres; `SHOPSTREAM_FEED_TIMELINE=postgres` forces Postgres.
    pub fn from_env() -> Result<Config, ConfigError> {
        let scylla = std::env::var("SHOPSTREAM_SCYLLA_URL")
            .ok()
            .filter(|v| !v.trim().is_empty());
        let timeline = match (env_or("SHOPSTREAM_FEED_TIMELINE", "").as_str(), scylla) {
            ("postgres", _) | (_, None) => TimelineBackend::Postgres,
            (_, Some(url)) => TimelineBackend::Scylla {
                nodes: timeline::scylla::nodes(&url),
                keyspace: env_or("SHOPSTREAM_FEED_KEYSPACE", timeline::scylla::KEYSPACE),
            },
        };
        Ok(Config {
            service: ServiceConfig::from_env("feed")?,
            database: env_or("SHOPSTREAM_FEED_DATABASE", "feed"),
            consumer_group: env_or("SHOPSTREAM_FEED_GROUP", "feed"),
            timeline,
            cursor_key: env_or("SHOPSTREAM_FEED_CURSOR_KEY", DEV_CURSOR_KEY),
            clock: Arc::new(SystemClock),
        })
    }

    /// The native defaults around `service` (Postgres timeline).
    pub fn new(service: ServiceConfig) -> Config {
        Config {
            service,
            database: "feed".into(),
            consumer_group: "feed".into(),
            timeline: TimelineBackend::Postgres,
            cursor_key: DEV_CURSOR_KEY.into(),
            clock: Arc::new(SystemClock),
        }
    }
}

shopstream_platform::service_entry! {
    /// Feed as `shopstream serve feed` and the test kit start it.
    Server { name: "feed", grpc: true, config: Config, run: run }
}

/// Load the features, then consume the five topics, keep slices current
/// and serve the API until `shutdown`.
pub async fn run(
    cfg: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let e = &cfg.service.endpoints;
    let pool = db::connect(&e.postgres_url, &cfg.database).await?;
    db::migrate(&pool, &MIGRATOR).await?;
    outbox::ensure_table(&pool).await?;
    let redis = cache::connect(&e.redis_url).await?;
    let timeline: Arc<dyn TimelineStore> = match &cfg.timeline {
        TimelineBackend::Postgres => Arc::new(PgTimeline { pool: pool.clone() }),
        TimelineBackend::Scylla { nodes, keyspace } => {
            Arc::new(ScyllaTimeline::connect(nodes, keyspace).await?)
        }
    };
    let bus = KafkaBus::connect(e)?;
    for topic in job::TOPICS {
        bus.ensure_topic(topic, TOPIC_PARTITIONS).await?;
        bus.ensure_topic(&dlq_topic(topic), 1).await?;
    }
    let engine = Arc::new(Engine::new(Weights::default()));
    let loaded = job::load(&pool, &engine).await?;
    let (items, users) = engine.sizes();
    tracing::info!(
        events = loaded,
        items,
        users,
        timeline = timeline.backend(),
        "features loaded"
    );
    let svc = Service::new(&cfg.service);
    let job_metrics = job::JobMetrics::register(svc.metrics());
    let page_metrics = api::PageMetrics::register(svc.metrics());
    let warmer = warm::Warmer::new(svc.metrics());
    let relay = Relay::new(pool.clone(), bus.clone());
    let slices = Slices {
        redis: redis.clone(),
        pool: pool.clone(),
    };
    let handler = Arc::new(job::Job {
        engine: engine.clone(),
        pool: pool.clone(),
        redis: redis.clone(),
        metrics: job_metrics.clone(),
        default_tenant: cfg.service.default_tenant.clone(),
        blocked: job::BlockedCache::default(),
    });
    let rcfg = RunnerConfig {
        max_attempts: MAX_ATTEMPTS,
        health: runner::ConsumerHealth::new(svc.metrics(), &cfg.consumer_group),
        ..RunnerConfig::new(&cfg.consumer_group, &job::TOPICS)
    };
    let api = api::GrpcApi {
        engine: engine.clone(),
        slices: slices.clone(),
        timeline: timeline.clone(),
        pool: pool.clone(),
        relay: relay.clone(),
        clock: cfg.clock.clone(),
        sealer: Sealer::new(cfg.cursor_key.as_bytes()),
        metrics: page_metrics,
        default_tenant: cfg.service.default_tenant.clone(),
        redis_down_until: Arc::new(AtomicI64::new(0)),
        warmer: warmer.clone(),
    };
    let participant = dsar::FeedParticipant {
        pool: pool.clone(),
        redis: redis.clone(),
        timeline: timeline.clone(),
        engine: engine.clone(),
        warmer: Some(warmer.clone()),
    };
    let clock = cfg.clock.clone();
    // Redis is not a readiness check: without it pages come from Postgres.
    svc.check_postgres("postgres", pool)
        .check("consumer", rcfg.health.readiness())
        .check("timeline", move || {
            let t = timeline.clone();
            async move { t.ping().await.map_err(|e| e.to_string()) }
        })
        .grpc(FeedServiceServer::new(api))
        .grpc(shopstream_dsar::server(
            Arc::new(participant),
            &cfg.service.default_tenant,
        ))
        .task("outbox", |stop| relay.run(stop))
        .task("features", move |stop| {
            runner::run_until_stopped(
                bus,
                // The signal log is the dedupe: an event id already logged adds nothing.
                Arc::new(shopstream_platform::events::dedupe::HandlerDedupes),
                handler,
                rcfg,
                stop,
                CONSUMER_RESTART_DELAY,
            )
        })
        .task("warmer", {
            let slices = slices.clone();
            move |stop| warmer.run(slices, stop)
        })
        .task("cache-flush", {
            let slices = slices.clone();
            move |stop| crate::slices::flush_on_fault(slices, stop)
        })
        .task("rankings", {
            let engine = engine.clone();
            move |stop| job::refresh_rankings(engine, stop)
        })
        .task("materialize", move |stop| {
            job::materialize(engine, slices, clock, job_metrics, stop)
        })
        .run(listeners, shutdown)
        .await?;
    Ok(())
}

/// Feed's schema.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
