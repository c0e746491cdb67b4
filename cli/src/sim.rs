//! `shopstream sim --scenario checkout [--seeds N | --seed S] [--faults LIST]
//! [--bug NAME] [--json]`: deterministic simulations (turmoil) of the real
//! service code. Prints throughput, simulated vs real time, faults and
//! invariant checks; on a violation the seed, the trace and the exact replay
//! command. Exit 0 all invariants held, 1 a violation, 2 usage.

use clap::Args;
use std::{
    io::IsTerminal,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use indicatif::{ProgressBar, ProgressStyle};
use shopstream_sim::{Bug, Fault, Options, Outcome, Report};

use crate::exit;

const USAGE: u8 = 2;

#[derive(Debug, Args)]
#[command(
    after_help = "Faults: all (default), none, or a list of partition, loss, latency, \
    crash, skew, webhook, lost-result, provider.\n\
    Bugs (only in a build with --features bug-zoo): reserve-no-idempotency, release-forgotten, \
    compensation-gives-up, order-key-ignored, authorize-no-key, decision-log-ignored.\n\n\
    Progress goes to stderr: a bar on a terminal, a line every 10 s otherwise.\n\n\
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
    /// Simulations run in parallel, one per thread (default: one per core).
    /// Every seed is deterministic whichever thread runs it.
    #[arg(long)]
    jobs: Option<usize>,
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
    let seeds = match (a.seed, a.seeds) {
        (Some(s), _) => s..s + 1,
        (None, n) => a.from..a.from + n.unwrap_or(100),
    };
    let jobs = a
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if jobs == 0 {
        eprintln!("error: --jobs must be at least 1");
        return Ok(USAGE);
    }
    let opts = Options { faults, bug };
    // turmoil runs its own runtimes: simulate on a plain thread.
    let (from, to) = (seeds.start, seeds.end - 1);
    let total = seeds.end - seeds.start;
    let done = Arc::new(AtomicU64::new(0));
    let counter = done.clone();
    let run =
        std::thread::spawn(move || shopstream_sim::sweep_counting(seeds, &opts, jobs, &counter));
    let progress = (total > 1).then(|| tokio::spawn(show_progress(done, total, a.json)));
    let sw = tokio::task::spawn_blocking(move || run.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the simulation thread panicked"))?;
    if let Some(p) = progress {
        p.abort();
        let _ = p.await;
    }
    let failed = sw.failure.as_ref();
    let (sim_ms, faults_injected, checks, orders) = (
        sw.sim_ms,
        sw.faults_injected,
        sw.invariant_checks,
        sw.orders,
    );
    let secs = sw.real.as_secs_f64().max(1e-9);
    let per_core = sw.seeds as f64 / secs / sw.jobs as f64;
    let ratio = sim_ms as f64 / 1000.0 / (secs * sw.jobs as f64);
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
        cmd
    };
    let hash = sw.single.as_ref().map(|r| format!("{:016x}", r.trace_hash));
    if a.json {
        let v = serde_json::json!({
            "scenario": a.scenario,
            "seeds": sw.seeds,
            "jobs": sw.jobs,
            "faults": a.faults,
            "bug": a.bug,
            "seeds_per_s": sw.seeds as f64 / secs,
            "seeds_per_s_per_core": per_core,
            "sim_s": sim_ms as f64 / 1000.0,
            "real_s": secs,
            "sim_to_real": ratio,
            "faults_injected": faults_injected,
            "invariant_checks": checks,
            "orders": orders,
            "trace_hash": hash,
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
        if let (Some(r), None) = (&sw.single, failed) {
            for l in &r.trace {
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
            "sim {}: {} seed(s) ({}), faults {}{}",
            a.scenario,
            sw.seeds,
            match (from == to, sw.seeds == to - from + 1) {
                (true, _) => format!("seed {from}"),
                (false, true) => format!("{from}..={to}"),
                (false, false) => format!("of {from}..={to}; stopped at the first violation"),
            },
            a.faults,
            a.bug
                .as_deref()
                .map(|b| format!(", bug {b}"))
                .unwrap_or_default()
        );
        println!(
            "  {:.1} seeds/s on {} thread(s), {per_core:.1} per core; simulated {:.1} s in {:.2} s real ({ratio:.0}x per core)",
            sw.seeds as f64 / secs,
            sw.jobs,
            sim_ms as f64 / 1000.0,
            secs,
        );
        println!("  {orders} orders, {faults_injected} faults injected, {checks} invariant checks");
        if let Some(h) = &hash {
            println!("  trace hash {h}");
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

/// Seeds finished so far, on stderr: a bar on a terminal, a line every 10 s
/// otherwise (CI logs); nothing with `--json` on a terminal-less stderr.
/// Runs until aborted.
async fn show_progress(done: Arc<AtomicU64>, total: u64, json: bool) {
    if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} seeds, {per_sec}, eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let _clear = ClearOnDrop(bar.clone());
        loop {
            bar.set_position(done.load(Ordering::Relaxed));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    } else if !json {
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            eprintln!("sim: {}/{total} seeds done", done.load(Ordering::Relaxed));
        }
    }
}

/// Clears the bar when the progress task is aborted.
struct ClearOnDrop(ProgressBar);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}
