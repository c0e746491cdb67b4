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

fn order_row(row: &PgRow) -> Order {
    let reason: Option<String> = row.get("cancel_reason");
    let state: String = row.get("state");
    Order {
        tenant_id: row.get("tenant_id"),
        order_id: row.get("order_id"),
        user_id: row.get("user_id"),
        state: OrderState::parse(&state, reason.as_deref().and_then(CancelReason::parse))
            .unwrap_or(OrderState::Cancelled(CancelReason::InternalError)),
        cancel_detail: row.get("cancel_detail"),
        lines: Vec::new(),
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
    }
}

impl PgOrders {
    /// Attach the lines to `orders` (one query for all of them).
    async fn with_lines(&self, mut orders: Vec<Order>) -> Result<Vec<Order>, StoreError> {
        let Some(first) = orders.first() else {
            return Ok(orders);
        };
        let tenant = first.tenant_id.clone();
        let ids: Vec<Uuid> = orders.iter().map(|o| o.order_id).collect();
        let rows = sqlx::query(
            "SELECT order_id, product_id, sku_id, quantity, unit_price_minor, line_total_minor
               FROM order_items WHERE tenant_id = $1 AND order_id = ANY($2)
              ORDER BY order_id, line_no",
        )
        .bind(&tenant)
        .bind(&ids)
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?;
        for row in rows {
            let id: Uuid = row.get("order_id");
            if let Some(o) = orders.iter_mut().find(|o| o.order_id == id) {
                o.lines.push(PricedLine {
                    product_id: row.get("product_id"),
                    sku_id: row.get("sku_id"),
                    quantity: u32::try_from(row.get::<i32, _>("quantity")).unwrap_or(0),
                    unit_price_minor: row.get("unit_price_minor"),
                    line_total_minor: row.get("line_total_minor"),
                });
            }
        }
        Ok(orders)
    }

    async fn find_by_key(
        &self,
        tenant: &str,
        user: &str,
        key: &str,
    ) -> Result<Option<Order>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ORDER_COLS} FROM orders
              WHERE tenant_id = $1 AND user_id = $2 AND idempotency_key = $3"
        ))
        .bind(tenant)
        .bind(user)
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage)?;
        match row {
            None => Ok(None),
            Some(r) => Ok(self.with_lines(vec![order_row(&r)]).await?.pop()),
        }
    }
}

#[async_trait]
impl OrderStore for PgOrders {
    async fn insert(&self, o: &Order, event: &Envelope) -> Result<(Order, bool), StoreError> {
        let mut tx = self.pool.begin().await.map_err(storage)?;
        let inserted = sqlx::query(
            "INSERT INTO orders (tenant_id, order_id, user_id, state, cancel_reason, cancel_detail,
                 total_minor, currency, payment_method, idempotency_key, fingerprint,
                 created_at_ms, updated_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)
             ON CONFLICT (tenant_id, user_id, idempotency_key) DO NOTHING",
        )
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
        .execute(&mut *tx)
        .await
        .map_err(storage)?
        .rows_affected()
            == 1;
        if !inserted {
            tx.rollback().await.map_err(storage)?;
            let existing = self
                .find_by_key(&o.tenant_id, &o.user_id, &o.idempotency_key)
                .await?
                .ok_or_else(|| storage("idempotency key vanished"))?;
            return Ok((existing, false));
        }
        for (i, l) in o.lines.iter().enumerate() {
            sqlx::query(
                "INSERT INTO order_items (tenant_id, order_id, line_no, product_id, sku_id,
                     quantity, unit_price_minor, line_total_minor)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&o.tenant_id)
            .bind(o.order_id)
            .bind(i as i32)
            .bind(&l.product_id)
            .bind(&l.sku_id)
            .bind(l.quantity as i32)
            .bind(l.unit_price_minor)
            .bind(l.line_total_minor)
            .execute(&mut *tx)
            .await
            .map_err(storage)?;
        }
        outbox::enqueue(&mut tx, TOPIC, event)
            .await
            .map_err(storage)?;
        tx.commit().await.map_err(storage)?;
        Ok((o.clone(), true))
    }

    async fn get(&self, tenant: &str, order_id: Uuid) -> Result<Option<Order>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ORDER_COLS} FROM orders WHERE tenant_id = $1 AND order_id = $2"
        ))
        .bind(tenant)
        .bind(order_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage)?;
        match row {
            None => Ok(None),
            Some(r) => Ok(self.with_lines(vec![order_row(&r)]).await?.pop()),
        }
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
            "SELECT {ORDER_COLS} FROM orders
              WHERE tenant_id = $1
                AND ($2::text IS NULL OR user_id = $2)
                AND (cardinality($3::text[]) = 0 OR state = ANY($3))
                AND (created_at_ms, order_id) < ($4, $5)
              ORDER BY created_at_ms DESC, order_id DESC
              LIMIT $6"
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
        self.with_lines(rows.iter().map(order_row).collect()).await
    }

    async fn record_step(
        &self,
        tenant: &str,
        order_id: Uuid,
        s: &StepRecord,
        events: &[Envelope],
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(storage)?;
        let new = sqlx::query(
            "INSERT INTO order_steps (tenant_id, order_id, seq, step, outcome, state,
                 cancel_reason, detail, attempts, at_ms, failure_reason, uncertain)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (tenant_id, order_id, seq) DO NOTHING",
        )
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
        .execute(&mut *tx)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(d) if d.code().as_deref() == Some("23503") => {
                StoreError::NotFound
            }
            _ => storage(e),
        })?
        .rows_affected()
            == 1;
        if !new {
            tx.rollback().await.map_err(storage)?;
            return Ok(false);
        }
        // The failed step's detail says why the order is being cancelled.
        let cancel_detail = if s.outcome == "failed" {
            Some(s.detail.as_str())
        } else {
            None
        };
        sqlx::query(
            "UPDATE orders SET state = $3, cancel_reason = $4,
                    cancel_detail = COALESCE($5, cancel_detail),
                    reservation_id = COALESCE($6, reservation_id),
                    payment_id = COALESCE($7, payment_id),
                    updated_at_ms = GREATEST(updated_at_ms, $8)
              WHERE tenant_id = $1 AND order_id = $2",
        )
        .bind(tenant)
        .bind(order_id)
        .bind(&s.state)
        .bind(&s.cancel_reason)
        .bind(cancel_detail)
        .bind(&s.reservation_id)
        .bind(&s.payment_id)
        .bind(s.at_ms)
        .execute(&mut *tx)
        .await
        .map_err(storage)?;
        for event in events {
            outbox::enqueue(&mut tx, TOPIC, event)
                .await
                .map_err(storage)?;
        }
        tx.commit().await.map_err(storage)?;
        Ok(true)
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
            "SELECT {ORDER_COLS} FROM orders
              WHERE NOT workflow_started AND created_at_ms < $1
              ORDER BY created_at_ms LIMIT $2"
        ))
        .bind(before_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?;
        // Lines per tenant (with_lines works on one tenant at a time).
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.extend(self.with_lines(vec![order_row(r)]).await?);
        }
        Ok(out)
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
