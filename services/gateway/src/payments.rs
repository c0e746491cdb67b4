//! Payments at the edge: admin refunds and reads over the payments service's
//! gRPC API, and the Stripe webhook, forwarded byte for byte to the payments
//! service's HTTP endpoint with its answer returned as is.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, HeaderName, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use shopstream_platform::{ErrorCode, Problem, http::ApiJson, telemetry};
use shopstream_proto::{
    common::v1::Money,
    payments::v1::{
        GetPaymentRequest, Payment, PaymentStatus, RefundRequest, get_payment_request::By,
    },
};
use utoipa::ToSchema;

use crate::{
    AppState,
    auth::Admin,
    orders::idempotency_key,
    upstream::{problem_of, request},
};

const SERVICE: &str = "payments";

/// Path of the webhook, at the gateway and at the payments service.
pub const WEBHOOK_PATH: &str = "/webhooks/stripe";

/// Stripe's signature header, forwarded untouched.
pub const STRIPE_SIGNATURE_HEADER: &str = "stripe-signature";

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PaymentView {
    pub payment_id: String,
    pub order_id: String,
    /// pending | authorized | captured | partially_refunded | refunded | failed | cancelled
    pub status: String,
    /// Amount authorized.
    pub amount_minor: i64,
    pub captured_minor: i64,
    pub refunded_minor: i64,
    /// ISO 4217.
    pub currency: String,
    /// The provider's id for the intent (e.g. `pi_...`).
    pub provider_ref: String,
    pub failure_code: String,
    pub failure_message: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// Body of `POST /payments/{payment_id}/refund`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct RefundCreate {
    /// Minor units in the payment's currency, at least 1; absent = everything
    /// captured and not yet refunded.
    #[schema(minimum = 1)]
    #[serde(default, deserialize_with = "crate::wire::opt_i64_whole")]
    pub amount_minor: Option<i64>,
    /// Why, for the audit trail, e.g. `customer_request`.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RefundView {
    pub payment: PaymentView,
    /// The provider's id for this refund (e.g. `re_...`).
    pub refund_id: String,
}

pub fn payment_status(s: PaymentStatus) -> &'static str {
    match s {
        PaymentStatus::Unspecified => "unspecified",
        PaymentStatus::Pending => "pending",
        PaymentStatus::Authorized => "authorized",
        PaymentStatus::Captured => "captured",
        PaymentStatus::PartiallyRefunded => "partially_refunded",
        PaymentStatus::Refunded => "refunded",
        PaymentStatus::Failed => "failed",
        PaymentStatus::Cancelled => "cancelled",
    }
}

fn minor(m: &Option<Money>) -> i64 {
    m.as_ref().map_or(0, |m| m.amount_minor)
}

impl From<Payment> for PaymentView {
    fn from(p: Payment) -> Self {
        PaymentView {
            status: payment_status(p.status()).to_string(),
            amount_minor: minor(&p.amount),
            captured_minor: minor(&p.captured),
            refunded_minor: minor(&p.refunded),
            currency: [&p.amount, &p.captured, &p.refunded]
                .into_iter()
                .flatten()
                .map(|m| m.currency.clone())
                .find(|c| !c.is_empty())
                .unwrap_or_default(),
            payment_id: p.payment_id,
            order_id: p.order_id,
            provider_ref: p.provider_ref,
            failure_code: p.failure_code,
            failure_message: p.failure_message,
            created_at_ms: p.created_at_ms,
            updated_at_ms: p.updated_at_ms,
        }
    }
}

async fn fetch_payment(state: &AppState, tenant: &str, id: String) -> Result<Payment, Problem> {
    state
        .payments
        .clone()
        .get_payment(request(
            GetPaymentRequest {
                by: Some(By::PaymentId(id)),
            },
            tenant,
            state.upstream_timeout,
        ))
        .await
        .map_err(|s| problem_of(SERVICE, s))?
        .into_inner()
        .payment
        .ok_or_else(|| Problem::new(ErrorCode::NotFound, "no such payment"))
}

/// Refund a captured payment, fully or partially (admin).
#[utoipa::path(post, path = "/payments/{payment_id}/refund", tag = "admin", request_body = RefundCreate, security(("bearer" = [])),
    params(("payment_id" = String, Path, format = "uuid", description = "payment id"),
        ("Idempotency-Key" = String, Header, description = "unique per intended refund: visible ASCII, not blank, at most 255 characters", min_length = 1, max_length = 255, pattern = r"^[\x20-\x7e]*[\x21-\x7e][\x20-\x7e]*$")),
    responses((status = 200, body = RefundView),
        (status = 400, description = "no or bad Idempotency-Key; a body that is not JSON or not sent as application/json"),
        (status = 401, description = "no or invalid access token"), (status = 403, description = "not an admin"),
        (status = 404, description = "no such payment"), (status = 409, description = "nothing left to refund"),
        (status = 413, description = "body too large"),
        (status = 422, description = "invalid amount or payment id, or more than is left to refund"),
        (status = 503, description = "payments is unavailable")))]
pub async fn refund(
    State(state): State<AppState>,
    Admin(claims): Admin,
    Path(payment_id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<RefundCreate>,
) -> Result<Json<RefundView>, Problem> {
    let key = idempotency_key(&headers)?;
    // The client gives minor units only; the currency is the payment's own.
    let amount = match body.amount_minor {
        None => None,
        Some(a) if a <= 0 => {
            return Err(Problem::new(ErrorCode::Unprocessable, "invalid refund")
                .with_field("amount_minor", "must be positive"));
        }
        Some(a) => {
            let payment = fetch_payment(&state, &claims.tid, payment_id.clone()).await?;
            Some(Money {
                amount_minor: a,
                currency: PaymentView::from(payment).currency,
            })
        }
    };
    let msg = RefundRequest {
        idempotency_key: key,
        payment_id,
        amount,
        reason: body.reason.unwrap_or_default(),
    };
    let resp = state
        .payments
        .clone()
        .refund(request(msg, &claims.tid, state.upstream_timeout))
        .await
        .map_err(|s| problem_of(SERVICE, s))?
        .into_inner();
    let payment = resp
        .payment
        .ok_or_else(|| Problem::new(ErrorCode::Internal, "payments answered without a payment"))?;
    Ok(Json(RefundView {
        payment: payment.into(),
        refund_id: resp.refund_id,
    }))
}

/// One payment (admin).
#[utoipa::path(get, path = "/payments/{payment_id}", tag = "admin", security(("bearer" = [])),
    params(("payment_id" = String, Path, format = "uuid", description = "payment id")),
    responses((status = 200, body = PaymentView), (status = 401, description = "no or invalid access token"),
        (status = 403, description = "not an admin"), (status = 404, description = "no such payment"),
        (status = 422, description = "not a UUID"), (status = 503, description = "payments is unavailable")))]
pub async fn get_payment(
    State(state): State<AppState>,
    Admin(claims): Admin,
    Path(payment_id): Path<String>,
) -> Result<Json<PaymentView>, Problem> {
    let p = fetch_payment(&state, &claims.tid, payment_id).await?;
    Ok(Json(p.into()))
}

/// Stripe's webhook (public): forwarded byte for byte, with `Stripe-Signature`,
/// to the payments service, whose status and body come back as they are
/// (400 on a bad signature). 503 when payments does not answer in time.
#[utoipa::path(post, path = "/webhooks/stripe", tag = "payments",
    request_body(content = String, content_type = "application/json", description = "the Stripe event, signed"),
    params(("Stripe-Signature" = String, Header, description = "Stripe's signature of the raw body")),
    responses((status = 200, description = "accepted"), (status = 400, description = "a missing or bad signature, or not an event"),
        (status = 503, description = "payments is unavailable")))]
pub async fn stripe_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let url = format!(
        "{}{WEBHOOK_PATH}",
        state.payments_http.trim_end_matches('/')
    );
    let mut out_headers = HeaderMap::new();
    for name in [
        header::CONTENT_TYPE.as_str(),
        STRIPE_SIGNATURE_HEADER,
        "user-agent",
    ] {
        if let Some(v) = headers.get(name) {
            out_headers.insert(HeaderName::from_static(name), v.clone());
        }
    }
    telemetry::inject(&mut telemetry::HeaderCarrier(&mut out_headers));
    let sent = state
        .http
        .post(&url)
        .headers(out_headers)
        .body(body)
        .timeout(state.upstream_timeout)
        .send()
        .await;
    let resp = match sent {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, timeout = e.is_timeout(), %url, "payments webhook unavailable");
            return Problem::new(ErrorCode::Unavailable, "payments is unavailable").into_response();
        }
    };
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
    let bytes = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, %url, "payments webhook answer cut short");
            return Problem::new(ErrorCode::Unavailable, "payments is unavailable").into_response();
        }
    };
    let mut out = (status, bytes).into_response();
    if let Some(ct) = content_type {
        out.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    out
}
