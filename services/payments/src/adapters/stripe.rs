//! The [`Provider`] on Stripe's API through async-stripe (hyper + rustls),
//! pointed at Stripe or at stripe-sim by the base URL. Every POST carries the
//! caller's key as `Idempotency-Key` and runs once (no client-side retries:
//! the caller retries with the same key); every call has a deadline. And
//! [`parse_webhook`]: what a Stripe webhook delivery says, as an
//! [`Observation`] of one payment.

use std::{
    collections::{BTreeMap, HashMap},
    str::FromStr,
    time::Duration,
};

use async_trait::async_trait;
use serde::Deserialize;
use stripe::{Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeError, StripeRequest};
use stripe_core::{
    PaymentIntent, PaymentIntentCaptureMethod, PaymentIntentStatus,
    payment_intent::{
        CancelPaymentIntent, CapturePaymentIntent, CreatePaymentIntent, RetrievePaymentIntent,
    },
    refund::CreateRefund,
};

use shopstream_platform::faults;
use uuid::Uuid;

use crate::{
    domain::{IntentState, Observation},
    ports::{Intent, NewIntent, Provider, ProviderError, RefundMade},
};

/// The catalog fault that makes every provider call fail as a refused
/// connection.
const PROVIDER_UNREACHABLE: &str = "payment-provider-unreachable";

/// Metadata keys on every intent.
pub const METADATA_ORDER_ID: &str = "order_id";
pub const METADATA_TENANT_ID: &str = "tenant_id";
pub const METADATA_PAYMENT_ID: &str = "payment_id";

#[derive(Clone)]
pub struct StripeProvider {
    client: Client,
    timeout: Duration,
}

impl std::fmt::Debug for StripeProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeProvider")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl StripeProvider {
    /// A client for `api_base` (e.g. `https://api.stripe.com/` or
    /// `http://127.0.0.1:18084/`); `timeout` bounds each call.
    pub fn new(api_base: &str, secret_key: &str, timeout: Duration) -> Result<Self, ProviderError> {
        // async-stripe appends `v1/...` to the base as is: it must end in '/'.
        let base = format!("{}/", api_base.trim_end_matches('/'));
        // With both ring and aws-lc compiled in (other crates of the binary
        // enable ring), rustls has no default and async-stripe's connector
        // would panic: choose aws-lc unless someone already chose.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let client = ClientBuilder::new(secret_key)
            .url(base)
            .timeout(timeout)
            .request_strategy(RequestStrategy::Once)
            .build()
            .map_err(|e| ProviderError::Unavailable(format!("stripe client config: {e}")))?;
        Ok(StripeProvider { client, timeout })
    }

    fn strategy(key: &str) -> Result<RequestStrategy, ProviderError> {
        IdempotencyKey::new(key)
            .map(RequestStrategy::Idempotent)
            .map_err(|e| ProviderError::Refused {
                code: "idempotency_key_invalid".into(),
                message: e.to_string(),
            })
    }

    /// Bound a call by the deadline (the client's own timeout covers one
    /// attempt; this also covers connecting and a stuck body). While the
    /// catalog's `payment-provider-unreachable` is on, the call is not made
    /// and fails as a refused connection does (async-stripe's transport
    /// error, through [`map_error`]).
    async fn bounded<T>(
        &self,
        f: impl Future<Output = Result<T, StripeError>>,
    ) -> Result<T, ProviderError> {
        if faults::hits(PROVIDER_UNREACHABLE, "payments").is_some() {
            tracing::warn!(
                fault = PROVIDER_UNREACHABLE,
                "provider call refused: connection refused"
            );
            return Err(map_error(StripeError::ClientError(format!(
                "client error (Connect): connection refused (injected by {PROVIDER_UNREACHABLE})"
            ))));
        }
        match tokio::time::timeout(self.timeout + Duration::from_millis(100), f).await {
            Ok(r) => r.map_err(map_error),
            Err(_) => Err(ProviderError::Unavailable(format!(
                "no answer within {} ms",
                self.timeout.as_millis()
            ))),
        }
    }
}

/// Translate async-stripe's error: 402/card errors are declines, 429 and
/// 5xx are unknown outcomes, other 4xx are refusals.
/// What a Stripe error answer means for us: a decline (402 or a card error),
/// worth retrying (409 — another request with the same idempotency key is
/// still running —, 429, 5xx), or a refusal. Shared with the simulator's
/// HTTP provider, which reads the same answers without async-stripe.
pub fn classify(
    status: u16,
    card_error: bool,
    code: String,
    message: String,
    provider_ref: String,
) -> ProviderError {
    if status == 402 || card_error {
        ProviderError::Declined {
            provider_ref,
            code,
            message,
        }
    } else if status == 409 || status == 429 || status >= 500 {
        ProviderError::Unavailable(format!("stripe answered {status}: {code}"))
    } else {
        ProviderError::Refused { code, message }
    }
}

pub fn map_error(e: StripeError) -> ProviderError {
    match e {
        StripeError::Stripe(api, status) => {
            let code = api
                .code
                .as_ref()
                .map(|c| c.as_str().to_string())
                .or_else(|| api.decline_code.clone())
                .unwrap_or_else(|| api.type_.as_str().to_string());
            classify(
                status,
                api.type_ == stripe::ApiErrorsType::CardError,
                code,
                api.message.clone().unwrap_or_default(),
                api.payment_intent
                    .as_ref()
                    .map(|pi| pi.id.to_string())
                    .unwrap_or_default(),
            )
        }
        StripeError::Timeout => ProviderError::Unavailable("stripe timed out".into()),
        StripeError::ClientError(m) => ProviderError::Unavailable(format!("stripe transport: {m}")),
        StripeError::JSONDeserialize(m) => {
            ProviderError::Unavailable(format!("unreadable stripe answer: {m}"))
        }
        StripeError::ConfigError(m) => ProviderError::Unavailable(format!("stripe config: {m}")),
    }
}

fn intent(pi: &PaymentIntent) -> Intent {
    let state = match pi.status {
        PaymentIntentStatus::RequiresCapture => IntentState::RequiresCapture,
        PaymentIntentStatus::Succeeded => IntentState::Succeeded,
        PaymentIntentStatus::Canceled => IntentState::Canceled,
        _ => IntentState::Open,
    };
    Intent {
        provider_ref: pi.id.to_string(),
        state,
        amount_minor: pi.amount,
        captured_minor: pi.amount_received,
        client_secret: pi.client_secret.clone().unwrap_or_default(),
    }
}

#[async_trait]
impl Provider for StripeProvider {
    async fn create_intent(&self, req: NewIntent<'_>) -> Result<Intent, ProviderError> {
        let currency = stripe_types::Currency::from_str(&req.currency.to_ascii_lowercase())
            .unwrap_or_else(|never| match never {});
        let metadata = HashMap::from([
            (METADATA_ORDER_ID.to_string(), req.order_id.to_string()),
            (METADATA_TENANT_ID.to_string(), req.tenant_id.to_string()),
            (METADATA_PAYMENT_ID.to_string(), req.payment_id.to_string()),
        ]);
        let call = CreatePaymentIntent::new(req.amount_minor, currency)
            .capture_method(PaymentIntentCaptureMethod::Manual)
            .confirm(true)
            .payment_method(req.payment_method)
            .metadata(metadata)
            .customize()
            .request_strategy(Self::strategy(req.idempotency_key)?);
        self.bounded(call.send(&self.client))
            .await
            .map(|pi| intent(&pi))
    }

    async fn capture(
        &self,
        idempotency_key: &str,
        provider_ref: &str,
        amount_minor: Option<i64>,
    ) -> Result<Intent, ProviderError> {
        let mut req = CapturePaymentIntent::new(provider_ref);
        if let Some(a) = amount_minor {
            req = req.amount_to_capture(a);
        }
        let call = req
            .customize()
            .request_strategy(Self::strategy(idempotency_key)?);
        self.bounded(call.send(&self.client))
            .await
            .map(|pi| intent(&pi))
    }

    async fn cancel(
        &self,
        idempotency_key: &str,
        provider_ref: &str,
    ) -> Result<Intent, ProviderError> {
        let call = CancelPaymentIntent::new(provider_ref)
            .customize()
            .request_strategy(Self::strategy(idempotency_key)?);
        self.bounded(call.send(&self.client))
            .await
            .map(|pi| intent(&pi))
    }

    async fn refund(
        &self,
        idempotency_key: &str,
        provider_ref: &str,
        amount_minor: i64,
        reason: &str,
    ) -> Result<RefundMade, ProviderError> {
        let mut req = CreateRefund::new()
            .payment_intent(provider_ref)
            .amount(amount_minor);
        if !reason.is_empty() {
            // Stripe's `reason` is an enum; ours is free text, kept as metadata.
            req = req.metadata(HashMap::from([("reason".to_string(), reason.to_string())]));
        }
        let call = req
            .customize()
            .request_strategy(Self::strategy(idempotency_key)?);
        self.bounded(call.send(&self.client))
            .await
            .map(|r| RefundMade {
                refund_id: r.id.to_string(),
                amount_minor: r.amount,
            })
    }

    async fn retrieve(&self, provider_ref: &str) -> Result<Intent, ProviderError> {
        let call = RetrievePaymentIntent::new(provider_ref).customize();
        self.bounded(call.send(&self.client))
            .await
            .map(|pi| intent(&pi))
    }
}

// Webhooks: what a delivery (its signature already checked) says, read
// loosely on purpose: only the fields used here must be present.

/// Which payment a webhook event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentRef {
    /// Our payment id, from the intent's metadata.
    Id(Uuid),
    /// The provider's intent id (events about intents created without it).
    Provider(String),
}

/// What one event says, about which payment of which tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookObservation {
    pub tenant: String,
    pub payment: PaymentRef,
    pub observation: Observation,
}

/// One webhook delivery, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEvent {
    /// Stripe's event id (deliveries are deduplicated on it).
    pub id: String,
    /// The event type, e.g. `payment_intent.succeeded`.
    pub kind: String,
    /// `None` for an event type or object payments does not track.
    pub about: Option<WebhookObservation>,
}

/// Read a webhook payload. Events without a tenant in the intent's metadata
/// belong to `default_tenant`. `Err` only when the payload is not an event.
pub fn parse_webhook(
    payload: &[u8],
    default_tenant: &str,
) -> Result<WebhookEvent, serde_json::Error> {
    let event: StripeEvent = serde_json::from_slice(payload)?;
    let about = observation(&event, default_tenant);
    Ok(WebhookEvent {
        id: event.id,
        kind: event.kind,
        about,
    })
}

/// The parts of a Stripe event payments reads.
#[derive(Debug, Deserialize)]
struct StripeEvent {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: EventData,
}

#[derive(Debug, Deserialize)]
struct EventData {
    object: EventObject,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct EventObject {
    id: Option<String>,
    status: Option<String>,
    amount_received: i64,
    amount_refunded: i64,
    payment_intent: Option<String>,
    metadata: BTreeMap<String, String>,
    last_payment_error: Option<LastPaymentError>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LastPaymentError {
    code: Option<String>,
    decline_code: Option<String>,
    message: Option<String>,
}

fn observation(e: &StripeEvent, default_tenant: &str) -> Option<WebhookObservation> {
    let o = &e.data.object;
    let tenant = o
        .metadata
        .get(METADATA_TENANT_ID)
        .cloned()
        .unwrap_or_else(|| default_tenant.to_string());
    let intent_ref = if e.kind.starts_with("payment_intent.") {
        o.id.clone()?
    } else {
        o.payment_intent.clone()?
    };
    // The payment id in metadata finds the row even before the create
    // response stored the provider ref (the webhook can win that race).
    let payment = match o
        .metadata
        .get(METADATA_PAYMENT_ID)
        .and_then(|s| s.parse().ok())
    {
        Some(id) => PaymentRef::Id(id),
        None => PaymentRef::Provider(intent_ref.clone()),
    };
    let obs = match e.kind.as_str() {
        "payment_intent.amount_capturable_updated"
        | "payment_intent.succeeded"
        | "payment_intent.canceled" => Observation::Intent {
            provider_ref: intent_ref,
            state: IntentState::from_stripe(o.status.as_deref().unwrap_or_default()),
            captured_minor: o.amount_received,
        },
        "payment_intent.payment_failed" => {
            let err = o.last_payment_error.as_ref();
            Observation::Declined {
                provider_ref: intent_ref,
                code: err
                    .and_then(|x| x.code.clone().or_else(|| x.decline_code.clone()))
                    .unwrap_or_else(|| "payment_failed".into()),
                message: err.and_then(|x| x.message.clone()).unwrap_or_default(),
            }
        }
        "charge.refunded" => Observation::RefundedTotal {
            refunded_minor: o.amount_refunded,
        },
        _ => return None,
    };
    Some(WebhookObservation {
        tenant,
        payment,
        observation: obs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, object: serde_json::Value) -> Vec<u8> {
        serde_json::json!({"id": "evt_1", "type": kind, "data": {"object": object}})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn an_intent_event_names_our_payment_and_its_tenant_from_metadata() {
        let id = Uuid::from_u64_pair(1, 2);
        let e = parse_webhook(
            &event(
                "payment_intent.succeeded",
                serde_json::json!({"id": "pi_1", "status": "succeeded", "amount_received": 1200,
                    "metadata": {"payment_id": id.to_string(), "tenant_id": "acme"}}),
            ),
            "default",
        )
        .unwrap();
        assert_eq!(
            (e.id.as_str(), e.kind.as_str()),
            ("evt_1", "payment_intent.succeeded")
        );
        let about = e.about.unwrap();
        assert_eq!(about.tenant, "acme");
        assert_eq!(about.payment, PaymentRef::Id(id));
        assert_eq!(
            about.observation,
            Observation::Intent {
                provider_ref: "pi_1".into(),
                state: IntentState::Succeeded,
                captured_minor: 1200,
            }
        );
    }

    #[test]
    fn declines_and_refunds_without_metadata_go_by_intent_in_the_default_tenant() {
        let e = parse_webhook(
            &event(
                "payment_intent.payment_failed",
                serde_json::json!({"id": "pi_2", "last_payment_error":
                    {"decline_code": "insufficient_funds", "message": "Your card has insufficient funds."}}),
            ),
            "default",
        )
        .unwrap();
        let about = e.about.unwrap();
        assert_eq!(about.tenant, "default");
        assert_eq!(about.payment, PaymentRef::Provider("pi_2".into()));
        assert!(matches!(
            about.observation,
            Observation::Declined { ref code, .. } if code == "insufficient_funds"
        ));
        let e = parse_webhook(
            &event(
                "charge.refunded",
                serde_json::json!({"id": "ch_1", "payment_intent": "pi_3", "amount_refunded": 500}),
            ),
            "default",
        )
        .unwrap();
        let about = e.about.unwrap();
        assert_eq!(about.payment, PaymentRef::Provider("pi_3".into()));
        assert_eq!(
            about.observation,
            Observation::RefundedTotal {
                refunded_minor: 500
            }
        );
    }

    #[test]
    fn untracked_events_are_read_but_about_nothing_and_garbage_is_an_error() {
        let e = parse_webhook(
            &event("customer.created", serde_json::json!({"id": "cus_1"})),
            "default",
        )
        .unwrap();
        assert_eq!(e.about, None);
        // A charge event without its intent cannot be matched to a payment.
        let e = parse_webhook(
            &event("charge.refunded", serde_json::json!({"id": "ch_2"})),
            "default",
        )
        .unwrap();
        assert_eq!(e.about, None);
        assert!(parse_webhook(b"not json", "default").is_err());
        assert!(parse_webhook(br#"{"id": "evt_1"}"#, "default").is_err());
    }
}
