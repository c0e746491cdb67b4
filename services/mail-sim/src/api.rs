//! mail-sim's HTTP API: the messages it kept, and its faults.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Path, State},
    routing::get,
};
use serde_json::{Value, json};
use shopstream_platform::{ErrorCode, Problem, http::ApiJson};

use crate::{
    FaultSettings, Faults, MAX_LATENCY_MS,
    store::{Message, Store},
};

#[derive(Clone)]
struct Api {
    store: Store,
    faults: Arc<Faults>,
}

/// `GET /messages`, `GET /messages/{id}`, `GET|PUT|DELETE /_sim/faults`.
pub fn routes(store: Store, faults: Arc<Faults>) -> Router {
    Router::new()
        .route("/messages", get(list))
        .route("/messages/{id}", get(show))
        .route(
            "/_sim/faults",
            get(faults_get).put(faults_put).delete(faults_clear),
        )
        .with_state(Api { store, faults })
}

/// Every message kept, newest first (without bodies).
async fn list(State(api): State<Api>) -> Json<Value> {
    Json(json!({ "messages": api.store.list() }))
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
