//! The feature state every part of the feed shares: the job writes it, the
//! materializer and the API read it. One lock per process; a slice is
//! computed in well under a millisecond, so it is held briefly.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
};

use crate::domain::features::{Feature, PersonFeatures, Signal, TenantFeatures, Touched, Weights};

/// One tenant's features behind a lock of its own, so a big tenant's work
/// (recomputing its ranking over 50,000 items) never stalls another's.
type Shared = Arc<Mutex<TenantFeatures>>;

#[derive(Debug, Default)]
pub struct Engine {
    tenants: Mutex<HashMap<String, Shared>>,
    /// (tenant, user) whose slice is out of date.
    dirty: Mutex<BTreeSet<(String, String)>>,
    /// Like-count changes per (tenant, item): the live update's sequence.
    like_versions: Mutex<HashMap<(String, String), u64>>,
    /// (tenant, user) a DSAR erased in this process: a slice computed for
    /// one of them before the erase is not stored after it (the Redis
    /// blocked set says the same across restarts; this holds without it).
    erased: Mutex<BTreeSet<(String, String)>>,
    /// Told each time a slice is marked out of date (the materializer
    /// sleeps on it while none is).
    dirtied: tokio::sync::Notify,
    pub weights: Weights,
}

/// A like count to push live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LikeCount {
    pub item: String,
    pub likes: i64,
    pub version: u64,
}

impl Engine {
    pub fn new(weights: Weights) -> Engine {
        Engine {
            weights,
            ..Engine::default()
        }
    }

    fn tenant(&self, tenant: &str) -> Shared {
        self.tenants
            .lock()
            .expect("not poisoned")
            .entry(tenant.to_string())
            .or_default()
            .clone()
    }

    fn all(&self) -> Vec<Shared> {
        self.tenants
            .lock()
            .expect("not poisoned")
            .values()
            .cloned()
            .collect()
    }

    fn with<R>(&self, tenant: &str, f: impl FnOnce(&mut TenantFeatures, &Weights) -> R) -> R {
        let t = self.tenant(tenant);
        let mut g = t.lock().expect("not poisoned");
        f(&mut g, &self.weights)
    }

    /// Fold signals read back from the log at start-up: their slices were
    /// stored when they first arrived, so nothing is marked.
    pub fn restore(&self, tenant: &str, signals: Vec<Signal>) {
        self.with(tenant, |f, _| {
            for s in signals {
                f.apply(s);
            }
        });
    }

    /// Apply `signals`; mark the slices they change; return the like counts
    /// that changed.
    pub fn apply(&self, tenant: &str, signals: Vec<Signal>) -> Vec<LikeCount> {
        let touched: Vec<Touched> = self.with(tenant, |f, _| {
            signals.into_iter().map(|s| f.apply(s)).collect()
        });
        let mut dirty = self.dirty.lock().expect("not poisoned");
        let mut versions = self.like_versions.lock().expect("not poisoned");
        let mut out = vec![];
        for t in touched {
            dirty.extend(t.users.into_iter().map(|u| (tenant.to_string(), u)));
            if let Some((item, likes)) = t.like_count {
                let v = versions
                    .entry((tenant.to_string(), item.clone()))
                    .or_default();
                *v += 1;
                out.push(LikeCount {
                    item,
                    likes,
                    version: *v,
                });
            }
        }
        if !dirty.is_empty() {
            self.dirtied.notify_one();
        }
        out
    }

    /// What the features hold about `user` (a DSAR export and scan).
    pub fn person(&self, tenant: &str, user: &str) -> PersonFeatures {
        self.with(tenant, |f, _| f.person(user))
    }

    /// Note that a DSAR erases `user` (before it does).
    pub fn mark_erased(&self, tenant: &str, user: &str) {
        self.erased
            .lock()
            .expect("not poisoned")
            .insert((tenant.to_string(), user.to_string()));
        self.dirtied.notify_one();
    }

    /// Returns once a slice is out of date (at once if one already is, or
    /// was marked since the last call).
    pub async fn dirty(&self) {
        if self.dirty_len() == 0 {
            self.dirtied.notified().await;
        }
    }

    /// Whether a DSAR erased `user` in this process.
    pub fn is_erased(&self, tenant: &str, user: &str) -> bool {
        self.erased
            .lock()
            .expect("not poisoned")
            .contains(&(tenant.to_string(), user.to_string()))
    }

    /// Take `user` out of the fold (a DSAR erase, see
    /// [`TenantFeatures::forget`]): their slice is no longer queued for
    /// recomputation, and their followers' slices are. Returns what went.
    pub fn forget(&self, tenant: &str, user: &str) -> PersonFeatures {
        let (gone, affected) = self.with(tenant, |f, _| f.forget(user));
        let mut dirty = self.dirty.lock().expect("not poisoned");
        dirty.remove(&(tenant.to_string(), user.to_string()));
        dirty.extend(affected.into_iter().map(|u| (tenant.to_string(), u)));
        if !dirty.is_empty() {
            self.dirtied.notify_one();
        }
        gone
    }

    pub fn knows_item(&self, tenant: &str, item: &str) -> bool {
        self.with(tenant, |f, _| f.knows_item(item))
    }

    pub fn slice(&self, tenant: &str, user: &str) -> Vec<(f64, String)> {
        self.with(tenant, |f, w| f.slice(user, w))
    }

    pub fn contributions(
        &self,
        tenant: &str,
        user: &str,
        item: &str,
        now_ms: i64,
    ) -> Vec<(Feature, f64)> {
        self.with(tenant, |f, w| f.contributions(Some(user), item, w, now_ms))
    }

    pub fn recommend(
        &self,
        tenant: &str,
        customer: &str,
        limit: usize,
    ) -> (Vec<(f64, String)>, usize) {
        self.with(tenant, |f, _| f.recommend(customer, limit))
    }

    /// Recompute `tenant`'s item-only ranking if signals changed it.
    pub fn refresh_global(&self, tenant: &str) {
        self.with(tenant, |f, w| f.refresh_global(w));
    }

    /// [`Engine::refresh_global`] for every tenant; returns how many changed.
    pub fn refresh_globals(&self) -> usize {
        let mut n = 0;
        for t in self.all() {
            let mut f = t.lock().expect("not poisoned");
            if f.global_stale() {
                f.refresh_global(&self.weights);
                n += 1;
            }
        }
        n
    }

    /// Every user the job knows in `tenant`.
    pub fn users(&self, tenant: &str) -> Vec<String> {
        self.with(tenant, |f, _| f.users.keys().cloned().collect())
    }

    /// Counts for `/metrics` and `status`: (items, users) over all tenants.
    pub fn sizes(&self) -> (usize, usize) {
        self.all().iter().fold((0, 0), |(i, u), t| {
            let f = t.lock().expect("not poisoned");
            (i + f.items.len(), u + f.users.len())
        })
    }

    pub fn mark_dirty(&self, tenant: &str, user: &str) {
        self.dirty
            .lock()
            .expect("not poisoned")
            .insert((tenant.to_string(), user.to_string()));
    }

    /// Up to `max` out-of-date slices, taken off the list.
    pub fn take_dirty(&self, max: usize) -> Vec<(String, String)> {
        let mut d = self.dirty.lock().expect("not poisoned");
        let mut out = Vec::with_capacity(max.min(d.len()));
        while out.len() < max {
            match d.pop_first() {
                Some(x) => out.push(x),
                None => break,
            }
        }
        out
    }

    pub fn dirty_len(&self) -> usize {
        self.dirty.lock().expect("not poisoned").len()
    }
}
