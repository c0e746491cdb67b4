//! The `product.events` consumer: parse the CDC record, hydrate the product
//! from the catalog, write it to the index under external versioning. Runs
//! inside the platform consumer runner (bounded retries, `<topic>.dlq`).
//!
//! The `search-indexing-stalled` fault holds it: while it is set, the runner
//! applies nothing and acknowledges nothing (see [`Handler::held_by`]), so the
//! group's lag grows, and every event is applied once the fault clears.

use std::sync::Arc;

use async_trait::async_trait;
use prometheus_client::{
    encoding::EncodeLabelSet, metrics::counter::Counter, metrics::family::Family,
};
use shopstream_platform::{
    events::{
        Delivery,
        runner::{Handler, HandlerError},
    },
    faults,
};

use crate::{
    domain::{
        Applied, ProductDoc,
        event::{self, COMMIT_TS_HEADER, ProductEvent},
    },
    ports::{CatalogError, CatalogSource, IndexError, SearchIndex},
};

/// The fault that stops search's consumer from applying product events.
pub const INDEXING_STALLED: &str = "search-indexing-stalled";

/// Whether [`INDEXING_STALLED`] holds the indexer now.
pub fn indexing_stalled() -> bool {
    faults::hits(INDEXING_STALLED, crate::config::SERVICE_NAME).is_some()
}

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
            Some(doc) => with_commit_ts(doc, ev),
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

/// The catalog's current product, to index for `ev`, with the event's
/// commit time only when it is the event's version. When the catalog is
/// already past it (another edit came after), the newer version's commit
/// time is not known here, and the event's would make that version look
/// older than it is: its commit → searchable would include the time between
/// the two edits (the cdc-latency lab's 500–1000 ms tail).
fn with_commit_ts(doc: ProductDoc, ev: &ProductEvent) -> ProductDoc {
    ProductDoc {
        commit_ts_ms: if doc.version == ev.version {
            ev.commit_ts_ms
        } else {
            None
        },
        ..doc
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

    fn held_by(&self) -> Option<&'static str> {
        indexing_stalled().then_some(INDEXING_STALLED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_catalog_version_is_not_stamped_with_an_older_commit_time() {
        let ev = ProductEvent {
            tenant_id: None,
            product_id: "p".into(),
            version: 5,
            op: event::Op::Update,
            commit_ts_ms: Some(1_000),
            kind: None,
        };
        let at = |version| ProductDoc {
            version,
            ..ProductDoc::default()
        };
        assert_eq!(with_commit_ts(at(5), &ev).commit_ts_ms, Some(1_000));
        assert_eq!(
            with_commit_ts(at(6), &ev).commit_ts_ms,
            None,
            "version 6 was committed after 1,000 ms, at a time this event does not carry"
        );
    }

    #[test]
    fn search_indexing_stalled_holds_the_indexer_only_while_set_for_search() {
        // The only test of this binary that touches the process-wide fault
        // view, so no other test sees it.
        let spec = faults::spec(INDEXING_STALLED).expect("in the catalog");
        assert_eq!(spec.component, crate::config::SERVICE_NAME);
        assert!(!indexing_stalled());
        faults::set_view([spec.activate(None, None, None, 0).unwrap()]);
        assert!(indexing_stalled());
        faults::set_view([faults::Active {
            target: "catalog".into(),
            ..spec.activate(None, None, None, 0).unwrap()
        }]);
        assert!(!indexing_stalled(), "it hits search only");
        faults::set_view([]);
        assert!(!indexing_stalled());
    }
}
