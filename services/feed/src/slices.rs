//! Where slices live: a Redis sorted set per user (`feed:{tenant}:{user}`,
//! member = item id, score = the stored log score, with the time it was
//! computed beside it, both expiring after [`SLICE_TTL_S`]) and the same
//! rows in Postgres, the durable copy that serves when Redis misses or is
//! down and repopulates it.

use std::sync::atomic::{AtomicI64, Ordering};

use redis::aio::ConnectionManager;
use shopstream_platform::{faults, shutdown::sleep_or_stop};
use sqlx::{PgPool, Row};
use tokio_util::sync::CancellationToken;

use crate::domain::{
    cursor::{FeedPosition, after},
    features::SLICE_LEN,
};

/// How long an unread slice stays in Redis.
pub const SLICE_TTL_S: u64 = 24 * 3600;
/// Keys looked at per `SCAN` step of a flush.
const FLUSH_SCAN_COUNT: usize = 1_000;
/// The catalog fault that flushes every slice from Redis once per set.
pub const CACHE_FLUSH: &str = "feed-cache-flush";

/// A stored slice's cards (best first) and when it was computed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Stored {
    pub cards: Vec<(f64, String)>,
    pub computed_ms: i64,
}

#[derive(Debug, Clone)]
pub struct Slices {
    pub redis: ConnectionManager,
    pub pool: PgPool,
}

fn key(tenant: &str, user: &str) -> String {
    format!("feed:{tenant}:{user}")
}

fn meta_key(tenant: &str, user: &str) -> String {
    format!("feed:{tenant}:{user}:at")
}

/// What [`Slices::write`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    Both,
    /// Stored in Postgres; Redis refused it (why).
    PostgresOnly(String),
    /// The user was erased: nothing stored.
    Skipped,
}

/// Take the slice's lock in `tx`: one writer per slice at a time (the
/// materializer, a backfill, a new user's first page and a DSAR erase may
/// race); without it two delete-then-insert transactions collide on the rows
/// the first one inserted.
pub(crate) async fn lock(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    tenant: &str,
    user: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1 || ':' || $2, 0))")
        .bind(tenant)
        .bind(user)
        .execute(&mut **tx)
        .await
        .map(|_| ())
}

async fn pg_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    tenant: &str,
    user: &str,
    cards: &[(f64, String)],
    computed_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM slices WHERE tenant = $1 AND user_id = $2")
        .bind(tenant)
        .bind(user)
        .execute(&mut **tx)
        .await?;
    let (scores, items): (Vec<f64>, Vec<String>) = cards.iter().cloned().unzip();
    sqlx::query(
        "INSERT INTO slices (tenant, user_id, item_id, score)
         SELECT $1, $2, i, s FROM unnest($3::text[], $4::float8[]) AS u(i, s)",
    )
    .bind(tenant)
    .bind(user)
    .bind(&items)
    .bind(&scores)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO slice_meta (tenant, user_id, computed_ms, cards) VALUES ($1, $2, $3, $4)
         ON CONFLICT (tenant, user_id) DO UPDATE SET computed_ms = $3, cards = $4",
    )
    .bind(tenant)
    .bind(user)
    .bind(computed_ms)
    .bind(cards.len() as i32)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Slices {
    /// Replace `user`'s slice in Redis, atomically.
    pub async fn write_redis(
        &self,
        tenant: &str,
        user: &str,
        cards: &[(f64, String)],
        computed_ms: i64,
    ) -> redis::RedisResult<()> {
        let (k, m) = (key(tenant, user), meta_key(tenant, user));
        let mut p = redis::pipe();
        p.atomic().del(&k).ignore();
        if !cards.is_empty() {
            let members: Vec<(f64, &str)> = cards.iter().map(|(s, i)| (*s, i.as_str())).collect();
            p.zadd_multiple(&k, &members)
                .ignore()
                .expire(&k, SLICE_TTL_S as i64)
                .ignore();
        }
        p.set_ex(&m, computed_ms, SLICE_TTL_S).ignore();
        p.query_async::<()>(&mut self.redis.clone()).await
    }

    /// Replace `user`'s slice in Postgres, in one transaction.
    pub async fn write_pg(
        &self,
        tenant: &str,
        user: &str,
        cards: &[(f64, String)],
        computed_ms: i64,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        lock(&mut tx, tenant, user).await?;
        pg_rows(&mut tx, tenant, user, cards, computed_ms).await?;
        tx.commit().await
    }

    /// Replace `user`'s slice in Postgres (committed first, so a reader
    /// that falls back to Postgres never puts an older slice back in Redis)
    /// and then in Redis, unless the user was erased (a member of the DSAR
    /// blocked set; compliance blocks before it erases). The set is read
    /// under the slice's lock, which the feed's DSAR erase takes too, and
    /// again after the Redis write: a write that raced an erasure removes
    /// what it stored, so a slice computed before an erasure never outlives
    /// it.
    ///
    /// `gone` says whether this process erased the user (the engine's
    /// record), which holds even when no blocked set was written.
    pub async fn write(
        &self,
        tenant: &str,
        user: &str,
        cards: &[(f64, String)],
        computed_ms: i64,
        gone: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<Written, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        lock(&mut tx, tenant, user).await?;
        if gone() || self.erased(tenant, user).await {
            tx.rollback().await?;
            return Ok(Written::Skipped);
        }
        pg_rows(&mut tx, tenant, user, cards, computed_ms).await?;
        tx.commit().await?;
        let redis = self
            .write_redis_unless(tenant, user, cards, computed_ms, gone)
            .await;
        if self.erased(tenant, user).await {
            self.delete_redis(tenant, user).await;
            return Ok(Written::Skipped);
        }
        Ok(match redis {
            Ok(true) => Written::Both,
            Ok(false) => Written::Skipped,
            Err(e) => Written::PostgresOnly(e.to_string()),
        })
    }

    /// [`Slices::write_redis`] unless `gone` (the user was erased), and
    /// undone if `gone` turned true meanwhile: a slice read from Postgres
    /// or computed before an erasure does not outlive it in Redis. Whether
    /// it stayed.
    pub async fn write_redis_unless(
        &self,
        tenant: &str,
        user: &str,
        cards: &[(f64, String)],
        computed_ms: i64,
        gone: &(dyn Fn() -> bool + Send + Sync),
    ) -> redis::RedisResult<bool> {
        if gone() {
            return Ok(false);
        }
        self.write_redis(tenant, user, cards, computed_ms).await?;
        if gone() {
            self.delete_redis(tenant, user).await;
            return Ok(false);
        }
        Ok(true)
    }

    /// Delete every slice of every tenant from Redis (`DEL` of its keys, as
    /// an erasure deletes one); how many keys went. Postgres keeps serving
    /// them and readers put them back.
    pub async fn flush_redis(&self) -> redis::RedisResult<usize> {
        let mut conn = self.redis.clone();
        let mut cursor: u64 = 0;
        let mut deleted = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg("feed:*")
                .arg("COUNT")
                .arg(FLUSH_SCAN_COUNT)
                .query_async(&mut conn)
                .await?;
            if !keys.is_empty() {
                let n: usize = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await?;
                deleted += n;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    /// Delete `user`'s slice from Redis (best effort).
    async fn delete_redis(&self, tenant: &str, user: &str) {
        let r: redis::RedisResult<()> = redis::cmd("DEL")
            .arg(key(tenant, user))
            .arg(meta_key(tenant, user))
            .query_async(&mut self.redis.clone())
            .await;
        if let Err(e) = r {
            tracing::debug!(error = %e, "erased user's slice not deleted from redis");
        }
    }

    /// Whether `user` is on the DSAR blocked set; false when Redis cannot
    /// say (the Redis write fails the same way and says so).
    async fn erased(&self, tenant: &str, user: &str) -> bool {
        match crate::dsar::blocked(&self.redis, tenant, &[user.to_string()]).await {
            Ok(b) => !b.is_empty(),
            Err(e) => {
                tracing::debug!(error = %e, "blocked set not read");
                false
            }
        }
    }

    /// Whether Redis holds a slice for each (tenant, user).
    pub async fn present(&self, readers: &[(String, String)]) -> redis::RedisResult<Vec<bool>> {
        let mut p = redis::pipe();
        for (t, u) in readers {
            p.exists(meta_key(t, u));
        }
        p.query_async(&mut self.redis.clone()).await
    }

    /// Up to `n` cards after `from` from Redis; `None` when Redis holds no
    /// slice for `user` (a miss).
    pub async fn read_redis(
        &self,
        tenant: &str,
        user: &str,
        from: Option<&FeedPosition>,
        n: usize,
    ) -> redis::RedisResult<Option<Stored>> {
        let (k, m) = (key(tenant, user), meta_key(tenant, user));
        let mut p = redis::pipe();
        p.get(&m);
        match from {
            // The first page, and one more to know whether a next exists.
            None => p.zrevrange_withscores(&k, 0, n as isize),
            // Everything from the last card's score down (a slice is at most
            // SLICE_LEN long), so ties at that score are split exactly.
            Some(f) => p.zrevrangebyscore_withscores(&k, f.score, "-inf"),
        };
        let (at, cards): (Option<i64>, Vec<(String, f64)>) =
            p.query_async(&mut self.redis.clone()).await?;
        let Some(computed_ms) = at else {
            return Ok(None);
        };
        let cards = cards
            .into_iter()
            .map(|(i, s)| (s, i))
            .filter(|(s, i)| from.is_none_or(|f| after(f, *s, i)))
            .take(n + 1)
            .collect();
        Ok(Some(Stored { cards, computed_ms }))
    }

    /// Up to `n + 1` cards after `from` from Postgres; `None` when no slice
    /// was ever stored for `user`.
    pub async fn read_pg(
        &self,
        tenant: &str,
        user: &str,
        from: Option<&FeedPosition>,
        n: usize,
    ) -> Result<Option<Stored>, sqlx::Error> {
        let Some(computed_ms) = sqlx::query_scalar::<_, i64>(
            "SELECT computed_ms FROM slice_meta WHERE tenant = $1 AND user_id = $2",
        )
        .bind(tenant)
        .bind(user)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let (score, item) = from
            .map(|f| (f.score, f.item.clone()))
            .unwrap_or((f64::INFINITY, String::new()));
        let rows = sqlx::query(
            "SELECT item_id, score FROM slices
             WHERE tenant = $1 AND user_id = $2
               AND (score < $3 OR (score = $3 AND item_id < $4) OR $5)
             ORDER BY score DESC, item_id DESC
             LIMIT $6",
        )
        .bind(tenant)
        .bind(user)
        .bind(score)
        .bind(item)
        .bind(from.is_none())
        .bind(n as i64 + 1)
        .fetch_all(&self.pool)
        .await?;
        Ok(Some(Stored {
            cards: rows
                .into_iter()
                .map(|r| (r.get("score"), r.get("item_id")))
                .collect(),
            computed_ms,
        }))
    }

    /// The whole stored slice of `user` (to put back into Redis).
    pub async fn full_pg(&self, tenant: &str, user: &str) -> Result<Option<Stored>, sqlx::Error> {
        self.read_pg(tenant, user, None, SLICE_LEN).await
    }
}

/// The catalog's `feed-cache-flush`: each time it is set, flush every slice
/// from Redis once (a cold cache). Runs until `stop`.
pub async fn flush_on_fault(slices: Slices, stop: CancellationToken) {
    let seen = AtomicI64::new(0);
    while sleep_or_stop(&stop, faults::POLL_EVERY).await {
        if !faults::once(CACHE_FLUSH, "feed", &seen) {
            continue;
        }
        match slices.flush_redis().await {
            Ok(keys) => tracing::warn!(fault = CACHE_FLUSH, keys, "feed slices flushed from redis"),
            Err(e) => {
                // Not done: try again at the next look.
                seen.store(0, Ordering::SeqCst);
                tracing::warn!(fault = CACHE_FLUSH, error = %e, "feed slices not flushed; retrying");
            }
        }
    }
}
