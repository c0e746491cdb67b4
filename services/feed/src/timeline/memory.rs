//! The timeline in memory, with the same keys and cursor as Postgres: for
//! unit tests and the simulator.

use std::{collections::BTreeMap, sync::Mutex};

use async_trait::async_trait;
use uuid::Uuid;

use super::{TimelineError, TimelinePage, TimelineStore, postgres::KeyCursor};
use crate::domain::activity::{Activity, day};

type Key = (String, Uuid, i32, i64, Uuid);

#[derive(Debug, Default)]
pub struct MemoryTimeline {
    rows: Mutex<BTreeMap<Key, Activity>>,
}

fn key(a: &Activity) -> Key {
    (a.tenant.clone(), a.actor, day(a.ts_ms), a.ts_ms, a.id)
}

#[async_trait]
impl TimelineStore for MemoryTimeline {
    async fn append(&self, a: &Activity) -> Result<(), TimelineError> {
        self.rows
            .lock()
            .expect("not poisoned")
            .entry(key(a))
            .or_insert_with(|| a.clone());
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
        let rows = self.rows.lock().expect("not poisoned");
        let mut out: Vec<Activity> = rows
            .iter()
            .rev()
            .filter(|((t, u, d, ts, id), _)| {
                t == tenant && *u == user && from.as_ref().is_none_or(|c| c.before(*d, *ts, *id))
            })
            .take(limit + 1)
            .map(|(_, a)| a.clone())
            .collect();
        Ok(KeyCursor::finish(&mut out, limit))
    }

    async fn count_day(&self, tenant: &str, user: Uuid, d: i32) -> Result<i64, TimelineError> {
        let rows = self.rows.lock().expect("not poisoned");
        Ok(rows
            .keys()
            .filter(|(t, u, dd, _, _)| t == tenant && *u == user && *dd == d)
            .count() as i64)
    }

    async fn count_user(&self, tenant: &str, user: Uuid) -> Result<u64, TimelineError> {
        let rows = self.rows.lock().expect("not poisoned");
        Ok(rows
            .keys()
            .filter(|(t, u, _, _, _)| t == tenant && *u == user)
            .count() as u64)
    }

    async fn export_user(&self, tenant: &str, user: Uuid) -> Result<Vec<Activity>, TimelineError> {
        let rows = self.rows.lock().expect("not poisoned");
        Ok(rows
            .iter()
            .rev()
            .filter(|((t, u, _, _, _), _)| t == tenant && *u == user)
            .map(|(_, a)| a.clone())
            .collect())
    }

    async fn erase_user(&self, tenant: &str, user: Uuid) -> Result<u64, TimelineError> {
        let mut rows = self.rows.lock().expect("not poisoned");
        let before = rows.len();
        rows.retain(|(t, u, _, _, _), _| !(t == tenant && *u == user));
        Ok((before - rows.len()) as u64)
    }

    async fn ping(&self) -> Result<(), TimelineError> {
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn passes_the_contract() {
        super::super::contract::run(&super::MemoryTimeline::default()).await;
    }
}
