//! The lab `checkout-failure`: make every capture attempt fail in stripe-sim,
//! place an order, and watch the checkout saga compensate — the payment
//! intent is voided, the reserved stock comes back, the order ends CANCELLED
//! with `payment_failed` — then check all of it from the outside: the
//! gateway's REST API, stripe-sim's admin view, inventory's stock and the
//! `order.lifecycle` topic.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::{
    kit::{Lab, LabError, Probe},
    lifecycle::{self, Watcher},
    stripe_sim::{self, StripeSim},
    target::{Gateway, Inventory, Target},
};

pub const NAME: &str = "checkout-failure";
pub const TITLE: &str = "a payment that fails mid-checkout is compensated";
pub const SUMMARY: &str = "Force every capture to fail in stripe-sim, place an order, and watch \
    the checkout saga void the payment, return the stock and cancel the order.";

/// Units on hand made available for the lab's SKU.
pub const STOCK_AVAILABLE: i64 = 25;
/// The saga's capture activity tries this many times before giving up.
pub const CAPTURE_ATTEMPTS: u64 = 3;
/// How long the saga may take to reach CANCELLED.
pub const CANCEL_DEADLINE: Duration = Duration::from_secs(60);
/// How long `order.lifecycle` may lag behind the order's final state.
pub const LIFECYCLE_DEADLINE: Duration = Duration::from_secs(20);
pub const POLL: Duration = Duration::from_millis(250);
const TEST_CARD: &str = "pm_card_visa";

const INTRO: &str = "Checkout in Shopstream is a saga: a sequence of local steps, each in \
    its own service, with no distributed transaction around them. The orders service drives \
    it (on Temporal): reserve the stock in inventory → authorize a payment intent with \
    Stripe → capture the money → finalize (commit the stock). When a step fails for good \
    after something was already done, the saga compensates in reverse: it voids (cancels) \
    the uncaptured payment intent, releases the reserved stock, and the order ends \
    CANCELLED with a reason.\n\n\
    This lab makes stripe-sim (the Stripe emulator) fail every capture attempt. The \
    capture activity retries 3 times with backoff, then gives up; you will see \
    compensation put the stock back, and then check it from the outside: the order's \
    saga log, stripe-sim's payment intents, inventory's stock and the order.lifecycle \
    event stream.";

/// The order as the lab keeps track of it.
#[derive(Debug, Clone, Default)]
struct Watch {
    /// Saga steps already printed (by `seq`).
    printed: Vec<i64>,
    created_at_ms: i64,
    /// Lab-clock instants.
    cancelled_seen: Option<Instant>,
    stock_dipped: bool,
    stock_back_seen: Option<Instant>,
    min_available: Option<i64>,
}

pub async fn script(lab: Lab, target: Target) -> Result<(), LabError> {
    lab.narrate(INTRO);
    let mut gateway = Gateway::new(&target.gateway_url)?;
    let sim = StripeSim::new(&target.stripe_sim_url)?;
    let inventory = Inventory::new(&target.inventory_grpc_url)?;

    lab.action("check that the gateway and stripe-sim answer", async {
        gateway.ready().await?;
        let faults = sim.faults().await?;
        Ok((
            (),
            format!(
                "gateway ready at {}; stripe-sim at {} (faults now: {})",
                gateway.base(),
                sim.base(),
                stripe_sim::describe(&faults)
            ),
        ))
    })
    .await?;

    // --- a learner, a product, known stock -------------------------------
    lab.narrate(
        "First a fresh learner account, signed up and logged in through the gateway like \
         any shopper; then a product from the seeded catalog.",
    );
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let email = format!("learner-{}@labs.shopstream.dev", &suffix[..12]);
    let password = format!("lab-pw-{suffix}");
    lab.action("sign up and log in a fresh learner", async {
        let id = gateway.signup_and_login(&email, &password).await?;
        Ok(((), format!("{email} (user {id})")))
    })
    .await?;

    let (product_id, sku_id) = lab
        .action("pick a seeded product and SKU", async {
            let page = gateway.get("/products?limit=1").await?;
            let product = page["items"].get(0).ok_or_else(|| {
                LabError::NotReady(
                    "the catalog is empty: load the demo data with `shopstream seed`".into(),
                )
            })?;
            let product_id = product["id"].as_str().unwrap_or_default().to_string();
            let sku = product["skus"].get(0).ok_or_else(|| {
                LabError::NotReady(format!(
                    "product {product_id} has no SKU: reload the demo data with `shopstream seed`"
                ))
            })?;
            let sku_id = sku["id"].as_str().unwrap_or_default().to_string();
            let price = &sku["price"];
            let detail = format!(
                "{:?}: product {product_id}, sku {sku_id}, price {} {}",
                product["title"].as_str().unwrap_or_default(),
                price["amount_minor"],
                price["currency"].as_str().unwrap_or_default()
            );
            Ok(((product_id, sku_id), detail))
        })
        .await?;

    lab.narrate(&format!(
        "Stock lives in inventory. Setting it through the gateway (PUT /admin/inventory/...) \
         needs an admin token, and a learner has none; so the lab, an operator tool like \
         `shopstream seed`, calls inventory's gRPC SetStock directly. It makes exactly \
         {STOCK_AVAILABLE} units available (on hand = held units + {STOCK_AVAILABLE}), so the \
         end of the lab can check that every unit came back."
    ));
    let start_available = lab
        .action(
            &format!("make {STOCK_AVAILABLE} units of the SKU available"),
            async {
                let before = inventory.stock(&sku_id).await?;
                let reserved = before.as_ref().map_or(0, |s| s.reserved);
                let s = inventory
                    .set_on_hand(&sku_id, reserved + STOCK_AVAILABLE)
                    .await?;
                Ok((
                    s.available,
                    format!(
                        "on hand {}, reserved {}, available {}, committed {}",
                        s.on_hand, s.reserved, s.available, s.committed
                    ),
                ))
            },
        )
        .await?;

    // --- listen, break, order ---------------------------------------------
    lab.narrate(
        "Every state change of an order is also published to the Kafka topic \
         order.lifecycle (key = order id, so one order's events stay in order). The lab \
         reads it with a consumer group of its own, before placing the order.",
    );
    let group = format!("lab-{NAME}-{}", &suffix[..12]);
    let watcher = lab
        .action("start reading order.lifecycle", async {
            let w = Watcher::start(&target.kafka_brokers, group.clone()).await?;
            Ok((
                w,
                format!("consumer group {group} on {}", target.kafka_brokers),
            ))
        })
        .await?;
    let result = after_watcher_started(
        &lab,
        &gateway,
        &sim,
        &inventory,
        &watcher,
        Setup {
            product_id,
            sku_id,
            start_available,
        },
    )
    .await;
    watcher.stop().await;
    result
}

struct Setup {
    product_id: String,
    sku_id: String,
    start_available: i64,
}

async fn after_watcher_started(
    lab: &Lab,
    gateway: &Gateway,
    sim: &StripeSim,
    inventory: &Inventory,
    watcher: &Watcher,
    setup: Setup,
) -> Result<(), LabError> {
    lab.narrate(&format!(
        "Now the fault: stripe-sim will answer the next {CAPTURE_ATTEMPTS} capture calls with \
         HTTP 500, before doing anything (so nothing is captured and a retry would run for \
         real). Whatever happens next, the lab clears the faults when it ends."
    ));
    stripe_sim::inject(
        lab,
        sim,
        &format!("stripe-sim fails the next {CAPTURE_ATTEMPTS} captures with HTTP 500"),
        &json!({"fail_next": {
            "operation": "capture", "status": 500, "count": CAPTURE_ATTEMPTS
        }}),
    )
    .await?;

    lab.narrate(
        "The order: one unit, paid with Stripe's test card pm_card_visa (which would \
         normally succeed). The Idempotency-Key makes the request safe to retry: the same \
         key with the same body returns the same order instead of a second one.",
    );
    let idempotency_key = format!("lab-{}", uuid::Uuid::new_v4());
    let order_body = json!({
        "items": [{"product_id": setup.product_id, "sku_id": setup.sku_id, "quantity": 1}],
        "payment_method": TEST_CARD,
    });
    let placed_at = Instant::now();
    let order = lab
        .action("place an order: 1 unit, pm_card_visa", async {
            let a = gateway
                .send(
                    reqwest::Method::POST,
                    "/orders",
                    Some(&order_body),
                    &[("Idempotency-Key", &idempotency_key)],
                )
                .await
                .map_err(|e| match e {
                    LabError::Failed(m) if m.contains("HTTP 404") => LabError::NotReady(format!(
                        "{m} — this gateway has no checkout API yet (is the orders service deployed?)"
                    )),
                    e => e,
                })?;
            let o = a.body;
            let detail = format!(
                "HTTP {}: order {} is {}, total {} {}",
                a.status.as_u16(),
                o["order_id"].as_str().unwrap_or("?"),
                o["state"].as_str().unwrap_or("?"),
                o["total_minor"],
                o["currency"].as_str().unwrap_or_default()
            );
            Ok((o, detail))
        })
        .await?;
    let order_id = order["order_id"].as_str().unwrap_or_default().to_string();
    if order_id.is_empty() {
        return Err(LabError::Failed(
            "POST /orders answered without order_id".into(),
        ));
    }

    // --- watch the saga -----------------------------------------------------
    lab.narrate(
        "The saga runs asynchronously. The lab polls GET /orders/{id}/events and prints each \
         saga step as it appears: sequence number, step, outcome, the order's state after \
         it, attempts, and milliseconds since the order was created.",
    );
    let watch = Arc::new(Mutex::new(Watch {
        created_at_ms: order["created_at_ms"].as_i64().unwrap_or(0),
        ..Watch::default()
    }));
    let final_view = lab
        .checkpoint(
            "the order ends CANCELLED with cancel_reason payment_failed",
            CANCEL_DEADLINE,
            POLL,
            || {
                probe_order(
                    lab.clone(),
                    gateway.clone(),
                    inventory.clone(),
                    order_id.clone(),
                    setup.sku_id.clone(),
                    setup.start_available,
                    watch.clone(),
                )
            },
        )
        .await?;
    let (order, events) = final_view;
    let steps: Vec<Value> = events["steps"].as_array().cloned().unwrap_or_default();

    // --- check from the outside -------------------------------------------
    lab.narrate(
        "Now the checks, each from another public surface: inventory's stock, stripe-sim's \
         record of the payment intent, the event stream, and the saga log.",
    );
    let available = inventory.stock(&setup.sku_id).await?.map(|s| s.available);
    lab.check(
        "available stock is back to its starting value",
        available == Some(setup.start_available),
        format!("{} available", setup.start_available),
        available.map_or("no stock row for the SKU".into(), |a| {
            format!("{a} available")
        }),
    );

    let intents = sim.payment_intents().await?;
    let payment_id = order["payment_id"].as_str().unwrap_or_default();
    let mine = stripe_sim::intents_of(&intents, &order_id, payment_id);
    let statuses: Vec<String> = mine
        .iter()
        .map(|pi| {
            format!(
                "{} {}",
                pi["id"].as_str().unwrap_or("?"),
                pi["status"].as_str().unwrap_or("?")
            )
        })
        .collect();
    lab.check(
        "stripe-sim captured nothing: the order's payment intent is canceled",
        !mine.is_empty() && mine.iter().all(|pi| pi["status"] == "canceled"),
        "at least one intent for the order, every one canceled",
        if statuses.is_empty() {
            format!(
                "no intent whose metadata names order {order_id} (of {} intents)",
                intents.len()
            )
        } else {
            statuses.join(", ")
        },
    );

    lab.checkpoint(
        "order.lifecycle delivered the order's cancelled event",
        LIFECYCLE_DEADLINE,
        POLL,
        || {
            let events = watcher.events_of(&order_id);
            let (read, error) = watcher.stats();
            async move {
                let states = lifecycle::distinct_states(&events);
                Ok(if states.iter().any(|s| s == "cancelled") {
                    Probe::Ready((), format!("states seen: {}", states.join(" → ")))
                } else if states.is_empty() {
                    Probe::Waiting(format!(
                        "no event for this order yet ({read} read from the topic{})",
                        error
                            .map(|e| format!("; last broker error: {e}"))
                            .unwrap_or_default()
                    ))
                } else {
                    Probe::Waiting(format!("states so far: {}", states.join(" → ")))
                })
            }
        },
    )
    .await?;
    let received = watcher.events_of(&order_id);
    let states = lifecycle::distinct_states(&received).join(" → ");
    let expected_states = "pending → reserved → authorized → cancelled";
    lab.check(
        "order.lifecycle shows pending → reserved → authorized → cancelled",
        states == expected_states,
        expected_states,
        states,
    );
    let cancelled_reason = received
        .iter()
        .find(|r| r.event.state == "cancelled")
        .and_then(|r| r.event.cancel_reason.clone())
        .unwrap_or_else(|| "none".into());
    lab.check(
        "the cancelled event carries cancel_reason payment_failed",
        cancelled_reason == "payment_failed",
        "payment_failed",
        cancelled_reason,
    );

    let capture = steps
        .iter()
        .filter(|s| s["step"] == "capture")
        .max_by_key(|s| (s["outcome"] == "failed", s["seq"].as_i64().unwrap_or(0)));
    let attempts = capture.and_then(|s| s["attempts"].as_u64());
    lab.check(
        "the capture step took 3 attempts before the saga gave up",
        attempts == Some(CAPTURE_ATTEMPTS),
        format!("{CAPTURE_ATTEMPTS} attempts"),
        match (capture, attempts) {
            (None, _) => "no capture step in the saga log".to_string(),
            (Some(s), a) => format!(
                "{} attempts ({})",
                a.map_or("?".into(), |a| a.to_string()),
                s["outcome"].as_str().unwrap_or("?")
            ),
        },
    );

    lab.narrate(
        "Idempotency: sending the same request again with the same Idempotency-Key must not \
         create a second order (or a second charge); the gateway answers 200 with the stored \
         order and Idempotent-Replayed: true.",
    );
    let replay = gateway
        .send(
            reqwest::Method::POST,
            "/orders",
            Some(&order_body),
            &[("Idempotency-Key", &idempotency_key)],
        )
        .await?;
    let replayed = replay
        .headers
        .get("idempotent-replayed")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("absent")
        .to_string();
    lab.check(
        "replaying POST /orders with the same Idempotency-Key returns the same order",
        replay.status.as_u16() == 200
            && replayed.eq_ignore_ascii_case("true")
            && replay.body["order_id"] == order_id.as_str(),
        format!("HTTP 200, Idempotent-Replayed: true, order {order_id}"),
        format!(
            "HTTP {}, Idempotent-Replayed: {replayed}, order {}",
            replay.status.as_u16(),
            replay.body["order_id"].as_str().unwrap_or("?")
        ),
    );

    // --- measure --------------------------------------------------------------
    lab.narrate(
        "What it cost: the saga's own clock (the at_ms of its steps) and the lab's view \
         from outside, which includes polling intervals.",
    );
    let at = |step: &str, outcome: Option<&str>| {
        steps
            .iter()
            .filter(|s| s["step"] == step && outcome.is_none_or(|o| s["outcome"] == o))
            .filter_map(|s| s["at_ms"].as_i64())
            .min()
    };
    if let (Some(failed), Some(released)) = (at("capture", Some("failed")), at("release", None)) {
        lab.measure(
            "capture failed → stock released (saga clock)",
            (released - failed) as f64,
            "ms",
        );
    }
    let created = order["created_at_ms"].as_i64().unwrap_or(0);
    let updated = order["updated_at_ms"].as_i64().unwrap_or(0);
    if created > 0 && updated >= created {
        lab.measure(
            "order created → cancelled (order timestamps)",
            (updated - created) as f64,
            "ms",
        );
    }
    let w = watch.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some(t) = w.cancelled_seen {
        lab.measure(
            "order placed → cancelled (seen by the lab)",
            t.duration_since(placed_at).as_millis() as f64,
            "ms",
        );
    }
    if let Some(t) = w.stock_back_seen {
        lab.measure(
            "order placed → stock back (seen by the lab)",
            t.duration_since(placed_at).as_millis() as f64,
            "ms",
        );
    }
    if let Some(min) = w.min_available {
        lab.measure("lowest available stock seen", min as f64, "units");
    }
    Ok(())
}

/// One poll of the order: print new saga steps, sample the stock, decide.
async fn probe_order(
    lab: Lab,
    gateway: Gateway,
    inventory: Inventory,
    order_id: String,
    sku_id: String,
    start_available: i64,
    watch: Arc<Mutex<Watch>>,
) -> Result<Probe<(Value, Value)>, LabError> {
    let events = gateway.get(&format!("/orders/{order_id}/events")).await?;
    let order = gateway.get(&format!("/orders/{order_id}")).await?;
    let stock = inventory.stock(&sku_id).await?;
    let now = Instant::now();
    let state = order["state"].as_str().unwrap_or("?").to_string();
    let reason = order["cancel_reason"].as_str().unwrap_or("").to_string();
    let steps = events["steps"].as_array().cloned().unwrap_or_default();
    let released = steps.iter().any(|s| s["step"] == "release");
    {
        let mut w = watch.lock().unwrap_or_else(|p| p.into_inner());
        for s in &steps {
            let seq = s["seq"].as_i64().unwrap_or(-1);
            if w.printed.contains(&seq) {
                continue;
            }
            w.printed.push(seq);
            let at = s["at_ms"].as_i64().unwrap_or(0);
            lab.note(&format!(
                "#{seq:<2} {:<13} {:<11} state {:<10} attempts {}  +{}ms  {}",
                s["step"].as_str().unwrap_or("?"),
                s["outcome"].as_str().unwrap_or("?"),
                s["state"].as_str().unwrap_or("?"),
                s["attempts"].as_u64().unwrap_or(0),
                if w.created_at_ms > 0 {
                    at - w.created_at_ms
                } else {
                    0
                },
                s["detail"].as_str().unwrap_or_default()
            ));
        }
        if let Some(s) = &stock {
            w.min_available = Some(w.min_available.map_or(s.available, |m| m.min(s.available)));
            if s.available < start_available {
                w.stock_dipped = true;
            } else if w.stock_back_seen.is_none() && (w.stock_dipped || state == "cancelled") {
                w.stock_back_seen = Some(now);
            }
        }
        if state == "cancelled" && w.cancelled_seen.is_none() {
            w.cancelled_seen = Some(now);
        }
    }
    Ok(match state.as_str() {
        "cancelled" if reason == "payment_failed" && released => Probe::Ready(
            (order, events),
            "cancelled, cancel_reason payment_failed, stock released".into(),
        ),
        "cancelled" if reason == "payment_failed" => {
            Probe::Waiting("cancelled; waiting for the release step".into())
        }
        "cancelled" => Probe::Failed(format!(
            "the order was cancelled with cancel_reason {reason:?}, not payment_failed ({})",
            order["cancel_detail"].as_str().unwrap_or_default()
        )),
        "completed" | "captured" => Probe::Failed(format!(
            "the order reached {state}: the capture went through — were the faults cleared \
             by someone, or does the capture activity retry more than {CAPTURE_ATTEMPTS} times?"
        )),
        other => Probe::Waiting(format!("order is {other}")),
    })
}
