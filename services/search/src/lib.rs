//! Search: a product index projected from `product.events` (CDC of the
//! catalog outbox). Each event is hydrated from the catalog's `GetProduct` and
//! written under external versioning (older or repeated versions never
//! overwrite newer ones; deletes are tombstones). Queries (gRPC `Query`) give
//! BM25 full text over title and description, filters, facets, sorts,
//! pagination and typeahead. The index is Tantivy (native default) or
//! OpenSearch, behind the [`ports::SearchIndex`] port.

pub mod adapters;
pub mod api;
pub mod config;
pub mod domain;
pub mod indexer;
pub mod ports;
pub mod reconcile;

use std::{sync::Arc, time::Duration};

use prometheus_client::metrics::{counter::Counter, family::Family, histogram::Histogram};
use shopstream_platform::{
    clock::SystemClock,
    events::{
        dlq_topic,
        kafka::KafkaBus,
        runner::{self, RunnerConfig},
    },
    grpc,
    metrics::Metrics,
    service::{Listeners, Service},
};
use tokio_util::sync::CancellationToken;

pub use config::{Backend, Config};
pub use reconcile::{ReconcileReport, reconcile};

use crate::{
    adapters::{
        catalog_grpc::GrpcCatalog,
        opensearch::OpenSearchIndex,
        tantivy::{TantivyIndex, TantivySettings},
    },
    indexer::{Indexer, OutcomeLabels},
    ports::{CatalogSource, SearchIndex},
};

/// Partitions `product.events` is created with when absent.
const TOPIC_PARTITIONS: i32 = 3;
/// Attempts per event before it is dead-lettered: with the runner's backoff
/// (50 ms doubling, capped at 2 s) a catalog outage of ~5 s is ridden out.
const HANDLER_MAX_ATTEMPTS: u32 = 8;
/// Pause before a failed consumer loop starts again.
const CONSUMER_RESTART_DELAY: Duration = Duration::from_secs(1);

/// Search-specific metrics, registered on the service's registry.
#[derive(Clone)]
pub struct SearchMetrics {
    /// `shopstream_search_commit_to_searchable_seconds`.
    pub commit_to_searchable: Histogram,
    /// `shopstream_search_index_writes_total{outcome}`.
    pub index_writes: Family<OutcomeLabels, Counter>,
    /// `shopstream_search_index_commit_seconds` (the Tantivy backend only).
    pub index_commit: Histogram,
}

impl std::fmt::Debug for SearchMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SearchMetrics")
    }
}

impl SearchMetrics {
    pub fn register(metrics: &Metrics) -> SearchMetrics {
        // 5 ms .. ~40 s
        let commit_to_searchable = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.005, 2.0, 14),
        );
        let index_writes = Family::<OutcomeLabels, Counter>::default();
        // 1 ms .. ~8 s
        let index_commit = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 14),
        );
        metrics.register(
            "search_index_commit_seconds",
            "One index commit: the writer's commit and the reader's reload (Tantivy)",
            index_commit.clone(),
        );
        metrics.register(
            "search_commit_to_searchable_seconds",
            "Catalog commit (CDC event) to searchable in the index",
            commit_to_searchable.clone(),
        );
        metrics.register(
            "search_index_writes",
            "Index writes by outcome (written, tombstoned, stale)",
            index_writes.clone(),
        );
        SearchMetrics {
            commit_to_searchable,
            index_writes,
            index_commit,
        }
    }
}

/// Open the configured index backend, reporting to `metrics` if given.
pub async fn open_index(
    cfg: &Config,
    metrics: Option<&SearchMetrics>,
) -> anyhow::Result<Arc<dyn SearchIndex>> {
    let latency = metrics.map(|m| m.commit_to_searchable.clone());
    Ok(match &cfg.backend {
        Backend::Tantivy { index_dir } => {
            let index = TantivyIndex::open(
                index_dir,
                TantivySettings {
                    commit_interval: cfg.commit_interval,
                    commit_batch_docs: cfg.commit_batch_docs,
                },
                Arc::new(SystemClock),
                latency,
            )?;
            if let Some(m) = metrics {
                index.observe_commits(m.index_commit.clone());
            }
            Arc::new(index)
        }
        Backend::OpenSearch { url, index } => {
            Arc::new(OpenSearchIndex::connect(url, index, Arc::new(SystemClock), latency).await?)
        }
    })
}

/// The catalog client for hydration and reconcile.
pub fn catalog_client(cfg: &Config) -> anyhow::Result<Arc<dyn CatalogSource>> {
    let channel = grpc::channel(
        &cfg.catalog_url,
        Duration::from_secs(5),
        cfg.service.request_timeout,
    )?;
    Ok(Arc::new(GrpcCatalog::new(channel)))
}

/// `shopstream search reconcile`: open the configured index and catalog
/// client and reconcile the default tenant. With Tantivy the index directory
/// must not be open in a running search service (one writer per index).
pub async fn reconcile_with_config(cfg: &Config) -> anyhow::Result<ReconcileReport> {
    let index = open_index(cfg, None).await?;
    let catalog = catalog_client(cfg)?;
    Ok(reconcile(&*catalog, &*index, &cfg.service.default_tenant).await?)
}

shopstream_platform::service_entry! {
    /// Search as `shopstream serve search` and the test kit start it.
    Server { name: "search", grpc: true, config: Config, run: run }
}

/// Serve gRPC `Query` and the HTTP endpoints, and consume `product.events`,
/// until `shutdown` (see [`Service::run`]).
pub async fn run(
    cfg: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let svc = Service::new(&cfg.service);
    let metrics = SearchMetrics::register(svc.metrics());
    let index = open_index(&cfg, Some(&metrics)).await?;
    let catalog = catalog_client(&cfg)?;
    let bus = KafkaBus::connect(&cfg.service.endpoints)?;
    bus.ensure_topic(&cfg.topic, TOPIC_PARTITIONS).await?;
    bus.ensure_topic(&dlq_topic(&cfg.topic), 1).await?;
    let indexer = Arc::new(Indexer {
        catalog: catalog.clone(),
        index: index.clone(),
        default_tenant: cfg.service.default_tenant.clone(),
        outcomes: metrics.index_writes.clone(),
    });
    let tenant = cfg.service.default_tenant.clone();
    let reconcile_on_start = cfg.reconcile_on_start;
    let (start_catalog, start_index) = (catalog.clone(), index.clone());
    let rcfg = RunnerConfig {
        max_attempts: HANDLER_MAX_ATTEMPTS,
        health: runner::ConsumerHealth::new(svc.metrics(), &cfg.consumer_group),
        ..RunnerConfig::new(&cfg.consumer_group, &[cfg.topic.as_str()])
    };
    let final_index = index.clone();
    svc.check("consumer", rcfg.health.readiness())
        .http(api::http::routes(
            index.clone(),
            catalog.clone(),
            cfg.service.default_tenant.clone(),
        ))
        .grpc(
            shopstream_proto::search::v1::search_service_server::SearchServiceServer::new(
                api::grpc::GrpcApi {
                    index,
                    default_tenant: cfg.service.default_tenant.clone(),
                },
            ),
        )
        .task("reconcile-at-start", move |_| async move {
            if reconcile_on_start
                && let Err(e) = reconcile(&*start_catalog, &*start_index, &tenant).await
            {
                tracing::warn!(error = %e, "reconcile at start failed");
            }
        })
        .task("product-events", move |stop| {
            runner::run_until_stopped(
                bus,
                Arc::new(shopstream_platform::events::dedupe::HandlerDedupes),
                indexer,
                rcfg,
                stop,
                CONSUMER_RESTART_DELAY,
            )
        })
        // Make what was staged durable before leaving.
        .on_stop(async move {
            if let Err(e) = final_index.refresh().await {
                tracing::warn!(error = %e, "final index commit failed");
            }
        })
        .run(listeners, shutdown)
        .await?;
    Ok(())
}
