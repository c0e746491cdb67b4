//! `shopstream demo`: a narrated tour of a booted, seeded system in at most
//! three minutes, for someone watching. Each step prints a heading, a
//! sentence or two of narration, what to watch in `shopstream dash` in a
//! second terminal, and then the real result with its numbers.
//!
//! The tour owns no mechanism of its own: every step is a lab's building
//! block (`shopstream-labs`), a whole lab (checkout-failure), the simulator's
//! library, or another `shopstream` command run as a child process (`trace`,
//! `dsar`, `test`), so what it shows is what those show.

use std::{
    future::Future,
    io::{IsTerminal, Write},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use clap::{Args, ValueEnum};
use serde::Serialize;
use serde_json::Value;
use shopstream_labs::{
    Target, cdc_latency,
    kit::{self, LabError, Measurement},
    order_live,
    target::{Gateway, Inventory},
};
use shopstream_platform::config::Ports;
use shopstream_runtime::Stack;
use tokio_util::sync::CancellationToken;

use crate::exit;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Pace {
    /// No pauses between steps.
    Fast,
    /// A short pause after each step; on a terminal, Enter goes on.
    Normal,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Run it against a booted, seeded system (`shopstream up && shopstream seed`), \
    with `shopstream dash` open in a second terminal.\n\n\
    Steps: the stack and its footprint; a product edit searchable in milliseconds; an order \
    followed live to completed, with its trace; a payment failure compensated (the \
    checkout-failure lab); a refund; the deterministic simulator; a DSAR erasure with its \
    certificate; a small flash sale with its invariant verdict.\n\n\
    Exit codes: 0 every step succeeded, 1 a step failed (named at the end), 4 the system is \
    not up or not seeded."
)]
pub struct DemoArgs {
    /// fast: no pauses; normal: a short pause after each step, and on a
    /// terminal a wait for Enter (unless --no-pause).
    #[arg(long, value_enum, default_value_t = Pace::Normal)]
    pace: Pace,
    /// Never wait for Enter (CI has no stdin).
    #[arg(long)]
    no_pause: bool,
    /// Print one JSON document at the end: each step's name, outcome,
    /// numbers and duration (the tour itself goes to stderr).
    #[arg(long)]
    json: bool,
}

/// The tour's target length.
const BUDGET: Duration = Duration::from_secs(180);
/// How long `--pace normal` lets a step's result stand.
const READING_PAUSE: Duration = Duration::from_secs(3);
/// How long a wait for Enter lasts before the tour goes on by itself.
const ENTER_TIMEOUT: Duration = Duration::from_secs(120);

/// Edits timed through cdc into the index.
const EDITS: usize = 5;
/// How long search may take to index what was published before the edits.
const BACKLOG_DEADLINE: Duration = Duration::from_secs(60);
/// How long one edit may take to become searchable.
const EDIT_DEADLINE: Duration = Duration::from_secs(30);
/// How long the shopper's `GET /search` may take to show the last edit.
const SEARCH_DEADLINE: Duration = Duration::from_secs(15);
/// How long the order may take to end, followed over SSE.
const ORDER_DEADLINE: Duration = Duration::from_secs(60);
/// `shopstream trace ORDER_ID --wait` (and the child's own bound).
const TRACE_WAIT_S: u64 = 10;
const TRACE_WIDTH: u16 = 100;
/// The checkout-failure lab is stopped (its cleanups still run, at most
/// [`kit::CLEANUP_TIMEOUT`] each) past this.
const LAB_DEADLINE: Duration = Duration::from_secs(90);
/// How long a `shopstream` child may take to wind down after Ctrl-C.
const CHILD_GRACE: Duration = Duration::from_secs(20);
/// How long the refund e-mail may take to reach mail-sim.
const MAIL_DEADLINE: Duration = Duration::from_secs(45);
/// The simulation: this many seeds (as `sim --seeds 50`), unless the budget
/// runs out first (a busy machine); seeds are run a batch of one per thread
/// at a time, so it overruns the budget by at most one seed's time.
const SIM_SEEDS: u64 = 50;
const SIM_BUDGET: Duration = Duration::from_secs(30);
/// The DSAR: how long `dsar start` follows it.
const DSAR_TIMEOUT_S: u64 = 60;
/// The flash sale: a few seconds of load on few units, then the verdict
/// (`test` gives the system up to 60 s to settle).
const FLASH_SALE_ARGS: &[&str] = &[
    "--scenario",
    "flash-sale",
    "--duration",
    "5",
    "--users",
    "40",
    "--stock",
    "30",
    "--orders",
    "5",
];
/// The flash sale's child: load, settling (at most 60 s) and the checks;
/// with [`CHILD_GRACE`] it stays inside the step's limit.
const FLASH_SALE_LIMIT: Duration = Duration::from_secs(95);
const POLL: Duration = Duration::from_millis(250);

/// One step of the tour as it is introduced.
struct Step {
    name: &'static str,
    title: &'static str,
    narration: &'static str,
    watch: &'static str,
    /// The step fails past this, whatever it waits for.
    limit: Duration,
    /// On Ctrl-C the step undoes what it changed before it returns (a lab's
    /// cleanups, a scenario's own stop), so the tour waits for it instead
    /// of dropping it. Such a step ends well within `limit` by itself.
    winds_down: bool,
}

const STACK: Step = Step {
    name: "stack",
    title: "The stack and its footprint",
    narration: "One binary, `shopstream`, booted everything natively, with no Docker: \
        PostgreSQL, Redis, a Kafka-protocol broker, Temporal, an S3 server, a trace \
        collector and fifteen services, each its own process on loopback.",
    watch: "Components: every process ready, with its memory and CPU.",
    limit: Duration::from_secs(20),
    winds_down: false,
};

const SEARCH: Step = Step {
    name: "search",
    title: "A product edit, searchable in milliseconds",
    narration: "An admin edits a product. The catalog commits the change with an outbox row; cdc \
        reads it from Postgres' replication stream and publishes it to Kafka; search indexes it. \
        Each edit is timed by search's own clock, from the commit to searchable.",
    watch: "CDC & search: CDC lag, and search freshness p95 (commit → searchable).",
    // The edits' own 90 s, after up to BACKLOG_DEADLINE waiting for a backlog.
    limit: Duration::from_secs(90 + BACKLOG_DEADLINE.as_secs()),
    winds_down: false,
};

const ORDER: Step = Step {
    name: "order",
    title: "An order, followed live to completed",
    narration: "A new shopper buys one item. Checkout is a saga on Temporal: reserve stock → \
        authorize the card → capture → finalize. Each step reaches the shopper live over \
        Server-Sent Events; then the trace collector shows the whole order as one waterfall.",
    watch: "Orders: the new order and each saga step's p50/p95. Traces: press / and type the \
        order id below; Enter opens its waterfall.",
    limit: Duration::from_secs(90),
    winds_down: false,
};

const PAYMENT_FAILURE: Step = Step {
    name: "payment-failure",
    title: "A payment failure, compensated",
    narration: "The checkout-failure lab: stripe-sim fails every capture; the saga retries three \
        times, then undoes what it did — voids the payment, returns the stock, cancels the order \
        with a reason — and the lab checks each of those on a different public surface.",
    watch: "Orders: one more cancelled, compensations/min jumps, cancel_intent and release get \
        their p50/p95. Traces: the lab's POST /orders (its id is below) is marked ERR; Enter \
        shows the three failed captures and the compensations.",
    limit: Duration::from_secs(120),
    winds_down: true,
};

const REFUND: Step = Step {
    name: "refund",
    title: "A refund of the completed order",
    narration: "An admin refunds the order of step 3 in full through the gateway \
        (POST /payments/{id}/refund); payments refunds it with Stripe (stripe-sim), publishes the \
        change, and notifications sends the shopper a refund e-mail.",
    watch: "Topics: payment.events ticks; Traces: the POST /payments/{payment_id}/refund request.",
    limit: Duration::from_secs(90),
    winds_down: false,
};

const SIMULATION: Step = Step {
    name: "simulation",
    title: "The simulator: the real checkout code under seeded faults",
    narration: "The real orders, inventory and payments code runs in a deterministic \
        simulation (turmoil): partitions, lost packets, crashes, clock skew and provider \
        failures drawn from each seed, invariants checked throughout. A violation prints the \
        seed and the command that replays it. This binary has no planted bugs; to watch the \
        simulator catch one: `cargo run -p shopstream --features bug-zoo -- sim --bug \
        release-forgotten --seeds 5 --jobs 1`.",
    watch: "Nothing: the simulation runs inside this process on a simulated network; the \
        stack stays quiet.",
    limit: Duration::from_secs(60),
    winds_down: false,
};

const DSAR: Step = Step {
    name: "dsar",
    title: "The shopper's data erased, with a signed certificate",
    narration: "The shopper of step 3 asks to be forgotten (`shopstream dsar start USER --kind \
        erase`). Every service that holds their data erases it; a sweep looks through every \
        store for residue; only a clean sweep earns a certificate, signed with Ed25519 and \
        chained into a write-once audit log, which `shopstream dsar verify` checks.",
    watch: "Traces: each participant's Erase and Scan calls (shopstream.dsar.v1.Participant) \
        and compliance's GetDSAR as the request is followed.",
    limit: Duration::from_secs(90),
    winds_down: false,
};

const FLASH_SALE: Step = Step {
    name: "flash-sale",
    title: "A flash sale, and the invariant verdict",
    narration: "Forty buyers race for 30 units spread over three SKUs; five winners release \
        their hold and place an order, so in the crowd some of those lose the unit and are \
        cancelled (`shopstream test --scenario flash-sale --duration 5 --users 40 --stock 30 \
        --orders 5`). Then the system settles and every invariant is checked: no oversell, no \
        lost order, no double charge, money and projections agree.",
    watch: "Faults & scenario: the flash-sale's requests and progress, for the second or two \
        the load lasts; then Consumer lag: analytics and feed catch up, and Orders counts the \
        new orders, completed and cancelled.",
    limit: Duration::from_secs(120),
    winds_down: true,
};

const STEPS: usize = 8;

/// What a step came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Outcome {
    Ok,
    Failed,
    NotReady,
    Skipped,
    Interrupted,
}

/// A finished step's result line and numbers.
struct Done {
    result: String,
    numbers: Vec<Measurement>,
}

fn number(name: &str, value: f64, unit: &str) -> Measurement {
    Measurement {
        name: name.to_string(),
        value,
        unit: unit.to_string(),
    }
}

/// One step as `--json` reports it.
#[derive(Debug, Serialize)]
struct StepReport {
    name: &'static str,
    title: &'static str,
    outcome: Outcome,
    duration_ms: u64,
    numbers: Vec<Measurement>,
    /// The step's result in one line, or why it failed or was skipped.
    result: String,
}

/// The whole tour as `--json` reports it.
#[derive(Debug, Serialize)]
struct TourReport {
    passed: bool,
    outcome: Outcome,
    pace: Pace,
    failed_steps: Vec<&'static str>,
    elapsed_ms: u64,
    budget_ms: u64,
    steps: Vec<StepReport>,
}

/// Where the tour is written: stdout, or stderr when stdout carries the JSON.
#[derive(Clone)]
struct Printer(Arc<Mutex<Box<dyn Write + Send>>>);

impl Printer {
    fn new(json: bool) -> Printer {
        let w: Box<dyn Write + Send> = if json {
            Box::new(std::io::stderr())
        } else {
            Box::new(std::io::stdout())
        };
        Printer(Arc::new(Mutex::new(w)))
    }

    fn line(&self, text: &str) {
        let mut w = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(w, "{text}");
        let _ = w.flush();
    }

    /// A paragraph wrapped to the labs' width, each line after `indent`.
    fn wrapped(&self, text: &str, indent: &str) {
        for l in kit::wrap(text, kit::NARRATION_WIDTH, indent) {
            self.line(&l);
        }
    }

    /// A line under the current step.
    fn note(&self, text: &str) {
        self.line(&format!("    {text}"));
    }
}

/// Enter on a terminal: a thread of its own reads stdin (a blocking read
/// in tokio's pool would hold the runtime open at exit; this thread does
/// not hold the process).
struct EnterKey(tokio::sync::mpsc::Receiver<()>);

impl EnterKey {
    fn start() -> EnterKey {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        std::thread::spawn(move || {
            let mut line = String::new();
            while matches!(std::io::stdin().read_line(&mut line), Ok(n) if n > 0) {
                line.clear();
                if tx.blocking_send(()).is_err() {
                    return;
                }
            }
        });
        EnterKey(rx)
    }
}

struct Tour {
    out: Printer,
    pace: Pace,
    enter: Option<EnterKey>,
    interrupt: CancellationToken,
    started: Instant,
    steps: Vec<StepReport>,
    /// Not ready or interrupted: the tour stops here.
    stopped: Option<Outcome>,
}

impl Tour {
    fn heading(&self, step: &Step) {
        let n = self.steps.len() + 1;
        let title = format!("── {n}/{STEPS}  {} ", step.title);
        let rule = "─".repeat(kit::NARRATION_WIDTH.saturating_sub(title.chars().count()));
        self.out.line(&format!("\n{title}{rule}"));
        self.out.wrapped(step.narration, "  ");
        self.out.wrapped(&format!("dash ▸ {}", step.watch), "  ");
        self.out.line("");
    }

    /// Run one step: heading, the step bounded by its limit (and Ctrl-C),
    /// its result, the pause after it. `None` when it did not succeed.
    async fn step<T>(
        &mut self,
        step: &Step,
        fut: impl Future<Output = Result<(T, Done), LabError>>,
    ) -> Option<T> {
        if self.stopped.is_some() {
            return None;
        }
        self.heading(step);
        let started = Instant::now();
        let bounded = async {
            tokio::time::timeout(step.limit, fut)
                .await
                .unwrap_or_else(|_| {
                    Err(LabError::Failed(format!(
                        "did not finish within {:?}",
                        step.limit
                    )))
                })
        };
        let result = if step.winds_down {
            bounded.await
        } else {
            tokio::select! {
                r = bounded => r,
                _ = self.interrupt.cancelled() => Err(LabError::Interrupted),
            }
        };
        let took = started.elapsed();
        let secs = took.as_secs_f64();
        let (outcome, value, text, numbers) = match result {
            Ok((v, done)) => {
                self.out.line(&format!("  ✓ {}  ({secs:.1}s)", done.result));
                (Outcome::Ok, Some(v), done.result, done.numbers)
            }
            Err(e) => {
                let outcome = match e {
                    LabError::NotReady(_) => Outcome::NotReady,
                    LabError::Interrupted => Outcome::Interrupted,
                    _ => Outcome::Failed,
                };
                self.out.line(&format!("  ✗ {e}  ({secs:.1}s)"));
                if matches!(outcome, Outcome::NotReady | Outcome::Interrupted) {
                    self.stopped = Some(outcome);
                }
                (outcome, None, e.to_string(), Vec::new())
            }
        };
        self.steps.push(StepReport {
            name: step.name,
            title: step.title,
            outcome,
            duration_ms: took.as_millis() as u64,
            numbers,
            result: text,
        });
        if self.stopped.is_none() && self.steps.len() < STEPS {
            self.pause().await;
        }
        value
    }

    /// Record a step that cannot run because one before it failed.
    fn skip(&mut self, step: &Step, why: &str) {
        if self.stopped.is_some() {
            return;
        }
        self.heading(step);
        self.out.line(&format!("  – skipped: {why}"));
        self.steps.push(StepReport {
            name: step.name,
            title: step.title,
            outcome: Outcome::Skipped,
            duration_ms: 0,
            numbers: Vec::new(),
            result: format!("skipped: {why}"),
        });
    }

    async fn pause(&mut self) {
        if self.pace == Pace::Fast {
            return;
        }
        match &mut self.enter {
            Some(enter) => {
                self.out.line("\n  (Enter for the next step)");
                tokio::select! {
                    _ = tokio::time::timeout(ENTER_TIMEOUT, enter.0.recv()) => {}
                    _ = self.interrupt.cancelled() => {}
                }
            }
            None => {
                tokio::select! {
                    _ = tokio::time::sleep(READING_PAUSE) => {}
                    _ = self.interrupt.cancelled() => {}
                }
            }
        }
    }

    /// The closing summary; the exit code.
    fn finish(self, json: bool) -> anyhow::Result<u8> {
        let elapsed = self.started.elapsed();
        let failed: Vec<&'static str> = self
            .steps
            .iter()
            .filter(|s| s.outcome != Outcome::Ok)
            .map(|s| s.name)
            .collect();
        let outcome = match self.stopped {
            Some(o) => o,
            None if failed.is_empty() => Outcome::Ok,
            None => Outcome::Failed,
        };
        self.out.line(&format!("\n── summary {}", "─".repeat(77)));
        for s in &self.steps {
            let mark = match s.outcome {
                Outcome::Ok => "✓",
                Outcome::Skipped => "–",
                _ => "✗",
            };
            self.out.line(&format!(
                "  {mark} {:<16} {:>6.1}s  {}",
                s.name,
                s.duration_ms as f64 / 1000.0,
                s.title
            ));
        }
        let budget = if elapsed <= BUDGET {
            format!("within the {} s budget", BUDGET.as_secs())
        } else {
            format!("over the {} s budget", BUDGET.as_secs())
        };
        self.out.line(&format!(
            "\ntour took {:.1}s ({budget}, pace {})",
            elapsed.as_secs_f64(),
            match self.pace {
                Pace::Fast => "fast",
                Pace::Normal => "normal",
            }
        ));
        let code = match outcome {
            Outcome::Ok => {
                self.out.line("every step succeeded");
                exit::OK
            }
            Outcome::NotReady => {
                self.out.line(
                    "NOT READY: the system is not up or not seeded; start it with \
                     `shopstream up && shopstream seed`",
                );
                exit::NOT_READY
            }
            Outcome::Interrupted => {
                self.out.line("interrupted");
                exit::FAILED
            }
            _ => {
                self.out
                    .line(&format!("FAILED: step(s) {}", failed.join(", ")));
                exit::FAILED
            }
        };
        if json {
            let report = TourReport {
                passed: outcome == Outcome::Ok,
                outcome,
                pace: self.pace,
                failed_steps: failed,
                elapsed_ms: elapsed.as_millis() as u64,
                budget_ms: BUDGET.as_millis() as u64,
                steps: self.steps,
            };
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Ok(code)
    }
}

/// What later steps need from earlier ones.
#[derive(Default)]
struct Shared {
    admin: Option<Gateway>,
    /// The shopper of step 3 (signed up even if the order then failed).
    buyer_id: Option<String>,
    /// Step 3's order, once it completed.
    order_id: Option<String>,
}

pub async fn demo(state_dir: &Path, args: DemoArgs) -> anyhow::Result<u8> {
    let stack = Stack::new(
        state_dir,
        Ports::from_env(Ports::DEV)?,
        std::env::current_exe()?,
    )
    .with_services(true);
    let target = Target::from_ports(&stack.ports());
    let out = Printer::new(args.json);
    let waits_for_enter =
        args.pace == Pace::Normal && !args.no_pause && std::io::stdin().is_terminal();
    let mut tour = Tour {
        out: out.clone(),
        pace: args.pace,
        enter: waits_for_enter.then(EnterKey::start),
        interrupt: shopstream_platform::shutdown::on_signal(),
        started: Instant::now(),
        steps: Vec::new(),
        stopped: None,
    };
    out.line(
        "shopstream demo: a tour of the running system in eight steps (at most three minutes)",
    );
    out.wrapped(
        "For the live view, open a second terminal and run `shopstream dash` (with the same \
         SHOPSTREAM_* environment); each step says what to watch there.",
        "",
    );
    // What the tour keeps: the lab's transcript, the DSAR's certificate.
    let demo_dir = stack.root().join("demo");
    let mut shared = Shared::default();

    tour.step(&STACK, stack_step(&out, &stack, &target)).await;

    let admin = tour.step(&SEARCH, search_step(&out, &target)).await;
    shared.admin = admin;

    let order = tour
        .step(&ORDER, order_step(&out, &target, state_dir, &mut shared))
        .await;
    shared.order_id = order;

    let lab_out = demo_dir.join("checkout-failure.txt");
    tour.step(
        &PAYMENT_FAILURE,
        payment_failure_step(&out, &target, &lab_out, tour.interrupt.clone()),
    )
    .await;

    match shared.order_id.clone() {
        Some(order_id) => {
            let admin = shared.admin.take();
            tour.step(&REFUND, refund_step(&out, &target, admin, &order_id))
                .await;
        }
        None => tour.skip(
            &REFUND,
            "it refunds the order of step 3, which did not complete",
        ),
    }

    tour.step(&SIMULATION, simulation_step(&out)).await;

    match shared.buyer_id.clone() {
        Some(user) => {
            tour.step(&DSAR, dsar_step(&out, state_dir, &demo_dir, &user))
                .await;
        }
        None => tour.skip(
            &DSAR,
            "it erases the shopper of step 3, who was not created",
        ),
    }

    let interrupt = tour.interrupt.clone();
    tour.step(&FLASH_SALE, flash_sale_step(&out, state_dir, &interrupt))
        .await;

    tour.finish(args.json)
}

// ---- 1. the stack -------------------------------------------------------------

async fn stack_step(out: &Printer, stack: &Stack, target: &Target) -> Result<((), Done), LabError> {
    // What `shopstream status --json` computes.
    let statuses = stack.status().await;
    let total = statuses.len();
    let ready = statuses.iter().filter(|s| s.ready).count();
    if statuses.iter().all(|s| !s.running) {
        return Err(LabError::NotReady(format!(
            "nothing is running in {}; start the system with `shopstream up && shopstream seed`",
            stack.root().display()
        )));
    }
    if ready < total {
        let down: Vec<&str> = statuses
            .iter()
            .filter(|s| !s.ready)
            .map(|s| s.name)
            .collect();
        return Err(LabError::NotReady(format!(
            "{ready} of {total} components ready (not ready: {}); start the system with \
             `shopstream up && shopstream seed`",
            down.join(", ")
        )));
    }
    let pss_kib: Option<u64> = statuses.iter().map(|s| s.pss_kib).sum();
    let rss_kib: u64 = statuses.iter().map(|s| s.rss_kib).sum();
    let gateway = Gateway::new(&target.gateway_url)?;
    let page = gateway.get("/products?limit=1").await?;
    if page["items"].as_array().is_none_or(Vec::is_empty) {
        return Err(LabError::NotReady(
            "the catalog is empty: load the demo data with `shopstream seed`".into(),
        ));
    }
    let mut by_memory: Vec<_> = statuses
        .iter()
        .filter_map(|s| Some((s.name, s.pss_kib?)))
        .collect();
    by_memory.sort_by_key(|(_, kib)| std::cmp::Reverse(*kib));
    let largest: Vec<String> = by_memory
        .iter()
        .take(4)
        .map(|(n, kib)| format!("{n} {} MiB", kib / 1024))
        .collect();
    let names: Vec<&str> = statuses.iter().map(|s| s.name).collect();
    for l in kit::wrap(&names.join(" · "), kit::NARRATION_WIDTH, "    ") {
        out.line(&l);
    }
    let mut numbers = vec![
        number("components", total as f64, ""),
        number("ready", ready as f64, ""),
        number("total RSS", (rss_kib / 1024) as f64, "MiB"),
    ];
    let memory = match pss_kib {
        Some(kib) => {
            numbers.insert(2, number("total PSS", (kib / 1024) as f64, "MiB"));
            format!("{} MiB (PSS)", kib / 1024)
        }
        None => "an unknown amount (PSS unreadable: run as the stack's user)".into(),
    };
    Ok((
        (),
        Done {
            result: format!(
                "{ready} of {total} components ready, using {memory}; largest: {}",
                largest.join(", ")
            ),
            numbers,
        },
    ))
}

// ---- 2. search ------------------------------------------------------------------

/// Waits until search has indexed every `product.events` record already
/// published, so the edits are timed on their own and not behind a fresh
/// seed's 600 products (a CI run once failed the first edit's deadline on
/// that backlog). Says how far behind search is while it waits.
async fn catch_up(out: &Printer, search: &cdc_latency::SearchDebug) -> Result<(), LabError> {
    let started = Instant::now();
    let mut said = None::<Instant>;
    loop {
        let lag = match search.consumer_lag().await {
            Ok(lag) => Some(lag),
            Err(LabError::NotReady(_)) => None,
            Err(e) => return Err(e),
        };
        if lag == Some(0.0) {
            if said.is_some() {
                out.note(&format!(
                    "search caught up in {:.1} s",
                    started.elapsed().as_secs_f64()
                ));
            }
            return Ok(());
        }
        if started.elapsed() >= BACKLOG_DEADLINE {
            return Err(LabError::Failed(format!(
                "search was still {} behind product.events after {BACKLOG_DEADLINE:?}",
                lag.map_or("an unknown number of records".into(), |l| format!(
                    "{l:.0} records"
                ))
            )));
        }
        if said.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
            out.note(&match lag {
                Some(l) => format!("search is indexing earlier changes: {l:.0} records behind"),
                None => "search's consumer has not joined yet".to_string(),
            });
            said = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Logs in a fresh admin (kept for the refund) and times [`EDITS`] edits.
async fn search_step(out: &Printer, target: &Target) -> Result<(Gateway, Done), LabError> {
    let mut admin = Gateway::new(&target.gateway_url)?;
    let email = admin
        .login_as_new_admin(&target.identity_grpc_url, "demo")
        .await?;
    out.note(&format!("admin {email} logged in"));
    let page = admin.get("/products?limit=1&sort=name").await?;
    let product = page["items"].get(0).ok_or_else(|| {
        LabError::NotReady("the catalog is empty: load the demo data with `shopstream seed`".into())
    })?;
    let id = product["id"].as_str().unwrap_or_default().to_string();
    let title = product["title"].as_str().unwrap_or_default().to_string();
    let mut version = product["version"].as_i64().unwrap_or(0);
    out.note(&format!("editing {title:?} (v{version}) {EDITS} times"));
    let search = cdc_latency::SearchDebug::new(&target.search_http_url)?;
    catch_up(out, &search).await?;
    let mut commit_to_searchable_ms = Vec::new();
    for n in 1..=EDITS {
        let description = format!("{title} — edited by shopstream demo ({n} of {EDITS})");
        version = cdc_latency::edit_description(&admin, &id, version, &description).await?;
        let answered = Instant::now();
        let deadline = answered + EDIT_DEADLINE;
        let seen = loop {
            match search.indexed(&id).await {
                Ok(Some(ix)) if ix.version >= version && ix.searchable_ts_ms.is_some() => {
                    break ix;
                }
                // Not there yet, or search restarting: ask again.
                Ok(_) | Err(LabError::NotReady(_)) => {}
                Err(e) => return Err(e),
            }
            if Instant::now() >= deadline {
                return Err(LabError::Failed(format!(
                    "edit {n} (v{version}) was not searchable within {EDIT_DEADLINE:?}"
                )));
            }
            tokio::time::sleep(cdc_latency::INDEX_POLL).await;
        };
        let seen_ms = answered.elapsed().as_millis();
        let commit = seen.commit_to_searchable_ms;
        if let Some(ms) = commit {
            commit_to_searchable_ms.push(ms as f64);
        }
        out.note(&format!(
            "edit {n} → v{version}: searchable {} after its commit (the demo saw it {seen_ms} ms \
             after the PATCH answered)",
            commit.map_or("?".into(), |ms| format!("{ms} ms"))
        ));
    }
    // The shopper's view: the public search API finds the product at the
    // last version (its reader reloads a moment after the index commits).
    let words: Vec<&str> = title.split_whitespace().take(3).collect();
    let path = format!(
        "/search?q={}&limit=100",
        cdc_latency::url_escape(&words.join(" "))
    );
    let asked = Instant::now();
    loop {
        let found = admin.get(&path).await.ok().and_then(|b| {
            b["hits"]
                .as_array()?
                .iter()
                .find(|h| h["product_id"] == id.as_str())
                .and_then(|h| h["version"].as_i64())
        });
        if found == Some(version) {
            break;
        }
        if asked.elapsed() >= SEARCH_DEADLINE {
            return Err(LabError::Failed(format!(
                "GET /search found {} after {SEARCH_DEADLINE:?}, not v{version}",
                found.map_or("nothing".into(), |v| format!("v{v}"))
            )));
        }
        tokio::time::sleep(POLL).await;
    }
    let shopper_ms = asked.elapsed().as_millis();
    out.note(&format!(
        "GET /search?q={:?} finds it at v{version} ({shopper_ms} ms after the last edit was indexed)",
        words.join(" ")
    ));
    let mut sorted = commit_to_searchable_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let p50 = cdc_latency::percentile(&sorted, 50.0);
    let max = sorted.last().copied();
    let mut numbers = vec![number("edits", EDITS as f64, "")];
    if let (Some(p50), Some(max)) = (p50, max) {
        numbers.push(number("commit → searchable p50", p50, "ms"));
        numbers.push(number("commit → searchable max", max, "ms"));
    }
    let result = match (p50, max) {
        (Some(p50), Some(max)) => format!(
            "{EDITS} edits searchable {p50:.0} ms after commit (median), {max:.0} ms at most"
        ),
        _ => format!("{EDITS} edits searchable (search reported no commit times)"),
    };
    Ok((admin, Done { result, numbers }))
}

// ---- 3. an order ------------------------------------------------------------------

async fn order_step(
    out: &Printer,
    target: &Target,
    state_dir: &Path,
    shared: &mut Shared,
) -> Result<(String, Done), LabError> {
    let mut buyer = Gateway::new(&target.gateway_url)?;
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let email = format!("demo-{}@labs.shopstream.dev", &suffix[..12]);
    let user = buyer
        .signup_and_login(&email, &format!("demo-pw-{suffix}"))
        .await?;
    shared.buyer_id = Some(user.clone());
    out.note(&format!("shopper {email} signed up (user {user})"));
    let inventory = Inventory::new(&target.inventory_grpc_url)?;
    let (product_id, sku_id, available) =
        order_live::stock_a_product(&buyer, &inventory, 10).await?;
    let order_id =
        order_live::place_order(&buyer, &product_id, &sku_id, &format!("demo-{suffix}")).await?;
    let placed = Instant::now();
    out.note(&format!(
        "order {order_id} placed: 1 × {sku_id} ({available} available), card pm_card_visa"
    ));
    let token = buyer
        .token()
        .ok_or_else(|| LabError::Failed("no access token after login".into()))?
        .to_string();
    let log: order_live::Log = Arc::default();
    let mut follow = tokio::spawn(order_live::follow_sse(
        target.gateway_url.clone(),
        token,
        order_id.clone(),
        log.clone(),
    ));
    // Print each step as the SSE stream delivers it, until the order ends.
    let mut printed = 0;
    let mut slowest_delivery_ms = 0;
    let ended = loop {
        let finished = tokio::select! {
            r = &mut follow => Some(r),
            _ = tokio::time::sleep(Duration::from_millis(100)) => None,
        };
        let seen: Vec<order_live::Seen> = log.lock().map(|l| l.clone()).unwrap_or_default();
        for s in seen.iter().skip(printed) {
            slowest_delivery_ms = slowest_delivery_ms.max(s.latency_ms);
            out.note(&format!(
                "  #{:<2} {:<10} → {:<11} live {} ms after its commit  (+{:.1}s)",
                s.seq,
                s.step,
                s.state,
                s.latency_ms,
                placed.elapsed().as_secs_f64()
            ));
        }
        printed = seen.len();
        if let Some(r) = finished {
            break r;
        }
        if placed.elapsed() >= ORDER_DEADLINE {
            follow.abort();
            return Err(LabError::Failed(format!(
                "order {order_id} did not end within {ORDER_DEADLINE:?} ({printed} steps seen)"
            )));
        }
    };
    ended
        .map_err(|e| LabError::Failed(format!("the SSE follower stopped: {e}")))?
        .map_err(LabError::Failed)?;
    let order = buyer.get(&format!("/orders/{order_id}")).await?;
    let state = order["state"].as_str().unwrap_or("?");
    if state != "completed" {
        return Err(LabError::Failed(format!(
            "order {order_id} ended {state} ({}), not completed",
            order["cancel_reason"].as_str().unwrap_or("no reason")
        )));
    }
    let took_ms =
        order["updated_at_ms"].as_i64().unwrap_or(0) - order["created_at_ms"].as_i64().unwrap_or(0);
    out.line("");
    out.note(&format!(
        "its waterfall: shopstream trace {order_id}   (running it, --wait {TRACE_WAIT_S})"
    ));
    let id_arg = order_id.clone();
    let width = TRACE_WIDTH.to_string();
    let wait = TRACE_WAIT_S.to_string();
    let trace = shopstream(
        state_dir,
        &["trace", &id_arg, "--wait", &wait, "--width", &width],
        Duration::from_secs(TRACE_WAIT_S + 10),
        None,
    )
    .await?;
    if trace.code != Some(0) {
        return Err(LabError::Failed(format!(
            "`shopstream trace {order_id}` exited {}: {}",
            trace.code_text(),
            trace.stderr.trim()
        )));
    }
    for l in trace.stdout.lines() {
        out.note(l);
    }
    let numbers = vec![
        number("saga steps delivered live", printed as f64, ""),
        number(
            "placed → completed (order timestamps)",
            took_ms as f64,
            "ms",
        ),
        number(
            "slowest live delivery (commit → SSE)",
            slowest_delivery_ms as f64,
            "ms",
        ),
        number(
            "order total (minor units)",
            order["total_minor"].as_i64().unwrap_or(0) as f64,
            order["currency"].as_str().unwrap_or_default(),
        ),
    ];
    Ok((
        order_id.clone(),
        Done {
            result: format!(
                "order {order_id} completed {took_ms} ms after it was placed; {printed} steps \
                 arrived live, the slowest {slowest_delivery_ms} ms after its commit"
            ),
            numbers,
        },
    ))
}

// ---- 4. a payment failure ------------------------------------------------------------

async fn payment_failure_step(
    out: &Printer,
    target: &Target,
    transcript: &Path,
    interrupt: CancellationToken,
) -> Result<((), Done), LabError> {
    out.note("running `shopstream lab run checkout-failure --no-boot` in process …");
    let buf = kit::SharedBuf::default();
    // The lab stops on Ctrl-C or at its deadline, and clears stripe-sim's
    // faults either way before it returns.
    let stop = interrupt.child_token();
    let deadline = tokio::spawn({
        let stop = stop.clone();
        async move {
            tokio::time::sleep(LAB_DEADLINE).await;
            stop.cancel();
        }
    });
    let report = shopstream_labs::run(
        shopstream_labs::checkout_failure::NAME,
        target.clone(),
        Box::new(buf.clone()),
        stop,
    )
    .await
    .ok_or_else(|| LabError::Failed("the checkout-failure lab is missing".into()))?;
    deadline.abort();
    let saved = std::fs::create_dir_all(transcript.parent().unwrap_or(Path::new(".")))
        .and_then(|()| std::fs::write(transcript, buf.text()));
    // The lab's steps without its narration: what it did (→) and what it
    // checked (✓/✗), with the answer or what it saw when that is short.
    for s in &report.steps {
        let mark = match (s.kind.is_check(), s.passed) {
            (_, false) => "✗",
            (true, true) => "✓",
            (false, true) => "→",
        };
        let seen = if s.kind.is_check() {
            s.actual.as_deref().filter(|a| !s.passed || a.len() <= 40)
        } else {
            Some(s.detail.as_str())
        };
        let text = format!(
            "{mark} {}{}",
            s.name,
            seen.map(|a| format!(" — {a}")).unwrap_or_default()
        );
        out.wrapped(&text, "    ");
    }
    for m in &report.measurements {
        out.note(&format!("≈ {}: {} {}", m.name, m.value, m.unit));
    }
    match saved {
        Ok(()) => out.note(&format!(
            "the lab's whole transcript: {}",
            transcript.display()
        )),
        Err(e) => out.note(&format!(
            "(could not save the transcript to {}: {e})",
            transcript.display()
        )),
    }
    if report.error.as_deref() == Some("interrupted") {
        return Err(if interrupt.is_cancelled() {
            LabError::Interrupted
        } else {
            LabError::Failed(format!(
                "the checkout-failure lab did not finish within {LAB_DEADLINE:?}"
            ))
        });
    }
    let checks = report.steps.iter().filter(|s| s.kind.is_check()).count();
    let passed = report
        .steps
        .iter()
        .filter(|s| s.kind.is_check() && s.passed)
        .count();
    let why = || {
        report
            .error
            .clone()
            .unwrap_or_else(|| format!("{passed} of {checks} checks passed"))
    };
    match report.exit_code() {
        kit::EXIT_PASSED => {}
        kit::EXIT_NOT_READY => return Err(LabError::NotReady(why())),
        _ => return Err(LabError::Failed(format!("checkout-failure lab: {}", why()))),
    }
    let mut numbers = vec![number("lab checks passed", passed as f64, "")];
    numbers.extend(report.measurements.iter().cloned());
    let released = report
        .measurements
        .iter()
        .find(|m| m.name.starts_with("capture failed → stock released"))
        .map(|m| format!("; capture failed → stock released in {} ms", m.value))
        .unwrap_or_default();
    Ok((
        (),
        Done {
            result: format!(
                "payment failed, saga compensated: {passed} of {checks} checks passed{released}"
            ),
            numbers,
        },
    ))
}

// ---- 5. a refund ---------------------------------------------------------------------------

async fn refund_step(
    out: &Printer,
    target: &Target,
    admin: Option<Gateway>,
    order_id: &str,
) -> Result<((), Done), LabError> {
    let admin = match admin {
        Some(a) => a,
        None => {
            let mut a = Gateway::new(&target.gateway_url)?;
            a.login_as_new_admin(&target.identity_grpc_url, "demo")
                .await?;
            a
        }
    };
    // An admin may read any order.
    let order = admin.get(&format!("/orders/{order_id}")).await?;
    let payment_id = order["payment_id"].as_str().unwrap_or_default().to_string();
    if payment_id.is_empty() {
        return Err(LabError::Failed(format!(
            "order {order_id} has no payment_id"
        )));
    }
    let asked = Instant::now();
    let a = order_live::refund_in_full(
        &admin,
        &payment_id,
        "shopstream demo",
        &format!("demo-refund-{order_id}"),
    )
    .await?;
    let p = &a.body["payment"];
    let status = p["status"].as_str().unwrap_or("?").to_string();
    let refunded = p["refunded_minor"].as_i64().unwrap_or(0);
    let captured = p["captured_minor"].as_i64().unwrap_or(0);
    let currency = p["currency"].as_str().unwrap_or_default().to_string();
    out.note(&format!(
        "HTTP {}: payment {payment_id} is {status}, {refunded} of {captured} {currency} refunded \
         (refund {})",
        a.status.as_u16(),
        a.body["refund_id"].as_str().unwrap_or("?")
    ));
    if status != "refunded" || refunded != captured {
        return Err(LabError::Failed(format!(
            "the payment is {status} with {refunded} of {captured} refunded, not refunded in full"
        )));
    }
    let http = reqwest::Client::builder()
        .timeout(shopstream_labs::target::HTTP_TIMEOUT)
        .build()
        .map_err(|e| LabError::Failed(format!("http client: {e}")))?;
    let subject = loop {
        match order_live::refund_mail(&http, &target.mail_sim_url, order_id).await {
            Ok(Some(s)) => break s,
            Ok(None) | Err(LabError::NotReady(_)) => {}
            Err(e) => return Err(e),
        }
        if asked.elapsed() >= MAIL_DEADLINE {
            return Err(LabError::Failed(format!(
                "no refund e-mail for order {order_id} in mail-sim within {MAIL_DEADLINE:?}"
            )));
        }
        tokio::time::sleep(POLL).await;
    };
    let mail_ms = asked.elapsed().as_millis();
    out.note(&format!(
        "mail-sim received {subject:?} {mail_ms} ms after the refund was asked for"
    ));
    Ok((
        (),
        Done {
            result: format!(
                "{refunded} {currency} refunded; the refund e-mail arrived {mail_ms} ms later"
            ),
            numbers: vec![
                number("refunded (minor units)", refunded as f64, &currency),
                number("refund asked → e-mail in mail-sim", mail_ms as f64, "ms"),
            ],
        },
    ))
}

// ---- 6. the simulator ------------------------------------------------------------------------

/// What the seeds run within the budget came to.
#[derive(Default)]
struct SimTotals {
    seeds: u64,
    sim_ms: i64,
    orders: usize,
    faults_injected: usize,
    invariant_checks: u64,
    /// `(seed, invariant, detail)` of the first violation.
    violation: Option<(u64, String, String)>,
    real: Duration,
}

/// Seeds 1..=[`SIM_SEEDS`], a batch of one per thread at a time, until the
/// budget is spent or a seed violates an invariant.
fn simulate(jobs: usize) -> SimTotals {
    let opts = shopstream_sim::Options::default();
    let started = Instant::now();
    let mut t = SimTotals::default();
    let mut next = 1;
    while next <= SIM_SEEDS && started.elapsed() < SIM_BUDGET {
        let end = (next + jobs as u64).min(SIM_SEEDS + 1);
        let sw = shopstream_sim::sweep(next..end, &opts, jobs);
        t.seeds += sw.seeds;
        t.sim_ms += sw.sim_ms;
        t.orders += sw.orders;
        t.faults_injected += sw.faults_injected;
        t.invariant_checks += sw.invariant_checks;
        if let Some(r) = sw.failure {
            if let shopstream_sim::Outcome::Violated { invariant, detail } = r.outcome {
                t.violation = Some((r.seed, invariant.to_string(), detail));
            }
            break;
        }
        next = end;
    }
    t.real = started.elapsed();
    t
}

async fn simulation_step(out: &Printer) -> Result<((), Done), LabError> {
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    out.note(&format!(
        "seeds 1..={SIM_SEEDS} on {jobs} thread(s), all fault families, at most {} s",
        SIM_BUDGET.as_secs()
    ));
    // turmoil runs runtimes of its own: simulate on a plain thread.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(simulate(jobs));
    });
    let t = rx
        .await
        .map_err(|_| LabError::Failed("the simulation thread panicked".into()))?;
    let secs = t.real.as_secs_f64();
    let sim_s = t.sim_ms as f64 / 1000.0;
    out.note(&format!(
        "{} seeds: {} orders, {} faults injected, {} invariant checks; simulated {sim_s:.0} s in \
         {secs:.1} s real",
        t.seeds, t.orders, t.faults_injected, t.invariant_checks
    ));
    if let Some((seed, invariant, detail)) = &t.violation {
        return Err(LabError::Failed(format!(
            "VIOLATION at seed {seed}: {invariant}: {detail}; replay: shopstream sim --scenario \
             checkout --seed {seed} --faults all"
        )));
    }
    let numbers = vec![
        number("seeds", t.seeds as f64, ""),
        number("orders", t.orders as f64, ""),
        number("faults injected", t.faults_injected as f64, ""),
        number("invariant checks", t.invariant_checks as f64, ""),
        number("simulated time", sim_s.round(), "s"),
        number("real time", (secs * 10.0).round() / 10.0, "s"),
    ];
    let of = if t.seeds < SIM_SEEDS {
        format!(
            " (of {SIM_SEEDS}: the {} s budget ran out)",
            SIM_BUDGET.as_secs()
        )
    } else {
        String::new()
    };
    Ok((
        (),
        Done {
            result: format!(
                "{} seeds{of}, {} faults injected: every invariant held",
                t.seeds, t.faults_injected
            ),
            numbers,
        },
    ))
}

// ---- 7. a DSAR ------------------------------------------------------------------------------------

async fn dsar_step(
    out: &Printer,
    state_dir: &Path,
    demo_dir: &Path,
    user: &str,
) -> Result<((), Done), LabError> {
    std::fs::create_dir_all(demo_dir)
        .map_err(|e| LabError::Failed(format!("creating {}: {e}", demo_dir.display())))?;
    let cert = demo_dir.join(format!("dsar-{user}.jws"));
    let cert_arg = cert.display().to_string();
    let timeout = DSAR_TIMEOUT_S.to_string();
    out.note(&format!("shopstream dsar start {user} --kind erase"));
    let started = shopstream(
        state_dir,
        &[
            "dsar",
            "start",
            user,
            "--kind",
            "erase",
            "--requested-by",
            "shopstream demo",
            "--timeout-s",
            &timeout,
            "--certificate",
            &cert_arg,
            "--json",
        ],
        Duration::from_secs(DSAR_TIMEOUT_S + 10),
        None,
    )
    .await?;
    let d: Value = started.json("dsar start")?;
    if started.code != Some(0) || d["state"] != "completed" {
        return Err(LabError::Failed(format!(
            "the erasure ended {} (exit {}): {}",
            d["state"].as_str().unwrap_or("?"),
            started.code_text(),
            d["error"].as_str().unwrap_or(started.stderr.trim())
        )));
    }
    let stores = d["stores"].as_array().cloned().unwrap_or_default();
    let held: Vec<&Value> = stores
        .iter()
        .filter(|s| s["count"].as_u64().unwrap_or(0) > 0)
        .collect();
    let records: u64 = held.iter().filter_map(|s| s["count"].as_u64()).sum();
    for s in &held {
        out.note(&format!(
            "  {:<14} {:<28} {:>4}  {}",
            s["participant"].as_str().unwrap_or("?"),
            s["store"].as_str().unwrap_or("?"),
            s["count"].as_u64().unwrap_or(0),
            s["detail"].as_str().unwrap_or_default()
        ));
    }
    let checks = d["sweep"]["checks"].as_array().map_or(0, Vec::len);
    let clean = d["sweep"]["clean"].as_bool() == Some(true);
    let retained = d["retained"].as_array().cloned().unwrap_or_default();
    let took_ms =
        d["completed_at_ms"].as_i64().unwrap_or(0) - d["created_at_ms"].as_i64().unwrap_or(0);
    out.note(&format!(
        "sweep: {} ({checks} checks); audit record #{}",
        if clean { "clean" } else { "RESIDUE FOUND" },
        d["audit_seq"]
    ));
    for r in &retained {
        out.wrapped(
            &format!(
                "retained: {} {} ({}), kept {}: {}",
                r["count"].as_u64().unwrap_or(0),
                r["store"].as_str().unwrap_or("?"),
                r["fields_kept"].as_str().unwrap_or_default(),
                crate::dsar::retention(
                    u32::try_from(r["retain_days"].as_u64().unwrap_or(0)).unwrap_or(u32::MAX)
                ),
                r["basis"].as_str().unwrap_or_default()
            ),
            "    ",
        );
    }
    out.note(&format!(
        "shopstream dsar verify {cert_arg} --subject {user}"
    ));
    let verified = shopstream(
        state_dir,
        &["dsar", "verify", &cert_arg, "--subject", user, "--json"],
        Duration::from_secs(30),
        None,
    )
    .await?;
    let v: Value = verified.json("dsar verify")?;
    let vchecks = v["checks"].as_array().cloned().unwrap_or_default();
    for c in &vchecks {
        out.note(&format!(
            "  {} {:<22} {}",
            if c["ok"] == true { "PASS" } else { "FAIL" },
            c["name"].as_str().unwrap_or("?"),
            c["detail"].as_str().unwrap_or_default()
        ));
    }
    if verified.code != Some(0) || v["valid"] != true {
        return Err(LabError::Failed(format!(
            "the certificate did not verify (exit {})",
            verified.code_text()
        )));
    }
    Ok((
        (),
        Done {
            result: format!(
                "{records} records erased or anonymised in {} stores in {took_ms} ms; sweep \
                 clean; the certificate passes all {} checks",
                held.len(),
                vchecks.len()
            ),
            numbers: vec![
                number("records erased or anonymised", records as f64, ""),
                number("stores that held the shopper", held.len() as f64, ""),
                number("erasure took", took_ms as f64, "ms"),
                number("sweep checks", checks as f64, ""),
                number("certificate checks passed", vchecks.len() as f64, ""),
            ],
        },
    ))
}

// ---- 8. a flash sale ------------------------------------------------------------------------------

async fn flash_sale_step(
    out: &Printer,
    state_dir: &Path,
    interrupt: &CancellationToken,
) -> Result<((), Done), LabError> {
    let mut args = vec!["test"];
    args.extend_from_slice(FLASH_SALE_ARGS);
    args.push("--json");
    out.note(&format!("shopstream {}", args.join(" ")));
    let run = shopstream(state_dir, &args, FLASH_SALE_LIMIT, Some(interrupt)).await?;
    if run.code == Some(i32::from(exit::NOT_READY)) {
        return Err(LabError::NotReady(format!(
            "the flash sale found the system not up: {}",
            run.stderr.trim()
        )));
    }
    let r: Value = run.json("test --scenario flash-sale")?;
    let invariants = r["invariants"].as_array().cloned().unwrap_or_default();
    for i in &invariants {
        out.note(&format!(
            "{} {}",
            if i["pass"] == true { "PASS" } else { "FAIL" },
            i["name"].as_str().unwrap_or("?")
        ));
        out.wrapped(i["detail"].as_str().unwrap_or_default(), "           ");
    }
    let held = invariants.iter().filter(|i| i["pass"] == true).count();
    let statuses = |name: &str, status: &str| -> u64 {
        r["requests"]
            .as_array()
            .and_then(|rs| rs.iter().find(|q| q["name"] == name))
            .and_then(|q| q["statuses"][status].as_u64())
            .unwrap_or(0)
    };
    let (won, refused) = (
        statuses("POST reserve", "201"),
        statuses("POST reserve", "409"),
    );
    let orders = statuses("POST order", "201");
    let p99_ms = r["headline"]["p99_us"].as_f64().unwrap_or(0.0) / 1000.0;
    out.note(&format!(
        "reservations: {won} won, {refused} refused (409); {orders} orders placed; reservation \
         p99 {p99_ms:.0} ms"
    ));
    if run.code != Some(0) || held < invariants.len() || invariants.is_empty() {
        return Err(LabError::Failed(format!(
            "{held} of {} invariants hold (exit {})",
            invariants.len(),
            run.code_text()
        )));
    }
    Ok((
        (),
        Done {
            result: format!(
                "verdict PASS — {held} of {} invariants hold",
                invariants.len()
            ),
            numbers: vec![
                number("reservations won", won as f64, ""),
                number("reservations refused", refused as f64, ""),
                number("orders placed", orders as f64, ""),
                number("reservation p99", p99_ms.round(), "ms"),
                number("invariants held", held as f64, ""),
            ],
        },
    ))
}

// ---- child processes --------------------------------------------------------------------------------

/// What a `shopstream` child printed and how it ended.
struct Child {
    /// `None` when a signal ended it.
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Child {
    fn code_text(&self) -> String {
        self.code.map_or("by a signal".into(), |c| c.to_string())
    }

    fn json(&self, what: &str) -> Result<Value, LabError> {
        serde_json::from_str(&self.stdout).map_err(|e| {
            LabError::Failed(format!(
                "`shopstream {what}` printed no JSON ({e}; exit {}): {}",
                self.code_text(),
                self.stderr.trim()
            ))
        })
    }
}

/// Run this binary with `args` against the same stack, bounded by `limit`.
/// Without `interrupt` the child is killed past the limit (or when this
/// future is dropped): for children that only read. With it, the child winds
/// down instead, at the limit or on Ctrl-C: it gets SIGINT (a terminal sends
/// Ctrl-C to both; `kill -INT` of the demo reaches the demo alone) and
/// [`CHILD_GRACE`] to clean up before it is killed.
async fn shopstream(
    state_dir: &Path,
    args: &[&str],
    limit: Duration,
    interrupt: Option<&CancellationToken>,
) -> Result<Child, LabError> {
    let command = format!("shopstream {}", args.join(" "));
    let exe: PathBuf = std::env::current_exe()
        .map_err(|e| LabError::Failed(format!("finding this executable: {e}")))?;
    let child = tokio::process::Command::new(exe)
        .arg("--state-dir")
        .arg(state_dir)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| LabError::Failed(format!("running `{command}`: {e}")))?;
    let pid = child.id();
    let output = child.wait_with_output();
    tokio::pin!(output);
    let never = CancellationToken::new();
    let stop = interrupt.unwrap_or(&never);
    let finished = tokio::select! {
        r = tokio::time::timeout(limit, &mut output) => Some(r),
        _ = stop.cancelled() => None,
    };
    let why = match finished {
        Some(Ok(r)) => {
            let o = r.map_err(|e| LabError::Failed(format!("running `{command}`: {e}")))?;
            return Ok(Child {
                code: o.status.code(),
                stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            });
        }
        Some(Err(_)) => LabError::Failed(format!("`{command}` did not finish within {limit:?}")),
        None => LabError::Interrupted,
    };
    if let (Some(_), Some(pid)) = (interrupt, pid) {
        // As the scenario driver signals processes: kill(1).
        let _ = std::process::Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status();
        let _ = tokio::time::timeout(CHILD_GRACE, &mut output).await;
    }
    Err(why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_has_a_unique_name_and_short_narration() {
        let steps = [
            &STACK,
            &SEARCH,
            &ORDER,
            &PAYMENT_FAILURE,
            &REFUND,
            &SIMULATION,
            &DSAR,
            &FLASH_SALE,
        ];
        assert_eq!(steps.len(), STEPS);
        let mut names: Vec<_> = steps.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), STEPS);
        // A step's limits add up to more than the budget only as a safety
        // net: each one alone stays well under it.
        for s in steps {
            assert!(s.limit < BUDGET, "{}", s.name);
            assert!(s.narration.len() < 600, "{} narrates too much", s.name);
        }
        // A step that winds down on Ctrl-C must finish inside its limit, or
        // the limit would drop it halfway through undoing what it did.
        const { assert!(PAYMENT_FAILURE.winds_down && FLASH_SALE.winds_down) };
        assert!(LAB_DEADLINE + kit::CLEANUP_TIMEOUT < PAYMENT_FAILURE.limit);
        assert!(FLASH_SALE_LIMIT + CHILD_GRACE < FLASH_SALE.limit);
    }

    #[test]
    fn the_json_report_names_the_failed_step() {
        let report = TourReport {
            passed: false,
            outcome: Outcome::Failed,
            pace: Pace::Fast,
            failed_steps: vec!["refund"],
            elapsed_ms: 1,
            budget_ms: BUDGET.as_millis() as u64,
            steps: vec![StepReport {
                name: "refund",
                title: REFUND.title,
                outcome: Outcome::Failed,
                duration_ms: 1,
                numbers: vec![number("refunded", 5.0, "USD")],
                result: "no".into(),
            }],
        };
        let v = serde_json::to_value(&report).unwrap();
        assert_eq!(v["outcome"], "failed");
        assert_eq!(v["pace"], "fast");
        assert_eq!(v["failed_steps"][0], "refund");
        assert_eq!(v["steps"][0]["numbers"][0]["unit"], "USD");
        for key in [
            "name",
            "title",
            "outcome",
            "duration_ms",
            "numbers",
            "result",
        ] {
            assert!(v["steps"][0].get(key).is_some(), "missing {key}");
        }
    }
}
