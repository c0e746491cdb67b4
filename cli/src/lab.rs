//! `shopstream lab list | run NAME`: the labs of `shopstream-labs` from the
//! shell. `run` first makes sure the system is up and seeded — through the
//! same code as `shopstream up` and `shopstream seed` — unless `--no-boot`,
//! then runs the lab against this stack's ports.

use std::path::Path;

use clap::{Args, Subcommand};
use shopstream_labs::{LABS, Target};
use shopstream_platform::config::Ports;
use shopstream_runtime::Stack;

use crate::{exit, infra, seed, table};

#[derive(Debug, Args)]
pub struct LabArgs {
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Debug, Subcommand)]
enum LabCommand {
    /// The labs there are, with what each shows.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Run one lab: boot and seed the system if needed, then run its steps.
    ///
    /// Prints each step, ✓/✗ per checkpoint and assertion, and a summary of
    /// measurements. Faults the lab injects are always cleared at the end,
    /// also on failure or Ctrl-C. Exit codes: 0 every check passed, 1 one
    /// failed, 3 missing prerequisite (while booting), 4 the system is not
    /// reachable or not ready.
    Run(RunArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The lab, e.g. checkout-failure (`shopstream lab list` shows them all).
    name: String,
    /// Print one JSON report on stdout (the step-by-step output goes to stderr).
    #[arg(long)]
    json: bool,
    /// Use the system as it is: do not start or seed anything.
    #[arg(long)]
    no_boot: bool,
    /// When booting, fail instead of installing missing tansu/temporal.
    #[arg(long)]
    no_install: bool,
}

pub async fn lab(state_dir: &Path, args: LabArgs) -> anyhow::Result<u8> {
    match args.command {
        LabCommand::List { json } => list(json),
        LabCommand::Run(a) => run(state_dir, a).await,
    }
}

fn list(json: bool) -> anyhow::Result<u8> {
    if json {
        println!("{}", serde_json::to_string_pretty(LABS)?);
        return Ok(exit::OK);
    }
    let rows: Vec<Vec<String>> = LABS
        .iter()
        .map(|l| vec![l.name.to_string(), l.title.to_string()])
        .collect();
    print!("{}", table::render(&["lab", "what it shows"], &rows));
    for l in LABS {
        let summary =
            shopstream_labs::kit::wrap(l.summary, shopstream_labs::kit::NARRATION_WIDTH, "  ");
        println!(
            "\n{}\n{}\n  chapter: {}",
            l.name,
            summary.join("\n"),
            l.chapter
        );
    }
    println!("\nrun one with `shopstream lab run NAME` (add --json for a machine-readable report)");
    Ok(exit::OK)
}

async fn run(state_dir: &Path, args: RunArgs) -> anyhow::Result<u8> {
    if shopstream_labs::find(&args.name).is_none() {
        let names: Vec<_> = LABS.iter().map(|l| l.name).collect();
        eprintln!(
            "error: no lab named {:?}; one of: {}",
            args.name,
            names.join(", ")
        );
        return Ok(2);
    }
    if !args.no_boot {
        eprintln!("== making sure the system is up (as `shopstream up`)");
        if let Err(code) = infra::bring_up(state_dir, !args.no_install).await? {
            return Ok(code);
        }
        eprintln!("== making sure the demo data is loaded (as `shopstream seed --images 0`)");
        let seeded = match seed::seed_stack(state_dir, seed::DEFAULT_ADMIN_EMAIL, None).await? {
            Ok(s) => s,
            Err(code) => return Ok(code),
        };
        if let Some(pw) = &seeded.admin_password {
            eprintln!(
                "admin account created: {} / {pw}\n  (shown once; keep it — it is stored only as an argon2id hash)",
                seeded.admin_email
            );
        }
        eprintln!(
            "catalog: {} products inserted, {} updated, {} unchanged ({:.1}s)",
            seeded.report.inserted,
            seeded.report.updated,
            seeded.report.unchanged,
            seeded.elapsed.as_secs_f64()
        );
    }
    let stack = Stack::new(
        state_dir,
        Ports::from_env(Ports::DEV)?,
        std::env::current_exe()?,
    );
    let mut target = Target::from_ports(&stack.ports());
    // Labs that crash and restart processes (cdc-latency) do it through the stack.
    target.operator = Some(shopstream_labs::target::Operator {
        state_dir: stack.root().to_path_buf(),
        ports: stack.ports(),
        exe: std::env::current_exe()?,
    });
    // With --json, stdout carries the report alone; people still see the steps.
    let out: Box<dyn std::io::Write + Send> = if args.json {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    let interrupt = shopstream_platform::shutdown::on_signal();
    let Some(report) = shopstream_labs::run(&args.name, target, out, interrupt).await else {
        return Ok(2);
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(report.exit_code())
}
