//! The consumer loop every service uses: receive, skip what this group already
//! processed, call the handler with bounded retries and backoff, send what
//! still fails to `<topic>.dlq` with the reason in a header, then acknowledge.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::{Delivery, EventBus, EventError, dedupe::Deduper, dlq_topic, header};

/// Why a handler failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// Worth retrying (a dependency was down).
    #[error("retryable: {0}")]
    Retryable(String),
    /// Retrying cannot help (invalid payload): dead-letter at once.
    #[error("permanent: {0}")]
    Permanent(String),
}

/// Processes one event. Must be idempotent: an event can arrive twice when a
/// consumer crashes between the effect and the acknowledgement.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError>;
}

#[derive(Debug, Clone)]
pub struct RunnerConfig {
    pub group: String,
    pub topics: Vec<String>,
    /// Attempts per event before it is dead-lettered (including the first).
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// How long one poll waits before checking for shutdown.
    pub poll_wait: Duration,
}

impl RunnerConfig {
    pub fn new(group: &str, topics: &[&str]) -> RunnerConfig {
        RunnerConfig {
            group: group.to_string(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            max_attempts: 3,
            backoff_base: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            poll_wait: Duration::from_millis(250),
        }
    }
}

/// What a run did, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunStats {
    pub processed: u64,
    pub duplicates_skipped: u64,
    pub retries: u64,
    pub dead_lettered: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error(transparent)]
    Bus(#[from] EventError),
    #[error("dedupe store: {0}")]
    Dedupe(#[from] sqlx::Error),
}

/// Exponential backoff for attempt `n` (1-based), capped.
pub fn backoff(cfg: &RunnerConfig, attempt: u32) -> Duration {
    exponential_backoff(cfg.backoff_base, cfg.backoff_max, attempt)
}

/// `base` doubled for each attempt after the first (1-based), at most `max`.
pub fn exponential_backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
    base.saturating_mul(factor).min(max)
}

/// Consume until `shutdown` is cancelled (or, with `stop_when_idle`, until a
/// poll returns nothing), then commit and leave the group.
pub async fn run(
    bus: Arc<dyn EventBus>,
    dedupe: Arc<dyn Deduper>,
    handler: Arc<dyn Handler>,
    cfg: RunnerConfig,
    shutdown: CancellationToken,
    stop_when_idle: bool,
) -> Result<RunStats, RunnerError> {
    let mut sub = bus.subscribe(&cfg.group, &cfg.topics).await?;
    let mut stats = RunStats::default();
    let result = loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            n = sub.next(cfg.poll_wait) => n,
        };
        let d = match next {
            Ok(Some(d)) => d,
            Ok(None) if stop_when_idle => break Ok(()),
            Ok(None) => continue,
            Err(e) => break Err(RunnerError::from(e)),
        };
        if let Err(e) = process(&*bus, &*dedupe, &*handler, &cfg, &d, &mut stats).await {
            break Err(e);
        }
        if let Err(e) = sub.ack(&d).await {
            break Err(e.into());
        }
    };
    let closed = sub.close().await;
    result?;
    closed?;
    Ok(stats)
}

/// A service's consumer task: [`run`] until `stop`, starting again
/// `restart_delay` after each failure (a broker outage, a lost group
/// membership), so one bad spell never ends the service's consumption.
pub async fn run_until_stopped(
    bus: Arc<dyn EventBus>,
    dedupe: Arc<dyn Deduper>,
    handler: Arc<dyn Handler>,
    cfg: RunnerConfig,
    stop: CancellationToken,
    restart_delay: Duration,
) {
    let topics = cfg.topics.join(",");
    while !stop.is_cancelled() {
        let run = run(
            bus.clone(),
            dedupe.clone(),
            handler.clone(),
            cfg.clone(),
            stop.clone(),
            false,
        );
        match run.await {
            Ok(stats) => tracing::info!(?stats, %topics, "consumer stopped"),
            Err(e) => {
                tracing::error!(error = %e, %topics, "consumer failed, restarting");
                crate::shutdown::sleep_or_stop(&stop, restart_delay).await;
            }
        }
    }
}

async fn process(
    bus: &dyn EventBus,
    dedupe: &dyn Deduper,
    handler: &dyn Handler,
    cfg: &RunnerConfig,
    d: &Delivery,
    stats: &mut RunStats,
) -> Result<(), RunnerError> {
    let id = d.envelope.id;
    if let Some(err) = d.envelope.headers.get("decode-error") {
        dead_letter(bus, cfg, d, err, 1).await?;
        stats.dead_lettered += 1;
        return Ok(());
    }
    if dedupe.seen(&cfg.group, id).await? {
        stats.duplicates_skipped += 1;
        return Ok(());
    }
    let mut attempt = 1;
    loop {
        match handler.handle(d).await {
            Ok(()) => {
                dedupe.mark(&cfg.group, id).await?;
                stats.processed += 1;
                return Ok(());
            }
            Err(HandlerError::Retryable(reason)) if attempt < cfg.max_attempts => {
                tracing::warn!(event_id = %id, attempt, %reason, "handler failed, retrying");
                stats.retries += 1;
                tokio::time::sleep(backoff(cfg, attempt)).await;
                attempt += 1;
            }
            Err(e) => {
                tracing::error!(event_id = %id, attempt, error = %e, "dead-lettering event");
                dead_letter(bus, cfg, d, &e.to_string(), attempt).await?;
                dedupe.mark(&cfg.group, id).await?;
                stats.dead_lettered += 1;
                return Ok(());
            }
        }
    }
}

async fn dead_letter(
    bus: &dyn EventBus,
    cfg: &RunnerConfig,
    d: &Delivery,
    reason: &str,
    attempts: u32,
) -> Result<(), EventError> {
    let mut e = d.envelope.clone();
    let h = &mut e.headers;
    h.insert(header::DLQ_REASON.into(), reason.to_string());
    h.insert(header::DLQ_SOURCE_TOPIC.into(), d.topic.clone());
    h.insert(header::DLQ_SOURCE_PARTITION.into(), d.partition.to_string());
    h.insert(header::DLQ_SOURCE_OFFSET.into(), d.offset.to_string());
    h.insert(header::DLQ_CONSUMER_GROUP.into(), cfg.group.clone());
    h.insert(header::DLQ_ATTEMPTS.into(), attempts.to_string());
    if e.id.is_nil() {
        // Undecodable record: give the dead letter an identity of its own.
        e.id = uuid::Uuid::now_v7();
        e.event_type = "undecodable".into();
        e.tenant_id = "unknown".into();
    }
    bus.publish(&dlq_topic(&d.topic), &e).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let cfg = RunnerConfig::new("g", &["t"]);
        assert_eq!(backoff(&cfg, 1), Duration::from_millis(50));
        assert_eq!(backoff(&cfg, 2), Duration::from_millis(100));
        assert_eq!(backoff(&cfg, 3), Duration::from_millis(200));
        assert_eq!(backoff(&cfg, 40), Duration::from_secs(2));
    }
}
