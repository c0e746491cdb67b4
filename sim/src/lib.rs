//! Deterministic simulation of checkout (turmoil). orders, inventory,
//! payments and stripe-sim run their real gRPC/HTTP APIs and use cases as
//! turmoil hosts over their in-memory adapters; a saga worker on the orders
//! host drives the orders domain's `Saga` with Temporal's delivery semantics
//! (`saga_worker`); a shopper client places orders; faults come from the seed;
//! invariants are checked as the run goes and at quiescence. One seed gives
//! one trace, and its hash proves a replay identical. See `README.md`.

mod bug_zoo;
pub mod checkout;
pub mod net;
pub mod saga_worker;
pub mod stripe_http;
pub mod trace;

use std::collections::BTreeSet;

pub use checkout::{Outcome, Report, run_seed};

/// Fault families a run may inject (all drawn from the seed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// Partitions between two hosts, repaired later.
    Partition,
    /// Bursts of dropped segments on one link (short partitions).
    Loss,
    /// Raised message latency on the whole network.
    Latency,
    /// A host crashes and restarts (persisted state survives).
    Crash,
    /// A host's clock runs ahead or behind.
    Skew,
    /// Webhooks duplicated, reordered, late or lost.
    Webhook,
    /// An activity's result is lost after it ran (it runs again).
    LostResult,
    /// stripe-sim's own fault injection: the next create/capture/cancel/
    /// refund answers 5xx, before or after taking effect.
    Provider,
}

impl Fault {
    pub const ALL: [Fault; 8] = [
        Fault::Partition,
        Fault::Loss,
        Fault::Latency,
        Fault::Crash,
        Fault::Skew,
        Fault::Webhook,
        Fault::LostResult,
        Fault::Provider,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Partition => "partition",
            Fault::Loss => "loss",
            Fault::Latency => "latency",
            Fault::Crash => "crash",
            Fault::Skew => "skew",
            Fault::Webhook => "webhook",
            Fault::LostResult => "lost-result",
            Fault::Provider => "provider",
        }
    }

    /// `all`, `none`, or a comma-separated list of names.
    pub fn parse_list(s: &str) -> Result<BTreeSet<Fault>, String> {
        match s.trim() {
            "all" => return Ok(Fault::ALL.into_iter().collect()),
            "none" | "" => return Ok(BTreeSet::new()),
            _ => {}
        }
        s.split(',')
            .map(|n| {
                let n = n.trim();
                Fault::ALL
                    .into_iter()
                    .find(|f| f.as_str() == n)
                    .ok_or_else(|| {
                        format!(
                            "unknown fault {n:?}; known: all, none, {}",
                            Fault::ALL.map(Fault::as_str).join(", ")
                        )
                    })
            })
            .collect()
    }
}

/// Whether this build can plant a [`Bug`]: with the `bug-zoo` feature, and
/// in this crate's own unit tests (so the suite checks the zoo without a
/// second build of the workspace under other features; no other crate, and
/// no shipped binary, sees `cfg(test)` here).
pub(crate) const ZOO: bool = cfg!(any(feature = "bug-zoo", test));

/// The bug zoo: deliberately broken variants the simulation must catch.
/// Selectable only when the crate is built with the `bug-zoo` feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Bug {
    /// Inventory's reserve forgets its per-order idempotency: a retried
    /// reserve holds stock a second time.
    ReserveNoIdempotency,
    /// The saga's release compensation reports success without releasing.
    ReleaseForgotten,
    /// Compensations get the forward steps' 3 attempts, then count as done.
    CompensationGivesUp,
    /// The order store ignores the Idempotency-Key: a duplicate submit
    /// creates a second order.
    OrderKeyIgnored,
    /// payments creates intents with a fresh Stripe idempotency key per
    /// call: a create whose answer was lost authorizes a second time.
    AuthorizeNoKey,
    /// The order store never finds a recorded step: a workflow task
    /// replayed after a crash runs its steps again instead of taking them
    /// from the order's log (steps are local activities, ADR 0004).
    DecisionLogIgnored,
}

impl Bug {
    pub const ALL: [Bug; 6] = [
        Bug::ReserveNoIdempotency,
        Bug::ReleaseForgotten,
        Bug::CompensationGivesUp,
        Bug::OrderKeyIgnored,
        Bug::AuthorizeNoKey,
        Bug::DecisionLogIgnored,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Bug::ReserveNoIdempotency => "reserve-no-idempotency",
            Bug::ReleaseForgotten => "release-forgotten",
            Bug::CompensationGivesUp => "compensation-gives-up",
            Bug::OrderKeyIgnored => "order-key-ignored",
            Bug::AuthorizeNoKey => "authorize-no-key",
            Bug::DecisionLogIgnored => "decision-log-ignored",
        }
    }

    /// A bug by name; refused unless built with `--features bug-zoo`.
    pub fn parse(s: &str) -> Result<Bug, String> {
        if !ZOO {
            return Err("the bug zoo is not compiled in: build with --features bug-zoo".into());
        }
        Bug::ALL
            .into_iter()
            .find(|b| b.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown bug {s:?}; known: {}",
                    Bug::ALL.map(Bug::as_str).join(", ")
                )
            })
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub faults: BTreeSet<Fault>,
    pub bug: Option<Bug>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            faults: Fault::ALL.into_iter().collect(),
            bug: None,
        }
    }
}

impl Options {
    pub fn has(&self, f: Fault) -> bool {
        self.faults.contains(&f)
    }
    pub(crate) fn bug_on(&self, b: Bug) -> bool {
        ZOO && self.bug == Some(b)
    }
}

/// What a run of many seeds came to.
#[derive(Debug)]
pub struct Sweep {
    /// Seeds that ran to the end.
    pub seeds: u64,
    pub sim_ms: i64,
    pub real: std::time::Duration,
    pub jobs: usize,
    pub faults_injected: usize,
    pub invariant_checks: u64,
    pub orders: usize,
    /// The lowest failing seed seen (a sweep stops taking seeds after one).
    pub failure: Option<Report>,
    /// The report itself when the sweep was of one seed.
    pub single: Option<Report>,
}

/// Run `seeds` on `jobs` threads (one simulation per thread at a time; each
/// seed is deterministic on its own, whatever thread runs it). Stops taking
/// new seeds once one fails.
pub fn sweep(seeds: std::ops::Range<u64>, opts: &Options, jobs: usize) -> Sweep {
    sweep_counting(seeds, opts, jobs, &std::sync::atomic::AtomicU64::new(0))
}

/// [`sweep`], counting finished seeds in `done` as it goes (for progress).
pub fn sweep_counting(
    seeds: std::ops::Range<u64>,
    opts: &Options,
    jobs: usize,
    done: &std::sync::atomic::AtomicU64,
) -> Sweep {
    use std::sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    };
    let started = std::time::Instant::now();
    let n = seeds.end.saturating_sub(seeds.start);
    let one = n == 1;
    let jobs = jobs.clamp(1, usize::try_from(n).unwrap_or(usize::MAX).max(1));
    let next = AtomicU64::new(seeds.start);
    let acc = Mutex::new(Sweep {
        seeds: 0,
        sim_ms: 0,
        real: std::time::Duration::ZERO,
        jobs,
        faults_injected: 0,
        invariant_checks: 0,
        orders: 0,
        failure: None,
        single: None,
    });
    let lock = || acc.lock().unwrap_or_else(|p| p.into_inner());
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::SeqCst);
                    if seed >= seeds.end || lock().failure.is_some() {
                        return;
                    }
                    let r = run_seed(seed, opts);
                    done.fetch_add(1, Ordering::Relaxed);
                    let mut a = lock();
                    a.seeds += 1;
                    a.sim_ms += r.sim_ms;
                    a.faults_injected += r.faults_injected;
                    a.invariant_checks += r.invariant_checks;
                    a.orders += r.orders;
                    if r.outcome != Outcome::Held
                        && a.failure.as_ref().is_none_or(|f| f.seed > r.seed)
                    {
                        a.failure = Some(r.clone());
                    }
                    if one {
                        a.single = Some(r);
                    }
                }
            });
        }
    });
    let mut out = acc.into_inner().unwrap_or_else(|p| p.into_inner());
    out.real = started.elapsed();
    out
}

#[cfg(test)]
mod zoo_tests {
    use super::*;

    /// Every deliberately broken variant is caught within 1,000 seeds (run
    /// by `cargo test --workspace`: see [`ZOO`]).
    #[test]
    fn every_zoo_bug_is_caught_within_1000_seeds() {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut missed = Vec::new();
        for bug in Bug::ALL {
            let opts = Options {
                bug: Some(bug),
                ..Options::default()
            };
            match sweep(1..1001, &opts, threads).failure {
                Some(r) => {
                    let Outcome::Violated { invariant, .. } = &r.outcome else {
                        unreachable!("a sweep's failure is a violation")
                    };
                    eprintln!("{}: seed {} ({invariant})", bug.as_str(), r.seed);
                }
                None => missed.push(bug.as_str()),
            }
        }
        assert!(
            missed.is_empty(),
            "not caught within 1000 seeds: {missed:?}"
        );
    }
}
