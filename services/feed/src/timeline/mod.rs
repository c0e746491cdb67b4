//! The timeline: every activity a user published, append-only, newest first.
//!
//! **Key design** (docs/adr/0011-feed-timeline-and-slices.md): partition
//! `(tenant, user, day)`, clustering `(ts desc, activity id desc)`. A day
//! bucket bounds every partition (at most [`MAX_ACTIVITIES_PER_DAY`] rows:
//! the service refuses more), and a user's partitions are written only by
//! that user: there is no fan-out on write into followers' partitions, so a
//! celebrity's followers and likes never make one partition hot. A second
//! table lists each user's days (partition `(tenant, user)`, clustering
//! `day desc`), so paging skips empty days without scanning them.
//!
//! Two adapters keep these keys: [`postgres::PgTimeline`] (the native
//! runtime's default) and [`scylla::ScyllaTimeline`]. Both pass
//! [`contract::run`]; [`memory::MemoryTimeline`] does too, for unit tests.

pub mod contract;
pub mod memory;
pub mod postgres;
pub mod scylla;

use async_trait::async_trait;
use uuid::Uuid;

use crate::domain::activity::{Activity, Kind, Object};

/// Most activities one user may publish in one day (the partition bound).
pub const MAX_ACTIVITIES_PER_DAY: i64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum TimelineError {
    /// The store could not be reached or failed; retrying may help.
    #[error("timeline store unavailable: {0}")]
    Unavailable(String),
    /// The cursor does not belong to this store or is damaged.
    #[error("invalid timeline cursor")]
    BadCursor,
}

/// One stored row as an adapter reads it (the partition key aside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub ts_ms: i64,
    pub id: Uuid,
    pub kind: String,
    pub object: String,
    pub body: String,
    pub client_id: String,
}

impl Row {
    /// The activity of `actor` in `tenant` this row holds.
    pub fn into_activity(self, tenant: &str, actor: Uuid) -> Result<Activity, TimelineError> {
        let bad = |what: &str| TimelineError::Unavailable(format!("stored row has a bad {what}"));
        Ok(Activity {
            tenant: tenant.to_string(),
            id: self.id,
            actor,
            kind: Kind::parse(&self.kind).ok_or_else(|| bad("kind"))?,
            object: Object::parse(&self.object).map_err(|_| bad("object"))?,
            text: self.body,
            client_id: self.client_id,
            ts_ms: self.ts_ms,
        })
    }
}

/// One page of a user's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TimelinePage {
    pub activities: Vec<Activity>,
    /// Opaque to callers; `None` when nothing older is left.
    pub next: Option<String>,
}

#[async_trait]
pub trait TimelineStore: Send + Sync + 'static {
    /// Store `a` under its keys. Writing the same activity again changes
    /// nothing (the keys are the activity's own: same row).
    async fn append(&self, a: &Activity) -> Result<(), TimelineError>;

    /// Up to `limit` of `user`'s activities, newest first, after `cursor`
    /// (a previous page's `next`).
    async fn page(
        &self,
        tenant: &str,
        user: Uuid,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<TimelinePage, TimelineError>;

    /// How many activities `user` published on `day` (the partition bound).
    async fn count_day(&self, tenant: &str, user: Uuid, day: i32) -> Result<i64, TimelineError>;

    /// How many activities `user` has in all (a DSAR scan).
    async fn count_user(&self, tenant: &str, user: Uuid) -> Result<u64, TimelineError>;

    /// Every activity of `user`, newest first, comment bodies included (a
    /// DSAR export; one user's whole history, not a page).
    async fn export_user(&self, tenant: &str, user: Uuid) -> Result<Vec<Activity>, TimelineError>;

    /// Delete everything of `user` (a DSAR erase); returns how many
    /// activities went, so a second erase returns 0.
    async fn erase_user(&self, tenant: &str, user: Uuid) -> Result<u64, TimelineError>;

    /// Whether the store answers (readiness).
    async fn ping(&self) -> Result<(), TimelineError>;

    /// `postgres` or `scylla`.
    fn backend(&self) -> &'static str;
}
