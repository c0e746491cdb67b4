//! Chat rooms (`room:<name>`): a message is appended to the room's capped
//! Redis stream (its record: the last [`KEEP`] messages) and announced on the
//! realtime fan-out. A message's sequence number is the room's counter, taken
//! in the same Lua script as the append, so numbers and stream order agree
//! across gateways and a subscriber resumes with `after` like on an order.

use shopstream_platform::{
    cache::ConnectionManager,
    realtime::{self, LiveEvent, Topic},
};

/// Messages a room keeps.
pub const KEEP: usize = 50;
/// Longest message, in characters.
pub const MAX_TEXT_CHARS: usize = 500;
/// `kind` of a room message event.
pub const ROOM_MESSAGE: &str = "room.message";

/// Append and number in one step: KEYS = stream, counter; ARGV = message
/// JSON, cap. Returns the new sequence number.
const APPEND: &str = r"
local seq = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[2], seq .. '-1', 'm', ARGV[1])
return seq
";

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomError {
    #[error("a message is 1 to {MAX_TEXT_CHARS} characters, not only white space")]
    BadText,
    #[error("the room store is unavailable (Redis): {0}")]
    Unavailable(String),
}

/// A room's kept messages: `rt-room:{tenant}:{room}`, a stream of entries
/// `seq-1` → `m` = `{"user_id", "text", "at_ms"}`.
pub fn stream_key(tenant: &str, room: &str) -> String {
    format!("rt-room:{tenant}:{room}")
}

/// A room's message counter: `rt-room-seq:{tenant}:{room}`.
pub fn counter_key(tenant: &str, room: &str) -> String {
    format!("rt-room-seq:{tenant}:{room}")
}

/// The event for a stored message.
fn event(room: &str, seq: u64, data: serde_json::Value) -> LiveEvent {
    let committed_ms = data["at_ms"].as_i64().unwrap_or_default();
    LiveEvent {
        topic: Topic::Room(room.to_string()).to_string(),
        seq,
        kind: ROOM_MESSAGE.into(),
        data,
        committed_ms,
    }
}

/// Store `text` from `user` in `room` and announce it; returns its number.
pub async fn say(
    redis: &ConnectionManager,
    tenant: &str,
    room: &str,
    user: &str,
    text: &str,
    now_ms: i64,
) -> Result<u64, RoomError> {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > MAX_TEXT_CHARS {
        return Err(RoomError::BadText);
    }
    let data = serde_json::json!({"user_id": user, "text": text, "at_ms": now_ms});
    let mut r = redis.clone();
    let unavailable = |e: redis::RedisError| RoomError::Unavailable(e.to_string());
    let seq: u64 = redis::cmd("EVAL")
        .arg(APPEND)
        .arg(2)
        .arg(stream_key(tenant, room))
        .arg(counter_key(tenant, room))
        .arg(data.to_string())
        .arg(KEEP)
        .query_async(&mut r)
        .await
        .map_err(unavailable)?;
    let topic = Topic::Room(room.to_string());
    realtime::publish(&mut r, tenant, &topic, &event(room, seq, data))
        .await
        .map_err(unavailable)?;
    Ok(seq)
}

/// The kept messages numbered after `after`, oldest first.
pub async fn after(
    redis: &ConnectionManager,
    tenant: &str,
    room: &str,
    after: u64,
) -> Result<Vec<LiveEvent>, RoomError> {
    let mut r = redis.clone();
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(stream_key(tenant, room))
        .arg(format!("({after}-1"))
        .arg("+")
        .query_async(&mut r)
        .await
        .map_err(|e| RoomError::Unavailable(e.to_string()))?;
    Ok(entries
        .into_iter()
        .filter_map(|(id, fields)| {
            let seq = id.split_once('-')?.0.parse::<u64>().ok()?;
            let (_, json) = fields.into_iter().find(|(k, _)| k == "m")?;
            Some(event(room, seq, serde_json::from_str(&json).ok()?))
        })
        .collect())
}
