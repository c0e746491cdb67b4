//! The HTTP side of every service: one router builder that adds `/healthz`,
//! `/readyz` and `/metrics`, request ids, W3C trace-context extraction, request
//! metrics, a deadline, a body limit, and problem+json for every error
//! (including the ones axum and tower produce themselves), and [`serve`] with
//! graceful shutdown.

use std::time::{Duration, Instant};

use axum::{
    Router,
    extract::{DefaultBodyLimit, FromRequest, MatchedPath, Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use opentelemetry::context::FutureExt as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::{
    error::{ErrorCode, PROBLEM_CONTENT_TYPE, Problem},
    health::Readiness,
    metrics::Metrics,
    telemetry,
};

/// Header carrying the request id, set when the client sent none.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// What the operational endpoints and middleware need.
#[derive(Clone, Debug)]
pub struct Ops {
    pub service: String,
    pub metrics: Metrics,
    pub readiness: Readiness,
    pub request_timeout: Duration,
    pub body_limit_bytes: usize,
    /// Tenant logged for requests that carry no `x-tenant-id`.
    pub default_tenant: String,
    /// Routes (as matched, e.g. `/orders/{id}/events`) that may wait longer
    /// than `request_timeout` by design (long-polls), with the extra time.
    pub long_polls: std::sync::Arc<Vec<(String, Duration)>>,
}

impl Ops {
    pub fn new(service: &str) -> Ops {
        Ops {
            service: service.to_string(),
            metrics: Metrics::new(service),
            readiness: Readiness::new(),
            request_timeout: Duration::from_millis(
                crate::config::ServiceConfig::DEFAULT_REQUEST_TIMEOUT_MS,
            ),
            body_limit_bytes: crate::config::ServiceConfig::DEFAULT_BODY_LIMIT_BYTES,
            default_tenant: crate::config::DEFAULT_TENANT.into(),
            long_polls: Default::default(),
        }
    }

    pub fn from_config(cfg: &crate::config::ServiceConfig, readiness: Readiness) -> Ops {
        Ops {
            service: cfg.name.clone(),
            metrics: Metrics::new(&cfg.name),
            readiness,
            request_timeout: cfg.request_timeout,
            body_limit_bytes: cfg.body_limit_bytes,
            default_tenant: cfg.default_tenant.clone(),
            long_polls: Default::default(),
        }
    }

    /// The deadline of a request to `route`.
    fn deadline_of(&self, route: Option<&str>) -> Duration {
        let extra = route.and_then(|r| {
            self.long_polls
                .iter()
                .find(|(p, _)| p == r)
                .map(|(_, extra)| *extra)
        });
        self.request_timeout + extra.unwrap_or_default()
    }
}

/// Wrap a service's routes with the operational endpoints and middleware.
pub fn router(app: Router, ops: Ops) -> Router {
    let ops_routes = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(ops.clone());
    // The catalog's request faults hit the service's own routes, never
    // /healthz, /readyz and /metrics.
    let app = app.layer(middleware::from_fn_with_state(ops.clone(), request_faults));
    app.merge(ops_routes)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(ops.body_limit_bytes))
        .layer(middleware::from_fn_with_state(ops.clone(), deadline))
        .layer(middleware::from_fn(problemize))
        .layer(middleware::from_fn_with_state(ops, observe))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// Serve until `shutdown` is cancelled, then drain in-flight requests.
/// Handlers can read the peer address as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
}

/// Record the authenticated caller's tenant on the current request's span,
/// so every log line of the request carries it.
pub fn record_tenant(tenant_id: &str) {
    tracing::Span::current().record("tenant_id", tenant_id);
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(ops): State<Ops>) -> Response {
    let (ok, checks) = ops.readiness.run().await;
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(serde_json::json!({ "ready": ok, "checks": checks })),
    )
        .into_response()
}

async fn metrics(State(ops): State<Ops>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        ops.metrics.render(),
    )
        .into_response()
}

async fn not_found(req: Request) -> Problem {
    Problem::new(
        ErrorCode::NotFound,
        format!("no route for {} {}", req.method(), req.uri().path()),
    )
}

fn request_id(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Routes of health checks and scrapes.
const PROBE_ROUTES: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// Extract the caller's trace context, run the request inside a span that
/// continues it, and record request metrics by matched route.
async fn observe(State(ops): State<Ops>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    // Probes (a supervisor's /readyz, a scraper's /metrics, `dash` doing
    // both every second) are counted but neither traced nor logged: they
    // would bury the requests a reader looks for.
    if PROBE_ROUTES.contains(&route.as_str()) {
        let resp = next.run(req).await;
        ops.metrics.observe_request(
            &method,
            &route,
            resp.status().as_u16(),
            started.elapsed().as_secs_f64(),
        );
        return resp;
    }
    let parent = telemetry::extract(&telemetry::HeaderExtractor(req.headers()));
    let span = tracing::info_span!(
        "http",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        service = %ops.service,
        method = %method,
        route = %route,
        request_id = request_id(req.headers()).unwrap_or_default(),
        // Internal callers send the tenant; at the edge the gateway's token
        // check records the caller's own (see `record_tenant`).
        tenant_id = req
            .headers()
            .get(crate::grpc::TENANT_METADATA_KEY)
            .and_then(|v| v.to_str().ok())
            .filter(|s| !s.is_empty())
            .unwrap_or(&ops.default_tenant),
        trace_id = tracing::field::Empty,
        status = tracing::field::Empty,
    );
    let _ = span.set_parent(parent.clone());
    if let Some(t) = {
        use opentelemetry::trace::TraceContextExt;
        let sc = span.context().span().span_context().clone();
        sc.is_valid().then(|| sc.trace_id().to_string())
    } {
        span.record("trace_id", t);
    }
    let resp = next
        .run(req)
        .instrument(span.clone())
        .with_context(parent)
        .await;
    span.record("status", resp.status().as_u16());
    if resp.status().is_server_error() {
        span.record("otel.status_code", "error");
    }
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    // One log line per request, carrying the span's route, request id and trace id.
    span.in_scope(|| {
        tracing::info!(status = resp.status().as_u16(), latency_ms, "request");
    });
    ops.metrics.observe_request(
        &method,
        &route,
        resp.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    resp
}

async fn deadline(State(ops): State<Ops>, req: Request, next: Next) -> Response {
    let limit = ops.deadline_of(
        req.extensions()
            .get::<axum::extract::MatchedPath>()
            .map(|m| m.as_str()),
    );
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => Problem::new(
            ErrorCode::Timeout,
            format!("request exceeded {} ms", limit.as_millis()),
        )
        .into_response(),
    }
}

/// The request faults of the catalog that hit this service (see
/// [`crate::faults::request_fault`]): a delay first, then maybe a 503.
async fn request_faults(State(ops): State<Ops>, req: Request, next: Next) -> Response {
    let (delay, fail) = crate::faults::request_fault(&ops.service);
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    if fail {
        return Problem::new(
            ErrorCode::Unavailable,
            format!(
                "{} failed this request by an injected fault (shopstream fault show)",
                ops.service
            ),
        )
        .into_response();
    }
    next.run(req).await
}

/// Turn every error response that is not problem+json yet (405 from the router,
/// 413 from the body limit, extractor rejections) into one, and stamp the
/// request id on every problem.
async fn problemize(req: Request, next: Next) -> Response {
    let rid = request_id(req.headers());
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_problem = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_CONTENT_TYPE.as_bytes()));
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let mut problem = if is_problem {
        serde_json::from_slice::<Problem>(&bytes)
            .unwrap_or_else(|_| Problem::new(code_for_status(status), ""))
    } else {
        let text = String::from_utf8_lossy(&bytes).trim().to_string();
        let detail = if text.is_empty() {
            status.canonical_reason().unwrap_or("error").to_string()
        } else {
            text
        };
        Problem::new(code_for_status(status), detail)
    };
    if problem.status != status.as_u16() {
        // e.g. 405: no code of its own; keep the real status and its reason.
        problem.status = status.as_u16();
        problem.title = status.canonical_reason().unwrap_or("Error").to_string();
    }
    let mut out = problem.with_request_id(rid).into_response();
    *out.status_mut() = status;
    for (k, v) in parts.headers.iter() {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out
}

fn code_for_status(status: StatusCode) -> ErrorCode {
    match status.as_u16() {
        400 | 405 | 406 | 415 => ErrorCode::BadRequest,
        401 => ErrorCode::Unauthenticated,
        403 => ErrorCode::PermissionDenied,
        404 => ErrorCode::NotFound,
        408 | 504 => ErrorCode::Timeout,
        409 | 412 => ErrorCode::Conflict,
        413 => ErrorCode::PayloadTooLarge,
        422 => ErrorCode::Unprocessable,
        429 => ErrorCode::RateLimited,
        503 => ErrorCode::Unavailable,
        _ => ErrorCode::Internal,
    }
}

/// A JSON body extractor whose rejections are problem documents:
/// malformed JSON → 400, wrong shape → 422, too large → 413.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rej) => {
                let code = code_for_status(rej.status());
                Err(Problem::new(code, rej.body_text()))
            }
        }
    }
}

impl<T: serde::Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `Location`-style helper: a header value from a string, or nothing.
pub fn header_value(s: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::{body::Body, routing::post};
    use tower::ServiceExt;

    #[derive(serde::Deserialize)]
    struct Item {
        #[allow(dead_code)]
        name: String,
    }

    fn app() -> Router {
        let mut ops = Ops::new("test");
        ops.body_limit_bytes = 64;
        ops.request_timeout = Duration::from_millis(50);
        let app = Router::new()
            .route(
                "/items",
                post(|ApiJson(_i): ApiJson<Item>| async { "created" }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            );
        router(app, ops)
    }

    async fn call(req: http::Request<Body>) -> (StatusCode, http::HeaderMap, serde_json::Value) {
        let resp = app().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (status, headers, json)
    }

    fn post_json(body: &str) -> http::Request<Body> {
        http::Request::post("/items")
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    }

    #[tokio::test]
    async fn unknown_route_is_problem_404_with_request_id() {
        let (status, headers, json) =
            call(http::Request::get("/nope").body(Body::empty()).unwrap()).await;
        assert_eq!(status, 404);
        assert_eq!(headers[header::CONTENT_TYPE], PROBLEM_CONTENT_TYPE);
        assert_eq!(json["status"], 404);
        assert!(json["request_id"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(headers.contains_key(REQUEST_ID_HEADER));
    }

    #[tokio::test]
    async fn malformed_json_is_400_wrong_shape_is_422_too_big_is_413() {
        let (s, _, j) = call(post_json("{not json")).await;
        assert_eq!((s.as_u16(), j["code"].as_str()), (400, Some("bad_request")));
        let (s, _, j) = call(post_json(r#"{"title": 1}"#)).await;
        assert_eq!(
            (s.as_u16(), j["code"].as_str()),
            (422, Some("unprocessable"))
        );
        let big = format!(r#"{{"name": "{}"}}"#, "x".repeat(200));
        let (s, h, j) = call(post_json(&big)).await;
        assert_eq!(
            (s.as_u16(), j["code"].as_str()),
            (413, Some("payload_too_large"))
        );
        assert_eq!(h[header::CONTENT_TYPE], PROBLEM_CONTENT_TYPE);
        let (s, _, _) = call(post_json(r#"{"name": "ok"}"#)).await;
        assert_eq!(s, 200);
    }

    #[tokio::test]
    async fn wrong_method_is_problem_405() {
        let (s, _, j) = call(http::Request::get("/items").body(Body::empty()).unwrap()).await;
        assert_eq!(s, 405);
        assert_eq!(j["status"], 405);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_handler_hits_the_deadline() {
        let (s, _, j) = call(http::Request::get("/slow").body(Body::empty()).unwrap()).await;
        assert_eq!(s, 504);
        assert_eq!(j["code"], "timeout");
    }

    #[tokio::test]
    async fn ops_endpoints_answer() {
        let (s, _, _) = call(http::Request::get("/healthz").body(Body::empty()).unwrap()).await;
        assert_eq!(s, 200);
        let (s, _, j) = call(http::Request::get("/readyz").body(Body::empty()).unwrap()).await;
        assert_eq!((s.as_u16(), &j["ready"]), (200, &serde_json::json!(true)));
        let resp = app()
            .oneshot(http::Request::get("/metrics").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let text = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&text).contains("# EOF"));
    }
}
