//! The `product.events` consumer: parse the CDC record, hydrate the product
//! from the catalog, write it to the index under external versioning. Runs
//! inside the platform consumer runner (bounded retries, `<topic>.dlq`).

use std::sync::Arc;

use async_trait::async_trait;
use prometheus_client::{
    encoding::EncodeLabelSet, metrics::counter::Counter, metrics::family::Family,
};
use shopstream_platform::events::{
    Delivery,
    dedupe::Deduper,
    runner::{Handler, HandlerError},
};
use uuid::Uuid;

use crate::{
    domain::{
        Applied, ProductDoc,
        event::{self, COMMIT_TS_HEADER, ProductEvent},
    },
    ports::{CatalogError, CatalogSource, IndexError, SearchIndex},
};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `written`, `stale` or `tombstoned`.
    pub outcome: String,
}

/// Applies product events to the index.
#[derive(Clone)]
pub struct Indexer {
    pub catalog: Arc<dyn CatalogSource>,
    pub index: Arc<dyn SearchIndex>,
    /// Tenant of events that name none.
    pub default_tenant: String,
    pub outcomes: Family<OutcomeLabels, Counter>,
}

impl std::fmt::Debug for Indexer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Indexer")
    }
}

fn retryable_catalog(e: CatalogError) -> HandlerError {
    HandlerError::Retryable(e.to_string())
}

fn retryable_index(e: IndexError) -> HandlerError {
    HandlerError::Retryable(e.to_string())
}

impl Indexer {
    fn count(&self, outcome: &str) {
        self.outcomes
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Bring the index up to at least `ev.version` for its product.
    #[tracing::instrument(skip(self), fields(product_id = %ev.product_id, version = ev.version))]
    pub async fn apply(&self, tenant: &str, ev: &ProductEvent) -> Result<Applied, HandlerError> {
        let indexed = self
            .index
            .meta(tenant, &ev.product_id)
            .await
            .map_err(retryable_index)?;
        // A live document at this version or later already covers a change
        // event: skip the catalog call (duplicates are cheap). Deletes always
        // ask the catalog, which decides whether the product is gone.
        if ev.op != event::Op::Delete
            && let Some(m) = indexed
            && m.version >= ev.version
        {
            self.count("stale");
            return Ok(Applied::Stale { indexed: m.rank() });
        }
        let doc = match self
            .catalog
            .get_product(tenant, &ev.product_id)
            .await
            .map_err(retryable_catalog)?
        {
            Some(doc) if doc.version < ev.version => {
                return Err(HandlerError::Retryable(format!(
                    "catalog has version {} of {}, the event reports {}",
                    doc.version, ev.product_id, ev.version
                )));
            }
            Some(doc) => ProductDoc {
                commit_ts_ms: ev.commit_ts_ms,
                ..doc
            },
            None => ProductDoc::tombstone(tenant, &ev.product_id, ev.version, ev.commit_ts_ms),
        };
        let deleted = doc.deleted;
        let applied = self.index.upsert(doc).await.map_err(retryable_index)?;
        self.count(match (applied, deleted) {
            (Applied::Stale { .. }, _) => "stale",
            (Applied::Written, true) => "tombstoned",
            (Applied::Written, false) => "written",
        });
        Ok(applied)
    }
}

#[async_trait]
impl Handler for Indexer {
    async fn handle(&self, d: &Delivery) -> Result<(), HandlerError> {
        let e = &d.envelope;
        let ev = event::parse(
            &e.payload,
            e.headers.get(COMMIT_TS_HEADER).map(String::as_str),
        )
        .map_err(|err| HandlerError::Permanent(err.to_string()))?;
        let tenant = ev
            .tenant_id
            .clone()
            .or_else(|| Some(e.tenant_id.clone()).filter(|t| !t.is_empty() && t != "unknown"))
            .unwrap_or_else(|| self.default_tenant.clone());
        self.apply(&tenant, &ev).await.map(|_| ())
    }
}

/// Dedupe by event id is unnecessary here: every write is ordered by the
/// product version, so a redelivered event is a no-op. This keeps the search
/// service free of a database of its own.
#[derive(Debug, Clone, Copy, Default)]
pub struct VersionedNoDedupe;

#[async_trait]
impl Deduper for VersionedNoDedupe {
    async fn seen(&self, _group: &str, _event_id: Uuid) -> Result<bool, sqlx::Error> {
        Ok(false)
    }

    async fn mark(&self, _group: &str, _event_id: Uuid) -> Result<(), sqlx::Error> {
        Ok(())
    }
}
