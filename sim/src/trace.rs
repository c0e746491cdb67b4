//! The seeded randomness, the simulated clock, and the event trace whose
//! hash proves a replay identical.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicI64, Ordering},
};

use shopstream_platform::clock::Clock;

/// SplitMix64: small, fast and identical on every platform.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5EED_0FC0_FFEE)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.range(0, xs.len() as u64 - 1) as usize]
    }
}

/// An `Rng` shared by the tasks of one host (or by the harness).
#[derive(Debug, Clone)]
pub struct SharedRng(Arc<Mutex<Rng>>);

impl SharedRng {
    pub fn new(seed: u64) -> SharedRng {
        SharedRng(Arc::new(Mutex::new(Rng::new(seed))))
    }
    pub fn with<T>(&self, f: impl FnOnce(&mut Rng) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Simulated time (`turmoil::since_epoch`) plus a skew the faults set.
#[derive(Debug, Clone, Default)]
pub struct SimClock {
    skew_ms: Arc<AtomicI64>,
}

impl SimClock {
    pub fn set_skew_ms(&self, skew_ms: i64) {
        self.skew_ms.store(skew_ms, Ordering::SeqCst);
    }
    pub fn skew_ms(&self) -> i64 {
        self.skew_ms.load(Ordering::SeqCst)
    }
}

/// Milliseconds of simulated time since the simulation began (0 outside a host).
pub fn sim_ms() -> i64 {
    turmoil::sim_elapsed().map_or(0, |d| d.as_millis() as i64)
}

impl Clock for SimClock {
    fn now_ms(&self) -> i64 {
        turmoil::since_epoch().map_or(0, |d| d.as_millis() as i64) + self.skew_ms()
    }
}

/// One line of the trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub at_ms: i64,
    pub who: &'static str,
    pub what: String,
}

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>6}.{:03}s {:<9} {}",
            self.at_ms / 1000,
            self.at_ms % 1000,
            self.who,
            self.what
        )
    }
}

/// The readable event trace of one seed; shared by every host.
#[derive(Debug, Clone, Default)]
pub struct Trace(Arc<Mutex<Vec<Line>>>);

impl Trace {
    /// Record at the current simulated time (inside a host).
    pub fn log(&self, who: &'static str, what: impl Into<String>) {
        self.log_at(sim_ms(), who, what);
    }

    pub fn log_at(&self, at_ms: i64, who: &'static str, what: impl Into<String>) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(Line {
            at_ms,
            who,
            what: what.into(),
        });
    }

    pub fn lines(&self) -> Vec<Line> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// FNV-1a 64 over every line: equal hashes mean identical runs.
    pub fn hash(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for l in self.lines() {
            for b in l.to_string().bytes().chain(std::iter::once(b'\n')) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        h
    }
}
