//! The consumer loop every service uses: receive, skip what this group already
//! processed, call the handler with bounded retries and backoff, send what
//! still fails to `<topic>.dlq` with the reason in a header, then acknowledge.
//! Records that have already arrived together go to a handler that takes
//! batches ([`Handler::batch_max`]) in one call, each still settled alone.
//!
//! The runner also watches its own progress. It reads the group's lag every
//! [`LAG_REFRESH`]; when no record has arrived for [`STALL_AFTER`] while the
//! group is behind and not moving, the subscription is stalled: the runner
//! abandons it, logs an error and subscribes again. What it sees goes to a
//! [`ConsumerHealth`] the service passes in: lag, restarts and stalls on
//! `/metrics`, and a readiness check.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::{
    Delivery, EventBus, EventError, FaultLookup, GroupLag, dedupe::Deduper, dlq_topic, header,
};
use crate::{faults, metrics::Metrics};

/// No record for this long while the group is behind and not moving: the
/// subscription is stalled and is abandoned.
pub const STALL_AFTER: Duration = Duration::from_secs(20);
/// How often the runner reads its group's lag (the detector and `/metrics`).
pub const LAG_REFRESH: Duration = Duration::from_secs(5);
/// While the group is caught up and no record arrives, the lag is read less
/// often, the wait doubling up to this many times `lag_refresh` (20 s by
/// default); a record arriving brings the wait back to `lag_refresh`. At
/// rest these reads were most of what the stack asked the broker (ADR 0017).
pub const LAG_REFRESH_IDLE_MAX: u32 = 4;
/// Bound on one lag read.
pub const LAG_TIMEOUT: Duration = Duration::from_secs(10);
/// This many restarts within [`RESTART_WINDOW`], with no record since the
/// last, make a consumer "restarting repeatedly": not ready.
pub const REPEATED_RESTARTS: usize = 3;
pub const RESTART_WINDOW: Duration = Duration::from_secs(60);
/// A lag reading counts for the detector only when taken this long after the
/// last record (acknowledgements are committed in batches, every 200 ms).
const COMMIT_SETTLE: Duration = Duration::from_secs(1);
/// How often a held handler ([`Handler::held_by`]) is asked again.
const HOLD_POLL: Duration = faults::POLL_EVERY;

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

    /// Handle `batch` (deliveries that had already arrived together, in
    /// order; none seen before by this group): one result per delivery, in
    /// order, each meaning what [`Handler::handle`]'s would. The default
    /// handles them one by one; a handler whose writes can share one
    /// statement (the feed's signal log) overrides it and
    /// [`Handler::batch_max`]. A delivery that failed retryably is then
    /// retried alone.
    async fn handle_batch(&self, batch: &[&Delivery]) -> Vec<Result<(), HandlerError>> {
        let mut results = Vec::with_capacity(batch.len());
        for d in batch {
            results.push(self.handle(d).await);
        }
        results
    }

    /// The most deliveries the runner gives [`Handler::handle_batch`] at
    /// once: it takes what has already arrived, never waiting for more.
    /// 1 (the default): each goes to [`Handler::handle`] alone.
    fn batch_max(&self) -> usize {
        1
    }

    /// The fault holding this handler back, if one is (`None` by default).
    /// While it is `Some`, the runner applies nothing: it keeps the event it
    /// holds unacknowledged and waits, and its stall detector reports a
    /// stall *by that fault* (counted, not restarted: a new subscription
    /// would be held the same way, and readiness stays as it was).
    fn held_by(&self) -> Option<&'static str> {
        None
    }
}

#[derive(Debug, Clone)]
pub struct RunnerConfig {
    pub group: String,
    pub topics: Vec<String>,
    /// Attempts per event before it is dead-lettered (including the first).
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// How long one poll waits for a record before the runner looks for a
    /// stall or an injected crash again (a stop ends the wait at once).
    pub poll_wait: Duration,
    /// See [`STALL_AFTER`].
    pub stall_after: Duration,
    /// See [`LAG_REFRESH`].
    pub lag_refresh: Duration,
    /// Where the runner reports; [`RunnerConfig::new`] gives one registered
    /// nowhere, a service passes [`ConsumerHealth::new`].
    pub health: ConsumerHealth,
    /// The fault catalog (`consumer-crash-loop`).
    pub fault_value: FaultLookup,
}

impl RunnerConfig {
    pub fn new(group: &str, topics: &[&str]) -> RunnerConfig {
        RunnerConfig {
            group: group.to_string(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            max_attempts: 3,
            backoff_base: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            // Each return wakes the task (stall and fault checks need no
            // more than once a second); a record or the stop wakes it at once.
            poll_wait: Duration::from_secs(1),
            stall_after: STALL_AFTER,
            lag_refresh: LAG_REFRESH,
            health: ConsumerHealth::detached(group),
            fault_value: faults::value,
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
    /// The stall detector gave up on the subscription.
    #[error("stalled: no record for {quiet_s} s while the group is {lag} records behind")]
    Stalled { quiet_s: u64, lag: i64 },
    /// The `consumer-crash-loop` fault.
    #[error("crashed by fault consumer-crash-loop (every {every_s} s)")]
    CrashInjected { every_s: i64 },
}

impl RunnerError {
    /// The `reason` label of `consumer_restarts_total` for this failure.
    pub fn reason(&self) -> &'static str {
        match self {
            RunnerError::Bus(_) => "bus",
            RunnerError::Dedupe(_) => "dedupe",
            RunnerError::Stalled { .. } => "stalled",
            RunnerError::CrashInjected { .. } => "fault",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct LagLabels {
    pub group: String,
    pub topic: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReasonLabels {
    pub group: String,
    pub reason: String,
}

/// A stall the detector saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stall {
    /// No record while behind: the subscription is abandoned.
    NoProgress { quiet_s: u64, lag: i64 },
    /// The handler is held by this fault ([`Handler::held_by`]).
    Fault(&'static str),
}

#[derive(Debug, Default)]
struct HealthState {
    /// Subscribed, received a record, or saw the group's position move.
    progress_at: Option<Instant>,
    last_record_at: Option<Instant>,
    /// The latest lag reading: when, total, position sum.
    lag: Option<(Instant, i64, i64)>,
    stalled: Option<Stall>,
    /// The quiet spell the current stall was counted for.
    stall_counted_since: Option<Instant>,
    held_by: Option<&'static str>,
    /// Restarts within the window: when and why.
    restarts: VecDeque<(Instant, &'static str)>,
}

struct HealthInner {
    group: String,
    lag: Family<LagLabels, Gauge>,
    restarts: Family<ReasonLabels, Counter>,
    stalls: Family<ReasonLabels, Counter>,
    state: Mutex<HealthState>,
    /// Notified on every record received (the lag reader's cue to read at
    /// the usual pace again).
    arrived: tokio::sync::Notify,
}

/// A consumer's health as its runner sees it, shared with the service:
/// `shopstream_consumer_lag{group,topic}` (records behind, summed over
/// partitions, refreshed every [`LAG_REFRESH`] while records arrive and up
/// to [`LAG_REFRESH_IDLE_MAX`] times less often while caught up),
/// `shopstream_consumer_restarts_total{group,reason}` (`stalled`, `fault`,
/// `bus`, `dedupe`), `shopstream_consumer_stalls_total{group,reason}`
/// (`stalled`, `fault`), and a readiness check ([`ConsumerHealth::status`]).
/// Cheap to clone.
#[derive(Clone)]
pub struct ConsumerHealth {
    inner: Arc<HealthInner>,
}

impl std::fmt::Debug for ConsumerHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerHealth")
            .field("group", &self.inner.group)
            .finish()
    }
}

impl ConsumerHealth {
    /// The health of consumer group `group`, on `metrics` (one per group a
    /// service consumes in).
    pub fn new(metrics: &Metrics, group: &str) -> ConsumerHealth {
        let h = ConsumerHealth::detached(group);
        metrics.register(
            "consumer_lag",
            "Records the consumer group has not committed, per topic (summed over partitions)",
            h.inner.lag.clone(),
        );
        metrics.register(
            "consumer_restarts",
            "Times the consumer abandoned its subscription and subscribed again, by reason",
            h.inner.restarts.clone(),
        );
        metrics.register(
            "consumer_stalls",
            "Stalls the consumer's detector saw (no record while behind), by reason",
            h.inner.stalls.clone(),
        );
        h
    }

    /// One registered nowhere (tests, tools).
    pub fn detached(group: &str) -> ConsumerHealth {
        ConsumerHealth {
            inner: Arc::new(HealthInner {
                group: group.to_string(),
                lag: Family::default(),
                restarts: Family::default(),
                stalls: Family::default(),
                state: Mutex::new(HealthState::default()),
                arrived: tokio::sync::Notify::new(),
            }),
        }
    }

    pub fn group(&self) -> &str {
        &self.inner.group
    }

    fn state(&self) -> std::sync::MutexGuard<'_, HealthState> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reason(&self, reason: &str) -> ReasonLabels {
        ReasonLabels {
            group: self.inner.group.clone(),
            reason: reason.to_string(),
        }
    }

    /// The latest lag reading's total, if one was taken.
    pub fn lag(&self) -> Option<i64> {
        self.state().lag.map(|(_, total, _)| total)
    }

    /// Restarts counted with `reason`.
    pub fn restarts(&self, reason: &str) -> u64 {
        self.inner
            .restarts
            .get_or_create(&self.reason(reason))
            .get()
    }

    /// Stalls counted with `reason`.
    pub fn stalls(&self, reason: &str) -> u64 {
        self.inner.stalls.get_or_create(&self.reason(reason)).get()
    }

    /// The stall the detector currently sees, if any.
    pub fn stalled(&self) -> Option<Stall> {
        self.state().stalled.clone()
    }

    /// Ready unless the consumer is stalled (not by a fault) or has
    /// restarted [`REPEATED_RESTARTS`] times within [`RESTART_WINDOW`]
    /// without receiving a record since; ready again once it receives one.
    pub fn status(&self) -> Result<(), String> {
        let now = Instant::now();
        let mut st = self.state();
        let group = &self.inner.group;
        if let Some(Stall::NoProgress { quiet_s, lag }) = st.stalled {
            return Err(format!(
                "consumer group {group} is stalled: no record for {quiet_s} s while {lag} behind"
            ));
        }
        while st
            .restarts
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > RESTART_WINDOW)
        {
            st.restarts.pop_front();
        }
        let last_restart = st.restarts.back().map(|(at, _)| *at);
        let progressed_since = match (st.last_record_at, last_restart) {
            (Some(rec), Some(restart)) => rec > restart,
            _ => false,
        };
        if st.restarts.len() >= REPEATED_RESTARTS && !progressed_since {
            let mut reasons: Vec<&str> = st.restarts.iter().map(|(_, r)| *r).collect();
            reasons.sort_unstable();
            reasons.dedup();
            return Err(format!(
                "consumer group {group} restarted {} times within {} s ({}) with no record since",
                st.restarts.len(),
                RESTART_WINDOW.as_secs(),
                reasons.join(", ")
            ));
        }
        Ok(())
    }

    /// [`ConsumerHealth::status`] as a check for `Service::check`.
    pub fn readiness(
        &self,
    ) -> impl Fn() -> std::future::Ready<Result<(), String>> + Send + Sync + 'static {
        let h = self.clone();
        move || std::future::ready(h.status())
    }

    fn subscribed(&self) {
        self.state().progress_at = Some(Instant::now());
    }

    fn received(&self) {
        let now = Instant::now();
        let mut st = self.state();
        st.progress_at = Some(now);
        st.last_record_at = Some(now);
        if st.stalled.take().is_some() {
            tracing::info!(group = %self.inner.group, "consumer progresses again");
        }
        drop(st);
        self.inner.arrived.notify_one();
    }

    fn held(&self, by: Option<&'static str>) {
        self.state().held_by = by;
    }

    fn restarted(&self, reason: &'static str) {
        self.inner
            .restarts
            .get_or_create(&self.reason(reason))
            .inc();
        let mut st = self.state();
        st.restarts.push_back((Instant::now(), reason));
        while st.restarts.len() > REPEATED_RESTARTS.max(1) * 4 {
            st.restarts.pop_front();
        }
    }

    /// Record a lag reading of `topics` (each gets a gauge, 0 included).
    fn lag_read(&self, lag: &GroupLag, topics: &[String]) {
        let by_topic = lag.by_topic();
        for t in topics {
            self.inner
                .lag
                .get_or_create(&LagLabels {
                    group: self.inner.group.clone(),
                    topic: t.clone(),
                })
                .set(by_topic.get(t).copied().unwrap_or(0));
        }
        let now = Instant::now();
        let (total, positions) = (lag.total(), lag.position_sum());
        let mut st = self.state();
        if st.lag.is_some_and(|(_, _, before)| before != positions) {
            // The group moved (another member, or a commit of ours).
            st.progress_at = Some(now);
        }
        if total == 0 && st.stalled.take().is_some() {
            tracing::info!(group = %self.inner.group, "consumer caught up");
        }
        st.lag = Some((now, total, positions));
    }

    /// The stall the detector sees now, counted and logged when it starts.
    fn check_stall(&self, stall_after: Duration) -> Option<Stall> {
        let now = Instant::now();
        let mut st = self.state();
        let quiet_since = st.progress_at?;
        let (read_at, lag, _) = st.lag?;
        let quiet = now.duration_since(quiet_since);
        if quiet < stall_after || read_at < quiet_since + COMMIT_SETTLE || lag <= 0 {
            return None;
        }
        let stall = match st.held_by {
            Some(fault) => Stall::Fault(fault),
            None => Stall::NoProgress {
                quiet_s: quiet.as_secs(),
                lag,
            },
        };
        let new = st.stall_counted_since != Some(quiet_since)
            || st
                .stalled
                .as_ref()
                .is_none_or(|s| std::mem::discriminant(s) != std::mem::discriminant(&stall));
        if new {
            st.stall_counted_since = Some(quiet_since);
            let group = &self.inner.group;
            match &stall {
                Stall::Fault(fault) => {
                    self.inner.stalls.get_or_create(&self.reason("fault")).inc();
                    tracing::warn!(%group, %fault, lag, quiet_s = quiet.as_secs(), "consumer stalled by a fault; not restarting it");
                }
                Stall::NoProgress { .. } => {
                    self.inner
                        .stalls
                        .get_or_create(&self.reason("stalled"))
                        .inc();
                    tracing::error!(%group, lag, quiet_s = quiet.as_secs(), "consumer stalled: no record while the group is behind; abandoning the subscription");
                }
            }
        }
        st.stalled = Some(stall.clone());
        Some(stall)
    }
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
/// poll returns nothing), then commit and leave the group. Fails when the bus
/// or dedupe store does, when the stall detector gives up on the
/// subscription, and when the `consumer-crash-loop` fault hits this group;
/// the subscription is then abandoned (as a crash would), not closed.
pub async fn run(
    bus: Arc<dyn EventBus>,
    dedupe: Arc<dyn Deduper>,
    handler: Arc<dyn Handler>,
    cfg: RunnerConfig,
    shutdown: CancellationToken,
    stop_when_idle: bool,
) -> Result<RunStats, RunnerError> {
    let health = cfg.health.clone();
    let mut sub = bus.subscribe(&cfg.group, &cfg.topics).await?;
    health.subscribed();
    let started = Instant::now();
    let mut stats = RunStats::default();
    let result = {
        let consume = async {
            loop {
                if let Some(Stall::NoProgress { quiet_s, lag }) =
                    health.check_stall(cfg.stall_after)
                {
                    return Err(RunnerError::Stalled { quiet_s, lag });
                }
                if let Some(every_s) = (cfg.fault_value)("consumer-crash-loop", &cfg.group)
                    && started.elapsed() >= Duration::from_secs(u64::try_from(every_s).unwrap_or(0))
                {
                    return Err(RunnerError::CrashInjected { every_s });
                }
                let next = tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    n = sub.next(cfg.poll_wait) => n,
                };
                let d = match next {
                    Ok(Some(d)) => d,
                    Ok(None) if stop_when_idle => return Ok(()),
                    Ok(None) => continue,
                    Err(e) => return Err(RunnerError::from(e)),
                };
                health.received();
                // What else has already arrived goes with it, if the
                // handler takes batches (no wait for more).
                let mut batch = vec![d];
                while batch.len() < handler.batch_max() {
                    match sub.next(Duration::ZERO).await {
                        Ok(Some(d)) => batch.push(d),
                        Ok(None) => break,
                        Err(e) => return Err(RunnerError::from(e)),
                    }
                }
                // A held handler applies nothing: wait, the events unacknowledged.
                while let Some(fault) = handler.held_by() {
                    health.held(Some(fault));
                    health.check_stall(cfg.stall_after);
                    if !crate::shutdown::sleep_or_stop(&shutdown, HOLD_POLL).await {
                        return Ok(());
                    }
                }
                health.held(None);
                let parts = Parts {
                    bus: &*bus,
                    dedupe: &*dedupe,
                    handler: &*handler,
                    cfg: &cfg,
                };
                process(&parts, &batch, &mut stats).await?;
                for d in &batch {
                    sub.ack(d).await?;
                }
                // Applying it is progress too (it may have been held long).
                health.received();
            }
        };
        tokio::select! {
            r = consume => r,
            never = watch_lag(&*bus, &cfg) => match never {},
        }
    };
    health.held(None);
    match result {
        Err(e @ (RunnerError::Stalled { .. } | RunnerError::CrashInjected { .. })) => {
            sub.abort().await;
            Err(e)
        }
        result => {
            let closed = sub.close().await;
            result?;
            closed?;
            Ok(stats)
        }
    }
}

/// Read the group's lag into its health every `cfg.lag_refresh`, for as
/// long as it is polled.
async fn watch_lag(bus: &dyn EventBus, cfg: &RunnerConfig) -> std::convert::Infallible {
    let mut failing = false;
    let mut wait = cfg.lag_refresh;
    loop {
        let read_at = Instant::now();
        let caught_up = match tokio::time::timeout(LAG_TIMEOUT, bus.lag(&cfg.group, &cfg.topics))
            .await
        {
            Ok(Ok(lag)) => {
                cfg.health.lag_read(&lag, &cfg.topics);
                failing = false;
                lag.total() == 0
            }
            Ok(Err(e)) => {
                if !failing {
                    tracing::warn!(group = %cfg.group, error = %e, "reading the consumer group's lag failed");
                }
                failing = true;
                false
            }
            Err(_) => {
                if !failing {
                    tracing::warn!(group = %cfg.group, timeout_s = LAG_TIMEOUT.as_secs(), "reading the consumer group's lag timed out");
                }
                failing = true;
                false
            }
        };
        wait = next_lag_wait(wait, caught_up, cfg.lag_refresh);
        tokio::select! {
            () = tokio::time::sleep_until(read_at + wait) => {}
            // A record since the last read (or during this wait): the usual pace.
            () = cfg.health.inner.arrived.notified() => {
                wait = cfg.lag_refresh;
                tokio::time::sleep_until(read_at + wait).await;
            }
        }
    }
}

/// The wait before the next lag read: doubling while the group is caught
/// up, up to [`LAG_REFRESH_IDLE_MAX`] times `refresh`; `refresh` otherwise.
fn next_lag_wait(wait: Duration, caught_up: bool, refresh: Duration) -> Duration {
    if caught_up {
        (wait * 2).min(refresh * LAG_REFRESH_IDLE_MAX)
    } else {
        refresh
    }
}

/// A service's consumer task: [`run`] until `stop`, starting again
/// `restart_delay` after each failure (a broker outage, a lost group
/// membership, a stalled subscription, an injected crash), each counted in
/// `cfg.health` with its reason, so one bad spell never ends the service's
/// consumption.
pub async fn run_until_stopped(
    bus: Arc<dyn EventBus>,
    dedupe: Arc<dyn Deduper>,
    handler: Arc<dyn Handler>,
    cfg: RunnerConfig,
    stop: CancellationToken,
    restart_delay: Duration,
) {
    let topics = cfg.topics.join(",");
    let health = cfg.health.clone();
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
                let reason = e.reason();
                tracing::error!(error = %e, reason, group = %cfg.group, %topics, "consumer failed, restarting");
                health.restarted(reason);
                crate::shutdown::sleep_or_stop(&stop, restart_delay).await;
            }
        }
    }
}

/// What handling a record needs besides the record.
struct Parts<'a> {
    bus: &'a dyn EventBus,
    dedupe: &'a dyn Deduper,
    handler: &'a dyn Handler,
    cfg: &'a RunnerConfig,
}

/// Handle deliveries that arrived together (often just one): the
/// undecodable are dead-lettered and the ones this group saw before
/// skipped, one by one; the rest go to [`Handler::handle_batch`] in one
/// call, and each result is settled on its own ([`settle`]).
async fn process(
    p: &Parts<'_>,
    batch: &[Delivery],
    stats: &mut RunStats,
) -> Result<(), RunnerError> {
    let mut decoded = Vec::with_capacity(batch.len());
    for d in batch {
        if let Some(err) = d.envelope.headers.get("decode-error") {
            dead_letter(p.bus, p.cfg, d, err, 1).await?;
            stats.dead_lettered += 1;
        } else {
            decoded.push(d);
        }
    }
    // One question to the dedupe store for the whole batch.
    let ids: Vec<uuid::Uuid> = decoded.iter().map(|d| d.envelope.id).collect();
    let seen = p.dedupe.seen_all(&p.cfg.group, &ids).await?;
    let mut fresh = Vec::with_capacity(decoded.len());
    for (d, seen) in decoded.into_iter().zip(seen) {
        if seen {
            stats.duplicates_skipped += 1;
        } else {
            fresh.push(d);
        }
    }
    if fresh.is_empty() {
        return Ok(());
    }
    // Each record keeps its own span in its producer's trace; the batch's
    // work (one write for all) runs in the first one's.
    let spans: Vec<tracing::Span> = fresh.iter().map(|d| consume_span(p.cfg, d)).collect();
    let mut results = p
        .handler
        .handle_batch(&fresh)
        .instrument(spans[0].clone())
        .await
        .into_iter();
    let results: Vec<Result<(), HandlerError>> = fresh
        .iter()
        .map(|_| {
            results.next().unwrap_or_else(|| {
                Err(HandlerError::Retryable(
                    "the handler answered fewer results than deliveries".into(),
                ))
            })
        })
        .collect();
    // The records handled at the first attempt are marked processed
    // together, at once; the others are retried or dead-lettered one by one.
    let handled: Vec<uuid::Uuid> = fresh
        .iter()
        .zip(&results)
        .filter(|(_, r)| r.is_ok())
        .map(|(d, _)| d.envelope.id)
        .collect();
    p.dedupe.mark_all(&p.cfg.group, &handled).await?;
    for ((d, span), result) in fresh.into_iter().zip(&spans).zip(results) {
        match result {
            Ok(()) => {
                span.record("attempts", 1);
                done(p, d, stats);
            }
            Err(e) => settle(p, d, stats, span, Err(e)).await?,
        }
    }
    Ok(())
}

/// Count a record handled and marked processed.
fn done(p: &Parts<'_>, d: &Delivery, stats: &mut RunStats) {
    crate::metrics::count_consumed(&p.cfg.group, &d.topic);
    stats.processed += 1;
}

/// One span per handled record, continuing the trace the event carries:
/// the producer's request, then this consumer, in one waterfall.
fn consume_span(cfg: &RunnerConfig, d: &Delivery) -> tracing::Span {
    let span = tracing::info_span!(
        "consume",
        otel.name = %format!("consume {} {}", d.topic, d.envelope.event_type),
        otel.kind = "consumer",
        group = %cfg.group,
        topic = %d.topic,
        event_type = %d.envelope.event_type,
        event_id = %d.envelope.id,
        tenant_id = %d.envelope.tenant_id,
        attempts = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    let _ = tracing_opentelemetry::OpenTelemetrySpanExt::set_parent(
        &span,
        crate::telemetry::extract(&crate::telemetry::MapExtractor(&d.envelope.headers)),
    );
    span
}

/// What became of a record whose first attempt answered `handled`: marked
/// processed, retried alone with backoff while it fails retryably (up to
/// `cfg.max_attempts` in all), or dead-lettered.
async fn settle(
    p: &Parts<'_>,
    d: &Delivery,
    stats: &mut RunStats,
    span: &tracing::Span,
    mut handled: Result<(), HandlerError>,
) -> Result<(), RunnerError> {
    let id = d.envelope.id;
    let mut attempt = 1;
    loop {
        span.record("attempts", attempt);
        match handled {
            Ok(()) => {
                p.dedupe.mark(&p.cfg.group, id).await?;
                done(p, d, stats);
                return Ok(());
            }
            Err(HandlerError::Retryable(reason)) if attempt < p.cfg.max_attempts => {
                tracing::warn!(event_id = %id, attempt, %reason, "handler failed, retrying");
                stats.retries += 1;
                tokio::time::sleep(backoff(p.cfg, attempt)).await;
                attempt += 1;
                handled = p.handler.handle(d).instrument(span.clone()).await;
            }
            Err(e) => {
                tracing::error!(event_id = %id, attempt, error = %e, "dead-lettering event");
                dead_letter(p.bus, p.cfg, d, &e.to_string(), attempt).await?;
                p.dedupe.mark(&p.cfg.group, id).await?;
                crate::metrics::count_consumed(&p.cfg.group, &d.topic);
                span.record("otel.status_code", "error");
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
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    use super::*;
    use crate::{
        clock::SystemClock,
        events::{Envelope, Subscription, dedupe::MemoryDeduper, memory::MemoryBus},
        ids::SystemIdGen,
    };

    #[test]
    fn backoff_doubles_and_is_capped() {
        let cfg = RunnerConfig::new("g", &["t"]);
        assert_eq!(backoff(&cfg, 1), Duration::from_millis(50));
        assert_eq!(backoff(&cfg, 2), Duration::from_millis(100));
        assert_eq!(backoff(&cfg, 3), Duration::from_millis(200));
        assert_eq!(backoff(&cfg, 40), Duration::from_secs(2));
    }

    async fn publish(bus: &MemoryBus, topic: &str, n: u32) {
        for i in 0..n {
            let e = Envelope::new(
                "test.event",
                1,
                "t1",
                &format!("k{i}"),
                &serde_json::json!({ "i": i }),
                &SystemClock,
                &SystemIdGen,
            )
            .unwrap();
            bus.publish(topic, &e).await.unwrap();
        }
    }

    /// Counts what it handled; holds everything back while `held` is set.
    #[derive(Default)]
    struct Counting {
        handled: AtomicU32,
        held: AtomicBool,
    }

    #[async_trait]
    impl Handler for Counting {
        async fn handle(&self, _d: &Delivery) -> Result<(), HandlerError> {
            self.handled.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }

        fn held_by(&self) -> Option<&'static str> {
            self.held.load(Ordering::SeqCst).then_some("test-hold")
        }
    }

    /// The in-memory bus, except that its first `deaf` subscriptions never
    /// deliver anything and its first `refuse` subscribes fail: the
    /// subscription that went deaf after a broker pause, and a broker outage.
    struct Flaky {
        inner: MemoryBus,
        deaf: AtomicU32,
        refuse: AtomicU32,
        lag_reads: AtomicU32,
    }

    struct Deaf;

    #[async_trait]
    impl Subscription for Deaf {
        async fn next(&mut self, wait: Duration) -> Result<Option<Delivery>, EventError> {
            tokio::time::sleep(wait).await;
            Ok(None)
        }
        async fn ack(&mut self, _d: &Delivery) -> Result<(), EventError> {
            Ok(())
        }
        async fn close(self: Box<Self>) -> Result<(), EventError> {
            Ok(())
        }
        async fn abort(self: Box<Self>) {}
    }

    fn take_one(n: &AtomicU32) -> bool {
        n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
            .is_ok()
    }

    #[async_trait]
    impl EventBus for Flaky {
        async fn ensure_topic(&self, topic: &str, partitions: i32) -> Result<(), EventError> {
            self.inner.ensure_topic(topic, partitions).await
        }
        async fn publish(&self, topic: &str, event: &Envelope) -> Result<(), EventError> {
            self.inner.publish(topic, event).await
        }
        async fn subscribe(
            &self,
            group: &str,
            topics: &[String],
        ) -> Result<Box<dyn Subscription>, EventError> {
            if take_one(&self.refuse) {
                return Err(EventError::Broker("connection refused".into()));
            }
            if take_one(&self.deaf) {
                return Ok(Box::new(Deaf));
            }
            self.inner.subscribe(group, topics).await
        }
        async fn lag(&self, group: &str, topics: &[String]) -> Result<GroupLag, EventError> {
            self.lag_reads.fetch_add(1, Ordering::SeqCst);
            self.inner.lag(group, topics).await
        }
    }

    fn flaky(inner: &MemoryBus, deaf: u32, refuse: u32) -> Arc<Flaky> {
        Arc::new(Flaky {
            inner: inner.clone(),
            deaf: AtomicU32::new(deaf),
            refuse: AtomicU32::new(refuse),
            lag_reads: AtomicU32::new(0),
        })
    }

    /// Poll `cond` on (paused) time until it holds.
    async fn until(what: &str, cond: impl Fn() -> bool) {
        for _ in 0..100_000 {
            if cond() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("never: {what}");
    }

    fn start(
        bus: Arc<dyn EventBus>,
        handler: Arc<Counting>,
        cfg: RunnerConfig,
    ) -> (CancellationToken, tokio::task::JoinHandle<()>) {
        let stop = CancellationToken::new();
        let task = tokio::spawn(run_until_stopped(
            bus,
            Arc::new(MemoryDeduper::default()),
            handler,
            cfg,
            stop.clone(),
            Duration::from_secs(1),
        ));
        (stop, task)
    }

    #[tokio::test(start_paused = true)]
    async fn a_deaf_subscription_is_abandoned_reported_and_replaced() {
        let mem = MemoryBus::new();
        publish(&mem, "t", 5).await;
        let metrics = Metrics::new("svc");
        let cfg = RunnerConfig {
            health: ConsumerHealth::new(&metrics, "g"),
            ..RunnerConfig::new("g", &["t"])
        };
        let health = cfg.health.clone();
        let handler = Arc::new(Counting::default());
        let (stop, task) = start(flaky(&mem, 2, 0), handler.clone(), cfg);

        until("the first stall", || health.restarts("stalled") >= 1).await;
        let not_ready = health.status().unwrap_err();
        assert!(not_ready.contains("stalled"), "{not_ready}");
        assert_eq!(handler.handled.load(Ordering::SeqCst), 0);

        until("everything handled", || {
            handler.handled.load(Ordering::SeqCst) == 5
        })
        .await;
        until("lag read as 0", || health.lag() == Some(0)).await;
        assert_eq!(
            health.restarts("stalled"),
            2,
            "one restart per deaf subscription"
        );
        assert_eq!(health.stalls("stalled"), 2);
        assert_eq!(health.status(), Ok(()), "ready again once it progresses");
        let text = metrics.render();
        let restarts = crate::metrics::sum_series(
            &text,
            "shopstream_consumer_restarts_total",
            &["group=\"g\"", "reason=\"stalled\""],
        );
        assert_eq!(restarts, 2.0, "{text}");
        assert!(
            text.contains("shopstream_consumer_lag{") && text.contains("topic=\"t\""),
            "{text}"
        );
        stop.cancel();
        task.await.unwrap();
    }

    /// Takes batches of up to 10; the first try of event 7 fails retryably.
    #[derive(Default)]
    struct Batching {
        sizes: Mutex<Vec<usize>>,
        handled: Mutex<Vec<u64>>,
        failed_once: AtomicBool,
    }

    #[async_trait]
    impl Handler for Batching {
        async fn handle(&self, d: &Delivery) -> Result<(), HandlerError> {
            self.handle_batch(&[d]).await.remove(0)
        }

        async fn handle_batch(&self, batch: &[&Delivery]) -> Vec<Result<(), HandlerError>> {
            self.sizes.lock().unwrap().push(batch.len());
            batch
                .iter()
                .map(|d| {
                    let v: serde_json::Value = serde_json::from_slice(&d.envelope.payload).unwrap();
                    let i = v["i"].as_u64().unwrap();
                    if i == 7 && !self.failed_once.swap(true, Ordering::SeqCst) {
                        return Err(HandlerError::Retryable("flaky".into()));
                    }
                    self.handled.lock().unwrap().push(i);
                    Ok(())
                })
                .collect()
        }

        fn batch_max(&self) -> usize {
            10
        }
    }

    #[tokio::test(start_paused = true)]
    async fn records_already_here_go_to_a_batching_handler_together_and_a_failure_is_retried_alone()
    {
        let mem = MemoryBus::new();
        publish(&mem, "t", 25).await;
        let handler = Arc::new(Batching::default());
        let stats = run(
            Arc::new(mem.clone()),
            Arc::new(MemoryDeduper::default()),
            handler.clone(),
            RunnerConfig::new("g", &["t"]),
            CancellationToken::new(),
            true,
        )
        .await
        .unwrap();
        let sizes = handler.sizes.lock().unwrap().clone();
        assert_eq!(
            sizes.first(),
            Some(&10),
            "what had arrived went together: {sizes:?}"
        );
        assert!(
            sizes.iter().all(|n| *n <= 10),
            "never more than batch_max: {sizes:?}"
        );
        assert_eq!(
            sizes.iter().sum::<usize>(),
            26,
            "25, and event 7 again alone: {sizes:?}"
        );
        let mut handled = handler.handled.lock().unwrap().clone();
        handled.sort_unstable();
        assert_eq!(handled, (0..25).collect::<Vec<u64>>(), "each once");
        assert_eq!(
            (stats.processed, stats.retries, stats.dead_lettered),
            (25, 1, 0)
        );
        assert_eq!(
            mem.lag("g", &["t".into()]).await.unwrap().total(),
            0,
            "all acknowledged"
        );
    }

    #[test]
    fn the_lag_wait_doubles_while_caught_up_and_is_capped() {
        let r = LAG_REFRESH;
        assert_eq!(next_lag_wait(r, true, r), r * 2);
        assert_eq!(next_lag_wait(r * 2, true, r), r * 4);
        assert_eq!(next_lag_wait(r * 4, true, r), r * LAG_REFRESH_IDLE_MAX);
        assert_eq!(next_lag_wait(r * 4, false, r), r, "behind: the usual pace");
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_group_reads_its_lag_less_often_and_records_bring_the_pace_back() {
        let mem = MemoryBus::new();
        let bus = flaky(&mem, 0, 0);
        let handler = Arc::new(Counting::default());
        let (stop, task) = start(bus.clone(), handler.clone(), RunnerConfig::new("g", &["t"]));
        let reads = || bus.lag_reads.load(Ordering::SeqCst);

        // At rest the reads come at 0, 10, 30, 50, 70 and 90 s: the sixth
        // takes about 90 s (at every 5 s it would take 25 s).
        let started = Instant::now();
        until("six lag reads", || reads() >= 6).await;
        let idle = started.elapsed();
        assert!(
            idle >= Duration::from_secs(85),
            "six reads at rest took only {idle:?}"
        );

        // A record brings the usual pace back: the next read comes within
        // `lag_refresh` of the last, not 20 s after it.
        publish(&mem, "t", 1).await;
        let published = Instant::now();
        until("handled", || handler.handled.load(Ordering::SeqCst) == 1).await;
        until("the read after the record", || reads() >= 7).await;
        let next = published.elapsed();
        assert!(
            next <= LAG_REFRESH,
            "the read after a record came {next:?} later"
        );
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_consumer_that_is_caught_up_is_not_stalled() {
        let mem = MemoryBus::new();
        publish(&mem, "t", 3).await;
        let cfg = RunnerConfig::new("g", &["t"]);
        let health = cfg.health.clone();
        let handler = Arc::new(Counting::default());
        let (stop, task) = start(Arc::new(mem.clone()), handler.clone(), cfg);
        until("handled", || handler.handled.load(Ordering::SeqCst) == 3).await;
        // Long quiet, nothing behind: no stall, no restart.
        tokio::time::sleep(STALL_AFTER * 5).await;
        assert_eq!(health.lag(), Some(0));
        assert_eq!(health.stalled(), None);
        assert_eq!(health.restarts("stalled"), 0);
        assert_eq!(health.status(), Ok(()));
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn repeated_failures_make_it_unready_until_a_record_arrives() {
        let mem = MemoryBus::new();
        publish(&mem, "t", 1).await;
        let cfg = RunnerConfig::new("g", &["t"]);
        let health = cfg.health.clone();
        let handler = Arc::new(Counting::default());
        let (stop, task) = start(flaky(&mem, 0, 3), handler.clone(), cfg);
        until("three failures", || health.restarts("bus") == 3).await;
        let not_ready = health.status().unwrap_err();
        assert!(not_ready.contains("restarted 3 times"), "{not_ready}");
        assert!(not_ready.contains("bus"), "{not_ready}");
        until("handled", || handler.handled.load(Ordering::SeqCst) == 1).await;
        assert_eq!(health.status(), Ok(()));
        stop.cancel();
        task.await.unwrap();
    }

    fn crash_group_crashy_every_2_s(name: &str, component: &str) -> Option<i64> {
        (name == "consumer-crash-loop" && component == "crashy").then_some(2)
    }

    #[tokio::test(start_paused = true)]
    async fn consumer_crash_loop_crashes_only_the_group_it_targets() {
        let mem = MemoryBus::new();
        publish(&mem, "t", 4).await;
        let crashy = RunnerConfig {
            fault_value: crash_group_crashy_every_2_s,
            ..RunnerConfig::new("crashy", &["t"])
        };
        let calm = RunnerConfig {
            fault_value: crash_group_crashy_every_2_s,
            ..RunnerConfig::new("calm", &["t"])
        };
        let (crashy_health, calm_health) = (crashy.health.clone(), calm.health.clone());
        let (h1, h2) = (Arc::new(Counting::default()), Arc::new(Counting::default()));
        let (stop1, t1) = start(Arc::new(mem.clone()), h1.clone(), crashy);
        let (stop2, t2) = start(Arc::new(mem.clone()), h2.clone(), calm);
        until("three injected crashes", || {
            crashy_health.restarts("fault") >= 3
        })
        .await;
        assert!(
            h1.handled.load(Ordering::SeqCst) >= 4,
            "it still consumes between crashes"
        );
        assert_eq!(h2.handled.load(Ordering::SeqCst), 4);
        assert_eq!(calm_health.restarts("fault"), 0);
        for (stop, t) in [(stop1, t1), (stop2, t2)] {
            stop.cancel();
            t.await.unwrap();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_handler_waits_unacknowledged_and_is_a_stall_by_its_fault() {
        let mem = MemoryBus::new();
        // One event: once released, nothing else arrives to show progress
        // but applying it.
        publish(&mem, "t", 1).await;
        let cfg = RunnerConfig::new("g", &["t"]);
        let health = cfg.health.clone();
        let handler = Arc::new(Counting::default());
        handler.held.store(true, Ordering::SeqCst);
        let (stop, task) = start(Arc::new(mem.clone()), handler.clone(), cfg);

        until("a stall by the fault", || health.stalls("fault") == 1).await;
        assert_eq!(health.stalled(), Some(Stall::Fault("test-hold")));
        tokio::time::sleep(STALL_AFTER * 3).await;
        assert_eq!(handler.handled.load(Ordering::SeqCst), 0);
        assert_eq!(health.lag(), Some(1), "nothing acknowledged");
        assert_eq!(health.stalls("fault"), 1, "one stall, counted once");
        for reason in ["stalled", "fault", "bus", "dedupe"] {
            assert_eq!(
                health.restarts(reason),
                0,
                "a held consumer is not restarted"
            );
        }
        assert_eq!(
            health.status(),
            Ok(()),
            "a fault's stall leaves readiness alone"
        );

        handler.held.store(false, Ordering::SeqCst);
        until("handled", || handler.handled.load(Ordering::SeqCst) == 1).await;
        until("caught up", || health.lag() == Some(0)).await;
        assert_eq!(health.stalled(), None);
        assert_eq!(health.restarts("stalled"), 0, "released is not stalled");
        stop.cancel();
        task.await.unwrap();
    }
}
