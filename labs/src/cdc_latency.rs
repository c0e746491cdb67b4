//! The lab `cdc-latency`: edit products through the admin API at a steady
//! rate and measure how long each edit takes to travel catalog commit →
//! Kafka (`product.events`, via the cdc service) → the search index; then
//! SIGKILL cdc mid-stream while the edits go on, restart it, and check from
//! the outside that no edit was lost and none was applied out of order.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde_json::{Value, json};
use shopstream_platform::events::{
    EventBus,
    kafka::{KafkaBus, KafkaSettings},
};
use shopstream_runtime::Kind;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{
    kit::{Lab, LabError, Probe},
    target::{Gateway, Operator, Target, unreachable},
};

pub const NAME: &str = "cdc-latency";
pub const TITLE: &str = "an edit is searchable within milliseconds, and a cdc crash loses nothing";
pub const SUMMARY: &str = "Edit products at a steady rate, measure commit→Kafka, Kafka→indexed \
    and commit→searchable percentiles, then SIGKILL the cdc service mid-stream and check that \
    no edit was lost or applied out of order.";

pub const TOPIC: &str = "product.events";
/// Header cdc sets to the source transaction's commit time (Unix ms).
pub const COMMIT_TS_HEADER: &str = "cdc-commit-ts-ms";
/// Products edited round-robin.
pub const PRODUCTS: usize = 4;
/// Products whose records came last on the topic: once search holds them,
/// it has worked through the backlog (e.g. a fresh seed's 1,600 records).
const TAIL_PRODUCTS: usize = 16;
/// Edits per second, over all products.
pub const EDITS_PER_S: u64 = 20;
/// How long search may take to work through what came before the lab (on a
/// freshly seeded stack: every seeded product's events) before phase 1.
const SEARCH_CATCH_UP_DEADLINE: Duration = Duration::from_secs(180);
/// How long the measured, undisturbed phase lasts.
pub const STEADY_PHASE: Duration = Duration::from_secs(10);
/// Edits keep going this long before cdc is killed…
pub const BEFORE_KILL: Duration = Duration::from_secs(2);
/// …cdc stays dead this long…
pub const CDC_DOWN: Duration = Duration::from_secs(3);
/// …and the edits go on this long after it is back.
pub const AFTER_RESTART: Duration = Duration::from_secs(3);
/// How often the index is asked about each product.
pub const INDEX_POLL: Duration = Duration::from_millis(20);
/// How long the index may take to reach the catalog's versions at the end.
pub const CONVERGE_DEADLINE: Duration = Duration::from_secs(60);
/// How long the product.events reader may take to catch up with the topic.
pub const CATCH_UP_DEADLINE: Duration = Duration::from_secs(60);
/// Bound on the events the reader keeps.
const BUFFER_EVENTS: usize = 200_000;
const KAFKA_POLL: Duration = Duration::from_millis(100);
const KAFKA_RETRY_AFTER: Duration = Duration::from_secs(1);
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// Histogram bucket upper bounds, ms.
const HISTOGRAM_BOUNDS_MS: &[f64] = &[
    10.0, 25.0, 50.0, 100.0, 200.0, 300.0, 500.0, 1_000.0, 5_000.0,
];
const HISTOGRAM_WIDTH: usize = 40;

const INTRO: &str = "Search in Shopstream is a projection: the catalog writes a product \
    change and an outbox row in one transaction; the cdc service reads the outbox from \
    Postgres' logical replication stream (pgoutput) and publishes each row to the Kafka \
    topic product.events as a Debezium-style change record, acknowledging the LSN to \
    Postgres only after Kafka acknowledged the record; the search service consumes the \
    topic and writes the product into its index under external versioning (an older or \
    repeated version never overwrites a newer one).\n\n\
    This lab edits a few products through the admin API at a steady rate and times each \
    edit through the pipeline, from timestamps carried with it: the commit time cdc puts \
    in the cdc-commit-ts-ms header, the moment the lab's own consumer receives the record, \
    and the moment search made the version visible to queries. Then it kills cdc with \
    SIGKILL while the edits go on, restarts it, and checks that every edit arrived, in \
    order, and that the index ends equal to the catalog.";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One `product.events` record as the lab saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub version: i64,
    pub commit_ts_ms: Option<i64>,
    pub received_ms: i64,
}

/// `(product_id, version)` from a record's Debezium-style payload: `after`
/// is an outbox row whose `payload` (object or JSON string) is the product change.
pub fn product_version(payload: &[u8]) -> Option<(String, i64)> {
    let root: Value = serde_json::from_slice(payload).ok()?;
    let row = root.get("after").filter(|r| r.is_object())?;
    let inner = match row.get("payload")? {
        Value::String(s) => serde_json::from_str::<Value>(s).ok()?,
        v => v.clone(),
    };
    let id = inner
        .get("product_id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| row.get("aggregate_id")?.as_str().map(str::to_owned))?;
    let version = match inner.get("version")? {
        Value::Number(n) => n.as_i64()?,
        Value::String(s) => s.parse().ok()?,
        _ => return None,
    };
    Some((id, version))
}

#[derive(Debug, Default)]
struct ReaderState {
    /// product id → what arrived, in arrival order.
    by_product: BTreeMap<String, Vec<Seen>>,
    read: u64,
    last_read_at: Option<Instant>,
    last_error: Option<String>,
    kept: usize,
}

/// Reads `product.events` from the start with a consumer group of its own.
struct Reader {
    state: Arc<Mutex<ReaderState>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    _stop_on_drop: tokio_util::sync::DropGuard,
}

impl Reader {
    async fn start(brokers: &str, group: String) -> Result<Reader, LabError> {
        let settings = KafkaSettings::from_env(brokers)
            .map_err(|e| LabError::Failed(format!("kafka settings: {e}")))?;
        let bus =
            KafkaBus::new(settings).map_err(|e| LabError::Failed(format!("kafka client: {e}")))?;
        bus.ping(PING_TIMEOUT).await.map_err(|e| {
            LabError::NotReady(format!(
                "cannot reach the Kafka broker at {brokers} ({e}); is the system up?"
            ))
        })?;
        let state = Arc::new(Mutex::new(ReaderState::default()));
        let stop = CancellationToken::new();
        let task = tokio::spawn(read(bus, group, state.clone(), stop.clone()));
        Ok(Reader {
            state,
            _stop_on_drop: stop.clone().drop_guard(),
            stop,
            task,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReaderState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn seen(&self, product_id: &str) -> Vec<Seen> {
        self.lock()
            .by_product
            .get(product_id)
            .cloned()
            .unwrap_or_default()
    }

    async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(15), self.task).await;
    }
}

async fn read(
    bus: KafkaBus,
    group: String,
    state: Arc<Mutex<ReaderState>>,
    stop: CancellationToken,
) {
    let lock = || state.lock().unwrap_or_else(|p| p.into_inner());
    while !stop.is_cancelled() {
        let mut sub = match bus.subscribe(&group, &[TOPIC.to_string()]).await {
            Ok(s) => s,
            Err(e) => {
                lock().last_error = Some(e.to_string());
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(KAFKA_RETRY_AFTER) => continue,
                }
            }
        };
        loop {
            if stop.is_cancelled() {
                sub.abort().await;
                return;
            }
            match sub.next(KAFKA_POLL).await {
                Ok(None) => {}
                Ok(Some(d)) => {
                    let received_ms = now_ms();
                    let env = d.envelope;
                    let mut s = lock();
                    s.read += 1;
                    s.last_read_at = Some(Instant::now());
                    if let Some((id, version)) = product_version(&env.payload)
                        && s.kept < BUFFER_EVENTS
                    {
                        let commit_ts_ms = env
                            .headers
                            .get(COMMIT_TS_HEADER)
                            .and_then(|v| v.parse().ok());
                        s.kept += 1;
                        s.by_product.entry(id).or_default().push(Seen {
                            version,
                            commit_ts_ms,
                            received_ms,
                        });
                    }
                }
                Err(e) => {
                    lock().last_error = Some(e.to_string());
                    sub.abort().await;
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(KAFKA_RETRY_AFTER) => break,
                    }
                }
            }
        }
    }
}

/// What the order check found in one product's arrivals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderCheck {
    /// Versions the lab wrote that never arrived.
    pub lost: Vec<i64>,
    /// Arrivals of a version never seen before that is lower than one already seen.
    pub out_of_order: Vec<i64>,
    /// Arrivals of a version already seen (at-least-once redelivery; harmless).
    pub duplicates: u64,
}

/// Check one product's arrivals against the versions the lab wrote.
pub fn check_order(written: &BTreeSet<i64>, arrivals: &[i64]) -> OrderCheck {
    let mut out = OrderCheck::default();
    let mut seen = BTreeSet::new();
    let mut max = i64::MIN;
    for &v in arrivals {
        if !seen.insert(v) {
            out.duplicates += 1;
        } else if v < max {
            out.out_of_order.push(v);
        }
        max = max.max(v);
    }
    out.lost = written.difference(&seen).copied().collect();
    out
}

/// p-th percentile (nearest rank) of sorted `v`.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}

/// A small text histogram over [`HISTOGRAM_BOUNDS_MS`].
pub fn histogram(samples_ms: &[f64]) -> Vec<String> {
    let mut counts = vec![0usize; HISTOGRAM_BOUNDS_MS.len() + 1];
    for &s in samples_ms {
        let i = HISTOGRAM_BOUNDS_MS
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(HISTOGRAM_BOUNDS_MS.len());
        counts[i] += 1;
    }
    let max = counts.iter().copied().max().unwrap_or(0).max(1);
    let mut lines = Vec::new();
    let mut lower = 0.0;
    for (i, &c) in counts.iter().enumerate() {
        let label = match HISTOGRAM_BOUNDS_MS.get(i) {
            Some(b) => format!("{lower:>5.0}–{b:<5.0} ms"),
            None => format!("  > {lower:<7.0} ms"),
        };
        if let Some(b) = HISTOGRAM_BOUNDS_MS.get(i) {
            lower = *b;
        }
        let bar = "█".repeat((c * HISTOGRAM_WIDTH).div_ceil(max));
        lines.push(format!("{label} │{bar:<HISTOGRAM_WIDTH$} {c}"));
    }
    lines
}

/// What `GET /debug/indexed/{id}` answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Indexed {
    pub version: i64,
    /// When search made this version visible to queries (Unix ms).
    pub searchable_ts_ms: Option<i64>,
    /// Search's own measure: the source commit (cdc's header) → searchable.
    pub commit_to_searchable_ms: Option<i64>,
}

/// Search's debug surface: which version of a product the index holds.
#[derive(Clone)]
pub struct SearchDebug {
    http: reqwest::Client,
    base: String,
}

impl SearchDebug {
    pub fn new(base: &str) -> Result<SearchDebug, LabError> {
        Ok(SearchDebug {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .map_err(|e| LabError::Failed(format!("http client: {e}")))?,
            base: base.trim_end_matches('/').to_string(),
        })
    }

    /// How many `product.events` records search has yet to index: its
    /// `shopstream_consumer_lag` summed over partitions (0 once caught up).
    pub async fn consumer_lag(&self) -> Result<f64, LabError> {
        let url = format!("{}/metrics", self.base);
        let text = self
            .http
            .get(&url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| unreachable("search", &self.base, &e))?
            .text()
            .await
            .map_err(|e| unreachable("search", &self.base, &e))?;
        if !text.contains("shopstream_consumer_lag") {
            return Err(LabError::NotReady(
                "search's /metrics has no consumer lag yet (its consumer has not joined)".into(),
            ));
        }
        Ok(shopstream_platform::metrics::sum_series(
            &text,
            "shopstream_consumer_lag",
            &[],
        ))
    }

    /// The version of `product_id` the index holds; `None` when it holds none.
    pub async fn indexed(&self, product_id: &str) -> Result<Option<Indexed>, LabError> {
        let url = format!("{}/debug/indexed/{product_id}", self.base);
        let r = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| unreachable("search", &self.base, &e))?;
        if r.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !r.status().is_success() {
            return Err(LabError::NotReady(format!(
                "search GET /debug/indexed: HTTP {}",
                r.status().as_u16()
            )));
        }
        let b: Value = r
            .json()
            .await
            .map_err(|e| unreachable("search", &self.base, &e))?;
        Ok(Some(Indexed {
            version: b["version"].as_i64().unwrap_or(-1),
            searchable_ts_ms: b["searchable_ts_ms"].as_i64(),
            commit_to_searchable_ms: b["commit_to_searchable_ms"].as_i64(),
        }))
    }
}

/// Every version of every product the index poller saw, first sighting only.
type IndexSightings = Arc<Mutex<BTreeMap<(String, i64), Indexed>>>;

async fn poll_index(
    search: SearchDebug,
    public: PublicCheck,
    ids: Vec<String>,
    seen: IndexSightings,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(INDEX_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut asks = tokio::task::JoinSet::new();
    while !stop.is_cancelled() {
        tick.tick().await;
        let calls = ids.iter().map(|id| {
            let s = search.clone();
            async move { (id.clone(), s.indexed(id).await) }
        });
        for (id, r) in futures::future::join_all(calls).await {
            if let Ok(Some(ix)) = r
                && ix.searchable_ts_ms.is_some()
            {
                let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                if let std::collections::btree_map::Entry::Vacant(e) =
                    seen.entry((id.clone(), ix.version))
                {
                    e.insert(ix);
                    asks.spawn(public.clone().ask(id, ix));
                }
            }
        }
        while asks.try_join_next().is_some() {}
    }
    while asks.join_next().await.is_some() {}
}

/// What `GET /search` said right after the index called a version searchable.
#[derive(Debug, Default, Clone)]
pub struct PublicAnswers {
    /// Versions the public query found at that version or newer.
    pub found: u64,
    /// Versions it did not: "title: v5 searchable, /search had v4".
    pub stale: Vec<String>,
    /// Queries that failed (not counted either way).
    pub errors: u64,
    /// Per version found: product id, version, and commit (cdc's header) →
    /// the public query's answer that found it, ms.
    pub commit_to_found_ms: Vec<(String, i64, f64)>,
}

/// Asks the public query path (`GET /search` through the gateway) about
/// each version the index reports searchable.
#[derive(Clone)]
struct PublicCheck {
    gateway: Gateway,
    /// Per product id: its title and the query that finds it.
    queries: Arc<BTreeMap<String, (String, String)>>,
    answers: Arc<Mutex<PublicAnswers>>,
}

impl PublicCheck {
    fn new(gateway: &Gateway, products: &[Edited]) -> PublicCheck {
        PublicCheck {
            gateway: gateway.clone(),
            queries: Arc::new(
                products
                    .iter()
                    .map(|p| (p.id.clone(), (p.title.clone(), search_query(p))))
                    .collect(),
            ),
            answers: Arc::default(),
        }
    }

    async fn ask(self, id: String, ix: Indexed) {
        let Some((title, q)) = self.queries.get(&id) else {
            return;
        };
        let url = format!("/search?q={}&limit=100", url_escape(q));
        let answer = self.gateway.get(&url).await;
        let answered_ms = now_ms();
        let mut a = self.answers.lock().unwrap_or_else(|p| p.into_inner());
        let Ok(body) = answer else {
            a.errors += 1;
            return;
        };
        let version = hit_version(&body, &id);
        if version.is_some_and(|v| v >= ix.version) {
            a.found += 1;
            if let (Some(s), Some(cs)) = (ix.searchable_ts_ms, ix.commit_to_searchable_ms) {
                a.commit_to_found_ms
                    .push((id, ix.version, (answered_ms - (s - cs)).max(0) as f64));
            }
        } else {
            a.stale.push(format!(
                "{title}: v{} searchable, /search had {}",
                ix.version,
                version.map_or("no hit".into(), |v| format!("v{v}"))
            ));
        }
    }
}

/// The query the lab searches `p` with: the first three words of its title.
fn search_query(p: &Edited) -> String {
    p.title
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The version of `product_id` among a `/search` answer's hits.
fn hit_version(body: &Value, product_id: &str) -> Option<i64> {
    body["hits"]
        .as_array()?
        .iter()
        .find(|h| h["product_id"] == product_id)
        .and_then(|h| h["version"].as_i64())
}

/// One product under edit.
#[derive(Debug, Clone)]
struct Edited {
    id: String,
    title: String,
    start_version: i64,
}

/// Versions the edit loop wrote, per product, and edits that failed.
#[derive(Debug, Default)]
struct Written {
    versions: BTreeMap<String, BTreeSet<i64>>,
    current: BTreeMap<String, i64>,
    failed: u64,
    last_error: Option<String>,
}

type SharedWritten = Arc<Mutex<Written>>;

/// Edit `products` round-robin at [`EDITS_PER_S`] until `stop`.
async fn edit_loop(
    gateway: Gateway,
    products: Vec<Edited>,
    written: SharedWritten,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / EDITS_PER_S));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    while !stop.is_cancelled() {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let p = &products[(n as usize) % products.len()];
        n += 1;
        let version = written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .current
            .get(&p.id)
            .copied()
            .unwrap_or(p.start_version);
        let description = format!("{} — cdc-latency edit {n}", p.title);
        let r = edit_description(&gateway, &p.id, version, &description).await;
        let mut w = written.lock().unwrap_or_else(|e| e.into_inner());
        match r {
            Ok(v) => {
                w.versions.entry(p.id.clone()).or_default().insert(v);
                w.current.insert(p.id.clone(), v);
            }
            Err(e) => {
                w.failed += 1;
                w.last_error = Some(e.to_string());
            }
        }
    }
}

/// One edit through the admin API (`gateway` logged in as an admin):
/// `PATCH /admin/products/{id}` sets the description, `If-Match` carries
/// `version`, the version the caller last saw. Returns the product's new
/// version, the one to follow through cdc into the index.
pub async fn edit_description(
    gateway: &Gateway,
    product_id: &str,
    version: i64,
    description: &str,
) -> Result<i64, LabError> {
    let body = json!({ "description": description });
    let if_match = format!("\"{version}\"");
    gateway
        .send(
            reqwest::Method::PATCH,
            &format!("/admin/products/{product_id}"),
            Some(&body),
            &[("If-Match", &if_match)],
        )
        .await?
        .body["version"]
        .as_i64()
        .ok_or_else(|| LabError::Failed("PATCH answered without a version".into()))
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

fn report_latency(lab: &Lab, name: &str, samples: &[f64]) -> Option<f64> {
    let s = sorted(samples.to_vec());
    lab.measure(&format!("{name} samples"), s.len() as f64, "");
    for p in [50.0, 95.0, 99.0] {
        if let Some(v) = percentile(&s, p) {
            lab.measure(&format!("{name} p{p:.0}"), v, "ms");
        }
    }
    lab.note(&format!("{name} (ms):"));
    for line in histogram(&s) {
        lab.note(&format!("  {line}"));
    }
    percentile(&s, 95.0)
}

pub async fn script(lab: Lab, target: Target) -> Result<(), LabError> {
    lab.narrate(INTRO);
    let op = target.operator.clone().ok_or_else(|| {
        LabError::Failed(
            "this lab kills and restarts the cdc process, so it needs the stack's state \
             directory: run it with `shopstream lab run cdc-latency`"
                .into(),
        )
    })?;
    let mut gateway = Gateway::new(&target.gateway_url)?;
    let search = SearchDebug::new(&target.search_http_url)?;

    lab.action("check that the gateway, cdc and search answer", async {
        gateway.ready().await?;
        let stack = op.stack();
        for kind in [Kind::Cdc, Kind::Search] {
            stack.check_ready(kind).await.map_err(|e| {
                LabError::NotReady(format!(
                    "{} is not ready ({e}); is the system up? (`shopstream up`)",
                    kind.name()
                ))
            })?;
        }
        Ok((
            (),
            format!(
                "gateway {}, search {}, cdc pid {}",
                gateway.base(),
                target.search_http_url,
                op.stack()
                    .running_pid(Kind::Cdc)
                    .map_or("?".into(), |p| p.to_string())
            ),
        ))
    })
    .await?;

    lab.narrate(
        "Edits go through PATCH /admin/products/{id}, which needs an admin. The lab creates \
         an admin of its own through identity's internal gRPC call EnsureAdmin (operator \
         access, like the stock calls of the checkout-failure lab) and logs in through the \
         gateway.",
    );
    lab.action("create a lab admin and log in", async {
        let email = gateway
            .login_as_new_admin(&target.identity_grpc_url, "cdc-lab")
            .await?;
        Ok(((), email))
    })
    .await?;

    let products: Vec<Edited> = lab
        .action(&format!("pick {PRODUCTS} seeded products"), async {
            let page = gateway
                .get(&format!("/products?limit={PRODUCTS}&sort=name"))
                .await?;
            let items = page["items"].as_array().cloned().unwrap_or_default();
            if items.len() < PRODUCTS {
                return Err(LabError::NotReady(format!(
                    "the catalog has {} products, the lab needs {PRODUCTS}: load the demo \
                     data with `shopstream seed`",
                    items.len()
                )));
            }
            let ps: Vec<Edited> = items
                .iter()
                .map(|p| Edited {
                    id: p["id"].as_str().unwrap_or_default().to_string(),
                    title: p["title"].as_str().unwrap_or_default().to_string(),
                    start_version: p["version"].as_i64().unwrap_or(0),
                })
                .collect();
            let detail = ps
                .iter()
                .map(|p| format!("{:?} v{}", p.title, p.start_version))
                .collect::<Vec<_>>()
                .join(", ");
            Ok((ps, detail))
        })
        .await?;

    lab.narrate(
        "The lab reads product.events with a consumer group of its own, from the start of \
         the topic, and waits until it has caught up, so the receive time of the lab's \
         edits is not inflated by history.",
    );
    let group = format!("lab-{NAME}-{}", uuid::Uuid::new_v4().simple());
    let reader = lab
        .action("start reading product.events", async {
            let r = Reader::start(&target.kafka_brokers, group.clone()).await?;
            Ok((
                r,
                format!("consumer group {group} on {}", target.kafka_brokers),
            ))
        })
        .await?;
    let result = with_reader(&lab, &op, &gateway, &search, &reader, &products).await;
    reader.stop().await;
    result
}

/// Everything after the reader started, phase by phase: wait until the
/// reader and search are through the topic's backlog, edit steadily
/// (phase 1), kill and restart cdc while editing (phase 2), wait until the
/// index equals the catalog, then check the topic, the catalog and search,
/// and report phase 1's latencies.
async fn with_reader(
    lab: &Lab,
    op: &Operator,
    gateway: &Gateway,
    search: &SearchDebug,
    reader: &Reader,
    products: &[Edited],
) -> Result<(), LabError> {
    wait_until_reader_caught_up(lab, reader).await?;
    let tail = topic_tail(reader);
    wait_until_search_caught_up(lab, gateway, search, &tail, products).await?;

    let (mut edits, phase1) = steady_phase(lab, gateway, search, products).await?;
    crash_phase(lab, op).await?;
    let written = edits.stop_editing(lab).await;

    let catalog = wait_until_index_equals_catalog(lab, gateway, search, products).await?;
    let (sightings, public) = edits.stop_polling().await;
    wait_for_reader_to_see(reader, products, &catalog).await;

    check_topic(lab, reader, products, &written);
    check_catalog(lab, products, &written, &catalog);
    check_search(lab, gateway, products, &catalog).await;
    report_phase1_latencies(lab, reader, &phase1, &sightings);
    check_searchable_means_found(lab, &public, &phase1);
    check_quiet_at_rest(lab, op).await;
    Ok(())
}

/// "Searchable" is what a shopper's query finds: each version the index
/// called searchable was asked of `GET /search` at once, and must have been
/// found there at that version or a newer one. Search stamps a version
/// searchable only after a query through the reader that serves `/search`
/// found exactly that version, so this holds by construction, not by timing.
/// Latency is reported for the versions phase 1 wrote (the poller also
/// sees each product's version from before the lab, committed long ago).
fn check_searchable_means_found(
    lab: &Lab,
    public: &PublicAnswers,
    phase1: &BTreeMap<String, BTreeSet<i64>>,
) {
    let samples: Vec<f64> = public
        .commit_to_found_ms
        .iter()
        .filter(|(id, v, _)| phase1.get(id).is_some_and(|vs| vs.contains(v)))
        .map(|(_, _, ms)| *ms)
        .collect();
    report_latency(lab, "commit→found by GET /search", &samples);
    if public.errors > 0 {
        lab.note(&format!(
            "{} GET /search calls failed while checking (not counted)",
            public.errors
        ));
    }
    lab.check(
        "every version search called searchable, GET /search found at once",
        public.stale.is_empty() && public.found > 0,
        "each found at that version or newer",
        if public.stale.is_empty() {
            format!("{} versions, each found", public.found)
        } else {
            format!(
                "{} of {} not found: {}",
                public.stale.len(),
                public.found as usize + public.stale.len(),
                public.stale.join("; ")
            )
        },
    );
}

/// How long the at-rest check counts; consumers report their request
/// counts every 5 s, so the window spans at least two reports.
pub const AT_REST_WINDOW: Duration = Duration::from_secs(12);
/// Quiet time before the at-rest window (one statistics report).
pub const AT_REST_SETTLE: Duration = Duration::from_secs(6);
/// At rest a consumer group heartbeats once a second and asks every 10 s
/// whether it missed a record (the doorbell's safety check, two requests);
/// one that asks more often is polling the broker for records that are not
/// there.
pub const AT_REST_MAX_REQUESTS_PER_S: f64 = 5.0;

/// Requests every service's consumers sent the broker so far, per group
/// (`shopstream_kafka_consumer_requests_total` on each service's `/metrics`;
/// a service that does not answer counts nothing).
async fn consumer_requests(
    http: &reqwest::Client,
    ports: &shopstream_platform::config::Ports,
) -> BTreeMap<String, f64> {
    let mut by_group = BTreeMap::new();
    for kind in Kind::SERVICES {
        let Some((addr, _)) = kind.service_addrs(ports) else {
            continue;
        };
        let Ok(text) = async {
            http.get(format!("http://{addr}/metrics"))
                .send()
                .await?
                .error_for_status()?
                .text()
                .await
        }
        .await
        else {
            continue;
        };
        for line in text
            .lines()
            .filter(|l| l.starts_with("shopstream_kafka_consumer_requests_total{"))
        {
            let group = line
                .split_once("group=\"")
                .and_then(|(_, rest)| rest.split_once('"'))
                .map(|(g, _)| g.to_string());
            let value = line
                .rsplit_once(' ')
                .and_then(|(_, v)| v.parse::<f64>().ok());
            if let (Some(g), Some(v)) = (group, value) {
                *by_group.entry(g).or_insert(0.0) += v;
            }
        }
    }
    by_group
}

/// With the edits over and search caught up, the system is at rest: its
/// consumers should ask the broker next to nothing (the event doorbell
/// pauses an idle consumer). Counted from the consumers' own statistics.
async fn check_quiet_at_rest(lab: &Lab, op: &Operator) {
    lab.narrate(
        "At rest the system should not be busy. An idle consumer pauses its partitions and \
         waits for the event doorbell (a Redis channel on which publishers name a topic), \
         instead of asking the broker for records every few milliseconds. The lab counts \
         the requests every service's consumers sent the broker over a quiet window, from \
         `shopstream_kafka_consumer_requests_total` on their /metrics.",
    );
    let Ok(http) = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
    else {
        return;
    };
    let ports = op.stack().ports();
    // Consumers report their counts every 5 s, so a report taken now may
    // still hold the end of the edits: let one report go by first.
    tokio::time::sleep(AT_REST_SETTLE).await;
    let before = consumer_requests(&http, &ports).await;
    let started = Instant::now();
    tokio::time::sleep(AT_REST_WINDOW).await;
    let after = consumer_requests(&http, &ports).await;
    let secs = started.elapsed().as_secs_f64();
    let rates: Vec<(String, f64)> = after
        .iter()
        .map(|(g, n)| {
            (
                g.clone(),
                (n - before.get(g).copied().unwrap_or(0.0)) / secs,
            )
        })
        .collect();
    let total: f64 = rates.iter().map(|(_, r)| r).sum();
    let busiest = rates
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .cloned()
        .unwrap_or_default();
    lab.measure("consumer groups counted at rest", rates.len() as f64, "");
    lab.measure("broker requests at rest, all consumers", total, "/s");
    lab.check(
        "at rest, no consumer group asks the broker more than 5 times a second",
        !rates.is_empty() && busiest.1 <= AT_REST_MAX_REQUESTS_PER_S,
        format!("≤ {AT_REST_MAX_REQUESTS_PER_S} requests/s per group"),
        if rates.is_empty() {
            "no service reported its consumers' requests".to_string()
        } else {
            format!(
                "{} groups, {total:.1} requests/s in all; the busiest, {}, {:.1}/s",
                rates.len(),
                busiest.0,
                busiest.1
            )
        },
    );
}

async fn wait_until_reader_caught_up(lab: &Lab, reader: &Reader) -> Result<(), LabError> {
    lab.checkpoint(
        "the reader has caught up with product.events",
        CATCH_UP_DEADLINE,
        Duration::from_millis(250),
        || async {
            let s = reader.lock();
            let quiet = s
                .last_read_at
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
            // The seed alone put hundreds of events on the topic: nothing read
            // yet means the reader has not started, not that it caught up.
            let started = s.read > 0;
            Ok(if quiet && started {
                Probe::Ready((), format!("{} records read", s.read))
            } else {
                Probe::Waiting(format!("{} records read", s.read))
            })
        },
    )
    .await
}

/// The products whose records came last on the topic, at the newest
/// version seen: search consumes the same topic, so once it holds these it
/// is through the backlog, and phase 1 measures edits, not the queue ahead
/// of them. (Checking only the chosen products once let phase 1 start with
/// ~1,000 seed records still queued: no edit was seen searchable before the
/// next one replaced it.)
fn topic_tail(reader: &Reader) -> Vec<(String, i64)> {
    let s = reader.lock();
    let mut last: Vec<(i64, &String, i64)> = s
        .by_product
        .iter()
        .filter_map(|(id, seen)| {
            let newest = seen.iter().map(|x| x.version).max()?;
            Some((seen.last()?.received_ms, id, newest))
        })
        .collect();
    last.sort();
    last.iter()
        .rev()
        .take(TAIL_PRODUCTS)
        .map(|(_, id, v)| ((*id).clone(), *v))
        .collect()
}

/// Per product, the catalog's version (from the gateway) and where the index
/// lags it: `(versions, lagging)`, the latter described for a reader.
async fn index_versus_catalog(
    gateway: &Gateway,
    search: &SearchDebug,
    products: &[Edited],
) -> Result<(BTreeMap<String, i64>, Vec<String>), LabError> {
    let mut versions = BTreeMap::new();
    let mut behind = Vec::new();
    for p in products {
        let c = gateway.get(&format!("/products/{}", p.id)).await?["version"]
            .as_i64()
            .unwrap_or(-1);
        let ix = search.indexed(&p.id).await?.map_or(-1, |i| i.version);
        if ix != c {
            behind.push(format!("{}: index v{ix}, catalog v{c}", p.title));
        }
        versions.insert(p.id.clone(), c);
    }
    Ok((versions, behind))
}

async fn wait_until_search_caught_up(
    lab: &Lab,
    gateway: &Gateway,
    search: &SearchDebug,
    tail: &[(String, i64)],
    products: &[Edited],
) -> Result<(), LabError> {
    lab.checkpoint(
        "search has caught up: the topic's newest records and each chosen product are indexed",
        SEARCH_CATCH_UP_DEADLINE,
        Duration::from_millis(500),
        || async {
            let mut behind = Vec::new();
            let mut tail_behind = 0;
            for (id, v) in tail {
                if search.indexed(id).await?.map_or(-1, |i| i.version) < *v {
                    tail_behind += 1;
                }
            }
            if tail_behind > 0 {
                behind.push(format!(
                    "{tail_behind} of the topic's {} newest products not indexed yet",
                    tail.len()
                ));
            }
            behind.extend(index_versus_catalog(gateway, search, products).await?.1);
            Ok(if behind.is_empty() {
                Probe::Ready(
                    (),
                    format!(
                        "the topic's {} newest products and every chosen product are indexed",
                        tail.len()
                    ),
                )
            } else {
                Probe::Waiting(behind.join("; "))
            })
        },
    )
    .await
}

/// The edit loop and the index poller, running from phase 1 until the index
/// has converged; both stop when this is dropped.
struct Edits {
    written: SharedWritten,
    sightings: IndexSightings,
    public: Arc<Mutex<PublicAnswers>>,
    stop_all: CancellationToken,
    stop_edits: CancellationToken,
    editor: tokio::task::JoinHandle<()>,
    poller: tokio::task::JoinHandle<()>,
    _stop_on_drop: tokio_util::sync::DropGuard,
}

impl Edits {
    fn start(gateway: &Gateway, search: &SearchDebug, products: &[Edited]) -> Edits {
        let written: SharedWritten = Arc::default();
        let sightings: IndexSightings = Arc::default();
        let stop_all = CancellationToken::new();
        let ids: Vec<String> = products.iter().map(|p| p.id.clone()).collect();
        let public = PublicCheck::new(gateway, products);
        let answers = public.answers.clone();
        let poller = tokio::spawn(poll_index(
            search.clone(),
            public,
            ids,
            sightings.clone(),
            stop_all.child_token(),
        ));
        let stop_edits = stop_all.child_token();
        let editor = tokio::spawn(edit_loop(
            gateway.clone(),
            products.to_vec(),
            written.clone(),
            stop_edits.clone(),
        ));
        Edits {
            written,
            sightings,
            public: answers,
            _stop_on_drop: stop_all.clone().drop_guard(),
            stop_all,
            stop_edits,
            editor,
            poller,
        }
    }

    fn written(&self) -> std::sync::MutexGuard<'_, Written> {
        self.written.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stop editing; every version written, per product (the poller goes on).
    async fn stop_editing(&mut self, lab: &Lab) -> BTreeMap<String, BTreeSet<i64>> {
        self.stop_edits.cancel();
        let _ = (&mut self.editor).await;
        let (written, failed, last_error) = {
            let w = self.written();
            (w.versions.clone(), w.failed, w.last_error.clone())
        };
        let total: usize = written.values().map(BTreeSet::len).sum();
        lab.note(&format!(
            "{total} edits in all, {failed} failed{}",
            last_error
                .map(|e| format!(" (last: {e})"))
                .unwrap_or_default()
        ));
        written
    }

    /// Stop the index poller; every version it saw searchable, first
    /// sighting, and what the public query said of each.
    async fn stop_polling(&mut self) -> (BTreeMap<(String, i64), Indexed>, PublicAnswers) {
        self.stop_all.cancel();
        let _ = (&mut self.poller).await;
        let sightings = self
            .sightings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let public = self
            .public
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        (sightings, public)
    }
}

/// Phase 1: edit steadily while the index is polled; returns the edits and
/// the versions phase 1 wrote (their latencies are measured without a crash
/// in the way).
async fn steady_phase(
    lab: &Lab,
    gateway: &Gateway,
    search: &SearchDebug,
    products: &[Edited],
) -> Result<(Edits, BTreeMap<String, BTreeSet<i64>>), LabError> {
    lab.narrate(&format!(
        "Phase 1: {EDITS_PER_S} edits/s for {}s, round-robin over {PRODUCTS} products \
         (each edit changes the description and bumps the product's version; If-Match \
         carries the version the lab last wrote). Meanwhile the lab asks search's \
         GET /debug/indexed/{{id}} every {} ms which version it holds and when that \
         version became searchable.",
        STEADY_PHASE.as_secs(),
        INDEX_POLL.as_millis()
    ));
    let edits = Edits::start(gateway, search, products);
    let phase1_started = Instant::now();
    lab.action(&format!("edit for {}s", STEADY_PHASE.as_secs()), async {
        tokio::time::sleep(STEADY_PHASE).await;
        let w = edits.written();
        let n: usize = w.versions.values().map(BTreeSet::len).sum();
        Ok((
            (),
            format!(
                "{n} edits in {:.1}s, {} failed{}",
                phase1_started.elapsed().as_secs_f64(),
                w.failed,
                w.last_error
                    .as_ref()
                    .map(|e| format!(" (last: {e})"))
                    .unwrap_or_default()
            ),
        ))
    })
    .await?;
    let phase1 = edits.written().versions.clone();
    Ok((edits, phase1))
}

/// Phase 2: the edits go on while cdc is SIGKILLed, stays down, and is
/// started again through shopstream's own start path.
async fn crash_phase(lab: &Lab, op: &Operator) -> Result<(), LabError> {
    lab.narrate(&format!(
        "Phase 2: the edits go on. After {}s the lab kills the cdc process with SIGKILL — no \
         chance to flush or to acknowledge anything — keeps editing for {}s with cdc down \
         (the changes wait in Postgres' replication slot), then starts cdc again. It \
         resumes from the last LSN it had acknowledged, so some records may be published \
         twice (at-least-once), but none may be missing.",
        BEFORE_KILL.as_secs(),
        CDC_DOWN.as_secs()
    ));
    tokio::time::sleep(BEFORE_KILL).await;
    let cleanup_op = op.clone();
    lab.fault(
        "SIGKILL the cdc process",
        async {
            let stack = op.stack();
            let pid = stack.running_pid(Kind::Cdc);
            stack.kill_component(Kind::Cdc).await;
            Ok(format!(
                "killed pid {} while edits continue",
                pid.map_or("?".into(), |p| p.to_string())
            ))
        },
        "make sure cdc is running",
        move || async move {
            cleanup_op
                .stack()
                .start_component(Kind::Cdc)
                .await
                .map_err(|e| LabError::Failed(format!("starting cdc: {e}")))?;
            Ok("cdc is running".into())
        },
    )
    .await?;
    tokio::time::sleep(CDC_DOWN).await;
    lab.action("restart cdc (shopstream's own start path)", async {
        let started = Instant::now();
        let stack = op.stack();
        stack
            .start_component(Kind::Cdc)
            .await
            .map_err(|e| LabError::Failed(format!("starting cdc: {e}")))?;
        lab.measure(
            "cdc restart to ready",
            started.elapsed().as_secs_f64() * 1000.0,
            "ms",
        );
        Ok((
            (),
            format!(
                "pid {} ready in {:.1}s",
                stack
                    .running_pid(Kind::Cdc)
                    .map_or("?".into(), |p| p.to_string()),
                started.elapsed().as_secs_f64()
            ),
        ))
    })
    .await?;
    tokio::time::sleep(AFTER_RESTART).await;
    Ok(())
}

/// Waits until every edited product's indexed version is the catalog's;
/// returns the catalog's versions.
async fn wait_until_index_equals_catalog(
    lab: &Lab,
    gateway: &Gateway,
    search: &SearchDebug,
    products: &[Edited],
) -> Result<BTreeMap<String, i64>, LabError> {
    lab.checkpoint(
        "every edited product's indexed version equals the catalog's",
        CONVERGE_DEADLINE,
        Duration::from_millis(250),
        || async {
            let (versions, behind) = index_versus_catalog(gateway, search, products).await?;
            Ok(if behind.is_empty() {
                let d = versions
                    .values()
                    .map(|v| format!("v{v}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                Probe::Ready(versions, format!("index = catalog ({d})"))
            } else {
                Probe::Waiting(behind.join("; "))
            })
        },
    )
    .await
}

/// The reader may trail the index by a poll: give it up to 10 s to see the
/// catalog's last versions.
async fn wait_for_reader_to_see(
    reader: &Reader,
    products: &[Edited],
    catalog: &BTreeMap<String, i64>,
) {
    let reader_deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < reader_deadline
        && products.iter().any(|p| {
            reader
                .seen(&p.id)
                .iter()
                .map(|s| s.version)
                .max()
                .unwrap_or(-1)
                < catalog[&p.id]
        })
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// From the topic: every version written arrived, none out of order.
fn check_topic(
    lab: &Lab,
    reader: &Reader,
    products: &[Edited],
    written: &BTreeMap<String, BTreeSet<i64>>,
) {
    lab.narrate(
        "Now the checks. For each product: every version the lab wrote must have arrived \
         on product.events (lost = 0); a version arriving after a higher one for the first \
         time would be out of order (must be 0); a version arriving again is a duplicate, \
         allowed by at-least-once and harmless to the index, which never lets an older or \
         equal version overwrite a newer one.",
    );
    let total: usize = written.values().map(BTreeSet::len).sum();
    let mut lost = Vec::new();
    let mut out_of_order = Vec::new();
    let mut duplicates = 0;
    for p in products {
        let arrivals: Vec<i64> = reader
            .seen(&p.id)
            .iter()
            .map(|s| s.version)
            .filter(|v| *v > p.start_version)
            .collect();
        let c = check_order(written.get(&p.id).unwrap_or(&BTreeSet::new()), &arrivals);
        lost.extend(c.lost.iter().map(|v| format!("{} v{v}", p.title)));
        out_of_order.extend(c.out_of_order.iter().map(|v| format!("{} v{v}", p.title)));
        duplicates += c.duplicates;
    }
    lab.measure("edits written", total as f64, "");
    lab.measure("records redelivered after the kill", duplicates as f64, "");
    lab.check(
        "no edit was lost on product.events",
        lost.is_empty() && total > 0,
        format!("all {total} versions arrived"),
        if lost.is_empty() {
            format!("all {total} arrived")
        } else {
            format!("{} missing: {}", lost.len(), lost.join(", "))
        },
    );
    lab.check(
        "no version arrived out of order",
        out_of_order.is_empty(),
        "0 out of order",
        if out_of_order.is_empty() {
            "0 out of order".to_string()
        } else {
            format!("{}: {}", out_of_order.len(), out_of_order.join(", "))
        },
    );
}

/// The catalog ends at the lab's last edit of each product.
fn check_catalog(
    lab: &Lab,
    products: &[Edited],
    written: &BTreeMap<String, BTreeSet<i64>>,
    catalog: &BTreeMap<String, i64>,
) {
    let final_written: BTreeMap<String, i64> = written
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), *v.last()?)))
        .collect();
    let lab_is_last = products
        .iter()
        .all(|p| final_written.get(&p.id) == catalog.get(&p.id));
    lab.check(
        "the catalog's final versions are the lab's last edits",
        lab_is_last,
        format!("{final_written:?}"),
        format!("{catalog:?}"),
    );
}

/// Through the gateway, as a shopper would: `GET /search` finds each product
/// at the catalog's version.
async fn check_search(
    lab: &Lab,
    gateway: &Gateway,
    products: &[Edited],
    catalog: &BTreeMap<String, i64>,
) {
    // The index reports a version searchable when its writer committed it;
    // the reader behind `/search` reloads a moment later (more so under
    // load), so the shopper's view gets until the convergence deadline.
    let deadline = tokio::time::Instant::now() + CONVERGE_DEADLINE;
    let via_search = loop {
        let mut via_search = Vec::new();
        for p in products {
            let url = format!("/search?q={}&limit=100", url_escape(&search_query(p)));
            let found = gateway
                .get(&url)
                .await
                .ok()
                .and_then(|b| hit_version(&b, &p.id));
            via_search.push((p.title.clone(), found, catalog[&p.id]));
        }
        let converged = via_search.iter().all(|(_, f, c)| *f == Some(*c));
        if converged || tokio::time::Instant::now() >= deadline {
            break via_search;
        }
        tokio::time::sleep(INDEX_POLL * 5).await;
    };
    lab.check(
        "GET /search finds each product at the catalog's version",
        via_search.iter().all(|(_, f, c)| *f == Some(*c)),
        "each at its catalog version",
        via_search
            .iter()
            .map(|(t, f, c)| {
                format!(
                    "{t}: {} (catalog v{c})",
                    f.map_or("not found".into(), |v| format!("v{v}"))
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
    );
}

/// Latencies of the phase-1 edits, measured and reported (not a pass/fail
/// check: they depend on the machine and what else runs on it; correctness
/// does not).
fn report_phase1_latencies(
    lab: &Lab,
    reader: &Reader,
    phase1: &BTreeMap<String, BTreeSet<i64>>,
    sightings: &BTreeMap<(String, i64), Indexed>,
) {
    lab.narrate(
        "Latencies of the phase-1 edits (no crash in the way). commit→Kafka: the lab's \
         receive time minus cdc-commit-ts-ms (so it includes the lab consumer's poll); \
         Kafka→indexed: when search made the version searchable minus the lab's receive \
         time; commit→searchable: search's own commit_to_searchable_ms. Every version is \
         timed by one clock (this machine's).",
    );
    let (mut to_kafka, mut to_index, mut to_searchable) = (Vec::new(), Vec::new(), Vec::new());
    for (id, versions) in phase1 {
        let arrivals = reader.seen(id);
        for v in versions {
            let first = arrivals.iter().find(|s| s.version == *v);
            if let Some(Seen {
                commit_ts_ms: Some(c),
                received_ms,
                ..
            }) = first
            {
                to_kafka.push((received_ms - c) as f64);
            }
            if let Some(ix) = sightings.get(&(id.clone(), *v)) {
                if let (Some(s), Some(f)) = (ix.searchable_ts_ms, first) {
                    to_index.push((s - f.received_ms).max(0) as f64);
                }
                if let Some(cs) = ix.commit_to_searchable_ms {
                    to_searchable.push(cs as f64);
                }
            }
        }
    }
    report_latency(lab, "commit→kafka", &to_kafka);
    report_latency(lab, "kafka→indexed", &to_index);
    // Search indexes the catalog's *current* version, so when it lags behind
    // the edit rate the intermediate versions are never searchable and yield
    // no samples; that is reported too.
    let p95 = report_latency(lab, "commit→searchable", &to_searchable);
    if p95.is_none() {
        lab.note(
            "No phase-1 version was seen searchable before a newer one replaced it: search \
             lagged behind the edit rate on this machine (it indexes the catalog's current \
             version, so intermediate versions are skipped, never reordered).",
        );
    }
}

/// Percent-encode a query value (letters, digits and `-._~` stay).
pub fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_check_separates_lost_duplicates_and_reordering() {
        let written: BTreeSet<i64> = [2, 3, 4, 5].into();
        let c = check_order(&written, &[2, 3, 3, 2, 5, 4]);
        assert_eq!(c.lost, Vec::<i64>::new());
        assert_eq!(c.duplicates, 2);
        assert_eq!(c.out_of_order, vec![4]);
        let c = check_order(&written, &[2, 3, 5]);
        assert_eq!(c.lost, vec![4]);
        assert!(c.out_of_order.is_empty());
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 95.0), Some(95.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(
            histogram(&[1.0, 30.0, 30.0, 9_000.0]).len(),
            HISTOGRAM_BOUNDS_MS.len() + 1
        );
    }

    #[test]
    fn product_version_reads_outbox_payloads_as_object_or_string() {
        let rec = json!({"op": "c", "after": {"aggregate_id": "p-1",
            "payload": "{\"product_id\":\"p-1\",\"version\":7}"}});
        assert_eq!(
            product_version(&serde_json::to_vec(&rec).unwrap()),
            Some(("p-1".into(), 7))
        );
        let rec = json!({"op": "c", "after": {"aggregate_id": "p-2", "payload": {"version": "3"}}});
        assert_eq!(
            product_version(&serde_json::to_vec(&rec).unwrap()),
            Some(("p-2".into(), 3))
        );
        assert_eq!(product_version(b"{}"), None);
        assert_eq!(url_escape("a b&c"), "a%20b%26c");
    }
}
