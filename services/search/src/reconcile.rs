//! Reconcile: compare the index with the catalog (every product, paging
//! through `ListProducts`) and repair drift — missing or older documents are
//! rewritten, documents of products the catalog no longer has become
//! tombstones.

use std::collections::{HashMap, HashSet};

use crate::{
    domain::{Applied, ProductDoc},
    ports::{CatalogError, CatalogSource, IndexError, SearchIndex},
};

/// Products per `ListProducts` page (the catalog's maximum).
pub const PAGE_SIZE: u32 = 100;
/// Bound on pages read in one run (10 million products).
pub const MAX_PAGES: usize = 100_000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReconcileReport {
    /// Products the catalog listed.
    pub catalog_products: u64,
    /// Documents (re)written because the index lacked them or was older.
    pub repaired: u64,
    /// Live documents of products the catalog no longer has, now tombstones.
    pub tombstoned: u64,
    /// Products already current.
    pub unchanged: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("more than {MAX_PAGES} catalog pages")]
    TooManyPages,
}

/// Compare and repair one tenant's index; returns what it did.
#[tracing::instrument(skip(catalog, index))]
pub async fn reconcile(
    catalog: &dyn CatalogSource,
    index: &dyn SearchIndex,
    tenant: &str,
) -> Result<ReconcileReport, ReconcileError> {
    let indexed: HashMap<String, _> = index.list(tenant).await?.into_iter().collect();
    let mut seen = HashSet::new();
    let mut report = ReconcileReport::default();
    let mut cursor = String::new();
    for page_no in 0.. {
        if page_no >= MAX_PAGES {
            return Err(ReconcileError::TooManyPages);
        }
        let page = catalog.list_products(tenant, &cursor, PAGE_SIZE).await?;
        for doc in page.products {
            report.catalog_products += 1;
            seen.insert(doc.product_id.clone());
            let current = indexed
                .get(&doc.product_id)
                .is_some_and(|m| m.rank() >= doc.rank());
            if current {
                report.unchanged += 1;
                continue;
            }
            match index.upsert(doc).await? {
                Applied::Written => report.repaired += 1,
                Applied::Stale { .. } => report.unchanged += 1,
            }
        }
        if page.next_cursor.is_empty() {
            break;
        }
        cursor = page.next_cursor;
    }
    for (id, meta) in &indexed {
        if meta.deleted || seen.contains(id) {
            continue;
        }
        // Not listed: confirm (it may have been created during the scan).
        match catalog.get_product(tenant, id).await? {
            Some(doc) => {
                if index.upsert(doc).await? == Applied::Written {
                    report.repaired += 1;
                }
            }
            None => {
                let t = ProductDoc::tombstone(tenant, id, meta.version, None);
                if index.upsert(t).await? == Applied::Written {
                    report.tombstoned += 1;
                }
            }
        }
    }
    index.refresh().await?;
    tracing::info!(?report, "reconciled search index with catalog");
    Ok(report)
}
