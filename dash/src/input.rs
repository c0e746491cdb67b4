//! What the dashboard is fed: one [`Tick`] per poll, and one [`Trace`] when the
//! user opens a trace. The CLI builds these; this crate fetches nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One component of the stack as the CLI sees it (process table plus `/readyz`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentInput {
    pub name: String,
    pub running: bool,
    pub ready: bool,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub rss_kib: u64,
    #[serde(default)]
    pub cpu_percent: Option<f64>,
}

/// Everything one poll saw. Only differences of `at_ms` between ticks matter, so
/// it may come from a monotonic clock or from unix time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tick {
    pub at_ms: u64,
    #[serde(default)]
    pub components: Vec<ComponentInput>,
    /// `(component, Prometheus text of its /metrics)`.
    #[serde(default)]
    pub metrics: Vec<(String, String)>,
    #[serde(default)]
    pub traces: Vec<TraceSummary>,
    #[serde(default)]
    pub scenario: Option<ScenarioProgress>,
    /// Shown prominently when every component is down, e.g. "nothing is
    /// running: start it with `shopstream up`".
    #[serde(default)]
    pub stack_hint: Option<String>,
}

/// One entry of the trace collector's list query (its JSON, field for field).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceSummary {
    pub trace_id: String,
    pub root_service: String,
    pub root_name: String,
    pub start_unix_nano: u64,
    pub duration_nano: u64,
    pub span_count: u32,
    pub error: bool,
    #[serde(default)]
    pub order_id: Option<String>,
}

/// One trace as the trace collector answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trace {
    pub trace_id: String,
    #[serde(default)]
    pub spans: Vec<Span>,
}

/// One span of a [`Trace`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub trace_id: String,
    pub span_id: String,
    #[serde(default)]
    pub parent_span_id: Option<String>,
    pub service: String,
    pub name: String,
    /// `server`, `client`, `internal`, `producer` or `consumer`.
    pub kind: String,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    /// `ok`, `error` or `unset`.
    pub status: String,
    #[serde(default)]
    pub status_message: Option<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub events: Vec<SpanEvent>,
}

/// An event recorded on a [`Span`] (e.g. `exception`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpanEvent {
    pub name: String,
    pub time_unix_nano: u64,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// A load or chaos scenario in progress (`shopstream test --scenario`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioProgress {
    pub name: String,
    pub elapsed_s: f64,
    pub duration_s: f64,
    pub requests: u64,
    pub errors: u64,
}
