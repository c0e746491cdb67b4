//! `bench --cpu`: what one completed unit of a target's load costs each
//! component of this machine's stack in CPU, and the rate the machine's
//! cores could sustain at that cost.
//!
//! Each component's process tree is read from /proc ([`CpuReading`]) over
//! the load and, after it, until the stack is quiet again: consumers still
//! working through the load's events belong to its cost. The rate at which
//! each component used CPU while idle, measured just before the load, is
//! subtracted, so the figures are the load's own.

use std::{collections::BTreeMap, time::Duration};

use serde::Serialize;
use shopstream_runtime::{Stack, process::CpuReading};

/// How long the idle rate is measured before the load.
const IDLE_WINDOW: Duration = Duration::from_secs(3);
/// After the load, the stack counts as quiet once its CPU over one second is
/// within this many cores of its idle rate.
const QUIET_CORES: f64 = 0.10;
/// The longest wait for the stack to become quiet after the load.
const SETTLE_MAX: Duration = Duration::from_secs(30);
/// The name the load generator's own CPU is reported under.
const BENCH: &str = "bench (this process)";

/// Readings taken before a target's load.
pub struct Meter {
    pids: Vec<(&'static str, u32)>,
    /// Each tree's idle CPU, in cores.
    idle: BTreeMap<&'static str, f64>,
    start: CpuReading,
}

/// One component's share of a unit's cost.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentCost {
    pub component: &'static str,
    pub cpu_ms_per_unit: f64,
}

/// What one completed unit of a target cost, in CPU.
#[derive(Debug, Clone, Serialize)]
pub struct Cost {
    pub target: String,
    /// What one unit is: an order, a login, a read.
    pub unit: &'static str,
    /// Completed units (successful requests or orders, the warm-up second's
    /// included) the cost is divided by.
    pub units: u64,
    /// Seconds from the end of the idle measurement to the last reading.
    pub window_s: f64,
    /// Of those, the seconds after the load until the stack was quiet.
    pub settle_s: f64,
    /// Whether the stack became quiet within the settle limit (30 s); if
    /// not, work the load caused may be missing from the figures.
    pub settled: bool,
    /// The stack's CPU before the load, in cores (subtracted from every figure).
    pub idle_cores: f64,
    /// The stack's components, most expensive first (the load generator not included).
    pub components: Vec<ComponentCost>,
    /// All components together.
    pub stack_cpu_ms_per_unit: f64,
    /// The load generator (this process), which shares the machine's cores.
    pub bench_cpu_ms_per_unit: f64,
    /// Cores this machine offers.
    pub cores: usize,
    /// Units per second that would keep every core busy at this cost,
    /// stack and load generator together. Measured at one rate: a component
    /// that polls while work flows costs less per unit at a higher rate, so
    /// this understates what the cores sustain when measured well below it.
    pub cpu_ceiling_per_s: f64,
}

impl Meter {
    /// Measure the stack's idle rate, then start counting. `None` when no
    /// component of this machine's stack is running.
    pub async fn start(stack: &Stack) -> Option<Meter> {
        let mut pids = stack.running_pids();
        if pids.is_empty() {
            return None;
        }
        pids.push((BENCH, std::process::id()));
        let before = CpuReading::of(&pids);
        tokio::time::sleep(IDLE_WINDOW).await;
        let start = CpuReading::of(&pids);
        let elapsed = start.elapsed_since(&before).as_secs_f64().max(1e-3);
        let idle = start
            .since(&before)
            .into_iter()
            .map(|(name, s)| (name, s / elapsed))
            .collect();
        Some(Meter { pids, idle, start })
    }

    /// The stack's idle rate, in cores (the load generator not counted).
    fn idle_cores(&self) -> f64 {
        self.idle
            .iter()
            .filter(|(n, _)| **n != BENCH)
            .map(|(_, c)| c)
            .sum()
    }

    /// Wait for the stack to become quiet, then divide what each component
    /// used since [`Meter::start`] by `units`.
    pub async fn finish(self, target: &str, unit: &'static str, units: u64) -> Cost {
        let load_end = CpuReading::of(&self.pids);
        let idle = self.idle_cores();
        let mut last = load_end.clone();
        let settled = loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = CpuReading::of(&self.pids);
            let busy = stack_cores(&now, &last) - idle;
            last = now;
            if busy < QUIET_CORES {
                break true;
            }
            if last.elapsed_since(&load_end) >= SETTLE_MAX {
                break false;
            }
        };
        let window = last.elapsed_since(&self.start).as_secs_f64();
        let used = last.since(&self.start);
        let per_unit = |name: &'static str, s: f64| {
            let own = (s - self.idle.get(name).copied().unwrap_or(0.0) * window).max(0.0);
            own * 1000.0 / units.max(1) as f64
        };
        let mut components: Vec<ComponentCost> = used
            .iter()
            .filter(|(n, _)| **n != BENCH)
            .map(|(&n, &s)| ComponentCost {
                component: n,
                cpu_ms_per_unit: per_unit(n, s),
            })
            .collect();
        components.sort_by(|a, b| b.cpu_ms_per_unit.total_cmp(&a.cpu_ms_per_unit));
        let stack_ms: f64 = components.iter().map(|c| c.cpu_ms_per_unit).sum();
        let bench_ms = used.get(BENCH).map_or(0.0, |&s| per_unit(BENCH, s));
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let total = stack_ms + bench_ms;
        Cost {
            target: target.to_string(),
            unit,
            units,
            window_s: window,
            settle_s: last.elapsed_since(&load_end).as_secs_f64(),
            settled,
            idle_cores: idle,
            components,
            stack_cpu_ms_per_unit: stack_ms,
            bench_cpu_ms_per_unit: bench_ms,
            cores,
            cpu_ceiling_per_s: if total > 0.0 {
                cores as f64 * 1000.0 / total
            } else {
                f64::INFINITY
            },
        }
    }
}

/// `--cpu`: the costs of the targets measured so far; without `--cpu`
/// (no stack), loads run unmeasured.
pub struct Costs {
    stack: Option<Stack>,
    pub list: Vec<Cost>,
}

impl Costs {
    pub fn new(stack: Option<Stack>) -> Costs {
        Costs {
            stack,
            list: Vec::new(),
        }
    }

    /// Run `load` (not yet started), measuring what each of its completed
    /// `unit`s cost when `--cpu` was given. `Err`: the exit code when no
    /// component of the stack is running.
    pub async fn around(
        &mut self,
        unit: &'static str,
        load: impl std::future::Future<Output = crate::bench::Report>,
    ) -> Result<crate::bench::Report, u8> {
        let Some(stack) = &self.stack else {
            return Ok(load.await);
        };
        let Some(meter) = Meter::start(stack).await else {
            eprintln!(
                "error: --cpu found no running component of this machine's stack: start it (shopstream up)"
            );
            return Err(crate::exit::NOT_READY);
        };
        let report = load.await;
        self.list.push(
            meter
                .finish(&report.target, unit, report.ok + report.ok_in_warmup)
                .await,
        );
        Ok(report)
    }
}

/// The stack's CPU between two readings, in cores (the load generator not counted).
fn stack_cores(now: &CpuReading, earlier: &CpuReading) -> f64 {
    let elapsed = now.elapsed_since(earlier).as_secs_f64().max(1e-3);
    now.since(earlier)
        .iter()
        .filter(|(n, _)| **n != BENCH)
        .map(|(_, s)| s)
        .sum::<f64>()
        / elapsed
}

/// The cost as a table and two sentences.
pub fn print(c: &Cost) {
    let unit = c.unit;
    println!(
        "{}: CPU per {unit}, {} {unit}s completed; counted over {:.1} s, the last {:.1} s after the load {}; the stack's idle rate before the load ({:.1} % of a core) subtracted",
        c.target,
        c.units,
        c.window_s,
        c.settle_s,
        if c.settled {
            "until the stack was quiet"
        } else {
            "(the stack was still busy when the wait ended: work may be missing)"
        },
        c.idle_cores * 100.0
    );
    let share = |ms: f64| {
        if c.stack_cpu_ms_per_unit > 0.0 {
            format!("{:.1} %", 100.0 * ms / c.stack_cpu_ms_per_unit)
        } else {
            "-".to_string()
        }
    };
    let mut rows: Vec<Vec<String>> = c
        .components
        .iter()
        .filter(|x| x.cpu_ms_per_unit >= 0.05)
        .map(|x| {
            vec![
                x.component.to_string(),
                format!("{:.2}", x.cpu_ms_per_unit),
                share(x.cpu_ms_per_unit),
            ]
        })
        .collect();
    rows.push(vec![
        "stack".to_string(),
        format!("{:.2}", c.stack_cpu_ms_per_unit),
        share(c.stack_cpu_ms_per_unit),
    ]);
    rows.push(vec![
        BENCH.to_string(),
        format!("{:.2}", c.bench_cpu_ms_per_unit),
        String::new(),
    ]);
    print!(
        "{}",
        crate::table::render(
            &["component", &format!("CPU ms per {unit}"), "of the stack"],
            &rows
        )
    );
    println!(
        "CPU ceiling at this rate's cost: {} cores / {:.1} ms per {unit} = {:.1} {unit}s/s with every core busy. A component that polls while work flows (the broker answering awake consumers) costs less per {unit} at higher rates, so measure near the rate you care about",
        c.cores,
        c.stack_cpu_ms_per_unit + c.bench_cpu_ms_per_unit,
        c.cpu_ceiling_per_s
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(at: std::time::Instant, v: &[(&'static str, f64)]) -> CpuReading {
        CpuReading {
            at,
            seconds: v.iter().copied().collect(),
        }
    }

    #[test]
    fn stack_cores_leaves_the_load_generator_out() {
        let t0 = std::time::Instant::now();
        let t1 = t0 + Duration::from_secs(2);
        let a = reading(t0, &[("orders", 1.0), (BENCH, 5.0)]);
        let b = reading(t1, &[("orders", 2.0), (BENCH, 9.0)]);
        assert!((stack_cores(&b, &a) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn a_restarted_component_counts_nothing_rather_than_a_negative() {
        let t0 = std::time::Instant::now();
        let a = reading(t0, &[("orders", 10.0)]);
        let b = reading(t0 + Duration::from_secs(1), &[("orders", 0.2)]);
        assert_eq!(b.since(&a)["orders"], 0.0);
    }
}
