//! The checkout simulation in CI (one test binary): many seeds with every
//! fault hold every invariant on the healthy build; one seed replays to the
//! same trace hash; with `--features bug-zoo`, every zoo bug is caught
//! within 1,000 seeds. Every failure prints its seed and replay command.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Instant,
};

use shopstream_sim::{Options, Outcome, Report, run_seed};

/// Seeds of the healthy run (`SHOPSTREAM_SIM_SEEDS` overrides).
const HEALTHY_SEEDS: u64 = 500;

fn threads() -> u64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u64)
}

fn describe(r: &Report) -> String {
    let trace: Vec<String> = r.trace.iter().map(|l| l.to_string()).collect();
    format!(
        "seed {} violated {:?}\n{}\nreplay: shopstream sim --scenario checkout --seed {}",
        r.seed,
        r.outcome,
        trace.join("\n"),
        r.seed
    )
}

/// Run `seeds` over all cores; the first violation, if any.
fn sweep(seeds: std::ops::Range<u64>, opts: &Options) -> Option<Report> {
    let next = AtomicU64::new(seeds.start);
    let found = std::sync::Mutex::new(None::<Report>);
    std::thread::scope(|s| {
        for _ in 0..threads() {
            s.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::SeqCst);
                    if seed >= seeds.end || found.lock().unwrap().is_some() {
                        return;
                    }
                    let r = run_seed(seed, opts);
                    if r.outcome != Outcome::Held {
                        let mut f = found.lock().unwrap();
                        if f.as_ref().is_none_or(|x| x.seed > r.seed) {
                            *f = Some(r);
                        }
                    }
                }
            });
        }
    });
    found.into_inner().unwrap()
}

#[test]
fn healthy_checkout_holds_every_invariant_under_faults() {
    let n = std::env::var("SHOPSTREAM_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(HEALTHY_SEEDS);
    let started = Instant::now();
    let failed = sweep(1..n + 1, &Options::default());
    eprintln!(
        "{n} seeds in {:.1} s on {} thread(s)",
        started.elapsed().as_secs_f64(),
        threads()
    );
    if let Some(r) = failed {
        panic!("{}", describe(&r));
    }
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    for seed in [3, 42] {
        let a = run_seed(seed, &Options::default());
        let b = run_seed(seed, &Options::default());
        assert_eq!(a.trace, b.trace, "seed {seed} diverged");
        assert_eq!(a.trace_hash, b.trace_hash, "seed {seed}");
        assert!(a.trace.len() > 20, "seed {seed} traced too little");
    }
}

#[cfg(feature = "bug-zoo")]
#[test]
fn every_zoo_bug_is_caught_within_1000_seeds() {
    use shopstream_sim::Bug;
    let mut missed = Vec::new();
    for bug in Bug::ALL {
        let opts = Options {
            bug: Some(bug),
            ..Options::default()
        };
        match sweep(1..1001, &opts) {
            Some(r) => {
                let Outcome::Violated { invariant, .. } = &r.outcome else {
                    unreachable!()
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
