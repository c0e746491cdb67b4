//! The bug zoo's broken adapters: thin wrappers over the real in-memory
//! adapters that break one contract each. Only reachable through
//! `Options::bug`, which only the `bug-zoo` build accepts.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use async_trait::async_trait;
use shopstream_inventory::{
    domain::Line,
    ports::{InventoryStore, Reservation, Stock, StoreError as InvError},
};
use shopstream_orders::ports::{Cursor, Order, OrderStore, StepRecord, StoreError};
use shopstream_platform::events::Envelope;
use uuid::Uuid;

use crate::Bug;

/// `reserve-no-idempotency`: every reserve is a new order as far as the
/// store can tell.
pub struct ForgetfulReserve<S> {
    pub inner: S,
    pub calls: AtomicU64,
}

#[async_trait]
impl<S: InventoryStore> InventoryStore for ForgetfulReserve<S> {
    async fn set_stock(&self, tenant: &str, sku_id: &str, on_hand: i64) -> Result<(), InvError> {
        self.inner.set_stock(tenant, sku_id, on_hand).await
    }
    async fn stock(&self, tenant: &str, sku_id: &str) -> Result<Stock, InvError> {
        self.inner.stock(tenant, sku_id).await
    }
    async fn reserve(
        &self,
        tenant: &str,
        order_id: &str,
        lines: &[Line],
        new_id: Uuid,
        expires_at_ms: i64,
    ) -> Result<Reservation, InvError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let order_id = format!("{order_id}#{n}");
        self.inner
            .reserve(tenant, &order_id, lines, new_id, expires_at_ms)
            .await
    }
    async fn commit(&self, tenant: &str, id: Uuid) -> Result<Reservation, InvError> {
        self.inner.commit(tenant, id).await
    }
    async fn release(&self, tenant: &str, id: Uuid) -> Result<Reservation, InvError> {
        self.inner.release(tenant, id).await
    }
    async fn release_order(
        &self,
        tenant: &str,
        order_id: &str,
        new_id: Uuid,
    ) -> Result<Reservation, InvError> {
        self.inner.release_order(tenant, order_id, new_id).await
    }
    async fn expire_due(&self, now_ms: i64, limit: i64) -> Result<Vec<Reservation>, InvError> {
        self.inner.expire_due(now_ms, limit).await
    }
}

/// The order store's two zoo bugs: `order-key-ignored` (it never finds an
/// order by its key: a duplicate submit creates a second order) and
/// `decision-log-ignored` (it never finds a recorded step: a workflow task
/// replayed after a crash runs its steps again). Every other call goes to
/// the real store.
pub struct BrokenOrders {
    pub inner: Arc<dyn OrderStore>,
    pub bug: Bug,
    pub calls: AtomicU64,
}

#[async_trait]
impl OrderStore for BrokenOrders {
    async fn insert(&self, order: &Order, event: &Envelope) -> Result<(Order, bool), StoreError> {
        if self.bug != Bug::OrderKeyIgnored {
            return self.inner.insert(order, event).await;
        }
        let mut o = order.clone();
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        o.idempotency_key = format!("{}#{n}", o.idempotency_key);
        self.inner.insert(&o, event).await
    }
    async fn get(&self, tenant: &str, order_id: Uuid) -> Result<Option<Order>, StoreError> {
        self.inner.get(tenant, order_id).await
    }
    async fn by_key(
        &self,
        tenant: &str,
        user: &str,
        key: &str,
    ) -> Result<Option<Order>, StoreError> {
        if self.bug == Bug::OrderKeyIgnored {
            return Ok(None);
        }
        self.inner.by_key(tenant, user, key).await
    }
    async fn list(
        &self,
        tenant: &str,
        user: Option<&str>,
        states: &[String],
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<Vec<Order>, StoreError> {
        self.inner.list(tenant, user, states, after, limit).await
    }
    async fn record_step(
        &self,
        tenant: &str,
        order_id: Uuid,
        step: &StepRecord,
        events: &[Envelope],
    ) -> Result<bool, StoreError> {
        self.inner.record_step(tenant, order_id, step, events).await
    }
    async fn steps(&self, tenant: &str, order_id: Uuid) -> Result<Vec<StepRecord>, StoreError> {
        self.inner.steps(tenant, order_id).await
    }
    async fn step(
        &self,
        tenant: &str,
        order_id: Uuid,
        seq: u32,
    ) -> Result<Option<StepRecord>, StoreError> {
        if self.bug == Bug::DecisionLogIgnored {
            return Ok(None);
        }
        self.inner.step(tenant, order_id, seq).await
    }
    async fn mark_started(&self, tenant: &str, order_id: Uuid) -> Result<(), StoreError> {
        self.inner.mark_started(tenant, order_id).await
    }
    async fn unstarted(&self, before_ms: i64, limit: u32) -> Result<Vec<Order>, StoreError> {
        self.inner.unstarted(before_ms, limit).await
    }
}
