//! The timeline in ScyllaDB (or Cassandra): the wide-column design itself.
//!
//! ```cql
//! timeline      PRIMARY KEY ((tenant, user_id, day), ts_ms, activity_id)
//!               WITH CLUSTERING ORDER BY (ts_ms DESC, activity_id DESC)
//! timeline_days PRIMARY KEY ((tenant, user_id), day)
//!               WITH CLUSTERING ORDER BY (day DESC)
//! ```
//!
//! Every statement is prepared (the driver routes each to a replica that
//! owns its partition: token-aware is its default policy), runs at
//! LOCAL_QUORUM and is marked idempotent (an insert of the same row is the
//! same write, so the driver may retry it). A page reads the user's days
//! newest first and each day's partition with the server's paging state; the
//! cursor is (day, paging state), so a page never re-reads what an earlier
//! one returned.
//!
//! A user's whole history (a DSAR export or erase) is found the same way:
//! the day list names every partition of the user, so neither reads more
//! than the user's own partitions (no scan of the table, no secondary
//! index). Erasure deletes each day's partition whole, then the day list.

use async_trait::async_trait;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use scylla::{
    client::{session::Session, session_builder::SessionBuilder},
    response::{PagingState, PagingStateResponse},
    statement::{Consistency, prepared::PreparedStatement},
};
use uuid::Uuid;

use super::{Row, TimelineError, TimelinePage, TimelineStore};
use crate::domain::activity::{Activity, day};

/// The keyspace when none is configured.
pub const KEYSPACE: &str = "shopstream_feed";
/// Bound on connecting.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Days read per lookup of a user's day list.
const DAYS_PER_LOOKUP: i32 = 64;

/// `host:port[,host:port]` (a `scylla://` prefix is allowed) as contact points.
pub fn nodes(url: &str) -> Vec<String> {
    url.split(',')
        .map(|n| {
            n.trim()
                .trim_start_matches("scylla://")
                .trim_end_matches('/')
                .to_string()
        })
        .filter(|n| !n.is_empty())
        .collect()
}

fn unavailable(e: impl std::fmt::Display) -> TimelineError {
    TimelineError::Unavailable(e.to_string())
}

pub struct ScyllaTimeline {
    session: Session,
    insert: PreparedStatement,
    insert_day: PreparedStatement,
    days: PreparedStatement,
    select_day: PreparedStatement,
    count_day: PreparedStatement,
    delete_day: PreparedStatement,
    delete_days: PreparedStatement,
}

impl std::fmt::Debug for ScyllaTimeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScyllaTimeline")
    }
}

/// Where a page ended: the day partition and the server's paging state in
/// it (`None`: the day was read to its end; go on with older days).
#[derive(Debug, Clone, PartialEq, Eq)]
struct DayCursor {
    day: i32,
    state: Option<Vec<u8>>,
}

impl DayCursor {
    fn encode(&self) -> String {
        match &self.state {
            Some(s) => format!("{}:{}", self.day, URL_SAFE_NO_PAD.encode(s)),
            None => format!("{}:", self.day),
        }
    }

    fn parse(s: &str) -> Result<DayCursor, TimelineError> {
        let (d, st) = s.split_once(':').ok_or(TimelineError::BadCursor)?;
        Ok(DayCursor {
            day: d.parse().map_err(|_| TimelineError::BadCursor)?,
            state: if st.is_empty() {
                None
            } else {
                Some(
                    URL_SAFE_NO_PAD
                        .decode(st)
                        .map_err(|_| TimelineError::BadCursor)?,
                )
            },
        })
    }
}

type Columns = (i64, Uuid, String, String, String, String);

/// The activity of one selected row.
fn activity_of(c: Columns, tenant: &str, user: Uuid) -> Result<Activity, TimelineError> {
    let (ts_ms, id, kind, object, body, client_id) = c;
    Row {
        ts_ms,
        id,
        kind,
        object,
        body,
        client_id,
    }
    .into_activity(tenant, user)
}

impl ScyllaTimeline {
    /// Connect to `nodes`, create the keyspace (replication 1 where it does
    /// not exist yet: the compose runtime's single node; production creates
    /// its own with NetworkTopologyStrategy) and the tables, and prepare
    /// every statement.
    pub async fn connect(
        nodes: &[String],
        keyspace: &str,
    ) -> Result<ScyllaTimeline, TimelineError> {
        if !keyspace
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(TimelineError::Unavailable(format!(
                "keyspace {keyspace:?}: only letters, digits and _"
            )));
        }
        let session = SessionBuilder::new()
            .known_nodes(nodes)
            .connection_timeout(CONNECT_TIMEOUT)
            .build()
            .await
            .map_err(unavailable)?;
        let ddl = [
            format!(
                "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = \
                 {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {keyspace}.timeline (tenant text, user_id uuid, day int, \
                 ts_ms bigint, activity_id uuid, kind text, object text, body text, client_id text, \
                 PRIMARY KEY ((tenant, user_id, day), ts_ms, activity_id)) \
                 WITH CLUSTERING ORDER BY (ts_ms DESC, activity_id DESC)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {keyspace}.timeline_days (tenant text, user_id uuid, day int, \
                 PRIMARY KEY ((tenant, user_id), day)) WITH CLUSTERING ORDER BY (day DESC)"
            ),
        ];
        for stmt in ddl {
            session
                .query_unpaged(stmt, &[])
                .await
                .map_err(unavailable)?;
        }
        let prepare = |cql: String| {
            let session = &session;
            async move {
                let mut p = session.prepare(cql).await.map_err(unavailable)?;
                p.set_consistency(Consistency::LocalQuorum);
                p.set_is_idempotent(true);
                Ok::<_, TimelineError>(p)
            }
        };
        Ok(ScyllaTimeline {
            insert: prepare(format!(
                "INSERT INTO {keyspace}.timeline (tenant, user_id, day, ts_ms, activity_id, kind, object, body, client_id) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ))
            .await?,
            insert_day: prepare(format!(
                "INSERT INTO {keyspace}.timeline_days (tenant, user_id, day) VALUES (?, ?, ?)"
            ))
            .await?,
            days: prepare(format!(
                "SELECT day FROM {keyspace}.timeline_days WHERE tenant = ? AND user_id = ? AND day <= ? LIMIT {DAYS_PER_LOOKUP}"
            ))
            .await?,
            select_day: prepare(format!(
                "SELECT ts_ms, activity_id, kind, object, body, client_id FROM {keyspace}.timeline \
                 WHERE tenant = ? AND user_id = ? AND day = ?"
            ))
            .await?,
            count_day: prepare(format!(
                "SELECT count(*) FROM {keyspace}.timeline WHERE tenant = ? AND user_id = ? AND day = ?"
            ))
            .await?,
            delete_day: prepare(format!(
                "DELETE FROM {keyspace}.timeline WHERE tenant = ? AND user_id = ? AND day = ?"
            ))
            .await?,
            delete_days: prepare(format!(
                "DELETE FROM {keyspace}.timeline_days WHERE tenant = ? AND user_id = ?"
            ))
            .await?,
            session,
        })
    }

    /// The user's days at or before `from`, newest first.
    async fn days_from(
        &self,
        tenant: &str,
        user: Uuid,
        from: i32,
    ) -> Result<Vec<i32>, TimelineError> {
        let r = self
            .session
            .execute_unpaged(&self.days, (tenant, user, from))
            .await
            .map_err(unavailable)?
            .into_rows_result()
            .map_err(unavailable)?;
        r.rows::<(i32,)>()
            .map_err(unavailable)?
            .map(|row| row.map(|(d,)| d).map_err(unavailable))
            .collect()
    }

    /// Every row of the partition `(tenant, user, d)`, newest first, read in
    /// the server's pages (a day holds at most
    /// [`MAX_ACTIVITIES_PER_DAY`](super::MAX_ACTIVITIES_PER_DAY) rows).
    async fn whole_day(
        &self,
        tenant: &str,
        user: Uuid,
        d: i32,
    ) -> Result<Vec<Activity>, TimelineError> {
        let mut out = vec![];
        let mut paging = PagingState::start();
        loop {
            let (res, more) = self
                .session
                .execute_single_page(&self.select_day, (tenant, user, d), paging)
                .await
                .map_err(unavailable)?;
            let rows = res.into_rows_result().map_err(unavailable)?;
            for row in rows.rows::<Columns>().map_err(unavailable)? {
                out.push(activity_of(row.map_err(unavailable)?, tenant, user)?);
            }
            match more {
                PagingStateResponse::HasMorePages { state } => paging = state,
                PagingStateResponse::NoMorePages => return Ok(out),
            }
        }
    }

    /// Every day of the user's day list, newest first.
    async fn all_days(&self, tenant: &str, user: Uuid) -> Result<Vec<i32>, TimelineError> {
        let mut out = vec![];
        let mut from = i32::MAX;
        loop {
            let batch = self.days_from(tenant, user, from).await?;
            let n = batch.len();
            out.extend(&batch);
            match batch.last() {
                Some(last) if n as i32 == DAYS_PER_LOOKUP => from = last - 1,
                _ => return Ok(out),
            }
        }
    }
}

#[async_trait]
impl TimelineStore for ScyllaTimeline {
    async fn append(&self, a: &Activity) -> Result<(), TimelineError> {
        let d = day(a.ts_ms);
        self.session
            .execute_unpaged(
                &self.insert,
                (
                    a.tenant.as_str(),
                    a.actor,
                    d,
                    a.ts_ms,
                    a.id,
                    a.kind.as_str(),
                    a.object.to_string(),
                    a.text.as_str(),
                    a.client_id.as_str(),
                ),
            )
            .await
            .map_err(unavailable)?;
        self.session
            .execute_unpaged(&self.insert_day, (a.tenant.as_str(), a.actor, d))
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
        let from = cursor.map(DayCursor::parse).transpose()?;
        // Where to start: inside the cursor's day, or the day before it.
        let (mut start_day, mut state) = match from {
            None => (i32::MAX, None),
            Some(DayCursor {
                day,
                state: Some(s),
            }) => (day, Some(s)),
            Some(DayCursor { day, state: None }) => (day.saturating_sub(1), None),
        };
        let mut out: Vec<Activity> = vec![];
        loop {
            let days = self.days_from(tenant, user, start_day).await?;
            if days.is_empty() {
                return Ok(TimelinePage {
                    activities: out,
                    next: None,
                });
            }
            for d in &days {
                let mut stmt = self.select_day.clone();
                stmt.set_page_size((limit - out.len()).max(1) as i32);
                let paging = match state.take() {
                    Some(s) if *d == start_day => PagingState::new_from_raw_bytes(s),
                    _ => PagingState::start(),
                };
                let (res, more) = self
                    .session
                    .execute_single_page(&stmt, (tenant, user, *d), paging)
                    .await
                    .map_err(unavailable)?;
                let rows = res.into_rows_result().map_err(unavailable)?;
                for row in rows.rows::<Columns>().map_err(unavailable)? {
                    out.push(activity_of(row.map_err(unavailable)?, tenant, user)?);
                }
                let next_in_day = match more {
                    PagingStateResponse::HasMorePages { state } => {
                        state.as_bytes_slice().map(|b| b.to_vec())
                    }
                    PagingStateResponse::NoMorePages => None,
                };
                if out.len() >= limit {
                    // A page may end exactly at a day's end: the next page
                    // then starts at the day before (and may be empty).
                    return Ok(TimelinePage {
                        activities: out,
                        next: Some(
                            DayCursor {
                                day: *d,
                                state: next_in_day,
                            }
                            .encode(),
                        ),
                    });
                }
            }
            match days.last() {
                Some(last) if days.len() as i32 == DAYS_PER_LOOKUP => start_day = last - 1,
                _ => {
                    return Ok(TimelinePage {
                        activities: out,
                        next: None,
                    });
                }
            }
        }
    }

    async fn count_day(&self, tenant: &str, user: Uuid, d: i32) -> Result<i64, TimelineError> {
        let r = self
            .session
            .execute_unpaged(&self.count_day, (tenant, user, d))
            .await
            .map_err(unavailable)?
            .into_rows_result()
            .map_err(unavailable)?;
        let (n,): (i64,) = r.single_row().map_err(unavailable)?;
        Ok(n)
    }

    async fn count_user(&self, tenant: &str, user: Uuid) -> Result<u64, TimelineError> {
        let mut n = 0;
        for d in self.all_days(tenant, user).await? {
            n += self.count_day(tenant, user, d).await? as u64;
        }
        Ok(n)
    }

    /// The day list, newest first, then each day's partition read whole
    /// (in the server's pages).
    async fn export_user(&self, tenant: &str, user: Uuid) -> Result<Vec<Activity>, TimelineError> {
        let mut out = vec![];
        for d in self.all_days(tenant, user).await? {
            out.extend(self.whole_day(tenant, user, d).await?);
        }
        Ok(out)
    }

    /// The day list, then each day's partition deleted whole (one partition
    /// tombstone each), then the day list itself. The day list goes last:
    /// an erase cut short leaves the days it did not reach listed, so the
    /// next erase (every statement is idempotent) finds them.
    async fn erase_user(&self, tenant: &str, user: Uuid) -> Result<u64, TimelineError> {
        let mut n = 0;
        for d in self.all_days(tenant, user).await? {
            n += self.count_day(tenant, user, d).await? as u64;
            self.session
                .execute_unpaged(&self.delete_day, (tenant, user, d))
                .await
                .map_err(unavailable)?;
        }
        self.session
            .execute_unpaged(&self.delete_days, (tenant, user))
            .await
            .map_err(unavailable)?;
        Ok(n)
    }

    async fn ping(&self) -> Result<(), TimelineError> {
        self.session
            .query_unpaged("SELECT release_version FROM system.local", &[])
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "scylla"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_and_contact_points_round_trip() {
        for c in [
            DayCursor {
                day: 20_500,
                state: Some(vec![0, 1, 255]),
            },
            DayCursor {
                day: -3,
                state: None,
            },
        ] {
            assert_eq!(DayCursor::parse(&c.encode()).unwrap(), c);
        }
        assert!(DayCursor::parse("x:").is_err());
        assert!(DayCursor::parse("5").is_err());
        assert_eq!(
            nodes("scylla://a:9042, b:9042/"),
            vec!["a:9042".to_string(), "b:9042".to_string()]
        );
    }
}
