//! Stock and reservations in inventory's own Postgres database. No oversell
//! by construction: a hold is a conditional `UPDATE ... WHERE on_hand -
//! reserved >= qty` per line, in SKU order, inside one transaction (one
//! statement: the `reserve_hold` function of migration 0002), and the
//! table's CHECK constraints back it up.

use async_trait::async_trait;
use shopstream_platform::faults;
use sqlx::{PgPool, Postgres, Row, Transaction};
use uuid::Uuid;

use crate::{
    domain::{self, Line, Op, State, Transition},
    ports::{InventoryStore, Reservation, Stock, StoreError},
};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

fn storage(e: sqlx::Error) -> StoreError {
    StoreError::Storage(e.to_string())
}

#[derive(Debug, Clone)]
pub struct PgInventory {
    pool: PgPool,
}

impl PgInventory {
    pub fn new(pool: PgPool) -> PgInventory {
        PgInventory { pool }
    }
}

async fn load(
    tx: &mut Transaction<'_, Postgres>,
    tenant: &str,
    id: Uuid,
    lock: bool,
) -> Result<Option<Reservation>, StoreError> {
    let sql = if lock {
        "SELECT order_id, state, expires_at_ms FROM reservations WHERE tenant_id = $1 AND id = $2 FOR UPDATE"
    } else {
        "SELECT order_id, state, expires_at_ms FROM reservations WHERE tenant_id = $1 AND id = $2"
    };
    let Some(row) = sqlx::query(sql)
        .bind(tenant)
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(storage)?
    else {
        return Ok(None);
    };
    let lines = sqlx::query(
        "SELECT sku_id, quantity FROM reservation_lines WHERE tenant_id = $1 AND reservation_id = $2 ORDER BY sku_id",
    )
    .bind(tenant)
    .bind(id)
    .fetch_all(&mut **tx)
    .await
    .map_err(storage)?
    .into_iter()
    .map(|r| Line {
        sku_id: r.get("sku_id"),
        quantity: r.get::<i32, _>("quantity") as u32,
    })
    .collect();
    let state: String = row.get("state");
    Ok(Some(Reservation {
        id,
        tenant_id: tenant.to_string(),
        order_id: row.get("order_id"),
        lines,
        state: State::parse(&state)
            .ok_or_else(|| StoreError::Storage(format!("bad state {state}")))?,
        expires_at_ms: row.get("expires_at_ms"),
    }))
}

/// Apply `op` to a locked reservation, moving stock only on a real change.
async fn transition(
    tx: &mut Transaction<'_, Postgres>,
    mut r: Reservation,
    op: Op,
) -> Result<Reservation, StoreError> {
    let next = match domain::apply(r.state, op) {
        Transition::Unchanged => return Ok(r),
        Transition::Conflict => return Err(StoreError::Conflict(r.state.as_str())),
        Transition::Changed(next) => next,
    };
    for l in &r.lines {
        let q = i64::from(l.quantity);
        let sql = if next == State::Committed {
            "UPDATE stock SET reserved = reserved - $3, on_hand = on_hand - $3, committed = committed + $3
             WHERE tenant_id = $1 AND sku_id = $2"
        } else {
            "UPDATE stock SET reserved = reserved - $3 WHERE tenant_id = $1 AND sku_id = $2"
        };
        sqlx::query(sql)
            .bind(&r.tenant_id)
            .bind(&l.sku_id)
            .bind(q)
            .execute(&mut **tx)
            .await
            .map_err(storage)?;
    }
    sqlx::query("UPDATE reservations SET state = $3 WHERE tenant_id = $1 AND id = $2")
        .bind(&r.tenant_id)
        .bind(r.id)
        .bind(next.as_str())
        .execute(&mut **tx)
        .await
        .map_err(storage)?;
    r.state = next;
    Ok(r)
}

impl PgInventory {
    /// The id of the order's reservation (one per order).
    async fn id_of_order(&self, tenant: &str, order_id: &str) -> Result<Uuid, StoreError> {
        sqlx::query_scalar("SELECT id FROM reservations WHERE tenant_id = $1 AND order_id = $2")
            .bind(tenant)
            .bind(order_id)
            .fetch_one(&self.pool)
            .await
            .map_err(storage)
    }

    async fn apply_op(&self, tenant: &str, id: Uuid, op: Op) -> Result<Reservation, StoreError> {
        let mut tx = self.pool.begin().await.map_err(storage)?;
        let r = load(&mut tx, tenant, id, true)
            .await?
            .ok_or(StoreError::NotFound)?;
        let r = transition(&mut tx, r, op).await?;
        tx.commit().await.map_err(storage)?;
        Ok(r)
    }
}

#[async_trait]
impl InventoryStore for PgInventory {
    async fn set_stock(&self, tenant: &str, sku_id: &str, on_hand: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO stock (tenant_id, sku_id, on_hand) VALUES ($1, $2, $3)
             ON CONFLICT (tenant_id, sku_id) DO UPDATE SET on_hand = EXCLUDED.on_hand",
        )
        .bind(tenant)
        .bind(sku_id)
        .bind(on_hand)
        .execute(&self.pool)
        .await
        .map_err(|e| match e {
            sqlx::Error::Database(d) if d.code().as_deref() == Some("23514") => {
                StoreError::Conflict("below the reserved quantity")
            }
            e => storage(e),
        })?;
        Ok(())
    }

    async fn stock(&self, tenant: &str, sku_id: &str) -> Result<Stock, StoreError> {
        let row = sqlx::query(
            "SELECT on_hand, reserved, committed FROM stock WHERE tenant_id = $1 AND sku_id = $2",
        )
        .bind(tenant)
        .bind(sku_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage)?
        .ok_or_else(|| StoreError::UnknownSku(sku_id.to_string()))?;
        Ok(Stock {
            on_hand: row.get("on_hand"),
            reserved: row.get("reserved"),
            committed: row.get("committed"),
        })
    }

    async fn reserve(
        &self,
        tenant: &str,
        order_id: &str,
        lines: &[Line],
        new_id: Uuid,
        expires_at_ms: i64,
    ) -> Result<Reservation, StoreError> {
        // The catalog's `inventory-lock-contention`: the held stock rows
        // stay locked this much longer, inside the transaction.
        let hold_ms = faults::value("inventory-lock-contention", "inventory").unwrap_or(0);
        if hold_ms > 0 {
            tracing::info!(
                fault = "inventory-lock-contention",
                hold_ms,
                "stock rows held locked longer"
            );
        }
        // One statement (migration 0002): a hot SKU's row is locked only
        // while the server runs it, and a refusal writes nothing.
        let (skus, quantities): (Vec<&str>, Vec<i32>) = lines
            .iter()
            .map(|l| (l.sku_id.as_str(), l.quantity as i32))
            .unzip();
        let row = sqlx::query(
            "SELECT outcome, reservation_id, sku_id FROM reserve_hold($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(tenant)
        .bind(new_id)
        .bind(order_id)
        .bind(expires_at_ms)
        .bind(&skus)
        .bind(&quantities)
        .bind(hold_ms)
        .fetch_one(&self.pool)
        .await
        .map_err(storage)?;
        let outcome: String = row.get("outcome");
        match outcome.as_str() {
            "held" => Ok(Reservation {
                id: new_id,
                tenant_id: tenant.to_string(),
                order_id: order_id.to_string(),
                lines: lines.to_vec(),
                state: State::Held,
                expires_at_ms,
            }),
            // One reservation per order: a repeat returns it (idempotency).
            "exists" => {
                let existing: Uuid = row.get("reservation_id");
                let mut tx = self.pool.begin().await.map_err(storage)?;
                let r = load(&mut tx, tenant, existing, false)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                tx.commit().await.map_err(storage)?;
                if r.lines == lines || matches!(r.state, State::Released | State::Expired) {
                    Ok(r)
                } else {
                    Err(StoreError::OrderMismatch(order_id.to_string()))
                }
            }
            "insufficient" => Err(StoreError::InsufficientStock {
                sku_id: row.get("sku_id"),
            }),
            "unknown_sku" => Err(StoreError::UnknownSku(row.get("sku_id"))),
            other => Err(StoreError::Storage(format!(
                "reserve_hold answered an unknown outcome {other:?}"
            ))),
        }
    }

    async fn commit(&self, tenant: &str, id: Uuid) -> Result<Reservation, StoreError> {
        self.apply_op(tenant, id, Op::Commit).await
    }

    async fn release(&self, tenant: &str, id: Uuid) -> Result<Reservation, StoreError> {
        self.apply_op(tenant, id, Op::Release).await
    }

    async fn release_order(
        &self,
        tenant: &str,
        order_id: &str,
        new_id: Uuid,
    ) -> Result<Reservation, StoreError> {
        // The unique (tenant, order) makes this race-free against a reserve
        // of the same order: whichever inserts first owns the order's row.
        let inserted = sqlx::query(
            "INSERT INTO reservations (tenant_id, id, order_id, state, expires_at_ms)
             VALUES ($1, $2, $3, 'released', 0) ON CONFLICT (tenant_id, order_id) DO NOTHING",
        )
        .bind(tenant)
        .bind(new_id)
        .bind(order_id)
        .execute(&self.pool)
        .await
        .map_err(storage)?
        .rows_affected();
        if inserted == 1 {
            return Ok(Reservation::released_empty(new_id, tenant, order_id));
        }
        let existing = self.id_of_order(tenant, order_id).await?;
        self.apply_op(tenant, existing, Op::Release).await
    }

    async fn expire_due(&self, now_ms: i64, limit: i64) -> Result<Vec<Reservation>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(storage)?;
        // SKIP LOCKED: several workers (or a commit racing the expiry) never block each other.
        let due = sqlx::query(
            "SELECT tenant_id, id FROM reservations WHERE state = 'held' AND expires_at_ms <= $1
             ORDER BY expires_at_ms LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .bind(now_ms)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await
        .map_err(storage)?;
        let mut out = Vec::new();
        for row in due {
            let tenant: String = row.get("tenant_id");
            let id: Uuid = row.get("id");
            if let Some(r) = load(&mut tx, &tenant, id, false).await? {
                out.push(transition(&mut tx, r, Op::Expire).await?);
            }
        }
        tx.commit().await.map_err(storage)?;
        Ok(out)
    }
}
