//! The transactional outbox: a service writes the events a change causes in
//! the same Postgres transaction as the change ([`enqueue`]), and a
//! [`Relay`] publishes them to the [`EventBus`] afterwards, in the order they
//! were written, marking each one published only once the broker holds it.
//! A crash between commit and publish therefore loses nothing; it can publish
//! an event twice (at-least-once), which consumers absorb by event id.
//!
//! One relay per service database keeps the write order; the table lives in
//! each service's own database ([`ensure_table`] creates it).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::events::{Envelope, EventBus, EventError};

/// Events published per relay round.
pub const BATCH: i64 = 500;

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox storage: {0}")]
    Storage(#[from] sqlx::Error),
    #[error(transparent)]
    Event(#[from] EventError),
}

/// The span of one event going from the outbox to the broker.
fn publish_span(topic: &str, e: &Envelope) -> tracing::Span {
    let span = tracing::info_span!(
        "publish",
        otel.name = %format!("publish {topic} {}", e.event_type),
        otel.kind = "producer",
        topic = %topic,
        event_type = %e.event_type,
        event_id = %e.id,
        tenant_id = %e.tenant_id,
        outbox = true,
    );
    let _ = tracing_opentelemetry::OpenTelemetrySpanExt::set_parent(
        &span,
        crate::telemetry::extract(&crate::telemetry::MapExtractor(&e.headers)),
    );
    span
}

/// Create the outbox table and its index of unpublished rows (idempotent).
pub async fn ensure_table(pool: &PgPool) -> Result<(), OutboxError> {
    // One statement per call: the extended protocol takes one at a time.
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS event_outbox (
            seq          BIGSERIAL   PRIMARY KEY,
            topic        TEXT        NOT NULL,
            event_id     UUID        NOT NULL UNIQUE,
            event_type   TEXT        NOT NULL,
            schema_ver   INT         NOT NULL,
            tenant_id    TEXT        NOT NULL,
            key          TEXT        NOT NULL,
            occurred_ms  BIGINT      NOT NULL,
            headers      JSONB       NOT NULL,
            payload      BYTEA       NOT NULL,
            published_at TIMESTAMPTZ
        )",
    )
    .execute(pool)
    .await?;
    sqlx::query(
        "CREATE INDEX IF NOT EXISTS event_outbox_unpublished
           ON event_outbox (seq) WHERE published_at IS NULL",
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Events for `topic` as column arrays, so a store writes them inside a
/// statement of its own: its change and its events in one round trip, with
/// no explicit transaction (see [`Rows::insert_sql`]).
#[derive(Debug, Default)]
pub struct Rows {
    topics: Vec<String>,
    ids: Vec<uuid::Uuid>,
    types: Vec<String>,
    versions: Vec<i32>,
    tenants: Vec<String>,
    keys: Vec<String>,
    occurred: Vec<i64>,
    headers: Vec<serde_json::Value>,
    payloads: Vec<Vec<u8>>,
}

impl Rows {
    pub fn new(topic: &str, events: &[Envelope]) -> Result<Rows, EventError> {
        let mut r = Rows::default();
        for e in events {
            r.topics.push(topic.to_string());
            r.ids.push(e.id);
            r.types.push(e.event_type.clone());
            r.versions.push(i32::from(e.schema_version));
            r.tenants.push(e.tenant_id.clone());
            r.keys.push(e.key.clone());
            r.occurred.push(e.occurred_at_ms);
            r.headers.push(
                serde_json::to_value(&e.headers)
                    .map_err(|e| EventError::Encode(format!("outbox headers: {e}")))?,
            );
            r.payloads.push(e.payload.clone());
        }
        Ok(r)
    }

    /// An `INSERT` of these rows, in order, for a data-modifying `WITH`
    /// clause of the caller's statement: its arrays are parameters `$first`
    /// to `$first + 8` (bind them with [`Rows::bind`] in that place), and
    /// rows go in only where `condition` (SQL over the statement's other
    /// clauses, e.g. `EXISTS (SELECT 1 FROM changed)`) holds.
    pub fn insert_sql(first: usize, condition: &str) -> String {
        let p = |i: usize, ty: &str| format!("${}::{ty}[]", first + i);
        format!(
            "INSERT INTO event_outbox
               (topic, event_id, event_type, schema_ver, tenant_id, key, occurred_ms, headers, payload)
             SELECT * FROM unnest({}, {}, {}, {}, {}, {}, {}, {}, {}) WHERE {condition}
             ON CONFLICT (event_id) DO NOTHING",
            p(0, "text"),
            p(1, "uuid"),
            p(2, "text"),
            p(3, "int4"),
            p(4, "text"),
            p(5, "text"),
            p(6, "int8"),
            p(7, "jsonb"),
            p(8, "bytea"),
        )
    }

    /// Bind the arrays, in [`Rows::insert_sql`]'s order, as the query's next
    /// nine parameters.
    pub fn bind<'q>(
        self,
        q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        q.bind(self.topics)
            .bind(self.ids)
            .bind(self.types)
            .bind(self.versions)
            .bind(self.tenants)
            .bind(self.keys)
            .bind(self.occurred)
            .bind(self.headers)
            .bind(self.payloads)
    }
}

/// Write `event` for `topic` inside the caller's transaction.
pub async fn enqueue(
    conn: &mut PgConnection,
    topic: &str,
    event: &Envelope,
) -> Result<(), OutboxError> {
    let headers = serde_json::to_value(&event.headers)
        .map_err(|e| EventError::Encode(format!("outbox headers: {e}")))?;
    sqlx::query(
        "INSERT INTO event_outbox
           (topic, event_id, event_type, schema_ver, tenant_id, key, occurred_ms, headers, payload)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(topic)
    .bind(event.id)
    .bind(&event.event_type)
    .bind(i32::from(event.schema_version))
    .bind(&event.tenant_id)
    .bind(&event.key)
    .bind(event.occurred_at_ms)
    .bind(headers)
    .bind(&event.payload)
    .execute(conn)
    .await?;
    Ok(())
}

/// Publishes the outbox. Call [`Relay::wake`] after a commit that enqueued
/// events so they go out without waiting for the next poll.
#[derive(Clone)]
pub struct Relay {
    pool: PgPool,
    bus: Arc<dyn EventBus>,
    wake: Arc<Notify>,
    /// Poll interval when nobody wakes the relay (other writers, a restart),
    /// right after it published something; each empty round doubles it,
    /// up to [`IDLE_POLL_MAX`].
    pub poll: Duration,
}

/// The longest a relay waits between rounds once idle: what a row written
/// by another process (another replica) waits at most. A wake from this
/// process's writes, and every round that publishes, bring the interval
/// back to `poll`.
pub const IDLE_POLL_MAX: Duration = Duration::from_secs(2);

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").field("poll", &self.poll).finish()
    }
}

impl Relay {
    /// A relay of `pool`'s outbox. Its rounds run on a
    /// [`crate::db::bookkeeping`] pool: a published mark lost to a Postgres
    /// crash is an event published again, which consumers absorb.
    pub fn new(pool: PgPool, bus: Arc<dyn EventBus>) -> Relay {
        Relay {
            pool: crate::db::bookkeeping(&pool),
            bus,
            wake: Arc::new(Notify::new()),
            poll: Duration::from_millis(250),
        }
    }

    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Publish everything unpublished now, oldest first. Returns how many
    /// events went out.
    pub async fn drain(&self) -> Result<usize, OutboxError> {
        let mut total = 0;
        loop {
            let n = self.round().await?;
            total += n;
            if (n as i64) < BATCH {
                return Ok(total);
            }
        }
    }

    async fn round(&self) -> Result<usize, OutboxError> {
        let mut tx = self.pool.begin().await?;
        // The rows are claimed and marked published in one statement, in a
        // transaction that commits only once the broker holds them: a failed
        // publish (or a crash) rolls the mark back. SKIP LOCKED: a second
        // relay (another replica) takes other rows instead of waiting; with
        // one relay per database order is kept.
        let mut rows = sqlx::query(
            "UPDATE event_outbox SET published_at = now()
              WHERE seq IN (SELECT seq FROM event_outbox WHERE published_at IS NULL
                             ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED)
             RETURNING seq, topic, event_id, event_type, schema_ver, tenant_id, key,
                       occurred_ms, headers, payload",
        )
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        // RETURNING does not promise an order.
        rows.sort_by_key(|r| r.get::<i64, _>("seq"));
        // Consecutive runs of one topic go out as one batch, in order.
        let mut runs: Vec<(String, Vec<Envelope>)> = Vec::new();
        for row in &rows {
            let topic: String = row.get("topic");
            let headers: serde_json::Value = row.get("headers");
            let headers: BTreeMap<String, String> = serde_json::from_value(headers)
                .map_err(|e| EventError::Decode(format!("outbox headers: {e}")))?;
            let envelope = Envelope {
                id: row.get("event_id"),
                event_type: row.get("event_type"),
                schema_version: u16::try_from(row.get::<i32, _>("schema_ver")).unwrap_or(1),
                tenant_id: row.get("tenant_id"),
                key: row.get("key"),
                occurred_at_ms: row.get("occurred_ms"),
                headers,
                payload: row.get("payload"),
            };
            match runs.last_mut() {
                Some((t, batch)) if *t == topic => batch.push(envelope),
                _ => runs.push((topic, vec![envelope])),
            }
        }
        for (topic, batch) in &runs {
            // A producer span per event, continuing the trace the request that
            // wrote it stored in its headers; they end when the batch is out.
            let spans: Vec<tracing::Span> = batch.iter().map(|e| publish_span(topic, e)).collect();
            if let Err(e) = self.bus.publish_batch(topic, batch).await {
                // Unmark and unlock them now, not whenever the pool gets to
                // a dropped transaction: the next round takes them again.
                tx.rollback().await?;
                return Err(e.into());
            }
            drop(spans);
        }
        tx.commit().await?;
        Ok(rows.len())
    }

    /// Publish until `shutdown`: on every wake, and between wakes every
    /// `poll`, doubling while rounds find nothing (see [`IDLE_POLL_MAX`]).
    /// Failures are logged and retried on the next round.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut wait = self.poll;
        loop {
            match self.drain().await {
                Ok(0) => wait = (wait * 2).min(IDLE_POLL_MAX.max(self.poll)),
                Ok(n) => {
                    tracing::debug!(published = n, "outbox relayed");
                    wait = self.poll;
                }
                Err(e) => tracing::warn!(error = %e, "outbox relay round failed; retrying"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => {
                    // Last chance for what the final requests enqueued.
                    let _ = tokio::time::timeout(Duration::from_secs(2), self.drain()).await;
                    return;
                }
                _ = self.wake.notified() => wait = self.poll,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}
