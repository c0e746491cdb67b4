//! `bench --target live`: many live subscribers — half WebSocket
//! connections, half SSE streams — while orders flow, and two numbers: the
//! delay from each step's commit to its receipt by a client, and the
//! gateway's memory per 1,000 connections.
//!
//! Only an order's owner may follow it and a user may hold
//! `SHOPSTREAM_LIVE_PER_USER` connections (16 by default), so the
//! subscribers are spread over `subscribers / per_user` buyers, each with
//! `per_user / 2` WebSockets and `per_user / 2` SSE streams. Orders are
//! placed round-robin across the buyers at the order rate; each order is
//! followed by all its owner's connections: the WebSockets subscribe to
//! `order:<id>` (from sequence 0) and the SSE streams move to
//! `GET /orders/{id}/stream` once the previous order ended. A warm-up round
//! gives every buyer one order first, so every connection is open while the
//! measured orders flow.
//!
//! Latency counts only steps committed after the subscription was sent (the
//! earlier ones arrive by re-read and say nothing about fan-out); it runs
//! from the step's commit (`committed_ms` on a WebSocket event, the step's
//! `at_ms` on an SSE event, both written in the step's transaction) to
//! receipt. A lost update is a step of a measured order that one of its
//! owner's connections never received, checked against the order's step log
//! (`GET /orders/{id}/events`) once every order ended.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{Value, json};
use shopstream_labs::live::{SseParser, Ws, terminal, text, tungstenite, ws_connect};
use tokio::sync::mpsc;

use super::{Report, checkout};

/// Buyers signed up at once while preparing.
const SIGNUP_CONCURRENCY: usize = 4;
/// Connections opened at once.
const CONNECT_CONCURRENCY: usize = 32;
/// How long, after the last order, every order may take to end and reach
/// every subscriber.
const DRAIN: Duration = Duration::from_secs(60);
/// How long one order's SSE stream may stay open.
const ORDER_DEADLINE: Duration = Duration::from_secs(60);
/// Attempts to open one order's SSE stream, and the pause between them.
const SSE_ATTEMPTS: usize = 40;
const SSE_RETRY_AFTER: Duration = Duration::from_millis(250);
/// How long, once an order ended, its steps may take to reach every one of
/// its owner's connections.
const SETTLE_PER_ORDER: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct LiveArgs {
    pub subscribers: usize,
    pub per_user: usize,
    pub order_rate: u32,
    pub duration: Duration,
}

/// What the live benchmark measured, besides the latency report.
#[derive(Debug, Clone, Serialize)]
pub struct LiveSummary {
    pub buyers: usize,
    pub websockets: usize,
    pub sse_streams: usize,
    /// Connections open when memory was read.
    pub connections_measured: usize,
    pub orders: u64,
    pub orders_failed: u64,
    /// Steps of measured orders × their owner's connections.
    pub updates_expected: u64,
    pub updates_lost: u64,
    /// Receipts counted in the latency figures (committed after subscribing).
    pub live_samples: u64,
    /// SSE streams the gateway refused (429) and the client opened again.
    pub sse_retries: usize,
    /// Gateway PSS (KiB) before any connection and with all open.
    pub gateway_pss_kib_before: Option<u64>,
    pub gateway_pss_kib_with: Option<u64>,
    pub gateway_pss_kib_per_1000: Option<f64>,
}

/// (order, connection) → the step numbers it received.
type Received = Arc<Mutex<HashMap<(String, usize), BTreeSet<u64>>>>;
type Samples = Arc<Mutex<Histogram<u64>>>;

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

struct Shared {
    received: Received,
    samples: Samples,
    /// order → when its subscriptions were sent (µs since the epoch).
    subscribed_us: Mutex<HashMap<String, i64>>,
    open: AtomicUsize,
    /// SSE streams refused (429) and opened again.
    sse_retries: AtomicUsize,
}

impl Shared {
    fn record(&self, order: &str, conn: usize, seq: u64, committed_ms: i64) {
        let recv = now_us();
        if let Ok(mut r) = self.received.lock() {
            r.entry((order.to_string(), conn)).or_default().insert(seq);
        }
        let since = self
            .subscribed_us
            .lock()
            .ok()
            .and_then(|s| s.get(order).copied());
        if since.is_some_and(|s| committed_ms * 1000 >= s)
            && let Ok(mut h) = self.samples.lock()
        {
            let _ = h.record((recv - committed_ms * 1000).max(1) as u64);
        }
    }
}

/// One WebSocket: subscribes to each order it is sent, records its events,
/// unsubscribes once the order ended.
async fn ws_task(
    mut ws: Ws,
    conn: usize,
    mut orders: mpsc::UnboundedReceiver<String>,
    s: Arc<Shared>,
) {
    loop {
        tokio::select! {
            o = orders.recv() => {
                let Some(o) = o else { break };
                let m = json!({"type": "subscribe", "channel": format!("order:{o}"), "after": 0});
                if ws.send(text(&m)).await.is_err() {
                    break;
                }
            }
            m = ws.next() => {
                let Some(Ok(tungstenite::Message::Text(t))) = m else {
                    if matches!(m, Some(Ok(_))) { continue; }
                    break;
                };
                let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else { continue };
                if v["type"] != "event" { continue; }
                let Some(order) = v["channel"].as_str().and_then(|c| c.strip_prefix("order:")) else { continue };
                let (seq, committed) = (v["seq"].as_u64().unwrap_or(0), v["committed_ms"].as_i64().unwrap_or(0));
                s.record(order, conn, seq, committed);
                if terminal(&v["data"]["state"]) {
                    let m = json!({"type": "unsubscribe", "channel": format!("order:{order}")});
                    let _ = ws.send(text(&m)).await;
                }
            }
        }
    }
    s.open.fetch_sub(1, Ordering::Relaxed);
}

/// One SSE slot: follows each order it is sent until it ends, then keeps
/// that stream open (idle) until the next order comes.
async fn sse_task(
    client: reqwest::Client,
    base: String,
    token: String,
    conn: usize,
    mut orders: mpsc::UnboundedReceiver<String>,
    s: Arc<Shared>,
) {
    let mut held: Option<reqwest::Response> = None;
    while let Some(order) = orders.recv().await {
        if held.take().is_some() {
            s.open.fetch_sub(1, Ordering::Relaxed);
        }
        // As a browser's EventSource does, try again after a refusal: the
        // stream just dropped may still count against the user's connections
        // until the gateway next writes to it (a 429 meanwhile).
        let mut resp = None;
        for _ in 0..SSE_ATTEMPTS {
            match client
                .get(format!("{base}/orders/{order}/stream"))
                .bearer_auth(&token)
                .send()
                .await
                .and_then(|r| r.error_for_status())
            {
                Ok(r) => {
                    resp = Some(r);
                    break;
                }
                Err(_) => {
                    s.sse_retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(SSE_RETRY_AFTER).await;
                }
            }
        }
        let Some(mut resp) = resp else { continue };
        s.open.fetch_add(1, Ordering::Relaxed);
        let mut sse = SseParser::default();
        let read = async {
            loop {
                let Ok(Some(chunk)) = resp.chunk().await else {
                    return;
                };
                for (seq, d) in sse.push(&chunk) {
                    s.record(&order, conn, seq, d["at_ms"].as_i64().unwrap_or(0));
                    if terminal(&d["state"]) {
                        return;
                    }
                }
            }
        };
        let _ = tokio::time::timeout(ORDER_DEADLINE, read).await;
        held = Some(resp);
    }
    if held.is_some() {
        s.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The gateway's PSS in KiB, if its process is known and readable.
fn pss_kib(pid: Option<u32>) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{}/smaps_rollup", pid?)).ok()?;
    shopstream_runtime::process::parse_smaps_rollup(&text).map(|(_, pss)| pss)
}

/// A buyer's connections: where to send each of its orders.
struct Buyer {
    token: String,
    followers: Vec<mpsc::UnboundedSender<String>>,
}

/// Place one order for `b`; its id.
async fn place(
    client: &reqwest::Client,
    base: &str,
    b: &Buyer,
    line: &(String, String),
    key: &str,
) -> Option<String> {
    let body = json!({
        "items": [{"product_id": line.0, "sku_id": line.1, "quantity": 1}],
        "payment_method": "pm_card_visa",
    });
    let r = client
        .post(format!("{base}/orders"))
        .bearer_auth(&b.token)
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json::<Value>().await.ok()?["order_id"]
        .as_str()
        .map(str::to_owned)
}

pub async fn run(
    client: &reqwest::Client,
    base: &str,
    ports: &shopstream_platform::config::Ports,
    gateway_pid: Option<u32>,
    args: LiveArgs,
) -> anyhow::Result<Result<(Report, LiveSummary), u8>> {
    let setup = match checkout::prepare(client, base, ports, 1_000_000).await? {
        Ok(s) => s,
        Err(code) => return Ok(Err(code)),
    };
    let per_user = args.per_user.max(2);
    let n_buyers = args.subscribers.div_ceil(per_user).max(1);
    let (ws_per, sse_per) = (per_user / 2, per_user - per_user / 2);
    eprintln!(
        "bench: live: signing up {n_buyers} buyers ({ws_per} WebSockets + {sse_per} SSE streams each)"
    );
    let run_id = setup.run_id.clone();
    let tokens: Vec<anyhow::Result<String>> = futures::stream::iter(0..n_buyers)
        .map(|i| {
            let (c, b, r) = (
                client.clone(),
                base.to_string(),
                format!("{run_id}-live-{i}"),
            );
            async move { checkout::buyer(&c, &b, &r).await }
        })
        .buffered(SIGNUP_CONCURRENCY)
        .collect()
        .await;
    let tokens: Vec<String> = tokens.into_iter().collect::<anyhow::Result<_>>()?;
    let pss_before = pss_kib(gateway_pid);
    let shared = Arc::new(Shared {
        received: Received::default(),
        samples: Arc::new(Mutex::new(Histogram::new_with_bounds(1, 600_000_000, 3)?)),
        subscribed_us: Mutex::new(HashMap::new()),
        open: AtomicUsize::new(0),
        sse_retries: AtomicUsize::new(0),
    });
    eprintln!("bench: live: opening {} WebSockets", n_buyers * ws_per);
    let mut buyers = Vec::new();
    let mut conn = 0usize;
    for token in tokens {
        let mut followers = Vec::new();
        let sockets: Vec<Result<Ws, shopstream_labs::LabError>> = futures::stream::iter(0..ws_per)
            .map(|_| ws_connect(base, &token))
            .buffered(CONNECT_CONCURRENCY)
            .collect()
            .await;
        for ws in sockets {
            let (tx, rx) = mpsc::unbounded_channel();
            shared.open.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(ws_task(ws?, conn, rx, shared.clone()));
            followers.push(tx);
            conn += 1;
        }
        for _ in 0..sse_per {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(sse_task(
                client.clone(),
                base.to_string(),
                token.clone(),
                conn,
                rx,
                shared.clone(),
            ));
            followers.push(tx);
            conn += 1;
        }
        buyers.push(Buyer { token, followers });
    }
    let follow = |order: &str, b: &Buyer| {
        if let Ok(mut s) = shared.subscribed_us.lock() {
            s.insert(order.to_string(), now_us());
        }
        for f in &b.followers {
            let _ = f.send(order.to_string());
        }
    };
    // Warm-up: one order per buyer, so every SSE stream is open.
    let period = Duration::from_secs_f64(1.0 / f64::from(args.order_rate.max(1)));
    eprintln!(
        "bench: live: warm-up, one order per buyer at {}/s",
        args.order_rate
    );
    for (i, b) in buyers.iter().enumerate() {
        let line = &setup.lines[i % setup.lines.len()];
        if let Some(o) = place(client, base, b, line, &format!("live-{run_id}-w{i}")).await {
            follow(&o, b);
        }
        tokio::time::sleep(period).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let connections_measured = shared.open.load(Ordering::Relaxed);
    let pss_with = pss_kib(gateway_pid);
    if let Ok(mut h) = shared.samples.lock() {
        h.reset();
    }
    // The measured orders.
    eprintln!(
        "bench: live: {} open connections; orders at {}/s for {} s",
        connections_measured,
        args.order_rate,
        args.duration.as_secs()
    );
    let started = Instant::now();
    let (mut orders, mut failed) = (Vec::new(), 0u64);
    let mut n = 0usize;
    while started.elapsed() < args.duration {
        let scheduled = started + period.mul_f64(n as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        let b = &buyers[n % buyers.len()];
        let line = &setup.lines[n % setup.lines.len()];
        match place(client, base, b, line, &format!("live-{run_id}-{n}")).await {
            Some(o) => {
                follow(&o, b);
                orders.push((o, n % buyers.len()));
            }
            None => failed += 1,
        }
        n += 1;
    }
    // Wait until every measured order ended and every connection saw it end.
    let expected_steps = |o: &str, token: &str| {
        let (c, url, t) = (
            client.clone(),
            format!("{base}/orders/{o}/events"),
            token.to_string(),
        );
        async move {
            let v: Value = c
                .get(url)
                .bearer_auth(t)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let steps: Vec<(u64, bool)> = v["steps"]
                .as_array()?
                .iter()
                .map(|s| (s["seq"].as_u64().unwrap_or(0), terminal(&s["state"])))
                .collect();
            steps
                .iter()
                .any(|s| s.1)
                .then(|| steps.iter().map(|s| s.0).collect::<Vec<_>>())
        }
    };
    let deadline = Instant::now() + DRAIN;
    let mut lost = 0u64;
    let mut expected_total = 0u64;
    for (o, bi) in &orders {
        let b = &buyers[*bi];
        let first = *bi * per_user;
        // Asked at least once, however late: a slow order does not fail
        // the ones checked after it.
        let mut steps = expected_steps(o, &b.token).await;
        while steps.is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            steps = expected_steps(o, &b.token).await;
        }
        let Some(steps) = steps else {
            failed += 1;
            continue;
        };
        // Give the last step a moment to reach every connection.
        let all_in = || {
            let r = shared
                .received
                .lock()
                .map(|r| r.clone())
                .unwrap_or_default();
            (first..first + per_user)
                .map(|c| {
                    let got = r.get(&(o.clone(), c)).cloned().unwrap_or_default();
                    steps.iter().filter(|s| !got.contains(s)).count() as u64
                })
                .sum::<u64>()
        };
        let mut missing = all_in();
        let settle = deadline.max(Instant::now() + SETTLE_PER_ORDER);
        while missing > 0 && Instant::now() < settle {
            tokio::time::sleep(Duration::from_millis(100)).await;
            missing = all_in();
        }
        expected_total += (steps.len() * per_user) as u64;
        lost += missing;
    }
    let h = shared
        .samples
        .lock()
        .map(|h| h.clone())
        .map_err(|_| anyhow::anyhow!("latency histogram poisoned"))?;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let secs = args.duration.as_secs_f64();
    let report = Report {
        target: "live (step commit → client)".into(),
        rate_per_s: args.order_rate,
        duration_s: args.duration.as_secs(),
        requests: orders.len() as u64 + failed,
        ok: orders.len() as u64,
        errors: failed + lost,
        dropped: 0,
        achieved_per_s: orders.len() as f64 / secs,
        latency_ms_p50: ms(0.50),
        latency_ms_p95: ms(0.95),
        latency_ms_p99: ms(0.99),
        latency_ms_max: h.max() as f64 / 1000.0,
        in_flight: None,
        ratio_to_floor: None,
        ok_in_warmup: 0,
    };
    let summary = LiveSummary {
        buyers: buyers.len(),
        websockets: buyers.len() * ws_per,
        sse_streams: buyers.len() * sse_per,
        connections_measured,
        orders: orders.len() as u64,
        orders_failed: failed,
        updates_expected: expected_total,
        updates_lost: lost,
        live_samples: h.len(),
        sse_retries: shared.sse_retries.load(Ordering::Relaxed),
        gateway_pss_kib_before: pss_before,
        gateway_pss_kib_with: pss_with,
        gateway_pss_kib_per_1000: match (pss_before, pss_with) {
            (Some(b), Some(w)) if connections_measured > 0 => {
                Some((w as f64 - b as f64) * 1000.0 / connections_measured as f64)
            }
            _ => None,
        },
    };
    Ok(Ok((report, summary)))
}
