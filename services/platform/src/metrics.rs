//! Prometheus metrics: one registry per process, standard HTTP/gRPC request
//! metrics, and the text exposition served at `/metrics`.

use std::sync::{Arc, LazyLock, RwLock};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// Labels of one request series. `route` is the matched route template, never
/// the raw path, so cardinality stays bounded.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

/// Labels of `shopstream_fault_active`: a catalog fault and the component it hits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FaultLabels {
    fault: String,
    target: String,
}

/// Labels of `shopstream_events_published_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TopicLabels {
    topic: String,
}

/// Labels of `shopstream_events_consumed_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct GroupTopicLabels {
    group: String,
    topic: String,
}

/// Records this process published, per topic. Process-wide (one service per
/// process), because publishing happens in the event bus, which holds no
/// registry; every [`Metrics`] registers it.
static EVENTS_PUBLISHED: LazyLock<Family<TopicLabels, Counter>> = LazyLock::new(Family::default);
/// Records this process's consumer groups handled, per group and topic.
static EVENTS_CONSUMED: LazyLock<Family<GroupTopicLabels, Counter>> =
    LazyLock::new(Family::default);

/// Labels of `shopstream_grpc_server_handled_total` and its histogram.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct GrpcLabels {
    /// `package.Service/Method`
    method: String,
    /// The status code's name (`Ok`, `NotFound`, `Unavailable`…).
    code: String,
}

/// gRPC calls this process served, per method and status. Process-wide like
/// the event counters: the trace layer that observes them holds no registry.
static GRPC_HANDLED: LazyLock<Family<GrpcLabels, Counter>> = LazyLock::new(Family::default);
static GRPC_SECONDS: LazyLock<LatencyFamily<GrpcLabels>> =
    LazyLock::new(|| Family::new_with_constructor(latency_histogram));

/// Count one served gRPC call of `method` (`package.Service/Method`) that
/// answered `code` after `seconds`.
pub fn observe_grpc(method: &str, code: tonic::Code, seconds: f64) {
    let labels = GrpcLabels {
        method: method.to_string(),
        code: format!("{code:?}"),
    };
    GRPC_HANDLED.get_or_create(&labels).inc();
    GRPC_SECONDS.get_or_create(&labels).observe(seconds);
}

/// Count `n` records published to `topic` (the event bus calls this).
pub fn count_published(topic: &str, n: u64) {
    EVENTS_PUBLISHED
        .get_or_create(&TopicLabels {
            topic: topic.to_string(),
        })
        .inc_by(n);
}

/// Count one record of `topic` handled by consumer group `group`.
pub fn count_consumed(group: &str, topic: &str) {
    EVENTS_CONSUMED
        .get_or_create(&GroupTopicLabels {
            group: group.to_string(),
            topic: topic.to_string(),
        })
        .inc();
}

/// Labels of `shopstream_kafka_consumer_requests_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct GroupRequestLabels {
    group: String,
    /// The Kafka request type (`Fetch`, `Heartbeat`, `OffsetCommit`…).
    request: String,
}

/// Labels of the per-group consumer series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct GroupLabels {
    group: String,
}

/// Requests this process's consumers sent to the brokers, from librdkafka's
/// own statistics (reported every few seconds).
static CONSUMER_REQUESTS: LazyLock<Family<GroupRequestLabels, Counter>> =
    LazyLock::new(Family::default);
/// Times a consumer paused by the event doorbell resumed fetching.
static CONSUMER_WAKES: LazyLock<Family<GroupLabels, Counter>> = LazyLock::new(Family::default);

/// Count `n` Kafka requests of type `request` sent by a consumer of `group`.
pub fn count_consumer_requests(group: &str, request: &str, n: u64) {
    CONSUMER_REQUESTS
        .get_or_create(&GroupRequestLabels {
            group: group.to_string(),
            request: request.to_string(),
        })
        .inc_by(n);
}

/// Count one wake-up of a consumer of `group` paused by the event doorbell.
pub fn count_consumer_wake(group: &str) {
    CONSUMER_WAKES
        .get_or_create(&GroupLabels {
            group: group.to_string(),
        })
        .inc();
}

/// A family of latency histograms (see [`latency_histogram`]) per label set.
type LatencyFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~16 s
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0005, 2.0, 16,
    ))
}

/// The process's metrics. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<RwLock<Registry>>,
    pub requests: Family<RequestLabels, Counter>,
    pub request_seconds: LatencyFamily<RequestLabels>,
    fault_active: Family<FaultLabels, Gauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// A registry with every series prefixed `shopstream` and labelled with the service.
    pub fn new(service: &str) -> Metrics {
        let mut registry = Registry::with_prefix_and_labels(
            "shopstream",
            [(
                std::borrow::Cow::Borrowed("service"),
                std::borrow::Cow::Owned(service.to_string()),
            )]
            .into_iter(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        let request_seconds =
            Family::<RequestLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register("requests", "Requests handled", requests.clone());
        registry.register(
            "request_duration_seconds",
            "Request latency",
            request_seconds.clone(),
        );
        let fault_active = Family::<FaultLabels, Gauge>::default();
        registry.register(
            "fault_active",
            "Catalog faults in this process's view of the fault store (1 while active)",
            fault_active.clone(),
        );
        registry.register(
            "events_published",
            "Event records this process published, per topic",
            EVENTS_PUBLISHED.clone(),
        );
        registry.register(
            "events_consumed",
            "Event records this process's consumer groups handled (dead-lettered ones included), per group and topic",
            EVENTS_CONSUMED.clone(),
        );
        registry.register(
            "kafka_consumer_requests",
            "Requests this process's consumer groups sent to the Kafka brokers, per group and request type (from librdkafka's statistics, reported every 5 s)",
            CONSUMER_REQUESTS.clone(),
        );
        registry.register(
            "event_consumer_wakes",
            "Times a consumer group paused by the event doorbell resumed fetching (a ring, a reconnection, a safety fetch)",
            CONSUMER_WAKES.clone(),
        );
        registry.register(
            "grpc_server_handled",
            "gRPC calls this process served, per method and status code",
            GRPC_HANDLED.clone(),
        );
        registry.register(
            "grpc_server_handling_seconds",
            "Time to a served gRPC call's response headers (a unary call's whole handling), per method and status code",
            GRPC_SECONDS.clone(),
        );
        Metrics {
            registry: Arc::new(RwLock::new(registry)),
            requests,
            request_seconds,
            fault_active,
        }
    }

    /// Register a service-specific metric.
    pub fn register(
        &self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        if let Ok(mut r) = self.registry.write() {
            r.register(name, help, metric);
        }
    }

    pub fn observe_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let labels = RequestLabels {
            method: method.to_string(),
            route: route.to_string(),
            status,
        };
        self.requests.get_or_create(&labels).inc();
        self.request_seconds.get_or_create(&labels).observe(seconds);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        // What this process would apply right now: a fault shows here once
        // the process's poller has read it (within half a second of
        // `shopstream fault set`), and goes when it is cleared or expires.
        self.fault_active.clear();
        for a in crate::faults::snapshot() {
            self.fault_active
                .get_or_create(&FaultLabels {
                    fault: a.name,
                    target: a.target,
                })
                .set(1);
        }
        let mut out = String::new();
        if let Ok(r) = self.registry.read() {
            let _ = encode(&mut out, &r);
        }
        out
    }
}

/// The sum of Prometheus series `name` in the text exposition `text` over
/// the lines whose labels contain each of `labels` (e.g. `outcome="ok"`);
/// 0 if none. Tests, labs and benchmarks read `/metrics` with it.
pub fn sum_series(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_shows_observed_requests_with_service_label() {
        let m = Metrics::new("catalog");
        m.observe_request("GET", "/products/{id}", 200, 0.002);
        m.observe_request("GET", "/products/{id}", 200, 0.004);
        let text = m.render();
        assert!(text.contains("shopstream_requests_total{"), "{text}");
        assert!(text.contains("service=\"catalog\""), "{text}");
        assert!(text.contains("route=\"/products/{id}\""), "{text}");
        assert!(
            text.contains("shopstream_request_duration_seconds_count"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn event_counts_show_on_every_registry_of_the_process() {
        count_published("metrics-test.events", 3);
        count_consumed("metrics-test-group", "metrics-test.events");
        let text = Metrics::new("feed").render();
        assert!(
            sum_series(
                &text,
                "shopstream_events_published_total",
                &["topic=\"metrics-test.events\""]
            ) >= 3.0,
            "{text}"
        );
        assert!(
            sum_series(
                &text,
                "shopstream_events_consumed_total",
                &["group=\"metrics-test-group\""]
            ) >= 1.0,
            "{text}"
        );
    }
}
