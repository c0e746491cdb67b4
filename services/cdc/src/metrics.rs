//! The service's metrics, labelled by source database, on the process
//! registry (prefix `shopstream_`):
//! - `cdc_lag_ms`: Kafka-acknowledgement time minus commit time of the last
//!   transaction published (Debezium's `MilliSecondsBehindSource`);
//! - `cdc_last_commit_ts_ms`: commit time of the last transaction seen, so
//!   `time() * 1000 - cdc_last_commit_ts_ms` is "now minus last commit";
//! - `cdc_lag_bytes`: server WAL position minus the slot's confirmed flush LSN;
//! - `cdc_records_published_total`, `cdc_transactions_total`,
//!   `cdc_transactions_skipped_total` (at or below the checkpoint: replays),
//!   `cdc_records_rejected_total` (malformed outbox rows), `cdc_session_errors_total`;
//! - `cdc_commit_to_ack_seconds`: commit → Kafka acknowledgement latency.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
};
use shopstream_platform::metrics::Metrics;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct SourceLabels {
    pub database: String,
}

fn latency_histogram() -> Histogram {
    // 1 ms .. ~33 s
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 2.0, 16,
    ))
}

/// Cheap to clone; every clone updates the same series.
#[derive(Clone)]
pub struct CdcMetrics {
    pub lag_ms: Family<SourceLabels, Gauge>,
    pub last_commit_ts_ms: Family<SourceLabels, Gauge>,
    pub lag_bytes: Family<SourceLabels, Gauge>,
    pub records_published: Family<SourceLabels, Counter>,
    pub transactions: Family<SourceLabels, Counter>,
    pub transactions_skipped: Family<SourceLabels, Counter>,
    pub records_rejected: Family<SourceLabels, Counter>,
    pub session_errors: Family<SourceLabels, Counter>,
    pub commit_to_ack_seconds: Family<SourceLabels, Histogram, fn() -> Histogram>,
}

impl std::fmt::Debug for CdcMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CdcMetrics")
    }
}

impl CdcMetrics {
    /// Create the series and register them on `registry`.
    pub fn register(registry: &Metrics) -> CdcMetrics {
        let m = CdcMetrics {
            lag_ms: Family::default(),
            last_commit_ts_ms: Family::default(),
            lag_bytes: Family::default(),
            records_published: Family::default(),
            transactions: Family::default(),
            transactions_skipped: Family::default(),
            records_rejected: Family::default(),
            session_errors: Family::default(),
            commit_to_ack_seconds: Family::new_with_constructor(latency_histogram),
        };
        registry.register(
            "cdc_lag_ms",
            "Kafka ack time minus commit time of the last published transaction",
            m.lag_ms.clone(),
        );
        registry.register(
            "cdc_last_commit_ts_ms",
            "Commit time of the last transaction seen (Unix ms)",
            m.last_commit_ts_ms.clone(),
        );
        registry.register(
            "cdc_lag_bytes",
            "Server WAL position minus the slot's confirmed flush LSN",
            m.lag_bytes.clone(),
        );
        registry.register(
            "cdc_records_published",
            "Records Kafka acknowledged",
            m.records_published.clone(),
        );
        registry.register(
            "cdc_transactions",
            "Transactions published",
            m.transactions.clone(),
        );
        registry.register(
            "cdc_transactions_skipped",
            "Transactions at or below the checkpoint, skipped",
            m.transactions_skipped.clone(),
        );
        registry.register(
            "cdc_records_rejected",
            "Outbox rows that are not valid events, skipped",
            m.records_rejected.clone(),
        );
        registry.register(
            "cdc_session_errors",
            "Replication sessions that ended in an error",
            m.session_errors.clone(),
        );
        registry.register(
            "cdc_commit_to_ack_seconds",
            "Commit to Kafka acknowledgement latency",
            m.commit_to_ack_seconds.clone(),
        );
        m
    }

    pub fn labels(database: &str) -> SourceLabels {
        SourceLabels {
            database: database.to_string(),
        }
    }
}
