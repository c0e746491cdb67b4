//! The event contract suite: what every [`EventBus`] adapter must do, as
//! functions that panic on a violation. Each adapter's tests call them
//! (in-memory in unit tests, Kafka on the native broker in integration tests).
//!
//! Checked: per-key order, no loss and no unacknowledged skip across a
//! graceful consumer restart and a crash, redelivery of unacknowledged events
//! after a crash, survival of a broker restart, and dead-letter routing.

use std::{
    collections::BTreeMap,
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{
    Delivery, Envelope, EventBus, Subscription,
    dedupe::Deduper,
    dlq_topic, header,
    runner::{self, Handler, HandlerError, RunnerConfig},
};
use crate::{clock::SystemClock, ids::SystemIdGen};

/// Bound on waiting for the next event before the suite declares loss.
pub const IDLE_LIMIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(500);
const PUBLISH_CHUNK: usize = 5_000;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
struct Seq {
    key: u32,
    seq: u32,
}

/// What the ordering run measured.
#[derive(Debug, Clone, Default)]
pub struct OrderReport {
    pub messages: usize,
    pub keys: usize,
    pub duplicates: usize,
    pub restarts: usize,
    pub publish_per_s: f64,
    pub consume_per_s: f64,
}

fn envelope(key: u32, seq: u32) -> Envelope {
    Envelope::new(
        "contract.seq",
        1,
        "contract",
        &format!("key-{key}"),
        &Seq { key, seq },
        &SystemClock,
        &SystemIdGen,
    )
    .expect("encode")
}

/// Publish `messages` events spread over `keys` keys; event i of key k has seq i.
/// Returns the per-key counts and the publish rate.
async fn publish_sequence(
    bus: &dyn EventBus,
    topic: &str,
    messages: usize,
    keys: usize,
) -> (BTreeMap<u32, u32>, f64) {
    let mut counts: BTreeMap<u32, u32> = BTreeMap::new();
    let all: Vec<Envelope> = (0..messages)
        .map(|i| {
            let key = (i % keys) as u32;
            let c = counts.entry(key).or_insert(0);
            let e = envelope(key, *c);
            *c += 1;
            e
        })
        .collect();
    let started = Instant::now();
    for chunk in all.chunks(PUBLISH_CHUNK) {
        bus.publish_batch(topic, chunk).await.expect("publish");
    }
    (counts, messages as f64 / started.elapsed().as_secs_f64())
}

/// Tracks first deliveries per key and fails on a gap or reorder.
#[derive(Default)]
struct OrderCheck {
    next: BTreeMap<u32, u32>,
    firsts: usize,
    duplicates: usize,
}

impl OrderCheck {
    fn see(&mut self, d: &Delivery) {
        let s: Seq = d.envelope.json().expect("payload");
        let next = self.next.entry(s.key).or_insert(0);
        assert!(
            s.seq <= *next,
            "key {} jumped from expecting seq {} to seq {} (topic {} partition {} offset {}): an event was skipped or reordered",
            s.key,
            next,
            s.seq,
            d.topic,
            d.partition,
            d.offset
        );
        if s.seq == *next {
            *next += 1;
            self.firsts += 1;
        } else {
            self.duplicates += 1;
        }
    }
}

/// Receive and acknowledge until `check` has seen `target` first deliveries.
async fn consume_until(sub: &mut Box<dyn Subscription>, check: &mut OrderCheck, target: usize) {
    let mut idle_since = Instant::now();
    while check.firsts < target {
        match sub.next(POLL).await.expect("next") {
            Some(d) => {
                check.see(&d);
                sub.ack(&d).await.expect("ack");
                idle_since = Instant::now();
            }
            None => assert!(
                idle_since.elapsed() < IDLE_LIMIT,
                "no event for {IDLE_LIMIT:?} with {} of {target} received: events were lost",
                check.firsts
            ),
        }
    }
}

/// Per-key order and no loss across a graceful restart and a crash of the consumer.
pub async fn ordered_no_loss_across_consumer_restarts(
    bus: Arc<dyn EventBus>,
    topic: &str,
    messages: usize,
    keys: usize,
) -> OrderReport {
    bus.ensure_topic(topic, 3).await.expect("topic");
    let (counts, publish_per_s) = publish_sequence(&*bus, topic, messages, keys).await;
    let group = format!("{topic}-group");
    let topics = vec![topic.to_string()];
    let mut check = OrderCheck::default();
    let started = Instant::now();

    // Phase 1: a third, then a graceful close (commits everything acknowledged).
    let mut sub = bus.subscribe(&group, &topics).await.expect("subscribe");
    consume_until(&mut sub, &mut check, messages / 3).await;
    sub.close().await.expect("close");

    // Phase 2: two thirds, then a crash (uncommitted acknowledgements are lost).
    let mut sub = bus.subscribe(&group, &topics).await.expect("subscribe");
    consume_until(&mut sub, &mut check, 2 * messages / 3).await;
    sub.abort().await;

    // Phase 3: the rest.
    let mut sub = bus.subscribe(&group, &topics).await.expect("subscribe");
    consume_until(&mut sub, &mut check, messages).await;
    sub.close().await.expect("close");

    for (k, n) in &counts {
        assert_eq!(check.next.get(k), Some(n), "key {k} incomplete");
    }
    OrderReport {
        messages,
        keys,
        duplicates: check.duplicates,
        restarts: 2,
        publish_per_s,
        consume_per_s: (messages + check.duplicates) as f64 / started.elapsed().as_secs_f64(),
    }
}

/// Events received but not acknowledged before a crash are delivered again.
pub async fn redelivery_after_crash_before_ack(bus: Arc<dyn EventBus>, topic: &str) {
    bus.ensure_topic(topic, 1).await.expect("topic");
    for i in 0..10 {
        bus.publish(topic, &envelope(0, i)).await.expect("publish");
    }
    let group = format!("{topic}-group");
    let topics = vec![topic.to_string()];
    let mut sub = bus.subscribe(&group, &topics).await.expect("subscribe");
    let mut got = Vec::new();
    while got.len() < 5 {
        if let Some(d) = sub.next(POLL).await.expect("next") {
            let s: Seq = d.envelope.json().expect("payload");
            if got.len() < 3 {
                sub.ack(&d).await.expect("ack");
            }
            got.push(s.seq);
        }
    }
    assert_eq!(got, vec![0, 1, 2, 3, 4]);
    sub.abort().await;

    let mut sub = bus.subscribe(&group, &topics).await.expect("subscribe");
    let mut after = Vec::new();
    let started = Instant::now();
    while after.last() != Some(&9) {
        assert!(
            started.elapsed() < IDLE_LIMIT,
            "stuck after crash: {after:?}"
        );
        if let Some(d) = sub.next(POLL).await.expect("next") {
            after.push(d.envelope.json::<Seq>().expect("payload").seq);
            sub.ack(&d).await.expect("ack");
        }
    }
    sub.close().await.expect("close");
    // Acknowledged events may come again (commits can be batched); unacknowledged ones must.
    let first = after[0];
    assert!(
        first <= 3,
        "resumed at {first}: unacknowledged events 3 and 4 were skipped"
    );
    let expected: Vec<u32> = (first..10).collect();
    assert_eq!(after, expected, "redelivery out of order or with gaps");
}

/// No loss and per-key order across a broker restart between two halves of a stream.
pub async fn survives_broker_restart<F, Fut>(
    bus: Arc<dyn EventBus>,
    topic: &str,
    messages: usize,
    restart: F,
) where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    bus.ensure_topic(topic, 3).await.expect("topic");
    let keys = 10usize;
    let half: Vec<Envelope> = (0..messages / 2)
        .map(|i| envelope((i % keys) as u32, (i / keys) as u32))
        .collect();
    bus.publish_batch(topic, &half)
        .await
        .expect("publish first half");
    let group = format!("{topic}-group");
    let topics = vec![topic.to_string()];
    let mut check = OrderCheck::default();
    let mut sub = bus.subscribe(&group, &topics).await.expect("subscribe");
    consume_until(&mut sub, &mut check, messages / 4).await;
    sub.close().await.expect("close");

    restart().await;

    let rest: Vec<Envelope> = (messages / 2..messages)
        .map(|i| envelope((i % keys) as u32, (i / keys) as u32))
        .collect();
    bus.publish_batch(topic, &rest)
        .await
        .expect("publish after restart");
    let mut sub = bus.subscribe(&group, &topics).await.expect("subscribe");
    consume_until(&mut sub, &mut check, messages).await;
    sub.close().await.expect("close");
}

/// Read `group`'s lag until its total is `want` (commits may land a moment
/// after the acknowledgement); panic after [`IDLE_LIMIT`].
async fn lag_becomes(
    bus: &dyn EventBus,
    group: &str,
    topics: &[String],
    want: i64,
) -> super::GroupLag {
    let started = Instant::now();
    loop {
        let lag = bus.lag(group, topics).await.expect("lag");
        if lag.total() == want {
            return lag;
        }
        assert!(
            started.elapsed() < IDLE_LIMIT,
            "lag of {group} stayed {} (wanted {want}): {lag:?}",
            lag.total()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A group's lag is what it has not committed: every partition is listed,
/// those the group never committed on count from the earliest record, a
/// graceful close commits what was acknowledged, reading the lag does not
/// disturb a member that is consuming, and a topic that does not exist adds
/// nothing.
pub async fn lag_follows_the_groups_commits(bus: Arc<dyn EventBus>, topic: &str) {
    bus.ensure_topic(topic, 3).await.expect("topic");
    let group = format!("{topic}-group");
    let topics = vec![topic.to_string()];

    let lag = bus.lag(&group, &topics).await.expect("lag");
    assert_eq!(lag.group, group);
    let mut parts: Vec<i32> = lag.partitions.iter().map(|p| p.partition).collect();
    parts.sort_unstable();
    assert_eq!(parts, vec![0, 1, 2], "every partition is listed: {lag:?}");
    assert_eq!(lag.total(), 0, "nothing published yet: {lag:?}");

    let events: Vec<Envelope> = (0..30).map(|i| envelope(i % 10, i / 10)).collect();
    bus.publish_batch(topic, &events).await.expect("publish");
    let lag = lag_becomes(&*bus, &group, &topics, 30).await;
    assert!(
        lag.partitions.iter().all(|p| p.committed.is_none()),
        "the group never committed: {lag:?}"
    );
    assert_eq!(lag.by_topic().get(topic), Some(&30));

    // Ten processed and acknowledged, then a graceful close: 20 behind.
    let mut sub = bus.subscribe(&group, &topics).await.expect("subscribe");
    let mut check = OrderCheck::default();
    consume_until(&mut sub, &mut check, 10).await;
    sub.close().await.expect("close");
    let lag = lag_becomes(&*bus, &group, &topics, 20).await;
    assert_eq!(
        lag.partitions
            .iter()
            .map(|p| p.high_watermark - p.low_watermark)
            .sum::<i64>(),
        30,
        "{lag:?}"
    );

    // A member consumes the rest while the lag is read over and over.
    let mut sub = bus.subscribe(&group, &topics).await.expect("subscribe");
    let reader = {
        let (bus, group, topics) = (bus.clone(), group.clone(), topics.clone());
        tokio::spawn(async move {
            let mut reads = 0u32;
            loop {
                let lag = bus.lag(&group, &topics).await.expect("lag while consuming");
                reads += 1;
                if lag.total() == 0 {
                    return reads;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    consume_until(&mut sub, &mut check, 30).await;
    sub.close().await.expect("close");
    let reads = tokio::time::timeout(IDLE_LIMIT, reader)
        .await
        .expect("the lag did not reach 0 after everything was acknowledged and closed")
        .expect("reader");
    assert!(reads >= 1);

    let missing = vec![format!("{topic}-missing")];
    let lag = bus
        .lag(&group, &missing)
        .await
        .expect("lag of a missing topic");
    assert_eq!(lag.total(), 0, "{lag:?}");
}

struct PoisonHandler {
    calls: AtomicU32,
    flaky_failures_left: AtomicU32,
}

#[async_trait]
impl Handler for PoisonHandler {
    async fn handle(&self, d: &Delivery) -> Result<(), HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let v: serde_json::Value = d
            .envelope
            .json()
            .map_err(|e| HandlerError::Permanent(e.to_string()))?;
        if v["poison"] == true {
            return Err(HandlerError::Permanent(
                "poison pill: field `poison` set".into(),
            ));
        }
        if v["flaky"] == true
            && self
                .flaky_failures_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            return Err(HandlerError::Retryable("dependency down".into()));
        }
        Ok(())
    }
}

/// A permanently failing event goes to `<topic>.dlq` with its reason and the
/// consumer carries on; a transiently failing one is retried and succeeds; a
/// duplicate is skipped by `dedupe`.
pub async fn dlq_routing(bus: Arc<dyn EventBus>, dedupe: Arc<dyn Deduper>, topic: &str) {
    bus.ensure_topic(topic, 1).await.expect("topic");
    bus.ensure_topic(&dlq_topic(topic), 1)
        .await
        .expect("dlq topic");
    let mk = |v: serde_json::Value| {
        Envelope::new(
            "contract.dlq",
            1,
            "contract",
            "k",
            &v,
            &SystemClock,
            &SystemIdGen,
        )
        .expect("encode")
    };
    let poison = mk(serde_json::json!({"poison": true}));
    let events = vec![
        mk(serde_json::json!({"n": 1})),
        poison.clone(),
        mk(serde_json::json!({"flaky": true})),
        mk(serde_json::json!({"n": 2})),
    ];
    bus.publish_batch(topic, &events).await.expect("publish");
    // The same event twice: the second must be skipped by dedupe.
    bus.publish(topic, &events[0])
        .await
        .expect("publish duplicate");

    let handler = Arc::new(PoisonHandler {
        calls: AtomicU32::new(0),
        flaky_failures_left: AtomicU32::new(1),
    });
    let mut cfg = RunnerConfig::new(&format!("{topic}-group"), &[topic]);
    cfg.backoff_base = Duration::from_millis(5);
    cfg.poll_wait = Duration::from_secs(3);
    let stats = runner::run(
        bus.clone(),
        dedupe,
        handler.clone(),
        cfg,
        CancellationToken::new(),
        true,
    )
    .await
    .expect("runner");
    assert_eq!(stats.processed, 3, "{stats:?}");
    assert_eq!(stats.dead_lettered, 1, "{stats:?}");
    assert_eq!(stats.retries, 1, "{stats:?}");
    assert_eq!(stats.duplicates_skipped, 1, "{stats:?}");

    let mut sub = bus
        .subscribe(&format!("{topic}-dlq-reader"), &[dlq_topic(topic)])
        .await
        .expect("subscribe dlq");
    let started = Instant::now();
    let d = loop {
        assert!(started.elapsed() < IDLE_LIMIT, "nothing arrived on the DLQ");
        if let Some(d) = sub.next(POLL).await.expect("next") {
            break d;
        }
    };
    sub.close().await.expect("close");
    assert_eq!(d.envelope.id, poison.id);
    let h = &d.envelope.headers;
    assert!(h[header::DLQ_REASON].contains("poison pill"), "{h:?}");
    assert_eq!(h[header::DLQ_SOURCE_TOPIC], topic);
    assert_eq!(h[header::DLQ_ATTEMPTS], "1");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::memory::MemoryBus;

    #[tokio::test]
    async fn memory_bus_keeps_order_and_loses_nothing_across_restarts() {
        let bus: Arc<dyn EventBus> = Arc::new(MemoryBus::new());
        let r = ordered_no_loss_across_consumer_restarts(bus, "mem.order", 50_000, 500).await;
        assert_eq!(r.messages, 50_000);
    }

    #[tokio::test]
    async fn memory_bus_redelivers_after_crash() {
        redelivery_after_crash_before_ack(Arc::new(MemoryBus::new()), "mem.redeliver").await;
    }

    #[tokio::test]
    async fn memory_bus_survives_a_restart_of_its_owner() {
        let bus = MemoryBus::new();
        // The in-memory bus has no separate broker: a "restart" keeps the same state.
        survives_broker_restart(Arc::new(bus), "mem.restart", 2_000, || async {}).await;
    }

    #[tokio::test]
    async fn memory_bus_lag_follows_the_groups_commits() {
        lag_follows_the_groups_commits(Arc::new(MemoryBus::new()), "mem.lag").await;
    }

    #[tokio::test]
    async fn memory_bus_routes_poison_to_dlq() {
        let dedupe = Arc::new(crate::events::dedupe::MemoryDeduper::default());
        dlq_routing(Arc::new(MemoryBus::new()), dedupe, "mem.dlq").await;
    }
}
