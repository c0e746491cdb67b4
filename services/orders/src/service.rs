//! The orders use cases: create (idempotent on the key), read, list, the
//! saga's step log, and recording a step (the saga's only write path).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use shopstream_platform::{
    clock::Clock,
    events::{Envelope, EventError},
    ids::{FixedId, IdGen},
    outbox::Relay,
};
use tokio::time::Instant;
use uuid::Uuid;

use crate::{
    domain::{
        checkout::{self, FieldError, RequestedLine},
        listing,
        order::{CancelReason, OrderState},
    },
    ports::{Cursor, Order, OrderStore, PriceBook, PriceError, SagaOrder, StepRecord, StoreError},
};

/// Bound on starting an order's saga inside `CreateOrder`, well under the
/// gateway's upstream deadline (3 s by default). A start that takes longer
/// (Temporal down or slow, the client retrying inside) is given up for this
/// request: the order is answered stored and not started yet (the gateway's
/// 202), and the sweeper ([`Orders::start_unstarted`]) starts it.
pub const START_IN_REQUEST: Duration = Duration::from_millis(1_000);
/// What a caller's deadline keeps back from the saga start for the answer
/// itself: the start ends at least this long before the caller stops waiting.
pub const ANSWER_MARGIN: Duration = Duration::from_millis(300);
/// Bound on one saga start by the sweeper.
pub const START_IN_SWEEP: Duration = Duration::from_secs(5);
/// Orders one sweep tries to start at most.
pub const SWEEP_BATCH: u32 = 100;
/// A sweep stops after this many starts in a row failed (Temporal is down:
/// the rest would wait out their bounds too) and tries again next interval.
pub const SWEEP_FAILURES_IN_A_ROW: usize = 3;

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
    /// The insert of a new order failed in a way that does not say whether
    /// it was committed (e.g. the connection dropped during the commit): the
    /// order may exist. A retry with the same key answers it if it does.
    #[error("the order may have been stored: {0}")]
    MaybeStored(StoreError),
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
/// The `traceparent` of the current span, if there is one.
fn current_traceparent() -> Option<String> {
    let mut headers = std::collections::BTreeMap::new();
    shopstream_platform::telemetry::inject(&mut shopstream_platform::telemetry::MapCarrier(
        &mut headers,
    ));
    headers.remove("traceparent")
}

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
        traceparent: current_traceparent(),
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
    /// is a replay of an earlier request with the same key. The saga start
    /// is bounded by [`START_IN_REQUEST`]; an order whose saga did not start
    /// comes back with `workflow_started == false` (the sweeper starts it).
    ///
    /// Once the order is stored nothing fails: every later problem is
    /// answered with the stored order. The insert itself failing without
    /// saying whether it committed is [`OrdersError::MaybeStored`].
    pub async fn create(
        &self,
        tenant: &str,
        user_id: &str,
        key: &str,
        lines: &[RequestedLine],
        payment_method: &str,
    ) -> Result<(Order, bool), OrdersError> {
        self.create_within(tenant, user_id, key, lines, payment_method, None)
            .await
    }

    /// [`Orders::create`] for a caller who stops waiting at `deadline`: the
    /// saga start also ends [`ANSWER_MARGIN`] before it (and is skipped when
    /// no time is left), so the answer reaches the caller.
    #[tracing::instrument(skip(self, user_id, lines, payment_method), fields(lines = lines.len()))]
    pub async fn create_within(
        &self,
        tenant: &str,
        user_id: &str,
        key: &str,
        lines: &[RequestedLine],
        payment_method: &str,
        deadline: Option<Instant>,
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
            return self.replay(existing, &fingerprint, deadline).await;
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
        let (mut stored, created) = self
            .store
            .insert(&order, &event)
            .await
            .map_err(OrdersError::MaybeStored)?;
        if !created {
            // Lost a race with the same key.
            return self.replay(stored, &fingerprint, deadline).await;
        }
        // Stored: from here on the answer is the order, whatever happens.
        self.wake();
        stored.workflow_started = self.start_within(&stored, start_budget(deadline)).await;
        Ok((stored, false))
    }

    async fn replay(
        &self,
        mut existing: Order,
        fingerprint: &str,
        deadline: Option<Instant>,
    ) -> Result<(Order, bool), OrdersError> {
        if existing.fingerprint != fingerprint {
            return Err(OrdersError::KeyReuse);
        }
        if !existing.workflow_started {
            existing.workflow_started = self.start_within(&existing, start_budget(deadline)).await;
        }
        Ok((existing, true))
    }

    /// Start the saga within `budget`; whether it started. On failure (or
    /// no answer in time) the order stays unstarted and
    /// [`Orders::start_unstarted`] tries again. A start given up on may
    /// still have reached Temporal: starting again is then a no-op.
    async fn start_within(&self, o: &Order, budget: Duration) -> bool {
        if budget.is_zero() {
            tracing::warn!(order_id = %o.order_id, "no time left to start the checkout saga; the sweeper will");
            return false;
        }
        let started = match tokio::time::timeout(budget, self.starter.start(&saga_order(o))).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {budget:?}")),
        };
        match started {
            Ok(()) => {
                if let Err(e) = self.store.mark_started(&o.tenant_id, o.order_id).await {
                    // Started all the same; the sweeper's next start of it is
                    // a no-op that marks it.
                    tracing::warn!(order_id = %o.order_id, error = %e, "could not mark the saga started");
                }
                true
            }
            Err(e) => {
                tracing::warn!(order_id = %o.order_id, error = %e, "checkout saga not started yet; will retry");
                false
            }
        }
    }

    /// Start the sagas of orders created more than `min_age_ms` ago whose
    /// start failed (Temporal down, a crash right after the insert), at most
    /// [`SWEEP_BATCH`] oldest first, each start bounded by
    /// [`START_IN_SWEEP`]; stops early after [`SWEEP_FAILURES_IN_A_ROW`]
    /// failures in a row. Returns how many started.
    pub async fn start_unstarted(&self, min_age_ms: i64) -> Result<usize, OrdersError> {
        let due = self
            .store
            .unstarted(self.clock.now_ms() - min_age_ms, SWEEP_BATCH)
            .await?;
        let (mut started, mut failed_in_a_row) = (0, 0);
        for o in &due {
            if self.start_within(o, START_IN_SWEEP).await {
                started += 1;
                failed_in_a_row = 0;
            } else {
                failed_in_a_row += 1;
                if failed_in_a_row >= SWEEP_FAILURES_IN_A_ROW {
                    break;
                }
            }
        }
        Ok(started)
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

/// The saga start's budget for a caller who stops waiting at `deadline`.
fn start_budget(deadline: Option<Instant>) -> Duration {
    match deadline {
        Some(d) => START_IN_REQUEST.min(
            d.saturating_duration_since(Instant::now())
                .saturating_sub(ANSWER_MARGIN),
        ),
        None => START_IN_REQUEST,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::MemoryOrders;
    use shopstream_platform::{clock::ManualClock, ids::SystemIdGen};
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct OnePrice;

    #[async_trait]
    impl PriceBook for OnePrice {
        async fn prices(
            &self,
            _: &str,
            _: &str,
        ) -> Result<BTreeMap<String, checkout::Price>, PriceError> {
            Ok(BTreeMap::from([(
                "s".to_string(),
                checkout::Price {
                    amount_minor: 500,
                    currency: "EUR".into(),
                },
            )]))
        }
    }

    /// A workflow engine that never answers (Temporal down behind retries),
    /// or answers at once; counts the starts asked of it.
    struct Engine {
        answers: std::sync::atomic::AtomicBool,
        asked: AtomicUsize,
    }

    #[async_trait]
    impl SagaStarter for Engine {
        async fn start(&self, _: &SagaOrder) -> Result<(), String> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            if self.answers.load(Ordering::SeqCst) {
                Ok(())
            } else {
                std::future::pending().await
            }
        }
    }

    fn orders(answers: bool) -> (Orders, Arc<Engine>, Arc<ManualClock>) {
        let engine = Arc::new(Engine {
            answers: answers.into(),
            asked: AtomicUsize::new(0),
        });
        let clock = Arc::new(ManualClock::new(1_000_000));
        let o = Orders {
            store: Arc::new(MemoryOrders::new()),
            prices: Arc::new(OnePrice),
            starter: engine.clone(),
            clock: clock.clone(),
            ids: Arc::new(SystemIdGen),
            relay: None,
        };
        (o, engine, clock)
    }

    fn line() -> Vec<RequestedLine> {
        vec![RequestedLine {
            product_id: "p".into(),
            sku_id: "s".into(),
            quantity: 1,
        }]
    }

    #[tokio::test(start_paused = true)]
    async fn an_order_whose_saga_does_not_start_in_time_is_answered_stored_and_unstarted() {
        let (orders, engine, clock) = orders(false);
        let asked_at = Instant::now();
        let (order, replayed) = orders
            .create("t", "u", "k", &line(), "pm_card_visa")
            .await
            .unwrap();
        assert_eq!(
            asked_at.elapsed(),
            START_IN_REQUEST,
            "bounded by the budget"
        );
        assert!(!replayed && !order.workflow_started);
        assert_eq!(order.state, OrderState::Pending);
        // A caller with little time left: the start ends before its deadline.
        let deadline = Instant::now() + ANSWER_MARGIN + Duration::from_millis(200);
        let (again, replayed) = orders
            .create_within("t", "u", "k", &line(), "pm_card_visa", Some(deadline))
            .await
            .unwrap();
        assert!(replayed && again.order_id == order.order_id && !again.workflow_started);
        assert!(Instant::now() + ANSWER_MARGIN <= deadline);
        // No time left at all: not even asked.
        let asked = engine.asked.load(Ordering::SeqCst);
        let (_, replayed) = orders
            .create_within("t", "u", "k", &line(), "pm_card_visa", Some(Instant::now()))
            .await
            .unwrap();
        assert!(replayed);
        assert_eq!(engine.asked.load(Ordering::SeqCst), asked);

        // The engine answers again: the sweeper starts it, and a replay
        // then says it started.
        engine.answers.store(true, Ordering::SeqCst);
        assert_eq!(orders.start_unstarted(5_000).await.unwrap(), 0, "too young");
        clock.advance_ms(5_001);
        assert_eq!(orders.start_unstarted(5_000).await.unwrap(), 1);
        assert_eq!(orders.start_unstarted(5_000).await.unwrap(), 0);
        let (again, _) = orders
            .create("t", "u", "k", &line(), "pm_card_visa")
            .await
            .unwrap();
        assert!(again.workflow_started);
        let (fresh, _) = orders
            .create("t", "u", "k2", &line(), "pm_card_visa")
            .await
            .unwrap();
        assert!(fresh.workflow_started);
    }

    #[tokio::test(start_paused = true)]
    async fn a_sweep_gives_up_after_failures_in_a_row_and_each_start_is_bounded() {
        let (orders, engine, clock) = orders(false);
        for i in 0..5 {
            orders
                .create_within(
                    "t",
                    "u",
                    &format!("k{i}"),
                    &line(),
                    "pm",
                    Some(Instant::now()),
                )
                .await
                .unwrap();
        }
        assert_eq!(engine.asked.load(Ordering::SeqCst), 0);
        clock.advance_ms(10_000);
        let swept_at = Instant::now();
        assert_eq!(orders.start_unstarted(5_000).await.unwrap(), 0);
        assert_eq!(engine.asked.load(Ordering::SeqCst), SWEEP_FAILURES_IN_A_ROW);
        assert_eq!(
            swept_at.elapsed(),
            START_IN_SWEEP * SWEEP_FAILURES_IN_A_ROW as u32
        );
        engine.answers.store(true, Ordering::SeqCst);
        assert_eq!(orders.start_unstarted(5_000).await.unwrap(), 5);
    }

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
