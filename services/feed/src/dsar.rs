//! The feed as a DSAR participant (ADR 0012): everything it holds about one
//! person, store by store.
//!
//! - `feed.activity_keys`: their `PublishActivity` records (kind, object,
//!   client id, a comment's words);
//! - `feed.timeline`: their timeline, through the [`TimelineStore`] port
//!   (Postgres or Scylla: the user's own partitions only);
//! - `feed.signal_log`: the logged signals that name them: their views,
//!   likes, comments, purchases and follows, and other users' follows of
//!   them (found by containment on a GIN index, migration 0002);
//! - `feed.slices`, `feed.slice_meta`: their stored slice in Postgres;
//! - `feed.redis`: their slice in Redis (`feed:{t}:{u}`, `feed:{t}:{u}:at`);
//! - `feed.features`: what the in-memory fold holds about them (their views,
//!   likes, follows, purchases, and who follows them).
//!
//! **Erase** takes them out of the fold first (so no slice is computed from
//! their features afterwards, and their followers' slices are queued for
//! recomputation without them), then deletes the Postgres rows in one
//! transaction, the timeline, and the Redis keys. The item counts they
//! added to the fold (views, likes, comments, purchases per hour) stay until
//! the next restart: they are about items and name nobody. A restart folds
//! the signal log again, which no longer holds the person.
//!
//! **Suppression.** The compliance service keeps erased users in the Redis
//! set `dsar:blocked:{tenant}` ([`blocked_key`]). The feature job drops
//! signals naming a member (an event in flight, a redelivery, a replay of
//! the topics from the beginning must not bring them back), a one-user
//! `Backfill` of a member is refused, `Backfill { all }` skips members, and
//! a page is not computed for one.
//!
//! **Not covered**, and why: other users' own records of following the
//! person (`follow user:<id>` in *their* `activity_keys` and timeline) stay:
//! they are the follower's history and name only the id of an account that
//! no longer exists (and the Scylla keys cannot find them without reading
//! every partition). The `activity.raw` events in the outbox and on the
//! topic carry ids only, never a comment's words (ADR 0011). A slice
//! recomputation or a warm-up already under way when the erase starts may
//! store the person's slice once more; the workflow's scan after the erase
//! sees it, and erasing again removes it.

use std::{collections::HashSet, sync::Arc};

use redis::aio::ConnectionManager;
use serde_json::{Value, json};
use shopstream_dsar::{Document, Erasure, Error, Export, Participant, StoreCount, Subject};
use sqlx::{PgPool, Row as _};

use crate::{
    domain::activity::Activity,
    engine::Engine,
    timeline::{TimelineError, TimelineStore},
    warm::Warmer,
};

pub const ACTIVITY_KEYS: &str = "feed.activity_keys";
pub const TIMELINE: &str = "feed.timeline";
pub const SIGNAL_LOG: &str = "feed.signal_log";
pub const SLICES: &str = "feed.slices";
pub const SLICE_META: &str = "feed.slice_meta";
pub const REDIS: &str = "feed.redis";
pub const FEATURES: &str = "feed.features";

/// Users checked against the blocked set per Redis round trip.
const BLOCKED_BATCH: usize = 1_000;

/// The Redis set of the users of `tenant` that a DSAR erased; the
/// compliance service keeps it, the feed only reads it.
pub use shopstream_dsar::blocked_key;

/// Which of `users` were erased in `tenant` (members of [`blocked_key`]).
pub async fn blocked(
    redis: &ConnectionManager,
    tenant: &str,
    users: &[String],
) -> redis::RedisResult<HashSet<String>> {
    let key = blocked_key(tenant);
    let mut out = HashSet::new();
    for batch in users.chunks(BLOCKED_BATCH) {
        let mut p = redis::pipe();
        for u in batch {
            p.sismember(&key, u);
        }
        let member: Vec<bool> = p.query_async(&mut redis.clone()).await?;
        out.extend(
            batch
                .iter()
                .zip(member)
                .filter(|(_, m)| *m)
                .map(|(u, _)| u.clone()),
        );
    }
    Ok(out)
}

/// The Redis keys of `user`'s slice (as [`crate::slices`] names them).
fn redis_keys(tenant: &str, user: &str) -> [String; 2] {
    [
        format!("feed:{tenant}:{user}"),
        format!("feed:{tenant}:{user}:at"),
    ]
}

/// The signal log's rows that name `user`: as the actor of a view, like,
/// comment or purchase, as a follower, or as the one followed.
const SIGNALS_OF: &str = "tenant = $1 AND (signals @> $2 OR signals @> $3 OR signals @> $4)";

fn people_patterns(user: &str) -> [Value; 3] {
    [
        json!([{ "user": user }]),
        json!([{ "follower": user }]),
        json!([{ "followee": user }]),
    ]
}

fn timeline_error(e: TimelineError) -> Error {
    Error::store("timeline", e)
}

fn redis_error(e: redis::RedisError) -> Error {
    Error::store("redis", e)
}

fn activity_json(a: &Activity) -> Value {
    json!({
        "activity_id": a.id,
        "kind": a.kind.as_str(),
        "object": a.object.to_string(),
        "text": a.text,
        "client_id": a.client_id,
        "ts_ms": a.ts_ms,
    })
}

/// The feed's stores, as the DSAR workflow sees them.
#[derive(Clone)]
pub struct FeedParticipant {
    pub pool: PgPool,
    pub redis: ConnectionManager,
    pub timeline: Arc<dyn TimelineStore>,
    pub engine: Arc<Engine>,
    /// The cache warmer, whose recent readers are forgotten too (none in a
    /// participant built outside the service).
    pub warmer: Option<Arc<Warmer>>,
}

impl FeedParticipant {
    async fn count_sql(&self, sql: &str, s: &Subject) -> Result<u64, Error> {
        let n: i64 = sqlx::query_scalar(sql)
            .bind(&s.tenant)
            .bind(s.user_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(n as u64)
    }

    async fn count_signals(&self, s: &Subject) -> Result<u64, Error> {
        let [a, b, c] = people_patterns(&s.user_id.to_string());
        let n: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM signal_log WHERE {SIGNALS_OF}"
        ))
        .bind(&s.tenant)
        .bind(a)
        .bind(b)
        .bind(c)
        .fetch_one(&self.pool)
        .await?;
        Ok(n as u64)
    }

    /// Slice rows and the meta row of `user` (text ids in those tables).
    async fn count_slices(&self, s: &Subject) -> Result<(u64, u64), Error> {
        let u = s.user_id.to_string();
        let (cards, meta): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM slices WHERE tenant = $1 AND user_id = $2),
                    (SELECT count(*) FROM slice_meta WHERE tenant = $1 AND user_id = $2)",
        )
        .bind(&s.tenant)
        .bind(&u)
        .fetch_one(&self.pool)
        .await?;
        Ok((cards as u64, meta as u64))
    }

    async fn count_redis(&self, s: &Subject) -> Result<u64, Error> {
        let keys = redis_keys(&s.tenant, &s.user_id.to_string());
        redis::cmd("EXISTS")
            .arg(&keys[..])
            .query_async(&mut self.redis.clone())
            .await
            .map_err(redis_error)
    }
}

#[async_trait::async_trait]
impl Participant for FeedParticipant {
    fn name(&self) -> &'static str {
        "feed"
    }

    async fn export(&self, s: &Subject) -> Result<Export, Error> {
        let (t, u) = (&s.tenant, s.user_id.to_string());
        let keys: Vec<Value> = sqlx::query(
            "SELECT client_id, activity_id, kind, object, body, ts_ms FROM activity_keys
             WHERE tenant = $1 AND actor_id = $2 ORDER BY ts_ms DESC, client_id",
        )
        .bind(t)
        .bind(s.user_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(json!({
                "client_id": r.try_get::<String, _>("client_id")?,
                "activity_id": r.try_get::<uuid::Uuid, _>("activity_id")?,
                "kind": r.try_get::<String, _>("kind")?,
                "object": r.try_get::<String, _>("object")?,
                "body": r.try_get::<String, _>("body")?,
                "ts_ms": r.try_get::<i64, _>("ts_ms")?,
            }))
        })
        .collect::<Result<_, sqlx::Error>>()?;
        let timeline = self
            .timeline
            .export_user(t, s.user_id)
            .await
            .map_err(timeline_error)?;
        let [a, b, c] = people_patterns(&u);
        let signals: Vec<Value> = sqlx::query(&format!(
            "SELECT event_id, topic, signals, ts_ms FROM signal_log WHERE {SIGNALS_OF}
             ORDER BY ts_ms DESC, event_id"
        ))
        .bind(t)
        .bind(a)
        .bind(b)
        .bind(c)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(json!({
                "event_id": r.try_get::<uuid::Uuid, _>("event_id")?,
                "topic": r.try_get::<String, _>("topic")?,
                "signals": r.try_get::<Value, _>("signals")?,
                "ts_ms": r.try_get::<i64, _>("ts_ms")?,
            }))
        })
        .collect::<Result<_, sqlx::Error>>()?;
        let cards: Vec<(String, f64)> = sqlx::query_as(
            "SELECT item_id, score FROM slices WHERE tenant = $1 AND user_id = $2
             ORDER BY score DESC, item_id DESC",
        )
        .bind(t)
        .bind(&u)
        .fetch_all(&self.pool)
        .await?;
        let meta: Option<(i64, i32)> = sqlx::query_as(
            "SELECT computed_ms, cards FROM slice_meta WHERE tenant = $1 AND user_id = $2",
        )
        .bind(t)
        .bind(&u)
        .fetch_optional(&self.pool)
        .await?;
        let [k, m] = redis_keys(t, &u);
        let (cached, cached_at): (Vec<(String, f64)>, Option<i64>) = redis::pipe()
            .zrevrange_withscores(&k, 0, -1)
            .get(&m)
            .query_async(&mut self.redis.clone())
            .await
            .map_err(redis_error)?;
        let features = self.engine.person(t, &u);
        let counts = vec![
            StoreCount::new(ACTIVITY_KEYS, keys.len() as u64, "activities recorded"),
            StoreCount::new(TIMELINE, timeline.len() as u64, self.timeline.backend()),
            StoreCount::new(SIGNAL_LOG, signals.len() as u64, "events naming them"),
            StoreCount::new(SLICES, cards.len() as u64, "cards of their slice"),
            StoreCount::new(SLICE_META, u64::from(meta.is_some()), ""),
            StoreCount::new(
                REDIS,
                u64::from(!cached.is_empty()) + u64::from(cached_at.is_some()),
                "keys",
            ),
            StoreCount::new(FEATURES, features.entries(), "in-memory entries"),
        ];
        let card = |(item, score): &(String, f64)| json!({ "item_id": item, "score": score });
        let documents = vec![
            Document {
                store: ACTIVITY_KEYS.into(),
                json: json!({ "activities": keys }),
            },
            Document {
                store: TIMELINE.into(),
                json: json!({
                    "backend": self.timeline.backend(),
                    "activities": timeline.iter().map(activity_json).collect::<Vec<_>>(),
                }),
            },
            Document {
                store: SIGNAL_LOG.into(),
                json: json!({ "events": signals }),
            },
            Document {
                store: SLICES.into(),
                json: json!({ "cards": cards.iter().map(card).collect::<Vec<_>>() }),
            },
            Document {
                store: SLICE_META.into(),
                json: match meta {
                    Some((computed_ms, n)) => json!({ "computed_ms": computed_ms, "cards": n }),
                    None => Value::Null,
                },
            },
            Document {
                store: REDIS.into(),
                json: Value::Object(serde_json::Map::from_iter([
                    (k, json!(cached.iter().map(card).collect::<Vec<_>>())),
                    (m, json!(cached_at)),
                ])),
            },
            Document {
                store: FEATURES.into(),
                json: serde_json::to_value(&features)
                    .map_err(|e| Error::Invalid(format!("features: {e}")))?,
            },
        ];
        Ok(Export {
            counts,
            documents,
            objects: vec![],
        })
    }

    async fn erase(&self, s: &Subject) -> Result<Erasure, Error> {
        let (t, u) = (&s.tenant, s.user_id.to_string());
        // The fold first: from here on no slice is computed from their
        // features, and their followers' are queued without them.
        self.engine.mark_erased(t, &u);
        let features = self.engine.forget(t, &u).entries();
        if let Some(w) = &self.warmer {
            w.forget(t, &u);
        }
        let mut tx = self.pool.begin().await?;
        let keys = sqlx::query("DELETE FROM activity_keys WHERE tenant = $1 AND actor_id = $2")
            .bind(t)
            .bind(s.user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let [a, b, c] = people_patterns(&u);
        let signals = sqlx::query(&format!("DELETE FROM signal_log WHERE {SIGNALS_OF}"))
            .bind(t)
            .bind(a)
            .bind(b)
            .bind(c)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        // The slice writer's lock (`Slices::write_pg`): a write under way
        // finishes before these deletes, not after.
        crate::slices::lock(&mut tx, t, &u).await?;
        let cards = sqlx::query("DELETE FROM slices WHERE tenant = $1 AND user_id = $2")
            .bind(t)
            .bind(&u)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let meta = sqlx::query("DELETE FROM slice_meta WHERE tenant = $1 AND user_id = $2")
            .bind(t)
            .bind(&u)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        // Redis after the commit: a reader falling back to Postgres finds
        // nothing to put back. A writer that read or computed the slice
        // earlier sees the user erased (`Engine::mark_erased` above, the
        // warmer's forget) after its Redis write and deletes it again
        // (`Slices::write_redis_unless`).
        let redis: u64 = redis::cmd("DEL")
            .arg(&redis_keys(t, &u)[..])
            .query_async(&mut self.redis.clone())
            .await
            .map_err(redis_error)?;
        let timeline = self
            .timeline
            .erase_user(t, s.user_id)
            .await
            .map_err(timeline_error)?;
        Ok(Erasure {
            counts: vec![
                StoreCount::new(ACTIVITY_KEYS, keys, "deleted"),
                StoreCount::new(TIMELINE, timeline, "deleted"),
                StoreCount::new(SIGNAL_LOG, signals, "deleted"),
                StoreCount::new(SLICES, cards, "deleted"),
                StoreCount::new(SLICE_META, meta, "deleted"),
                StoreCount::new(REDIS, redis, "keys deleted"),
                StoreCount::new(FEATURES, features, "forgotten"),
            ],
            retained: vec![],
        })
    }

    async fn scan(&self, s: &Subject) -> Result<Vec<StoreCount>, Error> {
        let keys = self
            .count_sql(
                "SELECT count(*) FROM activity_keys WHERE tenant = $1 AND actor_id = $2",
                s,
            )
            .await?;
        let timeline = self
            .timeline
            .count_user(&s.tenant, s.user_id)
            .await
            .map_err(timeline_error)?;
        let signals = self.count_signals(s).await?;
        let (cards, meta) = self.count_slices(s).await?;
        let redis = self.count_redis(s).await?;
        let features = self
            .engine
            .person(&s.tenant, &s.user_id.to_string())
            .entries();
        Ok(vec![
            StoreCount::new(ACTIVITY_KEYS, keys, ""),
            StoreCount::new(TIMELINE, timeline, self.timeline.backend()),
            StoreCount::new(SIGNAL_LOG, signals, ""),
            StoreCount::new(SLICES, cards, ""),
            StoreCount::new(SLICE_META, meta, ""),
            StoreCount::new(REDIS, redis, "keys"),
            StoreCount::new(FEATURES, features, "in-memory entries"),
        ])
    }
}
