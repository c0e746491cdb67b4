//! DSARs for admins: `POST /admin/dsar` starts an export or an erasure of
//! one user of the admin's shop, `GET /admin/dsar/{id}` follows it (per
//! store, the sweep, what was retained, the certificate). Compliance runs
//! them (ADR 0012).

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use shopstream_platform::{ErrorCode, Problem, http::ApiJson};
use shopstream_proto::compliance::v1::{
    self as pb, DsarKind, DsarState, GetDsarRequest, StartDsarRequest,
};
use utoipa::ToSchema;

use crate::{
    AppState,
    auth::Admin,
    upstream::{problem_of, request},
};

const SERVICE: &str = "compliance";

/// Body of `POST /admin/dsar`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DsarCreate {
    /// The user's id (a UUID) in the admin's shop.
    #[schema(format = "uuid")]
    pub subject: String,
    /// `export` (an archive of everything held) or `erase`.
    #[schema(pattern = "^(export|erase)$")]
    pub kind: String,
}

/// One store's part of a DSAR.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DsarStoreView {
    pub participant: String,
    pub store: String,
    /// Records exported or erased (anonymised, for retained ones).
    pub count: u64,
    /// `running` (being retried: see `detail`) or `completed`.
    pub state: String,
    pub detail: String,
    pub took_ms: i64,
    pub attempts: u32,
}

/// A count of one check of the sweep.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DsarCheckView {
    pub store: String,
    pub count: u64,
    pub detail: String,
}

/// Records kept, anonymised, and why.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DsarRetainedView {
    pub store: String,
    pub count: u64,
    pub basis: String,
    pub fields_kept: String,
    pub retain_days: u32,
}

/// A DSAR as an admin sees it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DsarView {
    pub dsar_id: String,
    pub subject: String,
    /// `export` or `erase`.
    pub kind: String,
    /// `pending`, `running`, `completed` or `failed`.
    pub state: String,
    /// What it waits for while a participant is down.
    pub waiting_on: String,
    pub stores: Vec<DsarStoreView>,
    /// The last sweep (erasures): clean, its checks, where residue was.
    pub sweep_clean: Option<bool>,
    pub sweep: Vec<DsarCheckView>,
    pub residue: Vec<String>,
    pub retained: Vec<DsarRetainedView>,
    pub error: String,
    /// Exports, once completed: the archive, valid until `export_url_expires_at_ms`.
    pub export_url: Option<String>,
    pub export_url_expires_at_ms: Option<i64>,
    /// Once completed: the signed certificate (compact JWS; verify it with
    /// `shopstream dsar verify`).
    pub certificate: Option<String>,
    pub audit_record: Option<String>,
    pub created_at_ms: i64,
    pub completed_at_ms: i64,
}

fn state_name(s: i32) -> &'static str {
    match DsarState::try_from(s) {
        Ok(DsarState::Pending) => "pending",
        Ok(DsarState::Running) => "running",
        Ok(DsarState::Completed) => "completed",
        Ok(DsarState::Failed) => "failed",
        _ => "unknown",
    }
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

impl From<pb::Dsar> for DsarView {
    fn from(d: pb::Dsar) -> DsarView {
        DsarView {
            dsar_id: d.dsar_id,
            subject: d.subject_user_id,
            kind: match DsarKind::try_from(d.kind) {
                Ok(DsarKind::Export) => "export",
                _ => "erase",
            }
            .into(),
            state: state_name(d.state).into(),
            waiting_on: d.waiting_on,
            stores: d
                .stores
                .into_iter()
                .map(|s| DsarStoreView {
                    participant: s.participant,
                    store: s.store,
                    count: s.records_affected,
                    state: state_name(s.state).into(),
                    detail: s.detail,
                    took_ms: s.took_ms,
                    attempts: s.attempts,
                })
                .collect(),
            sweep_clean: d.swept.then_some(d.sweep_clean),
            sweep: d
                .sweep
                .into_iter()
                .map(|c| DsarCheckView {
                    store: c.store,
                    count: c.count,
                    detail: c.detail,
                })
                .collect(),
            residue: d.residue,
            retained: d
                .retained
                .into_iter()
                .map(|r| DsarRetainedView {
                    store: r.store,
                    count: r.count,
                    basis: r.basis,
                    fields_kept: r.fields_kept,
                    retain_days: r.retain_days,
                })
                .collect(),
            error: d.error,
            export_url_expires_at_ms: (!d.export_url.is_empty())
                .then_some(d.export_url_expires_at_ms),
            export_url: non_empty(d.export_url),
            certificate: non_empty(d.certificate_jws),
            audit_record: non_empty(d.audit_record_id),
            created_at_ms: d.created_at_ms,
            completed_at_ms: d.completed_at_ms,
        }
    }
}

/// Start an export or an erasure of one user (admin). 202 with the DSAR; a
/// DSAR of the same user that is still running is returned instead (the
/// request joins it). An unknown user is not an error: the DSAR completes
/// and its certificate says nothing was found.
#[utoipa::path(post, path = "/admin/dsar", tag = "admin", request_body = DsarCreate, security(("bearer" = [])),
    responses((status = 202, body = DsarView, description = "started (or joined)"),
        (status = 400, description = "a body that is not JSON"),
        (status = 401, description = "no or invalid access token"), (status = 403, description = "not an admin"),
        (status = 422, description = "a subject that is not a UUID, or a kind other than export or erase"),
        (status = 503, description = "compliance is unavailable")))]
pub async fn start(
    State(state): State<AppState>,
    Admin(claims): Admin,
    ApiJson(body): ApiJson<DsarCreate>,
) -> Result<Response, Problem> {
    let kind = match body.kind.as_str() {
        "erase" => DsarKind::Delete,
        "export" => DsarKind::Export,
        _ => {
            return Err(Problem::new(ErrorCode::Unprocessable, "invalid DSAR")
                .with_field("kind", "must be export or erase"));
        }
    };
    if uuid::Uuid::parse_str(body.subject.trim()).is_err() {
        return Err(Problem::new(ErrorCode::Unprocessable, "invalid DSAR")
            .with_field("subject", "must be a user id (a UUID)"));
    }
    let d = state
        .compliance
        .clone()
        .start_dsar(request(
            StartDsarRequest {
                idempotency_key: String::new(),
                subject_user_id: body.subject.trim().to_string(),
                kind: kind as i32,
                requested_by: format!("admin {}", claims.sub),
            },
            &claims.tid,
            state.upstream_timeout,
        ))
        .await
        .map_err(|s| problem_of(SERVICE, s))?
        .into_inner()
        .dsar
        .ok_or_else(|| Problem::new(ErrorCode::Unavailable, "compliance answered nothing"))?;
    Ok((StatusCode::ACCEPTED, Json(DsarView::from(d))).into_response())
}

/// One DSAR of the admin's shop (admin).
#[utoipa::path(get, path = "/admin/dsar/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "the DSAR's id")),
    responses((status = 200, body = DsarView),
        (status = 401, description = "no or invalid access token"), (status = 403, description = "not an admin"),
        (status = 404, description = "no such DSAR in this shop"),
        (status = 422, description = "an id that is not a UUID"),
        (status = 503, description = "compliance is unavailable")))]
pub async fn get(
    State(state): State<AppState>,
    Admin(claims): Admin,
    Path(id): Path<String>,
) -> Result<Json<DsarView>, Problem> {
    if uuid::Uuid::parse_str(&id).is_err() {
        return Err(Problem::new(ErrorCode::Unprocessable, "invalid DSAR id")
            .with_field("id", "must be a UUID"));
    }
    let d = state
        .compliance
        .clone()
        .get_dsar(request(
            GetDsarRequest { dsar_id: id },
            &claims.tid,
            state.upstream_timeout,
        ))
        .await
        .map_err(|s| problem_of(SERVICE, s))?
        .into_inner()
        .dsar
        .ok_or_else(|| Problem::new(ErrorCode::Unavailable, "compliance answered nothing"))?;
    Ok(Json(DsarView::from(d)))
}
