//! Who is told what: a pure rule from one event to the notices it causes.

use serde::{Deserialize, Serialize};
use shopstream_platform::realtime::{LiveEvent, Topic};
use uuid::Uuid;

/// `event_type` of a saga step on `order.lifecycle` (orders' schema version 1).
pub const ORDER_STEP_EVENT: &str = "order.step_recorded";
/// `kind` of the live event an order step becomes.
pub const ORDER_STEP_KIND: &str = "order.step";

/// `order.step_recorded` as this service reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderStep {
    pub order_id: String,
    pub user_id: String,
    pub seq: u32,
    pub step: String,
    pub outcome: String,
    pub state: String,
    #[serde(default)]
    pub cancel_reason: Option<String>,
    pub detail: String,
    pub attempts: u32,
    pub at_ms: i64,
}

/// What the order's owner sees of one step: the fields of the gateway's
/// `OrderStepView`, so a live step and a re-read one look the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct StepView<'a> {
    seq: u32,
    step: &'a str,
    outcome: &'a str,
    state: &'a str,
    detail: &'a str,
    at_ms: i64,
    attempts: u32,
}

/// Something to deliver.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// A live update on a topic of the event's tenant.
    Live { topic: Topic, event: LiveEvent },
}

/// Why an event could not be read (retrying cannot help).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("undecodable {event_type}: {reason}")]
pub struct Undecodable {
    pub event_type: String,
    pub reason: String,
}

/// The notices for one event. `committed_ms` is when the event was written at
/// its source (delivery latency is measured from it). Events this service
/// does not act on give none.
pub fn notices(
    event_type: &str,
    payload: &[u8],
    committed_ms: i64,
) -> Result<Vec<Notice>, Undecodable> {
    let bad = |reason: String| Undecodable {
        event_type: event_type.to_string(),
        reason,
    };
    match event_type {
        ORDER_STEP_EVENT => {
            let s: OrderStep = serde_json::from_slice(payload).map_err(|e| bad(e.to_string()))?;
            let order = Uuid::parse_str(&s.order_id).map_err(|e| bad(e.to_string()))?;
            let topic = Topic::Order(order);
            let view = StepView {
                seq: s.seq,
                step: &s.step,
                outcome: &s.outcome,
                state: &s.state,
                detail: &s.detail,
                at_ms: s.at_ms,
                attempts: s.attempts,
            };
            let event = LiveEvent {
                topic: topic.to_string(),
                seq: u64::from(s.seq),
                kind: ORDER_STEP_KIND.into(),
                data: serde_json::to_value(&view).map_err(|e| bad(e.to_string()))?,
                committed_ms,
            };
            Ok(vec![Notice::Live { topic, event }])
        }
        _ => Ok(vec![]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(seq: u32) -> OrderStep {
        OrderStep {
            order_id: Uuid::now_v7().to_string(),
            user_id: "u1".into(),
            seq,
            step: "capture".into(),
            outcome: "succeeded".into(),
            state: "captured".into(),
            cancel_reason: None,
            detail: "pi_1".into(),
            attempts: 2,
            at_ms: 1_000,
        }
    }

    #[test]
    fn a_step_is_one_live_update_for_its_order_with_the_steps_own_seq() {
        let s = step(3);
        let n = notices(ORDER_STEP_EVENT, &serde_json::to_vec(&s).unwrap(), 1_234).unwrap();
        let [Notice::Live { topic, event }] = n.as_slice() else {
            panic!("{n:?}")
        };
        assert_eq!(topic.to_string(), format!("order:{}", s.order_id));
        assert_eq!(event.topic, topic.to_string());
        assert_eq!((event.seq, event.committed_ms), (3, 1_234));
        assert_eq!(
            event.data,
            serde_json::json!({"seq": 3, "step": "capture", "outcome": "succeeded",
                "state": "captured", "detail": "pi_1", "at_ms": 1_000, "attempts": 2})
        );
        // The user id is not shown to the client: the topic is the order's.
        assert!(event.data.get("user_id").is_none());
    }

    #[test]
    fn other_events_give_nothing_and_a_broken_step_is_undecodable() {
        assert_eq!(notices("order.state_changed", b"{}", 0), Ok(vec![]));
        assert!(notices(ORDER_STEP_EVENT, b"{", 0).is_err());
        let mut s = step(1);
        s.order_id = "not-a-uuid".into();
        assert!(notices(ORDER_STEP_EVENT, &serde_json::to_vec(&s).unwrap(), 0).is_err());
    }
}
