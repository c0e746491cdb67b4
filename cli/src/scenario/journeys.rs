//! The scenarios' user journeys as Goose scenarios and transactions, the
//! setup they buy from, and the run: load and chaos together, then settle,
//! then the verdict.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use goose::{config::GooseConfiguration, prelude::*};
use shopstream_proto::inventory::v1::inventory_service_client::InventoryServiceClient;

use super::{
    chaos, driver, invariants,
    recorder::Recorder,
    report::{Phase, Report, RequestStat},
};
use crate::{
    bench::checkout::{buyer_session, completed_at, inventory, products, set_available, stock_of},
    exit,
};

/// What `shopstream test` asked for.
#[derive(Debug, Clone)]
pub struct Plan {
    pub scenario: &'static str,
    pub duration: Duration,
    pub users: usize,
    pub rate: Option<u32>,
    pub stock: i64,
    pub orders: usize,
    pub seed: u64,
    pub chaos: String,
}

/// Buyer accounts a run creates (Goose users share them round-robin).
const MAX_BUYERS: usize = 16;
/// SKUs the flash sale puts on sale.
const FLASH_SKUS: usize = 3;
/// Products looked at for SKUs that hold no reservation.
const FLASH_CANDIDATES: usize = 60;
/// Products the other scenarios buy from.
const CHECKOUT_PRODUCTS: usize = 10;
/// Units per product in checkout-spike (never the limit there).
const CHECKOUT_STOCK: i64 = 100_000;
/// The longest a scenario waits for consumers to catch up before its load.
const PREFLIGHT_MAX: Duration = Duration::from_secs(120);
/// Times one order or hold is asked for with its key when no answer or a 503 came.
const KEYED_ATTEMPTS: u32 = 3;
/// How long a checkout journey follows its saga.
const FOLLOW_SAGA: Duration = Duration::from_secs(30);
/// How often a buyer asks whether its order has completed. The completion
/// time comes from the order's own stamp, so asking more often would only
/// add requests to the machine under test (more of them the slower it gets).
const FOLLOW_EVERY: Duration = Duration::from_millis(250);
/// One order per checkout-spike buyer per pace: `--users` buyers offer
/// `--users` orders a second at the spike.
pub const SPIKE_PACE: Duration = Duration::from_secs(1);
/// Seconds per window in which checkout-spike's knee is read: about 90
/// orders at 30 orders/s, enough for a p95.
pub const KNEE_WINDOW_S: usize = 3;

/// One buyer account.
#[derive(Debug, Clone)]
pub struct Buyer {
    pub token: String,
    pub user_id: String,
}

/// What the client was told about one order request.
#[derive(Debug, Clone)]
pub struct Told {
    pub key: String,
    /// The order id, when the answer carried one.
    pub order_id: Option<String>,
    /// HTTP status; 0 when no answer arrived.
    pub status: u16,
}

/// State the journeys share (Goose transactions are plain functions).
pub struct Shared {
    pub scenario: &'static str,
    pub base: String,
    pub run_id: String,
    pub buyers: Vec<Buyer>,
    /// (product_id, sku_id)
    pub lines: Vec<(String, String)>,
    pub rec: Recorder,
    pub told: Mutex<Vec<Told>>,
    /// Flash-sale holds still open: (reservation id, buyer index, sku id).
    pub holds: Mutex<Vec<(String, usize, String)>>,
    /// Flash-sale reservations whose every attempt got no answer or a 503:
    /// (Idempotency-Key, buyer index, sku id). The verdict asks again with
    /// each key, as a client coming back would, before it counts stock.
    pub unconfirmed_holds: Mutex<Vec<(String, usize, String)>>,
    /// Winners' releases that got no answer, 429s or 503s: (reservation id,
    /// buyer index). The verdict releases them again (a release is
    /// idempotent) before it counts stock.
    pub unconfirmed_releases: Mutex<Vec<(String, usize)>>,
    /// Flash-sale winners that may still convert to an order.
    pub conversions_left: AtomicUsize,
    pub seq: AtomicUsize,
    /// checkout-spike slots that buyers running late gave up.
    pub missed_slots: AtomicUsize,
}

static SHARED: OnceLock<Shared> = OnceLock::new();

fn shared() -> &'static Shared {
    SHARED
        .get()
        .expect("the scenario's shared state is set before Goose starts")
}

fn buyer_of(user: &GooseUser) -> (usize, &'static Buyer) {
    let s = shared();
    let i = user.weighted_users_index % s.buyers.len();
    (i, &s.buyers[i])
}

fn pick<'a>(user: &GooseUser, lines: &'a [(String, String)]) -> &'a (String, String) {
    let s = shared();
    let n = s.seq.fetch_add(1, Ordering::Relaxed);
    &lines[(user.weighted_users_index + n) % lines.len()]
}

/// A request of the journey: sent through Goose (its metrics), timed into
/// our recorder, `ok_also` statuses counted as success (a 409 "sold out" is
/// the right answer in a flash sale).
async fn send(
    user: &mut GooseUser,
    name: &'static str,
    method: GooseMethod,
    path: &str,
    body: Option<serde_json::Value>,
    headers: &[(&str, String)],
    ok_also: &[u16],
) -> Result<(u16, serde_json::Value), Box<TransactionError>> {
    let (_, b) = buyer_of(user);
    let mut rb = user
        .get_request_builder(&method, path)?
        .bearer_auth(&b.token);
    for (k, v) in headers {
        rb = rb.header(*k, v);
    }
    if let Some(body) = body {
        rb = rb.json(&body);
    }
    let req = GooseRequest::builder()
        .name(name)
        .method(method)
        .path(path)
        .set_request_builder(rb)
        .build();
    let started = Instant::now();
    let mut goose = user.request(req).await?;
    let (status, value) = match goose.response {
        Ok(r) => {
            let st = r.status().as_u16();
            (st, r.json::<serde_json::Value>().await.unwrap_or_default())
        }
        Err(_) => (0, serde_json::Value::Null),
    };
    let ok = (200..300).contains(&status) || ok_also.contains(&status);
    if ok && !(200..300).contains(&status) {
        let _ = user.set_success(&mut goose.request);
    }
    shared().rec.request(started, ok);
    Ok((status, value))
}

/// The wait before asking again after `attempt` unanswered tries: 0.5 s,
/// then twice as long each time, so retries thin out under overload instead
/// of adding to it.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500) * 2u32.saturating_pow(attempt.saturating_sub(1)).min(8)
}

/// What a keyed write came to: its last answer, whether any answer left its
/// outcome unknown, and how long the first attempt took (µs).
struct Keyed {
    status: u16,
    body: serde_json::Value,
    uncertain: bool,
    first_us: u64,
}

/// `POST path` with `body` under `Idempotency-Key: key`, as a careful client
/// does: asked again with backoff while [`ask_again`] says so, at most
/// [`KEYED_ATTEMPTS`] times, and not once the load is being stopped.
async fn send_keyed(
    user: &mut GooseUser,
    name: &'static str,
    path: &str,
    body: &serde_json::Value,
    key: &str,
    ok_also: &[u16],
) -> Result<Keyed, Box<TransactionError>> {
    let started = Instant::now();
    let mut first_us = None;
    let mut uncertain = false;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (status, body) = send(
            user,
            name,
            GooseMethod::Post,
            path,
            Some(body.clone()),
            &[("Idempotency-Key", key.to_string())],
            ok_also,
        )
        .await?;
        let first_us = *first_us.get_or_insert(started.elapsed().as_micros() as u64);
        uncertain |= matches!(status, 0 | 503);
        if !ask_again(status, uncertain) || attempt == KEYED_ATTEMPTS || super::cancelled() {
            return Ok(Keyed {
                status,
                body,
                uncertain,
                first_us,
            });
        }
        tokio::time::sleep(backoff(attempt)).await;
    }
}

/// Whether a keyed write answered `status` is asked again. No answer or a
/// 503 may hide a write that happened; once one of those came, a 429 (the
/// gateway's rate limit, which sends nothing on) says nothing about it, so
/// that is asked again too. A first 429 is an answer: nothing was done.
fn ask_again(status: u16, uncertain: bool) -> bool {
    matches!(status, 0 | 503) || (uncertain && status == 429)
}

/// Place one order for `line`; what the client was told is recorded.
async fn place_order(
    user: &mut GooseUser,
    line: &(String, String),
) -> Result<Option<String>, Box<TransactionError>> {
    let s = shared();
    let key = format!("scn-{}-{}", s.run_id, s.seq.fetch_add(1, Ordering::Relaxed));
    let body = serde_json::json!({
        "items": [{"product_id": line.0, "sku_id": line.1, "quantity": 1}],
        "payment_method": "pm_card_visa",
    });
    // A replay of the key answers the stored order.
    let k = send_keyed(user, "order", "/orders", &body, &key, &[]).await?;
    let (status, v) = (k.status, k.body);
    let order_id = v["order_id"].as_str().map(str::to_owned);
    if let Ok(mut t) = s.told.lock() {
        t.push(Told {
            key,
            order_id: order_id.clone().filter(|_| (200..300).contains(&status)),
            status,
        });
    }
    Ok(order_id.filter(|_| (200..300).contains(&status)))
}

// ---- flash-sale ----

async fn flash_reserve(user: &mut GooseUser) -> TransactionResult {
    if super::cancelled() {
        return Ok(());
    }
    let s = shared();
    let line = pick(user, &s.lines).clone();
    send(
        user,
        "product",
        GooseMethod::Get,
        &format!("/products/{}", line.0),
        None,
        &[],
        &[],
    )
    .await?;
    let body = serde_json::json!({"items": [{"sku_id": line.1, "quantity": 1}], "ttl_s": 600});
    let key = format!(
        "scn-hold-{}-{}",
        s.run_id,
        s.seq.fetch_add(1, Ordering::Relaxed)
    );
    // A replay of the key answers the hold if inventory made it after the
    // gateway gave up (the headline times the first attempt).
    let k = send_keyed(user, "reserve", "/reservations", &body, &key, &[409]).await?;
    s.rec.headline(k.first_us);
    let (status, v) = (k.status, k.body);
    let (buyer, _) = buyer_of(user);
    if k.uncertain && matches!(status, 0 | 429 | 503) {
        if let Ok(mut u) = s.unconfirmed_holds.lock() {
            u.push((key, buyer, line.1.clone()));
        }
        return Ok(());
    }
    // A replayed key answers its reservation in whatever state it is now:
    // only one still held is a hold.
    let Some(id) = v["reservation_id"]
        .as_str()
        .filter(|_| status == 201 && v["state"] == "held")
    else {
        return Ok(());
    };
    let convert = s
        .conversions_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if !convert {
        if let Ok(mut h) = s.holds.lock() {
            h.push((id.to_string(), buyer, line.1.clone()));
        }
        return Ok(());
    }
    // A winner turns the hold into an order: the saga reserves by itself.
    // A release is idempotent, so an unanswered one is simply asked again.
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (released, _) = send(
            user,
            "release",
            GooseMethod::Delete,
            &format!("/reservations/{id}"),
            None,
            &[],
            &[404],
        )
        .await?;
        // 429 (the gateway's rate limit) released nothing either.
        if !matches!(released, 0 | 429 | 503) {
            break;
        }
        if attempt == KEYED_ATTEMPTS || super::cancelled() {
            if let Ok(mut u) = s.unconfirmed_releases.lock() {
                u.push((id.to_string(), buyer));
            }
            break;
        }
        tokio::time::sleep(backoff(attempt)).await;
    }
    place_order(user, &line).await?;
    Ok(())
}

// ---- checkout-spike ----

async fn checkout(user: &mut GooseUser) -> TransactionResult {
    if super::cancelled() {
        tokio::time::sleep(Duration::from_millis(200)).await;
        return Ok(());
    }
    let s = shared();
    let line = pick(user, &s.lines).clone();
    let spike = s.scenario == "checkout-spike";
    // checkout-spike's buyers keep a pace, so the orders offered per second
    // follow the test plan's users whatever the latency: the time counts
    // from the buyer's slot, so a buyer running late adds its lateness.
    let started = if spike {
        let Some(slot) = next_slot(user).await else {
            return Ok(());
        };
        slot
    } else {
        Instant::now()
    };
    let Some(id) = place_order(user, &line).await? else {
        return Ok(());
    };
    let deadline = Instant::now() + FOLLOW_SAGA;
    while Instant::now() < deadline && !super::cancelled() {
        tokio::time::sleep(FOLLOW_EVERY).await;
        let (_, o) = send(
            user,
            "follow",
            GooseMethod::Get,
            &format!("/orders/{id}"),
            None,
            &[],
            &[],
        )
        .await?;
        match o["state"].as_str() {
            Some("completed") => {
                if spike {
                    // When it completed: the order's own stamp (as `bench
                    // --target checkout` reads it), not when we asked.
                    let at = completed_at(&o, started, Instant::now());
                    s.rec
                        .headline_from(started, (at - started).as_micros() as u64);
                }
                return Ok(());
            }
            Some("cancelled") => return Ok(()),
            _ => {}
        }
    }
    Ok(())
}

/// Where a checkout-spike buyer is in its pace.
struct Pace {
    next: Instant,
}

/// A checkout-spike buyer's next slot: wait for it (the first one lies
/// somewhere in the buyer's first [`SPIKE_PACE`], spread by its index, so
/// the buyers a ramp adds do not order in step), and book the one after.
/// A buyer more than a pace late gives up the slots it missed (counted), as
/// an arrival-rate load generator drops the arrivals it has no user for.
/// `None` when the run is being cancelled.
async fn next_slot(user: &mut GooseUser) -> Option<Instant> {
    let now = Instant::now();
    let slot = match user.get_session_data::<Pace>() {
        Some(p) => p.next,
        None => {
            // The golden ratio's fractional part spreads indexes evenly.
            let frac = (user.weighted_users_index as f64 * 0.618_033_988_75).fract();
            now + SPIKE_PACE.mul_f64(frac)
        }
    };
    let slot = if now > slot + SPIKE_PACE {
        let missed = ((now - slot).as_secs_f64() / SPIKE_PACE.as_secs_f64()) as usize;
        shared().missed_slots.fetch_add(missed, Ordering::Relaxed);
        now
    } else {
        slot
    };
    while Instant::now() < slot {
        if super::cancelled() {
            return None;
        }
        tokio::time::sleep((slot - Instant::now()).min(Duration::from_millis(200))).await;
    }
    user.set_session_data(Pace {
        next: slot + SPIKE_PACE,
    });
    Some(slot)
}

// ---- browse ----

async fn browse(user: &mut GooseUser) -> TransactionResult {
    if super::cancelled() {
        tokio::time::sleep(Duration::from_millis(200)).await;
        return Ok(());
    }
    let s = shared();
    let started = Instant::now();
    send(
        user,
        "products",
        GooseMethod::Get,
        "/products?limit=20",
        None,
        &[],
        &[],
    )
    .await?;
    let line = pick(user, &s.lines).clone();
    send(
        user,
        "product",
        GooseMethod::Get,
        &format!("/products/{}", line.0),
        None,
        &[],
        &[],
    )
    .await?;
    const WORDS: [&str; 6] = ["lamp", "chair", "mug", "desk", "shirt", "book"];
    let w = WORDS[s.seq.fetch_add(1, Ordering::Relaxed) % WORDS.len()];
    send(
        user,
        "search",
        GooseMethod::Get,
        &format!("/search?q={w}"),
        None,
        &[],
        &[],
    )
    .await?;
    send(
        user,
        "typeahead",
        GooseMethod::Get,
        &format!("/search/typeahead?q={}", &w[..2]),
        None,
        &[],
        &[],
    )
    .await?;
    let ids: Vec<&str> = s.lines.iter().take(5).map(|l| l.0.as_str()).collect();
    send(
        user,
        "cards",
        GooseMethod::Get,
        &format!("/bff/product-cards?ids={}", ids.join(",")),
        None,
        &[],
        &[],
    )
    .await?;
    send(user, "feed", GooseMethod::Get, "/feed", None, &[], &[]).await?;
    s.rec.headline(started.elapsed().as_micros() as u64);
    Ok(())
}

/// ws-churn: how the subscribers fared.
#[derive(Debug, Default)]
pub struct Churn {
    pub connected: AtomicUsize,
    /// Refused by the per-user limit (429): the gateway's documented answer.
    pub limited: AtomicUsize,
    pub failed: AtomicUsize,
    pub first_failure: Mutex<Option<String>>,
}

/// Checkout buyers that keep orders flowing under ws-churn.
const CHURN_BUYERS: usize = 4;

/// One subscriber: connect, subscribe to a product and to the buyer's
/// latest order's updates, hold a moment, drop; again until the end.
async fn churn_task(n: usize, until: Instant, churn: Arc<Churn>, seed: u64) {
    use futures::{SinkExt, StreamExt};
    use rand::{Rng, SeedableRng};
    let s = shared();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ n as u64);
    let buyer = &s.buyers[n % s.buyers.len()];
    while Instant::now() < until && !super::cancelled() {
        let started = Instant::now();
        match shopstream_labs::live::ws_connect(&s.base, &buyer.token).await {
            Ok(mut ws) => {
                s.rec.request(started, true);
                s.rec.headline(started.elapsed().as_micros() as u64);
                churn.connected.fetch_add(1, Ordering::Relaxed);
                let product = &s.lines[rng.random_range(0..s.lines.len())].0;
                let sub = serde_json::json!({"type": "subscribe", "channel": format!("product:{product}")});
                let _ = ws.send(shopstream_labs::live::text(&sub)).await;
                let hold = Duration::from_millis(rng.random_range(100..1_500));
                let _ = tokio::time::timeout(hold, async {
                    while let Some(Ok(_)) = ws.next().await {}
                })
                .await;
                let _ = ws.close(None).await;
            }
            Err(e) => {
                let text = e.to_string();
                let limited = text.contains("429");
                s.rec.request(started, limited);
                if limited {
                    churn.limited.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                } else {
                    churn.failed.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut f) = churn.first_failure.lock() {
                        f.get_or_insert(text);
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

/// The gateway's `shopstream_live_connections`.
async fn live_connections(http: &reqwest::Client, base: &str) -> Option<f64> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    Some(shopstream_platform::metrics::sum_series(
        &text,
        "shopstream_live_connections",
        &[],
    ))
}

/// The first `n` of `candidates` whose SKU holds no reservation now. A
/// flash sale's verdict takes the stock it starts from as fixed; an earlier
/// run's hold that lapsed mid-run would hand its units to this run's buyers
/// (more held than the stock) and take `reserved` below where it started.
async fn unheld(
    inv: &mut InventoryServiceClient<tonic::transport::Channel>,
    candidates: Vec<(String, String)>,
    n: usize,
) -> Vec<(String, String)> {
    let mut free = Vec::new();
    for (product, sku) in candidates {
        if stock_of(inv, &sku).await.reserved == 0 {
            free.push((product, sku));
            if free.len() == n {
                break;
            }
        }
    }
    free
}

/// Load, chaos, settle, verdict.
pub async fn run(
    ctx: &driver::Context,
    plan: &Plan,
    schedule: &chaos::Schedule,
) -> anyhow::Result<Result<Report, u8>> {
    let target = shopstream_labs::Target::from_ports(&ctx.ports);
    let base = target.gateway_url.clone();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    // The system must be up: exit 4 with the command otherwise.
    let up = http.get(format!("{base}/readyz")).send().await;
    if !up.is_ok_and(|r| r.status().is_success()) {
        eprintln!(
            "error: the gateway at {base} is not ready; start the system with `shopstream up` (and `shopstream seed`)"
        );
        return Ok(Err(exit::NOT_READY));
    }
    let run_id = format!("{:x}", super::now_ms());
    let mut inv = inventory(&ctx.ports).await?;
    let lines = match plan.scenario {
        "flash-sale" => {
            let candidates = products(&http, &base, FLASH_CANDIDATES).await?;
            if candidates.is_empty() {
                eprintln!("error: the catalog is empty: run `shopstream seed` first");
                return Ok(Err(exit::NOT_READY));
            }
            let free = unheld(&mut inv, candidates, FLASH_SKUS).await;
            if free.len() < FLASH_SKUS {
                eprintln!(
                    "error: only {} of the first {FLASH_CANDIDATES} products' SKUs hold no reservation (an earlier run's holds last up to their TTL, 600 s); wait for them to lapse, or start from a fresh stack (`shopstream down --purge`, `up`, `seed`)",
                    free.len()
                );
                return Ok(Err(exit::NOT_READY));
            }
            free
        }
        _ => products(&http, &base, CHECKOUT_PRODUCTS).await?,
    };
    if lines.is_empty() {
        eprintln!("error: the catalog is empty: run `shopstream seed` first");
        return Ok(Err(exit::NOT_READY));
    }
    // Stock: the flash sale shares --stock over its SKUs; the others never run out.
    let mut stock_before = BTreeMap::new();
    for (i, (_, sku)) in lines.iter().enumerate() {
        let units = if plan.scenario == "flash-sale" {
            plan.stock / lines.len() as i64
                + i64::from((i as i64) < plan.stock % lines.len() as i64)
        } else {
            CHECKOUT_STOCK
        };
        let st = set_available(&mut inv, sku, units).await?;
        stock_before.insert(sku.clone(), st);
    }
    if plan.scenario == "flash-sale" {
        let skus: Vec<&str> = lines.iter().map(|(_, sku)| sku.as_str()).collect();
        eprintln!(
            "test: flash-sale: {} units over the SKUs {} (none held a reservation)",
            plan.stock,
            skus.join(", ")
        );
    }
    let n_buyers = plan.users.clamp(1, MAX_BUYERS);
    eprintln!(
        "test: {}: preparing {n_buyers} buyer accounts",
        plan.scenario
    );
    let mut buyers = Vec::new();
    for i in 0..n_buyers {
        let (token, user_id) = buyer_session(&http, &base, &format!("{run_id}-{i}")).await?;
        buyers.push(Buyer { token, user_id });
    }
    // A system still working off a backlog (a fresh seed) would fail the
    // convergence check for reasons of its own: wait, bounded, until every
    // consumer group has caught up.
    let preflight = Instant::now();
    let mut lag = invariants::consumer_lag(&http, ctx.ports.services).await;
    while lag.as_ref().is_some_and(|(t, _)| *t > 0) && preflight.elapsed() < PREFLIGHT_MAX {
        if preflight.elapsed() > Duration::from_secs(2)
            && preflight.elapsed().as_secs().is_multiple_of(10)
        {
            eprintln!(
                "test: waiting for consumers to catch up before the load (lag {})",
                lag.as_ref().map_or(0, |l| l.0)
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        lag = invariants::consumer_lag(&http, ctx.ports.services).await;
    }
    let preflight_phase = Phase {
        name: "pre-flight: consumers caught up before the load".into(),
        took_ms: preflight.elapsed().as_millis() as u64,
    };
    // Links with wire faults go behind their proxies before the load starts.
    if let Err(e) = driver::prepare(ctx, schedule).await {
        driver::clear_all(ctx).await;
        return Err(e);
    }
    let t0 = Instant::now();
    let shared_state = Shared {
        scenario: plan.scenario,
        base: base.clone(),
        run_id: run_id.clone(),
        buyers,
        lines: lines.clone(),
        rec: Recorder::new(t0),
        told: Mutex::new(Vec::new()),
        holds: Mutex::new(Vec::new()),
        unconfirmed_holds: Mutex::new(Vec::new()),
        unconfirmed_releases: Mutex::new(Vec::new()),
        conversions_left: AtomicUsize::new(plan.orders),
        seq: AtomicUsize::new(0),
        missed_slots: AtomicUsize::new(0),
    };
    if SHARED.set(shared_state).is_err() {
        anyhow::bail!("one scenario per process");
    }
    let s = shared();

    // Goose, configured here and never from the command line.
    let mut cfg = GooseConfiguration::default();
    cfg.host = base.clone();
    cfg.quiet = 1;
    cfg.no_print_metrics = true;
    cfg.no_error_summary = true;
    cfg.no_telnet = true;
    cfg.no_websocket = true;
    cfg.timeout = Some("15".into());
    let rate = plan.rate.unwrap_or(match plan.scenario {
        "flash-sale" => 2_000,
        _ => (plan.users as u32).max(1),
    });
    let (scenario, name) = match plan.scenario {
        "flash-sale" => {
            cfg.users = Some(plan.users);
            cfg.hatch_rate = Some(rate.to_string());
            cfg.iterations = 1;
            (
                scenario!("flash-sale").register_transaction(transaction!(flash_reserve)),
                "reservation attempt (POST /reservations)",
            )
        }
        "checkout-spike" => (
            scenario!("checkout").register_transaction(transaction!(checkout)),
            "order placed → completed",
        ),
        "ws-churn" => {
            cfg.users = Some(CHURN_BUYERS);
            cfg.hatch_rate = Some(CHURN_BUYERS.to_string());
            cfg.run_time = plan.duration.as_secs().to_string();
            cfg.no_reset_metrics = true;
            (
                scenario!("checkout").register_transaction(transaction!(checkout)),
                "WebSocket connect (upgrade answered)",
            )
        }
        _ => {
            cfg.users = Some(plan.users);
            cfg.hatch_rate = Some(rate.to_string());
            cfg.run_time = plan.duration.as_secs().to_string();
            cfg.no_reset_metrics = true;
            (
                scenario!("browse").register_transaction(transaction!(browse)),
                "browse journey (6 reads)",
            )
        }
    };
    let mut attack = GooseAttack::initialize_with_config(cfg)?.register_scenario(scenario);
    if plan.scenario == "checkout-spike" {
        attack = *attack.set_default(
            GooseDefault::TestPlan,
            spike_plan(plan.users, plan.duration).as_str(),
        )?;
    }
    eprintln!(
        "test: {}: {} users for up to {} s{}",
        plan.scenario,
        plan.users,
        plan.duration.as_secs(),
        if schedule.items.is_empty() {
            String::new()
        } else {
            format!(", chaos: {schedule}")
        }
    );
    let churn = Arc::new(Churn::default());
    let live_before = live_connections(&http, &base).await;
    let mut churners = Vec::new();
    if plan.scenario == "ws-churn" {
        let until = Instant::now() + plan.duration;
        for n in 0..plan.users {
            churners.push(tokio::spawn(churn_task(n, until, churn.clone(), plan.seed)));
        }
    }
    let windows = Arc::new(Mutex::new(Vec::new()));
    let chaos_task = tokio::spawn(driver::run_schedule(
        ctx.clone(),
        schedule.clone(),
        t0,
        windows.clone(),
    ));
    // The load is bounded in time whatever Goose does: a flash sale with
    // iterations, the others with run time or a test plan, and this guard.
    let guard = plan.duration + Duration::from_secs(30);
    // Goose prints progress on stdout whatever its configuration says;
    // stdout is the report's, so it goes to stderr while Goose runs.
    let stdout_saved = StdoutToStderr::start();
    // `shopstream dash` shows the run's progress from this file.
    let progress = tokio::spawn(write_progress(
        progress_path(ctx.stack.root()),
        plan.scenario,
        plan.duration,
        t0,
    ));
    let metrics = tokio::select! {
        m = attack.execute() => Some(m),
        _ = tokio::time::sleep(guard) => {
            goose::trigger_killswitch("the scenario's time bound");
            None
        }
    };
    drop(stdout_saved);
    progress.abort();
    let _ = std::fs::remove_file(progress_path(ctx.stack.root()));
    for c in churners {
        let _ = c.await;
    }
    let load_s = t0.elapsed().as_secs_f64();
    // Chaos: whatever is left of the schedule is cut short; every fault is
    // cleared and every process it stopped is running again.
    chaos_task.abort();
    driver::clear_all(ctx).await;
    driver::close_cut_short(&windows, t0.elapsed().as_secs_f64());
    let mut report = Report {
        scenario: plan.scenario.to_string(),
        seed: plan.seed,
        started_at: super::rfc3339(super::now_ms() - (load_s * 1000.0) as i64),
        duration_s: load_s,
        params: BTreeMap::from([
            ("users".into(), plan.users.to_string()),
            ("rate".into(), rate.to_string()),
            (
                "chaos".into(),
                if plan.chaos.is_empty() {
                    "none".into()
                } else {
                    schedule.to_string()
                },
            ),
            (
                "build".into(),
                if cfg!(debug_assertions) {
                    "debug".into()
                } else {
                    "release".into()
                },
            ),
        ]),
        seconds: s.rec.seconds(),
        faults: windows.lock().map(|w| w.clone()).unwrap_or_default(),
        headline: s.rec.headline_summary(name, load_s),
        requests: Vec::new(),
        phases: Vec::new(),
        invariants: Vec::new(),
        notes: Vec::new(),
        interrupted: super::cancelled(),
    };
    if plan.scenario == "flash-sale" {
        report.params.insert("stock".into(), plan.stock.to_string());
        report.params.insert("skus".into(), lines.len().to_string());
    }
    match metrics {
        Some(Ok(m)) => report.requests = request_stats(&m),
        Some(Err(e)) => report.notes.push(format!("Goose ended with an error: {e}")),
        None => report.notes.push(format!(
            "the load did not end within {} s; stopped by the scenario's time bound",
            guard.as_secs()
        )),
    }
    if plan.scenario == "checkout-spike" {
        invariants::knee(
            &mut report,
            &s.rec.headline_windows(KNEE_WINDOW_S),
            s.missed_slots.load(Ordering::Relaxed),
        );
    }
    // Settle and judge.
    eprintln!(
        "test: load done in {load_s:.1} s; letting the system settle (at most {} s) and checking invariants",
        super::SETTLE_MAX.as_secs()
    );
    let verdict = invariants::Inputs {
        target: &target,
        http: &http,
        shared: s,
        stock_before: &stock_before,
        run_started_ms: super::now_ms() - (load_s * 1000.0) as i64,
        stack: &ctx.stack,
    };
    let (mut inv, settle) = invariants::check(&verdict).await;
    if plan.scenario == "ws-churn" {
        let (ok, limited, failed) = (
            churn.connected.load(Ordering::Relaxed),
            churn.limited.load(Ordering::Relaxed),
            churn.failed.load(Ordering::Relaxed),
        );
        let first = churn.first_failure.lock().ok().and_then(|f| f.clone());
        inv.push(super::report::Invariant {
            name: "every WebSocket upgrade answered: accepted, or refused by the per-user limit"
                .into(),
            pass: failed == 0 && ok > 0,
            detail: format!(
                "{ok} connected, {limited} refused by the per-user limit (429), {failed} failed{}",
                first.map(|f| format!(" (first: {f})")).unwrap_or_default()
            ),
        });
        // Closed connections leave the gateway's gauge where it was.
        let mut after = live_connections(&http, &base).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while after != live_before && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(250)).await;
            after = live_connections(&http, &base).await;
        }
        inv.push(super::report::Invariant {
            name: "no live connection leaks: the gateway holds what it held before".into(),
            pass: after.is_some() && after == live_before,
            detail: format!("shopstream_live_connections {live_before:?} before, {after:?} after"),
        });
    }
    report.invariants = inv;
    report.phases.push(preflight_phase);
    report.phases.push(Phase {
        name: "settle (after load and faults)".into(),
        took_ms: settle.as_millis() as u64,
    });
    Ok(Ok(report))
}

/// Points fd 1 at stderr until dropped, then restores it.
struct StdoutToStderr(Option<std::os::fd::OwnedFd>);

impl StdoutToStderr {
    fn start() -> StdoutToStderr {
        use std::{io::Write as _, os::fd::AsFd as _};
        let _ = std::io::stdout().flush();
        let saved = rustix::io::dup(std::io::stdout().as_fd()).ok();
        if saved.is_some() {
            let _ = rustix::stdio::dup2_stdout(std::io::stderr().as_fd());
        }
        StdoutToStderr(saved)
    }
}

impl Drop for StdoutToStderr {
    fn drop(&mut self) {
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        if let Some(fd) = self.0.take() {
            let _ = rustix::stdio::dup2_stdout(&fd);
        }
    }
}

/// checkout-spike's Goose test plan: background buyers, a slow ramp to
/// `peak` (the knee is read on it, so it climbs about 2 orders/s per
/// second at the defaults), a hold, back down, and a tail in which the
/// backlog drains. Each buyer places one order per [`SPIKE_PACE`].
fn spike_plan(peak: usize, d: Duration) -> String {
    let bg = (peak / 10).max(1);
    let s = d.as_secs().max(10);
    let part = |f: f64| ((s as f64 * f).round() as u64).max(1);
    format!(
        "{bg},{}s;{bg},{}s;{peak},{}s;{peak},{}s;{bg},{}s;{bg},{}s;0,1s",
        part(0.05),
        part(0.1),
        part(0.4),
        part(0.15),
        part(0.1),
        part(0.2)
    )
}

fn request_stats(m: &goose::metrics::GooseMetrics) -> Vec<RequestStat> {
    let mut out: Vec<RequestStat> = m
        .requests
        .values()
        .map(|a| {
            let times = &a.raw_data.times;
            let total: usize = times.values().sum();
            let q = |p: f64| {
                let want = (total as f64 * p).ceil() as usize;
                let mut seen = 0;
                for (ms, n) in times {
                    seen += n;
                    if seen >= want.max(1) {
                        return *ms as u64;
                    }
                }
                0
            };
            RequestStat {
                name: format!("{} {}", a.method, a.path),
                count: (a.success_count + a.fail_count) as u64,
                errors: a.fail_count as u64,
                p50_ms: q(0.50),
                p99_ms: q(0.99),
                statuses: a
                    .status_code_counts
                    .iter()
                    .map(|(k, v)| (*k, *v as u64))
                    .collect(),
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// `down --purge` → `up` → seed → first completed checkout, timed.
pub async fn cold_start(ctx: &driver::Context) -> anyhow::Result<Report> {
    let t0 = Instant::now();
    let mut phases = Vec::new();
    let mut notes = Vec::new();
    let mut timed = |name: &str, since: Instant| {
        phases.push(Phase {
            name: name.to_string(),
            took_ms: since.elapsed().as_millis() as u64,
        })
    };
    let exe = std::env::current_exe()?;
    let state = ctx.stack.root().to_path_buf();
    let run = |args: &[&str]| {
        std::process::Command::new(&exe)
            .args(args)
            .arg("--state-dir")
            .arg(&state)
            .output()
    };
    let t = Instant::now();
    let down = run(&["down", "--purge"])?;
    timed("down --purge", t);
    let t = Instant::now();
    let up = run(&["up", "--no-install"])?;
    timed("up (infrastructure and every service ready)", t);
    let mut ok = down.status.success() && up.status.success();
    if !up.status.success() {
        notes.push(format!(
            "up failed: {}",
            String::from_utf8_lossy(&up.stderr)
        ));
    }
    let t = Instant::now();
    let seed = run(&["seed", "--images", "0"])?;
    timed("seed (admin, products, stock; no pictures)", t);
    ok &= seed.status.success();
    let t = Instant::now();
    let target = shopstream_labs::Target::from_ports(&ctx.ports);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let first = first_checkout(&http, &target.gateway_url).await;
    timed("first checkout (placed → completed)", t);
    let first_ok = match &first {
        Ok(state) => state == "completed",
        Err(e) => {
            notes.push(format!("first checkout: {e}"));
            false
        }
    };
    // The report adds the phases up in a "total" row; `duration_s` is the same.
    let total = t0.elapsed();
    Ok(Report {
        scenario: "cold-start".into(),
        seed: ctx.seed,
        started_at: super::rfc3339(super::now_ms() - total.as_millis() as i64),
        duration_s: total.as_secs_f64(),
        params: BTreeMap::from([(
            "build".into(),
            if cfg!(debug_assertions) {
                "debug".into()
            } else {
                "release".into()
            },
        )]),
        seconds: Vec::new(),
        faults: Vec::new(),
        headline: None,
        requests: Vec::new(),
        phases,
        invariants: vec![
            super::report::Invariant {
                name: "the stack came up from nothing and was seeded".into(),
                pass: ok,
                detail: if ok {
                    "down --purge, up, seed all succeeded".into()
                } else {
                    "see notes".into()
                },
            },
            super::report::Invariant {
                name: "the first checkout completed".into(),
                pass: first_ok,
                detail: format!("{first:?}"),
            },
        ],
        notes,
        interrupted: super::cancelled(),
    })
}

async fn first_checkout(http: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let lines = products(http, base, 1).await?;
    let (product, sku) = lines
        .first()
        .ok_or_else(|| anyhow::anyhow!("no products after seed"))?;
    let (token, _) = buyer_session(http, base, &format!("cold-{:x}", super::now_ms())).await?;
    let r = http
        .post(format!("{base}/orders"))
        .bearer_auth(&token)
        .header("Idempotency-Key", format!("cold-{:x}", super::now_ms()))
        .json(&serde_json::json!({
            "items": [{"product_id": product, "sku_id": sku, "quantity": 1}],
            "payment_method": "pm_card_visa",
        }))
        .send()
        .await?;
    let o: serde_json::Value = r.json().await?;
    let id = o["order_id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no order: {o}"))?
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let o: serde_json::Value = http
            .get(format!("{base}/orders/{id}"))
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        if let Some(st @ ("completed" | "cancelled")) = o["state"].as_str() {
            return Ok(st.to_string());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("order {id} did not finish within 60 s")
}

/// Where a running scenario writes its progress (read by `shopstream dash`).
pub fn progress_path(state_dir: &std::path::Path) -> std::path::PathBuf {
    state_dir.join("scenario-progress.json")
}

/// Every second until aborted: the scenario's name, elapsed and planned
/// seconds, and the requests and errors so far (the recorder's counts).
async fn write_progress(
    path: std::path::PathBuf,
    name: &'static str,
    planned: Duration,
    t0: Instant,
) {
    loop {
        let (requests, errors) = shared()
            .rec
            .seconds()
            .iter()
            .fold((0, 0), |(r, e), s| (r + s.requests, e + s.errors));
        let doc = serde_json::json!({
            "name": name,
            "elapsed_s": t0.elapsed().as_secs_f64(),
            "duration_s": planned.as_secs_f64(),
            "requests": requests,
            "errors": errors,
        });
        let tmp = path.with_extension("json.tmp");
        if std::fs::write(&tmp, doc.to_string()).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keyed_write_is_asked_again_only_while_its_outcome_is_unknown() {
        assert!(ask_again(0, false) && ask_again(503, false));
        // A first 429 is an answer; after a 503 it says nothing.
        assert!(!ask_again(429, false) && ask_again(429, true));
        for answer in [200, 201, 404, 409, 422] {
            assert!(!ask_again(answer, true), "{answer}");
        }
        assert_eq!(
            (1..=4).map(backoff).collect::<Vec<_>>(),
            [500, 1_000, 2_000, 4_000].map(Duration::from_millis)
        );
    }
}
