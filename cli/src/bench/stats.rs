//! `bench --target stats`: `GET /admin/stats/daily` over 90 days, as an
//! admin. So that the 90 days hold closed rows like a shop's, the benchmark
//! first publishes views on `analytics.raw` into a quarter far in the past
//! (2001-01-01 .. 2001-03-31: no real data lives there), waits until
//! analytics has closed every one of those days, then loads the route.

use std::time::{Duration, Instant};

use serde_json::json;
use shopstream_platform::{
    clock::SystemClock,
    config::{DEFAULT_TENANT, Endpoints, Ports, service_addrs},
    events::{Envelope, kafka::KafkaBus},
    ids::SystemIdGen,
};

use super::{MakeJob, rand_suffix, request_job};
use crate::exit;

/// The benchmark's quarter: 2001-01-01T00:00:00Z and its 90 days.
const FIRST_DAY_MS: i64 = 978_307_200_000;
pub const DAYS: i64 = 90;
pub const FROM: &str = "2001-01-01";
pub const TO: &str = "2001-03-31";
const DAY_MS: i64 = 86_400_000;
/// Views published into each day.
const VIEWS_PER_DAY: i64 = 20;
/// How long analytics may take to count and close the quarter.
const SETTLE: Duration = Duration::from_secs(120);

/// Publish the quarter's views (once per stack: event ids are fresh, so a
/// second run adds more) and log in as a fresh admin; the load's job.
pub async fn prepare(
    client: &reqwest::Client,
    base: &str,
    ports: &Ports,
) -> anyhow::Result<Result<MakeJob, u8>> {
    let (_, identity) = service_addrs("identity", ports.services).expect("identity is a service");
    let email = format!("bench-stats-{:x}@bench.shopstream.dev", rand_suffix());
    let password =
        match shopstream_runtime::admin::ensure_admin(&format!("http://{identity}"), None, &email)
            .await
        {
            Ok(Some(p)) => p,
            Ok(None) => anyhow::bail!("{email} already existed"),
            Err(e) => {
                eprintln!("error: {e}; is the system up? (`shopstream up`)");
                return Ok(Err(exit::NOT_READY));
            }
        };
    let session: serde_json::Value = client
        .post(format!("{base}/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await?
        .json()
        .await?;
    let token = session["access_token"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("admin login failed: {session}"))?
        .to_string();
    let url = format!("{base}/admin/stats/daily?from={FROM}&to={TO}");
    let views_before = quarter_views(client, &url, &token).await?.unwrap_or(0);

    eprintln!(
        "bench: stats: publishing {} views into {FROM} .. {TO} on analytics.raw",
        DAYS * VIEWS_PER_DAY
    );
    let bus = KafkaBus::connect(&Endpoints::native(*ports))?;
    let run = rand_suffix();
    let mut events = Vec::new();
    for d in 0..DAYS {
        for v in 0..VIEWS_PER_DAY {
            let visitor = format!("bench-{run:x}-{}", v % 7);
            let ts = FIRST_DAY_MS + d * DAY_MS + v * 60_000;
            events.push(Envelope::new(
                "analytics.action",
                1,
                DEFAULT_TENANT,
                &visitor,
                &json!({"user_id": null, "visitor_id": visitor, "action": "view",
                    "object_id": "bench", "ts_ms": ts, "device": "bot", "referrer": ""}),
                &SystemClock,
                &SystemIdGen,
            )?);
        }
    }
    bus.publish_batch("analytics.raw", &events).await?;
    let expected = views_before + (DAYS * VIEWS_PER_DAY) as u64;
    let started = Instant::now();
    loop {
        let seen = quarter_views(client, &url, &token).await?;
        if seen.is_some_and(|v| v >= expected) {
            break;
        }
        if started.elapsed() > SETTLE {
            eprintln!(
                "error: analytics counted {seen:?} of {expected} views of the quarter within {SETTLE:?}; is it running? (`shopstream status`)"
            );
            return Ok(Err(exit::NOT_READY));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "bench: stats: {expected} views counted into 90 closed days in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(Ok(request_job({
        let (client, url) = (client.clone(), url.clone());
        move |_| client.get(&url).bearer_auth(&token)
    })))
}

/// The quarter's views once every one of its days is closed, else None.
async fn quarter_views(
    client: &reqwest::Client,
    url: &str,
    token: &str,
) -> anyhow::Result<Option<u64>> {
    let r = client.get(url).bearer_auth(token).send().await?;
    if !r.status().is_success() {
        anyhow::bail!("GET {url}: HTTP {}", r.status());
    }
    let v: serde_json::Value = r.json().await?;
    let days = v["days"].as_array().cloned().unwrap_or_default();
    let all_closed = days.len() == DAYS as usize && days.iter().all(|d| d["closed"] == true);
    Ok(all_closed.then(|| days.iter().filter_map(|d| d["views"].as_u64()).sum()))
}
