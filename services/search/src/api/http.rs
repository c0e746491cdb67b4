//! HTTP routes of the search service beside the platform's `/healthz`,
//! `/readyz` and `/metrics`: `GET /debug/indexed/{product_id}`, what the index
//! holds for one product and when it became searchable, for labs measuring
//! commit→searchable latency; `POST /admin/reconcile`, which compares the
//! index with the catalog and repairs drift (`shopstream search reconcile`).
//! Reconciling runs here because the index has one writer: this process.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::HeaderMap,
    routing::{get, post},
};
use shopstream_platform::{ErrorCode, Problem};
use shopstream_proto::TENANT_METADATA_KEY;

use crate::{
    api::grpc::index_problem,
    ports::{CatalogSource, SearchIndex},
    reconcile::{ReconcileReport, reconcile},
};

#[derive(Clone)]
struct AppState {
    index: Arc<dyn SearchIndex>,
    catalog: Arc<dyn CatalogSource>,
    default_tenant: String,
}

/// Body of `GET /debug/indexed/{product_id}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IndexedBody {
    pub product_id: String,
    pub version: i64,
    pub deleted: bool,
    /// Catalog commit time carried by the CDC event, if known.
    pub commit_ts_ms: Option<i64>,
    /// When the document became visible to queries; null until then.
    pub searchable_ts_ms: Option<i64>,
    pub commit_to_searchable_ms: Option<i64>,
}

pub fn routes(
    index: Arc<dyn SearchIndex>,
    catalog: Arc<dyn CatalogSource>,
    default_tenant: String,
) -> Router {
    Router::new()
        .route("/debug/indexed/{product_id}", get(indexed))
        .route("/admin/reconcile", post(reconcile_now))
        .with_state(AppState {
            index,
            catalog,
            default_tenant,
        })
}

fn tenant_of(s: &AppState, headers: &HeaderMap) -> String {
    headers
        .get(TENANT_METADATA_KEY)
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.is_empty())
        .unwrap_or(&s.default_tenant)
        .to_string()
}

/// Compare the index with the catalog and repair what differs.
async fn reconcile_now(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<ReconcileReport>, Problem> {
    let tenant = tenant_of(&s, &headers);
    reconcile(&*s.catalog, &*s.index, &tenant)
        .await
        .map(Json)
        .map_err(|e| Problem::new(ErrorCode::Unavailable, format!("reconcile failed: {e}")))
}

async fn indexed(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(product_id): Path<String>,
) -> Result<Json<IndexedBody>, Problem> {
    let tenant = tenant_of(&s, &headers);
    let m = s
        .index
        .meta(&tenant, &product_id)
        .await
        .map_err(index_problem)?
        .ok_or_else(|| Problem::new(ErrorCode::NotFound, "product is not indexed"))?;
    Ok(Json(IndexedBody {
        product_id,
        version: m.version,
        deleted: m.deleted,
        commit_ts_ms: m.commit_ts_ms,
        searchable_ts_ms: m.searchable_ts_ms,
        commit_to_searchable_ms: m.commit_ts_ms.zip(m.searchable_ts_ms).map(|(c, s)| s - c),
    }))
}
