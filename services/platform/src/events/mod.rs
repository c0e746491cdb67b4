//! Events: the versioned [`Envelope`], the [`EventBus`] port, its adapters
//! (Kafka through rdkafka for every runtime, in-memory for unit tests and the
//! simulator), the consumer [`runner`] (dedupe, bounded retries, dead-letter
//! topic) and the [`contract`] suite every adapter must pass.
//!
//! Delivery is at-least-once: a consumer acknowledges an event only after it
//! is processed, and every consumer is idempotent by event id.

#[cfg(any(test, feature = "contract-tests"))]
pub mod contract;
pub mod dedupe;
pub mod doorbell;
pub mod kafka;
pub mod memory;
pub mod runner;

use std::{collections::BTreeMap, time::Duration};

use async_trait::async_trait;
use serde::{Serialize, de::DeserializeOwned};
use uuid::Uuid;

use crate::{clock::Clock, ids::IdGen, telemetry};

/// Header names of an event on the wire. Everything else in
/// [`Envelope::headers`] travels as-is (trace context, DLQ reason).
pub mod header {
    pub const EVENT_ID: &str = "event-id";
    pub const EVENT_TYPE: &str = "event-type";
    pub const SCHEMA_VERSION: &str = "event-version";
    pub const TENANT_ID: &str = "tenant-id";
    pub const OCCURRED_AT_MS: &str = "occurred-at-ms";
    pub const TRACEPARENT: &str = "traceparent";
    pub const DLQ_REASON: &str = "dlq-reason";
    pub const DLQ_SOURCE_TOPIC: &str = "dlq-source-topic";
    pub const DLQ_SOURCE_PARTITION: &str = "dlq-source-partition";
    pub const DLQ_SOURCE_OFFSET: &str = "dlq-source-offset";
    pub const DLQ_CONSUMER_GROUP: &str = "dlq-consumer-group";
    pub const DLQ_ATTEMPTS: &str = "dlq-attempts";
}

/// How the event code looks a fault's value up: [`crate::faults::value`] in
/// services; tests pass their own, so they need not touch the process-wide
/// view that other tests (and the fault poller) share.
pub type FaultLookup = fn(name: &str, component: &str) -> Option<i64>;

/// The dead-letter topic of `topic`.
pub fn dlq_topic(topic: &str) -> String {
    format!("{topic}.dlq")
}

/// One event: identity and metadata in headers, the payload as JSON bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Unique per event; consumers dedupe on it.
    pub id: Uuid,
    /// What happened, e.g. `order.state_changed`.
    pub event_type: String,
    /// Version of the payload schema for `event_type`.
    pub schema_version: u16,
    pub tenant_id: String,
    /// Partition key: events with one key are delivered in order.
    pub key: String,
    pub occurred_at_ms: i64,
    /// Extra headers: W3C trace context, DLQ metadata, anything else.
    pub headers: BTreeMap<String, String>,
    pub payload: Vec<u8>,
}

impl Envelope {
    /// A new event carrying the current trace context.
    pub fn new<T: Serialize>(
        event_type: &str,
        schema_version: u16,
        tenant_id: &str,
        key: &str,
        payload: &T,
        clock: &dyn Clock,
        ids: &dyn IdGen,
    ) -> Result<Envelope, EventError> {
        let mut headers = BTreeMap::new();
        telemetry::inject(&mut telemetry::MapCarrier(&mut headers));
        Ok(Envelope {
            id: ids.new_id(),
            event_type: event_type.to_string(),
            schema_version,
            tenant_id: tenant_id.to_string(),
            key: key.to_string(),
            occurred_at_ms: clock.now_ms(),
            headers,
            payload: serde_json::to_vec(payload).map_err(|e| EventError::Encode(e.to_string()))?,
        })
    }

    /// Decode the JSON payload.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, EventError> {
        serde_json::from_slice(&self.payload).map_err(|e| EventError::Decode(e.to_string()))
    }

    /// The W3C trace id this event carries, if any.
    pub fn trace_id(&self) -> Option<String> {
        use opentelemetry::trace::TraceContextExt;
        let cx = telemetry::extract(&telemetry::MapExtractor(&self.headers));
        let sc = cx.span().span_context().clone();
        sc.is_valid().then(|| sc.trace_id().to_string())
    }

    /// All headers as they go on the wire (identity first, then extras).
    pub fn wire_headers(&self) -> Vec<(String, String)> {
        let mut out = vec![
            (header::EVENT_ID.to_string(), self.id.to_string()),
            (header::EVENT_TYPE.to_string(), self.event_type.clone()),
            (
                header::SCHEMA_VERSION.to_string(),
                self.schema_version.to_string(),
            ),
            (header::TENANT_ID.to_string(), self.tenant_id.clone()),
            (
                header::OCCURRED_AT_MS.to_string(),
                self.occurred_at_ms.to_string(),
            ),
        ];
        out.extend(self.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
        out
    }

    /// Rebuild an envelope from wire headers, key and payload.
    pub fn from_wire(
        key: &str,
        headers: impl IntoIterator<Item = (String, String)>,
        payload: Vec<u8>,
    ) -> Result<Envelope, EventError> {
        let mut extra = BTreeMap::new();
        let (mut id, mut ty, mut ver, mut tenant, mut at) = (None, None, None, None, None);
        for (k, v) in headers {
            match k.as_str() {
                header::EVENT_ID => id = Some(v),
                header::EVENT_TYPE => ty = Some(v),
                header::SCHEMA_VERSION => ver = Some(v),
                header::TENANT_ID => tenant = Some(v),
                header::OCCURRED_AT_MS => at = Some(v),
                _ => {
                    extra.insert(k, v);
                }
            }
        }
        let missing = |h: &str| EventError::Decode(format!("missing header {h}"));
        Ok(Envelope {
            id: id
                .ok_or_else(|| missing(header::EVENT_ID))?
                .parse()
                .map_err(|e: uuid::Error| EventError::Decode(format!("event-id: {e}")))?,
            event_type: ty.ok_or_else(|| missing(header::EVENT_TYPE))?,
            schema_version: ver
                .as_deref()
                .unwrap_or("1")
                .parse()
                .map_err(|_| EventError::Decode("event-version is not a number".into()))?,
            tenant_id: tenant.ok_or_else(|| missing(header::TENANT_ID))?,
            key: key.to_string(),
            occurred_at_ms: at
                .as_deref()
                .unwrap_or("0")
                .parse()
                .map_err(|_| EventError::Decode("occurred-at-ms is not a number".into()))?,
            headers: extra,
            payload,
        })
    }
}

/// One event handed to a consumer, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub envelope: Envelope,
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("encoding an event failed: {0}")]
    Encode(String),
    /// The record on the wire is not a valid envelope (a poison message).
    #[error("decoding an event failed: {0}")]
    Decode(String),
    #[error("the broker did not acknowledge within {0:?}")]
    Timeout(Duration),
    #[error("broker error: {0}")]
    Broker(String),
    #[error("the subscription is closed")]
    Closed,
}

/// Where a consumer group stands on one partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// The group's committed position: the next offset it will process.
    /// `None` when the group never committed on this partition.
    pub committed: Option<i64>,
    /// The earliest offset the partition still holds.
    pub low_watermark: i64,
    /// One past the last offset written.
    pub high_watermark: i64,
}

impl PartitionLag {
    /// Where the group resumes: its committed position, or the earliest
    /// record held when it has none (consumers start at the earliest).
    pub fn position(&self) -> i64 {
        self.committed
            .unwrap_or(self.low_watermark)
            .max(self.low_watermark)
    }

    /// Records written that the group has not committed as processed.
    pub fn lag(&self) -> i64 {
        (self.high_watermark - self.position()).max(0)
    }
}

/// A consumer group's lag on its topics, partition by partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupLag {
    pub group: String,
    pub partitions: Vec<PartitionLag>,
}

impl GroupLag {
    /// Records behind, over every partition.
    pub fn total(&self) -> i64 {
        self.partitions.iter().map(PartitionLag::lag).sum()
    }

    /// Records behind per topic (every topic asked about appears, 0 included).
    pub fn by_topic(&self) -> BTreeMap<String, i64> {
        let mut out = BTreeMap::new();
        for p in &self.partitions {
            *out.entry(p.topic.clone()).or_insert(0) += p.lag();
        }
        out
    }

    /// The sum of the group's positions: it grows exactly when the group
    /// commits progress somewhere (used to tell a group that moves from one
    /// that does not).
    pub fn position_sum(&self) -> i64 {
        self.partitions.iter().map(PartitionLag::position).sum()
    }
}

/// The event backbone.
///
/// Contract (checked by [`contract`]):
/// - `publish` returns only after the broker durably holds the event;
/// - events with the same key on a topic are delivered in publish order;
/// - a subscription delivers every event of its topics from the group's
///   committed position: nothing acknowledged is required again, nothing
///   unacknowledged is skipped, across consumer restarts and crashes;
/// - events unacknowledged when a subscription is aborted are delivered again.
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Create `topic` with `partitions` unless it exists.
    async fn ensure_topic(&self, topic: &str, partitions: i32) -> Result<(), EventError>;

    /// Publish one event and wait for the broker's acknowledgement.
    async fn publish(&self, topic: &str, event: &Envelope) -> Result<(), EventError>;

    /// Publish many events, keeping per-key order; returns after all are acknowledged.
    async fn publish_batch(&self, topic: &str, events: &[Envelope]) -> Result<(), EventError> {
        for e in events {
            self.publish(topic, e).await?;
        }
        Ok(())
    }

    /// Join consumer group `group` on `topics`.
    async fn subscribe(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Box<dyn Subscription>, EventError>;

    /// How far `group` is behind on `topics`: for every partition of each
    /// topic, the group's committed position against the high watermark.
    ///
    /// MUST NOT join the group or otherwise disturb its members (it is read
    /// while they consume); MUST list every partition of every topic that
    /// exists, those the group never committed on included (their lag counts
    /// from the earliest record held); a topic that does not exist has no
    /// partitions. Positions are what was *committed*: acknowledgements an
    /// adapter has not committed yet still count as lag.
    async fn lag(&self, group: &str, topics: &[String]) -> Result<GroupLag, EventError>;
}

/// A consumer-group member. Events of one partition arrive in order; the
/// caller acknowledges each after processing it, in the order received.
#[async_trait]
pub trait Subscription: Send {
    /// The next event, or `None` when none arrived within `wait`.
    async fn next(&mut self, wait: Duration) -> Result<Option<Delivery>, EventError>;

    /// Mark `delivery` (and everything before it in its partition) processed.
    /// Adapters may commit acknowledgements in batches; `close` commits the rest.
    async fn ack(&mut self, delivery: &Delivery) -> Result<(), EventError>;

    /// Commit every acknowledgement and leave the group.
    async fn close(self: Box<Self>) -> Result<(), EventError>;

    /// Leave as a crashed process would: acknowledgements not yet committed are lost.
    async fn abort(self: Box<Self>);
}

/// Stable 32-bit FNV-1a, used to pick partitions where the adapter decides.
pub(crate) fn fnv1a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{clock::ManualClock, ids::SequentialIdGen};

    #[test]
    fn envelope_round_trips_through_wire_headers() {
        let e = Envelope::new(
            "order.state_changed",
            2,
            "t1",
            "order-9",
            &serde_json::json!({"state": "PENDING"}),
            &ManualClock::new(42),
            &SequentialIdGen::new(1),
        )
        .unwrap();
        let back = Envelope::from_wire("order-9", e.wire_headers(), e.payload.clone()).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.occurred_at_ms, 42);
        let v: serde_json::Value = back.json().unwrap();
        assert_eq!(v["state"], "PENDING");
    }

    #[test]
    fn a_record_without_identity_headers_is_a_decode_error() {
        let err = Envelope::from_wire("k", vec![], b"{}".to_vec()).unwrap_err();
        assert!(matches!(err, EventError::Decode(_)), "{err}");
    }
}
