//! `shopstream sim --scenario checkout [--seeds N | --seed S] [--faults LIST]
//! [--bug NAME] [--json]`: deterministic simulations (turmoil) of the real
//! service code. Prints throughput, simulated vs real time, faults and
//! invariant checks; on a violation the seed, the trace and the exact replay
//! command. Exit 0 all invariants held, 1 a violation, 2 usage.

use std::time::{Duration, Instant};

use clap::Args;
use shopstream_sim::{Bug, Fault, Options, Outcome, Report};

use crate::exit;

const USAGE: u8 = 2;

#[derive(Debug, Args)]
#[command(
    after_help = "Faults: all (default), none, or a list of partition, loss, latency, \
    crash, skew, webhook, lost-result.\n\
    Bugs (only in a build with --features bug-zoo): reserve-no-idempotency, release-forgotten, \
    compensation-gives-up, order-key-ignored, capture-no-key.\n\n\
    Exit codes: 0 every invariant held, 1 a violation (seed, trace and replay command printed), \
    2 usage error."
)]
pub struct SimArgs {
    /// The scenario to simulate.
    #[arg(long, default_value = "checkout")]
    scenario: String,
    /// Run this many seeds, starting at --from.
    #[arg(long, conflicts_with = "seed")]
    seeds: Option<u64>,
    /// First seed of --seeds.
    #[arg(long, default_value_t = 1)]
    from: u64,
    /// Run (replay) exactly this seed and print its trace.
    #[arg(long)]
    seed: Option<u64>,
    /// Fault families to draw from the seed.
    #[arg(long, default_value = "all")]
    faults: String,
    /// Run a deliberately broken variant from the bug zoo.
    #[arg(long)]
    bug: Option<String>,
    /// Count known gaps (effects the saga never learned of because every
    /// attempt's answer was lost) as violations, not advisories.
    #[arg(long)]
    strict: bool,
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub async fn sim(a: SimArgs) -> anyhow::Result<u8> {
    if a.scenario != "checkout" {
        eprintln!("error: unknown scenario {:?}; known: checkout", a.scenario);
        return Ok(USAGE);
    }
    let faults = match Fault::parse_list(&a.faults) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(USAGE);
        }
    };
    let bug = match a.bug.as_deref().map(Bug::parse).transpose() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(USAGE);
        }
    };
    let seeds: Vec<u64> = match (a.seed, a.seeds) {
        (Some(s), _) => vec![s],
        (None, n) => (a.from..a.from + n.unwrap_or(100)).collect(),
    };
    let opts = Options {
        faults,
        bug,
        strict: a.strict,
    };
    let single = a.seed.is_some();
    // turmoil runs its own runtimes: simulate on a plain thread.
    let run = std::thread::spawn(move || run_seeds(&seeds, &opts));
    let (reports, real) = tokio::task::spawn_blocking(move || run.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the simulation thread panicked"))?;
    let failed = reports.iter().find(|r| r.outcome != Outcome::Held);
    let sim_ms: i64 = reports.iter().map(|r| r.sim_ms).sum();
    let faults_injected: usize = reports.iter().map(|r| r.faults_injected).sum();
    let checks: u64 = reports.iter().map(|r| r.invariant_checks).sum();
    let orders: usize = reports.iter().map(|r| r.orders).sum();
    let advisories: Vec<(u64, &String)> = reports
        .iter()
        .flat_map(|r| r.advisories.iter().map(move |a| (r.seed, a)))
        .collect();
    let secs = real.as_secs_f64().max(1e-9);
    let replay = |r: &Report| {
        let mut cmd = format!(
            "shopstream sim --scenario checkout --seed {} --faults {}",
            r.seed, a.faults
        );
        if let Some(b) = &a.bug {
            cmd = format!(
                "cargo run -p shopstream --features bug-zoo -- sim --scenario checkout --seed {} --faults {} --bug {b}",
                r.seed, a.faults
            );
        }
        if a.strict {
            cmd.push_str(" --strict");
        }
        cmd
    };
    if a.json {
        let v = serde_json::json!({
            "scenario": a.scenario,
            "seeds": reports.len(),
            "faults": a.faults,
            "bug": a.bug,
            "seeds_per_s": reports.len() as f64 / secs,
            "sim_s": sim_ms as f64 / 1000.0,
            "real_s": secs,
            "sim_to_real": sim_ms as f64 / 1000.0 / secs,
            "faults_injected": faults_injected,
            "invariant_checks": checks,
            "orders": orders,
            "advisories": advisories.iter().map(|(s, a)| format!("seed {s}: {a}")).collect::<Vec<_>>(),
            "trace_hash": (reports.len() == 1).then(|| format!("{:016x}", reports[0].trace_hash)),
            "violation": failed.map(|r| {
                let Outcome::Violated { invariant, detail } = &r.outcome else { unreachable!() };
                serde_json::json!({
                    "seed": r.seed,
                    "invariant": invariant,
                    "detail": detail,
                    "trace_hash": format!("{:016x}", r.trace_hash),
                    "trace": r.trace.iter().map(|l| l.to_string()).collect::<Vec<_>>(),
                    "replay": replay(r),
                })
            }),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        if single && failed.is_none() {
            for l in &reports[0].trace {
                println!("{l}");
            }
            println!();
        }
        if let Some(r) = failed {
            let Outcome::Violated { invariant, detail } = &r.outcome else {
                unreachable!()
            };
            for l in &r.trace {
                println!("{l}");
            }
            println!();
            println!("VIOLATION  seed {}: {invariant}", r.seed);
            println!("           {detail}");
            println!("trace hash {:016x}", r.trace_hash);
            println!("replay     {}", replay(r));
            println!();
        }
        println!(
            "sim {}: {} seed(s){}, faults {}{}",
            a.scenario,
            reports.len(),
            if reports.len() == 1 {
                format!(" (seed {})", reports[0].seed)
            } else {
                format!(
                    " ({}..={})",
                    reports[0].seed,
                    reports[reports.len() - 1].seed
                )
            },
            a.faults,
            a.bug
                .as_deref()
                .map(|b| format!(", bug {b}"))
                .unwrap_or_default()
        );
        println!(
            "  {:.1} seeds/s on 1 core; simulated {:.1} s in {:.2} s real ({:.0}x)",
            reports.len() as f64 / secs,
            sim_ms as f64 / 1000.0,
            secs,
            sim_ms as f64 / 1000.0 / secs
        );
        println!("  {orders} orders, {faults_injected} faults injected, {checks} invariant checks");
        if reports.len() == 1 {
            println!("  trace hash {:016x}", reports[0].trace_hash);
        }
        if !advisories.is_empty() {
            println!(
                "  {} known gap(s) seen (advisory; --strict fails on them), first: seed {}: {}",
                advisories.len(),
                advisories[0].0,
                advisories[0].1
            );
        }
        match failed {
            None => println!("  every invariant held"),
            Some(r) => println!("  invariant violated at seed {}", r.seed),
        }
    }
    Ok(if failed.is_some() {
        exit::FAILED
    } else {
        exit::OK
    })
}

/// Run seeds in order until the first violation.
fn run_seeds(seeds: &[u64], opts: &Options) -> (Vec<Report>, Duration) {
    let started = Instant::now();
    let mut out = Vec::new();
    for &s in seeds {
        let r = shopstream_sim::run_seed(s, opts);
        let stop = r.outcome != Outcome::Held;
        out.push(r);
        if stop {
            break;
        }
    }
    (out, started.elapsed())
}
