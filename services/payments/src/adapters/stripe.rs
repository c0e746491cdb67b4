//! The [`Provider`] on Stripe's API through async-stripe (hyper + rustls),
//! pointed at Stripe or at stripe-sim by the base URL. Every POST carries the
//! caller's key as `Idempotency-Key` and runs once (no client-side retries:
//! the caller retries with the same key); every call has a deadline.

use std::{collections::HashMap, str::FromStr, time::Duration};

use async_trait::async_trait;
use stripe::{Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeError, StripeRequest};
use stripe_core::{
    PaymentIntent, PaymentIntentCaptureMethod, PaymentIntentStatus,
    payment_intent::{
        CancelPaymentIntent, CapturePaymentIntent, CreatePaymentIntent, RetrievePaymentIntent,
    },
    refund::CreateRefund,
};

use crate::{
    domain::IntentState,
    ports::{Intent, NewIntent, Provider, ProviderError, RefundMade},
};

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
    /// attempt; this also covers connecting and a stuck body).
    async fn bounded<T>(
        &self,
        f: impl Future<Output = Result<T, StripeError>>,
    ) -> Result<T, ProviderError> {
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
