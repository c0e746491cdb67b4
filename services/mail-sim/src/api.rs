//! mail-sim's HTTP API: the messages it kept, and its faults.
//!
//! `GET /messages` lists every message, newest first; with `?to=ADDR` only
//! those with that recipient (any case), with `&tenant=T` only those from
//! tenant `T` or from none named, with `&raw=true` their text too. The
//! answer carries `count`. `DELETE /messages?to=ADDR[&tenant=T]` deletes
//! the same selection and answers `{"deleted": n}` (a DSAR erasure: the sink
//! stands in for the provider's copy of what a person was sent); without
//! `to` it is refused, so nothing deletes every message by accident.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    routing::get,
};
use serde::Deserialize;
use serde_json::{Value, json};
use shopstream_platform::{ErrorCode, Problem, http::ApiJson};

use crate::{
    FaultSettings, Faults, MAX_LATENCY_MS,
    store::{Message, Recipient, Store},
};

#[derive(Clone)]
struct Api {
    store: Store,
    faults: Arc<Faults>,
}

/// `GET|DELETE /messages`, `GET /messages/{id}`, `GET|PUT|DELETE /_sim/faults`.
pub fn routes(store: Store, faults: Arc<Faults>) -> Router {
    Router::new()
        .route("/messages", get(list).delete(delete_to))
        .route("/messages/{id}", get(show))
        .route(
            "/_sim/faults",
            get(faults_get).put(faults_put).delete(faults_clear),
        )
        .with_state(Api { store, faults })
}

/// The query of `GET|DELETE /messages`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Selection {
    /// A recipient address.
    to: Option<String>,
    /// A tenant (with `to` only).
    tenant: Option<String>,
    /// Include each message's text (`GET` only).
    #[serde(default)]
    raw: bool,
}

impl Selection {
    fn recipient(&self) -> Result<Option<Recipient<'_>>, Problem> {
        match (&self.to, &self.tenant) {
            (Some(to), tenant) if !to.trim().is_empty() => Ok(Some(Recipient {
                to,
                tenant: tenant.as_deref().filter(|t| !t.is_empty()),
            })),
            (_, None) => Ok(None),
            (_, Some(_)) => Err(Problem::new(ErrorCode::Unprocessable, "invalid query")
                .with_field("to", "required with tenant")),
        }
    }
}

/// The messages kept, newest first, every one or those sent to `to`
/// (without bodies unless `raw`).
async fn list(State(api): State<Api>, Query(q): Query<Selection>) -> Result<Json<Value>, Problem> {
    let summaries = match q.recipient()? {
        Some(r) => api.store.sent_to(&r),
        None => api.store.list(),
    };
    let count = summaries.len();
    if q.raw {
        let messages: Vec<Message> = summaries
            .iter()
            .filter_map(|s| api.store.get(&s.id))
            .collect();
        return Ok(Json(json!({ "messages": messages, "count": count })));
    }
    Ok(Json(json!({ "messages": summaries, "count": count })))
}

/// Delete the messages sent to `to` (of `tenant`, or of none named).
async fn delete_to(
    State(api): State<Api>,
    Query(q): Query<Selection>,
) -> Result<Json<Value>, Problem> {
    let Some(r) = q.recipient()? else {
        return Err(Problem::new(ErrorCode::Unprocessable, "invalid query")
            .with_field("to", "a recipient address is required"));
    };
    let deleted = api.store.delete_to(&r).map_err(|e| {
        tracing::error!(error = %e, "deleting messages");
        Problem::new(
            ErrorCode::Unavailable,
            "mail-sim could not delete the messages",
        )
    })?;
    if deleted > 0 {
        tracing::info!(deleted, "messages deleted by recipient");
    }
    Ok(Json(json!({ "deleted": deleted })))
}

async fn show(State(api): State<Api>, Path(id): Path<String>) -> Result<Json<Message>, Problem> {
    api.store
        .get(&id)
        .map(Json)
        .ok_or_else(|| Problem::new(ErrorCode::NotFound, "no such message"))
}

async fn faults_get(State(api): State<Api>) -> Json<FaultSettings> {
    Json(api.faults.get())
}

/// Replace the faults in force.
async fn faults_put(
    State(api): State<Api>,
    ApiJson(f): ApiJson<FaultSettings>,
) -> Result<Json<FaultSettings>, Problem> {
    if f.latency_ms > MAX_LATENCY_MS {
        return Err(Problem::new(ErrorCode::Unprocessable, "invalid faults")
            .with_field("latency_ms", format!("at most {MAX_LATENCY_MS}")));
    }
    api.faults.set(f.clone());
    Ok(Json(f))
}

async fn faults_clear(State(api): State<Api>) -> Json<FaultSettings> {
    api.faults.set(FaultSettings::default());
    Json(FaultSettings::default())
}
