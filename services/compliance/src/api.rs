//! gRPC `StartDSAR` / `GetDSAR`, and over HTTP the public key set
//! (`/.well-known/jwks.json`) and the audit chain (`/audit/chain`,
//! `/audit/chain/{seq}`) that `shopstream dsar verify` checks against.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Path, State as AxState},
    http::header,
    response::IntoResponse,
    routing::get,
};
use rand::RngCore;
use shopstream_platform::{
    error::{ErrorCode, Problem},
    grpc,
};
use shopstream_proto::{compliance::v1 as pb, dsar::v1 as dpb};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    Ctx,
    domain::{Jwks, Kind, State},
    store::{Dsar, NewDsar, Started},
    workflow,
};

/// Bytes of a subject's salt.
const SALT_BYTES: usize = 16;

pub struct GrpcApi {
    pub ctx: Arc<Ctx>,
    pub temporal: temporalio_client::Client,
    pub task_queue: String,
    pub default_tenant: String,
}

fn kind_pb(k: Kind) -> i32 {
    match k {
        Kind::Erase => pb::DsarKind::Delete as i32,
        Kind::Export => pb::DsarKind::Export as i32,
    }
}

fn state_pb(s: State) -> i32 {
    (match s {
        State::Pending => pb::DsarState::Pending,
        State::Running => pb::DsarState::Running,
        State::Completed => pb::DsarState::Completed,
        State::Failed => pb::DsarState::Failed,
    }) as i32
}

fn count_pb(c: &shopstream_dsar::StoreCount) -> dpb::StoreCount {
    dpb::StoreCount {
        store: c.store.clone(),
        count: c.count,
        detail: c.detail.clone(),
    }
}

/// The wire form of a DSAR (the export URL is presigned on every read).
pub async fn dsar_pb(ctx: &Ctx, d: &Dsar) -> pb::Dsar {
    let mut stores = Vec::new();
    for (participant, step) in &d.steps {
        let state = if step.state == "completed" {
            State::Completed
        } else {
            State::Running
        };
        if step.counts.is_empty() {
            stores.push(pb::StoreResult {
                store: participant.clone(),
                state: state_pb(state),
                records_affected: 0,
                detail: step.detail.clone(),
                completed_at_ms: step.completed_at_ms,
                participant: participant.clone(),
                took_ms: step.took_ms,
                attempts: step.attempts,
            });
        }
        for c in &step.counts {
            stores.push(pb::StoreResult {
                store: c.store.clone(),
                state: state_pb(state),
                records_affected: c.count,
                detail: if step.detail.is_empty() {
                    c.detail.clone()
                } else {
                    step.detail.clone()
                },
                completed_at_ms: step.completed_at_ms,
                participant: participant.clone(),
                took_ms: step.took_ms,
                attempts: step.attempts,
            });
        }
    }
    let (mut export_url, mut expires) = (String::new(), 0);
    if let (State::Completed, Some(key)) = (d.state, &d.export_key) {
        match crate::archive::presign(&ctx.presigner, &ctx.export_bucket, key, ctx.export_url_ttl)
            .await
        {
            Ok(u) => {
                export_url = u;
                expires = ctx.clock.now_ms() + ctx.export_url_ttl.as_millis() as i64;
            }
            Err(e) => tracing::warn!(dsar = %d.dsar_id, error = %e, "export url not presigned"),
        }
    }
    let sweep = d.sweep.clone().unwrap_or_default();
    pb::Dsar {
        dsar_id: d.dsar_id.to_string(),
        subject_user_id: d.subject_user_id.to_string(),
        kind: kind_pb(d.kind),
        state: state_pb(d.state),
        stores,
        export_url,
        export_url_expires_at_ms: expires,
        certificate_jws: d.certificate.clone().unwrap_or_default(),
        audit_record_id: d
            .audit_seq
            .map(|s| crate::domain::chain_key(s as u64))
            .unwrap_or_default(),
        requested_by: d.requested_by.clone(),
        created_at_ms: d.created_at_ms,
        completed_at_ms: d.completed_at_ms,
        waiting_on: d.waiting_on.clone(),
        retained: d
            .steps
            .values()
            .flat_map(|s| s.retained.iter())
            .filter(|r| r.count > 0)
            .map(|r| dpb::Retained {
                store: r.store.clone(),
                count: r.count,
                basis: r.basis.clone(),
                fields_kept: r.fields_kept.clone(),
                retain_days: r.retain_days,
            })
            .collect(),
        swept: d.sweep.is_some(),
        sweep_clean: sweep.clean,
        sweep: sweep.checks.iter().map(count_pb).collect(),
        residue: sweep.residue,
        error: d.error.clone(),
        audit_seq: d.audit_seq.unwrap_or(-1),
        audit_hash: d.audit_hash.clone().unwrap_or_default(),
    }
}

fn internal(e: impl std::fmt::Display) -> Status {
    tracing::warn!(error = %e, "compliance store");
    Status::unavailable("the compliance store is unavailable; retry")
}

#[tonic::async_trait]
impl pb::compliance_service_server::ComplianceService for GrpcApi {
    async fn start_dsar(
        &self,
        req: Request<pb::StartDsarRequest>,
    ) -> Result<Response<pb::StartDsarResponse>, Status> {
        let tenant = grpc::tenant(&req, &self.default_tenant);
        let r = req.into_inner();
        let subject: Uuid = r.subject_user_id.trim().parse().map_err(|_| {
            Status::invalid_argument(format!(
                "subject_user_id {:?} is not a user id (a UUID)",
                r.subject_user_id
            ))
        })?;
        let kind = match pb::DsarKind::try_from(r.kind) {
            Ok(pb::DsarKind::Delete) => Kind::Erase,
            Ok(pb::DsarKind::Export) => Kind::Export,
            _ => {
                return Err(Status::invalid_argument(
                    "kind must be erase (DELETE) or export",
                ));
            }
        };
        let requested_by = if r.requested_by.trim().is_empty() {
            "unknown"
        } else {
            r.requested_by.trim()
        };
        if r.idempotency_key.len() > 128 {
            return Err(Status::invalid_argument(
                "idempotency_key is longer than 128 characters",
            ));
        }
        let mut salt = vec![0u8; SALT_BYTES];
        rand::rng().fill_bytes(&mut salt);
        let c = &self.ctx;
        let (d, started) = c
            .store
            .start(NewDsar {
                dsar_id: Uuid::now_v7(),
                tenant: &tenant,
                subject,
                kind,
                requested_by,
                idempotency_key: Some(r.idempotency_key.trim()).filter(|k| !k.is_empty()),
                salt,
                now_ms: c.clock.now_ms(),
            })
            .await
            .map_err(internal)?;
        if started == Started::New {
            c.metrics.started.inc();
            tracing::info!(dsar = %d.dsar_id, %tenant, kind = kind.as_str(), "dsar started");
        }
        if !d.state.is_terminal() {
            // Also for a joined or replayed one whose start was lost; the
            // resumer would start it within a minute anyway.
            if let Err(e) = workflow::start(&self.temporal, &self.task_queue, d.dsar_id).await {
                tracing::warn!(dsar = %d.dsar_id, error = %e, "workflow not started yet; the resumer retries");
            }
        }
        Ok(Response::new(pb::StartDsarResponse {
            dsar: Some(dsar_pb(c, &d).await),
        }))
    }

    async fn get_dsar(
        &self,
        req: Request<pb::GetDsarRequest>,
    ) -> Result<Response<pb::GetDsarResponse>, Status> {
        let tenant = grpc::tenant(&req, &self.default_tenant);
        let id: Uuid = req
            .get_ref()
            .dsar_id
            .parse()
            .map_err(|_| Status::invalid_argument("dsar_id is not a UUID"))?;
        let d = self
            .ctx
            .store
            .get(&tenant, id)
            .await
            .map_err(internal)?
            .ok_or_else(|| Status::not_found(format!("no DSAR {id}")))?;
        Ok(Response::new(pb::GetDsarResponse {
            dsar: Some(dsar_pb(&self.ctx, &d).await),
        }))
    }
}

async fn jwks(AxState(c): AxState<Arc<Ctx>>) -> Json<Jwks> {
    Json(Jwks {
        keys: vec![c.signer.jwk()],
    })
}

async fn chain(AxState(c): AxState<Arc<Ctx>>) -> Result<Json<serde_json::Value>, Problem> {
    let seqs = crate::audit::seqs(&c.s3, &c.audit_bucket)
        .await
        .map_err(|e| Problem::new(ErrorCode::Unavailable, e))?;
    Ok(Json(
        serde_json::json!({ "bucket": c.audit_bucket, "records": seqs }),
    ))
}

async fn record(
    AxState(c): AxState<Arc<Ctx>>,
    Path(seq): Path<u64>,
) -> Result<impl IntoResponse, Problem> {
    let bytes = crate::audit::get(&c.s3, &c.audit_bucket, seq)
        .await
        .map_err(|e| Problem::new(ErrorCode::Unavailable, e))?
        .ok_or_else(|| Problem::new(ErrorCode::NotFound, format!("no audit record {seq}")))?;
    Ok(([(header::CONTENT_TYPE, "application/jose")], bytes))
}

pub fn routes(ctx: Arc<Ctx>) -> Router {
    Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route("/audit/chain", get(chain))
        .route("/audit/chain/{seq}", get(record))
        .with_state(ctx)
}
