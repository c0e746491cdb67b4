//! Every fault of the catalog (`shopstream_platform::faults::CATALOG`)
//! against a fresh stack of real processes: each is set with `shopstream
//! fault set` (Redis, the store itself, is stopped through the runtime
//! instead), its symptom is observed where an operator would see it (the
//! gateway's public and admin API, a service's `/metrics` or `/readyz`,
//! stripe-sim's, mail-sim's and notifications' admin routes, the process
//! table), then it is cleared and the recovery is observed. One probe per
//! fault, in a table, run in sequence; each is bounded and a failure names
//! its fault. Every probe runs even when an earlier one failed, so one run
//! shows every red fault.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use futures::future::BoxFuture;
use serde_json::{Value, json};
use shopstream_platform::{
    config::{Endpoints, Ports},
    faults::CATALOG,
};
use shopstream_runtime::{Kind, Stack};

use super::{BIN, Cleanup, temp_dir, text};

/// This module's stack: 14xxx (see [`super::ports`]).
const PORTS: Ports = super::ports(14);

/// Bound on one probe: set, symptom, clear, recovery.
const PROBE_TIMEOUT: Duration = Duration::from_secs(180);
/// Bound on one awaited condition inside a probe.
const WITHIN: Duration = Duration::from_secs(60);
/// How often a condition is looked at again.
const POLL: Duration = Duration::from_millis(200);
/// How long a probe watches for something that must not happen (an edit
/// reaching search while indexing is stalled, a webhook while they drop).
/// Normal latencies on this stack are well under it.
const QUIET: Duration = Duration::from_secs(4);

type Probe = fn(Arc<Ctx>) -> BoxFuture<'static, Result<(), String>>;

/// One probe per fault of the catalog, in the catalog's order.
const PROBES: &[(&str, Probe)] = &[
    ("payment-decline-rate", |c| {
        Box::pin(payment_decline_rate(c))
    }),
    ("payment-provider-unreachable", |c| {
        Box::pin(payment_provider_unreachable(c))
    }),
    ("capture-lost-after-effect", |c| {
        Box::pin(capture_lost_after_effect(c))
    }),
    ("webhook-drop", |c| Box::pin(webhook_drop(c))),
    ("webhook-duplicate", |c| Box::pin(webhook_duplicate(c))),
    ("webhook-delay", |c| Box::pin(webhook_delay(c))),
    ("catalog-slow", |c| Box::pin(catalog_slow(c))),
    ("catalog-errors", |c| Box::pin(catalog_errors(c))),
    ("inventory-lock-contention", |c| {
        Box::pin(inventory_lock_contention(c))
    }),
    ("reservation-ttl-short", |c| {
        Box::pin(reservation_ttl_short(c))
    }),
    ("cdc-paused", |c| Box::pin(cdc_paused(c))),
    ("search-indexing-stalled", |c| {
        Box::pin(search_indexing_stalled(c))
    }),
    ("broker-slow", |c| Box::pin(broker_slow(c))),
    ("consumer-crash-loop", |c| Box::pin(consumer_crash_loop(c))),
    ("redis-unavailable", |c| Box::pin(redis_unavailable(c))),
    ("temporal-worker-paused", |c| {
        Box::pin(temporal_worker_paused(c))
    }),
    ("email-provider-failing", |c| {
        Box::pin(email_provider_failing(c))
    }),
    ("media-thumbnail-failing", |c| {
        Box::pin(media_thumbnail_failing(c))
    }),
    ("feed-cache-flush", |c| Box::pin(feed_cache_flush(c))),
    ("clock-skew", |c| Box::pin(clock_skew(c))),
    ("memory-hog", |c| Box::pin(memory_hog(c))),
    ("cpu-hog", |c| Box::pin(cpu_hog(c))),
    ("checkout-paused", |c| Box::pin(checkout_paused(c))),
];

#[tokio::test(flavor = "multi_thread")]
async fn every_catalog_fault_bites_where_it_should_and_clears() {
    let mut names: Vec<&str> = PROBES.iter().map(|(n, _)| *n).collect();
    let mut catalog: Vec<&str> = CATALOG.iter().map(|s| s.name).collect();
    names.sort_unstable();
    catalog.sort_unstable();
    assert_eq!(names, catalog, "one probe per catalog fault");

    let state = temp_dir("faults-e2e");
    let _cleanup = Cleanup(state.clone());
    let out = cli(&state, &["up", "--json", "--no-install"]);
    assert_eq!(out.status.code(), Some(0), "up: {}", text(&out));
    let out = cli(&state, &["seed", "--json"]);
    assert_eq!(out.status.code(), Some(0), "seed: {}", text(&out));
    let seeded: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ctx = Arc::new(Ctx::new(&state, &seeded).await);

    let mut failed = Vec::new();
    for (name, probe) in PROBES {
        eprintln!("fault {name}: probing");
        let started = Instant::now();
        let verdict = match tokio::time::timeout(PROBE_TIMEOUT, probe(ctx.clone())).await {
            Ok(v) => v,
            Err(_) => Err(format!("no verdict within {PROBE_TIMEOUT:?}")),
        };
        // Whatever happened, the next probe starts with nothing set.
        ctx.reset().await;
        match verdict {
            Ok(()) => eprintln!(
                "fault {name}: ok in {:.1} s",
                started.elapsed().as_secs_f64()
            ),
            Err(e) => {
                eprintln!("fault {name}: FAILED: {e}");
                failed.push(format!("{name}: {e}"));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} faults failed their probe:\n{}",
        failed.len(),
        PROBES.len(),
        failed.join("\n")
    );
    let out = cli(&state, &["down", "--purge"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

fn cli(state: &Path, args: &[&str]) -> std::process::Output {
    super::cli(state, &PORTS, args)
}

fn url(kind: Kind, path: &str) -> String {
    let (http, _) = kind.service_addrs(&PORTS).unwrap();
    format!("http://{http}{path}")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Wait until `f` gives a value, looking every [`POLL`] for at most `within`.
async fn until<T, F, Fut>(what: &str, within: Duration, mut f: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(format!("{what}: not within {within:?}"));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Watch `f` for [`QUIET`]: `Err` naming `what` as soon as it holds.
async fn never<F, Fut>(what: &str, mut f: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<String>>,
{
    let deadline = Instant::now() + QUIET;
    while Instant::now() < deadline {
        if let Some(seen) = f().await {
            return Err(format!("{what}: {seen}"));
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// One HTTP answer, and how long it took.
struct Answer {
    status: u16,
    body: Value,
    took: Duration,
}

/// The seeded product every probe uses.
struct Product {
    id: String,
    sku: String,
    title: String,
}

/// The stack and the accounts the probes act with.
struct Ctx {
    state: PathBuf,
    stack: Stack,
    http: reqwest::Client,
    admin: String,
    buyer: String,
    buyer_id: String,
    product: Product,
}

impl Ctx {
    async fn new(state: &Path, seeded: &Value) -> Ctx {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let mut ctx = Ctx {
            state: state.to_path_buf(),
            stack: Stack::new(state, PORTS, BIN),
            http,
            admin: String::new(),
            buyer: String::new(),
            buyer_id: String::new(),
            product: Product {
                id: String::new(),
                sku: String::new(),
                title: String::new(),
            },
        };
        ctx.admin = ctx
            .login(
                seeded["admin_email"].as_str().unwrap(),
                seeded["admin_password"].as_str().unwrap(),
                false,
            )
            .await
            .0;
        let (buyer, buyer_id) = ctx
            .login("faults-buyer@example.com", "correct horse battery", true)
            .await;
        (ctx.buyer, ctx.buyer_id) = (buyer, buyer_id);
        let products = ctx
            .ok(ctx
                .get(&url(Kind::Gateway, "/products?limit=1"), None)
                .await)
            .unwrap();
        let p = &products["items"][0];
        ctx.product = Product {
            id: p["id"].as_str().unwrap().into(),
            sku: p["skus"][0]["id"].as_str().unwrap().into(),
            title: p["title"].as_str().unwrap().into(),
        };
        let a = ctx
            .call(
                reqwest::Method::PUT,
                &url(
                    Kind::Gateway,
                    &format!("/admin/inventory/{}", ctx.product.sku),
                ),
                Some(&ctx.admin),
                &[],
                Some(json!({"on_hand": 100_000})),
            )
            .await
            .unwrap();
        assert_eq!(a.status, 200, "set stock: {}", a.body);
        ctx
    }

    async fn login(&self, email: &str, password: &str, signup: bool) -> (String, String) {
        let creds = json!({"email": email, "password": password});
        if signup {
            let a = self
                .call(
                    reqwest::Method::POST,
                    &url(Kind::Gateway, "/auth/signup"),
                    None,
                    &[],
                    Some(creds.clone()),
                )
                .await
                .unwrap();
            assert!(a.status == 201 || a.status == 200, "signup: {}", a.body);
        }
        let a = self
            .call(
                reqwest::Method::POST,
                &url(Kind::Gateway, "/auth/login"),
                None,
                &[],
                Some(creds),
            )
            .await
            .unwrap();
        assert_eq!(a.status, 200, "login: {}", a.body);
        (
            a.body["access_token"].as_str().unwrap().to_string(),
            a.body["user"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    }

    async fn call(
        &self,
        method: reqwest::Method,
        url: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Result<Answer, String> {
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
        let started = Instant::now();
        let resp = req
            .send()
            .await
            .map_err(|e| format!("{method} {url}: {e}"))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| format!("{method} {url}: {e}"))?;
        let took = started.elapsed();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        Ok(Answer { status, body, took })
    }

    async fn get(&self, url: &str, token: Option<&str>) -> Result<Answer, String> {
        self.call(reqwest::Method::GET, url, token, &[], None).await
    }

    /// The body of a 2xx answer.
    fn ok(&self, a: Result<Answer, String>) -> Result<Value, String> {
        let a = a?;
        if (200..300).contains(&a.status) {
            Ok(a.body)
        } else {
            Err(format!("HTTP {}: {}", a.status, a.body))
        }
    }

    // ---- the flag store ----

    /// `shopstream fault ARGS` on this stack; `Err` with its output unless
    /// it exits 0.
    async fn fault(&self, args: &[&str]) -> Result<(), String> {
        let out = tokio::process::Command::new(BIN)
            .arg("fault")
            .args(args)
            .env("SHOPSTREAM_STATE_DIR", &self.state)
            .envs(PORTS.env_vars())
            .output()
            .await
            .map_err(|e| format!("shopstream fault: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "shopstream fault {}: exit {:?}: {}",
                args.join(" "),
                out.status.code(),
                text(&out)
            ))
        }
    }

    /// Switch `name` on (at its default target) and wait until every
    /// process has read it.
    async fn set(&self, name: &str, value: Option<&str>) -> Result<(), String> {
        let mut args = vec!["set", name];
        if let Some(v) = value {
            args.extend(["--value", v]);
        }
        self.fault(&args).await?;
        self.picked_up(name, true).await
    }

    async fn clear(&self, name: &str) -> Result<(), String> {
        self.fault(&["clear", name]).await?;
        self.picked_up(name, false).await
    }

    /// Until every running service process has read the store's change:
    /// `name` in its view (`shopstream_fault_active` on its `/metrics`) or
    /// gone from it. Processes read the store when its change is announced
    /// (`faults::CHANGED_CHANNEL`).
    async fn picked_up(&self, name: &str, set: bool) -> Result<(), String> {
        let label = format!("fault=\"{name}\"");
        let what = format!(
            "every service sees {name} {}",
            if set { "set" } else { "cleared" }
        );
        until(&what, WITHIN, || async {
            for kind in Kind::SERVICES {
                if self.stack.running_pid(kind).is_none() {
                    continue;
                }
                let v = self
                    .metric(kind, "shopstream_fault_active", &[&label])
                    .await
                    .ok()?;
                if (v > 0.0) != set {
                    return None;
                }
            }
            Some(())
        })
        .await
    }

    /// Between probes: Redis running, nothing set.
    async fn reset(&self) {
        if self.stack.running_pid(Kind::Redis).is_none()
            && let Err(e) = self.stack.start_component(Kind::Redis).await
        {
            eprintln!("starting redis again: {e}");
        }
        if let Err(e) = until("every fault cleared", WITHIN, || async {
            self.fault(&["clear", "--all"]).await.ok()
        })
        .await
        {
            eprintln!("{e}");
        }
        if let Err(e) = until("no service sees a fault", WITHIN, || async {
            for kind in Kind::SERVICES {
                if self.stack.running_pid(kind).is_some()
                    && self
                        .metric(kind, "shopstream_fault_active", &[])
                        .await
                        .ok()?
                        > 0.0
                {
                    return None;
                }
            }
            Some(())
        })
        .await
        {
            eprintln!("{e}");
        }
    }

    // ---- metrics and processes ----

    /// The sum of series `name` (with every one of `labels`) on `kind`'s `/metrics`.
    async fn metric(&self, kind: Kind, name: &str, labels: &[&str]) -> Result<f64, String> {
        let a = self.get(&url(kind, "/metrics"), None).await?;
        let text = a.body.as_str().unwrap_or_default().to_string();
        if a.status != 200 {
            return Err(format!("{} /metrics: HTTP {}", kind.name(), a.status));
        }
        Ok(shopstream_platform::metrics::sum_series(
            &text, name, labels,
        ))
    }

    /// Wait until `name` on `kind` stops moving (nothing in flight), and
    /// return its value.
    async fn settled_metric(&self, kind: Kind, name: &str, labels: &[&str]) -> Result<f64, String> {
        let deadline = Instant::now() + WITHIN;
        let mut last = self.metric(kind, name, labels).await?;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = self.metric(kind, name, labels).await?;
            if now == last {
                return Ok(now);
            }
            if Instant::now() >= deadline {
                return Err(format!("{name} still moves after {WITHIN:?}"));
            }
            last = now;
        }
    }

    fn pid(&self, kind: Kind) -> Result<u32, String> {
        self.stack
            .running_pid(kind)
            .ok_or_else(|| format!("{} is not running", kind.name()))
    }

    // ---- orders ----

    /// Place an order of one unit as the buyer; its id.
    /// A new order's id. 202 counts: the order is stored and orders starts
    /// its saga shortly (the workflow engine answered late, as it may on a
    /// machine busy with the suite's other stacks).
    async fn place_order(&self) -> Result<String, String> {
        let a = self.place_order_answer().await?;
        if a.status != 201 && a.status != 202 {
            return Err(format!("POST /orders: HTTP {}: {}", a.status, a.body));
        }
        a.body["order_id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("POST /orders: no order_id in {}", a.body))
    }

    async fn place_order_answer(&self) -> Result<Answer, String> {
        let key = uuid::Uuid::new_v4().to_string();
        self.call(
            reqwest::Method::POST,
            &url(Kind::Gateway, "/orders"),
            Some(&self.buyer),
            &[("Idempotency-Key", &key)],
            Some(json!({
                "items": [{"product_id": self.product.id, "sku_id": self.product.sku, "quantity": 1}],
                "payment_method": "pm_card_visa",
            })),
        )
        .await
    }

    async fn order(&self, id: &str) -> Result<Value, String> {
        self.ok(self
            .get(
                &url(Kind::Gateway, &format!("/orders/{id}")),
                Some(&self.buyer),
            )
            .await)
    }

    /// The saga's steps of order `id`.
    async fn order_steps(&self, id: &str) -> Result<Vec<Value>, String> {
        let v = self.ok(self
            .get(
                &url(Kind::Gateway, &format!("/orders/{id}/events")),
                Some(&self.buyer),
            )
            .await)?;
        Ok(v["steps"].as_array().cloned().unwrap_or_default())
    }

    /// Wait until order `id` is completed or cancelled.
    async fn settled_order(&self, id: &str) -> Result<Value, String> {
        until(&format!("order {id} ends"), WITHIN, || async {
            let o = self.order(id).await.ok()?;
            matches!(o["state"].as_str(), Some("completed" | "cancelled")).then_some(o)
        })
        .await
    }

    /// Place an order and wait until it is completed.
    async fn completed_order(&self) -> Result<Value, String> {
        let id = self.place_order().await?;
        let o = self.settled_order(&id).await?;
        if o["state"] != "completed" {
            return Err(format!("order {id} did not complete: {o}"));
        }
        Ok(o)
    }

    /// stripe-sim's intents for one order.
    async fn intents(&self, order_id: &str) -> Result<Vec<Value>, String> {
        let all = self.ok(self
            .get(&url(Kind::StripeSim, "/_sim/payment_intents"), None)
            .await)?;
        Ok(all["data"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|pi| pi["metadata"]["order_id"] == order_id)
            .collect())
    }

    /// Deliveries payments received, whatever their outcome.
    async fn webhooks(&self, outcome: Option<&str>) -> Result<f64, String> {
        let label = outcome.map(|o| format!("outcome=\"{o}\""));
        let labels: Vec<&str> = label.iter().map(String::as_str).collect();
        self.metric(
            Kind::Payments,
            "shopstream_payments_webhooks_total",
            &labels,
        )
        .await
    }

    // ---- catalog and search ----

    /// `GET /products/{id}` at the gateway.
    /// Read the product through the gateway, past its product cache
    /// (`Cache-Control: no-cache`), which would otherwise answer a cached
    /// product whatever catalog does.
    async fn read_product(&self) -> Result<Answer, String> {
        self.call(
            reqwest::Method::GET,
            &url(Kind::Gateway, &format!("/products/{}", self.product.id)),
            None,
            &[("cache-control", "no-cache")],
            None,
        )
        .await
    }

    /// Edit the product's description as the admin; its new version.
    ///
    /// On a machine busy with the suite's other stacks the gateway may give
    /// up on catalog (502/503/504) while the edit still lands, so such an
    /// answer is an unknown outcome: read the product again and either find
    /// this edit there or make it again (at most three tries).
    async fn edit_product(&self) -> Result<i64, String> {
        let description = format!("faults e2e edit {}", uuid::Uuid::new_v4());
        let mut last = String::new();
        for _ in 0..3 {
            let p = match self.ok(self.read_product().await) {
                Ok(p) => p,
                Err(e) if e.starts_with("HTTP 50") => {
                    last = e;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let version = p["version"]
                .as_i64()
                .ok_or_else(|| format!("no version in {p}"))?;
            if p["description"] == description.as_str() {
                return Ok(version); // an earlier, unanswered try landed
            }
            let if_match = format!("\"{version}\"");
            let a = self
                .call(
                    reqwest::Method::PATCH,
                    &url(
                        Kind::Gateway,
                        &format!("/admin/products/{}", self.product.id),
                    ),
                    Some(&self.admin),
                    &[("If-Match", &if_match)],
                    Some(json!({ "description": description })),
                )
                .await?;
            if matches!(a.status, 502..=504) {
                last = format!("HTTP {}: {}", a.status, a.body);
                continue;
            }
            let edited = self.ok(Ok(a))?;
            return edited["version"]
                .as_i64()
                .ok_or_else(|| format!("PATCH answered without a version: {edited}"));
        }
        Err(format!(
            "the edit got no answer in three tries; the last: {last}"
        ))
    }

    /// The product's version in `GET /search`, if it is found.
    async fn searched_version(&self) -> Option<i64> {
        let q: Vec<&str> = self.product.title.split_whitespace().take(3).collect();
        let q = q.join("%20");
        let v = self
            .ok(self
                .get(
                    &url(Kind::Gateway, &format!("/search?q={q}&limit=100")),
                    None,
                )
                .await)
            .ok()?;
        v["hits"]
            .as_array()?
            .iter()
            .find(|h| h["product_id"] == self.product.id.as_str())
            .and_then(|h| h["version"].as_i64())
    }

    async fn until_searchable(&self, version: i64) -> Result<(), String> {
        until(
            &format!("version {version} is searchable"),
            WITHIN,
            || async { (self.searched_version().await? >= version).then_some(()) },
        )
        .await
    }

    /// Edit while `name` is on: the edit does not reach search until it is cleared.
    async fn edit_stalls_until_cleared(&self, name: &str) -> Result<(), String> {
        let v = self.edit_product().await?;
        never("the edit reached search while it was on", || async {
            self.searched_version()
                .await
                .filter(|s| *s >= v)
                .map(|s| format!("version {s} searchable"))
        })
        .await?;
        self.clear(name).await?;
        self.until_searchable(v).await
    }

    // ---- inventory ----

    /// Hold one unit for `ttl_s`; the hold and how long the call took.
    async fn reserve(&self, ttl_s: u32) -> Result<(Value, Duration), String> {
        let a = self
            .call(
                reqwest::Method::POST,
                &url(Kind::Gateway, "/reservations"),
                Some(&self.buyer),
                &[],
                Some(
                    json!({"items": [{"sku_id": self.product.sku, "quantity": 1}], "ttl_s": ttl_s}),
                ),
            )
            .await?;
        let took = a.took;
        Ok((self.ok(Ok(a))?, took))
    }

    async fn release(&self, hold: &Value) -> Result<(), String> {
        let id = hold["reservation_id"].as_str().unwrap_or_default();
        self.ok(self
            .call(
                reqwest::Method::DELETE,
                &url(Kind::Gateway, &format!("/reservations/{id}")),
                Some(&self.buyer),
                &[],
                None,
            )
            .await)
            .map(|_| ())
    }

    async fn reserved(&self) -> Result<i64, String> {
        let s = self.ok(self
            .get(
                &url(Kind::Gateway, &format!("/inventory/{}", self.product.sku)),
                None,
            )
            .await)?;
        s["reserved"]
            .as_i64()
            .ok_or_else(|| format!("no reserved in {s}"))
    }
}

/// Resident memory of `pid`, in MiB.
fn rss_mib(pid: u32) -> Result<f64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("no VmRSS for {pid}"))?;
    Ok(kib / 1024.0)
}

// ---- the probes, one per fault ----

/// 100 %: an order is cancelled as declined; cleared: one completes.
async fn payment_decline_rate(c: Arc<Ctx>) -> Result<(), String> {
    c.set("payment-decline-rate", Some("100")).await?;
    let id = c.place_order().await?;
    let o = c.settled_order(&id).await?;
    if (o["state"].as_str(), o["cancel_reason"].as_str())
        != (Some("cancelled"), Some("payment_declined"))
    {
        return Err(format!("expected cancelled as payment_declined: {o}"));
    }
    let intents = c.intents(&id).await?;
    let code = &intents.first().ok_or("no intent at stripe-sim")?["last_payment_error"]["code"];
    if code != "card_declined" {
        return Err(format!(
            "the intent's last error is {code}, not card_declined"
        ));
    }
    c.clear("payment-decline-rate").await?;
    c.completed_order().await.map(|_| ())
}

/// Payments never reaches stripe-sim: authorization fails, no intent is
/// created; cleared: the order settles and a new one completes.
async fn payment_provider_unreachable(c: Arc<Ctx>) -> Result<(), String> {
    c.set("payment-provider-unreachable", None).await?;
    let id = c.place_order().await?;
    let failed = until("authorize fails", WITHIN, || async {
        let steps = c.order_steps(&id).await.ok()?;
        steps
            .into_iter()
            .find(|s| s["step"] == "authorize" && s["outcome"] == "failed")
    })
    .await?;
    let intents = c.intents(&id).await?;
    if !intents.is_empty() {
        return Err(format!("stripe-sim was reached: {intents:?}"));
    }
    if c.order(&id).await?["state"] == "completed" {
        return Err(format!("the order completed (authorize: {failed})"));
    }
    c.clear("payment-provider-unreachable").await?;
    let o = c.settled_order(&id).await?;
    if o["state"] != "cancelled" {
        return Err(format!("the order without a payment is {}", o["state"]));
    }
    c.completed_order().await.map(|_| ())
}

/// Every capture takes the money and answers 500: the saga retries the
/// capture and, with the same key, ends with exactly one charge.
async fn capture_lost_after_effect(c: Arc<Ctx>) -> Result<(), String> {
    c.set("capture-lost-after-effect", None).await?;
    let o = c.completed_order().await?;
    let id = o["order_id"].as_str().unwrap_or_default();
    let capture_attempts = |steps: Vec<Value>| {
        steps
            .iter()
            .find(|s| s["step"] == "capture" && s["outcome"] == "succeeded")
            .and_then(|s| s["attempts"].as_u64())
    };
    let attempts = capture_attempts(c.order_steps(id).await?).ok_or("no capture step")?;
    if attempts < 2 {
        return Err(format!(
            "the capture succeeded at attempt {attempts}: its answer was not lost"
        ));
    }
    let intents = c.intents(id).await?;
    if intents.len() != 1 || intents[0]["amount_received"] != o["total_minor"] {
        return Err(format!(
            "not exactly one charge of {}: {intents:?}",
            o["total_minor"]
        ));
    }
    c.clear("capture-lost-after-effect").await?;
    let o = c.completed_order().await?;
    let id = o["order_id"].as_str().unwrap_or_default();
    match capture_attempts(c.order_steps(id).await?) {
        Some(1) => Ok(()),
        other => Err(format!("cleared, the capture took {other:?} attempts")),
    }
}

/// No webhook reaches payments while on; cleared, they do again.
async fn webhook_drop(c: Arc<Ctx>) -> Result<(), String> {
    let before = c
        .settled_metric(Kind::Payments, "shopstream_payments_webhooks_total", &[])
        .await?;
    c.set("webhook-drop", None).await?;
    c.completed_order().await?;
    never("a webhook arrived", || async {
        let now = c.webhooks(None).await.ok()?;
        (now > before).then(|| format!("{} deliveries", now - before))
    })
    .await?;
    c.clear("webhook-drop").await?;
    c.completed_order().await?;
    until("a webhook arrives", WITHIN, || async {
        (c.webhooks(None).await.ok()? > before).then_some(())
    })
    .await
}

/// Every webhook arrives twice: payments answers the second copy as a
/// duplicate; cleared, a new order's webhooks are applied once.
async fn webhook_duplicate(c: Arc<Ctx>) -> Result<(), String> {
    let dups = c
        .settled_metric(
            Kind::Payments,
            "shopstream_payments_webhooks_total",
            &["outcome=\"duplicate\""],
        )
        .await?;
    c.set("webhook-duplicate", None).await?;
    c.completed_order().await?;
    until("a duplicate delivery", WITHIN, || async {
        (c.webhooks(Some("duplicate")).await.ok()? > dups).then_some(())
    })
    .await?;
    c.clear("webhook-duplicate").await?;
    let dups = c
        .settled_metric(
            Kind::Payments,
            "shopstream_payments_webhooks_total",
            &["outcome=\"duplicate\""],
        )
        .await?;
    let applied = c.webhooks(Some("applied")).await?;
    c.completed_order().await?;
    until("the new order's webhooks are applied", WITHIN, || async {
        (c.webhooks(Some("applied")).await.ok()? >= applied + 2.0).then_some(())
    })
    .await?;
    let after = c.webhooks(Some("duplicate")).await?;
    if after > dups {
        return Err(format!("cleared, {} more duplicates", after - dups));
    }
    Ok(())
}

/// Every delivery waits the value: the first webhook of an order arrives
/// at least that long after the order was placed.
async fn webhook_delay(c: Arc<Ctx>) -> Result<(), String> {
    const DELAY_MS: u64 = 3_000;
    let before = c
        .settled_metric(Kind::Payments, "shopstream_payments_webhooks_total", &[])
        .await?;
    let value = format!("{DELAY_MS}ms");
    c.set("webhook-delay", Some(value.as_str())).await?;
    let placed = Instant::now();
    c.completed_order().await?;
    until("a delayed webhook arrives", WITHIN, || async {
        (c.webhooks(None).await.ok()? > before).then_some(())
    })
    .await?;
    let took = placed.elapsed();
    if took < Duration::from_millis(DELAY_MS) {
        return Err(format!(
            "a webhook arrived {took:?} after the order was placed"
        ));
    }
    let before = c
        .settled_metric(Kind::Payments, "shopstream_payments_webhooks_total", &[])
        .await?;
    c.clear("webhook-delay").await?;
    c.completed_order().await?;
    until("a webhook arrives", WITHIN, || async {
        (c.webhooks(None).await.ok()? > before).then_some(())
    })
    .await
}

/// A product read takes at least the value; cleared, less.
async fn catalog_slow(c: Arc<Ctx>) -> Result<(), String> {
    const SLOW: Duration = Duration::from_millis(700);
    c.set("catalog-slow", Some("700ms")).await?;
    let a = c.read_product().await?;
    if a.status != 200 || a.took < SLOW {
        return Err(format!(
            "a product read answered {} in {:?}",
            a.status, a.took
        ));
    }
    c.clear("catalog-slow").await?;
    until("a product read is fast again", WITHIN, || async {
        let a = c.read_product().await.ok()?;
        (a.status == 200 && a.took < SLOW).then_some(())
    })
    .await
}

/// At 100 % every product read is a 503; cleared, a 200.
async fn catalog_errors(c: Arc<Ctx>) -> Result<(), String> {
    c.set("catalog-errors", Some("100")).await?;
    for _ in 0..3 {
        let a = c.read_product().await?;
        if a.status != 503 {
            return Err(format!("a product read answered {}: {}", a.status, a.body));
        }
    }
    c.clear("catalog-errors").await?;
    until("a product read answers 200", WITHIN, || async {
        (c.read_product().await.ok()?.status == 200).then_some(())
    })
    .await
}

/// Two holds on one SKU at once: each keeps the stock row locked for the
/// value, so together they take at least twice the value.
async fn inventory_lock_contention(c: Arc<Ctx>) -> Result<(), String> {
    const HOLD: Duration = Duration::from_millis(500);
    c.set("inventory-lock-contention", Some("500")).await?;
    let started = Instant::now();
    let (a, b) = tokio::join!(c.reserve(60), c.reserve(60));
    let both = started.elapsed();
    let (a, b) = (a?, b?);
    c.release(&a.0).await?;
    c.release(&b.0).await?;
    if both < HOLD * 2 {
        return Err(format!(
            "two concurrent holds took {both:?} ({:?} and {:?}): the row was not held",
            a.1, b.1
        ));
    }
    c.clear("inventory-lock-contention").await?;
    until("a hold is quick again", WITHIN, || async {
        let (hold, took) = c.reserve(60).await.ok()?;
        c.release(&hold).await.ok()?;
        (took < HOLD).then_some(())
    })
    .await
}

/// A hold asked for 10 minutes expires after the value (3 s), and its
/// stock is free again; cleared, holds last what was asked.
async fn reservation_ttl_short(c: Arc<Ctx>) -> Result<(), String> {
    const ASKED_S: u32 = 600;
    let reserved = c.reserved().await?;
    c.set("reservation-ttl-short", Some("3")).await?;
    let sent = now_ms();
    let (hold, _) = c.reserve(ASKED_S).await?;
    let expires = hold["expires_at_ms"].as_i64().ok_or("no expires_at_ms")?;
    if expires - sent > 60_000 {
        return Err(format!(
            "the hold expires {} s after it was asked for",
            (expires - sent) / 1000
        ));
    }
    until(
        "the short hold expires and frees its unit",
        WITHIN,
        || async { (c.reserved().await.ok()? <= reserved).then_some(()) },
    )
    .await?;
    c.clear("reservation-ttl-short").await?;
    let sent = now_ms();
    let (hold, _) = c.reserve(ASKED_S).await?;
    c.release(&hold).await?;
    let expires = hold["expires_at_ms"].as_i64().ok_or("no expires_at_ms")?;
    if expires - sent < i64::from(ASKED_S - 10) * 1000 {
        return Err(format!(
            "cleared, a hold expires {} s after it was asked for",
            (expires - sent) / 1000
        ));
    }
    Ok(())
}

/// cdc stops streaming (its readiness says so) and an edit does not reach
/// search; cleared, it streams again and the edit arrives.
async fn cdc_paused(c: Arc<Ctx>) -> Result<(), String> {
    c.set("cdc-paused", None).await?;
    until("cdc reports it is not streaming", WITHIN, || async {
        (c.get(&url(Kind::Cdc, "/readyz"), None).await.ok()?.status != 200).then_some(())
    })
    .await?;
    c.edit_stalls_until_cleared("cdc-paused").await?;
    until("cdc is ready again", WITHIN, || async {
        (c.get(&url(Kind::Cdc, "/readyz"), None).await.ok()?.status == 200).then_some(())
    })
    .await
}

/// Search applies no product event: an edit does not become searchable
/// until cleared.
async fn search_indexing_stalled(c: Arc<Ctx>) -> Result<(), String> {
    c.set("search-indexing-stalled", None).await?;
    c.edit_stalls_until_cleared("search-indexing-stalled").await
}

/// Every publish and fetch waits the value: an edit takes at least that
/// long to become searchable.
async fn broker_slow(c: Arc<Ctx>) -> Result<(), String> {
    const SLOW: Duration = Duration::from_millis(1_500);
    c.set("broker-slow", Some("1500")).await?;
    let v = c.edit_product().await?;
    let edited = Instant::now();
    c.until_searchable(v).await?;
    let took = edited.elapsed();
    if took < SLOW {
        return Err(format!("the edit was searchable after {took:?}"));
    }
    c.clear("broker-slow").await?;
    let v = c.edit_product().await?;
    c.until_searchable(v).await
}

/// Search's consumer fails every 2 s and its runner restarts it
/// (`shopstream_consumer_restarts_total{reason="fault"}`); cleared, it
/// consumes: an edit becomes searchable.
async fn consumer_crash_loop(c: Arc<Ctx>) -> Result<(), String> {
    const RESTARTS: &str = "shopstream_consumer_restarts_total";
    let by_fault = ["reason=\"fault\""];
    let before = c.metric(Kind::Search, RESTARTS, &by_fault).await?;
    c.set("consumer-crash-loop", Some("2")).await?;
    until("search's consumer restarts twice", WITHIN, || async {
        (c.metric(Kind::Search, RESTARTS, &by_fault).await.ok()? >= before + 2.0).then_some(())
    })
    .await?;
    c.clear("consumer-crash-loop").await?;
    let v = c.edit_product().await?;
    c.until_searchable(v).await
}

/// Redis (the flag store) stopped for a few seconds: catalog stays up and
/// keeps the faults it knew (still slow); Redis back, clearing works.
async fn redis_unavailable(c: Arc<Ctx>) -> Result<(), String> {
    const SLOW: Duration = Duration::from_millis(400);
    let direct = url(Kind::Catalog, &format!("/products/{}", c.product.id));
    c.set("catalog-slow", Some("400ms")).await?;
    let catalog_pid = c.pid(Kind::Catalog)?;
    if !c.stack.stop_component(Kind::Redis).await {
        return Err("redis did not stop within its grace period".into());
    }
    let down = Instant::now();
    while down.elapsed() < QUIET {
        let a = c.get(&direct, None).await?;
        if a.status != 200 || a.took < SLOW {
            return Err(format!(
                "with redis down, catalog answered {} in {:?}: the last known faults were lost",
                a.status, a.took
            ));
        }
        let h = c.get(&url(Kind::Catalog, "/healthz"), None).await?;
        if h.status != 200 || c.stack.running_pid(Kind::Catalog) != Some(catalog_pid) {
            return Err(format!("catalog did not stay up: /healthz {}", h.status));
        }
    }
    c.stack
        .start_component(Kind::Redis)
        .await
        .map_err(|e| format!("redis did not start again: {e}"))?;
    until("the store answers again", WITHIN, || async {
        c.fault(&["clear", "catalog-slow"]).await.ok()
    })
    .await?;
    until("catalog reads the cleared store", WITHIN, || async {
        let a = c.get(&direct, None).await.ok()?;
        (a.status == 200 && a.took < SLOW).then_some(())
    })
    .await
}

/// Orders' checkout activities wait: a new order makes no progress; cleared,
/// it completes. (Held longer than about 10 s the saga gives up, so the
/// window stays short.)
async fn temporal_worker_paused(c: Arc<Ctx>) -> Result<(), String> {
    c.set("temporal-worker-paused", None).await?;
    let id = c.place_order().await?;
    never("the order moved on", || async {
        let o = c.order(&id).await.ok()?;
        (o["state"] != "pending").then(|| format!("it is {}", o["state"]))
    })
    .await?;
    c.clear("temporal-worker-paused").await?;
    let o = c.settled_order(&id).await?;
    if o["state"] != "completed" {
        return Err(format!("the held order ended {}", o["state"]));
    }
    Ok(())
}

/// mail-sim refuses every message with 503: the order's confirmation lands
/// in notifications' dead letters; cleared, the next one is delivered.
async fn email_provider_failing(c: Arc<Ctx>) -> Result<(), String> {
    c.set("email-provider-failing", Some("100")).await?;
    let o = c.completed_order().await?;
    let id = o["order_id"].as_str().unwrap_or_default().to_string();
    let dead = until("the confirmation is dead-lettered", WITHIN, || async {
        let v = c
            .ok(c
                .get(&url(Kind::Notifications, "/email/dead-letters"), None)
                .await)
            .ok()?;
        v["dead_letters"]
            .as_array()?
            .iter()
            .find(|d| d["order_id"] == id.as_str())
            .cloned()
    })
    .await?;
    if !dead["reason"].as_str().unwrap_or_default().contains("503") {
        return Err(format!("dead-lettered for another reason: {dead}"));
    }
    c.clear("email-provider-failing").await?;
    let o = c.completed_order().await?;
    let short = o["order_id"].as_str().unwrap_or_default()[..8].to_string();
    until("the next confirmation reaches mail-sim", WITHIN, || async {
        let v = c
            .ok(c.get(&url(Kind::MailSim, "/messages"), None).await)
            .ok()?;
        v["messages"]
            .as_array()?
            .iter()
            .any(|m| m["subject"].as_str().is_some_and(|s| s.contains(&short)))
            .then_some(())
    })
    .await
}

/// Upload a photo as the buyer; its asset id.
async fn upload_photo(c: &Ctx, seed: u64) -> Result<String, String> {
    let bytes = shopstream_media::samples::photo(320, 240, seed);
    let d = c.ok(c
        .call(
            reqwest::Method::POST,
            &url(Kind::Gateway, "/media/uploads"),
            Some(&c.buyer),
            &[],
            Some(json!({
                "kind": "image", "content_type": "image/jpeg", "size_bytes": bytes.len(),
                "filename": format!("faults-{seed}.jpg"), "ref": "",
            })),
        )
        .await)?;
    let id = d["asset"]["asset_id"]
        .as_str()
        .ok_or_else(|| format!("no asset id in {d}"))?
        .to_string();
    let target = d["upload"]["url"].as_str().ok_or("no upload url")?;
    let mut put = c.http.put(target).body(bytes);
    for (k, v) in d["upload"]["headers"]
        .as_object()
        .cloned()
        .unwrap_or_default()
    {
        put = put.header(k, v.as_str().unwrap_or_default());
    }
    let resp = put.send().await.map_err(|e| format!("PUT to S3: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("PUT to S3: HTTP {}", resp.status()));
    }
    Ok(id)
}

async fn asset(c: &Ctx, id: &str) -> Option<Value> {
    c.ok(c
        .get(&url(Kind::Gateway, &format!("/media/{id}")), Some(&c.buyer))
        .await)
        .ok()
}

/// Every thumbnail attempt fails while on; cleared, a new photo gets ready.
async fn media_thumbnail_failing(c: Arc<Ctx>) -> Result<(), String> {
    c.set("media-thumbnail-failing", None).await?;
    let id = upload_photo(&c, 1).await?;
    until("a thumbnail attempt fails by the fault", WITHIN, || async {
        let a = asset(&c, &id).await?;
        a["attempts"]
            .as_array()?
            .iter()
            .any(|t| {
                t["step"] == "thumbnail"
                    && t["error"]
                        .as_str()
                        .is_some_and(|e| e.contains("media-thumbnail-failing"))
            })
            .then_some(())
    })
    .await?;
    c.clear("media-thumbnail-failing").await?;
    let id = upload_photo(&c, 2).await?;
    let a = until("the next photo ends", WITHIN, || async {
        let a = asset(&c, &id).await?;
        matches!(a["status"].as_str(), Some("ready" | "failed" | "rejected")).then_some(a)
    })
    .await?;
    if a["status"] != "ready" {
        return Err(format!(
            "cleared, a photo ended {}: {}",
            a["status"], a["failure_reason"]
        ));
    }
    Ok(())
}

/// Once per set, every cached slice leaves Redis: the reader's next page
/// comes from Postgres; it is cached again and not flushed twice.
async fn feed_cache_flush(c: Arc<Ctx>) -> Result<(), String> {
    let page = || async {
        c.ok(c
            .get(&url(Kind::Gateway, "/feed?limit=5"), Some(&c.buyer))
            .await)
    };
    let cached = || async {
        let mut conn = redis::Client::open(Endpoints::native(PORTS).redis_url)
            .ok()?
            .get_multiplexed_async_connection()
            .await
            .ok()?;
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("feed:*:{}", c.buyer_id))
                .arg("COUNT")
                .arg(10_000)
                .query_async(&mut conn)
                .await
                .ok()?;
            if !keys.is_empty() {
                return Some(true);
            }
            if next == 0 {
                return Some(false);
            }
            cursor = next;
        }
    };
    until("the reader's slice is cached", WITHIN, || async {
        let p = page().await.ok()?;
        (p["source"] == "redis" && cached().await?).then_some(())
    })
    .await?;
    c.set("feed-cache-flush", None).await?;
    until("the slice leaves redis", WITHIN, || async {
        (!cached().await?).then_some(())
    })
    .await?;
    let p = page().await?;
    if p["source"] == "redis" {
        return Err(format!(
            "the first page after the flush was a hit: {}",
            p["source"]
        ));
    }
    until("the slice is cached again", WITHIN, || async {
        let p = page().await.ok()?;
        (p["source"] == "redis").then_some(())
    })
    .await?;
    // Still set: nothing flushes it a second time.
    never("the slice was flushed again", || async {
        (!cached().await?).then(|| "it left redis".to_string())
    })
    .await?;
    c.clear("feed-cache-flush").await?;
    let p = page().await?;
    if p["source"] != "redis" {
        return Err(format!("cleared, a page came from {}", p["source"]));
    }
    Ok(())
}

/// Orders' clock runs 2 minutes ahead: a new order's `created_at_ms` is in
/// the future; cleared, it is now again.
async fn clock_skew(c: Arc<Ctx>) -> Result<(), String> {
    const SKEW_MS: i64 = 120_000;
    c.set("clock-skew", None).await?;
    let before = now_ms();
    let id = c.place_order().await?;
    let created = c.order(&id).await?["created_at_ms"]
        .as_i64()
        .ok_or("no created_at_ms")?;
    if created - before < SKEW_MS * 9 / 10 {
        return Err(format!(
            "the order was created {} ms from now",
            created - before
        ));
    }
    c.settled_order(&id).await?;
    c.clear("clock-skew").await?;
    let before = now_ms();
    let id = c.place_order().await?;
    let created = c.order(&id).await?["created_at_ms"]
        .as_i64()
        .ok_or("no created_at_ms")?;
    c.settled_order(&id).await?;
    if created - before >= SKEW_MS / 2 {
        return Err(format!(
            "cleared, the order was created {} ms ahead",
            created - before
        ));
    }
    Ok(())
}

/// catalog's resident memory grows by most of the value; cleared, it is
/// given back.
async fn memory_hog(c: Arc<Ctx>) -> Result<(), String> {
    const MIB: f64 = 256.0;
    let pid = c.pid(Kind::Catalog)?;
    let before = rss_mib(pid)?;
    c.set("memory-hog", Some("256")).await?;
    until("catalog's RSS grows", WITHIN, || async {
        (rss_mib(pid).ok()? >= before + MIB * 0.75).then_some(())
    })
    .await?;
    c.clear("memory-hog").await?;
    until("catalog's RSS shrinks", WITHIN, || async {
        (rss_mib(pid).ok()? < before + MIB * 0.5).then_some(())
    })
    .await
}

/// search burns most of a core; cleared, it goes back to idle.
///
/// What the fault controls is demand, so that is what is judged: the
/// `cpu-hog` thread is on a CPU or waiting in the run queue for most of the
/// window (`/proc/PID/task/TID/schedstat`). How much CPU it then gets is the
/// scheduler's business: with the suite's other stacks busy on two cores it
/// once got less than a third of a core for a whole minute.
async fn cpu_hog(c: Arc<Ctx>) -> Result<(), String> {
    const WINDOW: Duration = Duration::from_secs(2);
    let pid = c.pid(Kind::Search)?;
    if hog_thread(pid).is_some() {
        return Err("search runs a cpu-hog thread before the fault is set".into());
    }
    c.set("cpu-hog", Some("80")).await?;
    let (demand, got) = until(
        "search's cpu-hog thread wants most of a core",
        WITHIN,
        || async {
            let (demand, got) = hog_demand(pid, WINDOW).await.ok()?;
            (demand >= 0.5).then_some((demand, got))
        },
    )
    .await?;
    eprintln!(
        "fault cpu-hog: the burner wanted {:.0} % of a core and got {:.0} %",
        demand * 100.0,
        got * 100.0
    );
    c.clear("cpu-hog").await?;
    until("search's cpu-hog thread stops", WITHIN, || async {
        hog_thread(pid).is_none().then_some(())
    })
    .await
}

/// The thread id of `pid`'s burner, if it runs one.
fn hog_thread(pid: u32) -> Option<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|tid| {
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
                .is_ok_and(|c| c.trim() == "cpu-hog")
        })
}

/// Over `window`: the share of it the burner spent runnable (on a CPU or
/// queued for one), and the share it spent on a CPU.
async fn hog_demand(pid: u32, window: Duration) -> Result<(f64, f64), String> {
    let tid = hog_thread(pid).ok_or("no cpu-hog thread yet")?;
    let read = || -> Result<(f64, f64), String> {
        let path = format!("/proc/{pid}/task/{tid}/schedstat");
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        let mut f = text.split_whitespace().map(|n| n.parse::<f64>());
        match (f.next(), f.next()) {
            (Some(Ok(run)), Some(Ok(wait))) => Ok((run / 1e9, wait / 1e9)),
            _ => Err(format!("{path}: unexpected {text:?}")),
        }
    };
    let (run0, wait0) = read()?;
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let (run1, wait1) = read()?;
    let secs = started.elapsed().as_secs_f64();
    Ok(((run1 - run0 + wait1 - wait0) / secs, (run1 - run0) / secs))
}

/// The gateway refuses new orders with 503; cleared, it takes them.
async fn checkout_paused(c: Arc<Ctx>) -> Result<(), String> {
    c.set("checkout-paused", None).await?;
    let a = c.place_order_answer().await?;
    if a.status != 503 {
        return Err(format!("POST /orders answered {}: {}", a.status, a.body));
    }
    c.clear("checkout-paused").await?;
    c.completed_order().await.map(|_| ())
}
