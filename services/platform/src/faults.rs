//! The fault catalog and its flag store: named faults (and the operator's
//! feature toggles) that a person, a lab or a scenario switches on at run
//! time, without restarting anything.
//!
//! The store is one Redis hash, [`STORE_KEY`]: a field per active fault, its
//! value an [`Active`] as JSON. Every service reads it into a process-wide
//! view that the code where a fault acts reads with [`hits`] — a lock and a
//! map lookup, no I/O. Each write to the store is announced on the pub/sub
//! channel [`CHANGED_CHANNEL`]; every service reads the store again when it
//! hears one (a change takes effect at once) and every [`SAFETY_POLL`] in
//! case an announcement was lost, or every [`POLL_EVERY`] while it is not
//! subscribed (a change takes effect within a second). When the store is
//! unreachable (Redis down: itself one of the faults) the view keeps the
//! last values it read. An expiry needs no read: [`hits`], [`snapshot`] and
//! so `/metrics` leave out a fault whose time is up.
//!
//! Where each fault acts:
//! - [`Effect::RequestLatency`] and [`Effect::RequestErrors`]: the service
//!   kit's HTTP and gRPC layers of the component they name;
//! - [`Effect::ClockSkew`]: [`crate::clock::SystemClock`] in the component's process;
//! - [`Effect::MemoryHog`], [`Effect::CpuHog`]: a task of the service kit;
//! - [`Effect::Local`]: one place in the named component's own code (grep
//!   for the fault's name);
//! - [`Effect::Outage`]: not in any service: the driver (`shopstream fault
//!   set`, a scenario) stops the backend for the window and starts it again.

use std::{
    collections::BTreeMap,
    sync::{Arc, OnceLock, RwLock},
    time::Duration,
};

use serde::{Deserialize, Serialize};

/// The Redis hash holding the active faults.
pub const STORE_KEY: &str = "shopstream:faults";
/// How often each service reads the store while it is not subscribed to
/// [`CHANGED_CHANNEL`] (and how often in-process watchers look at the view).
pub const POLL_EVERY: Duration = Duration::from_millis(500);
/// The pub/sub channel on which every write to the store is announced.
pub const CHANGED_CHANNEL: &str = "shopstream:faults:changed";
/// How often a subscribed service reads the store anyway, in case an
/// announcement was lost (a writer that could not publish).
pub const SAFETY_POLL: Duration = Duration::from_secs(5);
/// The subscription pings Redis this often (an answer slower than
/// [`crate::cache::REDIS_TIMEOUT`] ends it).
const LISTEN_PING: Duration = Duration::from_secs(5);
/// The longest `--for` a fault may be set for.
pub const MAX_FOR: Duration = Duration::from_secs(3_600);
/// The most memory `memory-hog` may take.
pub const MAX_HOG_MIB: i64 = 4_096;

/// How a fault's value is read and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// On or off.
    None,
    /// 0–100.
    Percent,
    /// Milliseconds (may be negative where the fault says so).
    Millis,
    /// Seconds.
    Seconds,
    /// Mebibytes.
    Mebibytes,
}

impl Unit {
    pub fn suffix(self) -> &'static str {
        match self {
            Unit::None => "",
            Unit::Percent => "%",
            Unit::Millis => "ms",
            Unit::Seconds => "s",
            Unit::Mebibytes => "MiB",
        }
    }
}

/// Where a fault takes effect (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    RequestLatency,
    RequestErrors,
    ClockSkew,
    MemoryHog,
    CpuHog,
    Local,
    Outage,
    /// An operator's feature toggle, not a failure.
    Toggle,
}

/// One entry of the catalog.
#[derive(Debug, Clone, Serialize)]
pub struct FaultSpec {
    pub name: &'static str,
    /// The component it hits by default (a service, or a backend).
    pub component: &'static str,
    /// Whether `--target` may aim it at another service.
    pub targetable: bool,
    pub unit: Unit,
    /// The value when none is given (`None` for on/off faults).
    pub default_value: Option<i64>,
    /// Bounds of the value, inclusive.
    pub min: i64,
    pub max: i64,
    pub effect: Effect,
    pub summary: &'static str,
}

impl FaultSpec {
    /// Its runbook, relative to the repository root.
    pub fn runbook(&self) -> String {
        format!("docs/runbooks/{}.md", self.name)
    }

    /// The value as a person reads it: `30%`, `500ms`, `on`.
    pub fn show_value(&self, v: Option<i64>) -> String {
        match v {
            Some(v) => format!("{v}{}", self.unit.suffix()),
            None => "on".into(),
        }
    }

    /// Read a value given on the command line: a number with or without this
    /// fault's unit (`30`, `30%`, `1500ms`, `2s` for a millisecond fault).
    pub fn parse_value(&self, raw: &str) -> Result<i64, String> {
        let s = raw.trim();
        let bad = || {
            format!(
                "{}: value {raw:?} is not a number of {} between {} and {}",
                self.name,
                unit_name(self.unit),
                self.min,
                self.max
            )
        };
        if self.unit == Unit::None {
            return Err(format!("{} takes no value", self.name));
        }
        let (num, mult) = match self.unit {
            Unit::Millis => {
                if let Some(n) = s.strip_suffix("ms") {
                    (n, 1)
                } else if let Some(n) = s.strip_suffix('s') {
                    (n, 1_000)
                } else {
                    (s, 1)
                }
            }
            Unit::Seconds => {
                if let Some(n) = s.strip_suffix("ms") {
                    // Whole seconds only.
                    let ms: i64 = n.trim().parse().map_err(|_| bad())?;
                    if ms % 1_000 != 0 {
                        return Err(bad());
                    }
                    (n, 0)
                } else if let Some(n) = s.strip_suffix('m') {
                    (n, 60)
                } else {
                    (s.strip_suffix('s').unwrap_or(s), 1)
                }
            }
            Unit::Percent => (s.strip_suffix('%').unwrap_or(s), 1),
            Unit::Mebibytes => (s.strip_suffix("MiB").unwrap_or(s), 1),
            Unit::None => unreachable!("handled above"),
        };
        let n: i64 = num.trim().parse().map_err(|_| bad())?;
        let v = if mult == 0 { n / 1_000 } else { n * mult };
        if v < self.min || v > self.max {
            return Err(bad());
        }
        Ok(v)
    }

    /// The [`Active`] record for `fault set NAME [--value V] [--target T] [--for S]`.
    pub fn activate(
        &self,
        value: Option<&str>,
        target: Option<&str>,
        for_: Option<Duration>,
        now_ms: i64,
    ) -> Result<Active, String> {
        let value = match value {
            Some(v) => Some(self.parse_value(v)?),
            None => self.default_value,
        };
        let target = match target {
            None => self.component.to_string(),
            Some(t) if t == self.component => t.to_string(),
            Some(_) if !self.targetable => {
                return Err(format!(
                    "{} always hits {}; it takes no --target",
                    self.name, self.component
                ));
            }
            Some(t) if crate::config::SERVICE_NAMES.contains(&t) => t.to_string(),
            Some(t) => {
                return Err(format!(
                    "--target {t:?} is not a service (one of {})",
                    crate::config::SERVICE_NAMES.join(", ")
                ));
            }
        };
        if let Some(d) = for_
            && (d.is_zero() || d > MAX_FOR)
        {
            return Err(format!(
                "--for must be between 1 s and {} s",
                MAX_FOR.as_secs()
            ));
        }
        if self.effect == Effect::Outage && for_.is_none() {
            return Err(format!(
                "{} stops a backend: give --for SECONDS so it comes back",
                self.name
            ));
        }
        Ok(Active {
            name: self.name.to_string(),
            value,
            target,
            set_at_ms: now_ms,
            until_ms: for_.map(|d| now_ms + d.as_millis() as i64),
        })
    }
}

fn unit_name(u: Unit) -> &'static str {
    match u {
        Unit::None => "nothing",
        Unit::Percent => "percent",
        Unit::Millis => "milliseconds",
        Unit::Seconds => "seconds",
        Unit::Mebibytes => "MiB",
    }
}

const fn f(
    name: &'static str,
    component: &'static str,
    unit: Unit,
    default_value: Option<i64>,
    (min, max): (i64, i64),
    effect: Effect,
    summary: &'static str,
) -> FaultSpec {
    FaultSpec {
        name,
        component,
        targetable: false,
        unit,
        default_value,
        min,
        max,
        effect,
        summary,
    }
}

const fn targetable(mut s: FaultSpec) -> FaultSpec {
    s.targetable = true;
    s
}

const ON: (i64, i64) = (0, 0);
const PCT: (i64, i64) = (0, 100);
const MS: (i64, i64) = (1, 60_000);

/// Every named fault and toggle, in the order `fault list` prints them.
pub const CATALOG: &[FaultSpec] = &[
    f(
        "payment-decline-rate",
        "stripe-sim",
        Unit::Percent,
        Some(30),
        PCT,
        Effect::Local,
        "the provider declines this share of card confirmations (card_declined)",
    ),
    f(
        "payment-provider-unreachable",
        "payments",
        Unit::None,
        None,
        ON,
        Effect::Local,
        "payments cannot reach the provider: every call fails as a refused connection",
    ),
    f(
        "capture-lost-after-effect",
        "stripe-sim",
        Unit::None,
        None,
        ON,
        Effect::Local,
        "every capture takes the money, then answers 500 (the effect happened, the answer was lost)",
    ),
    f(
        "webhook-drop",
        "stripe-sim",
        Unit::None,
        None,
        ON,
        Effect::Local,
        "the provider delivers no webhooks",
    ),
    f(
        "webhook-duplicate",
        "stripe-sim",
        Unit::None,
        None,
        ON,
        Effect::Local,
        "the provider delivers every webhook twice",
    ),
    f(
        "webhook-delay",
        "stripe-sim",
        Unit::Millis,
        Some(5_000),
        MS,
        Effect::Local,
        "every webhook delivery waits this long",
    ),
    f(
        "catalog-slow",
        "catalog",
        Unit::Millis,
        Some(500),
        MS,
        Effect::RequestLatency,
        "every catalog request (HTTP and gRPC) waits this long first",
    ),
    f(
        "catalog-errors",
        "catalog",
        Unit::Percent,
        Some(50),
        PCT,
        Effect::RequestErrors,
        "this share of catalog requests fail at once (503 / UNAVAILABLE)",
    ),
    f(
        "inventory-lock-contention",
        "inventory",
        Unit::Millis,
        Some(50),
        (1, 5_000),
        Effect::Local,
        "each reservation holds its stock rows locked this much longer",
    ),
    f(
        "reservation-ttl-short",
        "inventory",
        Unit::Seconds,
        Some(5),
        (1, 3_600),
        Effect::Local,
        "new reservations expire after this many seconds instead of the configured TTL",
    ),
    f(
        "cdc-paused",
        "cdc",
        Unit::None,
        None,
        ON,
        Effect::Local,
        "cdc stops reading the catalog's WAL (the slot retains it); edits stop reaching product.events",
    ),
    f(
        "search-indexing-stalled",
        "search",
        Unit::None,
        None,
        ON,
        Effect::Local,
        "search's consumer stops applying product events; the index goes stale",
    ),
    f(
        "broker-slow",
        "kafka",
        Unit::Millis,
        Some(200),
        (1, 10_000),
        Effect::Local,
        "every publish and every fetch of every service waits this long",
    ),
    targetable(f(
        "consumer-crash-loop",
        "search",
        Unit::Seconds,
        Some(5),
        (1, 600),
        Effect::Local,
        "the consumer of the target service fails every this many seconds and restarts",
    )),
    f(
        "redis-unavailable",
        "redis",
        Unit::None,
        None,
        ON,
        Effect::Outage,
        "Redis is stopped for the window, then started again",
    ),
    f(
        "temporal-worker-paused",
        "orders",
        Unit::None,
        None,
        ON,
        Effect::Local,
        "orders' checkout activities wait instead of running; sagas stall and resume when cleared",
    ),
    f(
        "email-provider-failing",
        "mail-sim",
        Unit::Percent,
        Some(100),
        PCT,
        Effect::Local,
        "the e-mail provider refuses this share of messages with a permanent 503 (notifications dead-letters them)",
    ),
    f(
        "media-thumbnail-failing",
        "media",
        Unit::None,
        None,
        ON,
        Effect::Local,
        "every thumbnail attempt fails; an asset that exhausts its attempts ends failed",
    ),
    f(
        "feed-cache-flush",
        "feed",
        Unit::None,
        None,
        ON,
        Effect::Local,
        "feed drops every cached slice in Redis once (each time it is set): a cold cache",
    ),
    targetable(f(
        "clock-skew",
        "orders",
        Unit::Millis,
        Some(120_000),
        (-86_400_000, 86_400_000),
        Effect::ClockSkew,
        "the target service's clock runs this far ahead (negative: behind)",
    )),
    targetable(f(
        "memory-hog",
        "catalog",
        Unit::Mebibytes,
        Some(256),
        (1, MAX_HOG_MIB),
        Effect::MemoryHog,
        "the target service holds this much more memory, touched",
    )),
    targetable(f(
        "cpu-hog",
        "search",
        Unit::Percent,
        Some(80),
        (1, 100),
        Effect::CpuHog,
        "the target service burns this share of one core on a thread of its own",
    )),
    f(
        "checkout-paused",
        "gateway",
        Unit::None,
        None,
        ON,
        Effect::Toggle,
        "toggle: the gateway refuses new orders with 503 and a message (an operator's kill switch)",
    ),
];

/// The catalog entry named `name`.
pub fn spec(name: &str) -> Option<&'static FaultSpec> {
    CATALOG.iter().find(|s| s.name == name)
}

/// One fault as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Active {
    pub name: String,
    /// In the catalog entry's unit; `None` for on/off faults.
    pub value: Option<i64>,
    /// The component it hits.
    pub target: String,
    pub set_at_ms: i64,
    /// When it clears by itself; `None`: until cleared.
    pub until_ms: Option<i64>,
}

impl Active {
    pub fn expired(&self, now_ms: i64) -> bool {
        self.until_ms.is_some_and(|u| now_ms >= u)
    }
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

// ---- the process's view ----

type View = Arc<BTreeMap<String, Active>>;

fn view() -> &'static RwLock<View> {
    static VIEW: OnceLock<RwLock<View>> = OnceLock::new();
    VIEW.get_or_init(|| RwLock::new(Arc::new(BTreeMap::new())))
}

/// Replace the process's view (the poller does; tests and the simulator may).
pub fn set_view(active: impl IntoIterator<Item = Active>) {
    let map: BTreeMap<String, Active> = active.into_iter().map(|a| (a.name.clone(), a)).collect();
    if let Ok(mut v) = view().write() {
        *v = Arc::new(map);
    }
}

/// Every fault active in this process's view (expired ones left out).
pub fn snapshot() -> Vec<Active> {
    let now = wall_ms();
    let v = view().read().map(|v| v.clone()).unwrap_or_default();
    v.values().filter(|a| !a.expired(now)).cloned().collect()
}

/// The fault `name` if it is active and hits `component`.
pub fn hits(name: &str, component: &str) -> Option<Active> {
    let v = view().read().ok()?;
    let a = v.get(name)?;
    (a.target == component && !a.expired(wall_ms())).then(|| a.clone())
}

/// The value of fault `name` where it hits `component` (its default if it
/// is on/off); `None` when it is not active there.
pub fn value(name: &str, component: &str) -> Option<i64> {
    let a = hits(name, component)?;
    Some(a.value.unwrap_or(1))
}

/// For a percent fault: whether this one call is hit (a fresh random draw).
pub fn roll(name: &str, component: &str) -> bool {
    match value(name, component) {
        Some(p) if p >= 100 => true,
        Some(p) if p > 0 => rand::random_range(0..100) < p,
        _ => false,
    }
}

/// For a one-shot fault (`feed-cache-flush`): true once per time it is set.
/// `seen` remembers the last `set_at_ms` acted on.
pub fn once(name: &str, component: &str, seen: &std::sync::atomic::AtomicI64) -> bool {
    use std::sync::atomic::Ordering;
    let Some(a) = hits(name, component) else {
        return false;
    };
    seen.swap(a.set_at_ms, Ordering::SeqCst) != a.set_at_ms
}

/// The clock skew, in ms, of this process's service (0 when none).
pub fn skew_ms() -> i64 {
    match process_service() {
        Some(me) => value("clock-skew", me).unwrap_or(0),
        None => 0,
    }
}

static PROCESS_SERVICE: OnceLock<String> = OnceLock::new();

/// The service this process runs (set by the first [`start`]; a test process
/// that runs several services has none, so process-wide faults such as
/// clock skew hit only the first).
pub fn process_service() -> Option<&'static str> {
    PROCESS_SERVICE.get().map(|s| s.as_str())
}

// ---- the store ----

/// The flag store: read and written by the CLI, scenarios and tests.
#[derive(Clone)]
pub struct Store {
    redis: redis::aio::ConnectionManager,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("faults::Store")
    }
}

impl Store {
    pub async fn connect(redis_url: &str) -> Result<Store, String> {
        let redis = crate::cache::connect(redis_url)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Store { redis })
    }

    /// Every record in the store, expired ones included (the poller and
    /// `show` filter them).
    pub async fn list(&self) -> Result<Vec<Active>, String> {
        let mut r = self.redis.clone();
        let all: BTreeMap<String, String> = redis::cmd("HGETALL")
            .arg(STORE_KEY)
            .query_async(&mut r)
            .await
            .map_err(|e| e.to_string())?;
        Ok(all
            .values()
            .filter_map(|v| serde_json::from_str(v).ok())
            .collect())
    }

    /// The active (unexpired) faults; expired records are removed.
    pub async fn active(&self) -> Result<Vec<Active>, String> {
        let now = wall_ms();
        let (live, dead): (Vec<_>, Vec<_>) = self
            .list()
            .await?
            .into_iter()
            .partition(|a| !a.expired(now));
        for a in dead {
            let _ = self.clear(&a.name).await;
        }
        Ok(live)
    }

    pub async fn set(&self, a: &Active) -> Result<(), String> {
        let mut r = self.redis.clone();
        let json = serde_json::to_string(a).map_err(|e| e.to_string())?;
        redis::cmd("HSET")
            .arg(STORE_KEY)
            .arg(&a.name)
            .arg(json)
            .query_async::<i64>(&mut r)
            .await
            .map_err(|e| e.to_string())?;
        self.announce(&a.name).await;
        Ok(())
    }

    /// Tell every subscribed service that the store changed. A lost
    /// announcement only delays the change to the next [`SAFETY_POLL`].
    async fn announce(&self, name: &str) {
        let mut r = self.redis.clone();
        let sent = redis::cmd("PUBLISH")
            .arg(CHANGED_CHANNEL)
            .arg(name)
            .query_async::<i64>(&mut r)
            .await;
        if let Err(e) = sent {
            tracing::warn!(error = %e, fault = name, "announcing a fault change failed; services see it within their safety poll");
        }
    }

    /// Clear one fault; whether it was set.
    pub async fn clear(&self, name: &str) -> Result<bool, String> {
        let mut r = self.redis.clone();
        let removed = redis::cmd("HDEL")
            .arg(STORE_KEY)
            .arg(name)
            .query_async::<i64>(&mut r)
            .await
            .map(|n| n > 0)
            .map_err(|e| e.to_string())?;
        if removed {
            self.announce(name).await;
        }
        Ok(removed)
    }

    /// Clear every fault; how many were set.
    pub async fn clear_all(&self) -> Result<usize, String> {
        let n = self.list().await?.len();
        let mut r = self.redis.clone();
        redis::cmd("DEL")
            .arg(STORE_KEY)
            .query_async::<i64>(&mut r)
            .await
            .map_err(|e| e.to_string())?;
        self.announce("*").await;
        Ok(n)
    }
}

/// Start this process's poller (once per process; later calls do nothing):
/// read the store into the view when [`CHANGED_CHANNEL`] announces a change
/// and every [`SAFETY_POLL`], or every [`POLL_EVERY`] while not subscribed,
/// keeping the last view while the store is unreachable. `service` names
/// the process for process-wide faults.
pub fn start(redis_url: &str, service: &str) {
    static STARTED: OnceLock<()> = OnceLock::new();
    if STARTED.set(()).is_err() {
        return;
    }
    let _ = PROCESS_SERVICE.set(service.to_string());
    let url = redis_url.to_string();
    let changed = Arc::new(tokio::sync::Notify::new());
    let subscribed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Ok(client) = redis::Client::open(url.as_str()) {
        tokio::spawn(listen(client, changed.clone(), subscribed.clone()));
    }
    tokio::spawn(async move {
        let mut store: Option<Store> = None;
        let mut warned = false;
        loop {
            if store.is_none() {
                store = Store::connect(&url).await.ok();
            }
            if let Some(s) = &store {
                match s.list().await {
                    Ok(all) => {
                        let now = wall_ms();
                        let changed = {
                            let cur = view().read().map(|v| v.clone()).unwrap_or_default();
                            let next: BTreeMap<_, _> = all
                                .iter()
                                .filter(|a| !a.expired(now))
                                .map(|a| (a.name.clone(), a.clone()))
                                .collect();
                            (*cur != next).then_some(next)
                        };
                        if let Some(next) = changed {
                            let names: Vec<&str> = next.keys().map(|k| k.as_str()).collect();
                            tracing::info!(faults = ?names, "active faults changed");
                            set_view(next.into_values());
                        }
                        warned = false;
                    }
                    Err(e) => {
                        if !warned {
                            tracing::warn!(error = %e, "fault store unreachable; keeping the last known faults");
                            warned = true;
                        }
                    }
                }
            }
            let wait = if subscribed.load(std::sync::atomic::Ordering::Acquire) {
                SAFETY_POLL
            } else {
                POLL_EVERY
            };
            tokio::select! {
                _ = changed.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    });
}

/// Hears [`CHANGED_CHANNEL`] and wakes the poller for every announcement,
/// and on every (re)subscription (what was announced meanwhile is unknown);
/// `subscribed` says whether the poller may wait for announcements.
async fn listen(
    client: redis::Client,
    changed: Arc<tokio::sync::Notify>,
    subscribed: Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::Ordering;
    loop {
        let Err(e) = crate::cache::listen(
            &client,
            CHANGED_CHANNEL,
            LISTEN_PING,
            || {
                subscribed.store(true, Ordering::Release);
                changed.notify_one();
            },
            |_| changed.notify_one(),
        )
        .await;
        tracing::debug!(error = %e, "fault store: not subscribed to change announcements");
        // Not subscribed: the poller reads every POLL_EVERY until we are again.
        if subscribed.swap(false, Ordering::AcqRel) {
            changed.notify_one();
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

// ---- effects the service kit applies ----

/// What a request to `component` should suffer now: a delay first, then
/// maybe a failure.
pub fn request_fault(component: &str) -> (Option<Duration>, bool) {
    let delay = CATALOG
        .iter()
        .filter(|s| s.effect == Effect::RequestLatency)
        .filter_map(|s| value(s.name, component))
        .max()
        .map(|ms| Duration::from_millis(ms.max(0) as u64));
    let fail = CATALOG
        .iter()
        .filter(|s| s.effect == Effect::RequestErrors)
        .any(|s| roll(s.name, component));
    (delay, fail)
}

/// The hogs of `component`: holds memory and burns CPU while `memory-hog` /
/// `cpu-hog` hit it, checking every [`POLL_EVERY`]. Runs until the process ends.
pub async fn run_hogs(component: String) {
    let mut held: Vec<Vec<u8>> = Vec::new();
    let burning = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let mut burner: Option<std::thread::JoinHandle<()>> = None;
    loop {
        let want_mib = value("memory-hog", &component)
            .unwrap_or(0)
            .clamp(0, MAX_HOG_MIB) as usize;
        if held.len() != want_mib {
            held.truncate(want_mib);
            held.shrink_to_fit();
            while held.len() < want_mib {
                // Touched, so it is resident (PSS/RSS show it), not just reserved.
                held.push(vec![0xA5u8; 1 << 20]);
            }
            tracing::info!(mib = want_mib, "memory hog");
        }
        let pct = value("cpu-hog", &component).unwrap_or(0).clamp(0, 100);
        burning.store(pct, std::sync::atomic::Ordering::Relaxed);
        if pct > 0 && burner.as_ref().is_none_or(|h| h.is_finished()) {
            let b = burning.clone();
            burner = std::thread::Builder::new()
                .name("cpu-hog".into())
                .spawn(move || burn(&b))
                .ok();
            tracing::info!(percent = pct, "cpu hog");
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Burn `share`% of a core in 10 ms slices until the share drops to 0.
fn burn(share: &std::sync::atomic::AtomicI64) {
    use std::time::Instant;
    const SLICE: Duration = Duration::from_millis(10);
    loop {
        let pct = share.load(std::sync::atomic::Ordering::Relaxed);
        if pct <= 0 {
            return;
        }
        let busy = SLICE.mul_f64(pct as f64 / 100.0);
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed() < busy {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        std::thread::sleep(SLICE.saturating_sub(busy));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_names_are_unique_kebab_case_and_at_least_twenty_faults() {
        let mut names: Vec<_> = CATALOG.iter().map(|s| s.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), CATALOG.len());
        assert!(
            CATALOG
                .iter()
                .filter(|s| s.effect != Effect::Toggle)
                .count()
                >= 20
        );
        for s in CATALOG {
            assert!(
                s.name.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
                "{}",
                s.name
            );
            if let Some(d) = s.default_value {
                assert!(d >= s.min && d <= s.max, "{} default out of bounds", s.name);
            }
            assert_eq!(
                s.unit == Unit::None,
                s.default_value.is_none(),
                "{}",
                s.name
            );
        }
    }

    #[test]
    fn values_parse_with_or_without_units_and_are_bounded() {
        let slow = spec("catalog-slow").unwrap();
        assert_eq!(slow.parse_value("300"), Ok(300));
        assert_eq!(slow.parse_value("300ms"), Ok(300));
        assert_eq!(slow.parse_value("2s"), Ok(2_000));
        assert!(slow.parse_value("0").is_err());
        assert!(slow.parse_value("fast").is_err());
        let rate = spec("payment-decline-rate").unwrap();
        assert_eq!(rate.parse_value("30%"), Ok(30));
        assert!(rate.parse_value("101").is_err());
        let skew = spec("clock-skew").unwrap();
        assert_eq!(skew.parse_value("-5s"), Ok(-5_000));
        let ttl = spec("reservation-ttl-short").unwrap();
        assert_eq!(ttl.parse_value("2m"), Ok(120));
        assert_eq!(ttl.parse_value("3000ms"), Ok(3));
        assert!(spec("cdc-paused").unwrap().parse_value("1").is_err());
    }

    #[test]
    fn activate_checks_target_and_duration() {
        let hog = spec("memory-hog").unwrap();
        let a = hog
            .activate(None, Some("orders"), Some(Duration::from_secs(10)), 1_000)
            .unwrap();
        assert_eq!(a.target, "orders");
        assert_eq!(a.value, Some(256));
        assert_eq!(a.until_ms, Some(11_000));
        assert!(hog.activate(None, Some("nope"), None, 0).is_err());
        let cdc = spec("cdc-paused").unwrap();
        assert!(cdc.activate(None, Some("orders"), None, 0).is_err());
        assert_eq!(cdc.activate(None, None, None, 0).unwrap().target, "cdc");
        let redis = spec("redis-unavailable").unwrap();
        assert!(
            redis.activate(None, None, None, 0).is_err(),
            "an outage needs --for"
        );
        assert!(
            cdc.activate(None, None, Some(Duration::from_secs(7_200)), 0)
                .is_err()
        );
    }

    #[test]
    fn the_view_answers_by_component_and_expiry() {
        // One test touches the process-wide view, so tests do not race on it.
        let now = wall_ms();
        set_view([
            spec("catalog-slow")
                .unwrap()
                .activate(Some("250"), None, None, now)
                .unwrap(),
            spec("catalog-errors")
                .unwrap()
                .activate(Some("100"), None, None, now)
                .unwrap(),
            Active {
                name: "cdc-paused".into(),
                value: None,
                target: "cdc".into(),
                set_at_ms: now - 10_000,
                until_ms: Some(now - 1),
            },
            spec("feed-cache-flush")
                .unwrap()
                .activate(None, None, None, now)
                .unwrap(),
        ]);
        assert_eq!(value("catalog-slow", "catalog"), Some(250));
        assert_eq!(value("catalog-slow", "orders"), None);
        assert!(hits("cdc-paused", "cdc").is_none(), "expired");
        assert_eq!(
            request_fault("catalog"),
            (Some(Duration::from_millis(250)), true)
        );
        assert_eq!(request_fault("search"), (None, false));
        let seen = std::sync::atomic::AtomicI64::new(0);
        assert!(once("feed-cache-flush", "feed", &seen));
        assert!(!once("feed-cache-flush", "feed", &seen), "once per set");
        assert_eq!(snapshot().len(), 3);
        // /metrics shows what the view holds, expired faults left out.
        let metrics = crate::metrics::Metrics::new("catalog");
        let active = |text: &str, fault: &str| {
            crate::metrics::sum_series(
                text,
                "shopstream_fault_active",
                &[&format!("fault=\"{fault}\"")],
            )
        };
        let text = metrics.render();
        assert_eq!(active(&text, "catalog-slow"), 1.0, "{text}");
        assert_eq!(active(&text, "cdc-paused"), 0.0, "{text}");
        set_view([]);
        assert_eq!(request_fault("catalog"), (None, false));
        let text = metrics.render();
        assert_eq!(active(&text, "catalog-slow"), 0.0, "cleared: {text}");
    }
}
