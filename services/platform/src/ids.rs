//! The `IdGen` port: ids come through it so simulations get reproducible ids.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use uuid::Uuid;

/// Generates unique ids.
///
/// Contract: ids from one generator are unique; the system generator's ids
/// (UUIDv7) sort by creation time, which keeps B-tree inserts local.
pub trait IdGen: Send + Sync + 'static {
    fn new_id(&self) -> Uuid;
}

/// UUIDv7 from the OS clock and entropy.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemIdGen;

impl IdGen for SystemIdGen {
    fn new_id(&self) -> Uuid {
        Uuid::now_v7()
    }
}

/// Always the same id: for an event whose id is derived from what it is
/// about (a saga step, an activity), so every copy of it has one id.
#[derive(Debug, Clone, Copy)]
pub struct FixedId(pub Uuid);

impl IdGen for FixedId {
    fn new_id(&self) -> Uuid {
        self.0
    }
}

/// Deterministic ids: a fixed prefix and a counter. Clones share the counter.
#[derive(Debug, Clone)]
pub struct SequentialIdGen {
    prefix: u64,
    next: Arc<AtomicU64>,
}

impl SequentialIdGen {
    pub fn new(prefix: u64) -> SequentialIdGen {
        SequentialIdGen {
            prefix,
            next: Arc::new(AtomicU64::new(1)),
        }
    }
}

impl IdGen for SequentialIdGen {
    fn new_id(&self) -> Uuid {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        Uuid::from_u64_pair(self.prefix, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_ids_are_reproducible_and_unique() {
        let a = SequentialIdGen::new(7);
        let b = SequentialIdGen::new(7);
        let xs: Vec<_> = (0..100).map(|_| a.new_id()).collect();
        let ys: Vec<_> = (0..100).map(|_| b.new_id()).collect();
        assert_eq!(xs, ys);
        let set: std::collections::BTreeSet<_> = xs.iter().collect();
        assert_eq!(set.len(), 100);
    }

    #[test]
    fn system_ids_sort_by_creation_even_within_one_millisecond() {
        let ids: Vec<_> = (0..10_000).map(|_| SystemIdGen.new_id()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }
}
