//! `shopstream fault stripe-sim|media [--set JSON | --clear | --show]`:
//! inject, clear or show faults in the running Stripe emulator or in media's
//! pipeline steps, at run time, without restarting anything. A thin client of
//! stripe-sim's `/_sim/faults` and of media's `/faults`.

use std::path::Path;

use clap::{Args, Subcommand};
use shopstream_labs::{LabError, Target, stripe_sim};
use shopstream_platform::config::Ports;
use shopstream_runtime::Stack;

use crate::exit;

#[derive(Debug, Args)]
pub struct FaultArgs {
    #[command(subcommand)]
    target: FaultTarget,
}

#[derive(Debug, Subcommand)]
enum FaultTarget {
    /// Faults of the Stripe emulator (payments talk to it in the native runtime).
    #[command(
        name = "stripe-sim",
        after_help = "Fields of --set (all optional; present ones replace the current value, \
            fail_next rules are added, one per operation):\n  \
            latency_ms          delay before every Stripe API request (max 60000)\n  \
            fail_next           {\"operation\": create|retrieve|confirm|capture|cancel|refund|read,\n                       \
            \"status\": 400..599 (500), \"count\": N (1), \"after_effect\": bool (false)}\n                      \
            or a list of them; after_effect runs the operation and loses the answer\n  \
            drop_webhooks       the next N events are not delivered\n  \
            duplicate_webhooks  the next N events are delivered twice\n  \
            delay_webhooks_ms   every delivery waits this long, until cleared\n\n\
            Examples:\n  \
            shopstream fault stripe-sim --set '{\"fail_next\": {\"operation\": \"capture\", \"count\": 3}}'\n  \
            shopstream fault stripe-sim --set '{\"latency_ms\": 2000}'\n  \
            shopstream fault stripe-sim --clear\n\n\
            Exit codes: 0 ok, 2 invalid --set, 4 stripe-sim not reachable."
    )]
    StripeSim(TargetArgs),
    /// Faults of media's pipeline steps (its fault switch).
    #[command(
        after_help = "--set takes an object of steps (ingest, moderate, thumbnail, transcode, \
            ready), each with any of:\n  \
            fail      the next N attempts of the step fail (then it works again)\n  \
            delay_ms  every attempt waits this long first (a slow step)\n  \
            reject    moderate only: the next N assets are rejected\n\n\
            Examples:\n  \
            shopstream fault media --set '{\"thumbnail\": {\"fail\": 2}}'\n  \
            shopstream fault media --set '{\"transcode\": {\"delay_ms\": 5000}}'\n  \
            shopstream fault media --clear\n\n\
            Exit codes: 0 ok, 2 invalid --set, 4 media not reachable."
    )]
    Media(TargetArgs),
}

/// What every fault target takes.
#[derive(Debug, Args)]
pub struct TargetArgs {
    #[command(flatten)]
    action: Action,
    /// The component's HTTP base URL (default: this stack's).
    #[arg(long)]
    url: Option<String>,
    /// Print the active faults as JSON.
    #[arg(long)]
    json: bool,
}

/// One of --set, --clear, --show.
#[derive(Debug, Args)]
#[group(multiple = false)]
struct Action {
    /// Add faults: a JSON object (see below).
    #[arg(long, value_name = "JSON")]
    set: Option<String>,
    /// Remove every fault.
    #[arg(long)]
    clear: bool,
    /// Show the active faults (the default).
    #[arg(long)]
    #[allow(dead_code)] // what happens without --set or --clear anyway
    show: bool,
}

/// The JSON object of `--set`, if given; `Err(2)` (said on stderr, with
/// `example`) when it is not a JSON object.
fn parse_set(
    action: &Action,
    example: &str,
) -> Result<Option<serde_json::Map<String, serde_json::Value>>, u8> {
    let Some(text) = &action.set else {
        return Ok(None);
    };
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(m)) => Ok(Some(m)),
        Ok(_) => {
            eprintln!("error: --set takes a JSON object, e.g. '{example}'");
            Err(2)
        }
        Err(e) => {
            eprintln!("error: --set is not valid JSON: {e}");
            Err(2)
        }
    }
}

pub async fn fault(state_dir: &Path, args: FaultArgs) -> anyhow::Result<u8> {
    match args.target {
        FaultTarget::StripeSim(a) => stripe_sim_faults(state_dir, a).await,
        FaultTarget::Media(a) => media_faults(a).await,
    }
}

async fn media_faults(args: TargetArgs) -> anyhow::Result<u8> {
    let url = match &args.url {
        Some(u) => u.clone(),
        None => Target::from_ports(&Ports::from_env(Ports::DEV)?).media_http_url,
    };
    let update = match parse_set(&args.action, r#"{"thumbnail": {"fail": 2}}"#) {
        Ok(u) => u,
        Err(code) => return Ok(code),
    };
    let faults =
        shopstream_labs::media::MediaFaults::new(&url).map_err(|e| anyhow::anyhow!("{e}"))?;
    let result = if let Some(m) = update {
        let mut last = Ok(serde_json::Value::Null);
        for (step, fault) in m {
            last = faults.set(&step, &fault).await;
            if last.is_err() {
                break;
            }
        }
        last
    } else if args.action.clear {
        faults.clear().await.and(faults.show().await)
    } else {
        faults.show().await
    };
    match result {
        Ok(active) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&active)?);
            } else {
                println!("media at {url}: active faults: {active}");
            }
            Ok(exit::OK)
        }
        Err(LabError::NotReady(why)) => {
            eprintln!("error: {why}");
            Ok(exit::NOT_READY)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(if e.to_string().contains("HTTP 4") {
                2
            } else {
                exit::FAILED
            })
        }
    }
}

async fn stripe_sim_faults(state_dir: &Path, args: TargetArgs) -> anyhow::Result<u8> {
    let url = match &args.url {
        Some(u) => u.clone(),
        None => {
            let stack = Stack::new(
                state_dir,
                Ports::from_env(Ports::DEV)?,
                std::env::current_exe()?,
            );
            Target::from_ports(&stack.ports()).stripe_sim_url
        }
    };
    let update = match parse_set(&args.action, r#"{"latency_ms": 2000}"#) {
        Ok(u) => u.map(serde_json::Value::Object),
        Err(code) => return Ok(code),
    };
    let sim = stripe_sim::StripeSim::new(&url).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (result, verb) = if let Some(u) = &update {
        (sim.set_faults(u).await, "set")
    } else if args.action.clear {
        (sim.clear_faults().await, "cleared")
    } else {
        (sim.faults().await, "active")
    };
    let faults = match result {
        Ok(f) => f,
        Err(LabError::NotReady(why)) => {
            eprintln!("error: {why}");
            return Ok(exit::NOT_READY);
        }
        Err(e) => {
            eprintln!("error: {e}");
            // stripe-sim refuses an invalid update with 422: a usage error.
            return Ok(
                if e.to_string().contains("HTTP 422") || e.to_string().contains("HTTP 400") {
                    2
                } else {
                    exit::FAILED
                },
            );
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&faults)?);
    } else {
        let label = match verb {
            "set" => "faults now active",
            "cleared" => "faults cleared; active",
            _ => "active faults",
        };
        println!(
            "stripe-sim at {url}: {label}: {}",
            stripe_sim::describe(&faults)
        );
    }
    Ok(exit::OK)
}
