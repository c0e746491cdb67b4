//! The timeline in Postgres with the wide-column keys: one table whose
//! primary key is (tenant, user, day, ts, activity id), read backwards by
//! the primary key's index. What Postgres gives up against Scylla is in the
//! ADR: one node takes every write, and a partition is a key prefix, not a
//! unit of placement.

use async_trait::async_trait;
use sqlx::{PgPool, Row as _, postgres::PgRow};
use uuid::Uuid;

use super::{Row, TimelineError, TimelinePage, TimelineStore};
use crate::domain::activity::{Activity, day};

fn unavailable(e: sqlx::Error) -> TimelineError {
    TimelineError::Unavailable(e.to_string())
}

/// Where a page ended, as `day:ts:id` (the row's full clustering key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCursor {
    pub day: i32,
    pub ts_ms: i64,
    pub id: Uuid,
}

impl KeyCursor {
    pub fn parse(s: &str) -> Result<KeyCursor, TimelineError> {
        let mut parts = s.splitn(3, ':');
        let (Some(d), Some(t), Some(i)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(TimelineError::BadCursor);
        };
        Ok(KeyCursor {
            day: d.parse().map_err(|_| TimelineError::BadCursor)?,
            ts_ms: t.parse().map_err(|_| TimelineError::BadCursor)?,
            id: Uuid::parse_str(i).map_err(|_| TimelineError::BadCursor)?,
        })
    }

    pub fn of(a: &Activity) -> KeyCursor {
        KeyCursor {
            day: day(a.ts_ms),
            ts_ms: a.ts_ms,
            id: a.id,
        }
    }

    /// Whether the row (day, ts, id) is older than the cursor's.
    pub fn before(&self, d: i32, ts_ms: i64, id: Uuid) -> bool {
        (d, ts_ms, id) < (self.day, self.ts_ms, self.id)
    }

    /// Cut `rows` (fetched with one extra) to `limit` and say where the
    /// next page starts.
    pub fn finish(rows: &mut Vec<Activity>, limit: usize) -> TimelinePage {
        let more = rows.len() > limit;
        rows.truncate(limit);
        TimelinePage {
            next: more
                .then(|| rows.last().map(|a| KeyCursor::of(a).to_string()))
                .flatten(),
            activities: std::mem::take(rows),
        }
    }
}

impl std::fmt::Display for KeyCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.day, self.ts_ms, self.id)
    }
}

/// A stored row (the partition key aside).
fn row_of(r: &PgRow) -> Row {
    Row {
        ts_ms: r.get("ts_ms"),
        id: r.get("activity_id"),
        kind: r.get("kind"),
        object: r.get("object"),
        body: r.get("body"),
        client_id: r.get("client_id"),
    }
}

#[derive(Debug, Clone)]
pub struct PgTimeline {
    pub pool: PgPool,
}

#[async_trait]
impl TimelineStore for PgTimeline {
    async fn append(&self, a: &Activity) -> Result<(), TimelineError> {
        sqlx::query(
            "INSERT INTO timeline (tenant, user_id, day, ts_ms, activity_id, kind, object, body, client_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT DO NOTHING",
        )
        .bind(&a.tenant)
        .bind(a.actor)
        .bind(day(a.ts_ms))
        .bind(a.ts_ms)
        .bind(a.id)
        .bind(a.kind.as_str())
        .bind(a.object.to_string())
        .bind(&a.text)
        .bind(&a.client_id)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn page(
        &self,
        tenant: &str,
        user: Uuid,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<TimelinePage, TimelineError> {
        let from = cursor.map(KeyCursor::parse).transpose()?;
        let (d, t, i) =
            from.map(|c| (c.day, c.ts_ms, c.id))
                .unwrap_or((i32::MAX, i64::MAX, Uuid::max()));
        let rows = sqlx::query(
            "SELECT ts_ms, activity_id, kind, object, body, client_id FROM timeline
             WHERE tenant = $1 AND user_id = $2 AND (day, ts_ms, activity_id) < ($3, $4, $5)
             ORDER BY day DESC, ts_ms DESC, activity_id DESC
             LIMIT $6",
        )
        .bind(tenant)
        .bind(user)
        .bind(d)
        .bind(t)
        .bind(i)
        .bind(limit as i64 + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        let mut out = rows
            .into_iter()
            .map(|r| row_of(&r).into_activity(tenant, user))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(KeyCursor::finish(&mut out, limit))
    }

    async fn count_day(&self, tenant: &str, user: Uuid, d: i32) -> Result<i64, TimelineError> {
        sqlx::query_scalar(
            "SELECT count(*) FROM timeline WHERE tenant = $1 AND user_id = $2 AND day = $3",
        )
        .bind(tenant)
        .bind(user)
        .bind(d)
        .fetch_one(&self.pool)
        .await
        .map_err(unavailable)
    }

    async fn count_user(&self, tenant: &str, user: Uuid) -> Result<u64, TimelineError> {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM timeline WHERE tenant = $1 AND user_id = $2")
                .bind(tenant)
                .bind(user)
                .fetch_one(&self.pool)
                .await
                .map_err(unavailable)?;
        Ok(n as u64)
    }

    async fn export_user(&self, tenant: &str, user: Uuid) -> Result<Vec<Activity>, TimelineError> {
        // One user's rows by the primary key's prefix, newest first.
        let rows = sqlx::query(
            "SELECT ts_ms, activity_id, kind, object, body, client_id FROM timeline
             WHERE tenant = $1 AND user_id = $2
             ORDER BY day DESC, ts_ms DESC, activity_id DESC",
        )
        .bind(tenant)
        .bind(user)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.into_iter()
            .map(|r| row_of(&r).into_activity(tenant, user))
            .collect()
    }

    async fn erase_user(&self, tenant: &str, user: Uuid) -> Result<u64, TimelineError> {
        let r = sqlx::query("DELETE FROM timeline WHERE tenant = $1 AND user_id = $2")
            .bind(tenant)
            .bind(user)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(r.rows_affected())
    }

    async fn ping(&self) -> Result<(), TimelineError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }
}
