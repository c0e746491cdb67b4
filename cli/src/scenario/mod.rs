//! `shopstream test --scenario NAME`: load on Goose, chaos on processes, wire
//! and backends, and an invariant verdict.
//!
//! Goose is embedded as a library: its configuration is built here
//! (`GooseAttack::initialize_with_config`), never parsed from the command
//! line. Its Ctrl-C handler would exit the process on a second Ctrl-C, before
//! faults are cleared: this module installs its own handler first (the
//! `ctrlc` crate allows one per process, so Goose's attempt fails and Goose
//! logs that and carries on), and that handler stops the attack through
//! Goose's kill switch and lets this module clear faults, restart what it
//! stopped and write a partial report.

pub mod chaos;
mod driver;
mod invariants;
mod journeys;

pub(crate) use journeys::progress_path;
mod recorder;
pub mod report;

use std::{
    path::{Path, PathBuf},
    sync::{
        OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use clap::Args;
use shopstream_platform::config::Ports;
use shopstream_runtime::Stack;

use crate::exit;

/// One scenario of `shopstream test --list`.
pub struct ScenarioSpec {
    pub name: &'static str,
    pub summary: &'static str,
    pub default_duration_s: u64,
    pub default_users: usize,
}

pub const SCENARIOS: &[ScenarioSpec] = &[
    ScenarioSpec {
        name: "flash-sale",
        summary: "N buyers (one Goose user each) race for a few SKUs with little stock; \
                  the first winners place orders",
        default_duration_s: 30,
        default_users: 1_000,
    },
    ScenarioSpec {
        name: "checkout-spike",
        summary: "background buyers, then a slow ramp to a spike of buyers, each placing an \
                  order a second and following its saga, and back; finds the knee (orders/s \
                  placed when p95 passes 500 ms) and the settle time",
        default_duration_s: 60,
        default_users: 50,
    },
    ScenarioSpec {
        name: "browse",
        summary: "steady mixed reads: product lists and pages, search, typeahead, cards, feed",
        default_duration_s: 30,
        default_users: 32,
    },
    ScenarioSpec {
        name: "ws-churn",
        summary: "thousands of WebSocket subscribers connect, subscribe and drop while \
                  orders flow; no upgrade may fail but for the per-user limit, none may leak",
        default_duration_s: 30,
        default_users: 200,
    },
    ScenarioSpec {
        name: "cold-start",
        summary: "`down --purge` → `up` → seed → first completed checkout, phase by phase \
                  (destroys this stack's data: needs --yes)",
        default_duration_s: 300,
        default_users: 1,
    },
];

/// The longest a scenario's load may run.
pub const MAX_DURATION_S: u64 = 3_600;
/// The most Goose users.
pub const MAX_USERS: usize = 100_000;
/// How long the system may take to settle after the load and the faults.
pub const SETTLE_MAX: Duration = Duration::from_secs(60);

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    shopstream test --list\n  \
    shopstream test --scenario flash-sale --users 10000 --stock 100\n  \
    shopstream test --scenario flash-sale --duration 30 --chaos 'kill:orders@8s, latency:orders->inventory=200ms±50@12s+8s'\n  \
    shopstream test --scenario checkout-spike --chaos random --seed 7 --out target/scenario\n  \
    shopstream test --scenario cold-start --yes\n\n\
    Chaos items (comma-separated; T = start, D = length, e.g. 10s, 1500ms, 2m):\n  \
    kill:SERVICE@T               SIGKILL, then start it again\n  \
    pause:SERVICE@T+D            SIGSTOP, SIGCONT after D\n  \
    latency:A->B=300ms±50@T+D    the A→B connection through the fault proxy\n  \
    loss:A->B=5%@T+D  bandwidth:A->B=64KiB@T+D  reset:A->B@T+D  blackhole:A->B@T+D\n  \
    packet-loss:A->B=5%@T+D      real packets dropped by the kernel (root, iproute2, nftables)\n  \
    outage:postgres|redis|kafka|temporal|s3@T+D\n  \
    fault:NAME[=VALUE]@T+D       a fault of `shopstream fault list`\n  \
    random                       a replayable schedule drawn from --seed\n\n\
    Exit codes: 0 every invariant held, 1 an invariant failed (or the run was \
    interrupted), 2 usage error (unknown scenario, bad --chaos), 3 a prerequisite is missing (packet-loss \
    without root, iproute2 or nftables), 4 the system is not up.")]
pub struct TestArgs {
    /// The scenario to run (see --list).
    #[arg(long, required_unless_present = "list")]
    scenario: Option<String>,
    /// List the scenarios.
    #[arg(long)]
    list: bool,
    /// Seconds of load (default per scenario; at most 3600).
    #[arg(long)]
    duration: Option<u64>,
    /// Goose users: buyers in flash-sale; in checkout-spike the peak buyers,
    /// each placing one order a second (so also the peak orders/s offered).
    #[arg(long)]
    users: Option<usize>,
    /// Users started per second (default: all within the first second or two).
    #[arg(long)]
    rate: Option<u32>,
    /// Units of stock shared by the flash-sale SKUs.
    #[arg(long, default_value_t = 100)]
    stock: i64,
    /// Flash-sale winners that go on to place an order.
    #[arg(long, default_value_t = 20)]
    orders: usize,
    /// The fault schedule (see below).
    #[arg(long)]
    chaos: Option<String>,
    /// Seed of `--chaos random` and of the journeys' choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write report.json, summary.md and chart.svg here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// cold-start only: agree to `down --purge` of this stack.
    #[arg(long)]
    yes: bool,
    /// Print the report (or the list) as JSON instead of the terminal summary.
    #[arg(long)]
    json: bool,
}

/// Set by the Ctrl-C handler.
pub(crate) fn cancelled() -> bool {
    CANCELLED.load(Ordering::SeqCst)
}

static CANCELLED: AtomicBool = AtomicBool::new(false);

/// Install the process's Ctrl-C handler before Goose tries to (see the module docs).
fn install_ctrlc() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = ctrlc::set_handler(|| {
            if !CANCELLED.swap(true, Ordering::SeqCst) {
                eprintln!(
                    "\ntest: Ctrl-C: stopping the load, clearing faults, restarting what was \
                     stopped, writing a partial report…"
                );
            }
            goose::trigger_killswitch("Ctrl-C");
        });
    });
}

pub async fn test(state_dir: &Path, args: TestArgs) -> anyhow::Result<u8> {
    if args.list {
        return list(args.json);
    }
    let name = args.scenario.clone().unwrap_or_default();
    let Some(spec) = SCENARIOS.iter().find(|s| s.name == name) else {
        eprintln!(
            "error: no scenario named {name:?}; valid: {}",
            SCENARIOS
                .iter()
                .map(|s| s.name)
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Ok(2);
    };
    let duration = Duration::from_secs(args.duration.unwrap_or(spec.default_duration_s));
    if duration.is_zero() || duration.as_secs() > MAX_DURATION_S {
        eprintln!("error: --duration must be between 1 and {MAX_DURATION_S} seconds");
        return Ok(2);
    }
    let users = args.users.unwrap_or(spec.default_users);
    if users == 0 || users > MAX_USERS {
        eprintln!("error: --users must be between 1 and {MAX_USERS}");
        return Ok(2);
    }
    let schedule = match args.chaos.as_deref() {
        None => chaos::Schedule::default(),
        Some("random") => {
            let names: Vec<&str> = random_catalog();
            chaos::random(args.seed, duration, &names)
        }
        Some(spec) => {
            match chaos::parse(spec, duration, &|n| {
                shopstream_platform::faults::spec(n).is_some()
            }) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: --chaos: {e}");
                    return Ok(2);
                }
            }
        }
    };
    if schedule
        .items
        .iter()
        .any(|i| matches!(i.action, chaos::Action::PacketLoss { .. }))
        && let Err(e) = shopstream_runtime::lossy_path::preflight()
    {
        eprintln!("error: --chaos: {e}");
        return Ok(3);
    }
    let ports = Ports::from_env(Ports::DEV)?;
    let stack = Stack::new(state_dir, ports, std::env::current_exe()?);
    install_ctrlc();
    let ctx = driver::Context {
        stack,
        ports,
        seed: args.seed,
    };
    let report = if spec.name == "cold-start" {
        if !args.yes {
            eprintln!(
                "error: cold-start runs `shopstream down --purge` on the stack in {} first, \
                 deleting its data; add --yes to agree",
                state_dir.display()
            );
            return Ok(2);
        }
        journeys::cold_start(&ctx).await?
    } else {
        let plan = journeys::Plan {
            scenario: spec.name,
            duration,
            users,
            rate: args.rate,
            stock: args.stock,
            orders: args.orders,
            seed: args.seed,
            chaos: args.chaos.clone().unwrap_or_default(),
        };
        match journeys::run(&ctx, &plan, &schedule).await? {
            Ok(r) => r,
            Err(code) => return Ok(code),
        }
    };
    emit(&report, args.json, args.out.as_deref())
}

/// The faults `--chaos random` draws from: every catalog fault that a
/// scenario can clear again by itself (not toggles, not the hogs' targets).
fn random_catalog() -> Vec<&'static str> {
    use shopstream_platform::faults::{CATALOG, Effect};
    CATALOG
        .iter()
        .filter(|s| !matches!(s.effect, Effect::Toggle | Effect::Outage))
        .map(|s| s.name)
        .collect()
}

fn emit(report: &report::Report, json: bool, out: Option<&Path>) -> anyhow::Result<u8> {
    if let Some(dir) = out {
        let files = report.write_dir(dir)?;
        if !json {
            for f in files {
                eprintln!("test: wrote {}", f.display());
            }
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{}", report.terminal());
    }
    Ok(if report.passed() {
        exit::OK
    } else {
        exit::FAILED
    })
}

fn list(json: bool) -> anyhow::Result<u8> {
    if json {
        let rows: Vec<_> = SCENARIOS
            .iter()
            .map(|s| {
                serde_json::json!({"name": s.name, "summary": s.summary,
                    "default_duration_s": s.default_duration_s, "default_users": s.default_users})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(exit::OK);
    }
    let rows: Vec<Vec<String>> = SCENARIOS
        .iter()
        .map(|s| {
            vec![
                s.name.to_string(),
                format!("{} s", s.default_duration_s),
                s.default_users.to_string(),
                s.summary.to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        crate::table::render(&["SCENARIO", "DURATION", "USERS", "WHAT IT DOES"], &rows)
    );
    Ok(exit::OK)
}

/// Wall-clock milliseconds.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Seconds since `t0`, for fault windows.
pub(crate) fn since(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64()
}

/// `ms` (Unix milliseconds) as an RFC 3339 UTC timestamp.
pub(crate) fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1_000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_796_428_800_000), "2026-12-05T00:00:00Z");
        assert_eq!(
            super::rfc3339(951_782_400_000 + 3_661_000),
            "2000-02-29T01:01:01Z"
        );
    }
}
