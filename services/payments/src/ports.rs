//! What payments needs from the world: a [`PaymentStore`] (adapters:
//! `adapters::postgres` in production, `adapters::memory` for unit tests and
//! the simulator; both pass `adapters::contract`) and a [`Provider`] (the
//! card processor; `adapters::stripe` talks to Stripe or stripe-sim).

use async_trait::async_trait;
use shopstream_platform::events::Envelope;
use uuid::Uuid;

use crate::domain::{IntentState, Payment};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("payment not found")]
    NotFound,
    #[error("storage: {0}")]
    Storage(String),
}

/// A change to one payment: given the current row, the new row and the
/// event it causes, or `None` when nothing changes.
pub type Change<'a> = &'a (dyn Fn(&Payment) -> Option<(Payment, Option<Envelope>)> + Send + Sync);

/// Payments and the webhook log.
///
/// Contract (checked by `adapters::contract`):
/// - `insert` is idempotent per (tenant, order): when the order already has a
///   payment it returns that one and `false`, and stores nothing;
/// - `update` runs `change` on the current row under a lock (concurrent
///   updates of one payment serialize) and, when it returns a change, stores
///   the row and enqueues its event on the outbox atomically; it returns the
///   row as it is afterwards;
/// - `record_webhook` returns `true` only the first time an event id is seen;
/// - `stale` lists in-flight payments (PENDING or AUTHORIZED, with a provider
///   ref) not updated since `updated_before_ms`, oldest first, across
///   tenants, at most `limit`;
/// - nothing crosses tenants: every lookup takes the tenant.
#[async_trait]
pub trait PaymentStore: Send + Sync + 'static {
    async fn insert(&self, payment: &Payment) -> Result<(Payment, bool), StoreError>;
    async fn get(&self, tenant: &str, id: Uuid) -> Result<Payment, StoreError>;
    async fn by_order(&self, tenant: &str, order_id: &str) -> Result<Payment, StoreError>;
    async fn by_provider_ref(
        &self,
        tenant: &str,
        provider_ref: &str,
    ) -> Result<Payment, StoreError>;
    async fn update(
        &self,
        tenant: &str,
        id: Uuid,
        change: Change<'_>,
    ) -> Result<Payment, StoreError>;
    async fn record_webhook(
        &self,
        event_id: &str,
        event_type: &str,
        received_at_ms: i64,
    ) -> Result<bool, StoreError>;
    async fn stale(&self, updated_before_ms: i64, limit: i64) -> Result<Vec<Payment>, StoreError>;
}

/// A provider's view of one intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub provider_ref: String,
    pub state: IntentState,
    pub amount_minor: i64,
    pub captured_minor: i64,
    /// For 3-D Secure in the browser; may be empty.
    pub client_secret: String,
}

/// A refund the provider made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundMade {
    pub refund_id: String,
    pub amount_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The card was declined (Stripe 402 `card_error`): a business outcome.
    #[error("card declined: {code}")]
    Declined {
        /// The intent the decline left behind, when the provider said.
        provider_ref: String,
        code: String,
        message: String,
    },
    /// The provider refused the request as invalid (4xx other than 402, 429),
    /// e.g. the intent is not in a state that allows the operation.
    #[error("provider refused the request: {code}: {message}")]
    Refused { code: String, message: String },
    /// 5xx, 429, timeout, connection failure or an unreadable answer: the
    /// outcome is unknown and the caller may retry with the same key.
    #[error("provider unavailable: {0}")]
    Unavailable(String),
}

/// Who is paying for what, sent to the provider as metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIntent<'a> {
    pub idempotency_key: &'a str,
    pub amount_minor: i64,
    pub currency: &'a str,
    pub payment_method: &'a str,
    pub tenant_id: &'a str,
    pub order_id: &'a str,
    pub payment_id: Uuid,
}

/// The card processor.
///
/// Contract: every mutating call carries `idempotency_key` to the provider
/// so that a retry with the same key never acts twice; every call is bounded
/// by a timeout and reports an unknown outcome as `Unavailable`.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// Create and confirm a manual-capture intent.
    async fn create_intent(&self, req: NewIntent<'_>) -> Result<Intent, ProviderError>;
    /// Capture `amount_minor` (all of it when `None`).
    async fn capture(
        &self,
        idempotency_key: &str,
        provider_ref: &str,
        amount_minor: Option<i64>,
    ) -> Result<Intent, ProviderError>;
    async fn cancel(
        &self,
        idempotency_key: &str,
        provider_ref: &str,
    ) -> Result<Intent, ProviderError>;
    async fn refund(
        &self,
        idempotency_key: &str,
        provider_ref: &str,
        amount_minor: i64,
        reason: &str,
    ) -> Result<RefundMade, ProviderError>;
    async fn retrieve(&self, provider_ref: &str) -> Result<Intent, ProviderError>;
}
