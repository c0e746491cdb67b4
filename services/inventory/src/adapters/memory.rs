//! In-memory inventory store (unit tests, simulator); passes `contract`.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use uuid::Uuid;

use crate::{
    domain::{self, Line, Op, State, Transition},
    ports::{InventoryStore, Reservation, Stock, StoreError},
};

#[derive(Debug, Default)]
struct Inner {
    stock: BTreeMap<(String, String), Stock>,
    reservations: BTreeMap<(String, Uuid), Reservation>,
}

#[derive(Debug, Clone, Default)]
pub struct MemoryInventory {
    inner: Arc<Mutex<Inner>>,
}

impl MemoryInventory {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn transition(inner: &mut Inner, key: (String, Uuid), op: Op) -> Result<Reservation, StoreError> {
    let r = inner
        .reservations
        .get(&key)
        .cloned()
        .ok_or(StoreError::NotFound)?;
    let next = match domain::apply(r.state, op) {
        Transition::Unchanged => return Ok(r),
        Transition::Conflict => return Err(StoreError::Conflict(r.state.as_str())),
        Transition::Changed(n) => n,
    };
    for l in &r.lines {
        let s = inner
            .stock
            .entry((r.tenant_id.clone(), l.sku_id.clone()))
            .or_default();
        let q = i64::from(l.quantity);
        s.reserved -= q;
        if next == State::Committed {
            s.on_hand -= q;
            s.committed += q;
        }
    }
    let r = Reservation { state: next, ..r };
    inner.reservations.insert(key, r.clone());
    Ok(r)
}

#[async_trait]
impl InventoryStore for MemoryInventory {
    async fn set_stock(&self, tenant: &str, sku_id: &str, on_hand: i64) -> Result<(), StoreError> {
        let mut g = self.lock();
        let s = g.stock.entry((tenant.into(), sku_id.into())).or_default();
        if on_hand < s.reserved || on_hand < 0 {
            return Err(StoreError::Conflict("below the reserved quantity"));
        }
        s.on_hand = on_hand;
        Ok(())
    }

    async fn stock(&self, tenant: &str, sku_id: &str) -> Result<Stock, StoreError> {
        self.lock()
            .stock
            .get(&(tenant.into(), sku_id.into()))
            .copied()
            .ok_or_else(|| StoreError::UnknownSku(sku_id.into()))
    }

    async fn reserve(
        &self,
        tenant: &str,
        order_id: &str,
        lines: &[Line],
        new_id: Uuid,
        expires_at_ms: i64,
    ) -> Result<Reservation, StoreError> {
        let mut g = self.lock();
        if let Some(r) = g
            .reservations
            .values()
            .find(|r| r.tenant_id == tenant && r.order_id == order_id)
        {
            return if r.lines == lines || matches!(r.state, State::Released | State::Expired) {
                Ok(r.clone())
            } else {
                Err(StoreError::OrderMismatch(order_id.into()))
            };
        }
        for l in lines {
            let s = g
                .stock
                .get(&(tenant.into(), l.sku_id.clone()))
                .ok_or_else(|| StoreError::UnknownSku(l.sku_id.clone()))?;
            if s.available() < i64::from(l.quantity) {
                return Err(StoreError::InsufficientStock {
                    sku_id: l.sku_id.clone(),
                });
            }
        }
        for l in lines {
            if let Some(s) = g.stock.get_mut(&(tenant.into(), l.sku_id.clone())) {
                s.reserved += i64::from(l.quantity);
            }
        }
        let r = Reservation {
            id: new_id,
            tenant_id: tenant.into(),
            order_id: order_id.into(),
            lines: lines.to_vec(),
            state: State::Held,
            expires_at_ms,
        };
        g.reservations.insert((tenant.into(), new_id), r.clone());
        Ok(r)
    }

    async fn commit(&self, tenant: &str, id: Uuid) -> Result<Reservation, StoreError> {
        transition(&mut self.lock(), (tenant.into(), id), Op::Commit)
    }

    async fn release(&self, tenant: &str, id: Uuid) -> Result<Reservation, StoreError> {
        transition(&mut self.lock(), (tenant.into(), id), Op::Release)
    }

    async fn release_order(
        &self,
        tenant: &str,
        order_id: &str,
        new_id: Uuid,
    ) -> Result<Reservation, StoreError> {
        let mut g = self.lock();
        let existing = g
            .reservations
            .iter()
            .find(|(_, r)| r.tenant_id == tenant && r.order_id == order_id)
            .map(|(k, _)| k.clone());
        if let Some(key) = existing {
            return transition(&mut g, key, Op::Release);
        }
        let r = Reservation::released_empty(new_id, tenant, order_id);
        g.reservations.insert((tenant.into(), new_id), r.clone());
        Ok(r)
    }

    async fn expire_due(&self, now_ms: i64, limit: i64) -> Result<Vec<Reservation>, StoreError> {
        let mut g = self.lock();
        let due: Vec<_> = g
            .reservations
            .iter()
            .filter(|(_, r)| r.state == State::Held && r.expires_at_ms <= now_ms)
            .map(|(k, _)| k.clone())
            .take(usize::try_from(limit).unwrap_or(0))
            .collect();
        due.into_iter()
            .map(|k| transition(&mut g, k, Op::Expire))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn memory_store_passes_the_contract() {
        super::super::contract::run(&super::MemoryInventory::default()).await;
    }
}
