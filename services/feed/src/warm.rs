//! The cache warmer. A page served from Postgres because Redis had no slice
//! (a flush, a failover, an eviction) puts that one slice back; without more,
//! the hit rate would recover only as fast as each reader comes back. So the
//! feed remembers its recent readers (a bounded set), and a fallback wakes
//! the warmer: it checks which of them Redis lacks and copies their slices
//! from Postgres, a few at a time, at most once per cooldown.

use std::{
    collections::{HashSet, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use prometheus_client::metrics::counter::Counter;
use shopstream_platform::{metrics::Metrics, shutdown::sleep_or_stop};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::slices::Slices;

/// Readers remembered (the most recent ones).
pub const RECENT_READERS: usize = 20_000;
/// Least time between two warm-ups.
pub const COOLDOWN: Duration = Duration::from_secs(5);
/// Readers checked against Redis per round trip.
const CHECK_BATCH: usize = 500;
/// Slices copied at once.
const COPY_CONCURRENCY: usize = 8;

type Reader = (String, String);

pub struct Warmer {
    recent: Mutex<(VecDeque<Reader>, HashSet<Reader>)>,
    /// Readers a DSAR erased: a warm-up under way does not copy theirs back.
    gone: Mutex<HashSet<Reader>>,
    wake: Notify,
    warmed: Counter,
}

impl Warmer {
    pub fn new(metrics: &Metrics) -> Arc<Warmer> {
        let warmed = Counter::default();
        metrics.register(
            "feed_slices_rewarmed",
            "Slices the warmer copied from Postgres back into Redis",
            warmed.clone(),
        );
        Arc::new(Warmer {
            recent: Mutex::new((VecDeque::new(), HashSet::new())),
            gone: Mutex::new(HashSet::new()),
            wake: Notify::new(),
            warmed,
        })
    }

    /// `user` of `tenant` read a page.
    pub fn seen(&self, tenant: &str, user: &str) {
        let mut r = self.recent.lock().expect("not poisoned");
        let key = (tenant.to_string(), user.to_string());
        if r.1.contains(&key) {
            return;
        }
        r.0.push_back(key.clone());
        r.1.insert(key);
        while r.0.len() > RECENT_READERS {
            if let Some(old) = r.0.pop_front() {
                r.1.remove(&old);
            }
        }
    }

    /// Drop `user` of `tenant` from the recent readers (a DSAR erase: the
    /// warmer has no slice of theirs to copy back, and keeps no id of them).
    pub fn forget(&self, tenant: &str, user: &str) {
        let mut r = self.recent.lock().expect("not poisoned");
        let key = (tenant.to_string(), user.to_string());
        if r.1.remove(&key) {
            r.0.retain(|k| *k != key);
        }
        self.gone.lock().expect("not poisoned").insert(key);
    }

    /// Whether a DSAR erased `user` of `tenant` (see [`Warmer::forget`]).
    pub fn forgotten(&self, tenant: &str, user: &str) -> bool {
        self.gone
            .lock()
            .expect("not poisoned")
            .contains(&(tenant.to_string(), user.to_string()))
    }

    /// Redis missed a slice that Postgres had.
    pub fn missed(&self) {
        self.wake.notify_one();
    }

    fn readers(&self) -> Vec<Reader> {
        self.recent
            .lock()
            .expect("not poisoned")
            .0
            .iter()
            .rev()
            .cloned()
            .collect()
    }

    /// Copy every recent reader's slice that Redis lacks; returns how many.
    pub async fn warm(&self, slices: &Slices) -> usize {
        let mut copied = 0;
        for batch in self.readers().chunks(CHECK_BATCH) {
            let present = match slices.present(batch).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(error = %e, "warmer: redis unavailable");
                    return copied;
                }
            };
            let missing: Vec<&Reader> = batch
                .iter()
                .zip(present)
                .filter(|(_, p)| !p)
                .map(|(r, _)| r)
                .collect();
            copied += futures::stream::iter(missing)
                .map(|(t, u)| async move {
                    let gone = || self.forgotten(t, u);
                    match slices.full_pg(t, u).await {
                        Ok(Some(s)) => slices
                            .write_redis_unless(t, u, &s.cards, s.computed_ms, &gone)
                            .await
                            .unwrap_or(false),
                        _ => false,
                    }
                })
                .buffer_unordered(COPY_CONCURRENCY)
                .filter(|ok| std::future::ready(*ok))
                .count()
                .await;
        }
        self.warmed.inc_by(copied as u64);
        copied
    }

    /// Warm on every wake-up, at most once per [`COOLDOWN`], until `stop`.
    pub async fn run(self: Arc<Warmer>, slices: Slices, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.wake.notified() => {}
            }
            let n = self.warm(&slices).await;
            if n > 0 {
                tracing::info!(slices = n, "warmer put slices back into redis");
            }
            if !sleep_or_stop(&stop, COOLDOWN).await {
                return;
            }
        }
    }
}
