//! In-memory [`ProductRepository`] for unit tests and the simulator. It passes
//! the same `adapters::contract` suite as Postgres: one lock makes every write
//! and its outbox events atomic.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard},
};

use async_trait::async_trait;

use crate::{
    domain::{ListQuery, OutboxEvent, Page, Product, ProductId, Slug, TenantId, product, query},
    ports::{Duplicate, ProductRepository, RepoError, StockUpdate},
};

#[derive(Default)]
struct State {
    products: BTreeMap<(TenantId, ProductId), Product>,
    outbox: Vec<(TenantId, OutboxEvent)>,
}

impl State {
    fn tenant_products<'a>(&'a self, tenant: &'a TenantId) -> impl Iterator<Item = &'a Product> {
        self.products
            .range((tenant.clone(), ProductId(uuid::Uuid::nil()))..)
            .take_while(move |((t, _), _)| t == tenant)
            .map(|(_, p)| p)
    }

    /// A key of `product` that another product of the tenant already uses.
    fn taken(&self, tenant: &TenantId, product: &Product) -> Option<Duplicate> {
        let others = || self.tenant_products(tenant).filter(|p| p.id != product.id);
        if others().any(|p| p.slug == product.slug) {
            return Some(Duplicate::Slug(product.slug.clone()));
        }
        product.skus.iter().find_map(|s| {
            others()
                .any(|p| p.sku(&s.id).is_some())
                .then(|| Duplicate::Sku(s.id.clone()))
        })
    }

    fn append(&mut self, tenant: &TenantId, events: &[OutboxEvent]) {
        self.outbox
            .extend(events.iter().map(|e| (tenant.clone(), e.clone())));
    }
}

/// Products and outbox in one process. Clones share the same data.
#[derive(Clone, Default)]
pub struct MemoryProductRepository {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for MemoryProductRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoryProductRepository")
    }
}

impl MemoryProductRepository {
    pub fn new() -> MemoryProductRepository {
        MemoryProductRepository::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data; keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every outbox record of every tenant in write order (for the simulator).
    pub fn all_outbox(&self) -> Vec<(TenantId, OutboxEvent)> {
        self.lock().outbox.clone()
    }
}

#[async_trait]
impl ProductRepository for MemoryProductRepository {
    async fn create(
        &self,
        tenant: &TenantId,
        product: &Product,
        events: &[OutboxEvent],
    ) -> Result<(), RepoError> {
        let mut s = self.lock();
        if let Some(d) = s.taken(tenant, product) {
            return Err(RepoError::Duplicate(d));
        }
        if s.products.contains_key(&(tenant.clone(), product.id)) {
            return Err(RepoError::Internal(format!(
                "product id {} reused",
                product.id
            )));
        }
        s.products
            .insert((tenant.clone(), product.id), product.clone());
        s.append(tenant, events);
        Ok(())
    }

    async fn get(&self, tenant: &TenantId, id: ProductId) -> Result<Option<Product>, RepoError> {
        Ok(self.lock().products.get(&(tenant.clone(), id)).cloned())
    }

    async fn get_by_slug(
        &self,
        tenant: &TenantId,
        slug: &Slug,
    ) -> Result<Option<Product>, RepoError> {
        Ok(self
            .lock()
            .tenant_products(tenant)
            .find(|p| &p.slug == slug)
            .cloned())
    }

    async fn list(&self, tenant: &TenantId, q: &ListQuery) -> Result<Page, RepoError> {
        let s = self.lock();
        Ok(query::page_of(s.tenant_products(tenant), q))
    }

    async fn update(
        &self,
        tenant: &TenantId,
        product: &Product,
        expected_version: i64,
        events: &[OutboxEvent],
    ) -> Result<(), RepoError> {
        if product.version != expected_version + 1 {
            return Err(RepoError::Internal(format!(
                "new version {} does not follow {expected_version}",
                product.version
            )));
        }
        let mut s = self.lock();
        let current = s
            .products
            .get(&(tenant.clone(), product.id))
            .ok_or(RepoError::NotFound)?;
        if current.version != expected_version {
            return Err(RepoError::Conflict {
                product: product.id,
                current: current.version,
            });
        }
        if let Some(d) = s.taken(tenant, product) {
            return Err(RepoError::Duplicate(d));
        }
        s.products
            .insert((tenant.clone(), product.id), product.clone());
        s.append(tenant, events);
        Ok(())
    }

    async fn update_stock(&self, tenant: &TenantId, u: &StockUpdate) -> Result<Product, RepoError> {
        let mut s = self.lock();
        let current = s
            .tenant_products(tenant)
            .find(|p| p.sku(&u.sku_id).is_some())
            .filter(|p| u.product_id.is_none_or(|id| id == p.id))
            .cloned()
            .ok_or(RepoError::SkuNotFound)?;
        let (next, event) = product::plan_stock_update(
            &current,
            &u.sku_id,
            u.change,
            u.expected_version,
            u.event_id,
            &u.context,
        )?;
        s.products.insert((tenant.clone(), next.id), next.clone());
        s.append(tenant, &[event]);
        Ok(next)
    }

    async fn outbox(
        &self,
        tenant: &TenantId,
        product: ProductId,
    ) -> Result<Vec<OutboxEvent>, RepoError> {
        let mut out: Vec<OutboxEvent> = self
            .lock()
            .outbox
            .iter()
            .filter(|(t, e)| t == tenant && e.aggregate_id == product)
            .map(|(_, e)| e.clone())
            .collect();
        out.sort_by_key(|e| (e.created_at_ms, e.id));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_repository_passes_the_contract() {
        crate::adapters::contract::run(&MemoryProductRepository::new()).await;
    }
}
