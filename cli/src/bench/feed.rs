//! `bench --target feed`: the feed at scale, in a tenant of its own
//! (`bench-feed-<run>`, so the demo shop is untouched).
//!
//! 1. **Load the feature job**: publish N products (`product.events`, as CDC
//!    would) and, per user, follows, likes and views (`activity.raw`, as
//!    `PublishActivity` would; items drawn with a popularity skew), then wait
//!    until the job has applied them all: its events/s.
//! 2. **Backfill** every user's slice: slices/s.
//! 3. **Steady traffic**: first pages (`GetPage`, gRPC) for random users,
//!    open loop at a fixed rate: latency from each request's scheduled start
//!    and the hit rate (`shopstream_feed_pages_total{source="redis"}` over all pages).
//! 4. **Redis flush**: delete the tenant's feed keys and keep the traffic
//!    going: the time until the hit rate over a 1 s window is back above 90 %.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures::StreamExt;
use serde::Serialize;
use shopstream_feed::domain::activity::{self, ActivityEvent, Kind};
use shopstream_platform::{
    clock::SystemClock,
    config::{Endpoints, Ports, service_addrs},
    events::{Envelope, kafka::KafkaBus},
    grpc::with_tenant,
    ids::{FixedId, SystemIdGen},
    metrics::sum_series,
};
use shopstream_proto::feed::v1::{
    BackfillRequest, GetPageRequest, feed_service_client::FeedServiceClient,
};
use uuid::Uuid;

use super::{Report, run_load};
use crate::exit;

/// Events published at once.
const PUBLISH_CONCURRENCY: usize = 512;
/// Bound on the job catching up, and on the hit rate recovering.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(600);
const RECOVER_TIMEOUT: Duration = Duration::from_secs(120);
/// The hit-rate window after the flush.
const WINDOW: Duration = Duration::from_secs(1);
/// The hit rate that counts as recovered.
const RECOVERED: f64 = 0.90;

pub struct FeedArgs {
    pub users: usize,
    pub items: usize,
    pub rate: u32,
    pub duration: Duration,
    pub max_in_flight: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct FeedSummary {
    pub tenant: String,
    pub users: usize,
    pub items: usize,
    pub events: usize,
    pub publish_s: f64,
    /// Events applied per second, from the first publish to the last applied.
    pub job_events_per_s: f64,
    pub backfill_s: f64,
    pub backfill_slices_per_s: f64,
    pub hit_rate: f64,
    /// From the flush to the first 1 s window with a hit rate ≥ 90 %.
    pub recover_to_90_s: Option<f64>,
    /// The lowest 1 s hit rate seen after the flush.
    pub hit_rate_after_flush_min: f64,
    pub slices_rewarmed: f64,
}

/// A cheap deterministic generator (xorshift), so a run is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// In [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An index in 0..n, skewed towards 0 (a few items are popular).
    fn skewed(&mut self, n: usize) -> usize {
        ((self.unit().powi(3)) * n as f64) as usize
    }

    fn uniform(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

async fn scrape(client: &reqwest::Client, base: &str) -> String {
    match client.get(format!("{base}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

fn pages(text: &str) -> (f64, f64) {
    (
        sum_series(text, "shopstream_feed_pages_total", &["source=\"redis\""]),
        sum_series(text, "shopstream_feed_pages_total", &[]),
    )
}

pub async fn run(
    http: &reqwest::Client,
    ports: &Ports,
    a: FeedArgs,
) -> anyhow::Result<Result<(Report, FeedSummary), u8>> {
    let (feed_http, feed_grpc) = service_addrs("feed", ports.services).expect("feed is a service");
    let (metrics_base, grpc_url) = (format!("http://{feed_http}"), format!("http://{feed_grpc}"));
    if scrape(http, &metrics_base).await.is_empty() {
        eprintln!("error: no feed at {metrics_base}: start the stack (shopstream up)");
        return Ok(Err(exit::NOT_READY));
    }
    let endpoints = Endpoints::native(*ports);
    let bus = KafkaBus::connect(&endpoints)?;
    let run_id = super::rand_suffix();
    let tenant = format!("bench-feed-{:x}", run_id & 0xffff_ffff);
    let mut rng = Rng(run_id | 1);
    let items: Vec<String> = (0..a.items).map(|_| Uuid::now_v7().to_string()).collect();
    let users: Vec<Uuid> = (0..a.users).map(|_| Uuid::now_v7()).collect();
    let now = shopstream_platform::clock::Clock::now_ms(&SystemClock);

    // 1. The events: products first, then each user's activity.
    let mut events: Vec<(&'static str, Envelope)> = Vec::with_capacity(a.items + a.users * 7);
    for (i, id) in items.iter().enumerate() {
        let ts = now - (a.items - i) as i64 * 1_000;
        let row = serde_json::json!({"id": Uuid::now_v7(), "tenant_id": tenant, "aggregate_id": id,
            "event_type": "shopstream.events.v1.ProductChanged",
            "payload": {"product_id": id, "version": 1, "kind": "created", "ts_ms": ts}});
        let payload = serde_json::json!({"before": null, "after": row, "op": "c", "ts_ms": ts,
            "source": {"db": "catalog", "table": "outbox", "ts_ms": ts}});
        events.push((
            "product.events",
            Envelope::new(
                "shopstream.events.v1.ProductChanged",
                1,
                &tenant,
                id,
                &payload,
                &SystemClock,
                &SystemIdGen,
            )?,
        ));
    }
    for (n, u) in users.iter().enumerate() {
        let mut acts: Vec<(Kind, String)> = vec![];
        for _ in 0..2 {
            acts.push((
                Kind::Follow,
                format!("user:{}", users[rng.uniform(a.users)]),
            ));
            acts.push((
                Kind::Like,
                format!("product:{}", items[rng.skewed(a.items)]),
            ));
        }
        for _ in 0..3 {
            acts.push((
                Kind::View,
                format!("product:{}", items[rng.skewed(a.items)]),
            ));
        }
        for (k, (kind, object)) in acts.into_iter().enumerate() {
            if object == format!("user:{u}") {
                continue;
            }
            let id = activity::activity_id(&tenant, *u, &format!("bench-{n}-{k}"));
            let ev = ActivityEvent {
                activity_id: id,
                actor_id: *u,
                kind,
                object,
                ts_ms: now - rng.uniform(3_600_000) as i64,
            };
            events.push((
                "activity.raw",
                Envelope::new(
                    activity::EVENT_TYPE,
                    1,
                    &tenant,
                    &u.to_string(),
                    &ev,
                    &SystemClock,
                    &FixedId(id),
                )?,
            ));
        }
    }
    let total = events.len();
    let before = sum_series(
        &scrape(http, &metrics_base).await,
        "shopstream_feed_job_events_total",
        &["outcome=\"applied\""],
    );
    eprintln!(
        "bench: feed: publishing {total} events ({} products, {} users' follows, likes and views) to tenant {tenant}",
        a.items, a.users
    );
    let started = Instant::now();
    let bus_ref = &bus;
    let failed = futures::stream::iter(events)
        .map(|(topic, e)| async move { bus_ref.publish(topic, &e).await.is_err() })
        .buffer_unordered(PUBLISH_CONCURRENCY)
        .filter(|f| std::future::ready(*f))
        .count()
        .await;
    let publish_s = started.elapsed().as_secs_f64();
    if failed > 0 {
        eprintln!("error: {failed} of {total} events were not published");
        return Ok(Err(exit::FAILED));
    }
    eprintln!("bench: feed: published in {publish_s:.1} s; waiting for the feature job");
    let caught_up = loop {
        let applied = sum_series(
            &scrape(http, &metrics_base).await,
            "shopstream_feed_job_events_total",
            &["outcome=\"applied\""],
        ) - before;
        if applied >= total as f64 {
            break Some(started.elapsed());
        }
        if started.elapsed() > CATCH_UP_TIMEOUT {
            eprintln!(
                "error: the feature job applied {applied} of {total} events in {CATCH_UP_TIMEOUT:?}"
            );
            break None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let Some(caught_up) = caught_up else {
        return Ok(Err(exit::FAILED));
    };
    let job_events_per_s = total as f64 / caught_up.as_secs_f64();
    eprintln!(
        "bench: feed: the job applied {total} events in {:.1} s ({job_events_per_s:.0}/s)",
        caught_up.as_secs_f64()
    );

    // 2. Every user's slice: queued, written by the feed's materializer.
    let channel = shopstream_platform::grpc::channel(
        &grpc_url,
        Duration::from_secs(5),
        Duration::from_secs(10),
    )?;
    let mut feed = FeedServiceClient::new(channel.clone());
    let written_before = crate::feed::slice_progress(http, &metrics_base)
        .await
        .map_or(0.0, |p| p.1);
    let t0 = Instant::now();
    let b = feed
        .backfill(with_tenant(
            BackfillRequest {
                user_id: String::new(),
                all: true,
            },
            &tenant,
        ))
        .await?
        .into_inner();
    if !crate::feed::wait_written(
        http,
        &metrics_base,
        written_before,
        u64::from(b.users),
        CATCH_UP_TIMEOUT,
        |_| {},
    )
    .await
    {
        eprintln!(
            "error: the feed did not write {} slices in {CATCH_UP_TIMEOUT:?}",
            b.users
        );
        return Ok(Err(exit::FAILED));
    }
    let backfill_s = t0.elapsed().as_secs_f64();
    eprintln!(
        "bench: feed: backfilled {} slices in {backfill_s:.1} s",
        b.users
    );

    // 3. Steady traffic.
    let page_channel = shopstream_platform::grpc::channel(
        &grpc_url,
        Duration::from_secs(5),
        Duration::from_secs(10),
    )?;
    let users = Arc::new(users);
    let make: super::MakeJob = {
        let (users, tenant) = (users.clone(), tenant.clone());
        Arc::new(move |n| {
            let mut c = FeedServiceClient::new(page_channel.clone());
            let mut r = Rng(n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let user = users[r.uniform(users.len())].to_string();
            let tenant = tenant.clone();
            Box::pin(async move {
                c.get_page(with_tenant(
                    GetPageRequest {
                        user_id: user,
                        page_size: 20,
                        cursor: String::new(),
                        debug: false,
                    },
                    &tenant,
                ))
                .await
                .is_ok_and(|p| !p.into_inner().cards.is_empty())
                .into()
            })
        })
    };
    eprintln!(
        "bench: feed: first pages (GetPage, 20 cards) at {}/s for {} s over {} users",
        a.rate,
        a.duration.as_secs(),
        a.users
    );
    let (h0, all0) = pages(&scrape(http, &metrics_base).await);
    let report = run_load(
        "feed first page (GetPage)",
        a.rate,
        a.duration,
        a.max_in_flight,
        make.clone(),
    )
    .await;
    let (h1, all1) = pages(&scrape(http, &metrics_base).await);
    let hit_rate = (h1 - h0) / (all1 - all0).max(1.0);

    // 4. Flush the tenant's slices from Redis while the traffic goes on.
    let rewarmed0 = sum_series(
        &scrape(http, &metrics_base).await,
        "shopstream_feed_slices_rewarmed_total",
        &[],
    );
    let mut redis = redis::Client::open(endpoints.redis_url.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    let recover_load = tokio::spawn(run_load(
        "feed first page after a Redis flush",
        a.rate,
        RECOVER_TIMEOUT,
        a.max_in_flight,
        make,
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut deleted = 0usize;
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("feed:{tenant}:*"))
            .arg("COUNT")
            .arg(10_000)
            .query_async(&mut redis)
            .await?;
        if !keys.is_empty() {
            deleted += keys.len();
            let _: () = redis::cmd("UNLINK")
                .arg(&keys)
                .query_async(&mut redis)
                .await?;
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let flushed = Instant::now();
    eprintln!("bench: feed: flushed {deleted} Redis keys of the tenant; measuring the recovery");
    let mut last = pages(&scrape(http, &metrics_base).await);
    let mut recover_to_90_s = None;
    let mut min_rate: f64 = 1.0;
    while flushed.elapsed() < RECOVER_TIMEOUT - Duration::from_secs(5) {
        tokio::time::sleep(WINDOW).await;
        let now = pages(&scrape(http, &metrics_base).await);
        let rate = (now.0 - last.0) / (now.1 - last.1).max(1.0);
        last = now;
        min_rate = min_rate.min(rate);
        if rate >= RECOVERED {
            recover_to_90_s = Some(flushed.elapsed().as_secs_f64());
            break;
        }
    }
    recover_load.abort();
    let slices_rewarmed = sum_series(
        &scrape(http, &metrics_base).await,
        "shopstream_feed_slices_rewarmed_total",
        &[],
    ) - rewarmed0;
    let summary = FeedSummary {
        tenant,
        users: a.users,
        items: a.items,
        events: total,
        publish_s,
        job_events_per_s,
        backfill_s,
        backfill_slices_per_s: f64::from(b.users) / backfill_s.max(1e-9),
        hit_rate,
        recover_to_90_s,
        hit_rate_after_flush_min: min_rate,
        slices_rewarmed,
    };
    Ok(Ok((report, summary)))
}
