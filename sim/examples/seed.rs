//! Run seeds of the checkout simulation without the CLI:
//! `cargo run -p shopstream-sim --example seed -- FIRST [COUNT] [--trace]`.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let first: u64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(1);
    let count: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let show = args.iter().any(|a| a == "--trace");
    let bug = std::env::var("SIM_BUG")
        .ok()
        .map(|b| shopstream_sim::Bug::parse(&b).expect("bug"));
    let opts = shopstream_sim::Options {
        bug,
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let mut sim_ms = 0;
    for seed in first..first + count {
        let r = shopstream_sim::run_seed(seed, &opts);
        sim_ms += r.sim_ms;
        if show {
            for l in &r.trace {
                println!("{l}");
            }
        }
        println!(
            "seed {seed}: {:?} orders={} faults={} checks={} sim={}ms real={:?} hash={:016x}",
            r.outcome,
            r.orders,
            r.faults_injected,
            r.invariant_checks,
            r.sim_ms,
            r.real,
            r.trace_hash
        );
    }
    let s = started.elapsed().as_secs_f64();
    println!(
        "{count} seeds in {s:.2}s: {:.2} seeds/s, sim:real {:.0}x",
        count as f64 / s,
        sim_ms as f64 / 1000.0 / s
    );
}
