//! The panel data, derived from a stream of [`Tick`]s: component states,
//! per-second rates from counters, lag, order states, saga step latencies,
//! freshness and faults. Pure: no terminal, no clock, no I/O.
//!
//! Counters are followed per series (component, name, labels) so a restarted
//! process (a counter that went down) counts from zero instead of producing a
//! negative rate, and a component seen for the first time is a baseline, not a
//! burst of everything it counted before the dashboard started.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use serde::Serialize;

use crate::input::{ComponentInput, ScenarioProgress, Tick, TraceSummary};
use crate::prom::{self, Buckets, Le, Sample};

/// Points of rate history kept per topic for its sparkline.
pub const SPARKLINE_POINTS: usize = 60;
/// How far back latency quantiles and compensations per minute look.
pub const WINDOW_MS: u64 = 60_000;
/// Scrapes kept for the window, whatever the refresh rate.
pub const MAX_WINDOW_SCRAPES: usize = 256;
/// Counter series followed at most; series beyond are ignored.
pub const MAX_SERIES: usize = 20_000;
/// Topics shown at most (the known ones always among them).
pub const MAX_TOPICS: usize = 64;
/// Traces kept from the latest poll.
pub const MAX_TRACES: usize = 200;

/// Metric names the services expose.
pub mod metric {
    pub const PUBLISHED: &str = "shopstream_events_published_total";
    pub const CONSUMED: &str = "shopstream_events_consumed_total";
    pub const CONSUMER_LAG: &str = "shopstream_consumer_lag";
    pub const ORDERS_BY_STATE: &str = "shopstream_orders_by_state";
    /// Histogram base name (`_bucket`, `_sum`, `_count`).
    pub const SAGA_STEP_SECONDS: &str = "shopstream_saga_step_seconds";
    pub const SAGA_COMPENSATIONS: &str = "shopstream_saga_compensations_total";
    pub const CDC_LAG_MS: &str = "shopstream_cdc_lag_ms";
    /// Histogram base name.
    pub const SEARCH_FRESHNESS_SECONDS: &str = "shopstream_search_commit_to_searchable_seconds";
    pub const FAULT_ACTIVE: &str = "shopstream_fault_active";
    pub const REQUESTS: &str = "shopstream_requests_total";
}

/// Topics always listed, in this order, before dead-letter and other topics.
pub const KNOWN_TOPICS: [&str; 6] = [
    "product.events",
    "order.lifecycle",
    "payment.events",
    "media.events",
    "analytics.raw",
    "activity.raw",
];

/// Saga steps always listed, forward steps then compensations.
pub const SAGA_STEPS: [&str; 7] = [
    "reserve",
    "authorize",
    "capture",
    "finalize",
    "refund",
    "cancel_intent",
    "release",
];

/// Steps that undo a forward step.
pub const COMPENSATION_STEPS: [&str; 3] = ["refund", "cancel_intent", "release"];

/// Order states in lifecycle order; other states that appear follow them.
pub const ORDER_STATES: [&str; 7] = [
    "pending",
    "reserved",
    "authorized",
    "captured",
    "completed",
    "cancelled",
    "failed",
];

/// What a component is doing, as the dashboard shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentState {
    Down,
    Starting,
    Ready,
    Failed,
}

impl ComponentState {
    /// The state of one component. A running, ready component is ready even
    /// with an error on record (a past failure it recovered from); a running
    /// component that is not ready yet and has no error is starting, which is
    /// normal and must not look like a failure.
    pub fn of(c: &ComponentInput) -> ComponentState {
        match (c.running, c.ready, c.error.is_some()) {
            (true, true, _) => ComponentState::Ready,
            (_, _, true) => ComponentState::Failed,
            (true, false, false) => ComponentState::Starting,
            (false, _, false) => ComponentState::Down,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            ComponentState::Down => "down",
            ComponentState::Starting => "starting",
            ComponentState::Ready => "ready",
            ComponentState::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComponentRow {
    pub name: String,
    pub state: ComponentState,
    pub rss_mib: f64,
    pub cpu_percent: Option<f64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopicRow {
    pub topic: String,
    /// Records published per second over the last tick; `None` until two
    /// ticks have seen the topic's counters.
    pub published_per_s: Option<f64>,
    pub dead_letter: bool,
    /// The last [`SPARKLINE_POINTS`] rates, oldest first.
    #[serde(skip)]
    pub history_per_s: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LagRow {
    pub group: String,
    /// Records not committed, summed over the group's topics.
    pub lag: Option<f64>,
    pub consumed_per_s: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StateCount {
    pub state: String,
    pub count: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepLatency {
    pub step: String,
    pub compensation: bool,
    pub latency_ms_p50: Option<f64>,
    pub latency_ms_p95: Option<f64>,
    /// Observations the quantiles are computed from.
    pub observations: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ActiveFault {
    pub fault: String,
    pub target: String,
}

/// Everything the panels show, derived once per tick. `None` means "not
/// known" and shows as "—".
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Panels {
    pub at_ms: u64,
    pub components: Vec<ComponentRow>,
    pub components_ready: usize,
    pub components_total: usize,
    /// Every component is down (or none is known): the stack is not running.
    pub all_down: bool,
    pub stack_hint: Option<String>,
    pub requests_per_s: Option<f64>,
    pub topics: Vec<TopicRow>,
    pub consumer_lag: Vec<LagRow>,
    /// `None` when no service exposes the gauge.
    pub orders_by_state: Option<Vec<StateCount>>,
    pub saga_steps: Vec<StepLatency>,
    pub compensations_per_min: Option<f64>,
    pub cdc_lag_ms: Option<f64>,
    pub search_commit_to_searchable_ms_p95: Option<f64>,
    pub faults: Vec<ActiveFault>,
    pub scenario: Option<ScenarioProgress>,
    /// Newest first, at most [`MAX_TRACES`].
    pub traces: Vec<TraceSummary>,
}

/// Counter-like values summed per panel key. Built once from the
/// reset-adjusted totals (for differences) and once from raw values (the
/// cumulative fallback on the first tick).
#[derive(Debug, Clone, Default)]
struct Totals {
    at_ms: u64,
    published: BTreeMap<String, f64>,
    consumed_by_group: BTreeMap<String, f64>,
    requests: Option<f64>,
    compensations: Option<f64>,
    step_buckets: BTreeMap<String, Buckets>,
    search_buckets: Option<Buckets>,
}

/// Routes of health checks and scrapes, left out of the request rate.
pub const PROBE_ROUTES: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

impl Totals {
    fn add(&mut self, s: &Sample, value: f64) {
        let bucket = |s: &Sample| s.label("le").and_then(prom::parse_value).map(Le);
        match s.name.as_str() {
            metric::PUBLISHED => {
                if let Some(t) = s.label("topic") {
                    *self.published.entry(t.to_string()).or_default() += value;
                }
            }
            metric::CONSUMED => {
                if let Some(g) = s.label("group") {
                    *self.consumed_by_group.entry(g.to_string()).or_default() += value;
                }
            }
            // Probes (this dashboard's own among them) are not traffic.
            metric::REQUESTS if !s.label("route").is_some_and(|r| PROBE_ROUTES.contains(&r)) => {
                *self.requests.get_or_insert(0.0) += value;
            }
            metric::SAGA_COMPENSATIONS => *self.compensations.get_or_insert(0.0) += value,
            name if name.strip_suffix("_bucket") == Some(metric::SAGA_STEP_SECONDS) => {
                if let (Some(step), Some(le)) = (s.label("step"), bucket(s)) {
                    *self
                        .step_buckets
                        .entry(step.to_string())
                        .or_default()
                        .entry(le)
                        .or_default() += value;
                }
            }
            name if name.strip_suffix("_bucket") == Some(metric::SEARCH_FRESHNESS_SECONDS) => {
                if let Some(le) = bucket(s) {
                    *self
                        .search_buckets
                        .get_or_insert_default()
                        .entry(le)
                        .or_default() += value;
                }
            }
            _ => {}
        }
    }
}

fn is_counter_we_follow(name: &str) -> bool {
    matches!(
        name,
        metric::PUBLISHED | metric::CONSUMED | metric::REQUESTS | metric::SAGA_COMPENSATIONS
    ) || name.strip_suffix("_bucket").is_some_and(|base| {
        base == metric::SAGA_STEP_SECONDS || base == metric::SEARCH_FRESHNESS_SECONDS
    })
}

/// One counter series: which component served it, its name and labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SeriesKey {
    component: String,
    name: String,
    labels: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy)]
struct Followed {
    /// The value last scraped.
    raw: f64,
    /// What the series grew by since the dashboard first saw it, resets
    /// counted from zero. Never decreases.
    increase: f64,
}

/// The derivation state carried from tick to tick.
#[derive(Debug, Default)]
pub struct Model {
    series: HashMap<SeriesKey, Followed>,
    /// Components whose metrics the previous tick had.
    scraped: BTreeSet<String>,
    /// Reset-adjusted totals of recent ticks, oldest first, within [`WINDOW_MS`].
    window: VecDeque<Totals>,
    history: BTreeMap<String, VecDeque<f64>>,
    panels: Panels,
}

impl Model {
    pub fn panels(&self) -> &Panels {
        &self.panels
    }

    /// Take in one poll and derive the panels anew.
    pub fn apply(&mut self, tick: Tick) {
        let scrapes: Vec<(String, Vec<Sample>)> = tick
            .metrics
            .iter()
            .map(|(component, text)| (component.clone(), prom::parse(text)))
            .collect();
        let samples: Vec<Sample> = scrapes
            .iter()
            .flat_map(|(_, s)| s.iter().cloned())
            .collect();

        let (adjusted, raw) = self.follow_counters(tick.at_ms, &scrapes);
        if self
            .window
            .back()
            .is_some_and(|last| tick.at_ms <= last.at_ms)
        {
            // Time stood still or went back: differences would be meaningless.
            self.window.clear();
        }
        self.window.push_back(adjusted);
        while self.window.len() > MAX_WINDOW_SCRAPES
            || self
                .window
                .front()
                .is_some_and(|f| f.at_ms + WINDOW_MS < tick.at_ms)
        {
            self.window.pop_front();
        }

        let mut panels = Panels {
            at_ms: tick.at_ms,
            stack_hint: tick.stack_hint,
            scenario: tick.scenario,
            ..Panels::default()
        };
        derive_components(&mut panels, &tick.components);
        self.derive_rates(&mut panels, &samples, &raw);
        derive_gauges(&mut panels, &samples);
        let mut traces = tick.traces;
        traces.sort_by(|a, b| {
            b.start_unix_nano
                .cmp(&a.start_unix_nano)
                .then_with(|| a.trace_id.cmp(&b.trace_id))
        });
        traces.truncate(MAX_TRACES);
        panels.traces = traces;
        self.panels = panels;
    }

    /// Follow every counter series we use; return this tick's reset-adjusted
    /// totals and its raw totals.
    fn follow_counters(
        &mut self,
        at_ms: u64,
        scrapes: &[(String, Vec<Sample>)],
    ) -> (Totals, Totals) {
        let mut next = HashMap::with_capacity(self.series.len());
        let mut adjusted = Totals {
            at_ms,
            ..Totals::default()
        };
        let mut raw = adjusted.clone();
        for (component, samples) in scrapes {
            let seen_before = self.scraped.contains(component);
            for s in samples {
                if !is_counter_we_follow(&s.name) || !s.value.is_finite() {
                    continue;
                }
                let key = SeriesKey {
                    component: component.clone(),
                    name: s.name.clone(),
                    labels: sorted_labels(&s.labels),
                };
                let followed = match self.series.get(&key) {
                    Some(prev) => Followed {
                        raw: s.value,
                        increase: prev.increase + counter_increase(prev.raw, s.value),
                    },
                    None if next.len() >= MAX_SERIES => continue,
                    // A new series of a component already scraped started
                    // from zero since the last tick.
                    None if seen_before => Followed {
                        raw: s.value,
                        increase: s.value.max(0.0),
                    },
                    // The first sight of a component: a baseline.
                    None => Followed {
                        raw: s.value,
                        increase: 0.0,
                    },
                };
                adjusted.add(s, followed.increase);
                raw.add(s, s.value);
                next.insert(key, followed);
            }
        }
        self.series = next;
        self.scraped = scrapes.iter().map(|(c, _)| c.clone()).collect();
        (adjusted, raw)
    }

    fn derive_rates(&mut self, panels: &mut Panels, samples: &[Sample], raw: &Totals) {
        let now = self.window.back().cloned().unwrap_or_default();
        let prev = self
            .window
            .len()
            .checked_sub(2)
            .and_then(|i| self.window.get(i));
        let oldest = (self.window.len() >= 2)
            .then(|| self.window.front())
            .flatten();

        // Per-second rate of a total between the last two ticks.
        let per_s = |now_v: Option<f64>, key_prev: &dyn Fn(&Totals) -> Option<f64>| {
            let prev = prev?;
            let dt_s = now.at_ms.checked_sub(prev.at_ms)? as f64 / 1000.0;
            (dt_s > 0.0).then_some(())?;
            Some((now_v? - key_prev(prev).unwrap_or(0.0)).max(0.0) / dt_s)
        };

        panels.requests_per_s = per_s(now.requests, &|p| p.requests);

        // Topics: rates, then history for the sparklines.
        let mut topic_names: BTreeSet<String> = now.published.keys().cloned().collect();
        topic_names.extend(self.history.keys().cloned());
        for topic in &topic_names {
            if !self.history.contains_key(topic) && self.history.len() >= MAX_TOPICS {
                continue;
            }
            let rate = per_s(now.published.get(topic).copied(), &|p| {
                p.published.get(topic).copied()
            });
            let history = self.history.entry(topic.clone()).or_default();
            if let Some(r) = rate {
                history.push_back(r);
                while history.len() > SPARKLINE_POINTS {
                    history.pop_front();
                }
            }
        }
        let mut topics: Vec<TopicRow> = Vec::new();
        let mut push_topic = |topic: &str| {
            if topics.iter().any(|t| t.topic == topic) {
                return;
            }
            topics.push(TopicRow {
                topic: topic.to_string(),
                published_per_s: per_s(now.published.get(topic).copied(), &|p| {
                    p.published.get(topic).copied()
                }),
                dead_letter: is_dead_letter(topic),
                history_per_s: self
                    .history
                    .get(topic)
                    .map(|h| h.iter().copied().collect())
                    .unwrap_or_default(),
            });
        };
        for t in KNOWN_TOPICS {
            push_topic(t);
        }
        let seen: Vec<&String> = self.history.keys().collect();
        for t in seen.iter().filter(|t| is_dead_letter(t)) {
            push_topic(t);
        }
        for t in seen.iter().filter(|t| !is_dead_letter(t)) {
            push_topic(t);
        }
        panels.topics = topics;

        // Consumer groups: lag now, consumption rate.
        let lag = prom::sum_by(samples, metric::CONSUMER_LAG, "group");
        let groups: BTreeSet<&String> = lag.keys().chain(now.consumed_by_group.keys()).collect();
        panels.consumer_lag = groups
            .into_iter()
            .map(|g| LagRow {
                group: g.clone(),
                lag: lag.get(g).copied(),
                consumed_per_s: per_s(now.consumed_by_group.get(g).copied(), &|p| {
                    p.consumed_by_group.get(g).copied()
                }),
            })
            .collect();

        // Quantiles over the window; the first tick has only cumulative buckets.
        let window_buckets =
            |now_b: Option<&Buckets>, old_b: Option<&Buckets>| -> Option<Buckets> {
                let now_b = now_b?;
                Some(match old_b {
                    Some(old_b) => prom::bucket_deltas(now_b, old_b),
                    None => now_b.clone(),
                })
            };
        let (step_source, search_source) = match oldest {
            Some(_) => (&now, &now),
            None => (raw, raw),
        };
        let mut steps: Vec<String> = SAGA_STEPS.iter().map(|s| s.to_string()).collect();
        steps.extend(
            step_source
                .step_buckets
                .keys()
                .filter(|k| !SAGA_STEPS.contains(&k.as_str()))
                .cloned(),
        );
        panels.saga_steps = steps
            .into_iter()
            .map(|step| {
                let b = window_buckets(
                    step_source.step_buckets.get(&step),
                    oldest.and_then(|o| o.step_buckets.get(&step)),
                );
                let q = |q: f64| {
                    b.as_ref()
                        .and_then(|b| prom::histogram_quantile(q, b))
                        .map(|s| s * 1000.0)
                };
                StepLatency {
                    compensation: COMPENSATION_STEPS.contains(&step.as_str()),
                    latency_ms_p50: q(0.5),
                    latency_ms_p95: q(0.95),
                    observations: b.as_ref().map_or(0.0, prom::bucket_total),
                    step,
                }
            })
            .collect();
        panels.search_commit_to_searchable_ms_p95 = window_buckets(
            search_source.search_buckets.as_ref(),
            oldest.and_then(|o| o.search_buckets.as_ref()),
        )
        .and_then(|b| prom::histogram_quantile(0.95, &b))
        .map(|s| s * 1000.0);

        panels.compensations_per_min = oldest.and_then(|old| {
            let dt_min = now.at_ms.checked_sub(old.at_ms)? as f64 / 60_000.0;
            (dt_min > 0.0).then_some(())?;
            Some((now.compensations? - old.compensations.unwrap_or(0.0)).max(0.0) / dt_min)
        });
    }
}

/// How much a counter grew from `prev` to `now`; a smaller value means the
/// process restarted and counted again from zero.
pub fn counter_increase(prev: f64, now: f64) -> f64 {
    if now >= prev {
        now - prev
    } else {
        now.max(0.0)
    }
}

/// Dead-letter topics get their own colour: `*.dlq` or anything naming `dlq`.
pub fn is_dead_letter(topic: &str) -> bool {
    topic.to_ascii_lowercase().contains("dlq")
}

fn sorted_labels(labels: &[(String, String)]) -> Vec<(String, String)> {
    let mut l = labels.to_vec();
    l.sort();
    l
}

fn derive_components(panels: &mut Panels, components: &[ComponentInput]) {
    panels.components = components
        .iter()
        .map(|c| ComponentRow {
            name: c.name.clone(),
            state: ComponentState::of(c),
            rss_mib: c.rss_kib as f64 / 1024.0,
            cpu_percent: c.cpu_percent.filter(|v| v.is_finite()),
            error: c.error.clone(),
        })
        .collect();
    panels.components_total = panels.components.len();
    panels.components_ready = panels
        .components
        .iter()
        .filter(|c| c.state == ComponentState::Ready)
        .count();
    panels.all_down = panels
        .components
        .iter()
        .all(|c| c.state == ComponentState::Down);
}

fn derive_gauges(panels: &mut Panels, samples: &[Sample]) {
    let states = prom::sum_by(samples, metric::ORDERS_BY_STATE, "state");
    if !states.is_empty() {
        let mut rows: Vec<StateCount> = ORDER_STATES
            .iter()
            .filter_map(|s| {
                states.get(*s).map(|&count| StateCount {
                    state: s.to_string(),
                    count,
                })
            })
            .collect();
        rows.extend(
            states
                .iter()
                .filter(|(s, _)| !ORDER_STATES.contains(&s.as_str()))
                .map(|(s, &count)| StateCount {
                    state: s.clone(),
                    count,
                }),
        );
        panels.orders_by_state = Some(rows);
    }
    panels.cdc_lag_ms = prom::max(samples, metric::CDC_LAG_MS);
    panels.faults = samples
        .iter()
        .filter(|s| s.name == metric::FAULT_ACTIVE && s.value >= 0.5)
        .map(|s| ActiveFault {
            fault: s.label("fault").unwrap_or("?").to_string(),
            target: s.label("target").unwrap_or("").to_string(),
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{self, component};

    fn model_of(ticks: impl IntoIterator<Item = Tick>) -> Model {
        let mut m = Model::default();
        for t in ticks {
            m.apply(t);
        }
        m
    }

    fn tick(at_ms: u64, metrics: &[(&str, &str)]) -> Tick {
        Tick {
            at_ms,
            metrics: metrics
                .iter()
                .map(|(c, t)| (c.to_string(), t.to_string()))
                .collect(),
            ..Tick::default()
        }
    }

    fn topic_rate(m: &Model, topic: &str) -> Option<f64> {
        m.panels()
            .topics
            .iter()
            .find(|t| t.topic == topic)
            .and_then(|t| t.published_per_s)
    }

    fn step<'a>(p: &'a Panels, name: &str) -> &'a StepLatency {
        p.saga_steps.iter().find(|s| s.step == name).unwrap()
    }

    #[track_caller]
    fn assert_close(actual: Option<f64>, expected: f64) {
        let a = actual.unwrap_or_else(|| panic!("expected {expected}, got None"));
        assert!((a - expected).abs() < 1e-9, "expected {expected}, got {a}");
    }

    #[test]
    fn running_and_ready_is_ready() {
        let c = component("orders", true, true, None);
        assert_eq!(ComponentState::of(&c), ComponentState::Ready);
        // A recovered component keeps its last error on record: still ready.
        let c = component("orders", true, true, Some("restarted once"));
        assert_eq!(ComponentState::of(&c), ComponentState::Ready);
    }

    #[test]
    fn running_not_ready_without_error_is_starting() {
        let c = component("orders", true, false, None);
        assert_eq!(ComponentState::of(&c), ComponentState::Starting);
    }

    #[test]
    fn an_error_is_failed() {
        let c = component("orders", false, false, Some("exited with status 1"));
        assert_eq!(ComponentState::of(&c), ComponentState::Failed);
        let c = component(
            "orders",
            true,
            false,
            Some("readiness: database unreachable"),
        );
        assert_eq!(ComponentState::of(&c), ComponentState::Failed);
    }

    #[test]
    fn not_running_without_error_is_down() {
        let c = component("orders", false, false, None);
        assert_eq!(ComponentState::of(&c), ComponentState::Down);
        let c = component("orders", false, true, None);
        assert_eq!(ComponentState::of(&c), ComponentState::Down);
    }

    #[test]
    fn rates_come_from_counter_deltas_summed_across_services() {
        let m = model_of([fixtures::tick(0), fixtures::tick(1)]);
        let p = m.panels();
        assert_close(topic_rate(&m, "product.events"), 8.0);
        assert_close(topic_rate(&m, "order.lifecycle"), 12.0);
        assert_close(topic_rate(&m, "analytics.raw"), 100.0);
        assert_close(topic_rate(&m, "payment.events.dlq"), 1.0);
        assert_eq!(topic_rate(&m, "media.events"), None, "never published");
        assert_close(p.requests_per_s, 50.0);
        let saga = p
            .consumer_lag
            .iter()
            .find(|g| g.group == "orders-saga")
            .unwrap();
        assert_close(saga.consumed_per_s, 5.0);
        assert_close(saga.lag, 4.0);

        // Two services publishing to one topic add up; 2 s apart halves it.
        let a0 = "shopstream_events_published_total{topic=\"t\",service=\"a\"} 10\n";
        let b0 = "shopstream_events_published_total{topic=\"t\",service=\"b\"} 100\n";
        let a1 = "shopstream_events_published_total{topic=\"t\",service=\"a\"} 14\n";
        let b1 = "shopstream_events_published_total{topic=\"t\",service=\"b\"} 110\n";
        let m = model_of([
            tick(0, &[("a", a0), ("b", b0)]),
            tick(2_000, &[("a", a1), ("b", b1)]),
        ]);
        assert_close(topic_rate(&m, "t"), 7.0);
    }

    #[test]
    fn the_first_tick_has_no_rates() {
        let m = model_of([fixtures::tick(0)]);
        assert!(
            m.panels()
                .topics
                .iter()
                .all(|t| t.published_per_s.is_none())
        );
        assert_eq!(m.panels().requests_per_s, None);
        assert_eq!(m.panels().compensations_per_min, None);
    }

    #[test]
    fn a_counter_that_went_down_restarted_and_counts_from_zero() {
        assert_eq!(counter_increase(100.0, 130.0), 30.0);
        assert_eq!(counter_increase(100.0, 30.0), 30.0);
        assert_eq!(counter_increase(100.0, 100.0), 0.0);
        let at = |v: u32| format!("shopstream_events_published_total{{topic=\"t\"}} {v}\n");
        let m = model_of([
            tick(0, &[("orders", &at(1000))]),
            tick(1_000, &[("orders", &at(1010))]),
            // The process restarted and has published 3 since.
            tick(2_000, &[("orders", &at(3))]),
        ]);
        assert_close(topic_rate(&m, "t"), 3.0);
        let history = &m
            .panels()
            .topics
            .iter()
            .find(|t| t.topic == "t")
            .unwrap()
            .history_per_s;
        assert_eq!(history, &[10.0, 3.0]);
    }

    #[test]
    fn a_component_seen_first_is_a_baseline_and_a_new_series_counts_from_zero() {
        let old = "shopstream_events_published_total{topic=\"t\"} 500\n";
        let m = model_of([
            tick(0, &[("orders", old)]),
            // payments appears with a large total: counted before we looked.
            tick(
                1_000,
                &[
                    (
                        "orders",
                        "shopstream_events_published_total{topic=\"t\"} 500\nshopstream_events_published_total{topic=\"u\"} 4\n",
                    ),
                    (
                        "payments",
                        "shopstream_events_published_total{topic=\"t\"} 9000\n",
                    ),
                ],
            ),
        ]);
        assert_close(topic_rate(&m, "t"), 0.0);
        // orders was scraped before, so its new series started since then.
        assert_close(topic_rate(&m, "u"), 4.0);
    }

    #[test]
    fn step_quantiles_come_from_bucket_deltas_between_scrapes() {
        let m = model_of([fixtures::tick(0), fixtures::tick(1)]);
        let p = m.panels();
        // 10 reserve steps in (10ms, 50ms]: p50 at 30ms, p95 at 48ms.
        assert_close(step(p, "reserve").latency_ms_p50, 30.0);
        assert_close(step(p, "reserve").latency_ms_p95, 48.0);
        assert_eq!(step(p, "reserve").observations, 10.0);
        // 5 in (50ms, 100ms], 1 in (100ms, 500ms].
        assert_close(step(p, "authorize").latency_ms_p50, 80.0);
        assert_close(step(p, "authorize").latency_ms_p95, 380.0);
        assert_close(step(p, "refund").latency_ms_p50, 750.0);
        assert!(step(p, "refund").compensation);
        // No capture since the first scrape, no finalize ever.
        assert_eq!(step(p, "capture").latency_ms_p50, None);
        assert_eq!(step(p, "finalize").latency_ms_p95, None);
        let names: Vec<_> = p.saga_steps.iter().map(|s| s.step.as_str()).collect();
        assert_eq!(names, SAGA_STEPS);
        // 6 observations in (0.25s, 1s]: p95 at 958.3ms.
        let search = p.search_commit_to_searchable_ms_p95.unwrap();
        assert!((search - 958.333).abs() < 0.01, "{search}");
    }

    #[test]
    fn the_first_tick_falls_back_to_cumulative_buckets() {
        let m = model_of([fixtures::tick(0)]);
        let p = m.panels();
        // 40 in (0, 5ms], 50 in (5ms, 10ms]: p50 at 6ms.
        assert_close(step(p, "reserve").latency_ms_p50, 6.0);
        assert_close(p.search_commit_to_searchable_ms_p95, 375.0);
    }

    #[test]
    fn quantiles_and_compensations_cover_the_window_only() {
        let hist = |slow: u32| {
            format!(
                "shopstream_saga_step_seconds_bucket{{step=\"capture\",le=\"0.1\"}} 10\n\
                 shopstream_saga_step_seconds_bucket{{step=\"capture\",le=\"1\"}} {}\n\
                 shopstream_saga_step_seconds_bucket{{step=\"capture\",le=\"+Inf\"}} {}\n\
                 shopstream_saga_compensations_total{{step=\"refund\"}} {slow}\n",
                10 + slow,
                10 + slow
            )
        };
        // Slow captures before the window's start are forgotten.
        let m = model_of([
            tick(0, &[("orders", &hist(0))]),
            tick(30_000, &[("orders", &hist(5))]),
            tick(90_000, &[("orders", &hist(5))]),
            tick(91_000, &[("orders", &hist(5))]),
        ]);
        assert_eq!(step(m.panels(), "capture").latency_ms_p50, None);
        assert_close(m.panels().compensations_per_min, 0.0);
        // Within the window, every tick since the oldest one counts.
        let m = model_of([
            tick(0, &[("orders", &hist(0))]),
            tick(20_000, &[("orders", &hist(2))]),
            tick(30_000, &[("orders", &hist(4))]),
        ]);
        assert_eq!(step(m.panels(), "capture").observations, 4.0);
        assert_close(step(m.panels(), "capture").latency_ms_p50, 550.0);
        assert_close(m.panels().compensations_per_min, 8.0);
    }

    #[test]
    fn compensations_per_minute_from_the_fixture() {
        let m = model_of([fixtures::tick(0), fixtures::tick(1)]);
        assert_close(m.panels().compensations_per_min, 60.0);
    }

    #[test]
    fn gauges_orders_cdc_lag_and_faults() {
        let m = model_of([fixtures::tick(0), fixtures::tick(1)]);
        let p = m.panels();
        let states: Vec<(&str, f64)> = p
            .orders_by_state
            .as_ref()
            .unwrap()
            .iter()
            .map(|s| (s.state.as_str(), s.count))
            .collect();
        assert_eq!(
            states,
            [
                ("pending", 3.0),
                ("reserved", 2.0),
                ("authorized", 1.0),
                ("completed", 42.0),
                ("cancelled", 2.0),
                ("failed", 1.0)
            ]
        );
        assert_eq!(p.cdc_lag_ms, Some(95.0), "the largest of the databases");
        // Reported by two services, listed once; catalog-slow is 0: inactive.
        assert_eq!(
            p.faults,
            [ActiveFault {
                fault: "stripe-slow".into(),
                target: "payments".into()
            }]
        );
    }

    #[test]
    fn other_order_states_follow_the_known_ones() {
        let text = "shopstream_orders_by_state{state=\"on_hold\"} 1\nshopstream_orders_by_state{state=\"pending\"} 2\n";
        let m = model_of([tick(0, &[("orders", text)])]);
        let states: Vec<_> = m
            .panels()
            .orders_by_state
            .as_ref()
            .unwrap()
            .iter()
            .map(|s| s.state.as_str())
            .collect();
        assert_eq!(states, ["pending", "on_hold"]);
    }

    #[test]
    fn absent_and_broken_metrics_are_unknown_not_a_panic() {
        let m = model_of([
            tick(0, &[("orders", "garbage {{{\n# only comments\n")]),
            tick(
                1_000,
                &[(
                    "orders",
                    "shopstream_cdc_lag_ms NaN\nshopstream_events_published_total{topic=\"t\"} +Inf\n",
                )],
            ),
        ]);
        let p = m.panels();
        assert_eq!(p.requests_per_s, None);
        assert_eq!(p.orders_by_state, None);
        assert_eq!(p.cdc_lag_ms, None);
        assert_eq!(p.search_commit_to_searchable_ms_p95, None);
        assert_eq!(p.compensations_per_min, None);
        assert!(p.faults.is_empty() && p.consumer_lag.is_empty());
        assert!(p.saga_steps.iter().all(|s| s.latency_ms_p50.is_none()));
        let topics: Vec<_> = p.topics.iter().map(|t| t.topic.as_str()).collect();
        assert_eq!(topics, KNOWN_TOPICS, "known topics are always listed");
    }

    #[test]
    fn time_going_back_gives_no_rate_instead_of_a_wrong_one() {
        let at = |v: u32| format!("shopstream_events_published_total{{topic=\"t\"}} {v}\n");
        let m = model_of([
            tick(5_000, &[("orders", &at(10))]),
            tick(4_000, &[("orders", &at(20))]),
        ]);
        assert_eq!(topic_rate(&m, "t"), None);
        let m = model_of([
            tick(5_000, &[("orders", &at(10))]),
            tick(5_000, &[("orders", &at(20))]),
        ]);
        assert_eq!(topic_rate(&m, "t"), None);
    }

    #[test]
    fn topics_are_ordered_known_then_dead_letter_then_others_and_history_is_bounded() {
        let mut ticks = Vec::new();
        for i in 0..(SPARKLINE_POINTS as u64 + 10) {
            let text = format!(
                "shopstream_events_published_total{{topic=\"zeta\"}} {i}\n\
                 shopstream_events_published_total{{topic=\"alpha\"}} {i}\n\
                 shopstream_events_published_total{{topic=\"orders.dlq\"}} 0\n\
                 shopstream_events_published_total{{topic=\"order.lifecycle\"}} {}\n",
                i * 2
            );
            ticks.push(tick(i * 1_000, &[("orders", &text)]));
        }
        let m = model_of(ticks);
        let topics: Vec<_> = m.panels().topics.iter().map(|t| t.topic.as_str()).collect();
        let mut expected = KNOWN_TOPICS.to_vec();
        expected.extend(["orders.dlq", "alpha", "zeta"]);
        assert_eq!(topics, expected);
        let lifecycle = &m.panels().topics[1];
        assert_eq!(lifecycle.history_per_s.len(), SPARKLINE_POINTS);
        assert!(lifecycle.history_per_s.iter().all(|&r| r == 2.0));
        assert!(m.panels().topics[6].dead_letter);
    }

    #[test]
    fn all_down_when_no_component_runs() {
        let m = model_of([fixtures::all_down_tick()]);
        assert!(m.panels().all_down);
        let m = model_of([fixtures::tick(0)]);
        assert!(!m.panels().all_down);
        assert_eq!(
            (m.panels().components_ready, m.panels().components_total),
            (6, 9)
        );
    }

    #[test]
    fn traces_are_newest_first_and_bounded() {
        let mut t = fixtures::tick(1);
        let template = t.traces[0].clone();
        t.traces = (0..(MAX_TRACES as u64 + 50))
            .map(|i| TraceSummary {
                trace_id: format!("{i:032x}"),
                start_unix_nano: i,
                ..template.clone()
            })
            .collect();
        let m = model_of([t]);
        let traces = &m.panels().traces;
        assert_eq!(traces.len(), MAX_TRACES);
        assert_eq!(traces[0].start_unix_nano, MAX_TRACES as u64 + 49);
        assert!(
            traces
                .windows(2)
                .all(|w| w[0].start_unix_nano > w[1].start_unix_nano)
        );
    }
    #[test]
    fn probes_are_not_counted_as_requests() {
        let text = |n: u32| {
            format!(
                "shopstream_requests_total{{route=\"/readyz\",service=\"gateway\"}} {}\n\
                 shopstream_requests_total{{route=\"/metrics\",service=\"gateway\"}} {}\n\
                 shopstream_requests_total{{route=\"/orders\",service=\"gateway\"}} {}\n",
                n * 100,
                n * 100,
                n * 3
            )
        };
        let mut m = Model::default();
        for (i, at) in [0u64, 1_000].into_iter().enumerate() {
            m.apply(Tick {
                at_ms: at,
                metrics: vec![("gateway".into(), text(i as u32 + 1))],
                ..Tick::default()
            });
        }
        assert_close(m.panels().requests_per_s, 3.0);
    }
}
