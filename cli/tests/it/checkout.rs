//! Checkout end to end over the real processes (gateway, orders with its
//! Temporal worker, inventory, payments, stripe-sim) on a stack of its own:
//! one Idempotency-Key → one order and one charge; the orders process killed
//! (SIGKILL) while a capture is in flight → the saga finishes after a restart
//! with exactly one capture; a webhook with a bad signature → 400 and nothing
//! changes; live updates of one order reach an SSE client of the stack's
//! gateway and a WebSocket client of a second gateway process ([`super::live`]);
//! then the feed: purchases left out, activities and bad input at the
//! gateway, the feed down (503) and Redis down (a degraded page).

use std::{path::Path, time::Duration};

use serde_json::{Value, json};
use shopstream_platform::config::Ports;
use shopstream_runtime::{Kind, Stack, testkit};

use super::{BIN, Cleanup, temp_dir, text};

/// This module's stack: 20xxx (see [`super::ports`]).
const PORTS: Ports = super::ports(20);

fn cli(state: &Path, args: &[&str]) -> std::process::Output {
    super::cli(state, &PORTS, args)
}

fn url(kind: Kind, path: &str) -> String {
    let (http, _) = kind.service_addrs(&PORTS).unwrap();
    format!("http://{http}{path}")
}

struct Api {
    http: reqwest::Client,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        url: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut req = self.http.request(method.clone(), url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.unwrap();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, value, headers)
    }

    async fn get(&self, url: &str, token: Option<&str>) -> Value {
        let (s, v, _) = self.call(reqwest::Method::GET, url, token, &[], None).await;
        assert_eq!(s, 200, "GET {url}: {v}");
        v
    }

    async fn token(&self, email: &str, password: &str, signup: bool) -> String {
        let creds = json!({"email": email, "password": password});
        if signup {
            let (s, v, _) = self
                .call(
                    reqwest::Method::POST,
                    &url(Kind::Gateway, "/auth/signup"),
                    None,
                    &[],
                    Some(creds.clone()),
                )
                .await;
            assert!(s == 201 || s == 200, "signup: {s} {v}");
        }
        let (s, v, _) = self
            .call(
                reqwest::Method::POST,
                &url(Kind::Gateway, "/auth/login"),
                None,
                &[],
                Some(creds),
            )
            .await;
        assert_eq!(s, 200, "login: {v}");
        v["access_token"].as_str().unwrap().to_string()
    }

    /// Poll the order until it is completed or cancelled.
    /// Poll the order until its state is one of `states`.
    async fn wait_state(
        &self,
        order_id: &str,
        token: &str,
        states: &[&str],
        within: Duration,
    ) -> Value {
        let url = url(Kind::Gateway, &format!("/orders/{order_id}"));
        testkit::eventually(
            &format!("order {order_id} is {states:?}"),
            within,
            || async {
                let o = self.get(&url, Some(token)).await;
                o["state"]
                    .as_str()
                    .is_some_and(|s| states.contains(&s))
                    .then_some(o)
            },
        )
        .await
    }

    /// Poll the order until the saga ended (completed or cancelled).
    async fn settle(&self, order_id: &str, token: &str, within: Duration) -> Value {
        self.wait_state(order_id, token, &["completed", "cancelled"], within)
            .await
    }

    /// stripe-sim's intents for one order.
    async fn intents(&self, order_id: &str) -> Vec<Value> {
        let all = self
            .get(&url(Kind::StripeSim, "/_sim/payment_intents"), None)
            .await;
        all["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|pi| pi["metadata"]["order_id"] == order_id)
            .cloned()
            .collect()
    }

    async fn faults(&self, faults: Value) {
        let (s, v, _) = self
            .call(
                reqwest::Method::POST,
                &url(Kind::StripeSim, "/_sim/faults"),
                None,
                &[],
                Some(faults),
            )
            .await;
        assert_eq!(s, 200, "faults: {v}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn checkout_is_idempotent_survives_a_killed_worker_and_rejects_forged_webhooks() {
    let state = temp_dir("checkout-e2e");
    let _cleanup = Cleanup(state.clone());
    let out = cli(&state, &["up", "--json", "--no-install"]);
    assert_eq!(out.status.code(), Some(0), "up: {}", text(&out));
    let out = cli(&state, &["seed", "--json"]);
    assert_eq!(out.status.code(), Some(0), "seed: {}", text(&out));
    let seeded: Value = serde_json::from_slice(&out.stdout).unwrap();
    let api = Api {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap(),
    };
    let admin = api
        .token(
            seeded["admin_email"].as_str().unwrap(),
            seeded["admin_password"].as_str().unwrap(),
            false,
        )
        .await;
    let buyer = api
        .token("buyer@example.com", "correct horse battery", true)
        .await;

    let products = api
        .get(&url(Kind::Gateway, "/products?limit=1"), None)
        .await;
    let product = &products["items"][0];
    let product_id = product["id"].as_str().unwrap().to_string();
    let sku_id = product["skus"][0]["id"].as_str().unwrap().to_string();
    let (s, v, _) = api
        .call(
            reqwest::Method::PUT,
            &url(Kind::Gateway, &format!("/admin/inventory/{sku_id}")),
            Some(&admin),
            &[],
            Some(json!({"on_hand": 50})),
        )
        .await;
    assert_eq!(s, 200, "set stock: {v}");
    let body = json!({
        "items": [{"product_id": product_id, "sku_id": sku_id, "quantity": 1}],
        "payment_method": "pm_card_visa",
    });
    let place = |key: &'static str| {
        let api = &api;
        let body = body.clone();
        let buyer = buyer.clone();
        async move {
            api.call(
                reqwest::Method::POST,
                &url(Kind::Gateway, "/orders"),
                Some(&buyer),
                &[("Idempotency-Key", key)],
                Some(body),
            )
            .await
        }
    };

    // 1. One key, submitted five times at once and once more later: one order, one charge.
    let results = futures::future::join_all((0..5).map(|_| place("e2e-same-key"))).await;
    let ids: Vec<_> = results
        .iter()
        .map(|(s, v, _)| {
            // 202: stored, its saga not started within the request (a busy Temporal).
            assert!(matches!(*s, 200..=202), "{s} {v}");
            v["order_id"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    // One of the five created the order; the others were answered as replays.
    let created = results
        .iter()
        .filter(|(_, _, h)| h.get("idempotent-replayed").is_none())
        .count();
    assert_eq!(created, 1, "{results:?}");
    let order = api.settle(&ids[0], &buyer, Duration::from_secs(60)).await;
    assert_eq!(order["state"], "completed", "{order:#}");
    let (s, again, headers) = place("e2e-same-key").await;
    assert_eq!(
        (s, again["order_id"].as_str()),
        (200, Some(ids[0].as_str()))
    );
    assert_eq!(headers["idempotent-replayed"], "true");
    let intents = api.intents(&ids[0]).await;
    assert_eq!(intents.len(), 1, "{intents:#?}");
    assert_eq!(intents[0]["status"], "succeeded");
    assert_eq!(intents[0]["amount_received"], order["total_minor"]);
    let stock = api
        .get(&url(Kind::Gateway, &format!("/inventory/{sku_id}")), None)
        .await;
    assert_eq!(
        (stock["committed"].as_i64(), stock["available"].as_i64()),
        (Some(1), Some(49))
    );

    // 1b. The order's life is one trace in the collector `up` started: the
    // gateway's request, the four saga steps in order, the outbox event.
    trace_of_a_completed_order(&state, &ids[0]);
    // 1c. The dashboard in a real terminal sees the next order move.
    dash_in_a_terminal(&state, async {
        let (s, v, _) = place("e2e-dash-key").await;
        assert!(matches!(s, 201 | 202), "{s} {v}");
    })
    .await;

    // 2. Kill the orders process (SIGKILL) while the capture is in flight.
    api.faults(json!({"latency_ms": 2500})).await;
    let (s, v, _) = place("e2e-kill-key").await;
    assert_eq!(s, 201, "{v}");
    let killed_id = v["order_id"].as_str().unwrap().to_string();
    api.wait_state(&killed_id, &buyer, &["authorized"], Duration::from_secs(30))
        .await;
    let stack = Stack::new(&state, PORTS, BIN);
    stack.kill_component(Kind::Orders).await;
    assert!(stack.running_pid(Kind::Orders).is_none());
    api.faults(json!({"latency_ms": 0})).await;
    stack.start_component(Kind::Orders).await.unwrap();
    let order = api
        .settle(&killed_id, &buyer, Duration::from_secs(90))
        .await;
    assert_eq!(order["state"], "completed", "{order:#}");
    let intents = api.intents(&killed_id).await;
    assert_eq!(intents.len(), 1, "one intent: {intents:#?}");
    assert_eq!(intents[0]["amount_received"], order["total_minor"]);
    let payment_id = order["payment_id"].as_str().unwrap();
    let payment = api
        .get(
            &url(Kind::Gateway, &format!("/payments/{payment_id}")),
            Some(&admin),
        )
        .await;
    assert_eq!(payment["status"], "captured", "{payment:#}");
    assert_eq!(payment["captured_minor"], order["total_minor"]);

    // 3. A forged webhook is refused and changes nothing.
    let forged = json!({
        "id": "evt_forged", "object": "event", "type": "charge.refunded",
        "data": {"object": {"id": intents[0]["id"], "object": "payment_intent", "status": "canceled"}}
    });
    let (s, v, _) = api
        .call(
            reqwest::Method::POST,
            &url(Kind::Gateway, "/webhooks/stripe"),
            None,
            &[("Stripe-Signature", "t=1700000000,v1=deadbeef")],
            Some(forged),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let after = api
        .get(
            &url(Kind::Gateway, &format!("/payments/{payment_id}")),
            Some(&admin),
        )
        .await;
    assert_eq!(after, payment);

    // 4. Live updates through two gateway processes. The capture is slowed
    //    down so that most steps happen while both clients are listening.
    let second = second_gateway(&state).await;
    let stranger = api
        .token("stranger@example.com", "correct horse battery", true)
        .await;
    api.faults(json!({"latency_ms": 1500})).await;
    let (s, v, _) = place("e2e-live-key").await;
    assert_eq!(s, 201, "{v}");
    let live_id = v["order_id"].as_str().unwrap().to_string();
    let steps_url = url(Kind::Gateway, &format!("/orders/{live_id}/events"));
    let expected = async {
        api.settle(&live_id, &buyer, Duration::from_secs(60)).await;
        api.get(&steps_url, Some(&buyer)).await["steps"]
            .as_array()
            .unwrap()
            .clone()
    };
    super::live::two_gateways_see_every_step(
        &url(Kind::Gateway, ""),
        &second.base,
        &buyer,
        &stranger,
        &live_id,
        expected,
    )
    .await;
    api.faults(json!({"latency_ms": 0})).await;

    // What an order costs: `bench --cpu` reads each component's process
    // tree from /proc around a short checkout load, until the stack is
    // quiet again, and divides by the orders completed.
    let out = cli(
        &state,
        &[
            "bench",
            "--target",
            "checkout",
            "--checkout-rate",
            "2",
            "--duration-s",
            "2",
            "--cpu",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "bench --cpu: {}", text(&out));
    let bench: Value = serde_json::from_slice(&out.stdout).unwrap();
    let cost = &bench["cpu"][0];
    assert_eq!(cost["unit"], "order", "{bench:#}");
    assert!(cost["units"].as_u64().unwrap() >= 4, "{cost:#}");
    let ms = |name: &str| {
        cost["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["component"] == name)
            .and_then(|c| c["cpu_ms_per_unit"].as_f64())
    };
    for name in ["orders", "payments", "postgres", "temporal"] {
        assert!(ms(name).is_some_and(|v| v > 0.0), "{name}: {cost:#}");
    }
    assert!(
        cost["cpu_ceiling_per_s"]
            .as_f64()
            .is_some_and(|v| v > 0.0 && v.is_finite()),
        "{cost:#}"
    );

    // 5. E-mail and today's numbers on the whole stack: the live order's
    //    confirmation reached mail-sim, a refund sends its own e-mail, and
    //    the admin's daily stats count the day's orders and money.
    emails_and_stats(&api, &state, &admin, &buyer, &live_id).await;

    // 6. The feed over the real processes: what the buyer bought is left out
    //    of their recommendations and feed; activities, replays, conflicts
    //    and bad input at the gateway; the feed down is a 503 with
    //    Retry-After; Redis down is a degraded page from Postgres.
    feed_end_to_end(&api, &state, &admin, &buyer, &stranger, &product_id).await;
}

async fn feed_end_to_end(
    api: &Api,
    state: &Path,
    admin: &str,
    buyer: &str,
    stranger: &str,
    bought: &str,
) {
    let me = api.get(&url(Kind::Gateway, "/me"), Some(buyer)).await;
    let buyer_id = me["id"].as_str().unwrap().to_string();
    let recs_url = url(
        Kind::Gateway,
        &format!("/recommendations?customer_id={buyer_id}&limit=50"),
    );
    let recs = testkit::eventually(
        "the purchase is left out",
        Duration::from_secs(60),
        || async {
            let (s, v, _) = api
                .call(reqwest::Method::GET, &recs_url, Some(buyer), &[], None)
                .await;
            (s == 200 && v["excluded_bought"].as_u64() >= Some(1)).then_some(v)
        },
    )
    .await;
    assert!(
        recs["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["item_id"] != bought),
        "{recs:#}"
    );
    assert!(recs["items"][0]["product"]["title"].is_string(), "{recs:#}");
    let (s, v, _) = api
        .call(reqwest::Method::GET, &recs_url, Some(stranger), &[], None)
        .await;
    assert_eq!(s, 403, "another customer's recommendations: {v}");
    let (s, _, _) = api
        .call(reqwest::Method::GET, &recs_url, Some(admin), &[], None)
        .await;
    assert_eq!(s, 200, "an admin may look");

    let feed_url = url(Kind::Gateway, "/feed?limit=5");
    let (s, page, _) = api
        .call(reqwest::Method::GET, &feed_url, Some(buyer), &[], None)
        .await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(page["cards"].as_array().unwrap().len(), 5, "{page:#}");
    assert!(page["cards"][0]["product"]["id"].is_string(), "{page:#}");
    let (s, big, _) = api
        .call(
            reqwest::Method::GET,
            &url(Kind::Gateway, "/feed?limit=500"),
            Some(buyer),
            &[],
            None,
        )
        .await;
    assert_eq!(
        (s, &big["limit"], &big["clamped"]),
        (200, &json!(50), &json!(true))
    );
    assert!(
        big["cards"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["item_id"] != bought),
        "bought products are left out of the feed"
    );
    let next = page["next_cursor"].as_str().unwrap();
    for (who, cursor) in [(stranger, next.to_string()), (buyer, format!("{next}x"))] {
        let (s, v, _) = api
            .call(
                reqwest::Method::GET,
                &url(Kind::Gateway, &format!("/feed?cursor={cursor}")),
                Some(who),
                &[],
                None,
            )
            .await;
        assert_eq!(s, 400, "someone else's or an altered cursor: {v}");
    }

    let activity = |body: Value| async move {
        api.call(
            reqwest::Method::POST,
            &url(Kind::Gateway, "/activity"),
            Some(buyer),
            &[],
            Some(body),
        )
        .await
    };
    let like =
        json!({"kind": "like", "object": format!("product:{bought}"), "client_id": "e2e-like"});
    let (s, first, _) = activity(like.clone()).await;
    assert_eq!(s, 201, "{first}");
    let (s, again, _) = activity(like).await;
    assert_eq!((s, &again["replayed"]), (200, &json!(true)), "{again}");
    assert_eq!(again["activity"], first["activity"]);
    let (s, v, _) = activity(
        json!({"kind": "comment", "object": format!("product:{bought}"),
        "client_id": "e2e-like", "text": "changed my mind"}),
    )
    .await;
    assert_eq!(s, 409, "{v}");
    let (s, v, _) = activity(json!({"kind": "poke", "object": "post:1", "client_id": "x"})).await;
    assert_eq!(s, 422, "{v}");
    let fields: Vec<&str> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["kind", "object"], "{v}");
    let mine = api.get(&url(Kind::Gateway, "/activity"), Some(buyer)).await;
    assert_eq!(mine["activities"].as_array().unwrap().len(), 1, "{mine}");

    // The feed process down: 503 with Retry-After, never a hang.
    let stack = Stack::new(state, PORTS, BIN);
    stack.kill_component(Kind::Feed).await;
    let (s, v, h) = api
        .call(reqwest::Method::GET, &feed_url, Some(buyer), &[], None)
        .await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(h["retry-after"], "1");
    stack.start_component(Kind::Feed).await.unwrap();

    // Redis down: pages come from Postgres, marked degraded.
    stack.kill_component(Kind::Redis).await;
    let (s, v, _) = api
        .call(reqwest::Method::GET, &feed_url, Some(buyer), &[], None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (&v["source"], &v["degraded"]),
        (&json!("postgres"), &json!(true)),
        "{v}"
    );
    assert_eq!(v["cards"].as_array().unwrap().len(), 5);
    stack.start_component(Kind::Redis).await.unwrap();
}

/// mail-sim's messages (newest first) once one satisfies `ok`.
async fn mail_with(api: &Api, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    testkit::eventually(what, Duration::from_secs(60), || async {
        let list = api.get(&url(Kind::MailSim, "/messages"), None).await;
        list["messages"]
            .as_array()
            .and_then(|m| m.iter().find(|m| ok(m)).cloned())
    })
    .await
}

async fn emails_and_stats(api: &Api, state: &Path, admin: &str, buyer: &str, order_id: &str) {
    let short = &order_id[..8];
    // The recipient is part of the match: the cost benchmark's orders,
    // placed within the same minute, share the id's first eight digits (a
    // time-ordered id), and so the subject. A confirmation that went to
    // anyone else never matches, and the wait fails.
    mail_with(api, "the buyer's confirmation e-mail", |m| {
        m["subject"] == format!("Your Shopstream order {short} is confirmed")
            && m["to"] == json!(["buyer@example.com"])
    })
    .await;

    let order = api
        .get(
            &url(Kind::Gateway, &format!("/orders/{order_id}")),
            Some(buyer),
        )
        .await;
    let payment_id = order["payment_id"].as_str().unwrap();
    // A 503 (payments did not answer in time on a busy machine) is retried
    // under the same key, as a client would: a refund is idempotent by it.
    let mut tries = 0;
    let (s, v) = loop {
        let (s, v, _) = api
            .call(
                reqwest::Method::POST,
                &url(Kind::Gateway, &format!("/payments/{payment_id}/refund")),
                Some(admin),
                &[("Idempotency-Key", "e2e-refund")],
                Some(json!({"reason": "customer_request"})),
            )
            .await;
        tries += 1;
        if s != 503 || tries == 5 {
            break (s, v);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert_eq!(s, 200, "after {tries} tries: {v}");
    let refunded = mail_with(api, "the refund e-mail", |m| {
        m["subject"]
            .as_str()
            .is_some_and(|s| s.starts_with("Refund of ") && s.ends_with(short))
    })
    .await;
    assert_eq!(refunded["to"], json!(["buyer@example.com"]));

    // Today's row: every order this test completed, and the refund.
    let stats_url = url(Kind::Gateway, "/admin/stats/daily");
    let today = testkit::eventually("today's stats", Duration::from_secs(60), || async {
        let v = api.get(&stats_url, Some(admin)).await;
        let today = v["days"].as_array()?.last()?.clone();
        let refunds: i64 = today["refunds"]
            .as_object()?
            .values()
            .filter_map(Value::as_i64)
            .sum();
        (today["orders_completed"].as_u64()? >= 3 && refunds > 0).then_some(today)
    })
    .await;
    assert!(today["orders_placed"].as_u64().unwrap() >= 3, "{today:#}");
    assert!(
        today["revenue"].as_object().is_some_and(|r| !r.is_empty()),
        "{today:#}"
    );
    assert!(today["checkout_p95_ms"].as_u64().is_some(), "{today:#}");
    assert_eq!(today["closed"], false);
    let (s, v, _) = api
        .call(reqwest::Method::GET, &stats_url, Some(buyer), &[], None)
        .await;
    assert_eq!(s, 403, "a buyer is not an admin: {v}");
    let (s, v, _) = api
        .call(
            reqwest::Method::GET,
            &format!("{stats_url}?from=2026-02-30"),
            Some(admin),
            &[],
            None,
        )
        .await;
    assert_eq!(s, 422, "{v}");

    // The same numbers from the CLI.
    let out = cli(state, &["stats", "--days", "3", "--json"]);
    assert_eq!(out.status.code(), Some(0), "stats: {}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["days"].as_array().unwrap().len(), 3);
    assert!(
        v["days"][2]["orders_completed"].as_u64().unwrap() >= 3,
        "{v:#}"
    );
    let out = cli(state, &["stats"]);
    assert_eq!(out.status.code(), Some(0), "stats: {}", text(&out));
    assert!(text(&out).contains("orders completed"), "{}", text(&out));
}

/// A second gateway process on this stack, on a port of its own.
struct SecondGateway {
    base: String,
    _child: tokio::process::Child,
}

async fn second_gateway(state: &Path) -> SecondGateway {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // Its gRPC port (the DSAR participant) must not be the first gateway's.
    let grpc = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let log = std::fs::File::create(state.join("second-gateway.log")).unwrap();
    let child = tokio::process::Command::new(BIN)
        .args(["serve", "gateway"])
        .envs(PORTS.env_vars())
        .env("SHOPSTREAM_GATEWAY_HTTP_ADDR", addr.to_string())
        .env("SHOPSTREAM_GATEWAY_GRPC_ADDR", grpc.to_string())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://{addr}");
    testkit::wait_http_ok(&format!("{base}/readyz"), testkit::READY_TIMEOUT).await;
    SecondGateway {
        base,
        _child: child,
    }
}

/// `shopstream trace ORDER --json` after the order completed: the trace that
/// placed it holds the gateway's `POST /orders`, the saga's four steps after
/// it in causal order, and the `order.lifecycle` event leaving the outbox.
fn trace_of_a_completed_order(state: &Path, order_id: &str) {
    let out = cli(state, &["trace", order_id, "--json", "--wait", "30"]);
    assert_eq!(out.status.code(), Some(0), "trace: {}", text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["order_id"], order_id);
    let traces = doc["traces"].as_array().unwrap();
    let placed = traces
        .iter()
        .find(|t| {
            t["spans"].as_array().unwrap().iter().any(|s| {
                s["service"] == "gateway" && s["name"] == "POST /orders" && s["depth"] == 0
            })
        })
        .unwrap_or_else(|| panic!("no trace starts at the gateway's POST /orders: {doc:#}"));
    let spans = placed["spans"].as_array().unwrap();
    let at = |pred: &dyn Fn(&Value) -> bool, what: &str| {
        spans
            .iter()
            .position(pred)
            .unwrap_or_else(|| panic!("no {what} in trace {}: {placed:#}", placed["trace_id"]))
    };
    let request = at(&|s| s["name"] == "POST /orders", "POST /orders");
    let mut last = request;
    for step in ["reserve", "authorize", "capture", "finalize"] {
        let i = at(
            &|s| s["name"] == format!("saga {step}") && s["service"] == "orders",
            &format!("saga {step}"),
        );
        assert!(
            i > last,
            "saga {step} at {i}, before its predecessor at {last}: {placed:#}"
        );
        assert!(
            spans[i]["depth"].as_u64().unwrap() > 0,
            "saga {step} is not under the request"
        );
        last = i;
    }
    let event = at(
        &|s| s["name"] == "publish order.lifecycle order.state_changed" && s["kind"] == "producer",
        "publish order.lifecycle",
    );
    assert!(event > request, "{placed:#}");
    // Causal order: every span's parent comes before it.
    for (i, s) in spans.iter().enumerate() {
        if let Some(parent) = s["parent_span_id"].as_str()
            && let Some(p) = spans.iter().position(|x| x["span_id"] == parent)
        {
            assert!(p < i, "span {i} ({}) precedes its parent {p}", s["name"]);
        }
    }
    // And the text view draws the same trace.
    let out = cli(
        state,
        &[
            "trace",
            placed["trace_id"].as_str().unwrap(),
            "--width",
            "120",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "trace: {}", text(&out));
    let waterfall = String::from_utf8_lossy(&out.stdout);
    assert!(waterfall.contains("gateway POST /orders"), "{waterfall}");
    assert!(waterfall.contains("orders saga capture"), "{waterfall}");
}

/// `shopstream dash` under tmux: it draws, an order placed while it runs
/// shows as a live `order.lifecycle` rate and one more completed order,
/// `?` opens the help, `q` quits and ends the session.
async fn dash_in_a_terminal(state: &Path, place: impl std::future::Future<Output = ()>) {
    let socket = format!("shopstream-dash-{}", std::process::id());
    let tmux = |args: &[&str]| {
        std::process::Command::new("tmux")
            .args(["-L", &socket])
            .args(args)
            .output()
            .expect("tmux (scripts/bootstrap.sh installs it)")
    };
    let env: Vec<String> = PORTS
        .env_vars()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let command = format!(
        "env {} SHOPSTREAM_STATE_DIR={} {BIN} dash --refresh-ms 500",
        env.join(" "),
        state.display()
    );
    let out = tmux(&[
        "new-session",
        "-d",
        "-s",
        "dash",
        "-x",
        "140",
        "-y",
        "45",
        &command,
    ]);
    assert!(out.status.success(), "tmux: {}", text(&out));
    struct Kill<'a>(&'a dyn Fn(&[&str]) -> std::process::Output);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = (self.0)(&["kill-server"]);
        }
    }
    let _kill = Kill(&tmux);
    let pane = || {
        String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", "dash"]).stdout).into_owned()
    };
    let number_after = |screen: &str, label: &str| -> Option<f64> {
        screen.lines().find_map(|l| {
            let rest = &l[l.find(label)? + label.len()..];
            rest.split_whitespace().next()?.parse::<f64>().ok()
        })
    };
    let until = |what: &str, ok: &dyn Fn(&str) -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let screen = pane();
            if ok(&screen) {
                return screen;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "dash never showed {what}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    };
    let first = until("every component ready", &|s| {
        s.contains("components 21/21 ready")
    });
    let completed_before = number_after(&first, "│completed").unwrap_or(0.0);
    place.await;
    // The rate is per refresh, so it is caught while it is non-zero.
    let saw_rate = std::cell::Cell::new(false);
    let moved = until("the order moving", &|s| {
        if number_after(s, "│order.lifecycle").is_some_and(|r| r > 0.0) {
            saw_rate.set(true);
        }
        saw_rate.get() && number_after(s, "│completed").is_some_and(|n| n > completed_before)
    });
    assert!(moved.contains("saga step"), "{moved}");
    tmux(&["send-keys", "-t", "dash", "?"]);
    until("the help", &|s| s.contains("Help · Esc to close"));
    tmux(&["send-keys", "-t", "dash", "q"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while tmux(&["has-session", "-t", "dash"]).status.success() {
        assert!(
            std::time::Instant::now() < deadline,
            "q did not quit:\n{}",
            pane()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
