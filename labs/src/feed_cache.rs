//! The lab `feed-cache`: sign up a reader and see a first page at once (the
//! signup backfill); warm traffic over a dozen readers with the cache hit
//! rate and first-page latency; flush the feed's slices from Redis and see
//! pages still served, from Postgres, while the hit rate comes back (with
//! the numbers); then one reader follows another, the other likes the
//! product at the bottom of the first reader's page, and it moves up.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shopstream_platform::{config::DEFAULT_TENANT, metrics::sum_series};

use crate::{
    kit::{Lab, LabError, Probe},
    target::{Gateway, Target, status_error, unreachable},
};

pub const NAME: &str = "feed-cache";
pub const TITLE: &str =
    "the feed is served from Redis, survives a flush from Postgres, and moves with a like";
pub const SUMMARY: &str = "Sign up and get a first page at once; warm traffic with the hit rate \
    and first-page latency; flush the feed's slices from Redis: pages come from Postgres and \
    the hit rate recovers; follow someone, watch their like lift a product in your feed.";

/// Readers of the warm traffic.
const READERS: usize = 12;
/// First pages of the warm traffic.
const WARM_PAGES: usize = 240;
/// Cards per page in this lab.
const PAGE: u32 = 10;
/// The hit rate that counts as recovered.
const RECOVERED: f64 = 0.90;
const RECOVER_DEADLINE: Duration = Duration::from_secs(60);
const MOVE_DEADLINE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);
const PASSWORD: &str = "feed lab password";

const INTRO: &str = "Every shopper's feed is a slice: the 200 products that score best for them, \
    kept in a Redis sorted set and, row for row, in Postgres. A feature job reads activity.raw \
    (likes, views, comments, follows), analytics.raw (page views), order.lifecycle \
    (purchases), media.events (new pictures) and product.events (new products); it keeps \
    decayed counts per product and per shopper, scores products with a pure function of named \
    weights, and rewrites the slices that changed. GET /feed reads one page from Redis; on a \
    miss it reads Postgres (and puts the slice back); a shopper with no slice yet gets one \
    computed on the spot.";

/// The feed's `/metrics` text.
async fn metrics_text(http: &reqwest::Client, feed: &str) -> Result<String, LabError> {
    http.get(format!("{feed}/metrics"))
        .send()
        .await
        .map_err(|e| unreachable("the feed", feed, &e))?
        .text()
        .await
        .map_err(|e| unreachable("the feed", feed, &e))
}

/// The feed's page counters: (from redis, all).
async fn pages(http: &reqwest::Client, feed: &str) -> Result<(f64, f64), LabError> {
    let text = metrics_text(http, feed).await?;
    Ok((
        sum_series(&text, "shopstream_feed_pages_total", &["source=\"redis\""]),
        sum_series(&text, "shopstream_feed_pages_total", &[]),
    ))
}

async fn metric(http: &reqwest::Client, feed: &str, name: &str) -> Result<f64, LabError> {
    Ok(sum_series(&metrics_text(http, feed).await?, name, &[]))
}

async fn first_page(gw: &Gateway, debug: bool) -> Result<Value, LabError> {
    gw.get(&format!("/feed?limit={PAGE}&debug={debug}")).await
}

fn title(card: &Value) -> String {
    card["product"]["title"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| card["item_id"].as_str().unwrap_or_default().to_string())
}

fn rank_of(page: &Value, item: &str) -> Option<u64> {
    page["cards"]
        .as_array()?
        .iter()
        .find(|c| c["item_id"] == item)
        .and_then(|c| c["rank"].as_u64())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Delete every feed slice of `tenant` from Redis; returns how many keys.
async fn flush(redis_url: &str, tenant: &str) -> Result<usize, LabError> {
    let err = |e: redis::RedisError| LabError::NotReady(format!("redis at {redis_url}: {e}"));
    let mut conn = redis::Client::open(redis_url)
        .map_err(err)?
        .get_multiplexed_async_connection()
        .await
        .map_err(err)?;
    let mut deleted = 0;
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("feed:{tenant}:*"))
            .arg("COUNT")
            .arg(10_000)
            .query_async(&mut conn)
            .await
            .map_err(err)?;
        if !keys.is_empty() {
            deleted += keys.len();
            let _: () = redis::cmd("UNLINK")
                .arg(&keys)
                .query_async(&mut conn)
                .await
                .map_err(err)?;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}

async fn activity(
    gw: &Gateway,
    kind: &str,
    object: &str,
    client_id: &str,
) -> Result<Value, LabError> {
    Ok(gw
        .send(
            reqwest::Method::POST,
            "/activity",
            Some(&json!({"kind": kind, "object": object, "client_id": client_id})),
            &[],
        )
        .await?
        .body)
}

pub async fn script(lab: Lab, target: Target) -> Result<(), LabError> {
    lab.narrate(INTRO);
    let http = reqwest::Client::new();
    let feed = target.feed_http_url.clone();
    pages(&http, &feed).await?;
    let run = &uuid::Uuid::new_v4().simple().to_string()[..10];

    // A new reader: the signup computes the first slice.
    let mut alice = Gateway::new(&target.gateway_url)?;
    lab.action("sign up a new reader", async {
        let email = format!("feed-{run}-alice@labs.shopstream.dev");
        let id = alice.signup_and_login(&email, PASSWORD).await?;
        Ok(((), format!("{email} (user {id})")))
    })
    .await?;
    let first = lab
        .checkpoint(
            "the new reader's first page has cards",
            Duration::from_secs(20),
            POLL,
            || async {
                let p = first_page(&alice, false).await?;
                let n = p["cards"].as_array().map_or(0, Vec::len);
                Ok(if n > 0 {
                    let titles: Vec<String> = p["cards"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .take(3)
                        .map(title)
                        .collect();
                    Probe::Ready(
                        p.clone(),
                        format!(
                            "{n} cards from {} (slice {} ms old): {} …",
                            p["source"].as_str().unwrap_or_default(),
                            p["slice_age_ms"],
                            titles.join(", ")
                        ),
                    )
                } else {
                    Probe::Waiting(
                        "no cards yet: does the catalog have products? (`shopstream seed`)".into(),
                    )
                })
            },
        )
        .await?;
    lab.check(
        "the first page came from the slice the signup computed (or was computed on the spot)",
        matches!(first["source"].as_str(), Some("redis" | "computed")),
        "redis or computed",
        first["source"].to_string(),
    );

    // Readers and warm traffic.
    let readers: Vec<Gateway> = lab
        .action(&format!("sign up {READERS} more readers"), async {
            let mut out = vec![];
            for i in 0..READERS {
                let mut g = Gateway::new(&target.gateway_url)?;
                g.signup_and_login(&format!("feed-{run}-r{i}@labs.shopstream.dev"), PASSWORD)
                    .await?;
                out.push(g);
            }
            let n = out.len();
            Ok((
                out,
                format!("{n} accounts, each with a slice from its signup"),
            ))
        })
        .await?;
    // Every reader's slice is in place before the traffic is measured.
    for g in &readers {
        first_page(g, false).await?;
    }
    let (h0, a0) = pages(&http, &feed).await?;
    let latencies = lab
        .action(&format!("warm traffic: {WARM_PAGES} first pages over the readers"), async {
            let mut ms = vec![];
            for i in 0..WARM_PAGES {
                let t = Instant::now();
                first_page(&readers[i % READERS], false).await?;
                ms.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            ms.sort_by(f64::total_cmp);
            let d = format!(
                "GET /feed p50 {:.1} ms, p95 {:.1} ms (through the gateway, with product cards)",
                percentile(&ms, 50.0),
                percentile(&ms, 95.0)
            );
            Ok((ms, d))
        })
        .await?;
    let (h1, a1) = pages(&http, &feed).await?;
    let warm_hit = (h1 - h0) / (a1 - a0).max(1.0);
    lab.measure("first page p50 (warm)", percentile(&latencies, 50.0), "ms");
    lab.measure("first page p95 (warm)", percentile(&latencies, 95.0), "ms");
    lab.measure("hit rate (warm)", 100.0 * warm_hit, "%");
    lab.check(
        "warm traffic is served from Redis",
        warm_hit >= RECOVERED,
        format!("≥ {:.0} %", 100.0 * RECOVERED),
        format!("{:.1} %", 100.0 * warm_hit),
    );

    // Flush.
    let rewarmed0 = metric(&http, &feed, "shopstream_feed_slices_rewarmed_total").await?;
    let deleted = lab
        .action("flush the feed's slices from Redis", async {
            let n = flush(&target.redis_url, DEFAULT_TENANT).await?;
            Ok((n, format!("{n} keys deleted (feed:{DEFAULT_TENANT}:*)")))
        })
        .await?;
    let flushed = Instant::now();
    let after = lab
        .action("read a first page right after the flush", async {
            let t = Instant::now();
            let p = first_page(&readers[0], false).await?;
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            let d = format!(
                "{} cards from {} in {ms:.1} ms",
                p["cards"].as_array().map_or(0, Vec::len),
                p["source"].as_str().unwrap_or_default()
            );
            Ok((p, d))
        })
        .await?;
    lab.check(
        "with the slices gone from Redis, the page comes from Postgres",
        after["source"] == "postgres" && after["cards"].as_array().is_some_and(|c| !c.is_empty()),
        "source postgres, cards",
        format!("source {}", after["source"]),
    );
    let mut round = 0usize;
    let recovered = lab
        .checkpoint(
            "the hit rate is back above 90 %",
            RECOVER_DEADLINE,
            POLL,
            || {
                round += 1;
                let (http, feed, readers) = (&http, &feed, &readers);
                async move {
                    let (h0, a0) = pages(http, feed).await?;
                    for g in readers {
                        first_page(g, false).await?;
                    }
                    let (h1, a1) = pages(http, feed).await?;
                    let rate = (h1 - h0) / (a1 - a0).max(1.0);
                    let secs = flushed.elapsed().as_secs_f64();
                    Ok(if rate >= RECOVERED {
                        Probe::Ready(
                            secs,
                            format!(
                                "{:.0} % of round {round} from Redis, {secs:.2} s after the flush",
                                100.0 * rate
                            ),
                        )
                    } else {
                        Probe::Waiting(format!("round {round}: {:.0} % from Redis", 100.0 * rate))
                    })
                }
            },
        )
        .await?;
    let rewarmed = metric(&http, &feed, "shopstream_feed_slices_rewarmed_total").await? - rewarmed0;
    lab.measure("keys flushed", deleted as f64, "");
    lab.measure("hit rate back above 90 % after", recovered, "s");
    lab.measure("slices put back by the warmer", rewarmed, "");

    // A like moves a product.
    let bob = &readers[0];
    let bob_id = bob_user_id(bob).await?;
    let before = first_page(&alice, false).await?;
    let last = before["cards"]
        .as_array()
        .and_then(|c| c.last())
        .cloned()
        .ok_or_else(|| LabError::Failed("alice's first page is empty".into()))?;
    let item = last["item_id"].as_str().unwrap_or_default().to_string();
    let old_rank = last["rank"].as_u64().unwrap_or_default();
    lab.action("alice follows another reader (bob)", async {
        let a = activity(
            &alice,
            "follow",
            &format!("user:{bob_id}"),
            &format!("follow-{run}"),
        )
        .await?;
        Ok(((), format!("activity {}", a["activity"]["activity_id"])))
    })
    .await?;
    let liked = lab
        .action(
            &format!("bob likes the product at rank {old_rank} of alice's feed"),
            async {
                let a = activity(
                    bob,
                    "like",
                    &format!("product:{item}"),
                    &format!("like-{run}"),
                )
                .await?;
                Ok((a.clone(), format!("{} ({item})", title(&last))))
            },
        )
        .await?;
    let replay = lab
        .action("bob sends the same like again (same client_id)", async {
            let a = bob
                .send(
                    reqwest::Method::POST,
                    "/activity",
                    Some(&json!({"kind": "like", "object": format!("product:{item}"),
                        "client_id": format!("like-{run}")})),
                    &[],
                )
                .await?;
            let d = format!(
                "HTTP {}, replayed {}",
                a.status.as_u16(),
                a.body["replayed"]
            );
            Ok((a, d))
        })
        .await?;
    lab.check(
        "a replayed client_id records nothing new",
        replay.status.as_u16() == 200
            && replay.body["replayed"] == true
            && replay.body["activity"]["activity_id"] == liked["activity"]["activity_id"],
        "200, replayed, the same activity",
        format!("{} {}", replay.status.as_u16(), replay.body["replayed"]),
    );
    let moved = lab
        .checkpoint(
            "the liked product moves up in alice's feed",
            MOVE_DEADLINE,
            POLL,
            || async {
                let p = first_page(&alice, true).await?;
                Ok(match rank_of(&p, &item) {
                    Some(r) if r < old_rank => {
                        let card = p["cards"]
                            .as_array()
                            .and_then(|c| c.iter().find(|c| c["item_id"] == item.as_str()))
                            .cloned()
                            .unwrap_or_default();
                        let parts: Vec<String> = card["contributions"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|c| {
                                format!(
                                    "{} {:.2}",
                                    c["feature"].as_str().unwrap_or_default(),
                                    c["value"].as_f64().unwrap_or_default()
                                )
                            })
                            .collect();
                        Probe::Ready(
                            card,
                            format!("rank {old_rank} → {r}; score = {}", parts.join(" + ")),
                        )
                    }
                    r => Probe::Waiting(format!("rank {r:?}")),
                })
            },
        )
        .await?;
    lab.check(
        "the social signal is what moved it",
        moved["contributions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|x| x["feature"] == "social.likes")),
        "a social.likes contribution",
        moved["contributions"].to_string(),
    );
    Ok(())
}

/// `GET /me`'s id for the signed-in reader.
async fn bob_user_id(gw: &Gateway) -> Result<String, LabError> {
    let me = gw.get("/me").await?;
    me["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| status_error("GET /me", reqwest::StatusCode::OK, &me.to_string()))
}
