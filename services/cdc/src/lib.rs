//! CDC: streams Postgres logical replication (pgoutput, decoded here) from
//! service outbox tables into Kafka, one Debezium-style change record per
//! row (`before`, `after`, `source{db,table,lsn,txId,ts_ms}`, `op`, `ts_ms`)
//! inside a platform event envelope. At-least-once: an LSN is acknowledged to
//! Postgres only after Kafka acknowledged every record up to it.
//!
//! Each configured database gets its own publication, slot and pipeline.

pub mod adapters;
pub mod config;
pub mod domain;
pub mod metrics;
pub mod pipeline;

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use shopstream_platform::{
    clock::SystemClock,
    db,
    events::kafka::KafkaBus,
    service::{Listeners, Service},
};
use tokio_util::sync::CancellationToken;

pub use config::{Config, SourceConfig, TableRoute};
pub use domain::change::{HEADER_COMMIT_TS_MS, HEADER_LSN};

shopstream_platform::service_entry! {
    /// CDC as `shopstream serve cdc` and the test kit start it.
    Server { name: "cdc", grpc: false, config: Config, run: run }
}

/// Stream every configured source and serve `/healthz`, `/readyz` (ready
/// while every source streams) and `/metrics` on HTTP until `shutdown` (see
/// [`Service::run`]). CDC has no gRPC surface.
pub async fn run(
    cfg: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let e = &cfg.service.endpoints;
    let own = db::connect(&e.postgres_url, &cfg.database).await?;
    db::migrate(&own, &adapters::postgres::MIGRATOR).await?;
    let bus = KafkaBus::connect(e)?;
    let mut topics: Vec<&str> = cfg
        .sources
        .iter()
        .flat_map(|s| s.tables.iter().map(|t| t.topic.as_str()))
        .collect();
    topics.sort_unstable();
    topics.dedup();
    for topic in topics {
        bus.ensure_topic(topic, cfg.topic_partitions).await?;
    }
    let server = pipeline::Server::parse(&e.postgres_url)?;

    let streaming: Vec<Arc<AtomicBool>> = cfg
        .sources
        .iter()
        .map(|_| Arc::new(AtomicBool::new(false)))
        .collect();
    let flags = streaming.clone();
    let mut svc = Service::new(&cfg.service)
        .check_postgres("postgres", own.clone())
        .check("replication", move || {
            let all = flags.iter().all(|f| f.load(Ordering::Relaxed));
            async move {
                if all {
                    Ok(())
                } else {
                    Err("a source is not streaming".to_string())
                }
            }
        });
    let metrics = metrics::CdcMetrics::register(svc.metrics());
    for (source, flag) in cfg.sources.iter().zip(streaming) {
        let p = pipeline::Pipeline {
            source: source.clone(),
            server: server.clone(),
            checkpoints: adapters::postgres::PgCheckpoints::new(own.clone()),
            bus: bus.clone(),
            metrics: metrics.clone(),
            clock: Arc::new(SystemClock),
            default_tenant: cfg.service.default_tenant.clone(),
            max_slot_wal_keep_size: cfg.max_slot_wal_keep_size.clone(),
            max_batch_records: cfg.max_batch_records.max(1),
            status_interval: cfg.status_interval,
            streaming: flag,
        };
        svc = svc.task("pipeline", move |stop| p.run(stop));
    }
    let (sources, every) = (cfg.sources.clone(), cfg.lag_poll_interval);
    svc.task("lag-poll", move |stop| {
        pipeline::poll_lag(server, sources, metrics, every, stop)
    })
    .run(listeners, shutdown)
    .await?;
    Ok(())
}
