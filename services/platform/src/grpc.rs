//! The gRPC side of every service: a tonic server with a deadline and a layer
//! that continues the caller's W3C trace context, a client interceptor that
//! sends it, and [`serve`] with graceful shutdown.

use std::{
    task::{Context, Poll},
    time::Duration,
};

use opentelemetry::context::FutureExt as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{service::Routes, transport::server::TcpIncoming};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::telemetry;

/// Serve `routes` on `listener` until `shutdown` is cancelled; calls without
/// a tenant are logged under [`crate::config::DEFAULT_TENANT`].
pub async fn serve(
    listener: TcpListener,
    routes: Routes,
    request_timeout: Duration,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    serve_with_tenant(
        listener,
        routes,
        request_timeout,
        crate::config::DEFAULT_TENANT.to_string(),
        shutdown,
    )
    .await
}

/// [`serve`], logging calls without a tenant under `default_tenant`.
pub async fn serve_with_tenant(
    listener: TcpListener,
    routes: Routes,
    request_timeout: Duration,
    default_tenant: String,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    serve_as(
        "",
        listener,
        routes,
        request_timeout,
        default_tenant,
        shutdown,
    )
    .await
}

/// [`serve_with_tenant`] for the service named `component`, whose calls
/// suffer the request faults of the catalog that hit it (see
/// [`crate::faults::request_fault`]).
pub async fn serve_as(
    component: &str,
    listener: TcpListener,
    routes: Routes,
    request_timeout: Duration,
    default_tenant: String,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .timeout(request_timeout)
        .layer(TraceLayer {
            default_tenant: default_tenant.into(),
        })
        .layer(FaultLayer {
            component: component.into(),
        })
        .add_routes(routes)
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            async move { shutdown.cancelled().await },
        )
        .await
}

/// Continue the caller's trace: extract `traceparent` from the request
/// metadata and run the call inside a span parented to it, carrying the
/// method and the caller's tenant (every log line of the call has both).
#[derive(Debug, Clone)]
pub struct TraceLayer {
    default_tenant: std::sync::Arc<str>,
}

impl<S> tower::Layer<S> for TraceLayer {
    type Service = TraceService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        TraceService {
            inner,
            default_tenant: self.default_tenant.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct TraceService<S> {
    inner: S,
    default_tenant: std::sync::Arc<str>,
}

impl<S, B, RB> tower::Service<http::Request<B>> for TraceService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let parent = telemetry::extract(&telemetry::HeaderExtractor(req.headers()));
        let tenant_id = req
            .headers()
            .get(TENANT_METADATA_KEY)
            .and_then(|v| v.to_str().ok())
            .filter(|s| !s.is_empty())
            .unwrap_or(&self.default_tenant);
        let span = tracing::info_span!(
            "grpc",
            otel.name = %req.uri().path().trim_start_matches('/'),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            rpc.grpc.status_code = tracing::field::Empty,
            path = %req.uri().path(),
            tenant_id = %tenant_id
        );
        let _ = span.set_parent(parent.clone());
        let method = req.uri().path().trim_start_matches('/').to_string();
        let started = std::time::Instant::now();
        let fut = self.inner.call(req);
        let recorder = span.clone();
        Box::pin(
            async move {
                let resp = fut.await?;
                // A failed unary call is "trailers-only": its status is in the
                // headers. A success carries 0 in the trailers, unseen here,
                // so a call without a status in its headers counts as OK.
                let code = resp
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok());
                if let Some(code) = code {
                    recorder.record("rpc.grpc.status_code", code);
                    if server_error(tonic::Code::from(code)) {
                        recorder.record("otel.status_code", "error");
                    }
                }
                crate::metrics::observe_grpc(
                    &method,
                    code.map_or(tonic::Code::Ok, tonic::Code::from),
                    started.elapsed().as_secs_f64(),
                );
                Ok(resp)
            }
            .instrument(span)
            .with_context(parent),
        )
    }
}

/// Whether a status means the server failed, the OpenTelemetry convention for
/// gRPC server spans: a caller's mistake (not found, invalid argument, failed
/// precondition…) is the caller's, not an error of this span.
fn server_error(code: tonic::Code) -> bool {
    use tonic::Code::*;
    matches!(
        code,
        Unknown | DeadlineExceeded | Unimplemented | Internal | Unavailable | DataLoss
    )
}

/// Applies the catalog's request faults (latency, errors) of `component`
/// before a call reaches the service.
#[derive(Debug, Clone)]
pub struct FaultLayer {
    component: std::sync::Arc<str>,
}

impl<S> tower::Layer<S> for FaultLayer {
    type Service = FaultService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        FaultService {
            inner,
            component: self.component.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct FaultService<S> {
    inner: S,
    component: std::sync::Arc<str>,
}

impl<S, B, RB> tower::Service<http::Request<B>> for FaultService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let (delay, fail) = if self.component.is_empty() {
            (None, false)
        } else {
            crate::faults::request_fault(&self.component)
        };
        if delay.is_none() && !fail {
            return Box::pin(self.inner.call(req));
        }
        // The ready clone stays in `self` for the next call's poll_ready.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let component = self.component.clone();
        Box::pin(async move {
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            if fail {
                return Ok(tonic::Status::unavailable(format!(
                    "{component}: failed by an injected fault (shopstream fault show)"
                ))
                .into_http());
            }
            inner.call(req).await
        })
    }
}

/// Metadata key carrying the tenant on every internal call (the same value as
/// `shopstream_proto::TENANT_METADATA_KEY`).
pub const TENANT_METADATA_KEY: &str = "x-tenant-id";

/// Metadata key that refines a status' code for the gateway: `bad_request`
/// on an INVALID_ARGUMENT means a malformed request (HTTP 400, e.g. a
/// tampered cursor), not invalid fields (422).
pub const ERROR_CODE_METADATA_KEY: &str = "x-error-code";

/// INVALID_ARGUMENT marked as a malformed request (see
/// [`ERROR_CODE_METADATA_KEY`]).
pub fn bad_request(message: impl Into<String>) -> tonic::Status {
    let mut s = tonic::Status::invalid_argument(message);
    s.metadata_mut().insert(
        ERROR_CODE_METADATA_KEY,
        tonic::metadata::MetadataValue::from_static("bad_request"),
    );
    s
}

/// The caller's tenant from request metadata, else `default`.
pub fn tenant<T>(req: &tonic::Request<T>, default: &str) -> String {
    req.metadata()
        .get(TENANT_METADATA_KEY)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty())
        .unwrap_or(default)
        .to_string()
}

/// A request carrying `tenant` in metadata, the way every internal call
/// names its tenant.
pub fn with_tenant<T>(msg: T, tenant: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Ok(v) = tenant.parse() {
        req.metadata_mut().insert(TENANT_METADATA_KEY, v);
    }
    req
}

/// Client interceptor that sends the current trace context as metadata.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceInterceptor;

impl tonic::service::Interceptor for TraceInterceptor {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        telemetry::inject(&mut telemetry::MetadataCarrier(req.metadata_mut()));
        Ok(req)
    }
}

/// A lazily connecting channel with connect and request deadlines, so no call
/// can hang on a dead peer.
pub fn channel(
    url: &str,
    connect_timeout: Duration,
    request_timeout: Duration,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    Ok(tonic::transport::Endpoint::from_shared(url.to_string())?
        .connect_timeout(connect_timeout)
        .timeout(request_timeout)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .connect_lazy())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::service::Interceptor;

    #[test]
    fn tenant_comes_from_metadata_or_the_default() {
        let mut req = tonic::Request::new(());
        assert_eq!(tenant(&req, "default"), "default");
        req.metadata_mut()
            .insert(TENANT_METADATA_KEY, "acme".parse().unwrap());
        assert_eq!(tenant(&req, "default"), "acme");
    }

    /// The fields recorded on spans after they were created, as `name=value`.
    #[derive(Clone, Default)]
    struct Recorded(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

    impl<Sub: tracing::Subscriber> tracing_subscriber::Layer<Sub> for Recorded {
        fn on_record(
            &self,
            _: &tracing::span::Id,
            values: &tracing::span::Record<'_>,
            _: tracing_subscriber::layer::Context<'_, Sub>,
        ) {
            struct Visit<'a>(&'a mut Vec<String>);
            impl tracing::field::Visit for Visit<'_> {
                fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                    self.0.push(format!("{}={v:?}", f.name()));
                }
            }
            values.record(&mut Visit(&mut self.0.lock().unwrap()));
        }
    }

    /// What one call through [`TraceService`] records when the inner service
    /// answers with `grpc_status` in the headers (a trailers-only answer).
    async fn recorded_for(grpc_status: Option<tonic::Code>) -> Vec<String> {
        use tower::{Layer as _, ServiceExt as _};
        use tracing_subscriber::layer::SubscriberExt as _;
        let recorded = Recorded::default();
        let subscriber = tracing_subscriber::registry().with(recorded.clone());
        let _default = tracing::subscriber::set_default(subscriber);
        let inner = tower::service_fn(move |_: http::Request<()>| async move {
            let mut resp = http::Response::new(());
            if let Some(code) = grpc_status {
                resp.headers_mut()
                    .insert("grpc-status", (code as i32).to_string().parse().unwrap());
            }
            Ok::<_, std::convert::Infallible>(resp)
        });
        let layer = TraceLayer {
            default_tenant: "default".into(),
        };
        let req = http::Request::builder()
            .uri("/shopstream.inventory.v1.Inventory/Reserve")
            .body(())
            .unwrap();
        layer.layer(inner).oneshot(req).await.unwrap();
        recorded.0.lock().unwrap().clone()
    }

    #[tokio::test]
    async fn a_server_failure_marks_the_span_an_error_and_a_callers_mistake_does_not() {
        let internal = recorded_for(Some(tonic::Code::Internal)).await;
        assert!(
            internal.contains(&"otel.status_code=\"error\"".to_string()),
            "{internal:?}"
        );
        assert!(
            internal.contains(&"rpc.grpc.status_code=13".to_string()),
            "{internal:?}"
        );
        let unavailable = recorded_for(Some(tonic::Code::Unavailable)).await;
        assert!(
            unavailable
                .iter()
                .any(|f| f.starts_with("otel.status_code"))
        );
        let not_found = recorded_for(Some(tonic::Code::NotFound)).await;
        assert_eq!(not_found, vec!["rpc.grpc.status_code=5".to_string()]);
        let ok = recorded_for(None).await;
        assert!(ok.is_empty(), "{ok:?}");
        // Each call is on /metrics, per method and status.
        let text = crate::metrics::Metrics::new("test").render();
        let reserve = |code: &str| {
            crate::metrics::sum_series(
                &text,
                "shopstream_grpc_server_handled_total",
                &[
                    "method=\"shopstream.inventory.v1.Inventory/Reserve\"",
                    &format!("code=\"{code}\""),
                ],
            )
        };
        // Other tests in this process may serve calls too: at least ours.
        assert!(reserve("Internal") >= 1.0, "{text}");
        assert!(reserve("NotFound") >= 1.0, "{text}");
        assert!(reserve("Ok") >= 1.0, "{text}");
    }

    #[tokio::test]
    async fn interceptor_sends_the_current_trace() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
                .parse()
                .unwrap(),
        );
        let cx = telemetry::extract(&telemetry::HeaderExtractor(&headers));
        let req = async { TraceInterceptor.call(tonic::Request::new(())).unwrap() }
            .with_context(cx)
            .await;
        let tp = req.metadata().get("traceparent").unwrap().to_str().unwrap();
        assert!(
            tp.starts_with("00-0af7651916cd43dd8448eb211c80319c-"),
            "{tp}"
        );
    }
}
