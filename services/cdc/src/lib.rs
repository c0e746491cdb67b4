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
    events::{
        EventBus,
        kafka::{KafkaBus, KafkaSettings},
    },
    grpc,
    health::Readiness,
    http,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{Config, SourceConfig, TableRoute};
pub use domain::change::{HEADER_COMMIT_TS_MS, HEADER_LSN};

/// Stream every configured source and serve `/healthz`, `/readyz` (ready
/// while every source streams) and `/metrics` on HTTP until `shutdown`. The
/// gRPC listener serves no service yet (CDC has no RPC surface); it is taken
/// so every service starts the same way.
pub async fn run(
    cfg: Config,
    http_listener: TcpListener,
    grpc_listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let e = &cfg.service.endpoints;
    let own = db::connect(&e.postgres_url, &cfg.database).await?;
    db::migrate(&own, &adapters::postgres::MIGRATOR).await?;
    let bus: Arc<dyn EventBus> =
        Arc::new(KafkaBus::new(KafkaSettings::from_env(&e.kafka_brokers)?)?);
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
    let readiness = Readiness::new()
        .with_postgres("postgres", own.clone())
        .with_check("replication", move || {
            let all = flags.iter().all(|f| f.load(Ordering::Relaxed));
            async move {
                if all {
                    Ok(())
                } else {
                    Err("a source is not streaming".to_string())
                }
            }
        });
    let ops = http::Ops::from_config(&cfg.service, readiness);
    let metrics = metrics::CdcMetrics::register(&ops.metrics);

    let mut tasks = tokio::task::JoinSet::new();
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
        tasks.spawn(p.run(shutdown.clone()));
    }
    tasks.spawn(pipeline::poll_lag(
        server,
        cfg.sources.clone(),
        metrics,
        cfg.lag_poll_interval,
        shutdown.clone(),
    ));

    let (h, g) = tokio::join!(
        http::serve(
            http_listener,
            http::router(axum::Router::new(), ops),
            shutdown.clone()
        ),
        grpc::serve(
            grpc_listener,
            tonic::service::Routes::default(),
            cfg.service.request_timeout,
            shutdown.clone()
        ),
    );
    tasks.join_all().await;
    h?;
    g?;
    Ok(())
}
