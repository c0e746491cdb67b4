//! HTTP: `POST /webhooks/stripe`, merged into the platform router (which
//! adds /healthz, /readyz, /metrics and problem+json errors).

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
};
use shopstream_platform::{ErrorCode, Problem, metrics::Metrics};

use crate::service::{Payments, WebhookError, WebhookOutcome};

pub const WEBHOOK_PATH: &str = "/webhooks/stripe";
pub const SIGNATURE_HEADER: &str = "stripe-signature";

#[derive(Debug, Clone)]
pub struct WebhookState {
    pub payments: Payments,
    pub default_tenant: String,
    /// `shopstream_payments_webhooks_total{outcome}`.
    pub deliveries: Family<OutcomeLabel, Counter>,
}

/// The answer a webhook delivery got: `applied`, `duplicate`, `ignored`,
/// `bad_signature`, `bad_payload` or `unavailable`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

/// The webhook delivery counter, registered on the service's registry.
pub fn register(metrics: &Metrics) -> Family<OutcomeLabel, Counter> {
    let family = Family::<OutcomeLabel, Counter>::default();
    metrics.register(
        "payments_webhooks",
        "Stripe webhook deliveries by the answer they got",
        family.clone(),
    );
    family
}

pub fn routes(state: WebhookState) -> Router {
    Router::new()
        .route(WEBHOOK_PATH, post(stripe_webhook))
        .with_state(state)
}

async fn stripe_webhook(
    State(st): State<WebhookState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let signature = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    let (outcome, response) = match st
        .payments
        .handle_webhook(&body, signature, &st.default_tenant)
        .await
    {
        Ok(outcome) => {
            let body = match outcome {
                WebhookOutcome::Applied => "applied",
                WebhookOutcome::Duplicate => "duplicate",
                WebhookOutcome::Ignored => "ignored",
            };
            (body, (StatusCode::OK, body).into_response())
        }
        Err(WebhookError::Signature(e)) => {
            tracing::warn!(error = %e, "webhook signature refused");
            (
                "bad_signature",
                Problem::new(ErrorCode::BadRequest, "invalid Stripe-Signature").into_response(),
            )
        }
        Err(WebhookError::Payload(e)) => (
            "bad_payload",
            Problem::new(ErrorCode::BadRequest, format!("unreadable event: {e}")).into_response(),
        ),
        Err(WebhookError::Store(e)) => {
            tracing::error!(error = %e, "webhook not applied");
            // 503 makes Stripe deliver again later.
            (
                "unavailable",
                Problem::new(ErrorCode::Unavailable, "payments storage is unavailable")
                    .into_response(),
            )
        }
    };
    st.deliveries
        .get_or_create(&OutcomeLabel {
            outcome: outcome.to_string(),
        })
        .inc();
    response
}
