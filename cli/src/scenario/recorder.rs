//! Our own measurements beside Goose's: every request into a per-second
//! bucket (count, errors, latency in µs), and the scenario's headline figure
//! into a microsecond histogram, each timed from the moment the journey
//! meant to start it (Goose's own figures are whole milliseconds).

use std::{sync::Mutex, time::Instant};

use hdrhistogram::Histogram;

use super::report::{Headline, Second};

/// Longest latency recorded (anything slower is clamped): 120 s.
const MAX_US: u64 = 120_000_000;

pub struct Recorder {
    t0: Instant,
    inner: Mutex<Inner>,
}

struct Inner {
    seconds: Vec<(u64, u64, Histogram<u64>)>,
    headline: Histogram<u64>,
    /// The headline per second of its end.
    headline_seconds: Vec<Histogram<u64>>,
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds")
}

impl Recorder {
    pub fn new(t0: Instant) -> Recorder {
        Recorder {
            t0,
            inner: Mutex::new(Inner {
                seconds: Vec::new(),
                headline: hist(),
                headline_seconds: Vec::new(),
            }),
        }
    }

    /// One request that started at `started` and ended now.
    pub fn request(&self, started: Instant, ok: bool) {
        let us = (started.elapsed().as_micros() as u64).clamp(1, MAX_US);
        let sec = started.saturating_duration_since(self.t0).as_secs() as usize;
        let Ok(mut g) = self.inner.lock() else {
            return;
        };
        while g.seconds.len() <= sec {
            g.seconds.push((0, 0, hist()));
        }
        let b = &mut g.seconds[sec];
        b.0 += 1;
        if !ok {
            b.1 += 1;
        }
        let _ = b.2.record(us);
    }

    /// The headline figure of one journey, `us` long.
    pub fn headline(&self, us: u64) {
        let sec = self.t0.elapsed().as_secs() as usize;
        if let Ok(mut g) = self.inner.lock() {
            let _ = g.headline.record(us.clamp(1, MAX_US));
            while g.headline_seconds.len() <= sec {
                g.headline_seconds.push(hist());
            }
            let _ = g.headline_seconds[sec].record(us.clamp(1, MAX_US));
        }
    }

    /// Per second: (headline figures that ended in it, their p95 in µs).
    pub fn headline_seconds(&self) -> Vec<(u64, u64)> {
        let Ok(g) = self.inner.lock() else {
            return Vec::new();
        };
        g.headline_seconds
            .iter()
            .map(|h| {
                (
                    h.len(),
                    if !h.is_empty() {
                        h.value_at_quantile(0.95)
                    } else {
                        0
                    },
                )
            })
            .collect()
    }

    pub fn seconds(&self) -> Vec<Second> {
        let Ok(g) = self.inner.lock() else {
            return Vec::new();
        };
        g.seconds
            .iter()
            .enumerate()
            .map(|(t, (n, e, h))| Second {
                t: t as u32,
                requests: *n,
                errors: *e,
                p50_us: if *n > 0 { h.value_at_quantile(0.50) } else { 0 },
                p99_us: if *n > 0 { h.value_at_quantile(0.99) } else { 0 },
            })
            .collect()
    }

    pub fn headline_summary(&self, name: &str, over_s: f64) -> Option<Headline> {
        let g = self.inner.lock().ok()?;
        let h = &g.headline;
        (!h.is_empty()).then(|| Headline {
            name: name.to_string(),
            count: h.len(),
            rate_per_s: h.len() as f64 / over_s.max(1e-9),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
        })
    }
}
