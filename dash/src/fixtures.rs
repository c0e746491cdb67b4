//! Fixed inputs for the tests: a stack scraped twice, one second apart, from
//! literal Prometheus text; and a trace with retries, a compensation and an
//! error.

use std::collections::BTreeMap;

use crate::input::{ComponentInput, ScenarioProgress, Span, Tick, Trace, TraceSummary};

pub const T0_MS: u64 = 1_000_000;
pub const T1_MS: u64 = T0_MS + 1_000;
/// 2026-03-01T12:34:56Z in unix nanoseconds.
pub const START_NANO: u64 = 1_772_368_496_000_000_000;

pub fn component(name: &str, running: bool, ready: bool, error: Option<&str>) -> ComponentInput {
    ComponentInput {
        name: name.into(),
        running,
        ready,
        error: error.map(str::to_string),
        rss_kib: 0,
        cpu_percent: None,
    }
}

fn components() -> Vec<ComponentInput> {
    let sized = |mut c: ComponentInput, rss_kib: u64, cpu: Option<f64>| {
        c.rss_kib = rss_kib;
        c.cpu_percent = cpu;
        c
    };
    vec![
        sized(component("gateway", true, true, None), 51_200, Some(2.5)),
        sized(component("catalog", true, true, None), 40_960, Some(1.0)),
        sized(component("orders", true, true, None), 81_920, Some(5.25)),
        sized(component("payments", true, true, None), 38_912, Some(0.5)),
        sized(component("search", true, true, None), 131_072, Some(12.0)),
        sized(component("cdc", true, true, None), 20_480, None),
        sized(
            component("notifications", true, false, None),
            10_240,
            Some(0.0),
        ),
        component("media", false, false, Some("exited with status 1")),
        component("analytics", false, false, None),
    ]
}

/// gateway: requests and two topics; the first scrape.
const GATEWAY_0: &str = r#"# HELP shopstream_requests Requests handled
# TYPE shopstream_requests counter
shopstream_requests_total{method="POST",route="/orders",status="201",service="gateway"} 100
shopstream_requests_total{method="GET",route="/products/{id}",status="200",service="gateway"} 500
shopstream_events_published_total{topic="analytics.raw",service="gateway"} 1000
shopstream_events_published_total{topic="activity.raw",service="gateway"} 2000
shopstream_fault_active{fault="stripe-slow",target="payments",service="gateway"} 1
# EOF
"#;
const GATEWAY_1: &str = r#"shopstream_requests_total{method="POST",route="/orders",status="201",service="gateway"} 120
shopstream_requests_total{method="GET",route="/products/{id}",status="200",service="gateway"} 530
shopstream_events_published_total{topic="analytics.raw",service="gateway"} 1100
shopstream_events_published_total{topic="activity.raw",service="gateway"} 2050
shopstream_fault_active{fault="stripe-slow",target="payments",service="gateway"} 1
"#;

const CATALOG_0: &str = r#"shopstream_events_published_total{topic="product.events",service="catalog"} 500
shopstream_fault_active{fault="catalog-slow",target="catalog",service="catalog"} 0
shopstream_consumer_lag{group="catalog-projector",topic="inventory.events",service="catalog"} 0
"#;
const CATALOG_1: &str = r#"shopstream_events_published_total{topic="product.events",service="catalog"} 508
shopstream_fault_active{fault="catalog-slow",target="catalog",service="catalog"} 0
shopstream_consumer_lag{group="catalog-projector",topic="inventory.events",service="catalog"} 0
"#;

/// orders: lifecycle events, order states, saga step histograms and
/// compensations. Between the scrapes: 10 reserve steps in (10ms, 50ms], 5
/// authorize steps in (50ms, 100ms] and 1 in (100ms, 500ms], one refund in
/// (500ms, 1s]; no capture.
fn orders(tick: usize) -> String {
    let reserve = [
        [40, 90, 100, 100, 100, 100, 100],
        [40, 90, 110, 110, 110, 110, 110],
    ];
    let authorize_ok = [[0, 0, 50, 80, 90, 90, 90], [0, 0, 50, 85, 96, 96, 96]];
    let capture = [[5, 20, 30, 30, 30, 30, 30], [5, 20, 30, 30, 30, 30, 30]];
    let refund = [[0, 0, 0, 2, 4, 5, 5], [0, 0, 0, 2, 4, 6, 6]];
    let les = ["0.005", "0.01", "0.05", "0.1", "0.5", "1.0", "+Inf"];
    let mut text = String::from(
        "# HELP shopstream_saga_step_seconds Saga step durations\n# TYPE shopstream_saga_step_seconds histogram\n",
    );
    for (step, outcome, counts) in [
        ("reserve", "ok", reserve[tick]),
        ("authorize", "ok", authorize_ok[tick]),
        ("capture", "ok", capture[tick]),
        ("refund", "ok", refund[tick]),
    ] {
        for (le, n) in les.iter().zip(counts) {
            text.push_str(&format!(
                "shopstream_saga_step_seconds_bucket{{le=\"{le}\",step=\"{step}\",outcome=\"{outcome}\",service=\"orders\"}} {n}\n"
            ));
        }
        text.push_str(&format!(
            "shopstream_saga_step_seconds_count{{step=\"{step}\",outcome=\"{outcome}\",service=\"orders\"}} {}\n",
            counts[6]
        ));
    }
    // An authorize that failed fast, before the first scrape.
    for le in les {
        text.push_str(&format!(
            "shopstream_saga_step_seconds_bucket{{le=\"{le}\",step=\"authorize\",outcome=\"error\",service=\"orders\"}} 1\n"
        ));
    }
    let (lifecycle, completed, refunds, consumed) = [(1000, 40, 5, 200), (1012, 42, 6, 205)][tick];
    text.push_str(&format!(
        r#"shopstream_events_published_total{{topic="order.lifecycle",service="orders"}} {lifecycle}
shopstream_orders_by_state{{state="pending",service="orders"}} 3
shopstream_orders_by_state{{state="reserved",service="orders"}} 2
shopstream_orders_by_state{{state="authorized",service="orders"}} 1
shopstream_orders_by_state{{state="completed",service="orders"}} {completed}
shopstream_orders_by_state{{state="cancelled",service="orders"}} 2
shopstream_orders_by_state{{state="failed",service="orders"}} 1
shopstream_saga_compensations_total{{step="refund",service="orders"}} {refunds}
shopstream_consumer_lag{{group="orders-saga",topic="payment.events",service="orders"}} 4
shopstream_events_consumed_total{{group="orders-saga",topic="payment.events",service="orders"}} {consumed}
# EOF
"#
    ));
    text
}

const PAYMENTS_0: &str = r#"shopstream_events_published_total{topic="payment.events",service="payments"} 300
shopstream_events_published_total{topic="payment.events.dlq",service="payments"} 2
shopstream_fault_active{fault="stripe-slow",target="payments",service="payments"} 1
shopstream_consumer_lag{group="payments-intents",topic="order.lifecycle",service="payments"} 1250
"#;
const PAYMENTS_1: &str = r#"shopstream_events_published_total{topic="payment.events",service="payments"} 305
shopstream_events_published_total{topic="payment.events.dlq",service="payments"} 3
shopstream_fault_active{fault="stripe-slow",target="payments",service="payments"} 1
shopstream_consumer_lag{group="payments-intents",topic="order.lifecycle",service="payments"} 1300
"#;

/// search: freshness histogram. First scrape: p95 in (0.25s, 0.5s]; between
/// the scrapes: 4 in (0.25s, 0.5s], 6 in (0.5s, 1s].
fn search(tick: usize) -> String {
    let counts = [[10, 18, 20, 20, 20], [10, 18, 24, 30, 30]][tick];
    let les = ["0.1", "0.25", "0.5", "1", "+Inf"];
    let mut text = String::new();
    for (le, n) in les.iter().zip(counts) {
        text.push_str(&format!(
            "shopstream_search_commit_to_searchable_seconds_bucket{{le=\"{le}\",service=\"search\"}} {n}\n"
        ));
    }
    text.push_str(&format!(
        "shopstream_events_consumed_total{{group=\"search-indexer\",topic=\"product.events\",service=\"search\"}} {}\n",
        [480, 488][tick]
    ));
    text.push_str("shopstream_consumer_lag{group=\"search-indexer\",topic=\"product.events\",service=\"search\"} 20\n");
    text
}

const CDC_0: &str = r#"shopstream_cdc_lag_ms{database="orders",service="cdc"} 120
shopstream_cdc_lag_ms{database="catalog",service="cdc"} 45
"#;
const CDC_1: &str = r#"shopstream_cdc_lag_ms{database="orders",service="cdc"} 95
shopstream_cdc_lag_ms{database="catalog",service="cdc"} 40
"#;

pub fn trace_summary(
    id: &str,
    service: &str,
    name: &str,
    start_s: u64,
    order: Option<&str>,
) -> TraceSummary {
    TraceSummary {
        trace_id: id.into(),
        root_service: service.into(),
        root_name: name.into(),
        start_unix_nano: START_NANO + start_s * 1_000_000_000,
        duration_nano: 152_300_000,
        span_count: 7,
        error: false,
        order_id: order.map(str::to_string),
    }
}

fn traces(tick: usize) -> Vec<TraceSummary> {
    let mut t = vec![
        trace_summary(
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "gateway",
            "POST /orders",
            0,
            Some("ord_1001"),
        ),
        TraceSummary {
            error: true,
            duration_nano: 2_400_000_000,
            span_count: 12,
            ..trace_summary(
                "a1b2c3d4e5f60718293a4b5c6d7e8f90",
                "gateway",
                "POST /orders",
                1,
                Some("ord_1002"),
            )
        },
        TraceSummary {
            duration_nano: 3_100_000,
            span_count: 2,
            ..trace_summary(
                "0f0e0d0c0b0a09080706050403020100",
                "catalog",
                "GET /products/{id}",
                2,
                None,
            )
        },
    ];
    if tick == 1 {
        t.push(trace_summary(
            "77aa88bb99cc00dd11ee22ff33004455",
            "payments",
            "stripe.webhook",
            3,
            Some("ord_1001"),
        ));
    }
    t
}

/// The stack at `tick` (0 or 1), one second apart.
pub fn tick(tick: usize) -> Tick {
    let metrics = [
        ("gateway", [GATEWAY_0, GATEWAY_1][tick].to_string()),
        ("catalog", [CATALOG_0, CATALOG_1][tick].to_string()),
        ("orders", orders(tick)),
        ("payments", [PAYMENTS_0, PAYMENTS_1][tick].to_string()),
        ("search", search(tick)),
        ("cdc", [CDC_0, CDC_1][tick].to_string()),
    ];
    Tick {
        at_ms: [T0_MS, T1_MS][tick],
        components: components(),
        metrics: metrics
            .into_iter()
            .map(|(c, t)| (c.to_string(), t))
            .collect(),
        traces: traces(tick),
        scenario: (tick == 1).then(|| ScenarioProgress {
            name: "flash-sale".into(),
            elapsed_s: 42.0,
            duration_s: 120.0,
            requests: 1234,
            errors: 5,
        }),
        stack_hint: None,
    }
}

/// An app fed both ticks.
pub fn app() -> crate::App {
    let mut app = crate::App::new();
    app.apply(tick(0));
    app.apply(tick(1));
    app
}

/// A tick of a stack where nothing runs.
pub fn all_down_tick() -> Tick {
    Tick {
        at_ms: T0_MS,
        components: ["gateway", "orders", "payments"]
            .into_iter()
            .map(|n| component(n, false, false, None))
            .collect(),
        stack_hint: Some("nothing is running: start it with `shopstream up`".into()),
        ..Tick::default()
    }
}

pub fn span(
    id: &str,
    parent: Option<&str>,
    service: &str,
    name: &str,
    start_ms: u64,
    end_ms: u64,
) -> Span {
    Span {
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        span_id: id.into(),
        parent_span_id: parent.map(str::to_string),
        service: service.into(),
        name: name.into(),
        kind: "internal".into(),
        start_unix_nano: START_NANO + start_ms * 1_000_000,
        end_unix_nano: START_NANO + end_ms * 1_000_000,
        status: "ok".into(),
        status_message: None,
        attributes: BTreeMap::new(),
        events: Vec::new(),
    }
}

/// An order whose payment failed twice then succeeded, whose capture failed,
/// and which was refunded. Spans are given out of order on purpose.
pub fn order_trace() -> Trace {
    let attr = |mut s: Span, k: &str, v: &str| {
        s.attributes.insert(k.into(), v.into());
        s
    };
    let mut capture = span("c1", Some("w1"), "payments", "capture", 80, 120);
    capture.status = "error".into();
    capture.status_message = Some("card_declined".into());
    Trace {
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        spans: vec![
            span("r1", Some("w1"), "inventory", "reserve", 10, 30),
            capture,
            span("g1", None, "gateway", "POST /orders", 0, 150),
            attr(
                span("a2", Some("w1"), "payments", "authorize", 50, 70),
                "attempt",
                "2",
            ),
            span("w1", Some("g1"), "orders", "saga.place_order", 5, 145),
            attr(
                span("a1", Some("w1"), "payments", "authorize", 35, 45),
                "attempt",
                "1",
            ),
            attr(
                span("f1", Some("w1"), "payments", "refund", 125, 140),
                "saga.compensation",
                "true",
            ),
        ],
    }
}
