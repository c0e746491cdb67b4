//! Payments and the webhook log in payments' own Postgres database. An
//! update reads the row and its version, merges, and writes the row and its
//! event (on the platform outbox) in one statement that applies only to the
//! version it read.

use std::collections::BTreeMap;

use async_trait::async_trait;
use shopstream_platform::outbox;
use sqlx::{PgPool, Row, postgres::PgRow};
use uuid::Uuid;

use crate::{
    TOPIC,
    domain::{Payment, Status},
    ports::{Change, PaymentStore, StoreError},
};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

const COLUMNS: &str = "tenant_id, id, order_id, create_key, status, amount_minor, currency, \
    captured_minor, refunded_minor, refunds, provider_ref, failure_code, failure_message, \
    created_at_ms, updated_at_ms, payment_method";

/// How many times [`PgPayments::update`] reads again after losing a race
/// to another writer of the same payment before it gives up.
const UPDATE_ATTEMPTS: usize = 32;

fn storage(e: impl std::fmt::Display) -> StoreError {
    StoreError::Storage(e.to_string())
}

fn from_row(row: &PgRow) -> Result<Payment, StoreError> {
    let status: String = row.get("status");
    let refunds: serde_json::Value = row.get("refunds");
    Ok(Payment {
        id: row.get("id"),
        tenant_id: row.get("tenant_id"),
        order_id: row.get("order_id"),
        create_key: row.get("create_key"),
        status: Status::parse(&status)
            .ok_or_else(|| StoreError::Storage(format!("bad status {status}")))?,
        amount_minor: row.get("amount_minor"),
        currency: row.get("currency"),
        captured_minor: row.get("captured_minor"),
        refunded_minor: row.get("refunded_minor"),
        refunds: serde_json::from_value::<BTreeMap<String, i64>>(refunds).map_err(storage)?,
        provider_ref: row.get("provider_ref"),
        failure_code: row.get("failure_code"),
        failure_message: row.get("failure_message"),
        created_at_ms: row.get("created_at_ms"),
        updated_at_ms: row.get("updated_at_ms"),
        payment_method: row.get("payment_method"),
    })
}

#[derive(Debug, Clone)]
pub struct PgPayments {
    pool: PgPool,
}

impl PgPayments {
    pub fn new(pool: PgPool) -> PgPayments {
        PgPayments { pool }
    }

    /// A payment and its row version (`xmin`, the transaction that wrote
    /// it), which [`PaymentStore::update`] writes against.
    async fn versioned(&self, tenant: &str, id: Uuid) -> Result<(Payment, String), StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS}, xmin::text AS version FROM payments WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage)?
        .ok_or(StoreError::NotFound)?;
        Ok((from_row(&row)?, row.get("version")))
    }

    async fn one(&self, sql: &str, tenant: &str, key: &str) -> Result<Payment, StoreError> {
        let row = sqlx::query(sql)
            .bind(tenant)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(storage)?
            .ok_or(StoreError::NotFound)?;
        from_row(&row)
    }
}

#[async_trait]
impl PaymentStore for PgPayments {
    async fn insert(&self, p: &Payment) -> Result<(Payment, bool), StoreError> {
        let inserted = sqlx::query(&format!(
            "INSERT INTO payments ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
             ON CONFLICT (tenant_id, order_id) DO NOTHING"
        ))
        .bind(&p.tenant_id)
        .bind(p.id)
        .bind(&p.order_id)
        .bind(&p.create_key)
        .bind(p.status.as_str())
        .bind(p.amount_minor)
        .bind(&p.currency)
        .bind(p.captured_minor)
        .bind(p.refunded_minor)
        .bind(serde_json::to_value(&p.refunds).map_err(storage)?)
        .bind(&p.provider_ref)
        .bind(&p.failure_code)
        .bind(&p.failure_message)
        .bind(p.created_at_ms)
        .bind(p.updated_at_ms)
        .bind(&p.payment_method)
        .execute(&self.pool)
        .await
        .map_err(storage)?
        .rows_affected();
        if inserted == 1 {
            return Ok((p.clone(), true));
        }
        Ok((self.by_order(&p.tenant_id, &p.order_id).await?, false))
    }

    async fn get(&self, tenant: &str, id: Uuid) -> Result<Payment, StoreError> {
        Ok(self.versioned(tenant, id).await?.0)
    }

    async fn by_order(&self, tenant: &str, order_id: &str) -> Result<Payment, StoreError> {
        self.one(
            &format!("SELECT {COLUMNS} FROM payments WHERE tenant_id = $1 AND order_id = $2"),
            tenant,
            order_id,
        )
        .await
    }

    async fn by_provider_ref(
        &self,
        tenant: &str,
        provider_ref: &str,
    ) -> Result<Payment, StoreError> {
        if provider_ref.is_empty() {
            return Err(StoreError::NotFound);
        }
        self.one(
            &format!(
                "SELECT {COLUMNS} FROM payments WHERE tenant_id = $1 AND provider_ref = $2 AND provider_ref <> ''"
            ),
            tenant,
            provider_ref,
        )
        .await
    }

    async fn update(
        &self,
        tenant: &str,
        id: Uuid,
        change: Change<'_>,
    ) -> Result<Payment, StoreError> {
        // Optimistic: read the row and its version (`xmin`, the transaction
        // that wrote it), then write the change and its event in one
        // statement that takes effect only if the row is still that version.
        // Two round trips and no transaction; a concurrent writer (a webhook
        // racing a capture) makes the loser read again and re-apply.
        let write = format!(
            "WITH changed AS (
                 UPDATE payments SET status = $4, captured_minor = $5, refunded_minor = $6,
                        refunds = $7, provider_ref = $8, failure_code = $9,
                        failure_message = $10, updated_at_ms = $11
                  WHERE tenant_id = $1 AND id = $2 AND xmin::text = $3
                 RETURNING 1
             ), events AS ({})
             SELECT EXISTS (SELECT 1 FROM changed)",
            outbox::Rows::insert_sql(12, "EXISTS (SELECT 1 FROM changed)")
        );
        for _ in 0..UPDATE_ATTEMPTS {
            let (current, version) = self.versioned(tenant, id).await?;
            let Some((next, event)) = change(&current) else {
                return Ok(current);
            };
            let q = sqlx::query(&write)
                .bind(tenant)
                .bind(id)
                .bind(version)
                .bind(next.status.as_str())
                .bind(next.captured_minor)
                .bind(next.refunded_minor)
                .bind(serde_json::to_value(&next.refunds).map_err(storage)?)
                .bind(&next.provider_ref)
                .bind(&next.failure_code)
                .bind(&next.failure_message)
                .bind(next.updated_at_ms);
            let events = outbox::Rows::new(TOPIC, event.as_slice()).map_err(storage)?;
            let written: bool = events
                .bind(q)
                .fetch_one(&self.pool)
                .await
                .map_err(storage)?
                .get(0);
            if written {
                return Ok(next);
            }
        }
        Err(storage(format!(
            "payment {id} changed under {UPDATE_ATTEMPTS} updates in a row"
        )))
    }

    async fn record_webhook(
        &self,
        event_id: &str,
        event_type: &str,
        received_at_ms: i64,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "INSERT INTO webhook_events (event_id, event_type, received_at_ms) VALUES ($1, $2, $3)
             ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(event_id)
        .bind(event_type)
        .bind(received_at_ms)
        .execute(&self.pool)
        .await
        .map_err(storage)?
        .rows_affected();
        Ok(n == 1)
    }

    async fn stale(&self, updated_before_ms: i64, limit: i64) -> Result<Vec<Payment>, StoreError> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM payments
              WHERE status IN ('pending', 'authorized') AND provider_ref <> '' AND updated_at_ms < $1
              ORDER BY updated_at_ms, id LIMIT $2"
        ))
        .bind(updated_before_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?
        .iter()
        .map(from_row)
        .collect()
    }
}
