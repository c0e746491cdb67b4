//! The orders use cases: create (idempotent on the key), read, list, the
//! saga's step log, and recording a step (the saga's only write path).

use std::{collections::BTreeMap, sync::Arc};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use shopstream_platform::{
    clock::Clock,
    events::{Envelope, EventError},
    ids::{FixedId, IdGen},
    outbox::Relay,
};
use uuid::Uuid;

use crate::{
    domain::{
        checkout::{self, FieldError, RequestedLine},
        listing,
        order::{CancelReason, OrderState},
    },
    ports::{Cursor, Order, OrderStore, PriceBook, PriceError, SagaOrder, StepRecord, StoreError},
};

/// `event_type` of order state changes on `order.lifecycle`.
pub const EVENT_TYPE: &str = "order.state_changed";

/// Payload of `order.state_changed` (schema version 1), keyed by order_id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderStateChanged {
    pub order_id: String,
    pub user_id: String,
    pub state: String,
    pub cancel_reason: Option<String>,
    pub total_minor: i64,
    pub currency: String,
    pub reservation_id: String,
    pub ts_ms: i64,
    /// The order's products, each once, in line order (added after
    /// version 1; absent in older events).
    #[serde(default)]
    pub product_ids: Vec<String>,
}

/// `event_type` of each recorded saga step on `order.lifecycle`: what the
/// realtime fan-out shows an order's owner, step by step.
pub const STEP_EVENT_TYPE: &str = "order.step_recorded";

/// Payload of `order.step_recorded` (schema version 1), keyed by order_id.
/// Its event id is derived from (order, seq), so a step has one id however
/// often it is recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderStepRecorded {
    pub order_id: String,
    pub user_id: String,
    /// 1, 2, 3, ... in the order the steps happened.
    pub seq: u32,
    pub step: String,
    pub outcome: String,
    /// The order's state after the step.
    pub state: String,
    pub cancel_reason: Option<String>,
    pub detail: String,
    pub attempts: u32,
    /// When the step ended (the saga's clock).
    pub at_ms: i64,
}

/// The id of step `seq`'s event: the order id's first twelve bytes, `seq`
/// in the last four, marked as a version-8 (custom) UUID so it never equals
/// a generated id.
pub fn step_event_id(order_id: Uuid, seq: u32) -> Uuid {
    let mut b = *order_id.as_bytes();
    b[12..16].copy_from_slice(&seq.to_be_bytes());
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    Uuid::from_bytes(b)
}

#[derive(Debug, thiserror::Error)]
pub enum OrdersError {
    #[error("invalid order")]
    Invalid(Vec<FieldError>),
    #[error("this Idempotency-Key was used for a different request")]
    KeyReuse,
    #[error("order not found")]
    NotFound,
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Starts the checkout saga of an order (the Temporal adapter, or the
/// simulator's driver). Starting an order's saga twice starts it once.
#[async_trait]
pub trait SagaStarter: Send + Sync + 'static {
    async fn start(&self, order: &SagaOrder) -> Result<(), String>;
}

#[derive(Clone)]
pub struct Orders {
    pub store: Arc<dyn OrderStore>,
    pub prices: Arc<dyn PriceBook>,
    pub starter: Arc<dyn SagaStarter>,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn IdGen>,
    /// Woken after every write that enqueued an event.
    pub relay: Option<Relay>,
}

impl std::fmt::Debug for Orders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Orders")
    }
}

/// What the saga needs of an order.
pub fn saga_order(o: &Order) -> SagaOrder {
    SagaOrder {
        tenant_id: o.tenant_id.clone(),
        order_id: o.order_id.to_string(),
        user_id: o.user_id.clone(),
        lines: o
            .lines
            .iter()
            .map(|l| (l.sku_id.clone(), l.quantity))
            .collect(),
        total_minor: o.total_minor,
        currency: o.currency.clone(),
        payment_method: o.payment_method.clone(),
    }
}

/// The order's products, each once, in line order.
fn product_ids(o: &Order) -> Vec<String> {
    let mut ids: Vec<String> = Vec::with_capacity(o.lines.len());
    for l in &o.lines {
        if !ids.contains(&l.product_id) {
            ids.push(l.product_id.clone());
        }
    }
    ids
}

impl Orders {
    fn event(
        &self,
        o: &Order,
        state: OrderState,
        reservation_id: &str,
    ) -> Result<Envelope, EventError> {
        let payload = OrderStateChanged {
            order_id: o.order_id.to_string(),
            user_id: o.user_id.clone(),
            state: state.as_str().to_string(),
            cancel_reason: state.cancel_reason().map(|r| r.as_str().to_string()),
            total_minor: o.total_minor,
            currency: o.currency.clone(),
            reservation_id: reservation_id.to_string(),
            ts_ms: self.clock.now_ms(),
            product_ids: product_ids(o),
        };
        Envelope::new(
            EVENT_TYPE,
            1,
            &o.tenant_id,
            &o.order_id.to_string(),
            &payload,
            self.clock.as_ref(),
            self.ids.as_ref(),
        )
    }

    fn step_event(&self, o: &Order, s: &StepRecord) -> Result<Envelope, EventError> {
        let payload = OrderStepRecorded {
            order_id: o.order_id.to_string(),
            user_id: o.user_id.clone(),
            seq: s.seq,
            step: s.step.clone(),
            outcome: s.outcome.clone(),
            state: s.state.clone(),
            cancel_reason: s.cancel_reason.clone(),
            detail: s.detail.clone(),
            attempts: s.attempts,
            at_ms: s.at_ms,
        };
        Envelope::new(
            STEP_EVENT_TYPE,
            1,
            &o.tenant_id,
            &o.order_id.to_string(),
            &payload,
            self.clock.as_ref(),
            &FixedId(step_event_id(o.order_id, s.seq)),
        )
    }

    fn wake(&self) {
        if let Some(r) = &self.relay {
            r.wake();
        }
    }

    /// Create an order and start its saga. Returns the order and whether it
    /// is a replay of an earlier request with the same key.
    #[tracing::instrument(skip(self, lines, payment_method), fields(lines = lines.len()))]
    pub async fn create(
        &self,
        tenant: &str,
        user_id: &str,
        key: &str,
        lines: &[RequestedLine],
        payment_method: &str,
    ) -> Result<(Order, bool), OrdersError> {
        let mut errors = checkout::validate(key, lines, payment_method);
        if user_id.trim().is_empty() {
            errors.push(FieldError {
                field: "user_id".into(),
                message: "is required".into(),
            });
        }
        if !errors.is_empty() {
            return Err(OrdersError::Invalid(errors));
        }
        let fingerprint = checkout::fingerprint(lines, payment_method);
        // A repeat is answered from the store without asking the catalog.
        if let Some(existing) = self.store.by_key(tenant, user_id, key).await? {
            return self.replay(existing, &fingerprint).await;
        }
        let priced = checkout::price(lines, &self.prices_of(tenant, lines).await?)
            .map_err(OrdersError::Invalid)?;
        let now = self.clock.now_ms();
        let order = Order {
            tenant_id: tenant.to_string(),
            order_id: self.ids.new_id(),
            user_id: user_id.to_string(),
            state: OrderState::Pending,
            cancel_detail: String::new(),
            lines: priced.lines,
            total_minor: priced.total_minor,
            currency: priced.currency,
            payment_method: payment_method.to_string(),
            reservation_id: String::new(),
            payment_id: String::new(),
            idempotency_key: key.to_string(),
            fingerprint: fingerprint.clone(),
            workflow_started: false,
            created_at_ms: now,
            updated_at_ms: now,
        };
        let event = self
            .event(&order, OrderState::Pending, "")
            .map_err(|e| OrdersError::Unavailable(e.to_string()))?;
        let (stored, created) = self.store.insert(&order, &event).await?;
        if !created {
            // Lost a race with the same key.
            return self.replay(stored, &fingerprint).await;
        }
        self.wake();
        self.start(&stored).await;
        Ok((stored, false))
    }

    async fn replay(
        &self,
        existing: Order,
        fingerprint: &str,
    ) -> Result<(Order, bool), OrdersError> {
        if existing.fingerprint != fingerprint {
            return Err(OrdersError::KeyReuse);
        }
        if !existing.workflow_started {
            self.start(&existing).await;
        }
        Ok((existing, true))
    }

    /// Start the saga; on failure the order stays unstarted and
    /// [`Orders::start_unstarted`] tries again.
    async fn start(&self, o: &Order) {
        match self.starter.start(&saga_order(o)).await {
            Ok(()) => {
                if let Err(e) = self.store.mark_started(&o.tenant_id, o.order_id).await {
                    tracing::warn!(order_id = %o.order_id, error = %e, "could not mark the saga started");
                }
            }
            Err(e) => {
                tracing::warn!(order_id = %o.order_id, error = %e, "checkout saga not started yet; will retry")
            }
        }
    }

    /// Start the sagas of orders created more than `min_age_ms` ago whose
    /// start failed (Temporal down, a crash right after the insert).
    pub async fn start_unstarted(&self, min_age_ms: i64) -> Result<usize, OrdersError> {
        let due = self
            .store
            .unstarted(self.clock.now_ms() - min_age_ms, 100)
            .await?;
        for o in &due {
            self.start(o).await;
        }
        Ok(due.len())
    }

    async fn prices_of(
        &self,
        tenant: &str,
        lines: &[RequestedLine],
    ) -> Result<BTreeMap<String, checkout::Price>, OrdersError> {
        let mut by_product: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, l) in lines.iter().enumerate() {
            by_product.entry(l.product_id.as_str()).or_default().push(i);
        }
        let mut out = BTreeMap::new();
        let mut errors = Vec::new();
        for (product, idx) in by_product {
            match self.prices.prices(tenant, product).await {
                Ok(prices) => {
                    for i in idx {
                        if let Some(p) = prices.get(&lines[i].sku_id) {
                            out.insert(lines[i].sku_id.clone(), p.clone());
                        }
                    }
                }
                Err(PriceError::UnknownProduct(_)) => {
                    for i in idx {
                        errors.push(FieldError {
                            field: format!("items[{i}].product_id"),
                            message: "is not a product of this shop".into(),
                        });
                    }
                }
                Err(PriceError::Unavailable(why)) => {
                    return Err(OrdersError::Unavailable(format!("catalog: {why}")));
                }
            }
        }
        if !errors.is_empty() {
            return Err(OrdersError::Invalid(errors));
        }
        Ok(out)
    }

    pub async fn get(&self, tenant: &str, order_id: Uuid) -> Result<Order, OrdersError> {
        self.store
            .get(tenant, order_id)
            .await?
            .ok_or(OrdersError::NotFound)
    }

    /// At most `limit` orders, newest first. `limit` is capped at one more
    /// than [`listing::MAX_PAGE_SIZE`], so a caller can read one order past a
    /// full page to learn whether another page follows.
    pub async fn list(
        &self,
        tenant: &str,
        user: Option<&str>,
        states: &[String],
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<Vec<Order>, OrdersError> {
        Ok(self
            .store
            .list(
                tenant,
                user,
                states,
                after,
                limit.clamp(1, listing::MAX_PAGE_SIZE + 1),
            )
            .await?)
    }

    pub async fn steps(
        &self,
        tenant: &str,
        order_id: Uuid,
    ) -> Result<Vec<StepRecord>, OrdersError> {
        self.get(tenant, order_id).await?;
        Ok(self.store.steps(tenant, order_id).await?)
    }

    /// Record one saga step (idempotent per seq) and publish it, and the
    /// state change it caused, if any.
    pub async fn record(
        &self,
        tenant: &str,
        order_id: Uuid,
        step: &StepRecord,
    ) -> Result<bool, OrdersError> {
        let order = self.get(tenant, order_id).await?;
        let reason = step.cancel_reason.as_deref().and_then(CancelReason::parse);
        let state = OrderState::parse(&step.state, reason)
            .ok_or_else(|| OrdersError::Unavailable(format!("unknown state {:?}", step.state)))?;
        let unavailable = |e: EventError| OrdersError::Unavailable(e.to_string());
        let mut events = vec![self.step_event(&order, step).map_err(unavailable)?];
        if state != order.state {
            let reservation = step
                .reservation_id
                .clone()
                .unwrap_or_else(|| order.reservation_id.clone());
            events.push(
                self.event(&order, state, &reservation)
                    .map_err(unavailable)?,
            );
        }
        let new = self
            .store
            .record_step(tenant, order_id, step, &events)
            .await?;
        if new {
            self.wake();
        }
        Ok(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_event_id_is_the_same_for_the_same_step_and_never_a_generated_one() {
        let order = Uuid::now_v7();
        let one = step_event_id(order, 1);
        assert_eq!(one, step_event_id(order, 1));
        assert_ne!(one, step_event_id(order, 2));
        assert_ne!(one, step_event_id(Uuid::now_v7(), 1));
        assert_eq!(one.get_version_num(), 8);
        assert_ne!(one, order);
    }
}
