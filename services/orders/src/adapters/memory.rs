//! The order store in memory, for unit tests and the simulator. Events go to
//! an in-memory list standing in for the outbox. Passes `adapters::contract`.

use std::{
    collections::BTreeMap,
    sync::{Mutex, MutexGuard},
};

use async_trait::async_trait;
use shopstream_platform::events::Envelope;
use uuid::Uuid;

use crate::{
    domain::order::{CancelReason, OrderState},
    ports::{Cursor, Order, OrderStore, StepRecord, StoreError},
};

#[derive(Debug, Default)]
struct Inner {
    orders: BTreeMap<(String, Uuid), Order>,
    keys: BTreeMap<(String, String, String), Uuid>,
    steps: BTreeMap<(String, Uuid), Vec<StepRecord>>,
    outbox: Vec<Envelope>,
}

#[derive(Debug, Default)]
pub struct MemoryOrders {
    inner: Mutex<Inner>,
}

impl MemoryOrders {
    pub fn new() -> MemoryOrders {
        MemoryOrders::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Events written so far, in write order (what a relay would publish).
    pub fn outbox(&self) -> Vec<Envelope> {
        self.lock().outbox.clone()
    }
}

#[async_trait]
impl OrderStore for MemoryOrders {
    async fn insert(&self, o: &Order, event: &Envelope) -> Result<(Order, bool), StoreError> {
        let mut g = self.lock();
        let key = (
            o.tenant_id.clone(),
            o.user_id.clone(),
            o.idempotency_key.clone(),
        );
        if let Some(id) = g.keys.get(&key) {
            let existing = g.orders[&(o.tenant_id.clone(), *id)].clone();
            return Ok((existing, false));
        }
        g.keys.insert(key, o.order_id);
        g.orders
            .insert((o.tenant_id.clone(), o.order_id), o.clone());
        g.outbox.push(event.clone());
        Ok((o.clone(), true))
    }

    async fn get(&self, tenant: &str, order_id: Uuid) -> Result<Option<Order>, StoreError> {
        Ok(self.lock().orders.get(&(tenant.into(), order_id)).cloned())
    }

    async fn by_key(
        &self,
        tenant: &str,
        user: &str,
        key: &str,
    ) -> Result<Option<Order>, StoreError> {
        let g = self.lock();
        Ok(g.keys
            .get(&(tenant.into(), user.into(), key.into()))
            .and_then(|id| g.orders.get(&(tenant.into(), *id)))
            .cloned())
    }

    async fn list(
        &self,
        tenant: &str,
        user: Option<&str>,
        states: &[String],
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<Vec<Order>, StoreError> {
        let g = self.lock();
        let mut out: Vec<Order> = g
            .orders
            .values()
            .filter(|o| o.tenant_id == tenant)
            .filter(|o| user.is_none_or(|u| o.user_id == u))
            .filter(|o| states.is_empty() || states.iter().any(|s| s == o.state.as_str()))
            .filter(|o| after.is_none_or(|c| (o.created_at_ms, o.order_id) < c))
            .cloned()
            .collect();
        out.sort_by_key(|o| std::cmp::Reverse((o.created_at_ms, o.order_id)));
        out.truncate(limit as usize);
        Ok(out)
    }

    async fn record_step(
        &self,
        tenant: &str,
        order_id: Uuid,
        s: &StepRecord,
        events: &[Envelope],
    ) -> Result<bool, StoreError> {
        let mut g = self.lock();
        let k = (tenant.to_string(), order_id);
        if !g.orders.contains_key(&k) {
            return Err(StoreError::NotFound);
        }
        let steps = g.steps.entry(k.clone()).or_default();
        if steps.iter().any(|x| x.seq == s.seq) {
            return Ok(false);
        }
        let mut stored = s.clone();
        stored.reservation_id = None;
        stored.payment_id = None;
        steps.push(stored);
        steps.sort_by_key(|x| x.seq);
        let o = g.orders.get_mut(&k).ok_or(StoreError::NotFound)?;
        let reason = s.cancel_reason.as_deref().and_then(CancelReason::parse);
        o.state = OrderState::parse(&s.state, reason)
            .ok_or_else(|| StoreError::Storage(format!("unknown state {:?}", s.state)))?;
        if s.outcome == "failed" {
            o.cancel_detail = s.detail.clone();
        }
        if let Some(r) = &s.reservation_id {
            o.reservation_id = r.clone();
        }
        if let Some(p) = &s.payment_id {
            o.payment_id = p.clone();
        }
        o.updated_at_ms = o.updated_at_ms.max(s.at_ms);
        g.outbox.extend(events.iter().cloned());
        Ok(true)
    }

    async fn step(
        &self,
        tenant: &str,
        order_id: Uuid,
        seq: u32,
    ) -> Result<Option<StepRecord>, StoreError> {
        let g = self.lock();
        let k = (tenant.to_string(), order_id);
        let Some(mut s) = g
            .steps
            .get(&k)
            .and_then(|steps| steps.iter().find(|x| x.seq == seq))
            .cloned()
        else {
            return Ok(None);
        };
        let o = g.orders.get(&k).ok_or(StoreError::NotFound)?;
        s.reservation_id =
            (s.step == "reserve" && !o.reservation_id.is_empty()).then(|| o.reservation_id.clone());
        s.payment_id =
            (s.step == "authorize" && !o.payment_id.is_empty()).then(|| o.payment_id.clone());
        Ok(Some(s))
    }

    async fn steps(&self, tenant: &str, order_id: Uuid) -> Result<Vec<StepRecord>, StoreError> {
        Ok(self
            .lock()
            .steps
            .get(&(tenant.into(), order_id))
            .cloned()
            .unwrap_or_default())
    }

    async fn mark_started(&self, tenant: &str, order_id: Uuid) -> Result<(), StoreError> {
        if let Some(o) = self.lock().orders.get_mut(&(tenant.into(), order_id)) {
            o.workflow_started = true;
        }
        Ok(())
    }

    async fn unstarted(&self, before_ms: i64, limit: u32) -> Result<Vec<Order>, StoreError> {
        let g = self.lock();
        let mut out: Vec<Order> = g
            .orders
            .values()
            .filter(|o| !o.workflow_started && o.created_at_ms < before_ms)
            .cloned()
            .collect();
        out.sort_by_key(|o| o.created_at_ms);
        out.truncate(limit as usize);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn memory_store_passes_the_contract() {
        super::super::contract::run(&super::MemoryOrders::new()).await;
    }
}
