//! The JSON shapes of Stripe's objects (`payment_intent`, `charge`, `refund`,
//! `event`, `list`) and Stripe-like ids. Fields the simulator does not model
//! are present as `null` so strict clients find every key they expect.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::domain::{PaymentIntent, Refund};

/// The API version stamped on events when the request sent no `Stripe-Version`.
pub const DEFAULT_API_VERSION: &str = "2025-03-31.basil";

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `prefix_` + the uuid in fixed-width base62 (22 chars), so ids from a
/// time-ordered generator sort by creation like the uuids do.
pub fn stripe_id(prefix: &str, id: Uuid) -> String {
    let mut n = id.as_u128();
    let mut digits = [b'0'; 22];
    for d in digits.iter_mut().rev() {
        *d = BASE62[(n % 62) as usize];
        n /= 62;
    }
    format!("{prefix}_{}", String::from_utf8_lossy(&digits))
}

/// A card payment method as Stripe shapes it, with every field Stripe always
/// sends (typed clients such as async-stripe reject an object without them).
fn payment_method_object(id: &str, created_s: i64) -> Value {
    let card = crate::domain::cards::lookup(id);
    json!({
        "id": id,
        "object": "payment_method",
        "type": "card",
        "created": created_s,
        "billing_details": { "address": null, "email": null, "name": null, "phone": null },
        "card": card.map(|c| json!({
            "brand": c.brand,
            "last4": c.last4,
            "exp_month": 12,
            "exp_year": 2034,
            "funding": "credit",
            "country": "US",
        })),
        "customer": null,
        "livemode": false,
        "metadata": {},
    })
}

pub fn payment_intent(pi: &PaymentIntent) -> Value {
    let last_error = pi.last_payment_error.as_ref().map(|e| {
        json!({
            "type": "card_error",
            "code": e.decline.code,
            "decline_code": e.decline.decline_code,
            "message": e.decline.message,
            "param": e.decline.param,
            "charge": e.charge,
            "doc_url": format!("https://stripe.com/docs/error-codes/{}", e.decline.code.replace('_', "-")),
            "payment_method": payment_method_object(&e.payment_method, pi.created_s),
        })
    });
    json!({
        "id": pi.id,
        "object": "payment_intent",
        "amount": pi.amount,
        "amount_capturable": pi.amount_capturable,
        "amount_details": { "tip": {} },
        "amount_received": pi.amount_received,
        "application": null,
        "application_fee_amount": null,
        "automatic_payment_methods": null,
        "canceled_at": pi.canceled_at_s,
        "cancellation_reason": pi.cancellation_reason,
        "capture_method": pi.capture_method.as_str(),
        "client_secret": pi.client_secret,
        "confirmation_method": "automatic",
        "created": pi.created_s,
        "currency": pi.currency,
        "customer": null,
        "description": null,
        "last_payment_error": last_error,
        "latest_charge": pi.latest_charge,
        "livemode": false,
        "metadata": pi.metadata,
        "next_action": null,
        "on_behalf_of": null,
        "payment_method": pi.payment_method,
        "payment_method_options": {},
        "payment_method_types": ["card"],
        "processing": null,
        "receipt_email": null,
        "review": null,
        "setup_future_usage": null,
        "shipping": null,
        "statement_descriptor": null,
        "statement_descriptor_suffix": null,
        "status": pi.status.as_str(),
        "transfer_data": null,
        "transfer_group": null,
    })
}

/// The captured charge of a succeeded intent (the `charge.refunded` object).
pub fn charge(pi: &PaymentIntent) -> Value {
    json!({
        "id": pi.latest_charge,
        "object": "charge",
        "amount": pi.amount,
        "amount_captured": pi.amount_received,
        "amount_refunded": pi.amount_refunded,
        "captured": pi.amount_received > 0,
        "created": pi.created_s,
        "currency": pi.currency,
        "livemode": false,
        "metadata": pi.metadata,
        "paid": true,
        "payment_intent": pi.id,
        "payment_method": pi.payment_method,
        "refunded": pi.amount_received > 0 && pi.amount_refunded == pi.amount_received,
        "status": "succeeded",
    })
}

pub fn refund(r: &Refund) -> Value {
    json!({
        "id": r.id,
        "object": "refund",
        "amount": r.amount,
        "balance_transaction": null,
        "charge": r.charge,
        "created": r.created_s,
        "currency": r.currency,
        "metadata": r.metadata,
        "payment_intent": r.payment_intent,
        "reason": r.reason,
        "receipt_number": null,
        "source_transfer_reversal": null,
        "status": "succeeded",
        "transfer_reversal": null,
    })
}

/// An event as stored and delivered.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub event_type: &'static str,
    pub created_s: i64,
    pub api_version: String,
    pub object: Value,
    pub idempotency_key: Option<String>,
}

pub fn event(e: &Event) -> Value {
    json!({
        "id": e.id,
        "object": "event",
        "api_version": e.api_version,
        "created": e.created_s,
        "data": { "object": e.object },
        "livemode": false,
        "pending_webhooks": 1,
        "request": { "id": null, "idempotency_key": e.idempotency_key },
        "type": e.event_type,
    })
}

pub fn list(url: &str, data: Vec<Value>, has_more: bool) -> Value {
    json!({ "object": "list", "url": url, "has_more": has_more, "data": data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_fixed_width_and_ordered() {
        let a = stripe_id("pi", Uuid::from_u128(1));
        let b = stripe_id("pi", Uuid::from_u128(62));
        let c = stripe_id("pi", Uuid::from_u128(u128::MAX));
        assert_eq!(a, "pi_0000000000000000000001");
        assert_eq!(b, "pi_0000000000000000000010");
        assert_eq!(a.len(), c.len());
        assert!(a < b && b < c);
    }
}
