//! In-memory payment store (unit tests, simulator); passes `contract`. Its
//! outbox is a list the owner drains with [`MemoryPayments::take_outbox`].

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use shopstream_platform::events::Envelope;
use uuid::Uuid;

use crate::{
    domain::{Payment, Status},
    ports::{Change, PaymentStore, StoreError},
};

#[derive(Debug, Default)]
struct Inner {
    payments: BTreeMap<(String, Uuid), Payment>,
    webhooks: BTreeMap<String, (String, i64)>,
    outbox: Vec<Envelope>,
}

#[derive(Debug, Clone, Default)]
pub struct MemoryPayments {
    inner: Arc<Mutex<Inner>>,
}

impl MemoryPayments {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The events enqueued so far, oldest first; they leave the outbox.
    pub fn take_outbox(&self) -> Vec<Envelope> {
        std::mem::take(&mut self.lock().outbox)
    }

    fn find(&self, pred: impl Fn(&Payment) -> bool) -> Result<Payment, StoreError> {
        self.lock()
            .payments
            .values()
            .find(|p| pred(p))
            .cloned()
            .ok_or(StoreError::NotFound)
    }
}

#[async_trait]
impl PaymentStore for MemoryPayments {
    async fn insert(&self, payment: &Payment) -> Result<(Payment, bool), StoreError> {
        let mut g = self.lock();
        if let Some(p) = g
            .payments
            .values()
            .find(|p| p.tenant_id == payment.tenant_id && p.order_id == payment.order_id)
        {
            return Ok((p.clone(), false));
        }
        g.payments
            .insert((payment.tenant_id.clone(), payment.id), payment.clone());
        Ok((payment.clone(), true))
    }

    async fn get(&self, tenant: &str, id: Uuid) -> Result<Payment, StoreError> {
        self.lock()
            .payments
            .get(&(tenant.to_string(), id))
            .cloned()
            .ok_or(StoreError::NotFound)
    }

    async fn by_order(&self, tenant: &str, order_id: &str) -> Result<Payment, StoreError> {
        self.find(|p| p.tenant_id == tenant && p.order_id == order_id)
    }

    async fn by_provider_ref(
        &self,
        tenant: &str,
        provider_ref: &str,
    ) -> Result<Payment, StoreError> {
        if provider_ref.is_empty() {
            return Err(StoreError::NotFound);
        }
        self.find(|p| p.tenant_id == tenant && p.provider_ref == provider_ref)
    }

    async fn update(
        &self,
        tenant: &str,
        id: Uuid,
        change: Change<'_>,
    ) -> Result<Payment, StoreError> {
        let mut g = self.lock();
        let key = (tenant.to_string(), id);
        let current = g.payments.get(&key).cloned().ok_or(StoreError::NotFound)?;
        let Some((next, event)) = change(&current) else {
            return Ok(current);
        };
        g.payments.insert(key, next.clone());
        g.outbox.extend(event);
        Ok(next)
    }

    async fn record_webhook(
        &self,
        event_id: &str,
        event_type: &str,
        received_at_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut g = self.lock();
        if g.webhooks.contains_key(event_id) {
            return Ok(false);
        }
        g.webhooks.insert(
            event_id.to_string(),
            (event_type.to_string(), received_at_ms),
        );
        Ok(true)
    }

    async fn stale(&self, updated_before_ms: i64, limit: i64) -> Result<Vec<Payment>, StoreError> {
        let mut due: Vec<Payment> = self
            .lock()
            .payments
            .values()
            .filter(|p| {
                matches!(p.status, Status::Pending | Status::Authorized)
                    && !p.provider_ref.is_empty()
                    && p.updated_at_ms < updated_before_ms
            })
            .cloned()
            .collect();
        due.sort_by_key(|p| (p.updated_at_ms, p.id));
        due.truncate(usize::try_from(limit).unwrap_or(0));
        Ok(due)
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn memory_store_passes_the_contract() {
        super::super::contract::run(&super::MemoryPayments::default()).await;
    }
}
