//! The catalog's use cases, shared by the HTTP and gRPC APIs and the seed:
//! validate with the domain, stamp time and ids from the ports, and persist
//! through the repository with the outbox events of each write.

use std::{collections::BTreeMap, sync::Arc};

use shopstream_platform::{clock::Clock, ids::IdGen, telemetry};

use crate::{
    domain::{
        ChangeKind, EventContext, FieldErrors, ListQuery, Page, PatchDraft, Product, ProductDraft,
        ProductId, SkuId, Slug, StockChange, TenantId, events, product,
    },
    error::Error,
    ports::{Duplicate, ProductRepository, RepoError, StockUpdate},
};

/// Attempts [`Catalog::sync`] makes before giving up on a product that
/// concurrent writers keep changing.
pub const SYNC_ATTEMPTS: usize = 3;

/// What [`Catalog::sync`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Synced {
    Inserted(Product),
    Updated(Product),
    Unchanged(Product),
}

/// A stock change as a client asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockRequest {
    pub sku_id: SkuId,
    pub product_id: Option<ProductId>,
    pub change: StockChange,
    pub expected_version: Option<i64>,
}

/// The catalog's use cases over one repository, clock and id generator.
#[derive(Clone)]
pub struct Catalog {
    repo: Arc<dyn ProductRepository>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGen>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Catalog")
    }
}

/// The current W3C trace context as headers for an event.
fn current_trace() -> BTreeMap<String, String> {
    let mut trace = BTreeMap::new();
    telemetry::inject(&mut telemetry::MapCarrier(&mut trace));
    trace
}

fn duplicate(d: Duplicate) -> Error {
    Error::Conflict(format!("{d} already exists"))
}

impl Catalog {
    pub fn new(
        repo: Arc<dyn ProductRepository>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGen>,
    ) -> Catalog {
        Catalog { repo, clock, ids }
    }

    pub fn repository(&self) -> &Arc<dyn ProductRepository> {
        &self.repo
    }

    fn context(&self) -> EventContext {
        EventContext {
            now_ms: self.clock.now_ms(),
            trace: current_trace(),
        }
    }

    /// Validate and store a new product (version 1) with one `created` event per SKU.
    #[tracing::instrument(skip_all, fields(tenant = %tenant, slug = draft.slug.as_deref().unwrap_or("")))]
    pub async fn create(&self, tenant: &TenantId, draft: &ProductDraft) -> Result<Product, Error> {
        let cx = self.context();
        let p = product::validate_new(draft, ProductId(self.ids.new_id()), cx.now_ms)
            .map_err(Error::invalid)?;
        let events = events::product_changed(&p, ChangeKind::Created, self.ids.as_ref(), &cx);
        match self.repo.create(tenant, &p, &events).await {
            Ok(()) => {
                tracing::info!(product_id = %p.id, "product created");
                Ok(p)
            }
            Err(RepoError::Duplicate(d)) => Err(duplicate(d)),
            Err(e) => Err(e.into()),
        }
    }

    #[tracing::instrument(skip_all, fields(tenant = %tenant, product_id = %id))]
    pub async fn get(&self, tenant: &TenantId, id: ProductId) -> Result<Product, Error> {
        self.repo
            .get(tenant, id)
            .await?
            .ok_or_else(|| Error::ProductNotFound(id.to_string()))
    }

    #[tracing::instrument(skip_all, fields(tenant = %tenant, sort = query.sort.as_str(), limit = query.limit))]
    pub async fn list(&self, tenant: &TenantId, query: &ListQuery) -> Result<Page, Error> {
        Ok(self.repo.list(tenant, query).await?)
    }

    /// Apply an edit if the product is still at `expected_version`; the new
    /// version and one `updated` event per SKU are written together.
    #[tracing::instrument(skip_all, fields(tenant = %tenant, product_id = %id, expected_version))]
    pub async fn update(
        &self,
        tenant: &TenantId,
        id: ProductId,
        expected_version: i64,
        draft: &PatchDraft,
    ) -> Result<Product, Error> {
        let patch = product::validate_patch(draft).map_err(Error::invalid)?;
        let current = self.get(tenant, id).await?;
        let conflict = |current: i64| Error::VersionConflict {
            id,
            expected: expected_version,
            current,
        };
        if current.version != expected_version {
            return Err(conflict(current.version));
        }
        let cx = self.context();
        let next = product::apply_patch(&current, &patch, cx.now_ms).map_err(Error::invalid)?;
        let events = events::product_changed(&next, ChangeKind::Updated, self.ids.as_ref(), &cx);
        match self
            .repo
            .update(tenant, &next, expected_version, &events)
            .await
        {
            Ok(()) => {
                tracing::info!(version = next.version, "product updated");
                Ok(next)
            }
            Err(RepoError::Conflict { current, .. }) => Err(conflict(current)),
            Err(RepoError::NotFound) => Err(Error::ProductNotFound(id.to_string())),
            Err(RepoError::Duplicate(d)) => Err(duplicate(d)),
            Err(e) => Err(e.into()),
        }
    }

    /// Make the tenant's product with the draft's slug match the draft:
    /// create it if missing, update it if it differs (see
    /// [`product::sync`]), leave it alone otherwise. Retries a bounded number
    /// of times when a concurrent writer moves the product meanwhile.
    #[tracing::instrument(skip_all, fields(tenant = %tenant, slug = draft.slug.as_deref().unwrap_or("")))]
    pub async fn sync(&self, tenant: &TenantId, draft: &ProductDraft) -> Result<Synced, Error> {
        let raw = draft.slug.as_deref().unwrap_or_default();
        let slug = Slug::parse(raw).map_err(|m| Error::invalid(FieldErrors::single("slug", m)))?;
        for _ in 0..SYNC_ATTEMPTS {
            let Some(current) = self.repo.get_by_slug(tenant, &slug).await? else {
                match self.create(tenant, draft).await {
                    Ok(p) => return Ok(Synced::Inserted(p)),
                    // Lost a race for the slug: compare with the winner next round.
                    Err(Error::Conflict(m)) => match self.repo.get_by_slug(tenant, &slug).await? {
                        Some(_) => continue,
                        None => return Err(Error::Conflict(m)),
                    },
                    Err(e) => return Err(e),
                }
            };
            let cx = self.context();
            let desired =
                product::validate_new(draft, current.id, cx.now_ms).map_err(Error::invalid)?;
            let Some(next) = product::sync(&current, &desired, cx.now_ms) else {
                return Ok(Synced::Unchanged(current));
            };
            let events =
                events::product_changed(&next, ChangeKind::Updated, self.ids.as_ref(), &cx);
            match self
                .repo
                .update(tenant, &next, current.version, &events)
                .await
            {
                Ok(()) => {
                    tracing::info!(product_id = %next.id, version = next.version, "product synced");
                    return Ok(Synced::Updated(next));
                }
                Err(RepoError::Conflict { .. } | RepoError::NotFound) => continue,
                Err(RepoError::Duplicate(d)) => return Err(duplicate(d)),
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Conflict(format!(
            "product {slug} kept changing during {SYNC_ATTEMPTS} attempts to sync it"
        )))
    }

    /// Change the stock view of one SKU; returns the product after it.
    #[tracing::instrument(skip_all, fields(tenant = %tenant, sku_id = %req.sku_id))]
    pub async fn update_stock(
        &self,
        tenant: &TenantId,
        req: &StockRequest,
    ) -> Result<Product, Error> {
        let update = StockUpdate {
            sku_id: req.sku_id.clone(),
            product_id: req.product_id,
            change: req.change,
            expected_version: req.expected_version,
            event_id: self.ids.new_id(),
            context: self.context(),
        };
        match self.repo.update_stock(tenant, &update).await {
            Ok(p) => {
                tracing::info!(product_id = %p.id, version = p.version, "stock updated");
                Ok(p)
            }
            Err(RepoError::SkuNotFound) => Err(Error::SkuNotFound(req.sku_id.to_string())),
            Err(RepoError::Conflict { product, current }) => Err(Error::VersionConflict {
                id: product,
                expected: req.expected_version.unwrap_or_default(),
                current,
            }),
            Err(e) => Err(e.into()),
        }
    }
}
