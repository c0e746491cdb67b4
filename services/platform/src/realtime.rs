//! The realtime fan-out between the services that decide what to tell (the
//! notifications service) and the gateways that hold the live connections.
//!
//! A live update is a [`LiveEvent`] published on the Redis channel
//! `rt:{tenant}:{topic}`. Each gateway holds one pattern subscription per
//! tenant (`rt:{tenant}:*`), never one per connection, and routes what arrives
//! to its local subscribers. Redis pub/sub delivers at most once, so a live
//! event is a hint, not the record: every topic has a source of truth that a
//! subscriber reads to resume (an order's saga steps at orders, a room's
//! capped stream, a product's current like count), and the gateway re-reads
//! it whenever it sees a gap in the sequence numbers.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// First segment of every fan-out channel.
pub const CHANNEL_PREFIX: &str = "rt";

/// The longest room name (`room:<name>`).
pub const MAX_ROOM_NAME: usize = 64;

/// What a client can subscribe to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// Every saga step of one order (`order:<uuid>`), for its owner.
    Order(Uuid),
    /// A product's like count (`product:<uuid>`), for anyone signed in.
    Product(Uuid),
    /// A small chat room (`room:<name>`): lowercase letters, digits, `-`, `_`.
    Room(String),
}

/// Why a topic string was refused (shown to the client in an error frame).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("unknown channel kind {0:?}: use order:<id>, product:<id> or room:<name>")]
    UnknownKind(String),
    #[error("{0:?} is not a valid id (a UUID)")]
    BadId(String),
    #[error(
        "room names are 1 to {MAX_ROOM_NAME} characters of lowercase letters, digits, '-' and '_'"
    )]
    BadRoom,
}

impl Topic {
    /// Parse `kind:value`.
    pub fn parse(s: &str) -> Result<Topic, TopicError> {
        let (kind, value) = s
            .split_once(':')
            .ok_or_else(|| TopicError::UnknownKind(s.to_string()))?;
        let id = || Uuid::parse_str(value).map_err(|_| TopicError::BadId(value.to_string()));
        match kind {
            "order" => Ok(Topic::Order(id()?)),
            "product" => Ok(Topic::Product(id()?)),
            "room" => {
                let ok = !value.is_empty()
                    && value.len() <= MAX_ROOM_NAME
                    && value.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                    });
                if ok {
                    Ok(Topic::Room(value.to_string()))
                } else {
                    Err(TopicError::BadRoom)
                }
            }
            other => Err(TopicError::UnknownKind(other.to_string())),
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topic::Order(id) => write!(f, "order:{id}"),
            Topic::Product(id) => write!(f, "product:{id}"),
            Topic::Room(name) => write!(f, "room:{name}"),
        }
    }
}

/// One live update, as published on the fan-out and sent to clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveEvent {
    /// The topic, as [`Topic`] prints it; `channel` on the wire, the name
    /// clients subscribe with.
    #[serde(rename = "channel")]
    pub topic: String,
    /// Position in the topic's own sequence (an order's step number, a room's
    /// message number, a like counter's version): resumes and gap checks use it.
    pub seq: u64,
    /// What happened: `order.step`, `product.likes`, `room.message`.
    pub kind: String,
    /// The update itself.
    pub data: serde_json::Value,
    /// When the change was committed at its source (ms since the epoch):
    /// delivery latency is measured from here.
    pub committed_ms: i64,
}

/// The WebSocket subprotocol a client offers and the gateway selects.
pub const WS_SUBPROTOCOL: &str = "shopstream.v1";

/// A second subprotocol entry, `bearer.<access token>`, authenticates a
/// WebSocket where a cookie cannot (tokens never go in the URL).
pub const WS_BEARER_PREFIX: &str = "bearer.";

/// What a client sends on `GET /ws` (JSON text frames, tagged by `type`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// Start receiving `channel`; with `after`, first everything after that
    /// sequence number (a resume).
    Subscribe {
        channel: String,
        #[serde(default)]
        after: Option<u64>,
    },
    /// The same as `subscribe` with `after`: pick up where a dropped
    /// connection left off.
    Resume {
        channel: String,
        after: u64,
    },
    Unsubscribe {
        channel: String,
    },
    /// Post `text` to a room (`room:<name>`); answered with `said` and its number.
    Say {
        channel: String,
        text: String,
    },
    /// Answered with `pong` (a struct variant, so stray fields are refused too).
    Ping {},
}

/// What the gateway sends on `GET /ws`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Subscribed {
        channel: String,
    },
    Unsubscribed {
        channel: String,
    },
    /// A room message was stored as number `seq`.
    Said {
        channel: String,
        seq: u64,
    },
    Event(LiveEvent),
    Pong,
    /// A refused message; the connection stays open.
    Error {
        code: String,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel: Option<String>,
    },
}

/// The fan-out channel of `topic` in `tenant`.
pub fn channel(tenant: &str, topic: &Topic) -> String {
    format!("{CHANNEL_PREFIX}:{tenant}:{topic}")
}

/// The one pattern a gateway subscribes to for `tenant`. Glob characters in
/// the tenant id are escaped, so a tenant never matches another's channels.
pub fn tenant_pattern(tenant: &str) -> String {
    let mut p = format!("{CHANNEL_PREFIX}:");
    for c in tenant.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push_str(":*");
    p
}

/// Split a fan-out channel into its tenant and topic (None for anything else).
pub fn parse_channel(name: &str) -> Option<(&str, Topic)> {
    let rest = name.strip_prefix(CHANNEL_PREFIX)?.strip_prefix(':')?;
    // Tenant ids never contain ':' (they are part of Redis keys everywhere).
    let (tenant, topic) = rest.split_once(':')?;
    Some((tenant, Topic::parse(topic).ok()?))
}

/// Publish `event` on `topic`'s channel; returns how many gateways got it.
pub async fn publish(
    redis: &mut redis::aio::ConnectionManager,
    tenant: &str,
    topic: &Topic,
    event: &LiveEvent,
) -> redis::RedisResult<u64> {
    let body = serde_json::to_string(event).map_err(|e| {
        redis::RedisError::from((
            redis::ErrorKind::Client,
            "live event not serialisable",
            e.to_string(),
        ))
    })?;
    redis::cmd("PUBLISH")
        .arg(channel(tenant, topic))
        .arg(body)
        .query_async(redis)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_round_trip_and_bad_ones_say_why() {
        let id = Uuid::now_v7();
        for t in [
            Topic::Order(id),
            Topic::Product(id),
            Topic::Room("lobby-1".into()),
        ] {
            assert_eq!(Topic::parse(&t.to_string()), Ok(t.clone()));
            let name = channel("acme", &t);
            let (tenant, back) = parse_channel(&name).unwrap();
            assert_eq!((tenant, back), ("acme", t));
        }
        assert!(matches!(
            Topic::parse("cart:1"),
            Err(TopicError::UnknownKind(_))
        ));
        assert!(matches!(
            Topic::parse("nothing"),
            Err(TopicError::UnknownKind(_))
        ));
        assert!(matches!(
            Topic::parse("order:42"),
            Err(TopicError::BadId(_))
        ));
        assert_eq!(Topic::parse("room:Lobby"), Err(TopicError::BadRoom));
        assert_eq!(Topic::parse("room:"), Err(TopicError::BadRoom));
        assert_eq!(
            Topic::parse(&format!("room:{}", "a".repeat(MAX_ROOM_NAME + 1))),
            Err(TopicError::BadRoom)
        );
        assert_eq!(parse_channel("other:acme:room:x"), None);
    }

    #[test]
    fn client_messages_are_tagged_json_and_unknown_fields_are_refused() {
        let m: ClientMessage =
            serde_json::from_str(r#"{"type":"subscribe","channel":"room:a"}"#).unwrap();
        assert_eq!(
            m,
            ClientMessage::Subscribe {
                channel: "room:a".into(),
                after: None
            }
        );
        let m: ClientMessage =
            serde_json::from_str(r#"{"type":"resume","channel":"room:a","after":7}"#).unwrap();
        assert_eq!(
            m,
            ClientMessage::Resume {
                channel: "room:a".into(),
                after: 7
            }
        );
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"ping","x":1}"#).is_err());
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"shout"}"#).is_err());
        let e = ServerMessage::Event(LiveEvent {
            topic: "room:a".into(),
            seq: 3,
            kind: "room.message".into(),
            data: serde_json::json!({"text": "hi"}),
            committed_ms: 1,
        });
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], "event");
        assert_eq!(v["seq"], 3);
        assert_eq!(serde_json::from_value::<ServerMessage>(v).unwrap(), e);
    }

    #[test]
    fn a_tenant_pattern_matches_only_that_tenant() {
        assert_eq!(tenant_pattern("acme"), "rt:acme:*");
        assert_eq!(tenant_pattern("a*b"), "rt:a\\*b:*");
    }
}
