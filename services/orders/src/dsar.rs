//! Orders' part in a DSAR (ADR 0012): the subject's orders with their lines
//! and saga steps (`orders.orders`), and the order events still in the
//! outbox (`orders.event_outbox`).
//!
//! Orders are accounting records: erase anonymises them instead of deleting
//! them. Amounts, currency, dates, state, line items and the saga's step
//! history stay; the owner becomes [`ERASED_USER_ID`] and everything the
//! person typed or chose goes (the idempotency key, the payment-method token
//! and the request fingerprint derived from it, the free-text cancel and
//! step details). The order's events in the outbox name the owner too:
//! published ones are deleted (the broker has them; nothing reads them
//! here again), unpublished ones are rewritten without the owner and the
//! details, so they still go out.
//!
//! Not covered here: the events already on `order.lifecycle` (the broker's
//! retention), and the checkout workflow's input in Temporal's history.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use shopstream_dsar::{
    ACCOUNTING_BASIS, ACCOUNTING_RETAIN_DAYS, Document, Erasure, Error, Export, Participant,
    Retained, StoreCount, Subject,
};
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

/// Orders with their lines and step history.
pub const ORDERS: &str = "orders.orders";
/// Order events in the transactional outbox.
pub const EVENT_OUTBOX: &str = "orders.event_outbox";

/// The owner of an anonymised order: the nil UUID, which no user has.
pub const ERASED_USER_ID: &str = "00000000-0000-0000-0000-000000000000";

/// What an anonymised order keeps.
pub const FIELDS_KEPT: &str = "order_id, state, cancel_reason, total_minor, currency, \
     created_at_ms, updated_at_ms, reservation_id, payment_id, line items (product, sku, \
     quantity, prices), saga steps (step, outcome, state, cancel_reason, attempts, at_ms)";

/// Create the index the participant finds an order's events by (the outbox
/// table is created by `outbox::ensure_table`, not by a migration; call this
/// after it). Idempotent.
pub async fn ensure_indexes(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("CREATE INDEX IF NOT EXISTS event_outbox_by_key ON event_outbox (tenant_id, key)")
        .execute(pool)
        .await?;
    Ok(())
}

/// The DSAR participant over orders' Postgres database.
#[derive(Debug, Clone)]
pub struct OrdersParticipant {
    pool: PgPool,
}

impl OrdersParticipant {
    pub fn new(pool: PgPool) -> OrdersParticipant {
        OrdersParticipant { pool }
    }
}

/// The subject's order ids (orders are owned by user id only). `lock` takes
/// the rows for an erase.
async fn order_ids(db: &mut PgConnection, s: &Subject, lock: bool) -> Result<Vec<Uuid>, Error> {
    let sql = format!(
        "SELECT order_id FROM orders WHERE tenant_id = $1 AND user_id = $2 ORDER BY order_id{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    Ok(sqlx::query_scalar(&sql)
        .bind(&s.tenant)
        .bind(s.user_id.to_string())
        .fetch_all(&mut *db)
        .await?)
}

/// Outbox keys of `orders` (events are keyed by order id).
fn keys(orders: &[Uuid]) -> Vec<String> {
    orders.iter().map(Uuid::to_string).collect()
}

async fn export_orders(
    db: &mut PgConnection,
    tenant: &str,
    orders: &[Uuid],
) -> Result<Vec<Value>, Error> {
    let mut items: BTreeMap<Uuid, Vec<Value>> = BTreeMap::new();
    for r in sqlx::query(
        "SELECT order_id, line_no, product_id, sku_id, quantity, unit_price_minor, line_total_minor
           FROM order_items WHERE tenant_id = $1 AND order_id = ANY($2)
          ORDER BY order_id, line_no",
    )
    .bind(tenant)
    .bind(orders)
    .fetch_all(&mut *db)
    .await?
    {
        items
            .entry(r.try_get("order_id")?)
            .or_default()
            .push(json!({
                "line_no": r.try_get::<i32, _>("line_no")?,
                "product_id": r.try_get::<String, _>("product_id")?,
                "sku_id": r.try_get::<String, _>("sku_id")?,
                "quantity": r.try_get::<i32, _>("quantity")?,
                "unit_price_minor": r.try_get::<i64, _>("unit_price_minor")?,
                "line_total_minor": r.try_get::<i64, _>("line_total_minor")?,
            }));
    }
    let mut history: BTreeMap<Uuid, Vec<Value>> = BTreeMap::new();
    for r in sqlx::query(
        "SELECT order_id, seq, step, outcome, state, cancel_reason, detail, attempts, at_ms
           FROM order_steps WHERE tenant_id = $1 AND order_id = ANY($2)
          ORDER BY order_id, seq",
    )
    .bind(tenant)
    .bind(orders)
    .fetch_all(&mut *db)
    .await?
    {
        history
            .entry(r.try_get("order_id")?)
            .or_default()
            .push(json!({
                "seq": r.try_get::<i32, _>("seq")?,
                "step": r.try_get::<String, _>("step")?,
                "outcome": r.try_get::<String, _>("outcome")?,
                "state": r.try_get::<String, _>("state")?,
                "cancel_reason": r.try_get::<Option<String>, _>("cancel_reason")?,
                "detail": r.try_get::<String, _>("detail")?,
                "attempts": r.try_get::<i32, _>("attempts")?,
                "at_ms": r.try_get::<i64, _>("at_ms")?,
            }));
    }
    let rows = sqlx::query(
        "SELECT order_id, user_id, state, cancel_reason, cancel_detail, total_minor, currency,
                payment_method, reservation_id, payment_id, idempotency_key, fingerprint,
                created_at_ms, updated_at_ms
           FROM orders WHERE tenant_id = $1 AND order_id = ANY($2)
          ORDER BY created_at_ms, order_id",
    )
    .bind(tenant)
    .bind(orders)
    .fetch_all(&mut *db)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let id: Uuid = r.try_get("order_id")?;
        out.push(json!({
            "order_id": id,
            "user_id": r.try_get::<String, _>("user_id")?,
            "state": r.try_get::<String, _>("state")?,
            "cancel_reason": r.try_get::<Option<String>, _>("cancel_reason")?,
            "cancel_detail": r.try_get::<String, _>("cancel_detail")?,
            "total_minor": r.try_get::<i64, _>("total_minor")?,
            "currency": r.try_get::<String, _>("currency")?,
            "payment_method": r.try_get::<String, _>("payment_method")?,
            "reservation_id": r.try_get::<String, _>("reservation_id")?,
            "payment_id": r.try_get::<String, _>("payment_id")?,
            "idempotency_key": r.try_get::<String, _>("idempotency_key")?,
            "request_fingerprint": r.try_get::<String, _>("fingerprint")?,
            "created_at_ms": r.try_get::<i64, _>("created_at_ms")?,
            "updated_at_ms": r.try_get::<i64, _>("updated_at_ms")?,
            "items": items.remove(&id).unwrap_or_default(),
            "history": history.remove(&id).unwrap_or_default(),
        }));
    }
    Ok(out)
}

async fn export_events(
    db: &mut PgConnection,
    tenant: &str,
    orders: &[Uuid],
) -> Result<Vec<Value>, Error> {
    let rows = sqlx::query(
        "SELECT seq, event_id, event_type, key, occurred_ms, published_at IS NOT NULL AS published,
                payload
           FROM event_outbox WHERE tenant_id = $1 AND key = ANY($2)
          ORDER BY seq",
    )
    .bind(tenant)
    .bind(keys(orders))
    .fetch_all(&mut *db)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let payload: Vec<u8> = r.try_get("payload")?;
        out.push(json!({
            "event_id": r.try_get::<Uuid, _>("event_id")?,
            "event_type": r.try_get::<String, _>("event_type")?,
            "order_id": r.try_get::<String, _>("key")?,
            "occurred_ms": r.try_get::<i64, _>("occurred_ms")?,
            "published": r.try_get::<bool, _>("published")?,
            "payload": serde_json::from_slice::<Value>(&payload)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&payload).into_owned())),
        }));
    }
    Ok(out)
}

/// `payload` (an order event, JSON) without its owner and free text; `None`
/// when it is not a JSON object (then it names no one we can find).
fn redacted(payload: &[u8]) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(payload).ok()?;
    let o = v.as_object_mut()?;
    if o.contains_key("user_id") {
        o.insert("user_id".into(), Value::String(ERASED_USER_ID.into()));
    }
    if o.contains_key("detail") {
        o.insert("detail".into(), Value::String(String::new()));
    }
    serde_json::to_vec(&v).ok()
}

/// Rewrite the unpublished events of `orders` and delete the published
/// ones; returns (redacted, deleted).
async fn erase_events(
    db: &mut PgConnection,
    tenant: &str,
    orders: &[Uuid],
) -> Result<(u64, u64), Error> {
    let keys = keys(orders);
    // Unpublished first: a row the relay is publishing right now is locked;
    // once its round commits, the row is published and the delete below
    // takes it.
    let pending = sqlx::query(
        "SELECT seq, payload FROM event_outbox
          WHERE tenant_id = $1 AND key = ANY($2) AND published_at IS NULL
          ORDER BY seq FOR UPDATE",
    )
    .bind(tenant)
    .bind(&keys)
    .fetch_all(&mut *db)
    .await?;
    let mut rewritten = 0;
    for r in &pending {
        let seq: i64 = r.try_get("seq")?;
        let payload: Vec<u8> = r.try_get("payload")?;
        if let Some(p) = redacted(&payload).filter(|p| *p != payload) {
            sqlx::query("UPDATE event_outbox SET payload = $2 WHERE seq = $1")
                .bind(seq)
                .bind(p)
                .execute(&mut *db)
                .await?;
            rewritten += 1;
        }
    }
    let deleted = sqlx::query(
        "DELETE FROM event_outbox
          WHERE tenant_id = $1 AND key = ANY($2) AND published_at IS NOT NULL",
    )
    .bind(tenant)
    .bind(&keys)
    .execute(&mut *db)
    .await?
    .rows_affected();
    Ok((rewritten, deleted))
}

#[async_trait::async_trait]
impl Participant for OrdersParticipant {
    fn name(&self) -> &'static str {
        "orders"
    }

    async fn export(&self, s: &Subject) -> Result<Export, Error> {
        // One snapshot for orders, lines, steps and events.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await?;
        let ids = order_ids(&mut tx, s, false).await?;
        let orders = export_orders(&mut tx, &s.tenant, &ids).await?;
        let events = export_events(&mut tx, &s.tenant, &ids).await?;
        tx.commit().await?;
        Ok(Export {
            counts: vec![
                StoreCount::new(ORDERS, orders.len() as u64, ""),
                StoreCount::new(EVENT_OUTBOX, events.len() as u64, ""),
            ],
            documents: vec![
                Document {
                    store: ORDERS.into(),
                    json: json!({ "orders": orders }),
                },
                Document {
                    store: EVENT_OUTBOX.into(),
                    json: json!({ "events": events }),
                },
            ],
            objects: Vec::new(),
        })
    }

    async fn erase(&self, s: &Subject) -> Result<Erasure, Error> {
        let mut tx = self.pool.begin().await?;
        let ids = order_ids(&mut tx, s, true).await?;
        let (mut anonymised, mut rewritten, mut deleted) = (0, 0, 0);
        if !ids.is_empty() {
            // The idempotency key is the client's text, and unique per
            // (tenant, user): under the shared pseudonym each order gets
            // one derived from its own id.
            anonymised = sqlx::query(
                "UPDATE orders SET user_id = $3, idempotency_key = 'erased:' || order_id::text,
                        fingerprint = '', payment_method = '', cancel_detail = ''
                  WHERE tenant_id = $1 AND order_id = ANY($2)",
            )
            .bind(&s.tenant)
            .bind(&ids)
            .bind(ERASED_USER_ID)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query(
                "UPDATE order_steps SET detail = ''
                  WHERE tenant_id = $1 AND order_id = ANY($2) AND detail <> ''",
            )
            .bind(&s.tenant)
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
            (rewritten, deleted) = erase_events(&mut tx, &s.tenant, &ids).await?;
        }
        tx.commit().await?;
        Ok(Erasure {
            counts: vec![
                StoreCount::new(ORDERS, anonymised, "anonymised"),
                StoreCount::new(
                    EVENT_OUTBOX,
                    rewritten + deleted,
                    &format!("{deleted} published deleted, {rewritten} unpublished redacted"),
                ),
            ],
            retained: vec![Retained {
                store: ORDERS.into(),
                count: anonymised,
                basis: ACCOUNTING_BASIS.into(),
                fields_kept: FIELDS_KEPT.into(),
                retain_days: ACCOUNTING_RETAIN_DAYS,
            }],
        })
    }

    async fn scan(&self, s: &Subject) -> Result<Vec<StoreCount>, Error> {
        let row = sqlx::query(
            "SELECT (SELECT count(*) FROM orders WHERE tenant_id = $1 AND user_id = $2) AS orders,
                    (SELECT count(*) FROM orders o
                       JOIN event_outbox e ON e.tenant_id = o.tenant_id AND e.key = o.order_id::text
                      WHERE o.tenant_id = $1 AND o.user_id = $2) AS events",
        )
        .bind(&s.tenant)
        .bind(s.user_id.to_string())
        .fetch_one(&self.pool)
        .await?;
        let n = |c: &str| -> Result<u64, Error> { Ok(row.try_get::<i64, _>(c)?.max(0) as u64) };
        Ok(vec![
            StoreCount::new(ORDERS, n("orders")?, ""),
            StoreCount::new(EVENT_OUTBOX, n("events")?, ""),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_removes_the_owner_and_the_detail_and_keeps_the_rest() {
        let p = br#"{"order_id":"o1","user_id":"u1","detail":"card of Ada","total_minor":5}"#;
        let v: Value = serde_json::from_slice(&redacted(p).unwrap()).unwrap();
        assert_eq!(
            v,
            json!({"order_id": "o1", "user_id": ERASED_USER_ID, "detail": "", "total_minor": 5})
        );
        // A state change has no detail: none is added.
        let p = br#"{"order_id":"o1","user_id":"u1"}"#;
        let v: Value = serde_json::from_slice(&redacted(p).unwrap()).unwrap();
        assert_eq!(v, json!({"order_id": "o1", "user_id": ERASED_USER_ID}));
        assert_eq!(redacted(b"not json"), None);
    }
}
