//! Kafka [`EventBus`] through rdkafka: an idempotent keyed producer and
//! consumer-group members with manual offset storage and batched commits.
//!
//! The settings are the ones measured to pass the contract suite on the
//! native `tansu` broker (see `docs/adr/0002-event-backbone.md`): short fetch
//! waits (tansu holds every fetch for the full wait), acks=all with an
//! idempotent producer, no auto-commit, offsets stored only on ack, and
//! consumers closed with a timeout.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use rdkafka::{
    ClientConfig, Message,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{CommitMode, Consumer, StreamConsumer},
    error::{KafkaError, RDKafkaErrorCode},
    message::{Header, Headers, OwnedHeaders},
    producer::{FutureProducer, FutureRecord, Producer, future_producer::OwnedDeliveryResult},
};

use super::{Delivery, Envelope, EventBus, EventError, Subscription};

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
        }
    }

    /// [`KafkaSettings::new`] with `SHOPSTREAM_KAFKA_BATCH_NUM_MESSAGES` and
    /// `SHOPSTREAM_KAFKA_FETCH_WAIT_MAX_MS` applied (a real Kafka wants batching).
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
            ..d
        })
    }

    fn base(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("broker.address.family", "v4")
            .set("socket.connection.setup.timeout.ms", "5000");
        c
    }
}

fn broker_err(e: KafkaError) -> EventError {
    EventError::Broker(e.to_string())
}

/// The Kafka bus. Cheap to clone (the producer is shared).
#[derive(Clone)]
pub struct KafkaBus {
    settings: KafkaSettings,
    producer: FutureProducer,
    admin: Arc<AdminClient<DefaultClientContext>>,
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
    pub fn connect(
        endpoints: &crate::config::Endpoints,
    ) -> Result<Arc<dyn crate::events::EventBus>, EventError> {
        let settings = KafkaSettings::from_env(&endpoints.kafka_brokers)
            .map_err(|e| EventError::Broker(e.to_string()))?;
        Ok(Arc::new(KafkaBus::new(settings)?))
    }

    pub fn new(settings: KafkaSettings) -> Result<KafkaBus, EventError> {
        let producer: FutureProducer = settings
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
            )
            .create()
            .map_err(broker_err)?;
        let admin: AdminClient<DefaultClientContext> =
            settings.base().create().map_err(broker_err)?;
        Ok(KafkaBus {
            settings,
            producer,
            admin: Arc::new(admin),
        })
    }

    fn record<'a>(topic: &'a str, e: &'a Envelope) -> FutureRecord<'a, str, [u8]> {
        let mut h = OwnedHeaders::new();
        for (k, v) in e.wire_headers() {
            h = h.insert(Header {
                key: &k,
                value: Some(v.as_bytes()),
            });
        }
        FutureRecord::to(topic)
            .key(e.key.as_str())
            .payload(e.payload.as_slice())
            .headers(h)
            .timestamp(e.occurred_at_ms)
    }

    /// Wait until the broker answers a metadata request.
    pub async fn ping(&self, timeout: Duration) -> Result<(), EventError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || {
            producer
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
        let res = self
            .admin
            .create_topics([&t], &opts)
            .await
            .map_err(broker_err)?;
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
        let timeout = Duration::from_millis(u64::from(self.settings.message_timeout_ms));
        self.producer
            .send(Self::record(topic, event), timeout)
            .await
            .map(|_| ())
            .map_err(|(e, _)| broker_err(e))
    }

    async fn publish_batch(&self, topic: &str, events: &[Envelope]) -> Result<(), EventError> {
        fn check(
            r: Result<OwnedDeliveryResult, futures::channel::oneshot::Canceled>,
        ) -> Result<(), EventError> {
            match r {
                Ok(Ok(_)) => Ok(()),
                Ok(Err((e, _))) => Err(broker_err(e)),
                Err(_) => Err(EventError::Broker("producer dropped a delivery".into())),
            }
        }
        // `send_result` enqueues synchronously, so records enter the producer in
        // slice order; the idempotent producer keeps that order per partition
        // with many requests in flight.
        let mut pending = std::collections::VecDeque::new();
        for e in events {
            loop {
                match self.producer.send_result(Self::record(topic, e)) {
                    Ok(f) => {
                        pending.push_back(f);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        match pending.pop_front() {
                            Some(f) => check(f.await)?,
                            None => tokio::time::sleep(Duration::from_millis(10)).await,
                        }
                    }
                    Err((e, _)) => return Err(broker_err(e)),
                }
            }
            if pending.len() >= self.settings.max_in_flight_publishes
                && let Some(f) = pending.pop_front()
            {
                check(f.await)?;
            }
        }
        while let Some(f) = pending.pop_front() {
            check(f.await)?;
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Box<dyn Subscription>, EventError> {
        let consumer: StreamConsumer = self
            .settings
            .base()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set(
                "fetch.wait.max.ms",
                self.settings.fetch_wait_max_ms.to_string(),
            )
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .create()
            .map_err(broker_err)?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&names).map_err(broker_err)?;
        Ok(Box::new(KafkaSubscription {
            consumer: Arc::new(consumer),
            settings: self.settings.clone(),
            uncommitted: 0,
            last_commit: Instant::now(),
        }))
    }
}

struct KafkaSubscription {
    consumer: Arc<StreamConsumer>,
    settings: KafkaSettings,
    uncommitted: u32,
    last_commit: Instant,
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
    async fn drop_bounded(consumer: Arc<StreamConsumer>, timeout: Duration) {
        let handle = tokio::task::spawn_blocking(move || drop(consumer));
        if tokio::time::timeout(timeout, handle).await.is_err() {
            tracing::warn!("kafka consumer close timed out");
        }
    }
}

#[async_trait]
impl Subscription for KafkaSubscription {
    async fn next(&mut self, wait: Duration) -> Result<Option<Delivery>, EventError> {
        if self.uncommitted > 0 && self.last_commit.elapsed() >= self.settings.commit_interval {
            self.commit_async()?;
        }
        let msg = match tokio::time::timeout(wait, self.consumer.recv()).await {
            Err(_) => return Ok(None),
            Ok(Err(e)) => return Err(broker_err(e)),
            Ok(Ok(m)) => m,
        };
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
