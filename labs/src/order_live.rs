//! The lab `order-live`: two subscribers — one Server-Sent Events stream,
//! one WebSocket — watch one order. The lab places it, shows each saga step
//! arriving at both with its delivery latency, drops the WebSocket half-way
//! and resumes it from the last sequence number seen (losing nothing),
//! refunds the order and finds the refund e-mail in mail-sim, makes mail-sim
//! refuse every message for good and finds the next e-mail in the DLQ with
//! its reason, and ends with today's numbers from analytics and the
//! consistency check.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};

use crate::{
    consistency,
    kit::{Lab, LabError, Probe},
    live::{SseParser, Ws, terminal, text, tungstenite, ws_connect},
    stripe_sim::{self, StripeSim},
    target::{Gateway, Inventory, Target},
};

pub const NAME: &str = "order-live";
pub const TITLE: &str = "two screens follow one order live; e-mails retry into a DLQ";
pub const SUMMARY: &str = "Watch one order's saga steps arrive over SSE and a WebSocket, drop \
    and resume the WebSocket without losing a step, refund the order and read the e-mail in \
    mail-sim, then make mail-sim refuse mail and find the next e-mail in the DLQ.";

/// How long stripe-sim holds each call, so the steps come apart in time.
pub const STRIPE_LATENCY_MS: u64 = 700;
/// How long an order may take to end, and every step to reach both subscribers.
pub const ORDER_DEADLINE: Duration = Duration::from_secs(60);
/// How long an e-mail (or a dead letter, or today's numbers) may take.
pub const MAIL_DEADLINE: Duration = Duration::from_secs(45);
/// The WebSocket is dropped once it has received this many steps.
pub const DROP_AFTER: usize = 2;
pub const POLL: Duration = Duration::from_millis(250);
/// The consistency check judges records that have not changed for this long.
pub const CONSISTENCY_GRACE: Duration = Duration::from_secs(5);
const TEST_CARD: &str = "pm_card_visa";

const INTRO: &str = "A buyer often watches an order on two screens at once. Shopstream \
    delivers each step of the checkout saga live: orders writes the step and an \
    order.step_recorded event in one transaction; notifications turns the event into a live \
    update on a Redis channel; every gateway holds one subscription to that channel and \
    passes the update to its clients — here an SSE stream (GET /orders/{id}/stream) and a \
    WebSocket (GET /ws, subscribe to order:<id>).\n\n\
    Each update carries the step's sequence number. A client that loses its connection \
    comes back with the last number it saw (Last-Event-ID for SSE, `resume` on a \
    WebSocket) and the gateway re-reads what it missed from the order's step log, so a \
    dropped connection loses nothing. The lab drops the WebSocket on purpose to show it.\n\n\
    Then e-mail: notifications renders an e-mail for a confirmed, cancelled or refunded \
    order, queues it on the Redis stream email.outbound, and sends it over SMTP to \
    mail-sim (the SMTP sink of the native runtime), retrying temporary refusals and \
    moving permanent ones to a dead-letter stream with the reason.";

/// One step as a subscriber saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub seq: u64,
    pub step: String,
    pub state: String,
    /// Receipt − the step's commit, in ms.
    pub latency_ms: i64,
    /// Came through a resume after the drop.
    pub resumed: bool,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The steps a subscriber saw, in arrival order (shared with whoever shows them).
pub type Log = Arc<Mutex<Vec<Seen>>>;

fn push(log: &Log, seq: u64, data: &Value, committed_ms: i64, resumed: bool) -> bool {
    let seen = Seen {
        seq,
        step: data["step"].as_str().unwrap_or("?").to_string(),
        state: data["state"].as_str().unwrap_or("?").to_string(),
        latency_ms: now_ms() - committed_ms,
        resumed,
    };
    if let Ok(mut l) = log.lock() {
        l.push(seen);
    }
    terminal(&data["state"])
}

/// The SSE subscriber (`GET {base}/orders/{order}/stream` as the holder of
/// `token`): appends each step to `log` as it arrives, until the order ends.
/// It has no deadline of its own: the caller bounds it.
pub async fn follow_sse(
    base: String,
    token: String,
    order: String,
    log: Log,
) -> Result<(), String> {
    let client = reqwest::Client::new();
    let mut resp = client
        .get(format!("{base}/orders/{order}/stream"))
        .bearer_auth(token)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| format!("SSE: {e}"))?;
    let mut sse = SseParser::default();
    loop {
        let chunk = resp
            .chunk()
            .await
            .map_err(|e| format!("SSE: {e}"))?
            .ok_or("SSE: the stream ended before the order did")?;
        for (seq, data) in sse.push(&chunk) {
            let at = data["at_ms"].as_i64().unwrap_or(0);
            if push(&log, seq, &data, at, false) {
                return Ok(());
            }
        }
    }
}

/// Events of `order` from `ws` into `log` until the order ends, or until
/// `stop_after` steps arrived; the last sequence number seen.
async fn read_ws(
    ws: &mut Ws,
    log: &Log,
    resumed: bool,
    stop_after: Option<usize>,
) -> Result<(u64, bool), String> {
    let mut count = 0;
    while let Some(msg) = ws.next().await {
        let msg = msg.map_err(|e| format!("WebSocket: {e}"))?;
        let tungstenite::Message::Text(t) = msg else {
            continue;
        };
        let v: Value = serde_json::from_str(t.as_str()).map_err(|e| e.to_string())?;
        match v["type"].as_str() {
            Some("event") => {
                let last = v["seq"].as_u64().unwrap_or(0);
                count += 1;
                let committed = v["committed_ms"].as_i64().unwrap_or(0);
                if push(log, last, &v["data"], committed, resumed) {
                    return Ok((last, true));
                }
                if stop_after.is_some_and(|n| count >= n) {
                    return Ok((last, false));
                }
            }
            Some("error") => return Err(format!("WebSocket error frame: {v}")),
            _ => {}
        }
    }
    Err("the WebSocket closed before the order ended".into())
}

/// The WebSocket subscriber: subscribes, drops the connection after
/// [`DROP_AFTER`] steps, reconnects and resumes from the last one.
async fn follow_ws(
    base: String,
    token: String,
    order: String,
    log: Log,
    drops: Arc<Mutex<Vec<u64>>>,
) -> Result<(), String> {
    let channel = format!("order:{order}");
    let mut ws = ws_connect(&base, &token).await.map_err(|e| e.to_string())?;
    ws.send(text(&json!({"type": "subscribe", "channel": channel})))
        .await
        .map_err(|e| e.to_string())?;
    let (last, ended) = read_ws(&mut ws, &log, false, Some(DROP_AFTER)).await?;
    if ended {
        return Ok(());
    }
    // Drop it the hard way: no close handshake, as a lost network would.
    drop(ws);
    if let Ok(mut d) = drops.lock() {
        d.push(last);
    }
    tokio::time::sleep(Duration::from_millis(STRIPE_LATENCY_MS)).await;
    let mut ws = ws_connect(&base, &token).await.map_err(|e| e.to_string())?;
    ws.send(text(
        &json!({"type": "resume", "channel": channel, "after": last}),
    ))
    .await
    .map_err(|e| e.to_string())?;
    read_ws(&mut ws, &log, true, None).await.map(|_| ())
}

/// Pick the first seeded product and make `units` of its first SKU
/// available (on hand = held units + `units`, through inventory's operator
/// call SetStock); `(product_id, sku_id, available)`.
pub async fn stock_a_product(
    gateway: &Gateway,
    inventory: &Inventory,
    units: i64,
) -> Result<(String, String, i64), LabError> {
    let page = gateway.get("/products?limit=1").await?;
    let product = page["items"].get(0).ok_or_else(|| {
        LabError::NotReady("the catalog is empty: load the demo data with `shopstream seed`".into())
    })?;
    let product_id = product["id"].as_str().unwrap_or_default().to_string();
    let sku_id = product["skus"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let reserved = inventory.stock(&sku_id).await?.map_or(0, |s| s.reserved);
    let s = inventory.set_on_hand(&sku_id, reserved + units).await?;
    Ok((product_id, sku_id, s.available))
}

/// `POST /orders` as the buyer `gateway` is logged in as: one unit of
/// `sku_id`, paid with Stripe's test card that succeeds; the order's id.
pub async fn place_order(
    gateway: &Gateway,
    product_id: &str,
    sku_id: &str,
    idempotency_key: &str,
) -> Result<String, LabError> {
    let body = json!({
        "items": [{"product_id": product_id, "sku_id": sku_id, "quantity": 1}],
        "payment_method": TEST_CARD,
    });
    let a = gateway
        .send(
            reqwest::Method::POST,
            "/orders",
            Some(&body),
            &[("Idempotency-Key", idempotency_key)],
        )
        .await?;
    let id = a.body["order_id"].as_str().unwrap_or_default().to_string();
    if id.is_empty() {
        return Err(LabError::Failed(
            "POST /orders answered without order_id".into(),
        ));
    }
    Ok(id)
}

/// Refund everything captured of `payment_id` (`admin` logged in as an
/// admin): `POST /payments/{id}/refund`; the answer holds the payment after
/// the refund and the provider's refund id.
pub async fn refund_in_full(
    admin: &Gateway,
    payment_id: &str,
    reason: &str,
    idempotency_key: &str,
) -> Result<crate::target::Answer, LabError> {
    admin
        .send(
            reqwest::Method::POST,
            &format!("/payments/{payment_id}/refund"),
            Some(&json!({ "reason": reason })),
            &[("Idempotency-Key", idempotency_key)],
        )
        .await
}

/// The subject of the refund e-mail of `order_id` in mail-sim
/// (`GET {mail_sim_url}/messages`), if it arrived.
pub async fn refund_mail(
    http: &reqwest::Client,
    mail_sim_url: &str,
    order_id: &str,
) -> Result<Option<String>, LabError> {
    let url = format!("{mail_sim_url}/messages");
    let r = http
        .get(&url)
        .send()
        .await
        .map_err(|e| crate::target::unreachable("mail-sim", &url, &e))?;
    let status = r.status();
    let body = r.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(crate::target::status_error(&url, status, &body));
    }
    let list: Value =
        serde_json::from_str(&body).map_err(|e| LabError::Failed(format!("{url}: {e}")))?;
    // Subjects name the order by the first 8 characters of its id.
    let short: String = order_id.chars().take(8).collect();
    Ok(list["messages"].as_array().and_then(|m| {
        m.iter().find_map(|m| {
            m["subject"]
                .as_str()
                .filter(|s| s.starts_with("Refund of") && s.ends_with(&short))
                .map(str::to_owned)
        })
    }))
}

/// Today's (last row's) orders completed and refunds (all currencies) of a
/// `GET /admin/stats/daily` answer.
fn today_counts(v: &Value) -> (u64, i64) {
    let t = v["days"].as_array().and_then(|d| d.last());
    let completed = t.and_then(|t| t["orders_completed"].as_u64()).unwrap_or(0);
    let refunds = t
        .and_then(|t| t["refunds"].as_object())
        .map_or(0, |r| r.values().filter_map(Value::as_i64).sum());
    (completed, refunds)
}

fn seqs(log: &Log) -> Vec<u64> {
    log.lock()
        .map(|l| l.iter().map(|s| s.seq).collect())
        .unwrap_or_default()
}

pub async fn script(lab: Lab, target: Target) -> Result<(), LabError> {
    lab.narrate(INTRO);
    let mut buyer = Gateway::new(&target.gateway_url)?;
    let mut admin = Gateway::new(&target.gateway_url)?;
    let sim = StripeSim::new(&target.stripe_sim_url)?;
    let inventory = Inventory::new(&target.inventory_grpc_url)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| LabError::Failed(e.to_string()))?;
    let get_json = |url: String| {
        let http = http.clone();
        async move {
            let r = http
                .get(&url)
                .send()
                .await
                .map_err(|e| crate::target::unreachable("a service", &url, &e))?;
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            if !status.is_success() {
                return Err(crate::target::status_error(&url, status, &body));
            }
            serde_json::from_str::<Value>(&body)
                .map_err(|e| LabError::Failed(format!("{url}: {e}")))
        }
    };

    lab.action(
        "check that the gateway, mail-sim and notifications answer",
        async {
            buyer.ready().await?;
            let mail = get_json(format!("{}/messages", target.mail_sim_url)).await?;
            get_json(format!(
                "{}/email/dead-letters",
                target.notifications_http_url
            ))
            .await?;
            Ok((
                (),
                format!(
                    "gateway {}; mail-sim holds {} messages",
                    buyer.base(),
                    mail["messages"].as_array().map_or(0, Vec::len)
                ),
            ))
        },
    )
    .await?;

    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let email = format!("live-{}@labs.shopstream.dev", &suffix[..12]);
    let password = format!("lab-pw-{suffix}");
    lab.action("sign up and log in a fresh buyer", async {
        let id = buyer.signup_and_login(&email, &password).await?;
        Ok(((), format!("{email} (user {id})")))
    })
    .await?;
    lab.action("create a lab admin (for the refund and the stats)", async {
        let e = admin
            .login_as_new_admin(&target.identity_grpc_url, "live-lab")
            .await?;
        Ok(((), e))
    })
    .await?;
    // Today's numbers before the lab's orders, so the end can check what
    // they added on a stack that already had a busy day.
    let (completed_before, refunds_before) = today_counts(&admin.get("/admin/stats/daily").await?);
    let token = buyer
        .token()
        .ok_or_else(|| LabError::Failed("no access token after login".into()))?
        .to_string();

    let (product_id, sku_id) = lab
        .action("pick a seeded product and make 10 units available", async {
            let (product_id, sku_id, available) = stock_a_product(&buyer, &inventory, 10).await?;
            Ok((
                (product_id, sku_id.clone()),
                format!("sku {sku_id}: {available} available"),
            ))
        })
        .await?;

    lab.narrate(&format!(
        "So that the steps come apart in time (and the WebSocket can be dropped between \
         two of them), stripe-sim holds each call for {STRIPE_LATENCY_MS} ms. The lab clears \
         it when it ends."
    ));
    stripe_sim::inject(
        &lab,
        &sim,
        &format!("stripe-sim answers every call after {STRIPE_LATENCY_MS} ms"),
        &json!({"latency_ms": STRIPE_LATENCY_MS}),
    )
    .await?;

    let place = |key: String| {
        let (buyer, product_id, sku_id) = (buyer.clone(), product_id.clone(), sku_id.clone());
        async move { place_order(&buyer, &product_id, &sku_id, &key).await }
    };
    let order_id = lab
        .action("place an order: 1 unit, pm_card_visa", async {
            let id = place(format!("lab-live-{suffix}")).await?;
            Ok((id.clone(), format!("order {id}")))
        })
        .await?;

    lab.narrate(&format!(
        "Both subscribers start now. The WebSocket is dropped (no close handshake, as a \
         lost network would) after {DROP_AFTER} steps, reconnects and sends \
         {{\"type\":\"resume\",\"after\":<last seq>}}."
    ));
    let (sse_log, ws_log): (Log, Log) = (Arc::default(), Arc::default());
    let drops: Arc<Mutex<Vec<u64>>> = Arc::default();
    let sse_task = tokio::spawn(follow_sse(
        target.gateway_url.clone(),
        token.clone(),
        order_id.clone(),
        sse_log.clone(),
    ));
    let ws_task = tokio::spawn(follow_ws(
        target.gateway_url.clone(),
        token.clone(),
        order_id.clone(),
        ws_log.clone(),
        drops.clone(),
    ));
    let (sse_done, ws_done) = (sse_task, ws_task);
    let results = lab
        .action("follow the order on both until it ends", async {
            let both = async { (sse_done.await, ws_done.await) };
            let (sse, ws) = tokio::time::timeout(ORDER_DEADLINE, both)
                .await
                .map_err(|_| {
                    LabError::Failed(format!("the order did not end within {ORDER_DEADLINE:?}"))
                })?;
            let sse = sse.map_err(|e| LabError::Failed(e.to_string()))?;
            let ws = ws.map_err(|e| LabError::Failed(e.to_string()))?;
            let detail = format!(
                "SSE got {} steps, WebSocket {} (dropped after seq {:?})",
                seqs(&sse_log).len(),
                seqs(&ws_log).len(),
                drops.lock().map(|d| d.clone()).unwrap_or_default()
            );
            Ok(((sse, ws), detail))
        })
        .await?;
    lab.check(
        "the SSE subscriber followed to the end",
        results.0.is_ok(),
        "Ok",
        format!("{:?}", results.0),
    );
    lab.check(
        "the WebSocket subscriber followed to the end",
        results.1.is_ok(),
        "Ok",
        format!("{:?}", results.1),
    );

    let log = buyer.get(&format!("/orders/{order_id}/events")).await?;
    let steps: Vec<u64> = log["steps"]
        .as_array()
        .map(|s| s.iter().filter_map(|s| s["seq"].as_u64()).collect())
        .unwrap_or_default();
    lab.note("step  name           state        SSE ms  WebSocket ms");
    let sse = sse_log.lock().map(|l| l.clone()).unwrap_or_default();
    let ws = ws_log.lock().map(|l| l.clone()).unwrap_or_default();
    for seq in &steps {
        let s = sse.iter().find(|x| x.seq == *seq);
        let w = ws.iter().find(|x| x.seq == *seq);
        let (name, state) = s.or(w).map_or(("?".to_string(), "?".to_string()), |x| {
            (x.step.clone(), x.state.clone())
        });
        let ms = |x: Option<&Seen>| {
            x.map_or("missing".to_string(), |x| {
                format!(
                    "{}{}",
                    x.latency_ms,
                    if x.resumed { " (resumed)" } else { "" }
                )
            })
        };
        lab.note(&format!(
            "{seq:>4}  {name:<14} {state:<12} {:>6}  {}",
            ms(s),
            ms(w)
        ));
    }
    lab.assert_eq(
        "SSE received every step of the saga log, in order",
        steps.clone(),
        seqs(&sse_log),
    );
    lab.assert_eq(
        "the WebSocket, dropped and resumed, received every step once, in order",
        steps.clone(),
        seqs(&ws_log),
    );
    let live: Vec<i64> = sse
        .iter()
        .chain(ws.iter().filter(|w| !w.resumed))
        .map(|x| x.latency_ms)
        .collect();
    if let Some(max) = live.iter().max() {
        lab.measure("slowest live delivery (commit → client)", *max as f64, "ms");
    }

    // --- e-mail ---------------------------------------------------------------
    let order = buyer.get(&format!("/orders/{order_id}")).await?;
    let short = order_id.chars().take(8).collect::<String>();
    lab.checkpoint(
        "the order confirmation reached mail-sim",
        MAIL_DEADLINE,
        POLL,
        || {
            let (get_json, url, email, short) = (
                get_json,
                format!("{}/messages", target.mail_sim_url),
                email.clone(),
                short.clone(),
            );
            async move {
                let list = get_json(url).await?;
                let found = list["messages"].as_array().and_then(|m| {
                    m.iter().find(|m| {
                        m["to"][0] == email.as_str()
                            && m["subject"].as_str().is_some_and(|s| s.contains(&short))
                    })
                });
                Ok(match found {
                    Some(m) => Probe::Ready((), format!("{:?} to {email}", m["subject"])),
                    None => Probe::Waiting("not there yet".into()),
                })
            }
        },
    )
    .await?;
    let payment_id = order["payment_id"].as_str().unwrap_or_default().to_string();
    lab.narrate(
        "Now the admin refunds the order (POST /payments/{id}/refund). Payments publishes \
         payment.status_changed → refunded; notifications finds the order's owner and writes \
         the refund e-mail.",
    );
    lab.action("refund the order in full (admin)", async {
        let a = refund_in_full(&admin, &payment_id, "lab", &format!("lab-refund-{suffix}")).await?;
        Ok((
            (),
            format!(
                "HTTP {}: payment {} is {}",
                a.status.as_u16(),
                payment_id,
                a.body["payment"]["status"].as_str().unwrap_or("?")
            ),
        ))
    })
    .await?;
    lab.checkpoint(
        "the refund e-mail reached mail-sim",
        MAIL_DEADLINE,
        POLL,
        || {
            let (http, url, order_id) = (&http, &target.mail_sim_url, &order_id);
            async move {
                Ok(match refund_mail(http, url, order_id).await? {
                    Some(subject) => Probe::Ready((), format!("{subject:?}")),
                    None => Probe::Waiting("not there yet".into()),
                })
            }
        },
    )
    .await?;

    lab.narrate(
        "Next, mail-sim refuses every message with 550 (mailbox unavailable: retrying cannot \
         help). A second order completes; its confirmation must land in the DLQ \
         (email.outbound.dlq) with the server's answer as the reason — not retried forever.",
    );
    let faults_url = format!("{}/_sim/faults", target.mail_sim_url);
    let (fault_http, cleanup_http, cleanup_url) = (http.clone(), http.clone(), faults_url.clone());
    lab.fault(
        "mail-sim refuses every message with 550",
        async {
            fault_http
                .put(&faults_url)
                .json(&json!({"permanent": true}))
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| LabError::Failed(format!("mail-sim faults: {e}")))?;
            Ok("mail-sim: permanent 550".into())
        },
        "clear mail-sim's faults",
        move || async move {
            cleanup_http
                .delete(&cleanup_url)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| LabError::Failed(format!("mail-sim faults: {e}")))?;
            Ok("mail-sim: no faults".into())
        },
    )
    .await?;
    let second = lab
        .action("place a second order", async {
            let id = place(format!("lab-live-2-{suffix}")).await?;
            Ok((id.clone(), format!("order {id}")))
        })
        .await?;
    let dead = lab
        .checkpoint(
            "its confirmation is in the DLQ with the reason",
            ORDER_DEADLINE,
            POLL,
            || {
                let (get_json, url, second) = (
                    get_json,
                    format!("{}/email/dead-letters", target.notifications_http_url),
                    second.clone(),
                );
                async move {
                    let v = get_json(url).await?;
                    let found = v["dead_letters"]
                        .as_array()
                        .and_then(|d| d.iter().find(|d| d["order_id"] == second.as_str()).cloned());
                    Ok(match found {
                        Some(d) => Probe::Ready(
                            d.clone(),
                            format!(
                                "{} after {} attempt(s): {}",
                                d["template"].as_str().unwrap_or("?"),
                                d["attempts"],
                                d["reason"].as_str().unwrap_or("?")
                            ),
                        ),
                        None => Probe::Waiting("not dead-lettered yet".into()),
                    })
                }
            },
        )
        .await?;
    lab.check(
        "a permanent refusal is not retried",
        dead["attempts"] == 1,
        "1 attempt",
        format!("{} attempts", dead["attempts"]),
    );

    // --- today's numbers --------------------------------------------------------
    lab.narrate(
        "Last, what the admin sees for today (GET /admin/stats/daily): analytics rolls up \
         analytics.raw (what shoppers did), order.lifecycle and payment.events per day; today \
         is live, and a day closes at 00:05 UTC the next day.",
    );
    let today = lab
        .checkpoint(
            "today's numbers grew by both orders and the refund",
            MAIL_DEADLINE,
            POLL,
            || {
                let admin = admin.clone();
                async move {
                    let v = admin.get("/admin/stats/daily").await?;
                    let Some(t) = v["days"].as_array().and_then(|d| d.last()).cloned() else {
                        return Ok(Probe::Waiting("no days yet".into()));
                    };
                    let (completed, refunds) = today_counts(&v);
                    let done = completed >= completed_before + 2 && refunds > refunds_before;
                    let detail = format!(
                        "{}: {} visitors, {} orders placed, {} completed, revenue {}, refunds {}",
                        t["date"].as_str().unwrap_or("?"),
                        t["visitors"],
                        t["orders_placed"],
                        t["orders_completed"],
                        t["revenue"],
                        t["refunds"]
                    );
                    Ok(if done {
                        Probe::Ready(t, detail)
                    } else {
                        Probe::Waiting(detail)
                    })
                }
            },
        )
        .await?;
    if let Some(p95) = today["checkout_p95_ms"].as_f64() {
        lab.measure("today's checkout p95 (placed → completed)", p95, "ms");
    }

    // --- the consistency check ----------------------------------------------------
    lab.narrate(&format!(
        "Finally the consistency check (`shopstream consistency`): for every order of a time \
         window — here the orders placed since the lab started — it compares the order \
         (orders), the payment (payments), the payment intent (stripe-sim) and what analytics \
         counted, and reports the orders whose records disagree for longer than a grace \
         period — {} s here, 60 s by default.",
        CONSISTENCY_GRACE.as_secs()
    ));
    // Every order placed since the lab started (a second of slack).
    let since_ms = now_ms() - lab.elapsed().as_millis() as i64 - 1_000;
    lab.checkpoint(
        "orders, payments, stripe-sim and analytics agree on every recent order",
        MAIL_DEADLINE,
        Duration::from_secs(1),
        || {
            let target = target.clone();
            async move {
                let now = now_ms();
                let window = Duration::from_millis((now - since_ms).max(0) as u64);
                let r = consistency::check(
                    &target,
                    shopstream_platform::config::DEFAULT_TENANT,
                    window,
                    CONSISTENCY_GRACE,
                    now,
                )
                .await?;
                let summary = format!(
                    "{} orders checked, {} too recent to judge, {} disagree",
                    r.orders_checked,
                    r.orders_too_recent,
                    r.disagreements.len()
                );
                Ok(if !r.disagreements.is_empty() && r.orders_too_recent == 0 {
                    Probe::Failed(format!(
                        "{summary}: {}",
                        serde_json::to_string(&r.disagreements).unwrap_or_default()
                    ))
                } else if r.disagreements.is_empty() && r.orders_too_recent == 0 {
                    Probe::Ready((), summary)
                } else {
                    Probe::Waiting(summary)
                })
            }
        },
    )
    .await?;
    Ok(())
}
