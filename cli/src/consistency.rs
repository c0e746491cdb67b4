//! `shopstream consistency`: for every order of a time window, compare the
//! order (orders), its payment (payments), the payment intent (stripe-sim)
//! and what analytics counted, and list the orders whose records disagree
//! for longer than the grace period (`shopstream_labs::consistency`).

use std::time::Duration;

use clap::Args;
use shopstream_labs::{LabError, Target, consistency};
use shopstream_platform::config::Ports;

use crate::exit;

#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 every order agrees, 1 some disagree (listed), 4 a service is not reachable.\n\
Example: shopstream consistency --window-min 10"
)]
pub struct ConsistencyArgs {
    /// Orders created in the last N minutes.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=10_080))]
    window_min: u64,
    /// Ignore disagreements younger than this many seconds (events in flight).
    #[arg(long, default_value_t = consistency::DEFAULT_GRACE.as_secs())]
    grace_s: u64,
    /// The tenant (shop) to check.
    #[arg(long, default_value = shopstream_platform::config::DEFAULT_TENANT)]
    tenant: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn consistency(args: ConsistencyArgs) -> anyhow::Result<u8> {
    let target = Target::from_ports(&Ports::from_env(Ports::DEV)?);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let report = match consistency::check(
        &target,
        &args.tenant,
        Duration::from_secs(args.window_min * 60),
        Duration::from_secs(args.grace_s),
        now_ms,
    )
    .await
    {
        Ok(r) => r,
        Err(LabError::NotReady(why)) => {
            eprintln!("error: {why}");
            return Ok(exit::NOT_READY);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(exit::FAILED);
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} orders of the last {} min checked ({} changed in the last {} s, not judged yet): {}",
            report.orders_checked,
            args.window_min,
            report.orders_too_recent,
            report.grace_s,
            if report.disagreements.is_empty() {
                "orders, payments, stripe-sim and analytics agree".to_string()
            } else {
                format!("{} disagree", report.disagreements.len())
            }
        );
        if report.truncated {
            println!(
                "warning: the window holds more than {} orders; only the newest were checked (narrow --window-min)",
                consistency::MAX_ORDERS
            );
        }
        for d in &report.disagreements {
            println!("{} ({}, {} s ago):", d.order_id, d.state, d.age_s);
            for p in &d.problems {
                println!("  - {p}");
            }
        }
    }
    Ok(if report.disagreements.is_empty() {
        exit::OK
    } else {
        exit::FAILED
    })
}
