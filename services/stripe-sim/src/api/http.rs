//! Stripe's REST routes (`/v1/...`, form-encoded in, Stripe JSON and error
//! objects out) and the simulator's admin routes (`/_sim/...`, JSON).
//!
//! Every `/v1` request goes through [`execute`]: API key check, injected
//! latency, injected failure, idempotent replay, then the operation under the
//! state lock.

use std::sync::{Arc, Mutex, MutexGuard};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::{any, get, post},
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use shopstream_platform::{ErrorCode, Problem, http::ApiJson};

use crate::{
    error::StripeError,
    faults::{FaultsUpdate, Operation},
    form::Form,
    state::{ApiResult, RequestCtx, StoredResult, StripeState},
};

pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
pub const IDEMPOTENT_REPLAYED_HEADER: &str = "idempotent-replayed";
pub const STRIPE_VERSION_HEADER: &str = "stripe-version";
/// Stripe's limit on idempotency key length.
pub const IDEMPOTENCY_KEY_MAX_CHARS: usize = 255;

#[derive(Clone)]
pub struct HttpState {
    pub sim: Arc<Mutex<StripeState>>,
    pub secret_key: SecretString,
}

impl HttpState {
    fn lock(&self) -> MutexGuard<'_, StripeState> {
        // A panic under the lock leaves plain data behind; keep serving it.
        self.sim.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub fn routes(state: HttpState) -> Router {
    Router::new()
        .route("/v1/payment_intents", post(create_intent))
        .route("/v1/payment_intents/{id}", get(retrieve_intent))
        .route("/v1/payment_intents/{id}/confirm", post(confirm_intent))
        .route("/v1/payment_intents/{id}/capture", post(capture_intent))
        .route("/v1/payment_intents/{id}/cancel", post(cancel_intent))
        .route("/v1/refunds", post(create_refund))
        .route("/v1/refunds/{id}", get(retrieve_refund))
        .route("/v1/events", get(list_events))
        .route("/v1/events/{id}", get(retrieve_event))
        .route("/v1/{*rest}", any(unknown_route))
        .route(
            "/_sim/faults",
            get(get_faults).post(set_faults).delete(clear_faults),
        )
        .route("/_sim/reset", post(reset))
        .route("/_sim/payment_intents", get(list_intents))
        .with_state(state)
}

/// The API key of an `Authorization: Bearer` header, if it is the configured one.
fn authenticate(state: &HttpState, headers: &HeaderMap) -> Result<String, StripeError> {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(StripeError::unauthorized(
            "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
        ));
    };
    let key = value.strip_prefix("Bearer ").unwrap_or("").trim();
    if key.is_empty() || key != state.secret_key.expose_secret() {
        let tail: String = key
            .chars()
            .rev()
            .take(4)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(StripeError::unauthorized(format!(
            "Invalid API Key provided: sk_****{tail}"
        )));
    }
    Ok(key.to_string())
}

fn injected(status: u16, op: Operation) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let kind = if status == StatusCode::TOO_MANY_REQUESTS {
        "invalid_request_error"
    } else {
        "api_error"
    };
    let mut e = StripeError::new(
        status,
        kind,
        format!(
            "An error occurred with our connection to Stripe (injected by stripe-sim on {op:?})."
        ),
    );
    if status == StatusCode::TOO_MANY_REQUESTS {
        e = e.with_code("rate_limit");
    }
    e.into_response()
}

fn respond(
    status: StatusCode,
    body: serde_json::Value,
    idempotency_key: Option<&str>,
    replayed: bool,
) -> Response {
    let mut resp = (status, Json(body)).into_response();
    if let Some(v) = idempotency_key.and_then(|k| HeaderValue::from_str(k).ok()) {
        resp.headers_mut().insert(IDEMPOTENCY_KEY_HEADER, v);
    }
    if replayed {
        resp.headers_mut()
            .insert(IDEMPOTENT_REPLAYED_HEADER, HeaderValue::from_static("true"));
    }
    resp
}

/// Run one Stripe API call. POSTs honour `Idempotency-Key` per API key: the
/// same key with the same method, path and parameters replays the stored
/// status and body (`Idempotent-Replayed: true`); with anything else it is a
/// 400 `idempotency_error`. Results refused during parameter validation and
/// injected failures are not stored.
async fn execute(
    state: &HttpState,
    headers: &HeaderMap,
    method: &Method,
    uri: &Uri,
    op: Operation,
    form: Form,
    f: impl FnOnce(&mut StripeState, &Form, &RequestCtx) -> ApiResult,
) -> Response {
    let api_key = match authenticate(state, headers) {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    let latency_ms = state.lock().faults.latency_ms;
    if latency_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(latency_ms)).await;
    }
    let idempotency_key = if method == Method::POST {
        headers
            .get(IDEMPOTENCY_KEY_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
    } else {
        None
    };
    if idempotency_key
        .as_ref()
        .is_some_and(|k| k.chars().count() > IDEMPOTENCY_KEY_MAX_CHARS)
    {
        return StripeError::invalid_request(
            "idempotency_key_too_long",
            format!("Idempotency keys can be at most {IDEMPOTENCY_KEY_MAX_CHARS} characters long."),
        )
        .into_response();
    }
    let ctx = RequestCtx {
        idempotency_key: idempotency_key.clone(),
        api_version: headers
            .get(STRIPE_VERSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    let request = (format!("{method} {}", uri.path()), form.canonical());
    let mut sim = state.lock();
    let fault = sim
        .faults
        .take_failure(op)
        .or_else(|| crate::faults::catalog_failure(op));
    if let Some(rule) = &fault
        && !rule.after_effect
    {
        tracing::info!(
            ?op,
            status = rule.status,
            "injected failure before processing"
        );
        return injected(rule.status, op);
    }
    let store_key = idempotency_key.as_ref().map(|k| (api_key, k.clone()));
    let (status, body, replayed) = match store_key.as_ref().and_then(|k| sim.idempotent_result(k)) {
        Some(stored) if stored.request == request => (stored.status, stored.body.clone(), true),
        Some(stored) => {
            let e = StripeError::new(
                StatusCode::BAD_REQUEST,
                "idempotency_error",
                format!(
                    "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{}' if you meant to execute a different request (first used for {}).",
                    ctx.idempotency_key.as_deref().unwrap_or_default(),
                    stored.request.0
                ),
            );
            return e.into_response();
        }
        None => {
            let (status, body, before_execution) = match f(&mut sim, &form, &ctx) {
                Ok(v) => (StatusCode::OK, v, false),
                Err(e) => (e.status, e.body(), e.before_execution),
            };
            if let Some(key) = store_key
                && !before_execution
            {
                let stored_at_s = sim.clock.now_ms().div_euclid(1000);
                sim.store_idempotent_result(
                    key,
                    StoredResult {
                        request,
                        status,
                        body: body.clone(),
                        stored_at_s,
                    },
                );
            }
            (status, body, false)
        }
    };
    drop(sim);
    if let Some(rule) = fault {
        tracing::info!(
            ?op,
            status = rule.status,
            "injected failure after processing"
        );
        return injected(rule.status, op);
    }
    respond(status, body, idempotency_key.as_deref(), replayed)
}

async fn create_intent(
    State(st): State<HttpState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    execute(
        &st,
        &headers,
        &method,
        &uri,
        Operation::Create,
        Form::parse(&body),
        |sim, form, ctx| sim.create_intent(form, ctx),
    )
    .await
}

async fn retrieve_intent(
    State(st): State<HttpState>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    execute(
        &st,
        &headers,
        &method,
        &uri,
        Operation::Retrieve,
        Form::default(),
        |sim, _, _| sim.retrieve_intent(&id),
    )
    .await
}

async fn confirm_intent(
    State(st): State<HttpState>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    execute(
        &st,
        &headers,
        &method,
        &uri,
        Operation::Confirm,
        Form::parse(&body),
        |sim, form, ctx| sim.confirm_intent(&id, form, ctx),
    )
    .await
}

async fn capture_intent(
    State(st): State<HttpState>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    execute(
        &st,
        &headers,
        &method,
        &uri,
        Operation::Capture,
        Form::parse(&body),
        |sim, form, ctx| sim.capture_intent(&id, form, ctx),
    )
    .await
}

async fn cancel_intent(
    State(st): State<HttpState>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    execute(
        &st,
        &headers,
        &method,
        &uri,
        Operation::Cancel,
        Form::parse(&body),
        |sim, form, ctx| sim.cancel_intent(&id, form, ctx),
    )
    .await
}

async fn create_refund(
    State(st): State<HttpState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    execute(
        &st,
        &headers,
        &method,
        &uri,
        Operation::Refund,
        Form::parse(&body),
        |sim, form, ctx| sim.create_refund(form, ctx),
    )
    .await
}

async fn retrieve_refund(
    State(st): State<HttpState>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    execute(
        &st,
        &headers,
        &method,
        &uri,
        Operation::Read,
        Form::default(),
        |sim, _, _| sim.retrieve_refund(&id),
    )
    .await
}

async fn list_events(
    State(st): State<HttpState>,
    RawQuery(query): RawQuery,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let form = Form::parse(query.unwrap_or_default().as_bytes());
    execute(
        &st,
        &headers,
        &method,
        &uri,
        Operation::Read,
        form,
        |sim, form, _| sim.list_events(form),
    )
    .await
}

async fn retrieve_event(
    State(st): State<HttpState>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    execute(
        &st,
        &headers,
        &method,
        &uri,
        Operation::Read,
        Form::default(),
        |sim, _, _| sim.retrieve_event(&id),
    )
    .await
}

async fn unknown_route(
    State(st): State<HttpState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = authenticate(&st, &headers) {
        return e.into_response();
    }
    StripeError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        format!(
            "Unrecognized request URL ({method}: {}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.",
            uri.path()
        ),
    )
    .into_response()
}

async fn get_faults(State(st): State<HttpState>) -> Response {
    Json(st.lock().faults.clone()).into_response()
}

async fn set_faults(
    State(st): State<HttpState>,
    ApiJson(update): ApiJson<FaultsUpdate>,
) -> Response {
    let mut sim = st.lock();
    match sim.faults.apply(update) {
        Ok(()) => {
            tracing::info!(faults = ?sim.faults, "faults set");
            Json(sim.faults.clone()).into_response()
        }
        Err(reason) => Problem::new(ErrorCode::Unprocessable, reason).into_response(),
    }
}

async fn clear_faults(State(st): State<HttpState>) -> Response {
    let mut sim = st.lock();
    sim.faults = Default::default();
    Json(sim.faults.clone()).into_response()
}

async fn reset(State(st): State<HttpState>) -> Response {
    st.lock().reset();
    tracing::info!("simulator reset");
    Json(json!({ "reset": true })).into_response()
}

async fn list_intents(State(st): State<HttpState>) -> Response {
    Json(st.lock().list_intents()).into_response()
}
