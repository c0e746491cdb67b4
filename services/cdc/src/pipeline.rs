//! One source's pipeline: set up its publication and slot, stream pgoutput
//! from the slot, turn changes into events, publish them to Kafka, and only
//! then acknowledge the LSN to Postgres and store it as the checkpoint.
//!
//! At-least-once: nothing is acknowledged before Kafka holds it, so a crash
//! of this process, of Kafka or of Postgres replays from the last
//! acknowledged commit (duplicates possible, loss not). Transactions whose
//! commit lies at or below the checkpoint are skipped on replay. Any error
//! ends the session; the next one resumes from the checkpoint after a backoff.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use pgwire_replication::{Lsn, ReplicationClient, ReplicationConfig, ReplicationEvent, TlsConfig};
use shopstream_platform::{
    clock::Clock,
    events::{Envelope, EventBus, EventError},
    faults,
};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::{
    adapters::postgres::{self, PgCheckpoints},
    config::SourceConfig,
    domain::{
        change::{self, TableKind},
        stream::{self, RowChange, Step, StreamError, StreamState, TxnContext},
    },
    metrics::{CdcMetrics, SourceLabels},
};

/// Bound on connecting and on the server accepting START_REPLICATION.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Events buffered between the replication worker and the pipeline.
pub const EVENT_BUFFER: usize = 4_096;
/// Backoff between failed sessions.
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Session parameters that make text values render the same on every server:
/// ISO dates in UTC (so timestamptz maps to RFC 3339), exact floats.
pub const SESSION_OPTIONS: &str = "-c DateStyle=ISO -c TimeZone=UTC -c extra_float_digits=3";

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("replication: {0}")]
    Replication(#[from] pgwire_replication::PgWireError),
    #[error("replication did not start within {0:?}")]
    Timeout(Duration),
    #[error("the replication stream ended")]
    Ended,
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error("kafka: {0}")]
    Publish(#[from] EventError),
    #[error("postgres: {0}")]
    Sql(#[from] sqlx::Error),
    #[error(transparent)]
    Db(#[from] shopstream_platform::db::DbError),
    #[error("invalid postgres url: {0}")]
    Url(String),
}

/// How a session ended without an error.
enum SessionEnd {
    Shutdown,
    /// The catalog's `cdc-paused` is on.
    Paused,
}

/// Whether the catalog's `cdc-paused` is on: cdc reads nothing from any
/// slot, which retains the WAL until it resumes.
fn paused() -> bool {
    faults::hits("cdc-paused", "cdc").is_some()
}

/// Where and as whom the replication connection goes.
#[derive(Debug, Clone)]
pub struct Server {
    pub url: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
}

impl Server {
    /// From a server URL without a database (`postgres://user[:pw]@host:port`).
    pub fn parse(server_url: &str) -> Result<Server, PipelineError> {
        let u = url::Url::parse(server_url).map_err(|e| PipelineError::Url(e.to_string()))?;
        let host = u
            .host_str()
            .ok_or_else(|| PipelineError::Url("no host".into()))?
            .to_string();
        Ok(Server {
            url: server_url.to_string(),
            host,
            port: u.port().unwrap_or(5432),
            user: if u.username().is_empty() {
                "postgres".into()
            } else {
                u.username().to_string()
            },
            password: u.password().unwrap_or_default().to_string(),
        })
    }
}

/// One source's pipeline. Run it with [`Pipeline::run`].
pub struct Pipeline {
    pub source: SourceConfig,
    pub server: Server,
    pub checkpoints: PgCheckpoints,
    pub bus: Arc<dyn EventBus>,
    pub metrics: CdcMetrics,
    pub clock: Arc<dyn Clock>,
    pub default_tenant: String,
    pub max_slot_wal_keep_size: String,
    pub max_batch_records: usize,
    pub status_interval: Duration,
    /// True while a session streams; read by `/readyz`.
    pub streaming: Arc<AtomicBool>,
}

/// Events read but not yet acknowledged by Kafka, and the commit to
/// acknowledge once they are.
#[derive(Default)]
struct Batch {
    events: Vec<(String, Envelope)>,
    /// End LSN and commit time of the last complete transaction in the batch.
    ack: Option<(u64, i64)>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.events.is_empty() && self.ack.is_none()
    }
}

impl Pipeline {
    fn labels(&self) -> SourceLabels {
        CdcMetrics::labels(&self.source.database)
    }

    /// Stream until `shutdown`, reconnecting after errors; while the
    /// catalog's `cdc-paused` is on, read nothing (see [`paused`]).
    pub async fn run(self, shutdown: CancellationToken) {
        let mut checkpoint = 0u64;
        let mut backoff = MIN_BACKOFF;
        let mut pool: Option<PgPool> = None;
        while !shutdown.is_cancelled() {
            if paused() && !self.wait_while_paused(&shutdown).await {
                return;
            }
            let res = self.session(&mut pool, &mut checkpoint, &shutdown).await;
            self.streaming.store(false, Ordering::Relaxed);
            match res {
                Ok(SessionEnd::Shutdown) => return,
                Ok(SessionEnd::Paused) => {
                    backoff = MIN_BACKOFF;
                    continue;
                }
                Err(e) => {
                    self.metrics
                        .session_errors
                        .get_or_create(&self.labels())
                        .inc();
                    tracing::warn!(
                        database = %self.source.database,
                        slot = %self.source.slot,
                        checkpoint = checkpoint,
                        error = %e,
                        "cdc session failed, resuming from the checkpoint"
                    );
                }
            }
            if !shopstream_platform::shutdown::sleep_or_stop(&shutdown, backoff).await {
                return;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Wait, reading nothing, until `cdc-paused` clears; false on shutdown.
    async fn wait_while_paused(&self, shutdown: &CancellationToken) -> bool {
        tracing::warn!(
            fault = "cdc-paused",
            database = %self.source.database,
            slot = %self.source.slot,
            "cdc paused: not reading the WAL; the slot retains it"
        );
        while paused() {
            if !shopstream_platform::shutdown::sleep_or_stop(shutdown, faults::POLL_EVERY).await {
                return false;
            }
        }
        tracing::info!(
            database = %self.source.database,
            slot = %self.source.slot,
            "cdc resumed"
        );
        true
    }

    /// Create the publication and the slot if needed (idempotent); true if
    /// the slot was created now.
    async fn setup(&self, pool: &PgPool) -> Result<bool, PipelineError> {
        match postgres::ensure_wal_keep_limit(pool, &self.max_slot_wal_keep_size).await? {
            postgres::WalKeepLimit::Refused(why) => tracing::warn!(
                reason = %why,
                "max_slot_wal_keep_size is unlimited and could not be set: an unread slot can fill the disk"
            ),
            postgres::WalKeepLimit::Applied(size) => {
                tracing::info!(size = %size, "set max_slot_wal_keep_size with ALTER SYSTEM")
            }
            _ => {}
        }
        postgres::ensure_publication(pool, &self.source).await?;
        let created = postgres::ensure_slot(pool, &self.source.slot).await?;
        if created {
            tracing::info!(slot = %self.source.slot, "created replication slot");
        }
        Ok(created)
    }

    async fn session(
        &self,
        pool: &mut Option<PgPool>,
        checkpoint: &mut u64,
        shutdown: &CancellationToken,
    ) -> Result<SessionEnd, PipelineError> {
        let pool = match pool {
            Some(p) => p.clone(),
            None => {
                let p = shopstream_platform::db::connect(&self.server.url, &self.source.database)
                    .await?;
                *pool = Some(p.clone());
                p
            }
        };
        if self.setup(&pool).await? {
            // A new slot: whatever this database recorded belongs to an old one.
            self.checkpoints.forget(&self.source.slot).await?;
            *checkpoint = 0;
        }
        if !self.checkpoints.snapshot_done(&self.source.slot).await? {
            let n = self.snapshot(&pool).await?;
            self.checkpoints
                .mark_snapshot_done(&self.source.slot, self.clock.now_ms())
                .await?;
            tracing::info!(slot = %self.source.slot, records = n, "initial snapshot published");
        }
        let stored = self.checkpoints.load(&self.source.slot).await?.unwrap_or(0);
        let confirmed = postgres::slot_confirmed_flush(&pool, &self.source.slot)
            .await?
            .unwrap_or(0);
        *checkpoint = (*checkpoint).max(stored).max(confirmed);

        let s = &self.server;
        let cfg = ReplicationConfig::new(
            s.host.clone(),
            s.user.clone(),
            s.password.clone(),
            self.source.database.clone(),
            self.source.slot.clone(),
            self.source.publication.clone(),
        )
        .with_port(s.port)
        .with_tls(TlsConfig::disabled())
        .with_start_lsn(Lsn(*checkpoint))
        .with_ack_lsn(Lsn(*checkpoint))
        .with_status_interval(self.status_interval)
        .with_wakeup_interval(Duration::from_secs(10))
        .with_buffer_size(EVENT_BUFFER)
        .with_options(SESSION_OPTIONS)
        .with_application_name(format!("shopstream-cdc-{}", self.source.slot));
        let mut client = tokio::time::timeout(CONNECT_TIMEOUT, ReplicationClient::connect(cfg))
            .await
            .map_err(|_| PipelineError::Timeout(CONNECT_TIMEOUT))??;
        tokio::time::timeout(CONNECT_TIMEOUT, client.wait_started())
            .await
            .map_err(|_| PipelineError::Timeout(CONNECT_TIMEOUT))??;
        self.streaming.store(true, Ordering::Relaxed);
        tracing::info!(
            database = %self.source.database,
            slot = %self.source.slot,
            start_lsn = %Lsn(*checkpoint),
            "cdc streaming"
        );

        let mut state = StreamState::new();
        let mut batch = Batch::default();
        let mut skipping = false;
        let mut pause_check = tokio::time::interval(faults::POLL_EVERY);
        loop {
            let next = if batch.is_empty() {
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        client.stop();
                        return Ok(SessionEnd::Shutdown);
                    }
                    // Everything read so far is published: stop reading
                    // (what was received and not acknowledged comes again).
                    _ = pause_check.tick() => {
                        if paused() {
                            client.stop();
                            return Ok(SessionEnd::Paused);
                        }
                        continue;
                    }
                    r = client.recv() => r,
                }
            } else {
                // Batch what has already arrived; publish as soon as nothing more is waiting.
                match tokio::time::timeout(Duration::ZERO, client.recv()).await {
                    Ok(r) => r,
                    Err(_) => {
                        self.flush(&client, &mut batch, checkpoint).await?;
                        continue;
                    }
                }
            };
            match next?.ok_or(PipelineError::Ended)? {
                ReplicationEvent::Begin {
                    final_lsn,
                    xid,
                    commit_time_micros,
                } => {
                    let cx = state.begin(xid, final_lsn.0, commit_time_micros);
                    self.metrics
                        .last_commit_ts_ms
                        .get_or_create(&self.labels())
                        .set(cx.commit_ts_ms);
                    skipping = stream::already_published(final_lsn.0, *checkpoint);
                    if skipping {
                        self.metrics
                            .transactions_skipped
                            .get_or_create(&self.labels())
                            .inc();
                    }
                }
                ReplicationEvent::XLogData {
                    wal_start, data, ..
                } => {
                    if let Step::Change(cx, change) = state.apply(wal_start.0, &data)?
                        && !skipping
                    {
                        self.route(&cx, &change, &mut batch);
                    }
                    if batch.events.len() >= self.max_batch_records {
                        self.flush(&client, &mut batch, checkpoint).await?;
                    }
                }
                ReplicationEvent::Commit {
                    end_lsn,
                    commit_time_micros,
                    ..
                } => {
                    state.commit();
                    if !skipping {
                        let ts = crate::domain::pgoutput::pg_micros_to_unix_ms(commit_time_micros);
                        batch.ack = Some((end_lsn.0, ts));
                        self.metrics
                            .transactions
                            .get_or_create(&self.labels())
                            .inc();
                    }
                    skipping = false;
                    if batch.events.len() >= self.max_batch_records {
                        self.flush(&client, &mut batch, checkpoint).await?;
                    }
                }
                ReplicationEvent::KeepAlive { wal_end, .. } => {
                    // Idle and everything read is acknowledged: let the slot
                    // move past WAL that holds nothing for us (other databases'
                    // writes), or it would retain WAL for ever.
                    if !state.in_transaction() && batch.is_empty() && wal_end.0 > *checkpoint {
                        client.update_applied_lsn(wal_end);
                        *checkpoint = wal_end.0;
                    }
                }
                ReplicationEvent::Message { .. } | ReplicationEvent::StoppedAt { .. } => {}
            }
        }
    }

    /// Publish every row that exists now as op `r`. The slot exists
    /// already, so a row committed after its creation arrives twice (here
    /// and from the stream; consumers dedupe by event id) and none is lost.
    /// A crash before it is marked done snapshots again on the next start.
    async fn snapshot(&self, pool: &PgPool) -> Result<usize, PipelineError> {
        let at_lsn = postgres::slot_confirmed_flush(pool, &self.source.slot)
            .await?
            .unwrap_or(0);
        let cx = TxnContext {
            xid: 0,
            final_lsn: at_lsn,
            commit_ts_ms: self.clock.now_ms(),
        };
        let mut tx = pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        sqlx::query("SET LOCAL TimeZone = 'UTC'")
            .execute(&mut *tx)
            .await?;
        let mut total = 0;
        for route in &self.source.tables {
            let outbox = route.kind == TableKind::Outbox;
            let key = postgres::primary_key(&mut tx, &route.schema, &route.table).await?;
            let mut offset = 0;
            loop {
                let page =
                    postgres::snapshot_page(&mut tx, &route.schema, &route.table, outbox, offset)
                        .await?;
                let mut batch = Batch::default();
                for text in &page {
                    let Ok(serde_json::Value::Object(row)) = serde_json::from_str(text) else {
                        continue;
                    };
                    let change = stream::snapshot_change(
                        &route.schema,
                        &route.table,
                        row,
                        key.clone(),
                        at_lsn,
                    );
                    self.route(&cx, &change, &mut batch);
                }
                total += batch.events.len();
                for (topic, events) in group_by_topic(&batch.events) {
                    self.bus.publish_batch(&topic, &events).await?;
                }
                self.metrics
                    .records_published
                    .get_or_create(&self.labels())
                    .inc_by(batch.events.len() as u64);
                if (page.len() as i64) < postgres::SNAPSHOT_PAGE {
                    break;
                }
                offset += postgres::SNAPSHOT_PAGE;
            }
        }
        tx.commit().await?;
        Ok(total)
    }

    fn route(&self, cx: &TxnContext, change: &RowChange, batch: &mut Batch) {
        let Some(route) = self.source.route(&change.schema, &change.table) else {
            return;
        };
        let now_ms = self.clock.now_ms();
        let event = match route.kind {
            TableKind::Outbox => {
                match change::outbox_event(change, cx, &self.source.database, now_ms) {
                    Ok(e) => e,
                    Err(e) => {
                        self.metrics
                            .records_rejected
                            .get_or_create(&self.labels())
                            .inc();
                        tracing::error!(lsn = change.lsn, error = %e, "outbox row skipped");
                        None
                    }
                }
            }
            TableKind::Row => Some(change::row_event(
                change,
                cx,
                &self.source.database,
                &self.default_tenant,
                now_ms,
            )),
        };
        if let Some(e) = event {
            batch.events.push((route.topic.clone(), e));
        }
    }

    /// Publish the batch; once Kafka acknowledged all of it, acknowledge the
    /// last complete transaction to Postgres and store the checkpoint.
    async fn flush(
        &self,
        client: &ReplicationClient,
        batch: &mut Batch,
        checkpoint: &mut u64,
    ) -> Result<(), PipelineError> {
        for (topic, events) in group_by_topic(&batch.events) {
            self.bus.publish_batch(&topic, &events).await?;
        }
        let labels = self.labels();
        self.metrics
            .records_published
            .get_or_create(&labels)
            .inc_by(batch.events.len() as u64);
        batch.events.clear();
        if let Some((lsn, commit_ts_ms)) = batch.ack.take() {
            client.update_applied_lsn(Lsn(lsn));
            *checkpoint = (*checkpoint).max(lsn);
            let now_ms = self.clock.now_ms();
            let lag_ms = (now_ms - commit_ts_ms).max(0);
            self.metrics.lag_ms.get_or_create(&labels).set(lag_ms);
            self.metrics
                .commit_to_ack_seconds
                .get_or_create(&labels)
                .observe(lag_ms as f64 / 1_000.0);
            if let Err(e) = self.checkpoints.save(&self.source.slot, lsn, now_ms).await {
                // The slot's own position still moves; this only narrows replays.
                tracing::warn!(error = %e, "checkpoint not stored");
            }
        }
        Ok(())
    }
}

/// Consecutive runs of events for one topic, in order.
fn group_by_topic(events: &[(String, Envelope)]) -> Vec<(String, Vec<Envelope>)> {
    let mut out: Vec<(String, Vec<Envelope>)> = Vec::new();
    for (topic, e) in events {
        match out.last_mut() {
            Some((t, run)) if t == topic => run.push(e.clone()),
            _ => out.push((topic.clone(), vec![e.clone()])),
        }
    }
    out
}

/// Poll lag in bytes of every source until `shutdown`.
pub async fn poll_lag(
    server: Server,
    sources: Vec<SourceConfig>,
    metrics: CdcMetrics,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut pools: Vec<Option<PgPool>> = vec![None; sources.len()];
    loop {
        for (source, pool) in sources.iter().zip(pools.iter_mut()) {
            if pool.is_none() {
                *pool = shopstream_platform::db::connect(&server.url, &source.database)
                    .await
                    .ok();
            }
            if let Some(p) = pool
                && let Ok(Ok(Some(lag))) = tokio::time::timeout(
                    Duration::from_secs(2),
                    postgres::lag_bytes(p, &source.slot),
                )
                .await
            {
                metrics
                    .lag_bytes
                    .get_or_create(&CdcMetrics::labels(&source.database))
                    .set(lag);
            }
        }
        if !shopstream_platform::shutdown::sleep_or_stop(&shutdown, every).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_parse() {
        let s = Server::parse("postgres://shopstream@127.0.0.1:15432").unwrap();
        assert_eq!(
            (
                s.host.as_str(),
                s.port,
                s.user.as_str(),
                s.password.as_str()
            ),
            ("127.0.0.1", 15432, "shopstream", "")
        );
        let s = Server::parse("postgres://u:pw@db.internal/").unwrap();
        assert_eq!((s.port, s.password.as_str()), (5432, "pw"));
        assert!(Server::parse("not a url").is_err());
    }
}
