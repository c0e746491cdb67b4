//! What the search service needs from the world: an index ([`SearchIndex`],
//! adapters `adapters::tantivy` and `adapters::opensearch`, both passing
//! `adapters::contract`) and the catalog as the source of truth
//! ([`CatalogSource`], adapter `adapters::catalog_grpc`).

use async_trait::async_trait;

use crate::domain::{Applied, IndexedMeta, ProductDoc, SearchQuery, SearchResult};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    /// The backend is down or timed out; retrying may help.
    #[error("index unavailable: {0}")]
    Unavailable(String),
    /// The backend rejected the request or answered something unexpected.
    #[error("index error: {0}")]
    Backend(String),
}

/// The product index, per tenant.
///
/// Contract (checked by `adapters::contract`):
/// - `upsert` writes `doc` only if its [`crate::domain::VersionRank`] is
///   strictly greater than the indexed one for (tenant, product id), else it
///   returns `Applied::Stale` and changes nothing: repeated or older versions
///   never overwrite newer ones, in any arrival order;
/// - a tombstone (`doc.deleted`) hides the product from queries and keeps its
///   version;
/// - `meta` and `list` reflect every `upsert` that returned `Written`, at once;
/// - a written document becomes visible to `search` within the adapter's
///   refresh interval, and at once after `refresh` returns;
/// - `search` never returns tombstones nor another tenant's documents.
#[async_trait]
pub trait SearchIndex: Send + Sync + 'static {
    async fn upsert(&self, doc: ProductDoc) -> Result<Applied, IndexError>;
    async fn meta(&self, tenant: &str, product_id: &str)
    -> Result<Option<IndexedMeta>, IndexError>;
    /// Every indexed product id of `tenant` (tombstones included) with its meta.
    async fn list(&self, tenant: &str) -> Result<Vec<(String, IndexedMeta)>, IndexError>;
    /// Make every written document searchable now.
    async fn refresh(&self) -> Result<(), IndexError>;
    async fn search(&self, query: &SearchQuery) -> Result<SearchResult, IndexError>;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog unavailable: {0}")]
    Unavailable(String),
    #[error("catalog error: {0}")]
    Other(String),
}

/// One page of products.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CatalogPage {
    pub products: Vec<ProductDoc>,
    /// Empty on the last page.
    pub next_cursor: String,
}

/// The catalog, read for hydration and reconcile. Products come back as
/// live index documents (`commit_ts_ms` unset).
#[async_trait]
pub trait CatalogSource: Send + Sync + 'static {
    /// `None` when the catalog has no such product.
    async fn get_product(
        &self,
        tenant: &str,
        product_id: &str,
    ) -> Result<Option<ProductDoc>, CatalogError>;
    async fn list_products(
        &self,
        tenant: &str,
        cursor: &str,
        page_size: u32,
    ) -> Result<CatalogPage, CatalogError>;
}
