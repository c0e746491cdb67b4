//! The checkout and flash-sale benchmarks. Both buy through the gateway as a
//! fresh signed-up user; stock is set beforehand through inventory's gRPC
//! `SetStock` (an operator action, like `shopstream seed`).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures::StreamExt;
use hdrhistogram::Histogram;
use serde::Serialize;
use shopstream_platform::config::{Ports, service_addrs};
use shopstream_proto::inventory::v1::{
    GetStockRequest, SetStockRequest, Stock, inventory_service_client::InventoryServiceClient,
};

use super::{Job, MakeJob, Report, rand_suffix};
use crate::exit;

/// What the checkout load buys from.
pub struct Setup {
    pub(super) token: String,
    /// (product_id, sku_id)
    pub lines: Vec<(String, String)>,
    pub run_id: String,
}

pub(crate) async fn inventory(
    ports: &Ports,
) -> anyhow::Result<InventoryServiceClient<tonic::transport::Channel>> {
    let (_, grpc) = service_addrs("inventory", ports.services).expect("inventory is a service");
    Ok(InventoryServiceClient::new(
        shopstream_platform::grpc::channel(
            &format!("http://{grpc}"),
            Duration::from_secs(2),
            Duration::from_secs(5),
        )?,
    ))
}

/// The stock of `sku_id` now; all zero when inventory does not know it (or
/// does not answer).
pub(crate) async fn stock_of(
    inv: &mut InventoryServiceClient<tonic::transport::Channel>,
    sku_id: &str,
) -> Stock {
    inv.get_stock(GetStockRequest {
        sku_id: sku_id.to_string(),
    })
    .await
    .map(|r| r.into_inner().stock.unwrap_or_default())
    .unwrap_or_default()
}

pub(crate) async fn set_available(
    inv: &mut InventoryServiceClient<tonic::transport::Channel>,
    sku_id: &str,
    available: i64,
) -> anyhow::Result<Stock> {
    let now = stock_of(inv, sku_id).await;
    let set = inv
        .set_stock(SetStockRequest {
            sku_id: sku_id.to_string(),
            on_hand: now.reserved + available,
        })
        .await
        .map_err(|s| anyhow::anyhow!("inventory SetStock {sku_id}: {}", s.message()))?;
    Ok(set.into_inner().stock.unwrap_or_default())
}

/// A fresh buyer's access token.
pub(super) async fn buyer(
    client: &reqwest::Client,
    base: &str,
    run_id: &str,
) -> anyhow::Result<String> {
    Ok(buyer_session(client, base, run_id).await?.0)
}

/// A fresh buyer: (access token, user id).
pub(crate) async fn buyer_session(
    client: &reqwest::Client,
    base: &str,
    run_id: &str,
) -> anyhow::Result<(String, String)> {
    let creds = serde_json::json!({
        "email": format!("bench-buyer-{run_id}@example.com"),
        "password": "bench password for shopstream",
    });
    client
        .post(format!("{base}/auth/signup"))
        .json(&creds)
        .send()
        .await?;
    let session: serde_json::Value = client
        .post(format!("{base}/auth/login"))
        .json(&creds)
        .send()
        .await?
        .json()
        .await?;
    let token = session["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("login as the benchmark buyer failed: {session}"))?;
    let user_id =
        subject_of(&token).ok_or_else(|| anyhow::anyhow!("the access token carries no subject"))?;
    Ok((token, user_id))
}

/// The `sub` claim of a JWT (read, not verified: our own token).
fn subject_of(token: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v["sub"].as_str().map(str::to_owned)
}

/// How long [`products`] keeps asking while the gateway answers 5xx or does
/// not answer: the catalog may be briefly unavailable right after a
/// scenario's faults (CI once saw the next run begin inside that moment).
const PRODUCTS_PATIENCE: Duration = Duration::from_secs(20);

/// (product_id, first sku_id) of up to `n` products. A 5xx or a transport
/// error is asked again, backing off, for up to [`PRODUCTS_PATIENCE`]; a
/// page that cannot be had is an error naming the answer, never an empty
/// list (which callers report as "the catalog is empty").
pub(crate) async fn products(
    client: &reqwest::Client,
    base: &str,
    n: usize,
) -> anyhow::Result<Vec<(String, String)>> {
    let url = format!("{base}/products?limit={n}");
    let deadline = Instant::now() + PRODUCTS_PATIENCE;
    let mut wait = Duration::from_millis(200);
    let page: serde_json::Value = loop {
        let failure = match client.get(&url).send().await {
            Ok(r) if r.status().is_success() => break r.json().await?,
            Ok(r) => {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                let failure = anyhow::anyhow!("GET {url} answered {status}: {body}");
                if !status.is_server_error() {
                    return Err(failure);
                }
                failure
            }
            Err(e) => anyhow::Error::new(e).context(format!("GET {url}")),
        };
        if Instant::now() + wait > deadline {
            return Err(failure.context(format!(
                "the catalog's products could not be listed for {} s",
                PRODUCTS_PATIENCE.as_secs()
            )));
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(2));
    };
    Ok(parse_products(&page))
}

/// (product_id, first sku_id) of each product on a `GET /products` page.
fn parse_products(page: &serde_json::Value) -> Vec<(String, String)> {
    page["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| {
                    Some((
                        p["id"].as_str()?.to_string(),
                        p["skus"][0]["id"].as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A buyer, 20 products, and `stock` units available of each.
pub async fn prepare(
    client: &reqwest::Client,
    base: &str,
    ports: &Ports,
    stock: i64,
) -> anyhow::Result<Result<Setup, u8>> {
    let run_id = format!("{:x}", rand_suffix());
    let lines = products(client, base, 20).await?;
    if lines.is_empty() {
        eprintln!("error: the catalog is empty: run `shopstream seed` first");
        return Ok(Err(exit::NOT_READY));
    }
    let mut inv = inventory(ports).await?;
    for (_, sku) in &lines {
        set_available(&mut inv, sku, stock).await?;
    }
    let token = buyer(client, base, &run_id).await?;
    Ok(Ok(Setup {
        token,
        lines,
        run_id,
    }))
}

/// How the checkout benchmark learns when an order completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Follow {
    /// The order's own stamp: orders writes `updated_at_ms` in the statement
    /// that records the final step (taken just before it), so a completed
    /// order says when it completed. The benchmark asks every
    /// [`STAMP_POLL`] whether it has, which keeps its own requests (which
    /// share the machine with the stack) from growing with the latency
    /// they measure. Read against this machine's clock, and kept between
    /// the moment the benchmark sent the order and the answer that showed
    /// it completed, so another machine's clock cannot move it outside that.
    Stamp,
    /// The moment a poll first sees the order completed, asking every
    /// [`POLL_EVERY`]: a client's view, with up to that much added, and
    /// one request per order in flight every 50 ms.
    Poll,
}

/// How often [`Follow::Stamp`] asks.
const STAMP_POLL: Duration = Duration::from_millis(500);
/// How often [`Follow::Poll`] asks.
const POLL_EVERY: Duration = Duration::from_millis(50);
/// How long an order is followed before it counts as failed.
const FOLLOW_FOR: Duration = Duration::from_secs(30);

/// A pair of readings of the monotonic and the wall clock, to turn a
/// wall-clock stamp in milliseconds into an [`Instant`].
#[derive(Debug, Clone, Copy)]
struct ClockPair {
    instant: Instant,
    wall_ms: i64,
}

impl ClockPair {
    fn now() -> Self {
        ClockPair {
            instant: Instant::now(),
            wall_ms: crate::scenario::now_ms(),
        }
    }

    /// `stamp_ms` (wall clock) as an instant, kept within `[from, to]`.
    fn instant_of(&self, stamp_ms: i64, from: Instant, to: Instant) -> Instant {
        let offset = Duration::from_millis(stamp_ms.abs_diff(self.wall_ms));
        let at = if stamp_ms >= self.wall_ms {
            self.instant.checked_add(offset)
        } else {
            self.instant.checked_sub(offset)
        };
        at.unwrap_or(to).clamp(from, to)
    }
}

/// When a completed order (`GET /orders/{id}`'s answer, read at `seen`)
/// completed: its `updated_at_ms`, which orders writes with the last step,
/// as an instant no earlier than `from` (when it was placed) and no later
/// than `seen`; `seen` when the answer has no stamp.
pub(crate) fn completed_at(order: &serde_json::Value, from: Instant, seen: Instant) -> Instant {
    order["updated_at_ms"]
        .as_i64()
        .map_or(seen, |ms| ClockPair::now().instant_of(ms, from, seen))
}

/// Place order n, then follow it until the saga ends; success = completed.
pub fn job(client: reqwest::Client, base: String, setup: Setup, follow: Follow) -> MakeJob {
    let setup = Arc::new(setup);
    Arc::new(move |n| -> Job {
        let (c, b, s) = (client.clone(), base.clone(), setup.clone());
        Box::pin(async move {
            let sent = Instant::now();
            let (product, sku) = &s.lines[n as usize % s.lines.len()];
            let body = serde_json::json!({
                "items": [{"product_id": product, "sku_id": sku, "quantity": 1}],
                "payment_method": "pm_card_visa",
            });
            let Ok(resp) = c
                .post(format!("{b}/orders"))
                .bearer_auth(&s.token)
                .header("Idempotency-Key", format!("bench-{}-{n}", s.run_id))
                .json(&body)
                .send()
                .await
            else {
                return false.into();
            };
            if !resp.status().is_success() {
                return false.into();
            }
            let Ok(order) = resp.json::<serde_json::Value>().await else {
                return false.into();
            };
            let Some(id) = order["order_id"].as_str() else {
                return false.into();
            };
            let every = match follow {
                Follow::Stamp => STAMP_POLL,
                Follow::Poll => POLL_EVERY,
            };
            let deadline = Instant::now() + FOLLOW_FOR;
            while Instant::now() < deadline {
                tokio::time::sleep(every).await;
                let Ok(r) = c
                    .get(format!("{b}/orders/{id}"))
                    .bearer_auth(&s.token)
                    .send()
                    .await
                else {
                    continue;
                };
                let Ok(o) = r.json::<serde_json::Value>().await else {
                    continue;
                };
                let seen = Instant::now();
                match o["state"].as_str() {
                    Some("completed") => {
                        let at = match follow {
                            Follow::Stamp => completed_at(&o, sent, seen),
                            Follow::Poll => seen,
                        };
                        return super::Done {
                            ok: true,
                            at: Some(at),
                        };
                    }
                    Some("cancelled") => return false.into(),
                    _ => {}
                }
            }
            false.into()
        })
    })
}

/// What the flash sale measured.
#[derive(Debug, Clone, Serialize)]
pub struct FlashSummary {
    pub sku_id: String,
    pub stock: i64,
    pub attempts: u32,
    pub reserved: u64,
    /// 409: not enough stock (the correct answer once it is gone).
    pub refused: u64,
    pub errors: u64,
    pub elapsed_s: f64,
    pub attempts_per_s: f64,
    pub stock_reserved_after: i64,
    pub stock_available_after: i64,
    /// Units reserved beyond the stock; anything but 0 is a bug.
    pub oversold: i64,
}

pub struct Flash {
    pub report: Report,
    pub summary: FlashSummary,
}

/// Requests in flight during the flash sale.
const FLASH_CONCURRENCY: usize = 64;

pub async fn flash_sale(
    client: &reqwest::Client,
    base: &str,
    ports: &Ports,
    stock: i64,
    attempts: u32,
) -> anyhow::Result<Result<Flash, u8>> {
    let run_id = format!("{:x}", rand_suffix());
    let Some((_, sku)) = products(client, base, 1).await?.into_iter().next() else {
        eprintln!("error: the catalog is empty: run `shopstream seed` first");
        return Ok(Err(exit::NOT_READY));
    };
    let mut inv = inventory(ports).await?;
    let before = set_available(&mut inv, &sku, stock).await?;
    let token = buyer(client, base, &run_id).await?;
    eprintln!(
        "bench: flash sale: {attempts} reservations of 1 unit of {sku} ({stock} available), {FLASH_CONCURRENCY} in flight"
    );
    let started = Instant::now();
    let results: Vec<(u16, Option<String>, u64)> = futures::stream::iter(0..attempts)
        .map(|_| {
            let (c, token, sku) = (client.clone(), token.clone(), sku.clone());
            let url = format!("{base}/reservations");
            async move {
                let t = Instant::now();
                let r = c
                    .post(url)
                    .bearer_auth(token)
                    .json(&serde_json::json!({"items": [{"sku_id": sku, "quantity": 1}], "ttl_s": 300}))
                    .send()
                    .await;
                let (status, id) = match r {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let v: serde_json::Value = r.json().await.unwrap_or_default();
                        (status, v["reservation_id"].as_str().map(str::to_owned))
                    }
                    Err(_) => (0, None),
                };
                (status, id, t.elapsed().as_micros() as u64)
            }
        })
        .buffer_unordered(FLASH_CONCURRENCY)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let after = inv
        .get_stock(GetStockRequest {
            sku_id: sku.clone(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("inventory GetStock: {}", s.message()))?
        .into_inner()
        .stock
        .unwrap_or_default();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut reserved, mut refused, mut errors) = (0u64, 0u64, 0u64);
    let mut ids = Vec::new();
    for (status, id, us) in results {
        let _ = hist.record(us.max(1));
        match status {
            201 => {
                reserved += 1;
                ids.extend(id);
            }
            409 => refused += 1,
            _ => errors += 1,
        }
    }
    // Give the stock back.
    futures::stream::iter(ids)
        .map(|id| {
            let (c, token) = (client.clone(), token.clone());
            let url = format!("{base}/reservations/{id}");
            async move {
                let _ = c.delete(url).bearer_auth(token).send().await;
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    let held_by_us = after.reserved - before.reserved;
    let oversold =
        (reserved as i64 - stock).max(0) + (held_by_us - stock).max(0) + (-after.available).max(0);
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let secs = elapsed.as_secs_f64().max(1e-9);
    Ok(Ok(Flash {
        report: Report {
            target: "flash sale (POST /reservations)".into(),
            rate_per_s: 0,
            duration_s: elapsed.as_secs(),
            requests: u64::from(attempts),
            ok: reserved + refused,
            errors,
            dropped: 0,
            achieved_per_s: f64::from(attempts) / secs,
            latency_ms_p50: ms(0.50),
            latency_ms_p95: ms(0.95),
            latency_ms_p99: ms(0.99),
            latency_ms_max: hist.max() as f64 / 1000.0,
            in_flight: None,
            ratio_to_floor: None,
            ok_in_warmup: 0,
        },
        summary: FlashSummary {
            sku_id: sku,
            stock,
            attempts,
            reserved,
            refused,
            errors,
            elapsed_s: secs,
            attempts_per_s: f64::from(attempts) / secs,
            stock_reserved_after: after.reserved,
            stock_available_after: after.available,
            oversold,
        },
    }))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A gateway that answers each connection with the next of `answers`
    /// (status line and body), one request per connection.
    async fn gateway(answers: Vec<(&'static str, &'static str)>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            for (status, body) in answers {
                let (mut conn, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                conn.write_all(reply.as_bytes()).await.unwrap();
            }
        });
        base
    }

    const PAGE: &str = r#"{"items":[{"id":"p1","skus":[{"id":"s1"}]},{"id":"p2","skus":[]}]}"#;

    #[tokio::test]
    async fn a_briefly_unavailable_catalog_is_asked_again() {
        let base = gateway(vec![
            (
                "503 Service Unavailable",
                r#"{"title":"catalog is unavailable"}"#,
            ),
            ("504 Gateway Timeout", "{}"),
            ("200 OK", PAGE),
        ])
        .await;
        let got = products(&reqwest::Client::new(), &base, 2).await.unwrap();
        assert_eq!(got, vec![("p1".to_string(), "s1".to_string())]);
    }

    #[tokio::test]
    async fn a_refused_list_is_an_error_naming_the_answer_not_an_empty_catalog() {
        let base = gateway(vec![(
            "422 Unprocessable Entity",
            r#"{"title":"invalid limit"}"#,
        )])
        .await;
        let err = products(&reqwest::Client::new(), &base, 500)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("422") && err.contains("invalid limit"),
            "{err}"
        );
    }

    #[test]
    fn a_stamp_becomes_the_instant_it_names_kept_between_the_start_and_the_answer() {
        let clock = ClockPair::now();
        let from = clock.instant;
        let to = from + Duration::from_secs(2);
        // 750 ms after the pair was read, on the same clock.
        let at = clock.instant_of(clock.wall_ms + 750, from, to);
        assert_eq!(at - from, Duration::from_millis(750));
        // A stamp before the order was placed, or after the answer that
        // showed it completed (another machine's clock), is kept inside.
        assert_eq!(clock.instant_of(clock.wall_ms - 5_000, from, to), from);
        assert_eq!(clock.instant_of(clock.wall_ms + 60_000, from, to), to);
        // An answer without a stamp completed when it was seen.
        let answer = serde_json::json!({"state": "completed"});
        assert_eq!(completed_at(&answer, from, to), to);
        let stamped = serde_json::json!({"state": "completed", "updated_at_ms": 0});
        assert_eq!(completed_at(&stamped, from, to), from);
    }
}
