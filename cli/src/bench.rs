//! `shopstream bench`: open-loop load against the running gateway, with
//! latency percentiles measured from each request's *scheduled* start (so a
//! slow server cannot hide its queueing: no coordinated omission). Targets:
//! product reads, logins, checkout end to end (order placed → saga finished),
//! a flash sale (many concurrent reservations of one scarce SKU), live
//! updates (many WebSocket and SSE subscribers while orders flow), and the
//! admin's daily stats over 90 days, media uploads to ready, and the feed
//! (feature job, backfill, first pages, recovery after a Redis flush).

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use serde::Serialize;
use shopstream_platform::config::{Ports, service_addrs};
use tokio::sync::Semaphore;

use crate::exit;

pub(crate) mod checkout;
mod cost;
mod dsar;
mod feed;
mod live;
mod media;
mod stats;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// GET /products/{id} through the gateway: open loop, then capacity from
    /// the gateway's product cache and past it (catalog over gRPC), then the
    /// floor (catalog's statement straight against Postgres).
    Product,
    /// POST /auth/login through the gateway (argon2id verify).
    Login,
    /// POST /orders, then poll GET /orders/{id} until the saga finishes:
    /// latency is order placed → completed (reserve, authorize, capture,
    /// commit through Temporal, inventory, payments and stripe-sim).
    Checkout,
    /// As many concurrent POST /reservations of one unit of one SKU as
    /// possible against a small stock: attempts/s and oversold units (must be 0).
    FlashSale,
    /// Many live subscribers (WebSocket and SSE) while orders flow: latency
    /// from each step's commit to its receipt, lost updates (must be 0) and
    /// the gateway's memory per 1,000 connections.
    Live,
    /// GET /admin/stats/daily over 90 closed days (set up in 2001-Q1), as an admin.
    Stats,
    /// Upload → ready, one asset at a time: generated 2 MP photos, then
    /// 10-second 720p clips (needs ffmpeg); the media worker's peak PSS
    /// (with its ffmpeg children) while clips are processed.
    Media,
    /// The feed at scale in a tenant of its own: the feature job's events/s
    /// over N products and M users' activity, the backfill, first pages
    /// (gRPC GetPage) at a steady rate with the cache hit rate, and the time
    /// for the hit rate to return above 90 % after the tenant's slices are
    /// flushed from Redis.
    Feed,
    /// One erasure DSAR of a shopper with `--dsar-orders` orders,
    /// `--dsar-activities` feed activities and `--dsar-photos` photos: its
    /// time end to end and each participant's.
    Dsar,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// What to load; repeat for several (default: product and login).
    #[arg(long = "target", value_enum)]
    targets: Vec<Target>,
    /// Requests per second for `product`.
    #[arg(long, default_value_t = 2000)]
    product_rate: u32,
    /// Requests per second for `login` (argon2 is deliberately slow).
    #[arg(long, default_value_t = 20)]
    login_rate: u32,
    /// Orders per second for `checkout`.
    #[arg(long, default_value_t = 10)]
    checkout_rate: u32,
    /// How `checkout` learns that an order completed: `stamp` reads the
    /// order's own completion stamp and asks every 500 ms; `poll` takes the
    /// moment a poll every 50 ms first sees it (more of the benchmark's own
    /// requests on the machine it measures, growing with the latency).
    #[arg(long, value_enum, default_value_t = checkout::Follow::Stamp)]
    checkout_follow: checkout::Follow,
    /// Units of the flash-sale SKU.
    #[arg(long, default_value_t = 100)]
    flash_stock: i64,
    /// Reservation attempts in the flash sale (all fired at once, 64 in flight).
    #[arg(long, default_value_t = 1000)]
    flash_attempts: u32,
    /// Live subscribers for `live` (half WebSockets, half SSE streams).
    #[arg(long, default_value_t = 1000)]
    live_subscribers: usize,
    /// Connections per buyer for `live`: the gateway's per-user limit
    /// (`SHOPSTREAM_LIVE_PER_USER`, 16 by default).
    #[arg(long, default_value_t = 16)]
    live_per_user: usize,
    /// Requests per second for `stats`.
    #[arg(long, default_value_t = 200)]
    stats_rate: u32,
    /// Photos for `media`.
    #[arg(long, default_value_t = 50)]
    media_photos: usize,
    /// Clips for `media` (0 skips them).
    #[arg(long, default_value_t = 5)]
    media_clips: usize,
    /// Users for `feed`.
    #[arg(long, default_value_t = 10_000)]
    feed_users: usize,
    /// Products for `feed`.
    #[arg(long, default_value_t = 50_000)]
    feed_items: usize,
    /// First pages per second for `feed`.
    #[arg(long, default_value_t = 500)]
    feed_rate: u32,
    /// Orders of the shopper `dsar` erases.
    #[arg(long, default_value_t = 100)]
    dsar_orders: usize,
    /// Feed activities of the shopper `dsar` erases.
    #[arg(long, default_value_t = 1000)]
    dsar_activities: usize,
    /// Photos of the shopper `dsar` erases.
    #[arg(long, default_value_t = 20)]
    dsar_photos: usize,
    /// Orders per second while `live` measures.
    #[arg(long, default_value_t = 5)]
    live_order_rate: u32,
    /// Seconds of load per target (after a 1 s warm-up).
    #[arg(long, default_value_t = 10)]
    duration_s: u64,
    /// Most requests in flight; beyond it a tick counts as dropped.
    #[arg(long, default_value_t = 256)]
    max_in_flight: usize,
    /// Gateway base URL (default: this stack's gateway).
    #[arg(long)]
    url: Option<String>,
    /// Also measure, for `checkout`, `login` and `stats`, what one completed
    /// order, login or read costs each component of this machine's stack in
    /// CPU (its process tree's user + system time, from /proc), and the rate
    /// the machine's cores could sustain at that cost. Adds 3 s before each
    /// target (the idle rate, subtracted) and up to 30 s after it (the
    /// consumers finishing the load's events count too).
    #[arg(long, conflicts_with = "url")]
    cpu: bool,
    /// Print each target's figures as one JSON document instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub target: String,
    /// 0: one request at a time (closed loop), not a rate.
    pub rate_per_s: u32,
    pub duration_s: u64,
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    /// Ticks skipped because `max_in_flight` requests were outstanding.
    pub dropped: u64,
    pub achieved_per_s: f64,
    pub latency_ms_p50: f64,
    pub latency_ms_p95: f64,
    pub latency_ms_p99: f64,
    pub latency_ms_max: f64,
    /// Closed loop: this many requests always in flight (a capacity
    /// measurement, like `wrk -c` or `pgbench -c`); `rate_per_s` is 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<usize>,
    /// For a capacity figure that has a floor measured in the same run (the
    /// same read straight against Postgres): this figure over the floor's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_to_floor: Option<f64>,
    /// Successes during the warm-up second, which the figures above leave
    /// out but the machine did the work of (`--cpu` divides by both).
    #[serde(skip)]
    pub ok_in_warmup: u64,
}

/// Concurrent signups while preparing the login benchmark.
const SIGNUP_CONCURRENCY: usize = 4;

/// One unit of load: resolves to whether it succeeded, and when.
type Job = Pin<Box<dyn Future<Output = Done> + Send>>;
type MakeJob = Arc<dyn Fn(u64) -> Job + Send + Sync>;

/// How one unit of load ended.
pub(crate) struct Done {
    pub ok: bool,
    /// When what the job measures happened, where the job knows it better
    /// than "when the future resolved": a checkout's completion, read from
    /// the order's own stamp ([`checkout::Follow::Stamp`]). `None`: when it
    /// resolved.
    pub at: Option<Instant>,
}

impl From<bool> for Done {
    fn from(ok: bool) -> Self {
        Done { ok, at: None }
    }
}

/// A job that sends one request and succeeds on a 2xx.
fn request_job(make: impl Fn(u64) -> reqwest::RequestBuilder + Send + Sync + 'static) -> MakeJob {
    Arc::new(move |n| {
        let req = make(n);
        Box::pin(async move {
            match req.send().await {
                Ok(r) => {
                    let ok = r.status().is_success();
                    let _ = r.bytes().await;
                    ok.into()
                }
                Err(_) => false.into(),
            }
        })
    })
}

async fn run_load(
    name: &str,
    rate: u32,
    duration: Duration,
    max_in_flight: usize,
    make: MakeJob,
) -> Report {
    let hist = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
    ));
    let counts = Arc::new(Mutex::new((0u64, 0u64, 0u64)));
    let sem = Arc::new(Semaphore::new(max_in_flight));
    let period = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let warmup = Duration::from_secs(1);
    let started = Instant::now();
    let mut dropped = 0u64;
    let mut n = 0u64;
    let mut tasks = Vec::new();
    loop {
        let scheduled = started + period.mul_f64(n as f64);
        if scheduled >= started + warmup + duration {
            break;
        }
        tokio::time::sleep_until(scheduled.into()).await;
        let measured = scheduled >= started + warmup;
        let Ok(permit) = sem.clone().try_acquire_owned() else {
            if measured {
                dropped += 1;
            }
            n += 1;
            continue;
        };
        let job = make(n);
        let (hist, counts) = (hist.clone(), counts.clone());
        tasks.push(tokio::spawn(async move {
            let done = job.await;
            let ok = done.ok;
            let end = done.at.unwrap_or_else(Instant::now);
            let us = end.saturating_duration_since(scheduled).as_micros() as u64;
            drop(permit);
            if measured && let Ok(mut h) = hist.lock() {
                let _ = h.record(us.max(1));
            }
            if let Ok(mut c) = counts.lock() {
                match (measured, ok) {
                    (true, true) => c.0 += 1,
                    (true, false) => c.1 += 1,
                    (false, true) => c.2 += 1,
                    (false, false) => {}
                }
            }
        }));
        n += 1;
    }
    for t in tasks {
        let _ = t.await;
    }
    let h = hist
        .lock()
        .map(|h| h.clone())
        .unwrap_or_else(|_| Histogram::new(3).expect("histogram"));
    let (ok, errors, ok_in_warmup) = counts.lock().map(|c| *c).unwrap_or((0, 0, 0));
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Report {
        target: name.to_string(),
        rate_per_s: rate,
        duration_s: duration.as_secs(),
        requests: ok + errors,
        ok,
        errors,
        dropped,
        achieved_per_s: (ok + errors) as f64 / duration.as_secs_f64(),
        latency_ms_p50: ms(0.50),
        latency_ms_p95: ms(0.95),
        latency_ms_p99: ms(0.99),
        latency_ms_max: h.max() as f64 / 1000.0,
        in_flight: None,
        ratio_to_floor: None,
        ok_in_warmup,
    }
}

/// Capacity: `in_flight` workers each send their next request as soon as
/// the last one answered, for `duration` after a 1 s warm-up; latency is
/// from each request's start.
async fn run_closed(name: &str, in_flight: usize, duration: Duration, make: MakeJob) -> Report {
    let warmup = Duration::from_secs(1);
    let started = Instant::now();
    let (measure_from, end) = (started + warmup, started + warmup + duration);
    let mut workers = Vec::new();
    for w in 0..in_flight {
        let make = make.clone();
        workers.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
            let (mut ok, mut errors) = (0u64, 0u64);
            let mut n = w as u64;
            loop {
                let t = Instant::now();
                if t >= end {
                    break;
                }
                let done = make(n).await;
                let end = done.at.unwrap_or_else(Instant::now);
                n += in_flight as u64;
                if t >= measure_from {
                    let us = end.saturating_duration_since(t).as_micros() as u64;
                    let _ = hist.record(us.max(1));
                    if done.ok { ok += 1 } else { errors += 1 }
                }
            }
            (hist, ok, errors)
        }));
    }
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
    let (mut ok, mut errors) = (0, 0);
    for w in workers {
        if let Ok((wh, o, e)) = w.await {
            let _ = h.add(&wh);
            ok += o;
            errors += e;
        }
    }
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Report {
        target: name.to_string(),
        rate_per_s: 0,
        duration_s: duration.as_secs(),
        requests: ok + errors,
        ok,
        errors,
        dropped: 0,
        achieved_per_s: (ok + errors) as f64 / duration.as_secs_f64(),
        latency_ms_p50: ms(0.50),
        latency_ms_p95: ms(0.95),
        latency_ms_p99: ms(0.99),
        latency_ms_max: h.max() as f64 / 1000.0,
        in_flight: Some(in_flight),
        ratio_to_floor: None,
        ok_in_warmup: 0,
    }
}

/// Requests in flight for the product read's capacity and its floor (what
/// `wrk -c16` and `pgbench -c16` measured in the issue that set the goal).
const CAPACITY_IN_FLIGHT: usize = 16;

/// The product read's floor: the catalog's own statement for one product
/// (`shopstream_catalog::adapters::postgres::PRODUCT_READ_SQL`), prepared,
/// on [`CAPACITY_IN_FLIGHT`] connections straight to the catalog's database.
async fn product_floor(
    ports: &Ports,
    ids: Arc<Vec<String>>,
    duration: Duration,
) -> anyhow::Result<Report> {
    let url = shopstream_platform::config::Endpoints::native(*ports)
        .database_url(shopstream_catalog::config::SERVICE_NAME);
    let pool = shopstream_platform::db::pool_options()
        .max_connections(CAPACITY_IN_FLIGHT as u32)
        .min_connections(CAPACITY_IN_FLIGHT as u32)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&url)
        .await
        .map_err(|e| anyhow::anyhow!("the catalog's database at {url}: {e}"))?;
    let ids: Arc<Vec<uuid::Uuid>> = Arc::new(ids.iter().filter_map(|i| i.parse().ok()).collect());
    anyhow::ensure!(!ids.is_empty(), "no product ids to read");
    let tenant = shopstream_platform::config::DEFAULT_TENANT.to_string();
    let make: MakeJob = {
        let pool = pool.clone();
        Arc::new(move |n| {
            let (pool, id, tenant) = (pool.clone(), ids[n as usize % ids.len()], tenant.clone());
            Box::pin(async move {
                sqlx::query(shopstream_catalog::adapters::postgres::PRODUCT_READ_SQL)
                    .bind(tenant)
                    .bind(vec![id])
                    .fetch_optional(&pool)
                    .await
                    .is_ok_and(|r| r.is_some())
                    .into()
            })
        })
    };
    let r = run_closed(
        "floor: the same read in Postgres",
        CAPACITY_IN_FLIGHT,
        duration,
        make,
    )
    .await;
    pool.close().await;
    Ok(r)
}

pub async fn bench(state_dir: &std::path::Path, args: BenchArgs) -> anyhow::Result<u8> {
    let ports = Ports::from_env(Ports::DEV)?;
    let base = args.url.clone().unwrap_or_else(|| {
        let (h, _) = service_addrs("gateway", ports.services).expect("gateway is a service");
        format!("http://{h}")
    });
    let targets = if args.targets.is_empty() {
        vec![Target::Product, Target::Login]
    } else {
        args.targets.clone()
    };
    // Bad input is refused before anything is asked of the stack.
    if args.cpu
        && let Some(t) = targets
            .iter()
            .find(|t| !matches!(t, Target::Checkout | Target::Login | Target::Stats))
    {
        eprintln!(
            "error: --cpu measures checkout, login and stats; not {}",
            t.to_possible_value()
                .map_or("this target".into(), |v| v.get_name().to_string())
        );
        return Ok(2);
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(args.max_in_flight)
        .build()?;
    if client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .map(|r| r.status().is_success())
        .ok()
        != Some(true)
    {
        eprintln!(
            "error: no ready gateway at {base}: start the stack (shopstream up) and seed it (shopstream seed)"
        );
        return Ok(exit::NOT_READY);
    }
    let mut costs = cost::Costs::new(if args.cpu {
        Some(
            shopstream_runtime::Stack::new(state_dir, ports, std::env::current_exe()?)
                .with_services(true),
        )
    } else {
        None
    });
    let duration = Duration::from_secs(args.duration_s);
    // `run_load`, and with `--cpu` what each completed unit cost.
    macro_rules! measured_load {
        ($unit:expr, $name:expr, $rate:expr, $make:expr) => {
            match costs
                .around(
                    $unit,
                    run_load($name, $rate, duration, args.max_in_flight, $make),
                )
                .await
            {
                Ok(r) => r,
                Err(code) => return Ok(code),
            }
        };
    }
    let mut reports = Vec::new();
    let mut flash_reports = Vec::new();
    let mut live_reports = Vec::new();
    let mut media_reports = Vec::new();
    let mut feed_reports = Vec::new();
    let mut dsar_reports = Vec::new();
    for t in targets {
        let report = match t {
            Target::Product => {
                // A 5xx while listing is asked again, not taken for an empty catalog.
                let ids: Vec<String> = checkout::products(&client, &base, 100)
                    .await?
                    .into_iter()
                    .map(|(id, _)| id)
                    .collect();
                if ids.is_empty() {
                    eprintln!("error: the catalog is empty: run `shopstream seed` first");
                    return Ok(exit::NOT_READY);
                }
                eprintln!(
                    "bench: GET /products/{{id}} at {}/s for {} s over {} products",
                    args.product_rate,
                    args.duration_s,
                    ids.len()
                );
                let (c, b) = (client.clone(), base.clone());
                let ids = Arc::new(ids);
                let make = {
                    let (ids, c, b) = (ids.clone(), c.clone(), b.clone());
                    request_job(move |n| {
                        c.get(format!("{b}/products/{}", ids[n as usize % ids.len()]))
                    })
                };
                // The same read past the gateway's product cache: catalog's
                // path, which the floor is the bound of.
                let uncached = {
                    let ids = ids.clone();
                    request_job(move |n| {
                        c.get(format!("{b}/products/{}", ids[n as usize % ids.len()]))
                            .header("cache-control", "no-cache")
                    })
                };
                reports.push(
                    run_load(
                        "GET /products/{id}",
                        args.product_rate,
                        duration,
                        args.max_in_flight,
                        make.clone(),
                    )
                    .await,
                );
                eprintln!(
                    "bench: GET /products/{{id}} with {CAPACITY_IN_FLIGHT} in flight (capacity), from the cache and past it (Cache-Control: no-cache), then the same read straight against Postgres (the floor)"
                );
                let mut capacity = run_closed(
                    "GET /products/{id}, capacity",
                    CAPACITY_IN_FLIGHT,
                    duration,
                    make,
                )
                .await;
                let mut past_cache = run_closed(
                    "GET /products/{id}, capacity, no-cache",
                    CAPACITY_IN_FLIGHT,
                    duration,
                    uncached,
                )
                .await;
                // The floor needs this machine's Postgres: not with --url.
                let floor = if args.url.is_some() {
                    None
                } else {
                    match product_floor(&ports, ids, duration).await {
                        Ok(f) => Some(f),
                        Err(e) => {
                            eprintln!("bench: no floor for the product read: {e}");
                            None
                        }
                    }
                };
                if let Some(f) = &floor
                    && f.achieved_per_s > 0.0
                {
                    capacity.ratio_to_floor = Some(capacity.achieved_per_s / f.achieved_per_s);
                    past_cache.ratio_to_floor = Some(past_cache.achieved_per_s / f.achieved_per_s);
                }
                reports.push(capacity);
                match floor {
                    Some(f) => {
                        reports.push(past_cache);
                        f
                    }
                    None => past_cache,
                }
            }
            Target::Login => {
                // One account per request: the login rate limit (per email and
                // client) must not turn the benchmark into a 429 benchmark.
                let users = (u64::from(args.login_rate) * (args.duration_s + 1)) as usize;
                eprintln!("bench: creating {users} accounts for the login benchmark");
                let run_id = format!("{:x}", rand_suffix());
                let password = "bench password for shopstream";
                use futures::StreamExt;
                // A few at a time: each signup is an argon2id hash.
                let created = futures::stream::iter(0..users)
                    .map(|i| {
                        let c = client.clone();
                        let url = format!("{base}/auth/signup");
                        let email = format!("bench-{run_id}-{i}@example.com");
                        async move {
                            c.post(url)
                                .json(&serde_json::json!({"email": email, "password": password}))
                                .send()
                                .await
                        }
                    })
                    .buffer_unordered(SIGNUP_CONCURRENCY)
                    .filter(|r| {
                        std::future::ready(matches!(r, Ok(r) if r.status().as_u16() == 201))
                    })
                    .count()
                    .await;
                if created < users {
                    eprintln!(
                        "error: only {created} of {users} benchmark accounts could be created"
                    );
                    return Ok(exit::FAILED);
                }
                eprintln!(
                    "bench: POST /auth/login at {}/s for {} s",
                    args.login_rate, args.duration_s
                );
                let (c, b) = (client.clone(), base.clone());
                let make = request_job(move |n| {
                    let email = format!("bench-{run_id}-{}@example.com", n as usize % users);
                    c.post(format!("{b}/auth/login"))
                        .json(&serde_json::json!({"email": email, "password": password}))
                });
                measured_load!("login", "POST /auth/login", args.login_rate, make)
            }
            Target::Checkout => {
                let setup = match checkout::prepare(&client, &base, &ports, 1_000_000).await? {
                    Ok(s) => s,
                    Err(code) => return Ok(code),
                };
                eprintln!(
                    "bench: checkout (POST /orders → completed) at {}/s for {} s over {} SKUs",
                    args.checkout_rate,
                    args.duration_s,
                    setup.lines.len()
                );
                let make = checkout::job(client.clone(), base.clone(), setup, args.checkout_follow);
                measured_load!(
                    "order",
                    "checkout (order → completed)",
                    args.checkout_rate,
                    make
                )
            }
            Target::FlashSale => {
                let flash = match checkout::flash_sale(
                    &client,
                    &base,
                    &ports,
                    args.flash_stock,
                    args.flash_attempts,
                )
                .await?
                {
                    Ok(f) => f,
                    Err(code) => return Ok(code),
                };
                flash_reports.push(flash.summary.clone());
                flash.report
            }
            Target::Stats => {
                let make = match stats::prepare(&client, &base, &ports).await? {
                    Ok(m) => m,
                    Err(code) => return Ok(code),
                };
                measured_load!(
                    "read",
                    "GET /admin/stats/daily (90 days)",
                    args.stats_rate,
                    make
                )
            }
            Target::Media => {
                let media_pid = match &args.url {
                    Some(_) => None,
                    None => {
                        shopstream_runtime::Stack::new(state_dir, ports, std::env::current_exe()?)
                            .running_pid(shopstream_runtime::Kind::Media)
                    }
                };
                let m = media::MediaArgs {
                    photos: args.media_photos,
                    clips: args.media_clips,
                    media_pid,
                };
                let (mut rs, summary) = match media::run(&base, m).await? {
                    Ok(r) => r,
                    Err(code) => return Ok(code),
                };
                media_reports.push(summary);
                let last = rs.pop().expect("at least the photo report");
                reports.extend(rs);
                last
            }
            Target::Feed => {
                let f = feed::FeedArgs {
                    users: args.feed_users.max(2),
                    items: args.feed_items.max(1),
                    rate: args.feed_rate,
                    duration,
                    max_in_flight: args.max_in_flight,
                };
                let (report, summary) = match feed::run(&client, &ports, f).await? {
                    Ok(r) => r,
                    Err(code) => return Ok(code),
                };
                feed_reports.push(summary);
                report
            }
            Target::Dsar => {
                let d = dsar::DsarArgs {
                    orders: args.dsar_orders,
                    activities: args.dsar_activities,
                    photos: args.dsar_photos,
                };
                let (report, summary) = match dsar::run(&client, &base, &ports, d).await? {
                    Ok(r) => r,
                    Err(code) => return Ok(code),
                };
                dsar_reports.push(summary);
                report
            }
            Target::Live => {
                // This stack's gateway process, for its memory (none with --url).
                let pid = match &args.url {
                    Some(_) => None,
                    None => {
                        shopstream_runtime::Stack::new(state_dir, ports, std::env::current_exe()?)
                            .running_pid(shopstream_runtime::Kind::Gateway)
                    }
                };
                let live_args = live::LiveArgs {
                    subscribers: args.live_subscribers,
                    per_user: args.live_per_user,
                    order_rate: args.live_order_rate,
                    duration,
                };
                let (report, summary) =
                    match live::run(&client, &base, &ports, pid, live_args).await? {
                        Ok(r) => r,
                        Err(code) => return Ok(code),
                    };
                live_reports.push(summary);
                report
            }
        };
        reports.push(report);
    }
    if args.json {
        if flash_reports.is_empty()
            && live_reports.is_empty()
            && media_reports.is_empty()
            && feed_reports.is_empty()
            && dsar_reports.is_empty()
            && costs.list.is_empty()
        {
            println!("{}", serde_json::to_string_pretty(&reports)?);
        } else {
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "reports": reports, "flash_sale": flash_reports, "live": live_reports,
                    "media": media_reports, "feed": feed_reports, "dsar": dsar_reports,
                    "cpu": costs.list
                }))?
            );
        }
    } else {
        let rows: Vec<Vec<String>> = reports
            .iter()
            .map(|r| {
                vec![
                    r.target.clone(),
                    if let Some(n) = r.in_flight {
                        format!("{n} in flight")
                    } else if r.rate_per_s == 0 {
                        "one at a time".to_string()
                    } else {
                        format!("{}/s", r.rate_per_s)
                    },
                    format!("{:.0}/s", r.achieved_per_s),
                    format!("{}", r.errors),
                    format!("{}", r.dropped),
                    format!("{:.2}", r.latency_ms_p50),
                    format!("{:.2}", r.latency_ms_p95),
                    format!("{:.2}", r.latency_ms_p99),
                    format!("{:.2}", r.latency_ms_max),
                ]
            })
            .collect();
        print!(
            "{}",
            crate::table::render(
                &[
                    "target", "offered", "achieved", "errors", "dropped", "p50 ms", "p95 ms",
                    "p99 ms", "max ms"
                ],
                &rows
            )
        );
        for r in reports.iter().filter(|r| r.ratio_to_floor.is_some()) {
            let ratio = r.ratio_to_floor.unwrap_or(0.0);
            println!(
                "{}: {:.0}/s, {:.3} of the floor (1/{:.1}); the floor is the same read straight against Postgres, measured in this run",
                r.target,
                r.achieved_per_s,
                ratio,
                if ratio > 0.0 {
                    1.0 / ratio
                } else {
                    f64::INFINITY
                }
            );
        }
    }
    if !args.json {
        costs.list.iter().for_each(cost::print);
        for f in &flash_reports {
            println!(
                "flash sale: {} attempts on {} units in {:.2} s ({:.0} attempts/s): {} reserved, {} refused, {} errors; stock after: reserved {}, available {}; oversold {}",
                f.attempts,
                f.stock,
                f.elapsed_s,
                f.attempts_per_s,
                f.reserved,
                f.refused,
                f.errors,
                f.stock_reserved_after,
                f.stock_available_after,
                f.oversold
            );
        }
        for l in &live_reports {
            let kib = |v: Option<u64>| v.map_or("unknown".to_string(), |k| format!("{k} KiB"));
            println!(
                "live: {} buyers, {} WebSockets + {} SSE streams ({} open when measured); {} orders ({} failed); {} updates expected, {} lost; {} live samples; {} SSE streams refused (429) and reopened; gateway PSS {} → {} ({} per 1,000 connections)",
                l.buyers,
                l.websockets,
                l.sse_streams,
                l.connections_measured,
                l.orders,
                l.orders_failed,
                l.updates_expected,
                l.updates_lost,
                l.live_samples,
                l.sse_retries,
                kib(l.gateway_pss_kib_before),
                kib(l.gateway_pss_kib_with),
                l.gateway_pss_kib_per_1000
                    .map_or("unknown".to_string(), |k| format!("{k:.0} KiB")),
            );
        }
        for m in &media_reports {
            println!(
                "media: {} photos, {} clips, one at a time; media worker + ffmpeg peak PSS while transcoding: {}",
                m.photos,
                m.clips,
                m.worker_peak_pss_kib
                    .map_or("unknown".to_string(), |k| format!(
                        "{:.1} MiB",
                        k as f64 / 1024.0
                    ))
            );
        }
        for f in &feed_reports {
            println!(
                "feed ({}): {} products, {} users, {} events published in {:.1} s; feature job {:.0} events/s; backfill {:.1} s ({:.0} slices/s); hit rate {:.1} %; after a Redis flush: lowest 1 s hit rate {:.1} %, back above 90 % after {}, {} slices re-warmed",
                f.tenant,
                f.items,
                f.users,
                f.events,
                f.publish_s,
                f.job_events_per_s,
                f.backfill_s,
                f.backfill_slices_per_s,
                100.0 * f.hit_rate,
                100.0 * f.hit_rate_after_flush_min,
                f.recover_to_90_s
                    .map_or("never (within the window)".to_string(), |s| format!(
                        "{s:.1} s"
                    )),
                f.slices_rewarmed
            );
        }
        dsar_reports.iter().for_each(dsar::print);
    }
    let failed =
        reports.iter().any(|r| r.errors > 0) || flash_reports.iter().any(|f| f.oversold != 0);
    Ok(if failed { exit::FAILED } else { exit::OK })
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
