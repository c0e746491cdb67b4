//! What the orders service needs from the world. Adapters: `adapters::postgres`
//! (the order store), `adapters::grpc` (catalog prices, inventory and payments
//! for the saga's steps). The simulator puts in-memory implementations behind
//! the same traits.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use shopstream_platform::events::Envelope;
use uuid::Uuid;

use crate::domain::{
    checkout::{Price, PricedLine},
    order::{CancelReason, OrderState},
};

/// An order as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub tenant_id: String,
    pub order_id: Uuid,
    pub user_id: String,
    pub state: OrderState,
    pub cancel_detail: String,
    pub lines: Vec<PricedLine>,
    pub total_minor: i64,
    pub currency: String,
    pub payment_method: String,
    pub reservation_id: String,
    pub payment_id: String,
    pub idempotency_key: String,
    pub fingerprint: String,
    pub workflow_started: bool,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// One thing the saga did, as recorded (and shown by `ListOrderSteps`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub seq: u32,
    /// `reserve`, `authorize`, `capture`, `finalize`, `refund`, `cancel_intent`, `release`.
    pub step: String,
    /// `succeeded`, `failed`, `compensated`.
    pub outcome: String,
    /// Storage name of the order state after the step.
    pub state: String,
    pub cancel_reason: Option<String>,
    pub detail: String,
    pub attempts: u32,
    /// Why a `failed` step failed (a `CancelReason` name); `cancel_reason`
    /// is only set once the order is cancelled, after the compensations.
    #[serde(default)]
    pub failure_reason: Option<String>,
    /// A `failed` step whose retries ran out without an answer: it may have
    /// taken effect, so the saga undoes it too (`Outcome::Unknown`), where
    /// a refusal had none (`Outcome::Failed`).
    #[serde(default)]
    pub uncertain: bool,
    pub at_ms: i64,
    /// Set by the step that produced it.
    pub reservation_id: Option<String>,
    pub payment_id: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("order not found")]
    NotFound,
    #[error("storage: {0}")]
    Storage(String),
}

/// Position in a listing: (created_at_ms, order_id) of the last row seen.
pub type Cursor = (i64, Uuid);

/// Orders, their saga steps and their events.
///
/// Contract:
/// - `insert` creates the order and its first event atomically, unless an
///   order with the same (tenant, user, idempotency key) exists: then it
///   returns that order and `false`, creating nothing;
/// - `record_step` is idempotent per (order, seq): a repeat changes nothing
///   and publishes nothing; otherwise the step, the order's new state and the
///   events (the step's own, and the state change it caused) are written
///   atomically;
/// - `step` returns what `record_step` wrote for that seq, `uncertain`
///   included, with the produced id read back from the order;
/// - no call reads or writes another tenant's rows.
#[async_trait]
pub trait OrderStore: Send + Sync + 'static {
    async fn insert(&self, order: &Order, event: &Envelope) -> Result<(Order, bool), StoreError>;
    async fn get(&self, tenant: &str, order_id: Uuid) -> Result<Option<Order>, StoreError>;
    async fn by_key(
        &self,
        tenant: &str,
        user: &str,
        key: &str,
    ) -> Result<Option<Order>, StoreError>;
    /// Newest first; `user` None lists the whole tenant.
    async fn list(
        &self,
        tenant: &str,
        user: Option<&str>,
        states: &[String],
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<Vec<Order>, StoreError>;
    async fn record_step(
        &self,
        tenant: &str,
        order_id: Uuid,
        step: &StepRecord,
        events: &[Envelope],
    ) -> Result<bool, StoreError>;
    async fn steps(&self, tenant: &str, order_id: Uuid) -> Result<Vec<StepRecord>, StoreError>;
    /// Step `seq` of the order, if recorded, with the id it produced (the
    /// order's reservation for `reserve`, its payment for `authorize`): the
    /// saga's decision log, which a replayed workflow reads instead of
    /// running the step again.
    async fn step(
        &self,
        tenant: &str,
        order_id: Uuid,
        seq: u32,
    ) -> Result<Option<StepRecord>, StoreError>;
    async fn mark_started(&self, tenant: &str, order_id: Uuid) -> Result<(), StoreError>;
    /// Orders whose workflow was never started, created before `before_ms`.
    async fn unstarted(&self, before_ms: i64, limit: u32) -> Result<Vec<Order>, StoreError>;
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PriceError {
    #[error("unknown product {0}")]
    UnknownProduct(String),
    #[error("catalog unavailable: {0}")]
    Unavailable(String),
}

/// Current prices from the catalog.
#[async_trait]
pub trait PriceBook: Send + Sync + 'static {
    /// Prices of the SKUs of `product_id`, keyed by sku_id.
    async fn prices(
        &self,
        tenant: &str,
        product_id: &str,
    ) -> Result<BTreeMap<String, Price>, PriceError>;
}

/// Everything the saga's steps need to know about the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaOrder {
    pub tenant_id: String,
    pub order_id: String,
    pub user_id: String,
    /// (sku_id, quantity)
    pub lines: Vec<(String, u32)>,
    pub total_minor: i64,
    pub currency: String,
    pub payment_method: String,
    /// The W3C `traceparent` of the request that placed the order, so the
    /// saga's steps join its trace (`shopstream trace ORDER`). Absent in
    /// histories written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// How a step ended, short of an infrastructure failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepReply {
    /// Done; `id` is what it produced (reservation id, payment id), if anything.
    Done { id: String, detail: String },
    /// Refused for good (out of stock, card declined): no retry helps.
    Rejected { reason: String, detail: String },
}

impl StepReply {
    pub fn rejected(reason: CancelReason, detail: impl Into<String>) -> StepReply {
        StepReply::Rejected {
            reason: reason.as_str().to_string(),
            detail: detail.into(),
        }
    }
}

/// A failure worth retrying (timeout, service down, provider 5xx).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct Transient(pub String);

/// The saga's effects on other services. Every call is idempotent: the same
/// call again (a retry, a replay after a crash) has no further effect, which
/// is what lets the driver retry with at-least-once semantics. Keys sent to
/// other services are derived from the order id and the step.
#[async_trait]
pub trait SagaSteps: Send + Sync + 'static {
    async fn reserve(&self, o: &SagaOrder) -> Result<StepReply, Transient>;
    async fn authorize(&self, o: &SagaOrder) -> Result<StepReply, Transient>;
    async fn capture(&self, o: &SagaOrder, payment_id: &str) -> Result<StepReply, Transient>;
    async fn finalize(&self, o: &SagaOrder, reservation_id: &str) -> Result<StepReply, Transient>;
    async fn refund(&self, o: &SagaOrder, payment_id: &str) -> Result<StepReply, Transient>;
    async fn cancel_intent(&self, o: &SagaOrder, payment_id: &str) -> Result<StepReply, Transient>;
    async fn release(&self, o: &SagaOrder, reservation_id: &str) -> Result<StepReply, Transient>;
}
