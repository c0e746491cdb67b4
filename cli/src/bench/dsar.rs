//! `bench --target dsar`: the erasure of one busy shopper, end to end.
//!
//! A fresh buyer places N orders (each followed to the end of its saga), M
//! feed activities (likes, views and comments over the catalog) and K photo
//! uploads (each followed to ready); then one erasure DSAR runs and the
//! report gives its time end to end and each participant's share (its
//! successful call), plus the sweep's checks.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;
use shopstream_compliance::{
    client::{Compliance, state_name},
    domain::Kind,
};
use shopstream_labs::target::Gateway;
use shopstream_platform::config::{DEFAULT_TENANT, Ports, service_addrs};

use super::{Report, checkout};
use crate::exit;

/// Orders, activities and uploads in flight while seeding.
const ORDER_CONCURRENCY: usize = 8;
const ACTIVITY_CONCURRENCY: usize = 16;
const UPLOAD_CONCURRENCY: usize = 4;
const MEDIA_TIMEOUT: Duration = Duration::from_secs(120);
const DSAR_TIMEOUT: Duration = Duration::from_secs(600);

pub struct DsarArgs {
    pub orders: usize,
    pub activities: usize,
    pub photos: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepTime {
    pub participant: String,
    pub store: String,
    pub count: u64,
    pub took_ms: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DsarSummary {
    pub user_id: String,
    pub orders: usize,
    pub activities: usize,
    pub photos: usize,
    pub seed_s: f64,
    pub state: String,
    /// StartDSAR → completed, as compliance recorded it.
    pub erase_ms: i64,
    pub stores: Vec<StepTime>,
    pub sweep: Vec<(String, u64, String)>,
}

pub async fn run(
    client: &reqwest::Client,
    base: &str,
    ports: &Ports,
    a: DsarArgs,
) -> anyhow::Result<Result<(Report, DsarSummary), u8>> {
    let started = Instant::now();
    let setup = match checkout::prepare(client, base, ports, a.orders as i64 + 10).await? {
        Ok(s) => s,
        Err(code) => return Ok(Err(code)),
    };
    let me: serde_json::Value = client
        .get(format!("{base}/me"))
        .bearer_auth(&setup.token)
        .send()
        .await?
        .json()
        .await?;
    let user = me["id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("GET /me: {me}"))?
        .to_string();
    eprintln!("bench: dsar: user {user}: {} orders", a.orders);
    let job = checkout::job(
        client.clone(),
        base.to_string(),
        checkout::Setup {
            token: setup.token.clone(),
            lines: setup.lines.clone(),
            run_id: setup.run_id.clone(),
        },
        // Only whether each order completed counts here, not when.
        checkout::Follow::Poll,
    );
    let ok = futures::stream::iter(0..a.orders as u64)
        .map(|n| job(n))
        .buffer_unordered(ORDER_CONCURRENCY)
        .filter(|done| std::future::ready(done.ok))
        .count()
        .await;
    if ok < a.orders {
        eprintln!("error: only {ok} of {} orders completed", a.orders);
        return Ok(Err(exit::FAILED));
    }
    eprintln!("bench: dsar: {} activities", a.activities);
    let kinds = ["like", "view", "comment", "view"];
    let done = futures::stream::iter(0..a.activities)
        .map(|i| {
            let (product, _) = &setup.lines[i % setup.lines.len()];
            let kind = kinds[i % kinds.len()];
            let body = serde_json::json!({
                "kind": kind,
                "object": format!("product:{product}"),
                "client_id": format!("bench-{}-{i}", setup.run_id),
                "text": if kind == "comment" { format!("bench comment {i}") } else { String::new() },
            });
            let req = client
                .post(format!("{base}/activity"))
                .bearer_auth(&setup.token)
                .json(&body);
            async move { req.send().await.is_ok_and(|r| r.status().is_success()) }
        })
        .buffer_unordered(ACTIVITY_CONCURRENCY)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    if done < a.activities {
        eprintln!(
            "error: only {done} of {} activities were recorded",
            a.activities
        );
        return Ok(Err(exit::FAILED));
    }
    eprintln!("bench: dsar: {} photos", a.photos);
    let mut gw = Gateway::new(base).map_err(|e| anyhow::anyhow!("{e}"))?;
    gw.set_token(&setup.token);
    let uploaded = futures::stream::iter(0..a.photos)
        .map(|i| {
            let gw = gw.clone();
            let user = user.clone();
            async move {
                let photo = shopstream_media::samples::photo(640, 480, i as u64);
                shopstream_labs::media::upload_and_follow(
                    &gw,
                    &format!("bench-{i}.jpg"),
                    photo,
                    &format!("user:{user}"),
                    MEDIA_TIMEOUT,
                    |_| {},
                )
                .await
                .is_ok_and(|a| a["status"] == "ready")
            }
        })
        .buffer_unordered(UPLOAD_CONCURRENCY)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    if uploaded < a.photos {
        eprintln!(
            "error: only {uploaded} of {} photos reached ready",
            a.photos
        );
        return Ok(Err(exit::FAILED));
    }
    let seed_s = started.elapsed().as_secs_f64();
    let (http, grpc) =
        service_addrs("compliance", ports.services).expect("compliance is a service");
    let c = Compliance::new(&format!("http://{grpc}"), &format!("http://{http}"))?;
    eprintln!("bench: dsar: erasing user {user}");
    let t = Instant::now();
    let d = c
        .start(DEFAULT_TENANT, &user, Kind::Erase, "shopstream bench", "")
        .await?;
    let d = c
        .wait(DEFAULT_TENANT, &d.dsar_id, DSAR_TIMEOUT, |_| {})
        .await?;
    let observed = t.elapsed();
    let summary = DsarSummary {
        user_id: user,
        orders: a.orders,
        activities: a.activities,
        photos: a.photos,
        seed_s,
        state: state_name(&d).to_string(),
        erase_ms: d.completed_at_ms - d.created_at_ms,
        stores: d
            .stores
            .iter()
            .map(|s| StepTime {
                participant: s.participant.clone(),
                store: s.store.clone(),
                count: s.records_affected,
                took_ms: s.took_ms,
            })
            .collect(),
        sweep: d
            .sweep
            .iter()
            .map(|c| (c.store.clone(), c.count, c.detail.clone()))
            .collect(),
    };
    let ms = observed.as_secs_f64() * 1000.0;
    let report = Report {
        target: "dsar erasure (start → completed)".into(),
        rate_per_s: 0,
        duration_s: observed.as_secs(),
        requests: 1,
        ok: u64::from(summary.state == "completed"),
        errors: u64::from(summary.state != "completed"),
        dropped: 0,
        achieved_per_s: 1.0 / observed.as_secs_f64().max(1e-9),
        latency_ms_p50: ms,
        latency_ms_p95: ms,
        latency_ms_p99: ms,
        latency_ms_max: ms,
        in_flight: None,
        ratio_to_floor: None,
        ok_in_warmup: 0,
    };
    Ok(Ok((report, summary)))
}

/// The per-participant lines of a summary.
pub fn print(s: &DsarSummary) {
    println!(
        "dsar: user {} with {} orders, {} activities, {} photos (seeded in {:.1} s): erasure {} in {} ms",
        s.user_id, s.orders, s.activities, s.photos, s.seed_s, s.state, s.erase_ms
    );
    let mut by: std::collections::BTreeMap<&str, (i64, Vec<String>)> = Default::default();
    for st in &s.stores {
        let e = by.entry(st.participant.as_str()).or_default();
        e.0 = e.0.max(st.took_ms);
        e.1.push(format!("{} {}", st.store, st.count));
    }
    for (p, (ms, stores)) in by {
        println!("  {p:<14} {ms:>6} ms  {}", stores.join(", "));
    }
    for (store, count, detail) in &s.sweep {
        println!("  sweep {store:<24} {count:>4}  {detail}");
    }
}
