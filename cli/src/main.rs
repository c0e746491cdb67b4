//! `shopstream`: one binary that boots the system and runs any of its services.

mod bench;
mod compose;
mod consistency;
mod dash;
mod demo;
mod deploy;
mod dsar;
mod fault;
mod feed;
mod infra;
mod lab;
mod mail;
mod media;
mod scenario;
mod search;
mod seed;
mod serve;
mod sim;
mod stats;
mod table;
mod trace;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

/// Exit codes that mean something to scripts.
pub mod exit {
    pub const OK: u8 = 0;
    /// Something failed while running.
    pub const FAILED: u8 = 1;
    /// A prerequisite is missing (the message says how to install it).
    pub const MISSING_PREREQ: u8 = 3;
    /// The stack (or part of it) is not running or not ready.
    pub const NOT_READY: u8 = 4;
}

#[derive(Debug, Parser)]
#[command(
    name = "shopstream",
    version,
    about = "Boot and drive Shopstream, a commerce-plus-social reference system",
    long_about = "Boot and drive Shopstream, a commerce-plus-social reference system.\n\n\
        `shopstream up` starts the infrastructure natively (no Docker): PostgreSQL, Redis, \
        a Kafka-protocol broker (tansu), the Temporal dev server and an S3 server, each on \
        its own loopback port with its state under .shopstream/. `shopstream down` stops it. \
        `up --runtime compose|testcontainers` does the same with Docker, and \
        `deploy aws` takes the same binary to AWS with Terraform.",
    after_help = "Exit codes: 0 ok, 1 failed, 2 usage error, 3 missing prerequisite, 4 not ready."
)]
struct Cli {
    /// Where the native stack keeps its state, logs and pid files.
    #[arg(
        long,
        global = true,
        env = "SHOPSTREAM_STATE_DIR",
        default_value = ".shopstream"
    )]
    state_dir: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the system and wait until every part is ready.
    ///
    /// Idempotent: what runs is left alone, what died is started again.
    /// `--runtime native` (the default) needs no Docker: missing tansu or
    /// temporal binaries are installed into the cache first (tansu is built
    /// from the crate registry: ~15 minutes once) unless --no-install.
    /// `--runtime compose` drives `docker compose` with compose/compose.yaml;
    /// `--runtime testcontainers` runs the infrastructure in containers and
    /// the services natively. Both need a running Docker engine (exit 3 without).
    Up(infra::UpArgs),
    /// Stop everything `up` started; --purge also deletes all state.
    Down(infra::DownArgs),
    /// Show each component: process, port, readiness, memory.
    Status(infra::StatusArgs),
    /// Print a component's log (postgres, redis, kafka, temporal, s3).
    Logs(infra::LogsArgs),
    /// List prerequisites: found or missing, version, how to install.
    Doctor(infra::DoctorArgs),
    /// Load the demo data idempotently: an admin account and 600 products.
    Seed(seed::SeedArgs),
    /// Open-loop load against the running gateway; prints latency percentiles.
    Bench(bench::BenchArgs),
    /// Run one server in the foreground (used by `up`; handy for debugging).
    Serve(serve::ServeArgs),
    /// Scripted, self-checking labs: `lab list`, `lab run checkout-failure`.
    Lab(lab::LabArgs),
    /// The fault catalog: `fault list`, `fault set NAME`, `fault clear`, `fault show`.
    Fault(fault::FaultArgs),
    /// What mail-sim received: `mail list`, `mail show ID`.
    Mail(mail::MailArgs),
    /// Photos and clips: `media upload FILE` follows one through the pipeline.
    Media(media::MediaArgs),
    /// The ranked feed: `feed backfill --all`, `feed explain USER`.
    Feed(feed::FeedArgs),
    /// Data subject requests: `dsar start USER --kind erase|export`, `status`, `export`, `verify`, `chain`.
    Dsar(dsar::DsarArgs),
    /// Do orders, payments, stripe-sim and analytics agree on every recent order's money?
    Consistency(consistency::ConsistencyArgs),
    /// What happened today and the days before: visitors, orders, revenue, with sparklines.
    Stats(stats::StatsArgs),
    /// Search operations: `search reconcile` repairs index drift.
    Search(search::SearchArgs),
    /// Deterministic simulations (turmoil): `sim --scenario checkout --seeds 500`.
    Sim(sim::SimArgs),
    /// Load and chaos scenarios with an invariant verdict: `test --scenario flash-sale`.
    ///
    /// Goose users run journeys against the gateway while a --chaos schedule
    /// kills, pauses, slows or cuts components; afterwards the system gets up
    /// to 60 s to settle and every invariant (no oversell, no lost order, no
    /// double charge, no charge the client was not told about, money and
    /// projections agree) passes or fails. `--out DIR` writes a Markdown
    /// summary and a chart for a pull request.
    Test(scenario::TestArgs),
    /// One order's life as a waterfall: `trace ORDER_ID` or `trace TRACE_ID`.
    ///
    /// Read from the stack's trace collector (`otel`, started by `up`): the
    /// gateway request, each saga step and its attempts, the gRPC calls,
    /// outbox events and the consumers that handled them, with durations;
    /// retries, compensations and errors are marked.
    Trace(trace::TraceArgs),
    /// The live dashboard: components, event rates per topic, consumer lag,
    /// orders by state, saga step latencies, CDC lag, faults, recent traces.
    ///
    /// Reads every service's /metrics and the trace collector, at most every
    /// 250 ms. Enter on a trace opens its waterfall; `--once [--json]` prints
    /// one snapshot for scripts and CI.
    Dash(dash::DashArgs),
    /// A narrated tour of the running system in at most three minutes:
    /// footprint, search freshness, a live order and its trace, a compensated
    /// payment failure, a refund, the simulator, a DSAR certificate, a flash sale.
    ///
    /// Run it against a booted, seeded stack with `shopstream dash` open in a
    /// second terminal; each step says what to watch there. `--pace fast`
    /// never pauses; `--no-pause` never waits for Enter; `--json` prints each
    /// step's outcome, numbers and duration at the end.
    Demo(demo::DemoArgs),
    /// Deploy the same binary to a cloud: `deploy aws --plan | --apply | --destroy`.
    ///
    /// Wraps terraform over the layers in infra/ with the state and variables
    /// each needs. --apply and --destroy need --yes; --apply also needs
    /// --budget-usd. See infra/README.md for what it costs and what has been
    /// validated (it has never been applied from this project's machines).
    Deploy(deploy::DeployArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A command whose reader stops early (`status --json | head`) ends the
    // way other Unix tools do, by SIGPIPE, instead of panicking on the failed
    // write: Rust ignores the signal by default. A service (`serve`) keeps
    // ignoring it: a peer going away must not kill it. Processes `up` starts
    // are not affected: the standard library resets SIGPIPE in every child.
    if !matches!(cli.command, Command::Serve(_)) {
        sigpipe::reset();
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::from(exit::FAILED);
        }
    };
    let code = rt.block_on(async move {
        match cli.command {
            Command::Up(a) => infra::up(&cli.state_dir, a).await,
            Command::Down(a) => infra::down(&cli.state_dir, a).await,
            Command::Status(a) => infra::status(&cli.state_dir, a).await,
            Command::Logs(a) => infra::logs(&cli.state_dir, a).await,
            Command::Doctor(a) => infra::doctor(a).await,
            Command::Deploy(a) => deploy::run(a).await,
            Command::Seed(a) => seed::seed(&cli.state_dir, a).await,
            Command::Bench(a) => bench::bench(&cli.state_dir, a).await,
            Command::Serve(a) => serve::serve(a).await,
            Command::Lab(a) => lab::lab(&cli.state_dir, a).await,
            Command::Fault(a) => fault::fault(&cli.state_dir, a).await,
            Command::Sim(a) => sim::sim(a).await,
            Command::Test(a) => scenario::test(&cli.state_dir, a).await,
            Command::Search(a) => search::search(a).await,
            Command::Mail(a) => mail::mail(a).await,
            Command::Media(a) => media::media(a).await,
            Command::Feed(a) => feed::feed(a).await,
            Command::Dsar(a) => dsar::dsar(a).await,
            Command::Stats(a) => stats::stats(a).await,
            Command::Consistency(a) => consistency::consistency(a).await,
            Command::Trace(a) => trace::trace(a).await,
            Command::Dash(a) => dash::dash(&cli.state_dir, a).await,
            Command::Demo(a) => demo::demo(&cli.state_dir, a).await,
        }
    });
    match code {
        Ok(c) => ExitCode::from(c),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit::FAILED)
        }
    }
}
