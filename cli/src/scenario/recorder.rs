//! Our own measurements beside Goose's: every request into a per-second
//! bucket (count, errors, latency in µs), and the scenario's headline figure
//! into a microsecond histogram, each timed from the moment the journey
//! meant to start it (Goose's own figures are whole milliseconds).

use std::{sync::Mutex, time::Instant};

use hdrhistogram::Histogram;

use super::report::{Headline, Second};

/// Longest latency recorded (anything slower is clamped): 120 s.
const MAX_US: u64 = 120_000_000;

/// A window of [`Recorder::headline_windows`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Its first second, from the start of the run.
    pub t: u64,
    /// Seconds it spans.
    pub width: u64,
    /// Headline figures started in it.
    pub count: u64,
    /// Their p95, µs (0 when none).
    pub p95_us: u64,
}

fn windows(seconds: &[Histogram<u64>], width: usize) -> Vec<Window> {
    let width = width.max(1);
    (0..seconds.len().saturating_sub(width - 1))
        .map(|t| {
            let mut h = hist();
            for s in &seconds[t..t + width] {
                let _ = h.add(s);
            }
            Window {
                t: t as u64,
                width: width as u64,
                count: h.len(),
                p95_us: if h.is_empty() {
                    0
                } else {
                    h.value_at_quantile(0.95)
                },
            }
        })
        .collect()
}

pub struct Recorder {
    t0: Instant,
    inner: Mutex<Inner>,
}

struct Inner {
    seconds: Vec<(u64, u64, Histogram<u64>)>,
    headline: Histogram<u64>,
    /// The headline per second in which its journey was meant to start
    /// (only for figures recorded with [`Recorder::headline_from`]).
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
        if let Ok(mut g) = self.inner.lock() {
            let _ = g.headline.record(us.clamp(1, MAX_US));
        }
    }

    /// The headline figure of one journey meant to start at `started`, `us`
    /// long, also kept by the second of `started`: a rate is then the
    /// journeys started in a second (what was offered), not those that
    /// happened to end in it.
    pub fn headline_from(&self, started: Instant, us: u64) {
        let us = us.clamp(1, MAX_US);
        let sec = started.saturating_duration_since(self.t0).as_secs() as usize;
        if let Ok(mut g) = self.inner.lock() {
            let _ = g.headline.record(us);
            while g.headline_seconds.len() <= sec {
                g.headline_seconds.push(hist());
            }
            let _ = g.headline_seconds[sec].record(us);
        }
    }

    /// Windows of `width` seconds, one starting at every second: (the
    /// window's first second, headline figures started in it, their p95 in
    /// µs).
    pub fn headline_windows(&self, width: usize) -> Vec<Window> {
        let Ok(g) = self.inner.lock() else {
            return Vec::new();
        };
        windows(&g.headline_seconds, width)
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn headline_windows_count_journeys_by_the_second_they_were_meant_to_start() {
        let t0 = Instant::now();
        let rec = Recorder::new(t0);
        let at = |s: u64| t0 + Duration::from_millis(s * 1000 + 500);
        // Second 0: two quick ones; second 1: one slow; second 3: one.
        rec.headline_from(at(0), 1_000);
        rec.headline_from(at(0), 2_000);
        rec.headline_from(at(1), 900_000);
        rec.headline_from(at(3), 5_000);
        // Not kept by second: counts in the summary only.
        rec.headline(7_000);
        let w = rec.headline_windows(2);
        let counts: Vec<(u64, u64)> = w.iter().map(|w| (w.t, w.count)).collect();
        assert_eq!(counts, [(0, 3), (1, 1), (2, 1)]);
        assert!(w[0].p95_us >= 899_000, "{:?}", w[0]);
        assert_eq!((w[1].width, w[2].p95_us / 1000), (2, 5));
        assert_eq!(rec.headline_summary("x", 1.0).map(|h| h.count), Some(5));
        // A window wider than the run: none.
        assert!(rec.headline_windows(9).is_empty());
    }
}
