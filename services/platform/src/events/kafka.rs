//! Kafka [`EventBus`] through rdkafka: an idempotent keyed producer and
//! consumer-group members with manual offset storage and batched commits.
//!
//! The settings are the ones measured to pass the contract suite on the
//! native `tansu` broker (see `docs/adr/0002-event-backbone.md`): short fetch
//! waits (tansu holds every fetch for the full wait), acks=all with an
//! idempotent producer, no auto-commit, offsets stored only on ack, and
//! consumers closed with a timeout.
//!
//! The group session timeout is long ([`SESSION_TIMEOUT`]) because of a tansu
//! 0.6.0 bug: when a member's heartbeat arrives after its session expired (a
//! broker or a consumer stopped for longer than the timeout), the broker
//! drops the member but keeps it as the group's leader; every member that
//! joins after it waits for that leader's assignment for ever (SyncGroup
//! answers REBALANCE_IN_PROGRESS; librdkafka rejoins every 3 s and logs
//! nothing above debug), and the state is stored, so re-subscribing or
//! restarting the consumer does not help. A stall shorter than the session
//! timeout never expires the member, on either side.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use rdkafka::{
    ClientConfig, ClientContext, Message, Offset, TopicPartitionList,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    config::RDKafkaLogLevel,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer},
    error::{KafkaError, KafkaResult, RDKafkaErrorCode},
    message::{Header, Headers, OwnedHeaders},
    producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext},
};

use super::{
    Delivery, Envelope, EventBus, EventError, FaultLookup, GroupLag, PartitionLag, Subscription,
    doorbell::{Doorbell, Ring},
};
use crate::faults;

/// Consumer group session timeout: a broker or consumer that stops for
/// less than this (SIGSTOP, a long GC-like pause, a laptop lid) costs the
/// group nothing (see the module docs for what a longer stop does on tansu).
/// Kafka's own default; the price is that a crashed member's partitions
/// move to its replacement only after this long.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(45);
/// How often a member heartbeats (and so learns of a rebalance): Kafka's
/// own default. tansu 0.6.0 stores the group on every heartbeat (an SQLite
/// write: `update_group` in its coordinator), and at rest an idle group
/// sends little else (ADR 0017).
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);

/// See [`KafkaSettings::doorbell_safety`].
pub const DOORBELL_SAFETY: Duration = Duration::from_secs(10);
/// A consumer stays awake this long after its last record or ring, so one
/// burst of records costs one wake-up, not one per record.
const AWAKE_AFTER_RECORD: Duration = Duration::from_millis(200);
/// How long a consumer stays awake after it was given partitions (their
/// committed offsets are looked up before the first fetch).
const AWAKE_AFTER_ASSIGNMENT: Duration = Duration::from_secs(1);
/// Bound on asking the broker whether a partition is behind.
const BEHIND_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The component the `broker-slow` fault names.
pub const BROKER_COMPONENT: &str = "kafka";

/// The `broker-slow` fault: while it is set, every publish and every fetch
/// of this process's bus waits its value first.
async fn broker_slow(fault_value: FaultLookup) {
    if let Some(ms) = fault_value("broker-slow", BROKER_COMPONENT) {
        tokio::time::sleep(Duration::from_millis(u64::try_from(ms).unwrap_or(0))).await;
    }
}

/// Client settings; the defaults are safe on the native broker.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub brokers: String,
    /// Records per produce request. Batched producing passed the contract
    /// suite on tansu's sqlite engine (ADR 0002); its memory engine needs 1.
    pub batch_num_messages: u32,
    /// How long the broker may hold a fetch; tansu always holds the full time.
    pub fetch_wait_max_ms: u32,
    /// A publish fails after this long without an acknowledgement.
    pub message_timeout_ms: u32,
    /// Commit stored offsets after this many acknowledgements...
    pub commit_every_acks: u32,
    /// ...or after this long, whichever comes first.
    pub commit_interval: Duration,
    /// Bound on admin calls, synchronous commits and consumer close.
    pub op_timeout: Duration,
    /// Concurrent in-flight publishes in `publish_batch`.
    pub max_in_flight_publishes: usize,
    /// The fault catalog (`broker-slow`).
    pub fault_value: FaultLookup,
    /// librdkafka debug contexts (`cgrp,fetch,protocol`...) for diagnosis;
    /// their lines go to the log at debug level.
    pub debug: Option<String>,
    /// See [`SESSION_TIMEOUT`].
    pub session_timeout: Duration,
    /// The event doorbell ([`super::doorbell`]): publishes ring it, and
    /// consumers with nothing to do pause their partitions until it rings.
    /// `None`: consumers fetch all the time (every fetch held for
    /// [`Self::fetch_wait_max_ms`]).
    pub doorbell: Option<Arc<Doorbell>>,
    /// A consumer paused by the doorbell asks the broker this often whether
    /// records wait for it (committed offsets and watermarks), so a lost
    /// ring (or a producer that does not ring) delays records by at most
    /// about this much.
    pub doorbell_safety: Duration,
    /// How often consumers report librdkafka's statistics (the request
    /// counts on `/metrics`); `None` turns them off.
    pub stats_interval: Option<Duration>,
}

impl KafkaSettings {
    pub fn new(brokers: &str) -> KafkaSettings {
        KafkaSettings {
            brokers: brokers.to_string(),
            batch_num_messages: 10_000,
            fetch_wait_max_ms: 5,
            message_timeout_ms: 300_000,
            commit_every_acks: 500,
            commit_interval: Duration::from_millis(200),
            op_timeout: Duration::from_secs(10),
            max_in_flight_publishes: 1_000,
            fault_value: faults::value,
            debug: None,
            session_timeout: SESSION_TIMEOUT,
            doorbell: None,
            doorbell_safety: DOORBELL_SAFETY,
            stats_interval: Some(Duration::from_secs(5)),
        }
    }

    /// [`KafkaSettings::new`] with `SHOPSTREAM_KAFKA_BATCH_NUM_MESSAGES` and
    /// `SHOPSTREAM_KAFKA_FETCH_WAIT_MAX_MS` applied (a real Kafka wants
    /// batching), `SHOPSTREAM_KAFKA_COMMIT_INTERVAL_MS` (how often a busy
    /// consumer commits; a knob for measuring the broker's load) and
    /// `SHOPSTREAM_KAFKA_DEBUG` (librdkafka's `debug`).
    pub fn from_env(brokers: &str) -> Result<KafkaSettings, crate::config::ConfigError> {
        let d = KafkaSettings::new(brokers);
        Ok(KafkaSettings {
            batch_num_messages: crate::config::env_parse(
                "SHOPSTREAM_KAFKA_BATCH_NUM_MESSAGES",
                d.batch_num_messages,
            )?,
            fetch_wait_max_ms: crate::config::env_parse(
                "SHOPSTREAM_KAFKA_FETCH_WAIT_MAX_MS",
                d.fetch_wait_max_ms,
            )?,
            commit_interval: Duration::from_millis(crate::config::env_parse(
                "SHOPSTREAM_KAFKA_COMMIT_INTERVAL_MS",
                d.commit_interval.as_millis() as u64,
            )?),
            debug: std::env::var("SHOPSTREAM_KAFKA_DEBUG")
                .ok()
                .filter(|v| !v.is_empty()),
            ..d
        })
    }

    fn base(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("broker.address.family", "v4")
            .set("socket.connection.setup.timeout.ms", "5000")
            // No client metrics push (KIP-714): nothing here collects them,
            // and asking for a subscription is a request every few seconds.
            .set("enable.metrics.push", "false");
        if let Some(d) = &self.debug {
            c.set("debug", d).set_log_level(RDKafkaLogLevel::Debug);
        }
        c
    }
}

fn broker_err(e: KafkaError) -> EventError {
    EventError::Broker(e.to_string())
}

/// How long the delivery thread waits for a delivery report before it
/// looks whether the bus was dropped. A report wakes it at once, so this
/// costs no latency; it bounds idle wake-ups (rdkafka's own threaded
/// producer wakes every 100 ms and then spins about a millisecond in its
/// poll loop: ~1 % of a core per idle process).
const DELIVERY_POLL: Duration = Duration::from_secs(1);
/// Added to [`DELIVERY_POLL`] so a poll that times out ends in one wait.
/// `BaseProducer::poll` waits in whole milliseconds (the remaining time,
/// truncated) until its deadline has passed, so a deadline a whole number
/// of milliseconds away left a last fraction of a millisecond that it spent
/// asking librdkafka's queue again and again without waiting (~1 ms of CPU
/// a second in every idle process). With the deadline a few microseconds
/// past the whole wait, the wait ends after it.
const DELIVERY_POLL_SLACK: Duration = Duration::from_micros(20);

/// A record's delivery report, sent to whoever published it.
type Delivered = tokio::sync::oneshot::Sender<Result<(), KafkaError>>;

/// The producer's context: each delivery report goes back to its publisher.
struct Deliveries;

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Box<Delivered>;

    fn delivery(&self, result: &DeliveryResult<'_>, to: Self::DeliveryOpaque) {
        let _ = to.send(result.as_ref().map(|_| ()).map_err(|(e, _)| e.clone()));
    }
}

/// librdkafka's producer and the thread that serves its delivery reports;
/// the thread stops (and the producer is flushed and dropped) within
/// [`DELIVERY_POLL`] of the last bus clone going away.
struct Publisher {
    producer: Arc<BaseProducer<Deliveries>>,
    stop: Arc<AtomicBool>,
}

impl Publisher {
    fn new(config: &ClientConfig) -> Result<Publisher, EventError> {
        let producer: Arc<BaseProducer<Deliveries>> =
            Arc::new(config.create_with_context(Deliveries).map_err(broker_err)?);
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (producer.clone(), stop.clone());
        std::thread::Builder::new()
            .name("kafka-deliveries".into())
            .spawn(move || {
                while !s.load(Ordering::Acquire) {
                    p.poll(DELIVERY_POLL + DELIVERY_POLL_SLACK);
                }
            })
            .map_err(|e| EventError::Broker(format!("delivery thread: {e}")))?;
        Ok(Publisher { producer, stop })
    }

    /// Enqueue one record; the receiver resolves with its delivery report.
    #[allow(clippy::result_large_err)]
    fn send(
        &self,
        topic: &str,
        e: &Envelope,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<(), KafkaError>>, KafkaError> {
        let mut h = OwnedHeaders::new();
        for (k, v) in e.wire_headers() {
            h = h.insert(Header {
                key: &k,
                value: Some(v.as_bytes()),
            });
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let record = BaseRecord::with_opaque_to(topic, Box::new(tx))
            .key(e.key.as_str())
            .payload(e.payload.as_slice())
            .headers(h)
            .timestamp(e.occurred_at_ms);
        self.producer.send(record).map(|()| rx).map_err(|(e, _)| e)
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// A delivery report as the bus reports it.
fn delivered(
    r: Result<Result<(), KafkaError>, tokio::sync::oneshot::error::RecvError>,
) -> Result<(), EventError> {
    match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(broker_err(e)),
        Err(_) => Err(EventError::Broker("producer dropped a delivery".into())),
    }
}

/// The Kafka bus. Cheap to clone (the producer is shared).
#[derive(Clone)]
pub struct KafkaBus {
    settings: KafkaSettings,
    producer: Arc<Publisher>,
    /// One lag reader per group, kept: see [`LagReader`].
    lag_readers: Arc<Mutex<BTreeMap<String, Arc<LagReader>>>>,
}

impl std::fmt::Debug for KafkaBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBus")
            .field("brokers", &self.settings.brokers)
            .finish()
    }
}

impl KafkaBus {
    /// The bus every service uses: the brokers of `endpoints`, with
    /// [`KafkaSettings::from_env`] applied, behind the [`EventBus`] port.
    ///
    /// The event doorbell rings on the endpoints' Redis unless
    /// `SHOPSTREAM_EVENT_DOORBELL=off`.
    pub fn connect(
        endpoints: &crate::config::Endpoints,
    ) -> Result<Arc<dyn crate::events::EventBus>, EventError> {
        let mut settings = KafkaSettings::from_env(&endpoints.kafka_brokers)
            .map_err(|e| EventError::Broker(e.to_string()))?;
        let doorbell = std::env::var("SHOPSTREAM_EVENT_DOORBELL").unwrap_or_default();
        match doorbell.as_str() {
            "" | "on" => {
                let bell = Doorbell::new(&endpoints.redis_url)
                    .map_err(|e| EventError::Broker(format!("event doorbell: {e}")))?;
                settings.doorbell = Some(Arc::new(bell));
            }
            "off" => {}
            other => {
                return Err(EventError::Broker(format!(
                    "SHOPSTREAM_EVENT_DOORBELL={other}: expected on or off"
                )));
            }
        }
        Ok(Arc::new(KafkaBus::new(settings)?))
    }

    /// Tell idle consumers that `topic` has new records.
    fn ring(&self, topic: &str) {
        if let Some(d) = &self.settings.doorbell {
            d.ring(topic);
        }
    }

    pub fn new(settings: KafkaSettings) -> Result<KafkaBus, EventError> {
        let producer = Publisher::new(
            settings
                .base()
                .set("acks", "all")
                .set("enable.idempotence", "true")
                .set("linger.ms", "0")
                .set(
                    "batch.num.messages",
                    settings.batch_num_messages.to_string(),
                )
                .set(
                    "message.timeout.ms",
                    settings.message_timeout_ms.to_string(),
                ),
        )?;
        Ok(KafkaBus {
            settings,
            producer: Arc::new(producer),
            lag_readers: Arc::default(),
        })
    }

    /// The lag reader of `group`, created on first use.
    fn lag_reader(&self, group: &str) -> Result<Arc<LagReader>, EventError> {
        let mut readers = self.lag_readers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = readers.get(group) {
            return Ok(r.clone());
        }
        let consumer: BaseConsumer = self
            .settings
            .base()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .create()
            .map_err(broker_err)?;
        let reader = Arc::new(LagReader {
            consumer: Some(consumer),
        });
        readers.insert(group.to_string(), reader.clone());
        Ok(reader)
    }

    /// Publish `events` in order and wait for every delivery report.
    /// Records are enqueued synchronously, so they enter the producer in
    /// slice order; the idempotent producer keeps that order per partition
    /// with many requests in flight. A full queue waits for the oldest
    /// delivery (or, with none outstanding, 10 ms) and tries again, for at
    /// most the message timeout.
    async fn send_all(&self, topic: &str, events: &[Envelope]) -> Result<(), EventError> {
        let give_up = tokio::time::Instant::now()
            + Duration::from_millis(u64::from(self.settings.message_timeout_ms));
        let mut pending = std::collections::VecDeque::new();
        for e in events {
            loop {
                match self.producer.send(topic, e) {
                    Ok(rx) => {
                        pending.push_back(rx);
                        break;
                    }
                    Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull))
                        if tokio::time::Instant::now() < give_up =>
                    {
                        match pending.pop_front() {
                            Some(rx) => delivered(rx.await)?,
                            None => tokio::time::sleep(Duration::from_millis(10)).await,
                        }
                    }
                    Err(e) => return Err(broker_err(e)),
                }
            }
            if pending.len() >= self.settings.max_in_flight_publishes
                && let Some(rx) = pending.pop_front()
            {
                delivered(rx.await)?;
            }
        }
        while let Some(rx) = pending.pop_front() {
            delivered(rx.await)?;
        }
        Ok(())
    }

    /// The offset of the first record a fetch from `offset` returns on
    /// `topic`'s `partition` within `timeout`, or `None` when none came.
    /// For diagnosis: a group whose committed offset trails the partition's
    /// end but finds nothing there is not behind any record it can read.
    /// Reads outside any group (an assignment), commits nothing.
    pub async fn first_offset_from(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        timeout: Duration,
    ) -> Result<Option<i64>, EventError> {
        let consumer: BaseConsumer = self
            .settings
            .base()
            .set("group.id", "shopstream-diagnosis")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("fetch.wait.max.ms", "100")
            .create()
            .map_err(broker_err)?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
            .map_err(broker_err)?;
        consumer.assign(&tpl).map_err(broker_err)?;
        tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + timeout;
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                match consumer.poll(left.min(Duration::from_millis(200))) {
                    Some(Ok(m)) => return Ok(Some(m.offset())),
                    Some(Err(e)) => return Err(broker_err(e)),
                    None => {}
                }
            }
            Ok(None)
        })
        .await
        .map_err(|e| EventError::Broker(e.to_string()))?
    }

    /// Wait until the broker answers a metadata request.
    pub async fn ping(&self, timeout: Duration) -> Result<(), EventError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .producer
                .client()
                .fetch_metadata(None, timeout)
                .map(|_| ())
                .map_err(broker_err)
        })
        .await
        .map_err(|e| EventError::Broker(e.to_string()))?
    }
}

#[async_trait]
impl EventBus for KafkaBus {
    async fn ensure_topic(&self, topic: &str, partitions: i32) -> Result<(), EventError> {
        let opts = AdminOptions::new().operation_timeout(Some(self.settings.op_timeout));
        let t = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        // An admin client per call: kept, its polling thread woke ten times
        // a second in every process for topics created once at start.
        let admin: AdminClient<DefaultClientContext> =
            self.settings.base().create().map_err(broker_err)?;
        let res = admin.create_topics([&t], &opts).await;
        // Dropping it joins that thread (up to 100 ms): not on this runtime.
        tokio::task::spawn_blocking(move || drop(admin));
        let res = res.map_err(broker_err)?;
        for r in res {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(EventError::Broker(format!("create topic {name}: {code}")));
                }
            }
        }
        Ok(())
    }

    async fn publish(&self, topic: &str, event: &Envelope) -> Result<(), EventError> {
        broker_slow(self.settings.fault_value).await;
        self.send_all(topic, std::slice::from_ref(event)).await?;
        crate::metrics::count_published(topic, 1);
        self.ring(topic);
        Ok(())
    }

    async fn publish_batch(&self, topic: &str, events: &[Envelope]) -> Result<(), EventError> {
        broker_slow(self.settings.fault_value).await;
        self.send_all(topic, events).await?;
        crate::metrics::count_published(topic, events.len() as u64);
        if !events.is_empty() {
            self.ring(topic);
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Box<dyn Subscription>, EventError> {
        let reassigned = Arc::new(AtomicBool::new(false));
        let commit_failed = Arc::new(AtomicBool::new(false));
        let mut config = self.settings.base();
        if let Some(every) = self.settings.stats_interval {
            config.set("statistics.interval.ms", every.as_millis().to_string());
        }
        let consumer: StreamConsumer<GroupContext> = config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set(
                "fetch.wait.max.ms",
                self.settings.fetch_wait_max_ms.to_string(),
            )
            .set(
                "session.timeout.ms",
                self.settings.session_timeout.as_millis().to_string(),
            )
            .set(
                "heartbeat.interval.ms",
                HEARTBEAT_INTERVAL
                    .min(self.settings.session_timeout / 3)
                    .as_millis()
                    .to_string(),
            )
            .create_with_context(GroupContext {
                group: group.to_string(),
                reassigned: reassigned.clone(),
                commit_failed: commit_failed.clone(),
                requests_seen: Mutex::default(),
            })
            .map_err(broker_err)?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&names).map_err(broker_err)?;
        let idle = self.settings.doorbell.as_ref().map(|bell| Idle {
            rings: bell.listen(),
            bell: bell.clone(),
            topics: topics.iter().cloned().collect(),
            reassigned,
            paused: false,
            awake_until: tokio::time::Instant::now() + AWAKE_AFTER_ASSIGNMENT,
            check_at: tokio::time::Instant::now() + self.settings.doorbell_safety,
            safety: self.settings.doorbell_safety,
            group: group.to_string(),
        });
        Ok(Box::new(KafkaSubscription {
            consumer: Arc::new(consumer),
            settings: self.settings.clone(),
            uncommitted: 0,
            last_commit: Instant::now(),
            commit_failed,
            idle,
        }))
    }

    async fn lag(&self, group: &str, topics: &[String]) -> Result<GroupLag, EventError> {
        let reader = self.lag_reader(group)?;
        let (group, topics) = (group.to_string(), topics.to_vec());
        let timeout = self.settings.op_timeout;
        tokio::task::spawn_blocking(move || reader.read(&group, &topics, timeout))
            .await
            .map_err(|e| EventError::Broker(e.to_string()))?
    }
}

/// Reads a group's committed offsets and the partitions' watermarks through
/// a consumer that carries the group's id but never subscribes, so it never
/// joins the group nor disturbs its members. Kept for the bus's lifetime and
/// dropped on a thread of its own: librdkafka can block in close after
/// `committed()` (see NOTES.md).
struct LagReader {
    consumer: Option<BaseConsumer>,
}

impl LagReader {
    fn read(
        &self,
        group: &str,
        topics: &[String],
        timeout: Duration,
    ) -> Result<GroupLag, EventError> {
        let Some(c) = &self.consumer else {
            return Err(EventError::Closed);
        };
        // Four requests however many topics and partitions: the metadata of
        // all topics, the committed offsets, and each end of every partition
        // in one ListOffsets per end. (A metadata request per topic and two
        // ListOffsets per partition made the feed's group alone ask the
        // broker 36 times every refresh, at rest.)
        let md = c.fetch_metadata(None, timeout).map_err(broker_err)?;
        let mut tpl = TopicPartitionList::new();
        for t in topics {
            for mt in md.topics().iter().filter(|mt| mt.name() == t) {
                // A topic the broker does not know comes back with an error
                // and no partitions: it contributes nothing.
                for p in mt.partitions() {
                    tpl.add_partition(t, p.id());
                }
            }
        }
        if tpl.count() == 0 {
            return Ok(GroupLag {
                group: group.to_string(),
                partitions: Vec::new(),
            });
        }
        let committed = c
            .committed_offsets(tpl.clone(), timeout)
            .map_err(broker_err)?;
        let ends = |at: Offset| -> Result<TopicPartitionList, EventError> {
            let mut q = tpl.clone();
            q.set_all_offsets(at).map_err(broker_err)?;
            c.offsets_for_times(q, timeout).map_err(broker_err)
        };
        let (lows, highs) = (ends(Offset::Beginning)?, ends(Offset::End)?);
        let at = |l: &TopicPartitionList, t: &str, p: i32| match l
            .find_partition(t, p)
            .map(|e| e.offset())
        {
            Some(Offset::Offset(o)) => Some(o),
            _ => None,
        };
        let mut partitions = Vec::new();
        for e in tpl.elements() {
            let (t, p) = (e.topic(), e.partition());
            partitions.push(PartitionLag {
                topic: t.to_string(),
                partition: p,
                committed: at(&committed, t, p),
                low_watermark: at(&lows, t, p).unwrap_or(0).max(0),
                high_watermark: at(&highs, t, p).unwrap_or(0).max(0),
            });
        }
        // Serve the client's queued events (logs, errors), so they do not pile up.
        let _ = c.poll(Duration::ZERO);
        Ok(GroupLag {
            group: group.to_string(),
            partitions,
        })
    }
}

impl Drop for LagReader {
    fn drop(&mut self) {
        if let Some(c) = self.consumer.take() {
            let _ = std::thread::Builder::new()
                .name("kafka-lag-reader-close".into())
                .spawn(move || drop(c));
        }
    }
}

/// The subscription's client context: librdkafka's log lines and errors go
/// to the service's log with the group named, and so does every rebalance.
struct GroupContext {
    group: String,
    /// Set on every assignment, so a paused subscription pauses the new
    /// partitions too.
    reassigned: Arc<AtomicBool>,
    /// Set when an asynchronous commit fails, so the subscription commits
    /// again instead of leaving the group's offsets behind what it handled.
    commit_failed: Arc<AtomicBool>,
    /// Requests sent so far per request type, summed over brokers, as of
    /// the last statistics report.
    requests_seen: Mutex<BTreeMap<String, i64>>,
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        let group = &self.group;
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(%group, facility = fac, "librdkafka: {log_message}");
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(%group, facility = fac, "librdkafka: {log_message}");
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(%group, facility = fac, "librdkafka: {log_message}");
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(%group, facility = fac, "librdkafka: {log_message}");
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(group = %self.group, %error, reason, "kafka consumer error");
    }

    /// librdkafka's statistics: what this consumer asked the brokers since
    /// the last report goes to `kafka_consumer_requests_total`.
    fn stats(&self, statistics: rdkafka::Statistics) {
        let mut now: BTreeMap<String, i64> = BTreeMap::new();
        for b in statistics.brokers.values() {
            for (kind, n) in &b.req {
                *now.entry(kind.clone()).or_default() += n;
            }
        }
        let mut seen = self.requests_seen.lock().unwrap_or_else(|p| p.into_inner());
        for (kind, n) in &now {
            let delta = n - seen.get(kind).copied().unwrap_or(0);
            if delta > 0 {
                crate::metrics::count_consumer_requests(&self.group, kind, delta as u64);
            }
        }
        *seen = now;
    }
}

impl ConsumerContext for GroupContext {
    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        match result {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => {
                // Logged once per failed spell; the retry may fail again.
                if !self.commit_failed.swap(true, Ordering::AcqRel) {
                    tracing::warn!(group = %self.group, error = %e, "committing the group's offsets failed; committing again");
                }
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let list = |tpl: &TopicPartitionList| {
            tpl.elements()
                .iter()
                .map(|e| format!("{}/{}", e.topic(), e.partition()))
                .collect::<Vec<_>>()
                .join(",")
        };
        match rebalance {
            Rebalance::Assign(tpl) => {
                self.reassigned.store(true, Ordering::Release);
                tracing::info!(group = %self.group, partitions = %list(tpl), "kafka partitions assigned");
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(group = %self.group, partitions = %list(tpl), "kafka partitions revoked");
            }
            Rebalance::Error(e) => {
                tracing::error!(group = %self.group, error = %e, "kafka rebalance failed");
            }
        }
    }
}

struct KafkaSubscription {
    consumer: Arc<StreamConsumer<GroupContext>>,
    settings: KafkaSettings,
    uncommitted: u32,
    last_commit: Instant,
    /// See [`GroupContext::commit_failed`].
    commit_failed: Arc<AtomicBool>,
    /// Pausing while idle, when the bus has a doorbell.
    idle: Option<Idle>,
}

/// A subscription's idle state: with nothing to do it pauses its partitions
/// (no fetches; the group membership and heartbeats go on) and resumes them
/// when the doorbell names one of its topics, when the doorbell cannot be
/// trusted (not connected, rings missed), or when its safety check finds
/// records it has not read.
///
/// Pausing discards a fetch in flight, so a subscription pauses only after
/// asking the broker (committed offsets and watermarks: [`behind`]) that no
/// assigned partition holds records beyond its position. A record published
/// after that question rings the doorbell, which wakes it again.
struct Idle {
    bell: Arc<Doorbell>,
    rings: tokio::sync::broadcast::Receiver<Ring>,
    topics: BTreeSet<String>,
    reassigned: Arc<AtomicBool>,
    paused: bool,
    /// Awake at least until then (after a record, a ring, an assignment).
    awake_until: tokio::time::Instant,
    /// When a paused subscription asks the broker whether it missed records.
    check_at: tokio::time::Instant,
    safety: Duration,
    group: String,
}

/// Whether a wake-up or pause decision is due, and which.
enum Step {
    /// Nothing to change; look again at this instant.
    Wait(tokio::time::Instant),
    /// Ask the broker whether a partition is behind; pause if none is (or,
    /// when paused, resume if one is).
    Check,
}

impl Idle {
    /// Take in what the doorbell rang.
    fn hear(&mut self, ring: Result<Ring, tokio::sync::broadcast::error::RecvError>) {
        use tokio::sync::broadcast::error::RecvError;
        let wake = match ring {
            Ok(Ring::Topic(t)) => self.topics.contains(&*t),
            Ok(Ring::All) | Err(RecvError::Lagged(_)) => true,
            Err(RecvError::Closed) => false,
        };
        if wake {
            self.stay_awake(AWAKE_AFTER_RECORD);
        }
    }

    fn stay_awake(&mut self, d: Duration) {
        self.awake_until = self.awake_until.max(tokio::time::Instant::now() + d);
    }

    /// Resume or pause as the state says; tells when to look again, or that
    /// the broker must be asked first.
    fn settle<C: Consumer<GroupContext>>(&mut self, consumer: &C) -> Step {
        use tokio::sync::broadcast::error::TryRecvError;
        loop {
            match self.rings.try_recv() {
                Ok(r) => self.hear(Ok(r)),
                Err(TryRecvError::Lagged(_)) => self.stay_awake(AWAKE_AFTER_RECORD),
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            }
        }
        // New partitions may hold a backlog: fetch them before pausing.
        if self.reassigned.swap(false, Ordering::AcqRel) {
            self.stay_awake(AWAKE_AFTER_ASSIGNMENT);
        }
        let now = tokio::time::Instant::now();
        let want_awake = now < self.awake_until || !self.bell.connected();
        if want_awake && self.paused {
            self.set_paused(consumer, false);
        }
        match (self.paused, want_awake) {
            (false, true) => Step::Wait(self.awake_until),
            (false, false) => Step::Check,
            (true, _) if now >= self.check_at => Step::Check,
            (true, _) => Step::Wait(self.check_at),
        }
    }

    /// Act on [`behind`]'s answer: `Some(true)`: records wait, stay (or
    /// become) awake; `Some(false)`: nothing waits, pause; `None`: the broker
    /// did not answer, stay awake (a consumer that cannot ask must not sleep).
    fn checked<C: Consumer<GroupContext>>(&mut self, consumer: &C, behind: Option<bool>) {
        let now = tokio::time::Instant::now();
        self.check_at = now + self.safety;
        match behind {
            Some(false) => {
                if !self.paused && now >= self.awake_until {
                    self.set_paused(consumer, true);
                }
            }
            Some(true) | None => {
                self.stay_awake(AWAKE_AFTER_RECORD);
                if self.paused {
                    self.set_paused(consumer, false);
                }
            }
        }
    }

    fn set_paused<C: Consumer<GroupContext>>(&mut self, consumer: &C, pause: bool) {
        let assignment = consumer.assignment().unwrap_or_default();
        let done = if pause {
            consumer.pause(&assignment)
        } else {
            consumer.resume(&assignment)
        };
        if done.is_ok() {
            self.paused = pause;
            if !pause {
                crate::metrics::count_consumer_wake(&self.group);
            }
        }
    }
}

/// Whether any partition assigned to `consumer` holds records beyond what
/// it has read: its position (or, before it read anything, the group's
/// committed offset, or else offset 0) below the high watermark. Two
/// requests (the group's offsets; every partition's end in one ListOffsets).
/// `None` when the broker did not answer within `timeout`.
fn behind(consumer: &StreamConsumer<GroupContext>, timeout: Duration) -> Option<bool> {
    let assignment = consumer.assignment().ok()?;
    if assignment.count() == 0 {
        return Some(false);
    }
    let position = consumer.position().ok()?;
    let committed = consumer
        .committed_offsets(assignment.clone(), timeout)
        .ok()?;
    let mut latest = assignment.clone();
    latest.set_all_offsets(Offset::End).ok()?;
    let ends = consumer.offsets_for_times(latest, timeout).ok()?;
    let at = |tpl: &TopicPartitionList, t: &str, p: i32| match tpl
        .find_partition(t, p)
        .map(|e| e.offset())
    {
        Some(Offset::Offset(o)) => Some(o),
        _ => None,
    };
    for e in assignment.elements() {
        let (t, p) = (e.topic(), e.partition());
        let high = at(&ends, t, p)?;
        let from = at(&position, t, p)
            .or_else(|| at(&committed, t, p))
            .unwrap_or(0);
        if from < high {
            return Some(true);
        }
    }
    Some(false)
}

impl KafkaSubscription {
    fn commit_async(&mut self) -> Result<(), EventError> {
        match self.consumer.commit_consumer_state(CommitMode::Async) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => return Err(broker_err(e)),
        }
        self.uncommitted = 0;
        self.last_commit = Instant::now();
        Ok(())
    }

    /// Drop the consumer off the async runtime with a bound: librdkafka's
    /// close can block (see NOTES: `committed()` on a partially committed group).
    async fn drop_bounded(consumer: Arc<StreamConsumer<GroupContext>>, timeout: Duration) {
        let handle = tokio::task::spawn_blocking(move || drop(consumer));
        if tokio::time::timeout(timeout, handle).await.is_err() {
            tracing::warn!("kafka consumer close timed out");
        }
    }
}

#[async_trait]
impl Subscription for KafkaSubscription {
    async fn next(&mut self, wait: Duration) -> Result<Option<Delivery>, EventError> {
        // An asynchronous commit that failed counted its records as
        // committed; without a new one the group's offsets (and the lag
        // everyone reads from them) would stay behind until the next record.
        if self.commit_failed.swap(false, Ordering::AcqRel) {
            self.uncommitted = self.uncommitted.max(1);
        }
        if self.uncommitted > 0 && self.last_commit.elapsed() >= self.settings.commit_interval {
            self.commit_async()?;
        }
        broker_slow(self.settings.fault_value).await;
        let deadline = tokio::time::Instant::now() + wait;
        let consumer = self.consumer.clone();
        // `recv` is asked on every turn, paused or not: it also serves the
        // group's callbacks (rebalances, statistics) and tells librdkafka the
        // application is polling.
        let msg = loop {
            let Some(idle) = self.idle.as_mut() else {
                match tokio::time::timeout_at(deadline, consumer.recv()).await {
                    Err(_) => return Ok(None),
                    Ok(m) => break m,
                }
            };
            let look_again = match idle.settle(&*consumer) {
                Step::Wait(at) => at.min(deadline),
                Step::Check => {
                    let (c, timeout) = (consumer.clone(), BEHIND_CHECK_TIMEOUT);
                    let answer = tokio::task::spawn_blocking(move || behind(&c, timeout))
                        .await
                        .ok()
                        .flatten();
                    idle.checked(&*consumer, answer);
                    continue;
                }
            };
            let paused = idle.paused;
            let ring = async {
                if paused {
                    idle.rings.recv().await
                } else {
                    std::future::pending().await
                }
            };
            // Biased: a record already here wins over a deadline that has
            // passed (the runner asks with no wait for what else arrived).
            let heard = tokio::select! {
                biased;
                m = consumer.recv() => break m,
                r = ring => Some(r),
                _ = tokio::time::sleep_until(look_again) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Ok(None);
                    }
                    None
                }
            };
            if let Some(r) = heard {
                idle.hear(r);
            }
        };
        let msg = msg.map_err(broker_err)?;
        if let Some(idle) = self.idle.as_mut() {
            idle.stay_awake(AWAKE_AFTER_RECORD);
        }
        let key = msg
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default();
        let headers = msg
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| {
                        (
                            h.key.to_string(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let payload = msg.payload().unwrap_or_default().to_vec();
        let topic = msg.topic().to_string();
        let (partition, offset) = (msg.partition(), msg.offset());
        let envelope = match Envelope::from_wire(&key, headers.clone(), payload.clone()) {
            Ok(e) => e,
            // A record that is not an envelope still gets delivered, so the
            // runner can dead-letter it instead of blocking the partition.
            Err(err) => {
                let mut h: std::collections::BTreeMap<_, _> = headers.into_iter().collect();
                h.insert("decode-error".into(), err.to_string());
                Envelope {
                    id: uuid::Uuid::nil(),
                    event_type: String::new(),
                    schema_version: 0,
                    tenant_id: String::new(),
                    key,
                    occurred_at_ms: msg.timestamp().to_millis().unwrap_or(0),
                    headers: h,
                    payload,
                }
            }
        };
        Ok(Some(Delivery {
            topic,
            partition,
            offset,
            envelope,
        }))
    }

    async fn ack(&mut self, d: &Delivery) -> Result<(), EventError> {
        self.consumer
            .store_offset(&d.topic, d.partition, d.offset)
            .map_err(broker_err)?;
        self.uncommitted += 1;
        if self.uncommitted >= self.settings.commit_every_acks {
            self.commit_async()?;
        }
        Ok(())
    }

    async fn close(self: Box<Self>) -> Result<(), EventError> {
        let consumer = self.consumer.clone();
        let timeout = self.settings.op_timeout;
        let commit = tokio::task::spawn_blocking(move || {
            match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
                Err(e) => Err(broker_err(e)),
            }
        });
        let res = match tokio::time::timeout(timeout, commit).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(EventError::Broker(e.to_string())),
            Err(_) => Err(EventError::Timeout(timeout)),
        };
        Self::drop_bounded(self.consumer, timeout).await;
        res
    }

    async fn abort(self: Box<Self>) {
        let timeout = self.settings.op_timeout;
        Self::drop_bounded(self.consumer, timeout).await;
    }
}
