//! The order store on Postgres; events go to the transactional outbox in the
//! same transaction as the change they describe.

use async_trait::async_trait;
use shopstream_platform::{events::Envelope, outbox};
use sqlx::{PgPool, Row, postgres::PgRow};
use uuid::Uuid;

use crate::{
    domain::{
        checkout::PricedLine,
        order::{CancelReason, OrderState},
    },
    ports::{Cursor, Order, OrderStore, StepRecord, StoreError},
};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Topic of order state changes.
pub const TOPIC: &str = "order.lifecycle";

#[derive(Debug, Clone)]
pub struct PgOrders {
    pool: PgPool,
}

impl PgOrders {
    pub fn new(pool: PgPool) -> PgOrders {
        PgOrders { pool }
    }
}

/// `shopstream_orders_by_state{state}`: how many orders are in each state
/// now, over every tenant, counted every [`OrdersByState::EVERY`] (the
/// dashboard's "orders by state").
#[derive(Debug, Clone)]
pub struct OrdersByState {
    pool: PgPool,
    gauge: prometheus_client::metrics::family::Family<
        StateLabels,
        prometheus_client::metrics::gauge::Gauge,
    >,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, prometheus_client::encoding::EncodeLabelSet)]
pub struct StateLabels {
    state: String,
}

impl OrdersByState {
    /// How often the counts are refreshed.
    pub const EVERY: std::time::Duration = std::time::Duration::from_secs(2);

    pub fn register(
        metrics: &shopstream_platform::metrics::Metrics,
        pool: PgPool,
    ) -> OrdersByState {
        let o = OrdersByState {
            pool,
            gauge: Default::default(),
        };
        metrics.register(
            "orders_by_state",
            "Orders in each state now, over every tenant",
            o.gauge.clone(),
        );
        o
    }

    /// Count once: a state no order is in any more reads 0.
    pub async fn refresh(&self) -> Result<(), sqlx::Error> {
        let rows = sqlx::query("SELECT state, count(*) AS n FROM orders GROUP BY state")
            .fetch_all(&self.pool)
            .await?;
        self.gauge.clear();
        for r in rows {
            self.gauge
                .get_or_create(&StateLabels {
                    state: r.get("state"),
                })
                .set(r.get::<i64, _>("n"));
        }
        Ok(())
    }

    /// Refresh until `stop`.
    pub async fn run(self, stop: tokio_util::sync::CancellationToken) {
        loop {
            if let Err(e) = self.refresh().await {
                tracing::debug!(error = %e, "counting orders by state failed; trying again");
            }
            if !shopstream_platform::shutdown::sleep_or_stop(&stop, Self::EVERY).await {
                return;
            }
        }
    }
}

fn storage(e: impl std::fmt::Display) -> StoreError {
    StoreError::Storage(e.to_string())
}

const ORDER_COLS: &str = "tenant_id, order_id, user_id, state, cancel_reason, cancel_detail,
    total_minor, currency, payment_method, reservation_id, payment_id, idempotency_key,
    fingerprint, workflow_started, created_at_ms, updated_at_ms";

/// An order with its lines, in one statement, for a caller to follow with
/// `WHERE …` (the order table is `o`).
fn order_select() -> String {
    format!(
        "SELECT {ORDER_COLS},
                (SELECT COALESCE(json_agg(json_build_array(i.product_id, i.sku_id, i.quantity,
                                          i.unit_price_minor, i.line_total_minor)
                                          ORDER BY i.line_no), '[]'::json)
                   FROM order_items i
                  WHERE i.tenant_id = o.tenant_id AND i.order_id = o.order_id) AS lines
           FROM orders o"
    )
}

/// A line as [`order_select`] aggregates it.
type LineRow = (String, String, i64, i64, i64);

fn order_row(row: &PgRow) -> Result<Order, StoreError> {
    let reason: Option<String> = row.get("cancel_reason");
    let state: String = row.get("state");
    let lines: sqlx::types::Json<Vec<LineRow>> = row.try_get("lines").map_err(storage)?;
    Ok(Order {
        tenant_id: row.get("tenant_id"),
        order_id: row.get("order_id"),
        user_id: row.get("user_id"),
        state: OrderState::parse(&state, reason.as_deref().and_then(CancelReason::parse))
            .unwrap_or(OrderState::Cancelled(CancelReason::InternalError)),
        cancel_detail: row.get("cancel_detail"),
        lines: lines
            .0
            .into_iter()
            .map(|(product_id, sku_id, quantity, unit, total)| PricedLine {
                product_id,
                sku_id,
                quantity: u32::try_from(quantity).unwrap_or(0),
                unit_price_minor: unit,
                line_total_minor: total,
            })
            .collect(),
        total_minor: row.get("total_minor"),
        currency: row.get("currency"),
        payment_method: row.get("payment_method"),
        reservation_id: row.get("reservation_id"),
        payment_id: row.get("payment_id"),
        idempotency_key: row.get("idempotency_key"),
        fingerprint: row.get("fingerprint"),
        workflow_started: row.get("workflow_started"),
        created_at_ms: row.get("created_at_ms"),
        updated_at_ms: row.get("updated_at_ms"),
    })
}

fn order_rows(rows: &[PgRow]) -> Result<Vec<Order>, StoreError> {
    rows.iter().map(order_row).collect()
}

impl PgOrders {
    async fn find_by_key(
        &self,
        tenant: &str,
        user: &str,
        key: &str,
    ) -> Result<Option<Order>, StoreError> {
        let row = sqlx::query(&format!(
            "{} WHERE tenant_id = $1 AND user_id = $2 AND idempotency_key = $3",
            order_select()
        ))
        .bind(tenant)
        .bind(user)
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage)?;
        row.as_ref().map(order_row).transpose()
    }
}

/// The outbox rows of `events`, or the error a store reports for them.
fn outbox_rows(events: &[Envelope]) -> Result<outbox::Rows, StoreError> {
    outbox::Rows::new(TOPIC, events).map_err(storage)
}

#[async_trait]
impl OrderStore for PgOrders {
    async fn insert(&self, o: &Order, event: &Envelope) -> Result<(Order, bool), StoreError> {
        // One statement, so no transaction: the order, its lines and its
        // event go in together or (a repeated idempotency key) not at all.
        let sql = format!(
            "WITH placed AS (
                 INSERT INTO orders (tenant_id, order_id, user_id, state, cancel_reason,
                     cancel_detail, total_minor, currency, payment_method, idempotency_key,
                     fingerprint, created_at_ms, updated_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)
                 ON CONFLICT (tenant_id, user_id, idempotency_key) DO NOTHING
                 RETURNING 1
             ), lines AS (
                 INSERT INTO order_items (tenant_id, order_id, line_no, product_id, sku_id,
                     quantity, unit_price_minor, line_total_minor)
                 SELECT $1, $2, (l.n - 1)::int4, l.product_id, l.sku_id, l.quantity, l.unit, l.total
                   FROM unnest($13::text[], $14::text[], $15::int4[], $16::int8[], $17::int8[])
                        WITH ORDINALITY AS l(product_id, sku_id, quantity, unit, total, n)
                  WHERE EXISTS (SELECT 1 FROM placed)
             ), events AS ({})
             SELECT EXISTS (SELECT 1 FROM placed)",
            outbox::Rows::insert_sql(18, "EXISTS (SELECT 1 FROM placed)")
        );
        let q = sqlx::query(&sql)
            .bind(&o.tenant_id)
            .bind(o.order_id)
            .bind(&o.user_id)
            .bind(o.state.as_str())
            .bind(o.state.cancel_reason().map(|r| r.as_str()))
            .bind(&o.cancel_detail)
            .bind(o.total_minor)
            .bind(&o.currency)
            .bind(&o.payment_method)
            .bind(&o.idempotency_key)
            .bind(&o.fingerprint)
            .bind(o.created_at_ms)
            .bind(
                o.lines
                    .iter()
                    .map(|l| l.product_id.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(o.lines.iter().map(|l| l.sku_id.clone()).collect::<Vec<_>>())
            .bind(
                o.lines
                    .iter()
                    .map(|l| l.quantity as i32)
                    .collect::<Vec<_>>(),
            )
            .bind(
                o.lines
                    .iter()
                    .map(|l| l.unit_price_minor)
                    .collect::<Vec<_>>(),
            )
            .bind(
                o.lines
                    .iter()
                    .map(|l| l.line_total_minor)
                    .collect::<Vec<_>>(),
            );
        let inserted: bool = outbox_rows(std::slice::from_ref(event))?
            .bind(q)
            .fetch_one(&self.pool)
            .await
            .map_err(storage)?
            .get(0);
        if !inserted {
            let existing = self
                .find_by_key(&o.tenant_id, &o.user_id, &o.idempotency_key)
                .await?
                .ok_or_else(|| storage("idempotency key vanished"))?;
            return Ok((existing, false));
        }
        Ok((o.clone(), true))
    }

    async fn get(&self, tenant: &str, order_id: Uuid) -> Result<Option<Order>, StoreError> {
        let row = sqlx::query(&format!(
            "{} WHERE tenant_id = $1 AND order_id = $2",
            order_select()
        ))
        .bind(tenant)
        .bind(order_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage)?;
        row.as_ref().map(order_row).transpose()
    }

    async fn by_key(
        &self,
        tenant: &str,
        user: &str,
        key: &str,
    ) -> Result<Option<Order>, StoreError> {
        self.find_by_key(tenant, user, key).await
    }

    async fn list(
        &self,
        tenant: &str,
        user: Option<&str>,
        states: &[String],
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<Vec<Order>, StoreError> {
        let (after_ms, after_id) = after.unwrap_or((i64::MAX, Uuid::max()));
        let rows = sqlx::query(&format!(
            "{}
              WHERE tenant_id = $1
                AND ($2::text IS NULL OR user_id = $2)
                AND (cardinality($3::text[]) = 0 OR state = ANY($3))
                AND (created_at_ms, order_id) < ($4, $5)
              ORDER BY created_at_ms DESC, order_id DESC
              LIMIT $6",
            order_select()
        ))
        .bind(tenant)
        .bind(user)
        .bind(states)
        .bind(after_ms)
        .bind(after_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?;
        order_rows(&rows)
    }

    async fn record_step(
        &self,
        tenant: &str,
        order_id: Uuid,
        s: &StepRecord,
        events: &[Envelope],
    ) -> Result<bool, StoreError> {
        // One statement, so no transaction: the step, the order's new state
        // and the events go in together, or (a seq already logged) nothing.
        let sql = format!(
            "WITH step AS (
                 INSERT INTO order_steps (tenant_id, order_id, seq, step, outcome, state,
                     cancel_reason, detail, attempts, at_ms, failure_reason, uncertain)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                 ON CONFLICT (tenant_id, order_id, seq) DO NOTHING
                 RETURNING 1
             ), changed AS (
                 UPDATE orders SET state = $6, cancel_reason = $7,
                        cancel_detail = COALESCE($13, cancel_detail),
                        reservation_id = COALESCE($14, reservation_id),
                        payment_id = COALESCE($15, payment_id),
                        updated_at_ms = GREATEST(updated_at_ms, $10)
                  WHERE tenant_id = $1 AND order_id = $2 AND EXISTS (SELECT 1 FROM step)
             ), events AS ({})
             SELECT EXISTS (SELECT 1 FROM step)",
            outbox::Rows::insert_sql(16, "EXISTS (SELECT 1 FROM step)")
        );
        // The failed step's detail says why the order is being cancelled.
        let cancel_detail = if s.outcome == "failed" {
            Some(s.detail.as_str())
        } else {
            None
        };
        let q = sqlx::query(&sql)
            .bind(tenant)
            .bind(order_id)
            .bind(s.seq as i32)
            .bind(&s.step)
            .bind(&s.outcome)
            .bind(&s.state)
            .bind(&s.cancel_reason)
            .bind(&s.detail)
            .bind(s.attempts as i32)
            .bind(s.at_ms)
            .bind(&s.failure_reason)
            .bind(s.uncertain)
            .bind(cancel_detail)
            .bind(&s.reservation_id)
            .bind(&s.payment_id);
        let new: bool = outbox_rows(events)?
            .bind(q)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| match &e {
                sqlx::Error::Database(d) if d.code().as_deref() == Some("23503") => {
                    StoreError::NotFound
                }
                _ => storage(e),
            })?
            .get(0);
        Ok(new)
    }

    async fn steps(&self, tenant: &str, order_id: Uuid) -> Result<Vec<StepRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {STEP_COLS}, NULL::text AS produced_reservation, NULL::text AS produced_payment
               FROM order_steps s WHERE s.tenant_id = $1 AND s.order_id = $2 ORDER BY s.seq"
        ))
        .bind(tenant)
        .bind(order_id)
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?;
        Ok(rows.iter().map(step_row).collect())
    }

    async fn step(
        &self,
        tenant: &str,
        order_id: Uuid,
        seq: u32,
    ) -> Result<Option<StepRecord>, StoreError> {
        // One statement: the step and the id it produced, which the order
        // row keeps (`record_step` writes it there).
        let row = sqlx::query(&format!(
            "SELECT {STEP_COLS},
                    CASE WHEN s.step = 'reserve' THEN NULLIF(o.reservation_id, '') END
                        AS produced_reservation,
                    CASE WHEN s.step = 'authorize' THEN NULLIF(o.payment_id, '') END
                        AS produced_payment
               FROM order_steps s
               JOIN orders o USING (tenant_id, order_id)
              WHERE s.tenant_id = $1 AND s.order_id = $2 AND s.seq = $3"
        ))
        .bind(tenant)
        .bind(order_id)
        .bind(seq as i32)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage)?;
        Ok(row.as_ref().map(step_row))
    }

    async fn mark_started(&self, tenant: &str, order_id: Uuid) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE orders SET workflow_started = true WHERE tenant_id = $1 AND order_id = $2",
        )
        .bind(tenant)
        .bind(order_id)
        .execute(&self.pool)
        .await
        .map_err(storage)?;
        Ok(())
    }

    async fn unstarted(&self, before_ms: i64, limit: u32) -> Result<Vec<Order>, StoreError> {
        let rows = sqlx::query(&format!(
            "{}
              WHERE NOT workflow_started AND created_at_ms < $1
              ORDER BY created_at_ms LIMIT $2",
            order_select()
        ))
        .bind(before_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?;
        order_rows(&rows)
    }
}

/// The step log's columns (`s.` qualified: `step` joins the order).
const STEP_COLS: &str = "s.seq, s.step, s.outcome, s.state, s.cancel_reason, s.detail, s.attempts,
     s.at_ms, s.failure_reason, s.uncertain";

fn step_row(r: &sqlx::postgres::PgRow) -> StepRecord {
    StepRecord {
        seq: u32::try_from(r.get::<i32, _>("seq")).unwrap_or(0),
        step: r.get("step"),
        outcome: r.get("outcome"),
        state: r.get("state"),
        cancel_reason: r.get("cancel_reason"),
        detail: r.get("detail"),
        attempts: u32::try_from(r.get::<i32, _>("attempts")).unwrap_or(0),
        failure_reason: r.get("failure_reason"),
        uncertain: r.get("uncertain"),
        at_ms: r.get("at_ms"),
        reservation_id: r.get("produced_reservation"),
        payment_id: r.get("produced_payment"),
    }
}
