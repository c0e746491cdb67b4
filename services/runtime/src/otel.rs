//! The trace collector of the native runtime: `shopstream serve otel`.
//!
//! Every service exports its spans over OTLP/gRPC (`SHOPSTREAM_OTLP_ENDPOINT`,
//! which `up` points here); the collector keeps the most recent traces in a
//! bounded in-memory [`TraceStore`] and answers `shopstream trace` and
//! `shopstream dash` over HTTP:
//!
//! - `GET /v1/traces?order_id=&service=&since_unix_ms=&until_unix_ms=&limit=`
//!   — the newest traces first, as [`TraceSummary`] rows;
//! - `GET /v1/traces/{trace_id}` — one trace's spans;
//! - `GET /v1/orders/{order_id}` — every trace that touched an order (its
//!   placement, a later refund, the sweeper's start), oldest first.
//!
//! The store holds at most [`Limits::max_traces`] traces for at most
//! [`Limits::max_age`]; the oldest go first, counted on `/metrics`
//! (`shopstream_otel_traces_evicted_total{reason}`). Nothing is written to
//! disk: a restart forgets every trace, which is what a collector for a lab
//! should do (spans carry order and tenant ids, never names or addresses).
//! Elsewhere the same services export to Jaeger (compose) or an ADOT
//! collector (AWS) instead; only the endpoint changes.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    response::{IntoResponse, Response},
    routing::get,
};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::{AnyValue, KeyValue, any_value::Value},
};
use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge};
use serde::{Deserialize, Serialize};
use shopstream_platform::{
    config::{ConfigError, ServiceConfig, env_parse},
    error::{ErrorCode, Problem},
    metrics::Metrics,
    service::{Listeners, Service},
};
use tokio_util::sync::CancellationToken;

/// Traces kept by default (`SHOPSTREAM_OTEL_MAX_TRACES`).
pub const MAX_TRACES: usize = 5_000;
/// How long a trace is kept by default (`SHOPSTREAM_OTEL_MAX_AGE_S`).
pub const MAX_AGE: Duration = Duration::from_secs(30 * 60);
/// Spans kept per trace; later ones are dropped and counted.
pub const MAX_SPANS_PER_TRACE: usize = 2_000;
/// Rows a list query answers by default, and at most.
pub const LIST_DEFAULT: usize = 50;
pub const LIST_MAX: usize = 1_000;
/// How often traces past their age are evicted when nothing arrives.
const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// Span attributes that name an order.
const ORDER_ATTRIBUTES: [&str; 2] = ["order_id", "order.id"];

/// The collector's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_traces: usize,
    pub max_age: Duration,
    pub max_spans_per_trace: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_traces: MAX_TRACES,
            max_age: MAX_AGE,
            max_spans_per_trace: MAX_SPANS_PER_TRACE,
        }
    }
}

/// One span as the collector answers it (the JSON `shopstream trace --json`
/// prints and the dashboard reads).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    pub trace_id: String,
    pub span_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<String>,
    pub service: String,
    pub name: String,
    /// `internal`, `server`, `client`, `producer`, `consumer` or `unspecified`.
    pub kind: String,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    /// `ok`, `error` or `unset`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub events: Vec<SpanEvent>,
}

/// A log event recorded inside a span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanEvent {
    pub name: String,
    pub time_unix_nano: u64,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// One trace's spans, in the order they arrived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    pub trace_id: String,
    pub spans: Vec<Span>,
}

/// A row of the list query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceSummary {
    pub trace_id: String,
    pub root_service: String,
    pub root_name: String,
    pub start_unix_nano: u64,
    pub duration_nano: u64,
    pub span_count: u32,
    pub error: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
}

impl Trace {
    /// The summary row: the root is the earliest span whose parent is not in
    /// the trace (spans of a trace may arrive from several services, in any order).
    pub fn summary(&self) -> TraceSummary {
        let ids: std::collections::HashSet<&str> =
            self.spans.iter().map(|s| s.span_id.as_str()).collect();
        let root = self
            .spans
            .iter()
            .filter(|s| s.parent_span_id.as_deref().is_none_or(|p| !ids.contains(p)))
            .min_by_key(|s| s.start_unix_nano)
            .or_else(|| self.spans.first());
        let start = self
            .spans
            .iter()
            .map(|s| s.start_unix_nano)
            .min()
            .unwrap_or(0);
        let end = self
            .spans
            .iter()
            .map(|s| s.end_unix_nano)
            .max()
            .unwrap_or(start);
        TraceSummary {
            trace_id: self.trace_id.clone(),
            root_service: root.map(|s| s.service.clone()).unwrap_or_default(),
            root_name: root.map(|s| s.name.clone()).unwrap_or_default(),
            start_unix_nano: start,
            duration_nano: end.saturating_sub(start),
            span_count: u32::try_from(self.spans.len()).unwrap_or(u32::MAX),
            error: self.spans.iter().any(|s| s.status == "error"),
            order_id: self.spans.iter().find_map(order_of),
        }
    }
}

fn order_of(s: &Span) -> Option<String> {
    ORDER_ATTRIBUTES
        .iter()
        .find_map(|k| s.attributes.get(*k))
        .filter(|v| !v.is_empty())
        .cloned()
}

/// Why a trace left the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// The store held its maximum number of traces.
    Count,
    /// The trace was older than the maximum age.
    Age,
}

impl Eviction {
    fn as_str(self) -> &'static str {
        match self {
            Eviction::Count => "count",
            Eviction::Age => "age",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, prometheus_client::encoding::EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

/// The collector's numbers on `/metrics`.
#[derive(Debug, Clone, Default)]
struct StoreMetrics {
    traces: Gauge,
    spans_received: Counter,
    spans_dropped: Counter,
    evicted: Family<ReasonLabels, Counter>,
}

#[derive(Debug)]
struct Entry {
    trace: Trace,
    /// When the first span of the trace arrived (eviction order).
    first_seen: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    traces: HashMap<String, Entry>,
    /// Trace ids in the order their first span arrived; the front goes first.
    arrival: VecDeque<String>,
    /// Order id → the traces that name it.
    by_order: HashMap<String, Vec<String>>,
}

/// The bounded store of recent traces. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TraceStore {
    inner: Arc<Mutex<Inner>>,
    limits: Limits,
    metrics: StoreMetrics,
}

impl TraceStore {
    pub fn new(limits: Limits) -> TraceStore {
        TraceStore {
            inner: Arc::default(),
            limits,
            metrics: StoreMetrics::default(),
        }
    }

    /// Register the store's metrics (`shopstream_otel_*`) on `metrics`.
    pub fn register(&self, metrics: &Metrics) {
        let m = &self.metrics;
        metrics.register(
            "otel_traces",
            "Traces the collector holds",
            m.traces.clone(),
        );
        metrics.register(
            "otel_spans_received",
            "Spans the collector received",
            m.spans_received.clone(),
        );
        metrics.register(
            "otel_spans_dropped",
            "Spans dropped because their trace already held the per-trace maximum",
            m.spans_dropped.clone(),
        );
        metrics.register(
            "otel_traces_evicted",
            "Traces evicted, by reason (count: the store was full; age: older than the maximum age)",
            m.evicted.clone(),
        );
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Add spans (from any number of traces), evicting what the limits require.
    pub fn insert(&self, spans: Vec<Span>, now: Instant) {
        let mut inner = self.lock();
        for span in spans {
            self.metrics.spans_received.inc();
            let order = order_of(&span);
            let trace_id = span.trace_id.clone();
            let entry = match inner.traces.get_mut(&trace_id) {
                Some(e) => e,
                None => {
                    inner.arrival.push_back(trace_id.clone());
                    inner.traces.entry(trace_id.clone()).or_insert(Entry {
                        trace: Trace {
                            trace_id: trace_id.clone(),
                            spans: Vec::new(),
                        },
                        first_seen: now,
                    })
                }
            };
            if entry.trace.spans.len() >= self.limits.max_spans_per_trace {
                self.metrics.spans_dropped.inc();
                continue;
            }
            entry.trace.spans.push(span);
            if let Some(order) = order {
                let traces = inner.by_order.entry(order).or_default();
                if !traces.contains(&trace_id) {
                    traces.push(trace_id);
                }
            }
        }
        while inner.traces.len() > self.limits.max_traces {
            if !self.evict_front(&mut inner, Eviction::Count) {
                break;
            }
        }
        self.expire_locked(&mut inner, now);
        self.metrics.traces.set(inner.traces.len() as i64);
    }

    /// Evict every trace older than the maximum age.
    pub fn expire(&self, now: Instant) {
        let mut inner = self.lock();
        self.expire_locked(&mut inner, now);
        self.metrics.traces.set(inner.traces.len() as i64);
    }

    fn expire_locked(&self, inner: &mut Inner, now: Instant) {
        while let Some(front) = inner.arrival.front() {
            let old = inner
                .traces
                .get(front)
                .is_none_or(|e| now.saturating_duration_since(e.first_seen) > self.limits.max_age);
            if !old || !self.evict_front(inner, Eviction::Age) {
                break;
            }
        }
    }

    fn evict_front(&self, inner: &mut Inner, why: Eviction) -> bool {
        let Some(id) = inner.arrival.pop_front() else {
            return false;
        };
        if let Some(e) = inner.traces.remove(&id) {
            self.metrics
                .evicted
                .get_or_create(&ReasonLabels {
                    reason: why.as_str().into(),
                })
                .inc();
            for order in e.trace.spans.iter().filter_map(order_of) {
                if let Some(list) = inner.by_order.get_mut(&order) {
                    list.retain(|t| *t != id);
                    if list.is_empty() {
                        inner.by_order.remove(&order);
                    }
                }
            }
        }
        true
    }

    /// One trace, if the store holds it.
    pub fn trace(&self, trace_id: &str) -> Option<Trace> {
        self.lock()
            .traces
            .get(&trace_id.to_ascii_lowercase())
            .map(|e| e.trace.clone())
    }

    /// Every held trace that names `order_id`, oldest first.
    pub fn order(&self, order_id: &str) -> Vec<Trace> {
        let inner = self.lock();
        let mut traces: Vec<Trace> = inner
            .by_order
            .get(order_id)
            .into_iter()
            .flatten()
            .filter_map(|id| inner.traces.get(id).map(|e| e.trace.clone()))
            .collect();
        traces.sort_by_key(|t| t.spans.iter().map(|s| s.start_unix_nano).min());
        traces
    }

    /// The newest traces first (by their earliest span), filtered.
    pub fn list(&self, q: &ListQuery) -> Vec<TraceSummary> {
        let inner = self.lock();
        let mut rows: Vec<TraceSummary> = match &q.order_id {
            Some(order) => inner
                .by_order
                .get(order)
                .into_iter()
                .flatten()
                .filter_map(|id| inner.traces.get(id))
                .map(|e| e.trace.summary())
                .collect(),
            None => inner.traces.values().map(|e| e.trace.summary()).collect(),
        };
        drop(inner);
        if let Some(service) = &q.service {
            rows.retain(|r| &r.root_service == service);
        }
        let ms = |t: u64| t / 1_000_000;
        if let Some(since) = q.since_unix_ms {
            rows.retain(|r| ms(r.start_unix_nano) >= since);
        }
        if let Some(until) = q.until_unix_ms {
            rows.retain(|r| ms(r.start_unix_nano) < until);
        }
        rows.sort_by_key(|r| std::cmp::Reverse(r.start_unix_nano));
        rows.truncate(q.limit.unwrap_or(LIST_DEFAULT).min(LIST_MAX));
        rows
    }

    /// How many traces the store holds.
    pub fn len(&self) -> usize {
        self.lock().traces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Filters of `GET /v1/traces`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub order_id: Option<String>,
    /// The root span's service.
    pub service: Option<String>,
    /// Traces that started at or after this time (unix milliseconds).
    pub since_unix_ms: Option<u64>,
    /// Traces that started before this time (unix milliseconds).
    pub until_unix_ms: Option<u64>,
    pub limit: Option<usize>,
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn value_text(v: &AnyValue) -> String {
    match &v.value {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BytesValue(b)) => hex(b),
        Some(Value::ArrayValue(a)) => format!(
            "[{}]",
            a.values
                .iter()
                .map(value_text)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Some(Value::KvlistValue(kv)) => format!("{:?}", attributes(&kv.values)),
        None => String::new(),
    }
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.as_ref().map(value_text).unwrap_or_default(),
            )
        })
        .collect()
}

fn kind_name(kind: i32) -> &'static str {
    match kind {
        1 => "internal",
        2 => "server",
        3 => "client",
        4 => "producer",
        5 => "consumer",
        _ => "unspecified",
    }
}

fn status_name(code: i32) -> &'static str {
    match code {
        1 => "ok",
        2 => "error",
        _ => "unset",
    }
}

/// The spans of one OTLP export request, in our shape. The service is the
/// resource's `service.name`.
pub fn spans_of(req: ExportTraceServiceRequest) -> Vec<Span> {
    let mut out = Vec::new();
    for rs in req.resource_spans {
        let service = rs
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
            .and_then(|kv| kv.value.as_ref())
            .map(value_text)
            .unwrap_or_else(|| "unknown".into());
        for ss in rs.scope_spans {
            for s in ss.spans {
                let status = s.status.as_ref();
                out.push(Span {
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent_span_id: (!s.parent_span_id.is_empty()).then(|| hex(&s.parent_span_id)),
                    service: service.clone(),
                    name: s.name,
                    kind: kind_name(s.kind).into(),
                    start_unix_nano: s.start_time_unix_nano,
                    end_unix_nano: s.end_time_unix_nano,
                    status: status_name(status.map_or(0, |st| st.code)).into(),
                    status_message: status
                        .map(|st| st.message.clone())
                        .filter(|m| !m.is_empty()),
                    attributes: attributes(&s.attributes),
                    events: s
                        .events
                        .into_iter()
                        .map(|e| SpanEvent {
                            name: e.name,
                            time_unix_nano: e.time_unix_nano,
                            attributes: attributes(&e.attributes),
                        })
                        .collect(),
                });
            }
        }
    }
    out
}

/// The OTLP/gRPC receiver.
#[derive(Debug, Clone)]
struct Receiver {
    store: TraceStore,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.store
            .insert(spans_of(request.into_inner()), Instant::now());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn not_found(what: &str) -> Response {
    Problem::new(
        ErrorCode::NotFound,
        format!(
            "the collector holds no trace for {what} (it keeps the newest traces for a limited time; see `shopstream trace --help`)"
        ),
    )
    .into_response()
}

/// A trace id is 32 hex digits.
pub fn is_trace_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

async fn list(State(store): State<TraceStore>, Query(q): Query<ListQuery>) -> Response {
    Json(store.list(&q)).into_response()
}

async fn one(State(store): State<TraceStore>, Path(id): Path<String>) -> Response {
    if !is_trace_id(&id) {
        return Problem::new(ErrorCode::BadRequest, format!("{id} is not a trace id"))
            .with_field("trace_id", "a trace id is 32 hexadecimal digits")
            .into_response();
    }
    match store.trace(&id) {
        Some(t) => Json(t).into_response(),
        None => not_found(&format!("trace {id}")),
    }
}

/// Every trace of an order.
#[derive(Debug, Serialize, Deserialize)]
pub struct OrderTraces {
    pub order_id: String,
    pub traces: Vec<Trace>,
}

async fn order(State(store): State<TraceStore>, Path(id): Path<String>) -> Response {
    let traces = store.order(&id);
    if traces.is_empty() {
        return not_found(&format!("order {id}"));
    }
    Json(OrderTraces {
        order_id: id,
        traces,
    })
    .into_response()
}

/// The collector's HTTP query API.
pub fn routes(store: TraceStore) -> Router {
    Router::new()
        .route("/v1/traces", get(list))
        .route("/v1/traces/{trace_id}", get(one))
        .route("/v1/orders/{order_id}", get(order))
        .with_state(store)
}

/// `shopstream serve otel`'s configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// HTTP (queries, `/metrics`) and gRPC (OTLP) addresses.
    pub service: ServiceConfig,
    pub limits: Limits,
}

impl Config {
    /// `SHOPSTREAM_OTEL_HTTP_ADDR`, `SHOPSTREAM_OTEL_GRPC_ADDR` (default: its
    /// two ports in `config::Ports`), `SHOPSTREAM_OTEL_MAX_TRACES`,
    /// `SHOPSTREAM_OTEL_MAX_AGE_S`.
    pub fn from_env() -> Result<Config, ConfigError> {
        let service = ServiceConfig::from_env(NAME)?;
        let d = Limits::default();
        Ok(Config {
            service,
            limits: Limits {
                max_traces: env_parse("SHOPSTREAM_OTEL_MAX_TRACES", d.max_traces)?.max(1),
                max_age: Duration::from_secs(env_parse(
                    "SHOPSTREAM_OTEL_MAX_AGE_S",
                    d.max_age.as_secs(),
                )?),
                max_spans_per_trace: d.max_spans_per_trace,
            },
        })
    }
}

/// The collector's name in `shopstream serve` and the component table.
pub const NAME: &str = "otel";

shopstream_platform::service_entry! {
    /// The collector as `shopstream serve otel` and the test kit start it.
    Server { name: NAME, grpc: true, config: Config, run: run }
}

/// Serve the collector until `shutdown`.
pub async fn run(
    cfg: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let store = TraceStore::new(cfg.limits);
    let svc = Service::new(&cfg.service);
    store.register(svc.metrics());
    let sweeper = store.clone();
    svc.http(routes(store.clone()))
        .grpc(TraceServiceServer::new(Receiver { store }).max_decoding_message_size(16 << 20))
        .task("expire", move |stop| async move {
            while shopstream_platform::shutdown::sleep_or_stop(&stop, SWEEP_EVERY).await {
                sweeper.expire(Instant::now());
            }
        })
        .run(listeners, shutdown)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(trace: &str, id: &str, parent: Option<&str>, start: u64, order: Option<&str>) -> Span {
        Span {
            trace_id: trace.into(),
            span_id: id.into(),
            parent_span_id: parent.map(Into::into),
            service: "gateway".into(),
            name: format!("span {id}"),
            kind: "server".into(),
            start_unix_nano: start,
            end_unix_nano: start + 10,
            status: "unset".into(),
            status_message: None,
            attributes: order
                .map(|o| BTreeMap::from([("order_id".to_string(), o.to_string())]))
                .unwrap_or_default(),
            events: Vec::new(),
        }
    }

    fn limits(max_traces: usize) -> Limits {
        Limits {
            max_traces,
            max_age: Duration::from_secs(60),
            max_spans_per_trace: 3,
        }
    }

    #[test]
    fn a_full_store_evicts_the_oldest_trace_and_counts_it() {
        let store = TraceStore::new(limits(2));
        let t0 = Instant::now();
        store.insert(vec![span("a", "1", None, 1, Some("o-1"))], t0);
        store.insert(vec![span("b", "1", None, 2, None)], t0);
        store.insert(vec![span("c", "1", None, 3, None)], t0);
        assert_eq!(store.len(), 2);
        assert!(store.trace("a").is_none());
        assert!(
            store.order("o-1").is_empty(),
            "the order index forgets it too"
        );
        assert_eq!(
            store
                .metrics
                .evicted
                .get_or_create(&ReasonLabels {
                    reason: "count".into()
                })
                .get(),
            1
        );
    }

    #[test]
    fn traces_older_than_the_maximum_age_expire() {
        let store = TraceStore::new(limits(10));
        let t0 = Instant::now();
        store.insert(vec![span("a", "1", None, 1, None)], t0);
        store.insert(
            vec![span("b", "1", None, 2, None)],
            t0 + Duration::from_secs(30),
        );
        store.expire(t0 + Duration::from_secs(61));
        assert!(store.trace("a").is_none());
        assert!(store.trace("b").is_some());
        assert_eq!(
            store
                .metrics
                .evicted
                .get_or_create(&ReasonLabels {
                    reason: "age".into()
                })
                .get(),
            1
        );
    }

    #[test]
    fn spans_past_the_per_trace_maximum_are_dropped_and_counted() {
        let store = TraceStore::new(limits(10));
        let spans = (0..5)
            .map(|i| span("a", &i.to_string(), None, i, None))
            .collect();
        store.insert(spans, Instant::now());
        assert_eq!(store.trace("a").unwrap().spans.len(), 3);
        assert_eq!(store.metrics.spans_dropped.get(), 2);
        assert_eq!(store.metrics.spans_received.get(), 5);
    }

    #[test]
    fn an_order_finds_every_trace_that_names_it_and_the_list_is_newest_first() {
        let store = TraceStore::new(limits(10));
        let now = Instant::now();
        // The order's span arrives in a later export than its trace's root.
        store.insert(vec![span("t1", "root", None, 100, None)], now);
        store.insert(
            vec![span("t1", "saga", Some("root"), 110, Some("o-9"))],
            now,
        );
        store.insert(vec![span("t2", "refund", None, 500, Some("o-9"))], now);
        store.insert(vec![span("t3", "other", None, 900, None)], now);
        let order = store.order("o-9");
        assert_eq!(
            order
                .iter()
                .map(|t| t.trace_id.as_str())
                .collect::<Vec<_>>(),
            ["t1", "t2"]
        );
        let all = store.list(&ListQuery::default());
        assert_eq!(
            all.iter().map(|r| r.trace_id.as_str()).collect::<Vec<_>>(),
            ["t3", "t2", "t1"]
        );
        let t1 = &all[2];
        assert_eq!(t1.root_name, "span root");
        assert_eq!(t1.order_id.as_deref(), Some("o-9"));
        assert_eq!((t1.span_count, t1.duration_nano), (2, 20));
        let only = store.list(&ListQuery {
            order_id: Some("o-9".into()),
            limit: Some(1),
            ..ListQuery::default()
        });
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].trace_id, "t2");
        // A time window: t2 started at 500 ns, t3 at 900 ns (both in the
        // first millisecond of 1970), so a window of [0, 1) ms holds all.
        let window = |since, until| {
            store
                .list(&ListQuery {
                    since_unix_ms: Some(since),
                    until_unix_ms: Some(until),
                    ..ListQuery::default()
                })
                .len()
        };
        assert_eq!((window(0, 1), window(1, 2)), (3, 0));
    }

    #[test]
    fn otlp_spans_become_ours_with_the_resource_service_and_hex_ids() {
        use opentelemetry_proto::tonic::{
            resource::v1::Resource,
            trace::v1::{ResourceSpans, ScopeSpans, Span as OtlpSpan, Status},
        };
        let kv = |k: &str, v: Value| KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
        };
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", Value::StringValue("orders".into()))],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![OtlpSpan {
                        trace_id: vec![0xab; 16],
                        span_id: vec![0x01; 8],
                        parent_span_id: vec![],
                        name: "saga reserve".into(),
                        kind: 1,
                        start_time_unix_nano: 5,
                        end_time_unix_nano: 9,
                        attributes: vec![
                            kv("order_id", Value::StringValue("o-1".into())),
                            kv("attempt", Value::IntValue(2)),
                        ],
                        status: Some(Status {
                            message: "inventory unavailable".into(),
                            code: 2,
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let spans = spans_of(req);
        assert_eq!(spans.len(), 1);
        let s = &spans[0];
        assert_eq!(s.trace_id, "ab".repeat(16));
        assert_eq!(s.span_id, "0101010101010101");
        assert_eq!(s.parent_span_id, None);
        assert_eq!(
            (s.service.as_str(), s.kind.as_str()),
            ("orders", "internal")
        );
        assert_eq!(s.status, "error");
        assert_eq!(s.status_message.as_deref(), Some("inventory unavailable"));
        assert_eq!(s.attributes["attempt"], "2");
        assert_eq!(order_of(s).as_deref(), Some("o-1"));
    }

    #[test]
    fn trace_ids_are_32_hex_digits() {
        assert!(is_trace_id(
            &"0af7651916cd43dd8448eb211c80319c".to_uppercase()
        ));
        assert!(!is_trace_id("0af7651916cd43dd8448eb211c80319"));
        assert!(!is_trace_id("0af7651916cd43dd8448eb211c80319z"));
    }
}
