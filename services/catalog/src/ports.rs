//! What the catalog needs from the world: a [`ProductRepository`]. Time and
//! ids come through `platform::clock::Clock` and `platform::ids::IdGen`.
//!
//! Both adapters (`adapters::postgres`, `adapters::memory`) pass the same
//! conformance suite, `adapters::contract`.

use async_trait::async_trait;
use uuid::Uuid;

use crate::domain::{
    EventContext, FieldErrors, ListQuery, OutboxEvent, Page, Product, ProductId, SkuId, Slug,
    StockChange, TenantId, product::StockUpdateRefused,
};

/// Which unique key a write collided with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Duplicate {
    /// The tenant already has a product with this slug.
    Slug(Slug),
    /// The tenant already has a SKU with this code (on any product).
    Sku(SkuId),
}

impl std::fmt::Display for Duplicate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Duplicate::Slug(s) => write!(f, "a product with slug {s}"),
            Duplicate::Sku(s) => write!(f, "a sku {s}"),
        }
    }
}

/// Why a repository call failed. Driver errors are translated into these;
/// `Unavailable` and `Internal` carry text for logs, never for clients.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RepoError {
    #[error("product not found")]
    NotFound,
    #[error("sku not found")]
    SkuNotFound,
    #[error("product {product} is at version {current}")]
    Conflict { product: ProductId, current: i64 },
    #[error("{0} already exists")]
    Duplicate(Duplicate),
    /// The change breaks a rule that needs the stored state (e.g. stock below 0).
    #[error("invalid change: {0}")]
    Invalid(FieldErrors),
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store error: {0}")]
    Internal(String),
}

impl From<StockUpdateRefused> for RepoError {
    fn from(e: StockUpdateRefused) -> RepoError {
        match e {
            StockUpdateRefused::Conflict { product, current } => {
                RepoError::Conflict { product, current }
            }
            StockUpdateRefused::Invalid(fields) => RepoError::Invalid(fields),
        }
    }
}

/// A change to the stock view of one SKU, with what its event needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockUpdate {
    pub sku_id: SkuId,
    /// When set, the SKU must belong to this product.
    pub product_id: Option<ProductId>,
    pub change: StockChange,
    /// When set, the product's stored version must equal it.
    pub expected_version: Option<i64>,
    /// Id of the outbox record the update appends.
    pub event_id: Uuid,
    pub context: EventContext,
}

/// Storage of products and their outbox, per tenant.
///
/// Contract (checked by `adapters::contract`):
/// - No call reads or writes across tenants: a product, slug or SKU code of
///   one tenant is invisible to, and never collides with, another tenant's.
/// - Every successful write stores the change and appends its outbox events
///   in one atomic step; a failed write stores nothing and appends nothing.
/// - A stored product is returned exactly as it was written (SKUs and regions
///   in their order).
#[async_trait]
pub trait ProductRepository: Send + Sync + 'static {
    /// Store a new product and append `events`.
    ///
    /// MUST return `Duplicate(Slug)` if the tenant has a product with
    /// `product.slug`, and `Duplicate(Sku(code))` if any of its SKU codes is
    /// taken in the tenant.
    async fn create(
        &self,
        tenant: &TenantId,
        product: &Product,
        events: &[OutboxEvent],
    ) -> Result<(), RepoError>;

    /// The product with `id`, or `None`.
    async fn get(&self, tenant: &TenantId, id: ProductId) -> Result<Option<Product>, RepoError>;

    /// The product with `slug`, or `None`.
    async fn get_by_slug(
        &self,
        tenant: &TenantId,
        slug: &Slug,
    ) -> Result<Option<Product>, RepoError>;

    /// One page of the tenant's products matching `query.filter`, in
    /// `query.sort` order with ties broken by id, strictly after
    /// `query.after`, at most `query.limit` long. `next` MUST be set exactly
    /// when more matching products follow, to the cursor of the last item.
    /// The result MUST equal `domain::query::page_of` over the tenant's
    /// products.
    async fn list(&self, tenant: &TenantId, query: &ListQuery) -> Result<Page, RepoError>;

    /// Replace the stored product with `product` and append `events`, only
    /// if the stored version equals `expected_version`.
    ///
    /// MUST return `NotFound` if the product does not exist and
    /// `Conflict { current, .. }` if its version differs. `product.version` is
    /// `expected_version + 1` (checked; `Internal` otherwise). SKUs missing
    /// from `product` are removed; new ones are added (`Duplicate(Sku)` if
    /// their code is taken).
    async fn update(
        &self,
        tenant: &TenantId,
        product: &Product,
        expected_version: i64,
        events: &[OutboxEvent],
    ) -> Result<(), RepoError>;

    /// Apply `update.change` to the SKU's stock, bump the product's version
    /// and `updated_at_ms` (to `update.context.now_ms`), and append one
    /// `ProductChanged` event with id `update.event_id`; returns the product
    /// after the change. Concurrent calls on one product serialise: no delta
    /// is lost.
    ///
    /// MUST return `SkuNotFound` if the tenant has no such SKU or it belongs
    /// to another product than `update.product_id`; `Conflict { product, current }`
    /// if `update.expected_version` is set and differs; `Invalid` with field
    /// `stock` if the result would be negative or too large.
    async fn update_stock(
        &self,
        tenant: &TenantId,
        update: &StockUpdate,
    ) -> Result<Product, RepoError>;

    /// The outbox records of one product, oldest first. For tests, tooling
    /// and the simulator's stand-in for CDC; the service itself never reads
    /// its outbox.
    async fn outbox(
        &self,
        tenant: &TenantId,
        product: ProductId,
    ) -> Result<Vec<OutboxEvent>, RepoError>;
}
