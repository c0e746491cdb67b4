//! The event payments publishes: `PaymentStatusChanged` (events/v1) as JSON
//! on `payment.events`, keyed by order id, one per real change.

use serde::{Deserialize, Serialize};
use shopstream_platform::{
    clock::Clock,
    events::{Envelope, EventError},
    ids::IdGen,
};

use crate::domain::{self, Payment};

pub const TOPIC: &str = "payment.events";
pub const EVENT_TYPE: &str = "payment.status_changed";
pub const SCHEMA_VERSION: u16 = 1;

/// Payload of `payment.status_changed` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentStatusChanged {
    pub payment_id: String,
    pub order_id: String,
    /// Lowercase status, e.g. `authorized`, `partially_refunded`.
    pub status: String,
    /// What this change is about: authorized, captured or refunded amount.
    pub amount_minor: i64,
    pub currency: String,
    /// Provider code when `status` is `failed`, else empty.
    pub failure_code: String,
    pub ts_ms: i64,
}

impl PaymentStatusChanged {
    pub fn of(p: &Payment) -> PaymentStatusChanged {
        PaymentStatusChanged {
            payment_id: p.id.to_string(),
            order_id: p.order_id.clone(),
            status: p.status.as_str().to_string(),
            amount_minor: domain::event_amount_minor(p),
            currency: p.currency.clone(),
            failure_code: p.failure_code.clone(),
            ts_ms: p.updated_at_ms,
        }
    }
}

/// The envelope announcing `p`'s current state.
pub fn envelope(p: &Payment, clock: &dyn Clock, ids: &dyn IdGen) -> Result<Envelope, EventError> {
    Envelope::new(
        EVENT_TYPE,
        SCHEMA_VERSION,
        &p.tenant_id,
        &p.order_id,
        &PaymentStatusChanged::of(p),
        clock,
        ids,
    )
}
