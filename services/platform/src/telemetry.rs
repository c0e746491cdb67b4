//! Logs, traces and W3C trace-context propagation.
//!
//! [`init`] installs a `tracing` subscriber (JSON or pretty) with an
//! OpenTelemetry layer, exporting over OTLP only when an endpoint is set. The
//! propagation helpers move `traceparent`/`tracestate` between the current
//! context and HTTP headers, gRPC metadata and event headers, so one trace id
//! follows a request through every hop.

use std::{collections::BTreeMap, sync::OnceLock};

use opentelemetry::{
    Context,
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::{TraceContextExt, TracerProvider as _},
};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{EnvFilter, Layer as _, layer::SubscriberExt, util::SubscriberInitExt};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

impl LogFormat {
    /// `SHOPSTREAM_LOG_FORMAT=json|pretty`; JSON by default (services run detached).
    pub fn from_env() -> LogFormat {
        match std::env::var("SHOPSTREAM_LOG_FORMAT").as_deref() {
            Ok("pretty") => LogFormat::Pretty,
            _ => LogFormat::Json,
        }
    }
}

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// How often finished spans are exported when an OTLP endpoint is set.
pub const EXPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Spans whose target (module path) starts with this are exported; see [`init`].
pub const SPAN_TARGET_PREFIX: &str = "shopstream";

/// Errors while setting up telemetry.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("could not build the OTLP exporter for {endpoint}: {source}")]
    Exporter {
        endpoint: String,
        source: opentelemetry_otlp::ExporterBuildError,
    },
}

/// Install the global subscriber and propagator. Safe to call more than once
/// (later calls keep the first subscriber), so tests may call it freely.
/// The filter comes from `RUST_LOG` (default `info`).
pub fn init(
    service: &str,
    format: LogFormat,
    otlp_endpoint: Option<&str>,
) -> Result<(), TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let provider = match otlp_endpoint {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()
                .map_err(|source| TelemetryError::Exporter {
                    endpoint: endpoint.to_string(),
                    source,
                })?;
            // Spans leave at least every second (the SDK's default is 5 s), so
            // `shopstream trace` and `dash` show a request moments after it ends.
            // `OTEL_BSP_SCHEDULE_DELAY` (ms) still overrides.
            let mut batch = opentelemetry_sdk::trace::BatchConfigBuilder::default();
            if std::env::var_os("OTEL_BSP_SCHEDULE_DELAY").is_none() {
                batch = batch.with_scheduled_delay(EXPORT_EVERY);
            }
            let processor = opentelemetry_sdk::trace::BatchSpanProcessor::builder(exporter)
                .with_batch_config(batch.build())
                .build();
            SdkTracerProvider::builder()
                .with_span_processor(processor)
                .with_resource(
                    opentelemetry_sdk::Resource::builder()
                        .with_service_name(service.to_string())
                        .build(),
                )
                .build()
        }
        // No exporter: spans still get real ids, so trace context propagates.
        None => SdkTracerProvider::builder().build(),
    };
    let tracer = provider.tracer(service.to_string());
    let _ = PROVIDER.set(provider);

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Only our own spans become OpenTelemetry spans: the Temporal SDK, tonic
    // and hyper have spans of their own at `info` that would bury a request's
    // few dozen in thousands of polls.
    // Source locations, thread names and busy/idle times would triple what
    // each span carries to the collector and tell a reader of a waterfall nothing.
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
            meta.target().starts_with(SPAN_TARGET_PREFIX)
        }));
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let _ = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(tracing_subscriber::fmt::layer().compact())
            .try_init(),
    };
    Ok(())
}

/// Flush spans not yet exported. Call before the process exits.
pub fn shutdown() {
    if let Some(p) = PROVIDER.get() {
        let _ = p.force_flush();
    }
}

/// The OpenTelemetry context of the current `tracing` span, or of the
/// OpenTelemetry context attached to the running future when the span has none.
pub fn current_context() -> Context {
    let cx = tracing::Span::current().context();
    if cx.span().span_context().is_valid() {
        cx
    } else {
        Context::current()
    }
}

/// Trace id of the current context as 32 hex digits, if there is one.
pub fn current_trace_id() -> Option<String> {
    let cx = current_context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// Write the current context as W3C headers into any carrier.
pub fn inject(carrier: &mut dyn Injector) {
    TraceContextPropagator::new().inject_context(&current_context(), carrier);
}

/// Read a W3C context from any carrier.
pub fn extract(carrier: &dyn Extractor) -> Context {
    TraceContextPropagator::new().extract(carrier)
}

/// Carrier over HTTP headers.
pub struct HeaderCarrier<'a>(pub &'a mut http::HeaderMap);

impl Injector for HeaderCarrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(val)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, val);
        }
    }
}

/// Read-only carrier over HTTP headers.
pub struct HeaderExtractor<'a>(pub &'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Carrier over gRPC metadata.
pub struct MetadataCarrier<'a>(pub &'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataCarrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(k, v);
        }
    }
}

/// Read-only carrier over gRPC metadata.
pub struct MetadataExtractor<'a>(pub &'a tonic::metadata::MetadataMap);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

/// Carrier over event headers (a sorted map, as in [`crate::events::Envelope`]).
pub struct MapCarrier<'a>(pub &'a mut BTreeMap<String, String>);

impl Injector for MapCarrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
}

/// Read-only carrier over event headers.
pub struct MapExtractor<'a>(pub &'a BTreeMap<String, String>);

impl Extractor for MapExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::context::FutureExt;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[tokio::test]
    async fn context_moves_from_http_headers_to_grpc_metadata_and_event_headers() {
        let mut headers = http::HeaderMap::new();
        headers.insert("traceparent", PARENT.parse().unwrap());
        let cx = extract(&HeaderExtractor(&headers));

        async {
            assert_eq!(
                current_trace_id().as_deref(),
                Some("4bf92f3577b34da6a3ce929d0e0e4736")
            );
            let mut md = tonic::metadata::MetadataMap::new();
            inject(&mut MetadataCarrier(&mut md));
            let tp = md.get("traceparent").unwrap().to_str().unwrap();
            assert!(tp.contains("4bf92f3577b34da6a3ce929d0e0e4736"), "{tp}");

            let mut map = BTreeMap::new();
            inject(&mut MapCarrier(&mut map));
            let back = extract(&MapExtractor(&map));
            assert_eq!(
                back.span().span_context().trace_id().to_string(),
                "4bf92f3577b34da6a3ce929d0e0e4736"
            );
        }
        .with_context(cx)
        .await;
    }

    #[test]
    fn no_context_means_no_trace_id() {
        assert_eq!(current_trace_id(), None);
        let mut map = BTreeMap::new();
        inject(&mut MapCarrier(&mut map));
        assert!(map.is_empty());
    }
}
