//! The gateway as a DSAR participant (ADR 0012), over its own Redis keys,
//! found with `SCAN ... MATCH` on patterns bounded by the subject's tenant
//! (the tenant's glob characters escaped, and each key's remainder checked,
//! so one tenant's pattern never takes another's keys).
//!
//! Key families that relate to a person:
//!
//! | store | keys | what | erase |
//! |---|---|---|---|
//! | `gateway.hold_owners` | `hold-owner:{tenant}:{reservation_id}` → user id | who holds a stock reservation (lives as long as the hold, plus a grace period) | deleted (compare-and-delete: only keys still naming the subject); the hold itself lapses by its TTL at inventory |
//! | `gateway.room_messages` | `rt-room:{tenant}:{room}` (stream) | chat messages: user id, text, time (the last 50 per room) | the subject's entries deleted; the others and the room's numbering stay |
//!
//! Key families that hold no personal data: `product:{tenant}:{product_id}`
//! (cached products), `rt-room-seq:{tenant}:{room}` (a room's message
//! counter). The gateway keeps no sessions (access tokens are checked
//! locally, refresh tokens live at identity), no rate-limit keys and no
//! idempotency keys (`Idempotency-Key` is passed on to payments). Live
//! updates go over Redis pub/sub and are not kept; live connections and the
//! analytics buffer are in memory only.
//!
//! The DSAR suppression set `dsar:blocked:{tenant}` ([`crate::suppression`])
//! names the subject on purpose, as the record that keeps an erased account
//! refused: it belongs to the compliance service and is neither counted nor
//! erased here.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use shopstream_dsar::{Document, Erasure, Error, Export, StoreCount, Subject};
use shopstream_platform::cache::ConnectionManager;

use crate::{inventory::owner_key, rooms::stream_key};

pub const HOLD_OWNERS: &str = "gateway.hold_owners";
pub const ROOM_MESSAGES: &str = "gateway.room_messages";

/// Keys asked for per `SCAN`, and per `MGET` / script call.
const PAGE: usize = 500;

/// Delete each of KEYS whose value is ARGV[1]; returns how many.
const DELETE_IF_OWNER: &str = r"
local n = 0
for _, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[1] then n = n + redis.call('DEL', k) end
end
return n
";

/// The gateway's participant.
pub struct Participant {
    redis: ConnectionManager,
}

/// `s` with Redis' glob characters escaped, for a `MATCH` pattern.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One of the subject's room messages.
struct RoomMessage {
    key: String,
    room: String,
    id: String,
    data: Value,
}

fn unavailable(e: redis::RedisError) -> Error {
    Error::store("redis", e)
}

impl Participant {
    pub fn new(redis: ConnectionManager) -> Participant {
        Participant { redis }
    }

    /// Every key of the family `key_of(tenant, _)` in `tenant`, with the
    /// part after the family's prefix (which holds no `:`).
    async fn keys(
        &self,
        tenant: &str,
        key_of: fn(&str, &str) -> String,
    ) -> Result<Vec<(String, String)>, Error> {
        let pattern = key_of(&glob_escape(tenant), "*");
        let prefix = key_of(tenant, "");
        let mut redis = self.redis.clone();
        let mut found = BTreeSet::new();
        let mut cursor = "0".to_string();
        loop {
            let (next, keys): (String, Vec<String>) = redis::cmd("SCAN")
                .arg(&cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(PAGE)
                .query_async(&mut redis)
                .await
                .map_err(unavailable)?;
            for k in keys {
                if let Some(rest) = k.strip_prefix(&prefix)
                    && !rest.is_empty()
                    && !rest.contains(':')
                {
                    let rest = rest.to_string();
                    found.insert((k, rest));
                }
            }
            if next == "0" {
                break;
            }
            cursor = next;
        }
        Ok(found.into_iter().collect())
    }

    /// The subject's hold-owner keys: (key, reservation id).
    async fn holds(&self, s: &Subject) -> Result<Vec<(String, String)>, Error> {
        let user = s.user_id.to_string();
        let keys = self.keys(&s.tenant, owner_key).await?;
        let mut redis = self.redis.clone();
        let mut out = Vec::new();
        for chunk in keys.chunks(PAGE) {
            let names: Vec<&str> = chunk.iter().map(|(k, _)| k.as_str()).collect();
            let owners: Vec<Option<String>> = redis::cmd("MGET")
                .arg(&names)
                .query_async(&mut redis)
                .await
                .map_err(unavailable)?;
            for ((key, reservation), owner) in chunk.iter().zip(owners) {
                if owner.as_deref() == Some(user.as_str()) {
                    out.push((key.clone(), reservation.clone()));
                }
            }
        }
        Ok(out)
    }

    /// The subject's messages in every room of the tenant.
    async fn messages(&self, s: &Subject) -> Result<Vec<RoomMessage>, Error> {
        let user = s.user_id.to_string();
        let rooms = self.keys(&s.tenant, stream_key).await?;
        let mut redis = self.redis.clone();
        let mut out = Vec::new();
        for (key, room) in rooms {
            // A room keeps its last 50 messages: one read each.
            let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
                .arg(&key)
                .arg("-")
                .arg("+")
                .query_async(&mut redis)
                .await
                .map_err(unavailable)?;
            for (id, fields) in entries {
                let Some(data) = fields
                    .iter()
                    .find(|(k, _)| k == "m")
                    .and_then(|(_, m)| serde_json::from_str::<Value>(m).ok())
                else {
                    continue;
                };
                if data["user_id"].as_str() == Some(user.as_str()) {
                    out.push(RoomMessage {
                        key: key.clone(),
                        room: room.clone(),
                        id,
                        data,
                    });
                }
            }
        }
        Ok(out)
    }
}

#[async_trait::async_trait]
impl shopstream_dsar::Participant for Participant {
    fn name(&self) -> &'static str {
        "gateway"
    }

    async fn export(&self, s: &Subject) -> Result<Export, Error> {
        let holds = self.holds(s).await?;
        let messages = self.messages(s).await?;
        let holds_doc: Vec<Value> = holds
            .iter()
            .map(|(_, reservation)| json!({"reservation_id": reservation}))
            .collect();
        let messages_doc: Vec<Value> = messages
            .iter()
            .map(|m| {
                let seq = m.id.split_once('-').map_or(m.id.as_str(), |(seq, _)| seq);
                json!({"room": m.room, "seq": seq, "text": m.data["text"],
                    "at_ms": m.data["at_ms"]})
            })
            .collect();
        Ok(Export {
            counts: vec![
                StoreCount::new(HOLD_OWNERS, holds.len() as u64, "reservations held"),
                StoreCount::new(ROOM_MESSAGES, messages.len() as u64, "chat messages"),
            ],
            documents: vec![
                Document {
                    store: HOLD_OWNERS.into(),
                    json: json!(holds_doc),
                },
                Document {
                    store: ROOM_MESSAGES.into(),
                    json: json!(messages_doc),
                },
            ],
            objects: vec![],
        })
    }

    async fn erase(&self, s: &Subject) -> Result<Erasure, Error> {
        let user = s.user_id.to_string();
        let holds = self.holds(s).await?;
        let mut redis = self.redis.clone();
        let mut held = 0u64;
        for chunk in holds.chunks(PAGE) {
            let mut script = redis::cmd("EVAL");
            script.arg(DELETE_IF_OWNER).arg(chunk.len());
            for (key, _) in chunk {
                script.arg(key);
            }
            let n: u64 = script
                .arg(&user)
                .query_async(&mut redis)
                .await
                .map_err(unavailable)?;
            held += n;
        }
        let mut said = 0u64;
        for m in self.messages(s).await? {
            let n: u64 = redis::cmd("XDEL")
                .arg(&m.key)
                .arg(&m.id)
                .query_async(&mut redis)
                .await
                .map_err(unavailable)?;
            said += n;
        }
        Ok(Erasure {
            counts: vec![
                StoreCount::new(HOLD_OWNERS, held, "reservation owners deleted"),
                StoreCount::new(ROOM_MESSAGES, said, "chat messages deleted"),
            ],
            retained: vec![],
        })
    }

    async fn scan(&self, s: &Subject) -> Result<Vec<StoreCount>, Error> {
        let holds = self.holds(s).await?.len() as u64;
        let messages = self.messages(s).await?.len() as u64;
        Ok(vec![
            StoreCount::new(HOLD_OWNERS, holds, "reservations held"),
            StoreCount::new(ROOM_MESSAGES, messages, "chat messages"),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_is_a_literal_in_a_pattern() {
        assert_eq!(glob_escape("acme"), "acme");
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
        assert_eq!(owner_key(&glob_escape("t*"), "*"), "hold-owner:t\\*:*");
    }
}
