//! `shopstream feed backfill` recomputes feed slices (one user's, or every
//! user's the feature job knows) and stores them in Redis and Postgres;
//! `shopstream feed explain USER` prints a user's top cards with what each
//! feature contributed to its score. Both talk to the feed's gRPC API.

use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use shopstream_platform::{
    config::{Ports, service_addrs},
    grpc::with_tenant,
    metrics::sum_series,
};
use shopstream_proto::{
    catalog::v1::{GetProductRequest, catalog_service_client::CatalogServiceClient},
    feed::v1::{BackfillRequest, GetPageRequest, feed_service_client::FeedServiceClient},
};

use crate::exit;

/// Bound on connecting to the feed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on asking catalog for titles.
const TITLE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Args)]
pub struct FeedArgs {
    #[command(subcommand)]
    command: FeedCommand,
}

#[derive(Debug, Subcommand)]
enum FeedCommand {
    /// Recompute feed slices from the feature job's state and store them
    /// (Redis and Postgres): one user's with --user, every known user's
    /// with --all.
    #[command(
        after_help = "Exit codes: 0 ok, 1 the feed refused or failed, 4 the feed is not reachable.\n\
Example: shopstream feed backfill --all"
    )]
    Backfill(BackfillArgs),
    /// Print a user's top cards with each feature's contribution to the score.
    #[command(
        after_help = "Exit codes: 0 ok, 1 the feed refused or failed, 4 the feed is not reachable.\n\
Example: shopstream feed explain 0190a0a0-0000-7000-8000-000000000001 --top 5"
    )]
    Explain(ExplainArgs),
}

#[derive(Debug, Args)]
struct Common {
    /// The tenant (shop).
    #[arg(long, default_value = shopstream_platform::config::DEFAULT_TENANT)]
    tenant: String,
    /// The feed's gRPC URL (default: this stack's feed).
    #[arg(long)]
    grpc: Option<String>,
    /// The feed's HTTP base, for its `/metrics` (default: this stack's feed).
    #[arg(long)]
    http: Option<String>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout_s: u64,
    /// Print the answer as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("who").required(true).args(["user", "all"])))]
struct BackfillArgs {
    /// The user's id.
    #[arg(long)]
    user: Option<String>,
    /// Every user the feature job knows.
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Args)]
struct ExplainArgs {
    /// The user's id.
    user: String,
    /// How many cards.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=50))]
    top: u32,
    #[command(flatten)]
    common: Common,
}

fn grpc_url(name: &str, given: &Option<String>) -> anyhow::Result<String> {
    Ok(match given {
        Some(u) => u.clone(),
        None => {
            let ports = Ports::from_env(Ports::DEV)?;
            let (_, grpc) = service_addrs(name, ports.services).expect("a service");
            format!("http://{grpc}")
        }
    })
}

fn http_url(name: &str, given: &Option<String>) -> anyhow::Result<String> {
    Ok(match given {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => {
            let ports = Ports::from_env(Ports::DEV)?;
            let (http, _) = service_addrs(name, ports.services).expect("a service");
            format!("http://{http}")
        }
    })
}

/// (slices waiting, slices written so far) from the feed's `/metrics`.
pub async fn slice_progress(http: &reqwest::Client, base: &str) -> Option<(f64, f64)> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    Some((
        sum_series(&text, "shopstream_feed_dirty_slices", &[]),
        sum_series(&text, "shopstream_feed_slices_written_total", &[]),
    ))
}

/// Wait until `queued` more slices were written and none waits; `tick` is
/// told (written so far, queued). False if `timeout` passed first.
pub async fn wait_written(
    http: &reqwest::Client,
    base: &str,
    written_before: f64,
    queued: u64,
    timeout: Duration,
    tick: impl Fn(u64),
) -> bool {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if let Some((waiting, written)) = slice_progress(http, base).await {
            let done = ((written - written_before).max(0.0) as u64).min(queued);
            tick(done);
            if waiting == 0.0 && done >= queued {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// A failed call's exit code, after saying what happened.
fn failed(url: &str, s: &tonic::Status) -> u8 {
    if matches!(
        s.code(),
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
    ) {
        eprintln!(
            "error: cannot reach the feed at {url} ({}); start the stack: shopstream up",
            s.message()
        );
        exit::NOT_READY
    } else {
        eprintln!("error: the feed refused: {}", s.message());
        exit::FAILED
    }
}

pub async fn feed(args: FeedArgs) -> anyhow::Result<u8> {
    match args.command {
        FeedCommand::Backfill(a) => backfill(a).await,
        FeedCommand::Explain(a) => explain(a).await,
    }
}

async fn backfill(a: BackfillArgs) -> anyhow::Result<u8> {
    let url = grpc_url("feed", &a.common.grpc)?;
    let base = http_url("feed", &a.common.http)?;
    let timeout = Duration::from_secs(a.common.timeout_s);
    let mut client = FeedServiceClient::new(shopstream_platform::grpc::channel(
        &url,
        CONNECT_TIMEOUT,
        timeout,
    )?);
    let http = reqwest::Client::builder()
        .timeout(CONNECT_TIMEOUT)
        .build()?;
    let written_before = slice_progress(&http, &base).await.map_or(0.0, |p| p.1);
    let started = Instant::now();
    let reply = client
        .backfill(with_tenant(
            BackfillRequest {
                user_id: a.user.clone().unwrap_or_default(),
                all: a.all,
            },
            &a.common.tenant,
        ))
        .await;
    let r = match reply {
        Ok(r) => r.into_inner(),
        Err(s) => return Ok(failed(&url, &s)),
    };
    if r.queued {
        // The feed writes the slices in the background: follow its metrics.
        let bar = if a.common.json {
            ProgressBar::hidden()
        } else {
            let b = ProgressBar::new(u64::from(r.users));
            b.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} slices {elapsed} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b
        };
        let done = wait_written(
            &http,
            &base,
            written_before,
            u64::from(r.users),
            timeout,
            |n| bar.set_position(n),
        )
        .await;
        bar.finish_and_clear();
        if !done {
            eprintln!(
                "error: the feed had not written the {} slices after {} s (see {base}/metrics)",
                r.users, a.common.timeout_s
            );
            return Ok(exit::FAILED);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    if a.common.json {
        println!(
            "{}",
            serde_json::json!({"users": r.users, "cards": r.cards, "seconds": secs})
        );
    } else {
        println!(
            "backfilled {} user(s) in {secs:.1} s ({:.0} slices/s)",
            r.users,
            f64::from(r.users) / secs.max(1e-9)
        );
    }
    Ok(exit::OK)
}

async fn explain(a: ExplainArgs) -> anyhow::Result<u8> {
    let url = grpc_url("feed", &a.common.grpc)?;
    let timeout = Duration::from_secs(a.common.timeout_s);
    let mut client = FeedServiceClient::new(shopstream_platform::grpc::channel(
        &url,
        CONNECT_TIMEOUT,
        timeout,
    )?);
    let page = match client
        .get_page(with_tenant(
            GetPageRequest {
                user_id: a.user.clone(),
                page_size: a.top,
                cursor: String::new(),
                debug: true,
            },
            &a.common.tenant,
        ))
        .await
    {
        Ok(r) => r.into_inner(),
        Err(s) => return Ok(failed(&url, &s)),
    };
    // Titles from catalog, where it answers (ids otherwise).
    let mut titles = vec![String::new(); page.cards.len()];
    if let Ok(curl) = grpc_url("catalog", &None)
        && let Ok(ch) = shopstream_platform::grpc::channel(&curl, TITLE_TIMEOUT, TITLE_TIMEOUT)
    {
        let mut catalog = CatalogServiceClient::new(ch);
        for (i, c) in page.cards.iter().enumerate() {
            if let Ok(p) = catalog
                .get_product(with_tenant(
                    GetProductRequest {
                        product_id: c.item_id.clone(),
                    },
                    &a.common.tenant,
                ))
                .await
                && let Some(p) = p.into_inner().product
            {
                titles[i] = p.title;
            }
        }
    }
    if a.common.json {
        let cards: Vec<serde_json::Value> = page
            .cards
            .iter()
            .zip(&titles)
            .map(|(c, t)| {
                serde_json::json!({
                    "rank": c.rank, "item_id": c.item_id, "title": t, "score": c.score,
                    "contributions": c.contributions.iter().map(|x| serde_json::json!({
                        "feature": x.feature, "value": x.value, "weight": x.weight})).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"user": a.user, "source": page.source, "degraded": page.degraded,
                "slice_age_ms": page.slice_age_ms, "cards": cards})
        );
        return Ok(exit::OK);
    }
    println!(
        "feed of {} (from {}{}, slice {:.1} s old)",
        a.user,
        page.source,
        if page.degraded { ", degraded" } else { "" },
        page.slice_age_ms as f64 / 1000.0
    );
    for (c, t) in page.cards.iter().zip(&titles) {
        let name = if t.is_empty() { &c.item_id } else { t };
        println!("{:>3}. {name}  score {:.3}", c.rank, c.score);
        for x in &c.contributions {
            let share = if c.score > 0.0 {
                100.0 * x.value / c.score
            } else {
                0.0
            };
            println!(
                "       {:<22} {:>8.3}  ({share:>3.0} %, weight {})",
                x.feature, x.value, x.weight
            );
        }
    }
    if page.cards.is_empty() {
        println!("(no cards: the catalog has no products the feed knows of yet)");
    }
    Ok(exit::OK)
}
