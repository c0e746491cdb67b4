//! gRPC: `StartIngest` (a presigned PUT bound to the declared type and
//! length), `GetAsset` (variants as presigned GETs, and every attempt),
//! `BlockAsset` and `ResolveImages`.

use std::{sync::Arc, time::Duration};

use aws_sdk_s3::presigning::PresigningConfig;
use shopstream_platform::{clock::Clock, grpc::tenant, ids::IdGen};
use shopstream_proto::media::v1::{
    self as pb, BlockAssetRequest, BlockAssetResponse, GetAssetRequest, GetAssetResponse,
    ResolveImagesRequest, ResolveImagesResponse, ResolvedImage, StartIngestRequest,
    StartIngestResponse, media_service_server::MediaService,
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    domain::{self, Kind, Policy},
    store::{Asset, Store, Variant},
};

/// How long an upload URL is valid.
pub const UPLOAD_URL_TTL: Duration = Duration::from_secs(15 * 60);
/// How long a variant's URL is valid unless the caller asks otherwise.
pub const VARIANT_URL_TTL: Duration = Duration::from_secs(60 * 60);
/// At most this many references per `ResolveImages`.
pub const MAX_REFS: usize = 100;

pub struct GrpcApi {
    pub store: Store,
    /// Signs URLs for the address clients reach S3 at.
    pub presigner: aws_sdk_s3::Client,
    pub upload_bucket: String,
    pub bucket: String,
    pub policy: Policy,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn IdGen>,
    pub default_tenant: String,
    /// Where a reference without a ready image points: `{base}/{ref}.svg`.
    pub placeholder_base: String,
}

fn internal(e: impl std::fmt::Display) -> Status {
    tracing::warn!(error = %e, "media request failed");
    Status::internal("media failed")
}

fn kind_of(req: &StartIngestRequest) -> Option<Kind> {
    match pb::MediaKind::try_from(req.kind).unwrap_or(pb::MediaKind::Unspecified) {
        pb::MediaKind::Image => Some(Kind::Image),
        pb::MediaKind::Video => Some(Kind::Video),
        pb::MediaKind::Unspecified => None,
    }
}

fn status_pb(s: domain::Status) -> pb::AssetStatus {
    match s {
        domain::Status::AwaitingUpload => pb::AssetStatus::AwaitingUpload,
        domain::Status::Processing => pb::AssetStatus::Processing,
        domain::Status::Ready => pb::AssetStatus::Ready,
        domain::Status::Rejected => pb::AssetStatus::Rejected,
        domain::Status::Failed => pb::AssetStatus::Failed,
    }
}

fn kind_pb(k: Kind) -> pb::MediaKind {
    match k {
        Kind::Image => pb::MediaKind::Image,
        Kind::Video => pb::MediaKind::Video,
    }
}

/// A reference: `kind:id`, letters, digits and `-_.:` only, at most 128.
fn valid_ref(r: &str) -> bool {
    r.len() <= 128
        && r.split_once(':')
            .is_some_and(|(k, v)| !k.is_empty() && !v.is_empty())
        && r.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
}

impl GrpcApi {
    async fn presign_get(&self, key: &str, ttl: Duration) -> Result<String, Status> {
        let cfg = PresigningConfig::expires_in(ttl).map_err(internal)?;
        let p = self
            .presigner
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(cfg)
            .await
            .map_err(internal)?;
        Ok(p.uri().to_string())
    }

    async fn variant_pb(&self, v: &Variant, ttl: Duration) -> Result<pb::Variant, Status> {
        Ok(pb::Variant {
            name: v.name.clone(),
            url: self.presign_get(&v.key, ttl).await?,
            content_type: v.content_type.clone(),
            width_px: v.width,
            height_px: v.height,
            size_bytes: v.size_bytes,
            duration_ms: v.duration_ms as u32,
        })
    }

    async fn asset_pb(&self, a: &Asset, ttl: Duration) -> Result<pb::Asset, Status> {
        let mut variants = vec![];
        if a.status == domain::Status::Ready {
            for v in self.store.variants(a.asset_id).await.map_err(internal)? {
                variants.push(self.variant_pb(&v, ttl).await?);
            }
        }
        let attempts = self
            .store
            .attempts(a.asset_id)
            .await
            .map_err(internal)?
            .into_iter()
            .map(|t| pb::StepAttempt {
                step: t.step,
                attempt: t.attempt,
                started_at_ms: t.started_ms,
                finished_at_ms: t.finished_ms,
                error: t.error,
            })
            .collect();
        Ok(pb::Asset {
            asset_id: a.asset_id.to_string(),
            owner_id: a.owner_id.clone(),
            kind: kind_pb(a.kind) as i32,
            status: status_pb(a.status) as i32,
            content_type: a.declared_type.clone(),
            size_bytes: a.declared_size,
            variants,
            failure_reason: a.failure_reason.clone(),
            created_at_ms: a.created_ms,
            updated_at_ms: a.updated_ms,
            attempts,
            r#ref: a.reference.clone(),
            failed_step: a
                .failed_step
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
        })
    }

    /// The tenant's asset `id` (of `owner` when not empty), else NOT_FOUND.
    async fn tenant_asset(&self, tenant: &str, id: &str, owner: &str) -> Result<Asset, Status> {
        let not_found = || Status::not_found(format!("no asset {id}"));
        let uuid: Uuid = id.parse().map_err(|_| not_found())?;
        self.store
            .get(uuid)
            .await
            .map_err(internal)?
            .filter(|a| a.tenant_id == tenant)
            .filter(|a| owner.is_empty() || a.owner_id == owner)
            .ok_or_else(not_found)
    }

    fn placeholder(&self, r: &str) -> String {
        format!("{}/{r}.svg", self.placeholder_base.trim_end_matches('/'))
    }
}

#[tonic::async_trait]
impl MediaService for GrpcApi {
    async fn start_ingest(
        &self,
        req: Request<StartIngestRequest>,
    ) -> Result<Response<StartIngestResponse>, Status> {
        let tenant_id = tenant(&req, &self.default_tenant);
        let r = req.into_inner();
        let mut errors: Vec<String> = vec![];
        if r.owner_id.is_empty() {
            errors.push("owner_id: required".into());
        }
        let kind = kind_of(&r);
        if kind.is_none() {
            errors.push("kind: must be image or video".into());
        }
        if !r.r#ref.is_empty() && !valid_ref(&r.r#ref) {
            errors
                .push("ref: must look like kind:id (letters, digits, - _ . :), at most 128".into());
        }
        if r.filename.len() > 255 {
            errors.push("filename: at most 255 bytes".into());
        }
        if let Some(kind) = kind
            && let Err(fields) = self
                .policy
                .check_declared(kind, &r.content_type, r.size_bytes)
        {
            errors.extend(
                fields
                    .into_iter()
                    .map(|f| format!("{}: {}", f.field, f.reason)),
            );
        }
        let Some(kind) = kind.filter(|_| errors.is_empty()) else {
            return Err(Status::invalid_argument(format!(
                "the upload is outside policy; {}",
                errors.join("; ")
            )));
        };
        let asset_id = self.ids.new_id();
        let now = self.clock.now_ms();
        // A user id is stored in its canonical form, so a DSAR finds it.
        let owner_id = Uuid::parse_str(&r.owner_id)
            .map(|u| u.to_string())
            .unwrap_or(r.owner_id);
        let asset = Asset {
            asset_id,
            tenant_id,
            owner_id,
            kind,
            status: domain::Status::AwaitingUpload,
            declared_type: r.content_type.clone(),
            declared_size: r.size_bytes,
            filename: r.filename,
            reference: r.r#ref,
            upload_bucket: self.upload_bucket.clone(),
            upload_key: format!("{}{asset_id}", crate::work::UPLOAD_PREFIX),
            format: None,
            width: None,
            height: None,
            duration_ms: None,
            phash: None,
            removed_metadata: None,
            failed_step: None,
            failure_reason: String::new(),
            created_ms: now,
            updated_ms: now,
        };
        // The signature covers Content-Type and Content-Length: S3 refuses a
        // PUT with another type or another length.
        let cfg = PresigningConfig::expires_in(UPLOAD_URL_TTL).map_err(internal)?;
        let presigned = self
            .presigner
            .put_object()
            .bucket(&asset.upload_bucket)
            .key(&asset.upload_key)
            .content_type(&r.content_type)
            .content_length(r.size_bytes as i64)
            .presigned(cfg)
            .await
            .map_err(internal)?;
        self.store.insert(&asset).await.map_err(internal)?;
        let upload_headers = presigned
            .headers()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("host"))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        tracing::info!(asset = %asset_id, kind = kind.as_str(), size = r.size_bytes, "upload URL issued");
        Ok(Response::new(StartIngestResponse {
            asset: Some(self.asset_pb(&asset, VARIANT_URL_TTL).await?),
            upload_url: presigned.uri().to_string(),
            upload_url_expires_at_ms: now + UPLOAD_URL_TTL.as_millis() as i64,
            upload_headers,
        }))
    }

    async fn get_asset(
        &self,
        req: Request<GetAssetRequest>,
    ) -> Result<Response<GetAssetResponse>, Status> {
        let tenant_id = tenant(&req, &self.default_tenant);
        let r = req.into_inner();
        let a = self
            .tenant_asset(&tenant_id, &r.asset_id, &r.owner_id)
            .await?;
        let ttl = match r.url_ttl_s {
            0 => VARIANT_URL_TTL,
            s => Duration::from_secs(u64::from(s).min(7 * 24 * 3600)),
        };
        Ok(Response::new(GetAssetResponse {
            asset: Some(self.asset_pb(&a, ttl).await?),
        }))
    }

    async fn block_asset(
        &self,
        req: Request<BlockAssetRequest>,
    ) -> Result<Response<BlockAssetResponse>, Status> {
        let tenant_id = tenant(&req, &self.default_tenant);
        let r = req.into_inner();
        let a = self.tenant_asset(&tenant_id, &r.asset_id, "").await?;
        let id = a.asset_id;
        let phash = a.phash.ok_or_else(|| {
            Status::failed_precondition(format!(
                "asset {id} has no perceptual hash yet (it is {}): block it once ingest has run",
                a.status.as_str()
            ))
        })?;
        self.store
            .block(&tenant_id, phash, id, self.clock.now_ms())
            .await
            .map_err(internal)?;
        tracing::info!(asset = %id, phash = format!("{phash:016x}"), "blocked");
        Ok(Response::new(BlockAssetResponse {
            phash: format!("{phash:016x}"),
        }))
    }

    async fn resolve_images(
        &self,
        req: Request<ResolveImagesRequest>,
    ) -> Result<Response<ResolveImagesResponse>, Status> {
        let tenant_id = tenant(&req, &self.default_tenant);
        let r = req.into_inner();
        if r.refs.len() > MAX_REFS {
            return Err(Status::invalid_argument(format!(
                "too many references; refs: at most {MAX_REFS}"
            )));
        }
        let variant = if r.variant.is_empty() {
            "thumb_480".to_string()
        } else {
            r.variant
        };
        if !domain::THUMBNAILS.iter().any(|(n, _)| *n == variant) {
            return Err(Status::invalid_argument(
                "unknown variant; variant: one of thumb_160, thumb_480, thumb_1080",
            ));
        }
        let refs: Vec<String> = r.refs.into_iter().filter(|x| valid_ref(x)).collect();
        let ready = self
            .store
            .ready_images(&tenant_id, &refs)
            .await
            .map_err(internal)?;
        let ids: Vec<Uuid> = ready.values().copied().collect();
        let variants = self
            .store
            .variant_of_each(&ids, &variant)
            .await
            .map_err(internal)?;
        let mut images = vec![];
        for reference in refs {
            let found = ready
                .get(&reference)
                .and_then(|id| variants.get(id).map(|v| (id, v)));
            images.push(match found {
                Some((id, v)) => ResolvedImage {
                    url: self.presign_get(&v.key, VARIANT_URL_TTL).await?,
                    asset_id: id.to_string(),
                    placeholder: false,
                    r#ref: reference,
                },
                None => ResolvedImage {
                    url: self.placeholder(&reference),
                    asset_id: String::new(),
                    placeholder: true,
                    r#ref: reference,
                },
            });
        }
        Ok(Response::new(ResolveImagesResponse { images }))
    }
}

#[cfg(test)]
mod tests {
    use super::valid_ref;

    #[test]
    fn references() {
        assert!(valid_ref("product:0192f0aa-1234"));
        assert!(!valid_ref("product"));
        assert!(!valid_ref("product:"));
        assert!(!valid_ref("product:a b"));
        assert!(!valid_ref(&format!("p:{}", "x".repeat(200))));
    }
}
