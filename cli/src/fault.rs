//! `shopstream fault list | set NAME | clear [NAME|--all] | show`: the fault
//! catalog (services/platform/src/faults.rs), switched at run time through
//! its flag store; every service picks a change up within a second.
//!
//! `shopstream fault stripe-sim|media [--set JSON | --clear | --show]`: the
//! two components' own fine-grained switches (one-shot failures of a given
//! operation or step), which the labs use. Thin clients of stripe-sim's
//! `/_sim/faults` and of media's `/faults`.

use std::{path::Path, time::Duration};

use clap::{Args, Subcommand};
use shopstream_labs::{LabError, Target, stripe_sim};
use shopstream_platform::{
    config::{Endpoints, Ports},
    faults::{self, Active, CATALOG, Effect},
};
use shopstream_runtime::{Kind, Stack};

use crate::exit;

#[derive(Debug, Args)]
pub struct FaultArgs {
    #[command(subcommand)]
    target: FaultTarget,
}

#[derive(Debug, Subcommand)]
enum FaultTarget {
    /// Print the catalog: every named fault, the component it hits, its
    /// value, and its runbook.
    List(ListArgs),
    /// Switch a fault on (its value replaced if it is on already).
    #[command(after_help = "Examples:\n  \
            shopstream fault set catalog-slow --value 800ms --for 60\n  \
            shopstream fault set payment-decline-rate --value 50%\n  \
            shopstream fault set memory-hog --target orders --value 512\n  \
            shopstream fault set redis-unavailable --for 10   (stops Redis, starts it again)\n\n\
            Exit codes: 0 ok, 2 unknown fault or invalid value, 4 the flag store (Redis) \
            is not reachable: start the system with `shopstream up`.")]
    Set(SetArgs),
    /// Switch one fault off, or every fault with --all.
    Clear(ClearArgs),
    /// The faults active now, and when each clears by itself.
    Show(ShowArgs),
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

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct SetArgs {
    /// A fault of `shopstream fault list`.
    name: String,
    /// Its value, in its unit (`30%`, `500ms`, `5s`, `256`); its default if omitted.
    #[arg(long)]
    value: Option<String>,
    /// The service it hits, for the faults that take one (clock-skew,
    /// memory-hog, cpu-hog, consumer-crash-loop).
    #[arg(long)]
    target: Option<String>,
    /// Clear it by itself after this many seconds (at most 3600).
    #[arg(long = "for", value_name = "SECONDS")]
    for_s: Option<u64>,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ClearArgs {
    /// The fault to clear.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    name: Option<String>,
    /// Clear every fault.
    #[arg(long)]
    all: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[arg(long)]
    json: bool,
}

pub async fn fault(state_dir: &Path, args: FaultArgs) -> anyhow::Result<u8> {
    match args.target {
        FaultTarget::List(a) => list(a),
        FaultTarget::Set(a) => set(state_dir, a).await,
        FaultTarget::Clear(a) => clear(a).await,
        FaultTarget::Show(a) => show(a).await,
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

fn list(args: ListArgs) -> anyhow::Result<u8> {
    if args.json {
        let rows: Vec<_> = CATALOG
            .iter()
            .map(|s| {
                serde_json::json!({
                    "name": s.name, "component": s.component, "targetable": s.targetable,
                    "unit": s.unit, "default": s.default_value, "min": s.min, "max": s.max,
                    "effect": s.effect, "summary": s.summary, "runbook": s.runbook(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(exit::OK);
    }
    let rows: Vec<Vec<String>> = CATALOG
        .iter()
        .map(|s| {
            vec![
                s.name.to_string(),
                if s.targetable {
                    format!("{} (or --target)", s.component)
                } else {
                    s.component.to_string()
                },
                match s.default_value {
                    Some(_) => s.show_value(s.default_value),
                    None => "on/off".into(),
                },
                s.summary.to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        crate::table::render(&["FAULT", "HITS", "DEFAULT", "WHAT IT DOES"], &rows)
    );
    println!(
        "\n{} faults and toggles; runbooks in docs/runbooks/<fault>.md. \
         `shopstream fault set NAME --help` for values.",
        CATALOG.len()
    );
    Ok(exit::OK)
}

/// The flag store of this machine's stack, or exit 4 with how to start it.
async fn store() -> Result<faults::Store, u8> {
    let ports = Ports::from_env(Ports::DEV).map_err(|e| {
        eprintln!("error: {e}");
        2u8
    })?;
    let url = Endpoints::native(ports).redis_url;
    match tokio::time::timeout(Duration::from_secs(3), faults::Store::connect(&url)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => {
            eprintln!(
                "error: the fault store (Redis at {url}) is not reachable: {e}\n\
                 start the system with `shopstream up`"
            );
            Err(exit::NOT_READY)
        }
        Err(_) => {
            eprintln!(
                "error: the fault store (Redis at {url}) did not answer within 3 s\n\
                 start the system with `shopstream up`"
            );
            Err(exit::NOT_READY)
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn unknown(name: &str) -> u8 {
    eprintln!(
        "error: no fault named {name:?}; valid: {}",
        CATALOG
            .iter()
            .map(|s| s.name)
            .collect::<Vec<_>>()
            .join(", ")
    );
    2
}

async fn set(state_dir: &Path, args: SetArgs) -> anyhow::Result<u8> {
    let Some(spec) = faults::spec(&args.name) else {
        return Ok(unknown(&args.name));
    };
    let active = match spec.activate(
        args.value.as_deref(),
        args.target.as_deref(),
        args.for_s.map(Duration::from_secs),
        now_ms(),
    ) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(2);
        }
    };
    if spec.effect == Effect::Outage {
        let stack = Stack::new(
            state_dir,
            Ports::from_env(Ports::DEV)?,
            std::env::current_exe()?,
        );
        let window = Duration::from_secs(args.for_s.unwrap_or(0));
        return outage(&stack, spec.component, window, args.json).await;
    }
    let store = match store().await {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    if let Err(e) = store.set(&active).await {
        eprintln!("error: could not write the fault store: {e}");
        return Ok(exit::NOT_READY);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&active)?);
    } else {
        println!(
            "{} on {} = {}{} (services pick it up within a second; runbook: {})",
            spec.name,
            active.target,
            spec.show_value(active.value),
            match args.for_s {
                Some(s) => format!(", clears by itself in {s} s"),
                None => ", until `shopstream fault clear`".into(),
            },
            spec.runbook()
        );
    }
    Ok(exit::OK)
}

/// A backend outage: stop the component, wait out the window (Ctrl-C ends
/// it early), start it again and wait until it is ready.
pub async fn outage(
    stack: &Stack,
    component: &str,
    window: Duration,
    json: bool,
) -> anyhow::Result<u8> {
    let Some(kind) = Kind::parse(component) else {
        eprintln!("error: {component} is not a component of this stack");
        return Ok(2);
    };
    if stack.running_pid(kind).is_none() {
        eprintln!("error: {component} is not running; start the system with `shopstream up`");
        return Ok(exit::NOT_READY);
    }
    if !json {
        println!("{component}: stopping for {} s", window.as_secs());
    }
    stack.stop_component(kind).await;
    let cut = tokio::select! {
        _ = tokio::time::sleep(window) => false,
        _ = tokio::signal::ctrl_c() => true,
    };
    let started = stack.start_component(kind).await;
    let ok = started.is_ok();
    if json {
        println!(
            "{}",
            serde_json::json!({"component": component, "stopped_s": window.as_secs(),
                "interrupted": cut, "restarted": ok,
                "error": started.err().map(|e| e.to_string())})
        );
    } else {
        match started {
            Ok(()) => println!(
                "{component}: started again{}",
                if cut { " (interrupted)" } else { "" }
            ),
            Err(e) => eprintln!("error: {component} did not start again: {e}; run `shopstream up`"),
        }
    }
    Ok(if ok { exit::OK } else { exit::FAILED })
}

async fn clear(args: ClearArgs) -> anyhow::Result<u8> {
    if let Some(name) = &args.name
        && faults::spec(name).is_none()
    {
        return Ok(unknown(name));
    }
    let store = match store().await {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let cleared = match &args.name {
        Some(name) => store.clear(name).await.map(usize::from),
        None => store.clear_all().await,
    };
    match cleared {
        Ok(n) => {
            if args.json {
                println!("{}", serde_json::json!({ "cleared": n }));
            } else if let Some(name) = &args.name {
                println!("{name}: {}", if n > 0 { "cleared" } else { "was not set" });
            } else {
                println!("{n} fault(s) cleared");
            }
            Ok(exit::OK)
        }
        Err(e) => {
            eprintln!("error: could not write the fault store: {e}");
            Ok(exit::NOT_READY)
        }
    }
}

async fn show(args: ShowArgs) -> anyhow::Result<u8> {
    let store = match store().await {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let active: Vec<Active> = match store.active().await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: could not read the fault store: {e}");
            return Ok(exit::NOT_READY);
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&active)?);
        return Ok(exit::OK);
    }
    if active.is_empty() {
        println!("no faults active");
        return Ok(exit::OK);
    }
    let now = now_ms();
    let rows: Vec<Vec<String>> = active
        .iter()
        .map(|a| {
            let spec = faults::spec(&a.name);
            vec![
                a.name.clone(),
                a.target.clone(),
                spec.map(|s| s.show_value(a.value)).unwrap_or_default(),
                format!("{} s ago", (now - a.set_at_ms).max(0) / 1_000),
                match a.until_ms {
                    Some(u) => format!("in {} s", (u - now).max(0) / 1_000),
                    None => "when cleared".into(),
                },
            ]
        })
        .collect();
    print!(
        "{}",
        crate::table::render(&["FAULT", "HITS", "VALUE", "SET", "CLEARS"], &rows)
    );
    Ok(exit::OK)
}
