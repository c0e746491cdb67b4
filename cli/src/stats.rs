//! `shopstream stats [--days N] [--json]`: "what happened today" and the days
//! before, from the analytics service's `GetDailyStats` (gRPC, the operator's
//! way in; the admin's is the gateway's `GET /admin/stats/daily`). One line
//! per metric with a sparkline over the days, today's value and the total.

use std::time::Duration;

use clap::Args;
use shopstream_platform::{
    config::{Ports, service_addrs},
    grpc::with_tenant,
};
use shopstream_proto::analytics::v1::{
    DailyStats, GetDailyStatsRequest, analytics_service_client::AnalyticsServiceClient,
};

use crate::exit;

/// Most days one call shows (analytics answers up to 366).
const MAX_DAYS: u32 = 366;
/// Bound on connecting to analytics and on the call.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Sparkline characters, lowest to highest.
const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 ok, 1 analytics refused the request, 4 analytics not reachable.\n\
Example: shopstream stats --days 30"
)]
pub struct StatsArgs {
    /// How many days, ending today (1..=366).
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=MAX_DAYS as i64))]
    days: u32,
    /// The tenant (shop) to show.
    #[arg(long, default_value = shopstream_platform::config::DEFAULT_TENANT)]
    tenant: String,
    /// Analytics' gRPC URL (default: this stack's analytics).
    #[arg(long)]
    grpc: Option<String>,
    /// Print the days as JSON (GetDailyStats' rows).
    #[arg(long)]
    json: bool,
}

/// `values` as a sparkline scaled to their maximum.
pub fn sparkline(values: &[f64]) -> String {
    let max = values.iter().copied().fold(0.0_f64, f64::max);
    values
        .iter()
        .map(|v| {
            if max <= 0.0 {
                BARS[0]
            } else {
                let i = ((v / max) * (BARS.len() - 1) as f64).round() as usize;
                BARS[i.min(BARS.len() - 1)]
            }
        })
        .collect()
}

/// The metrics shown, each from one day's row.
type Metric = (&'static str, fn(&DailyStats) -> f64);

fn money_total(m: &[shopstream_proto::common::v1::Money]) -> f64 {
    // One figure per currency would need one line each; the sparkline shows
    // the sum of minor units, the labels say which currencies.
    m.iter().map(|m| m.amount_minor as f64).sum()
}

const METRICS: &[Metric] = &[
    ("visitors", |d| d.active_users as f64),
    ("sessions", |d| d.sessions as f64),
    ("views", |d| d.views as f64),
    ("searches", |d| d.searches as f64),
    ("add to carts", |d| d.add_to_carts as f64),
    ("checkouts started", |d| d.checkouts_started as f64),
    ("orders placed", |d| d.orders_created as f64),
    ("orders completed", |d| d.orders_completed as f64),
    ("orders cancelled", |d| d.orders_cancelled as f64),
    ("revenue (minor)", |d| money_total(&d.gross_sales)),
    ("refunds (minor)", |d| money_total(&d.refunds)),
];

pub async fn stats(args: StatsArgs) -> anyhow::Result<u8> {
    let url = match &args.grpc {
        Some(u) => u.clone(),
        None => {
            let ports = Ports::from_env(Ports::DEV)?;
            let (_, grpc) =
                service_addrs("analytics", ports.services).expect("analytics is a service");
            format!("http://{grpc}")
        }
    };
    let channel = shopstream_platform::grpc::channel(&url, TIMEOUT, TIMEOUT)?;
    let mut client = AnalyticsServiceClient::new(channel);
    // Empty dates: the `days` days ending at analytics' today.
    let reply = client
        .get_daily_stats(with_tenant(
            GetDailyStatsRequest {
                from_date: String::new(),
                to_date: String::new(),
                days: args.days,
            },
            &args.tenant,
        ))
        .await;
    let days = match reply {
        Ok(r) => r.into_inner().days,
        Err(s)
            if matches!(
                s.code(),
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
            ) =>
        {
            eprintln!(
                "error: cannot reach analytics at {url} ({}); start the stack: shopstream up",
                s.message()
            );
            return Ok(exit::NOT_READY);
        }
        Err(s) => {
            eprintln!("error: analytics refused the request: {}", s.message());
            return Ok(exit::FAILED);
        }
    };
    if args.json {
        let rows: Vec<serde_json::Value> = days.iter().map(day_json).collect();
        println!(
            "{}",
            serde_json::json!({ "tenant": args.tenant, "days": rows })
        );
        return Ok(exit::OK);
    }
    print!("{}", table(&args.tenant, &days));
    Ok(exit::OK)
}

fn day_json(d: &DailyStats) -> serde_json::Value {
    let money = |m: &[shopstream_proto::common::v1::Money]| {
        m.iter()
            .map(|m| (m.currency.clone(), serde_json::json!(m.amount_minor)))
            .collect::<serde_json::Map<_, _>>()
    };
    serde_json::json!({
        "date": d.date, "visitors": d.active_users, "sessions": d.sessions, "views": d.views,
        "searches": d.searches, "add_to_carts": d.add_to_carts,
        "checkouts_started": d.checkouts_started, "orders_placed": d.orders_created,
        "orders_completed": d.orders_completed, "orders_cancelled": d.orders_cancelled,
        "revenue": money(&d.gross_sales), "refunds": money(&d.refunds),
        "conversion": d.conversion_rate,
        "checkout_p50_ms": (d.orders_completed > 0).then_some(d.p50_checkout_latency_ms),
        "checkout_p95_ms": (d.orders_completed > 0).then_some(d.p95_checkout_latency_ms),
        "closed": d.closed, "version": d.version,
    })
}

/// The table: one line per metric.
pub fn table(tenant: &str, days: &[DailyStats]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let (first, last) = match (days.first(), days.last()) {
        (Some(f), Some(l)) => (f.date.as_str(), l.date.as_str()),
        _ => return "no days\n".into(),
    };
    let _ = writeln!(
        out,
        "tenant {tenant}, {first} .. {last} (UTC; today is live)"
    );
    let width = days.len().max(5);
    let _ = writeln!(
        out,
        "{:<18} {:<width$} {:>12} {:>12}",
        "metric", "trend", "today", "total"
    );
    for (name, get) in METRICS {
        let values: Vec<f64> = days.iter().map(get).collect();
        let today = values.last().copied().unwrap_or(0.0);
        let total: f64 = values.iter().sum();
        let _ = writeln!(
            out,
            "{name:<18} {:<width$} {today:>12} {total:>12}",
            sparkline(&values)
        );
    }
    let t = days.last().cloned().unwrap_or_default();
    let amounts = |m: &[shopstream_proto::common::v1::Money]| {
        if m.is_empty() {
            "none".to_string()
        } else {
            m.iter()
                .map(|m| format!("{} {}", m.amount_minor, m.currency))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let _ = writeln!(
        out,
        "today's money (minor units): revenue {}; refunds {}",
        amounts(&t.gross_sales),
        amounts(&t.refunds)
    );
    let _ = writeln!(
        out,
        "today: conversion {:.1} %, checkout p50 {} ms, p95 {} ms",
        t.conversion_rate * 100.0,
        t.p50_checkout_latency_ms,
        t.p95_checkout_latency_ms
    );
    let closed = days.iter().filter(|d| d.closed).count();
    let corrected = days.iter().filter(|d| d.version > 1).count();
    let _ = writeln!(
        out,
        "{closed} of {} days closed; {corrected} corrected by late events",
        days.len()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_a_trend_per_metric_today_and_the_days_closed() {
        let day = |date: &str, completed: u64| DailyStats {
            date: date.into(),
            orders_completed: completed,
            gross_sales: vec![shopstream_proto::common::v1::Money {
                amount_minor: 500,
                currency: "EUR".into(),
            }],
            closed: true,
            version: 2,
            ..Default::default()
        };
        let t = table("shop", &[day("2026-12-03", 1), day("2026-12-04", 3)]);
        assert!(
            t.starts_with("tenant shop, 2026-12-03 .. 2026-12-04"),
            "{t}"
        );
        let line = t
            .lines()
            .find(|l| l.starts_with("orders completed"))
            .unwrap();
        assert!(line.contains("▃█"), "{line}");
        assert!(line.ends_with("3            4"), "{line}");
        assert!(t.contains("revenue 500 EUR; refunds none"), "{t}");
        assert!(
            t.contains("2 of 2 days closed; 2 corrected by late events"),
            "{t}"
        );
    }

    #[test]
    fn sparklines_scale_to_the_maximum() {
        assert_eq!(sparkline(&[0.0, 0.0]), "▁▁");
        assert_eq!(sparkline(&[0.0, 5.0, 10.0]), "▁▅█");
    }
}
