//! Reading `order.lifecycle` from the outside, as any consumer would: a
//! consumer group of its own (so it sees the topic from the start and
//! disturbs nobody), never acknowledging, in a background task that keeps the
//! parsed `order.state_changed` events in a bounded buffer until stopped.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::Deserialize;
use shopstream_platform::events::{
    EventBus,
    kafka::{KafkaBus, KafkaSettings},
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::kit::LabError;

pub const TOPIC: &str = "order.lifecycle";
pub const EVENT_TYPE: &str = "order.state_changed";
/// Events kept; the oldest go first (the lab's own are the newest).
pub const BUFFER_EVENTS: usize = 20_000;
/// How long one poll of the subscription waits.
const POLL: Duration = Duration::from_millis(200);
/// Pause before subscribing again after a broker error.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Bound on the broker's first answer.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// The payload of `order.state_changed`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StateChanged {
    pub order_id: String,
    #[serde(default)]
    pub user_id: String,
    /// Lowercase: pending, reserved, authorized, captured, completed, cancelled.
    pub state: String,
    #[serde(default)]
    pub cancel_reason: Option<String>,
    #[serde(default)]
    pub ts_ms: i64,
}

/// One event and when the lab received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub event: StateChanged,
    pub at: Instant,
}

#[derive(Debug, Default)]
struct Shared {
    events: VecDeque<Received>,
    read: u64,
    last_error: Option<String>,
}

/// A running reader of `order.lifecycle`. Stop it with [`Watcher::stop`].
#[derive(Debug)]
pub struct Watcher {
    shared: Arc<Mutex<Shared>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    /// Dropping the watcher (an interrupted lab) stops the reader too.
    _stop_on_drop: tokio_util::sync::DropGuard,
    pub group: String,
}

impl Watcher {
    /// Check the broker answers, then start reading in the background.
    pub async fn start(brokers: &str, group: String) -> Result<Watcher, LabError> {
        let settings = KafkaSettings::from_env(brokers)
            .map_err(|e| LabError::Failed(format!("kafka settings: {e}")))?;
        let bus =
            KafkaBus::new(settings).map_err(|e| LabError::Failed(format!("kafka client: {e}")))?;
        bus.ping(PING_TIMEOUT).await.map_err(|e| {
            LabError::NotReady(format!(
                "cannot reach the Kafka broker at {brokers} ({e}); is the system up?"
            ))
        })?;
        let shared = Arc::new(Mutex::new(Shared::default()));
        let stop = CancellationToken::new();
        let task = tokio::spawn(read(bus, group.clone(), shared.clone(), stop.clone()));
        Ok(Watcher {
            shared,
            _stop_on_drop: stop.clone().drop_guard(),
            stop,
            task,
            group,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The events of `order_id` received so far, in arrival order.
    pub fn events_of(&self, order_id: &str) -> Vec<Received> {
        self.lock()
            .events
            .iter()
            .filter(|r| r.event.order_id == order_id)
            .cloned()
            .collect()
    }

    /// Events read from the topic so far (all orders), and the last broker error.
    pub fn stats(&self) -> (u64, Option<String>) {
        let s = self.lock();
        (s.read, s.last_error.clone())
    }

    /// Leave the group and end the background task (bounded).
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(15), self.task).await;
    }
}

async fn read(bus: KafkaBus, group: String, shared: Arc<Mutex<Shared>>, stop: CancellationToken) {
    let set_error = |e: String| {
        shared.lock().unwrap_or_else(|p| p.into_inner()).last_error = Some(e);
    };
    while !stop.is_cancelled() {
        let mut sub = match bus.subscribe(&group, &[TOPIC.to_string()]).await {
            Ok(s) => s,
            Err(e) => {
                set_error(e.to_string());
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(RETRY_AFTER) => continue,
                }
            }
        };
        loop {
            if stop.is_cancelled() {
                sub.abort().await;
                return;
            }
            match sub.next(POLL).await {
                Ok(None) => {}
                Ok(Some(d)) => {
                    let env = d.envelope;
                    let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
                    s.read += 1;
                    if env.event_type != EVENT_TYPE && !env.event_type.is_empty() {
                        continue;
                    }
                    if let Ok(event) = env.json::<StateChanged>() {
                        if s.events.len() >= BUFFER_EVENTS {
                            s.events.pop_front();
                        }
                        s.events.push_back(Received {
                            event,
                            at: Instant::now(),
                        });
                    }
                }
                Err(e) => {
                    // e.g. the topic does not exist yet: a new consumer
                    // fetches fresh metadata, so subscribe again shortly.
                    set_error(e.to_string());
                    sub.abort().await;
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(RETRY_AFTER) => break,
                    }
                }
            }
        }
    }
}

/// The states in first-arrival order, each once (delivery is at-least-once,
/// so a state may arrive twice).
pub fn distinct_states(events: &[Received]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in events {
        if !out.contains(&r.event.state) {
            out.push(r.event.state.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(state: &str) -> Received {
        Received {
            event: StateChanged {
                order_id: "o".into(),
                user_id: "u".into(),
                state: state.into(),
                cancel_reason: None,
                ts_ms: 0,
            },
            at: Instant::now(),
        }
    }

    #[tokio::test]
    async fn repeats_are_dropped_and_first_arrival_order_is_kept() {
        let events: Vec<_> = [
            "pending",
            "reserved",
            "reserved",
            "authorized",
            "reserved",
            "cancelled",
        ]
        .into_iter()
        .map(rec)
        .collect();
        assert_eq!(
            distinct_states(&events),
            ["pending", "reserved", "authorized", "cancelled"]
        );
    }

    #[test]
    fn the_payload_parses_with_optional_fields() {
        let e: StateChanged = serde_json::from_str(
            r#"{"order_id":"o1","user_id":"u1","state":"cancelled","cancel_reason":"payment_failed",
                "total_minor":1999,"currency":"EUR","reservation_id":"r","ts_ms":5}"#,
        )
        .unwrap();
        assert_eq!(e.cancel_reason.as_deref(), Some("payment_failed"));
        let e: StateChanged =
            serde_json::from_str(r#"{"order_id":"o1","state":"pending","cancel_reason":null}"#)
                .unwrap();
        assert_eq!(e.cancel_reason, None);
    }
}
