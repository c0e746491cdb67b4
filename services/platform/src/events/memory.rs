//! In-memory [`EventBus`]: partitions, consumer-group offsets and redelivery
//! semantics like Kafka's, inside one process. For unit tests and the
//! simulator; it passes the same [`super::contract`] suite as Kafka.
//!
//! Simplification: every subscription of a group is assigned all partitions
//! (no rebalancing), so run one member per group.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use tokio::sync::Notify;

use super::{
    Delivery, Envelope, EventBus, EventError, GroupLag, PartitionLag, Subscription, fnv1a,
};

/// Partitions given to a topic created implicitly by a publish.
pub const DEFAULT_PARTITIONS: i32 = 3;

#[derive(Default)]
struct State {
    topics: BTreeMap<String, Vec<Vec<Envelope>>>,
    /// (group, topic, partition) -> next offset to deliver.
    committed: BTreeMap<(String, String, i32), i64>,
}

/// The bus. Clones share the same topics.
#[derive(Clone, Default)]
pub struct MemoryBus {
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
}

impl std::fmt::Debug for MemoryBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoryBus")
    }
}

impl MemoryBus {
    pub fn new() -> MemoryBus {
        MemoryBus::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data; keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every event on `topic`, partition by partition (for assertions).
    pub fn events(&self, topic: &str) -> Vec<Envelope> {
        self.lock()
            .topics
            .get(topic)
            .map(|ps| ps.iter().flatten().cloned().collect())
            .unwrap_or_default()
    }
}

#[async_trait]
impl EventBus for MemoryBus {
    async fn ensure_topic(&self, topic: &str, partitions: i32) -> Result<(), EventError> {
        let n = usize::try_from(partitions.max(1)).unwrap_or(1);
        self.lock()
            .topics
            .entry(topic.to_string())
            .or_insert_with(|| vec![Vec::new(); n]);
        Ok(())
    }

    async fn publish(&self, topic: &str, event: &Envelope) -> Result<(), EventError> {
        {
            let mut st = self.lock();
            let parts = st
                .topics
                .entry(topic.to_string())
                .or_insert_with(|| vec![Vec::new(); DEFAULT_PARTITIONS as usize]);
            let p = fnv1a(event.key.as_bytes()) as usize % parts.len();
            parts[p].push(event.clone());
        }
        crate::metrics::count_published(topic, 1);
        self.notify.notify_waiters();
        Ok(())
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Box<dyn Subscription>, EventError> {
        for t in topics {
            self.ensure_topic(t, DEFAULT_PARTITIONS).await?;
        }
        let positions = {
            let st = self.lock();
            let mut pos = BTreeMap::new();
            for t in topics {
                let n = st.topics.get(t).map_or(0, Vec::len) as i32;
                for p in 0..n {
                    let c = st
                        .committed
                        .get(&(group.to_string(), t.clone(), p))
                        .copied()
                        .unwrap_or(0);
                    pos.insert((t.clone(), p), c);
                }
            }
            pos
        };
        Ok(Box::new(MemorySubscription {
            bus: self.clone(),
            group: group.to_string(),
            positions,
            cursor: 0,
        }))
    }

    async fn lag(&self, group: &str, topics: &[String]) -> Result<GroupLag, EventError> {
        let st = self.lock();
        let mut partitions = Vec::new();
        for t in topics {
            let Some(parts) = st.topics.get(t) else {
                continue;
            };
            for (p, events) in parts.iter().enumerate() {
                let p = p as i32;
                partitions.push(PartitionLag {
                    topic: t.clone(),
                    partition: p,
                    committed: st
                        .committed
                        .get(&(group.to_string(), t.clone(), p))
                        .copied(),
                    low_watermark: 0,
                    high_watermark: events.len() as i64,
                });
            }
        }
        Ok(GroupLag {
            group: group.to_string(),
            partitions,
        })
    }
}

struct MemorySubscription {
    bus: MemoryBus,
    group: String,
    /// (topic, partition) -> next offset to hand out.
    positions: BTreeMap<(String, i32), i64>,
    /// Round-robin start, so one busy partition does not starve the others.
    cursor: usize,
}

impl MemorySubscription {
    fn try_next(&mut self) -> Option<Delivery> {
        let st = self.bus.lock();
        let keys: Vec<_> = self.positions.keys().cloned().collect();
        for i in 0..keys.len() {
            let (topic, p) = &keys[(self.cursor + i) % keys.len()];
            let pos = self.positions[&(topic.clone(), *p)];
            let part = &st.topics[topic][*p as usize];
            if let Some(ev) = part.get(pos as usize) {
                let d = Delivery {
                    topic: topic.clone(),
                    partition: *p,
                    offset: pos,
                    envelope: ev.clone(),
                };
                drop(st);
                self.positions.insert((topic.clone(), *p), pos + 1);
                self.cursor = (self.cursor + i + 1) % keys.len();
                return Some(d);
            }
        }
        None
    }
}

#[async_trait]
impl Subscription for MemorySubscription {
    async fn next(&mut self, wait: Duration) -> Result<Option<Delivery>, EventError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.bus.notify.clone();
            let notified = notified.notified();
            if let Some(d) = self.try_next() {
                return Ok(Some(d));
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(None);
            }
        }
    }

    async fn ack(&mut self, d: &Delivery) -> Result<(), EventError> {
        // Acknowledgements commit at once: nothing acknowledged is lost on abort.
        let mut st = self.bus.lock();
        let k = (self.group.clone(), d.topic.clone(), d.partition);
        let next = d.offset + 1;
        let cur = st.committed.entry(k).or_insert(0);
        *cur = (*cur).max(next);
        Ok(())
    }

    async fn close(self: Box<Self>) -> Result<(), EventError> {
        Ok(())
    }

    async fn abort(self: Box<Self>) {}
}
