//! Media: `POST /media/uploads` declares an upload and answers a presigned
//! PUT (the bytes go straight to S3, never through the gateway);
//! `GET /media/{id}` follows it through the pipeline to its variants;
//! `POST /admin/media/{id}/block` puts a picture on moderation's blocklist;
//! `GET /media/placeholder/{ref}` draws the picture shown while a reference
//! has no ready image.

use std::collections::BTreeMap;

use axum::{
    Json,
    extract::{Path, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use shopstream_platform::{ErrorCode, Problem, http::ApiJson};
use shopstream_proto::media::v1::{
    self as pb, BlockAssetRequest, GetAssetRequest, ResolveImagesRequest, StartIngestRequest,
};
use utoipa::ToSchema;

use crate::{
    AppState,
    auth::{Admin, User},
    upstream::{problem_of, request},
};

const SERVICE: &str = "media";

/// Body of `POST /media/uploads`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadCreate {
    /// `image` or `video`.
    #[schema(pattern = "^(image|video)$")]
    pub kind: String,
    /// MIME type the PUT will carry, e.g. `image/jpeg`, `video/mp4`.
    pub content_type: String,
    /// Exact size of the file; the upload URL is signed for this length.
    /// Images at most 20 MiB, clips at most 200 MiB.
    #[schema(minimum = 1)]
    pub size_bytes: u64,
    /// Original file name, for display.
    #[serde(default)]
    pub filename: String,
    /// What it illustrates, e.g. `post:<id>`, or `product:<id>` (admins
    /// only) — optional.
    #[serde(default, rename = "ref")]
    pub reference: String,
}

/// How to upload: one HTTP PUT of the file's bytes with these headers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UploadTarget {
    pub method: String,
    pub url: String,
    /// Send exactly these (Content-Type and Content-Length are signed).
    pub headers: BTreeMap<String, String>,
    pub expires_at_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UploadView {
    pub asset: AssetView,
    pub upload: UploadTarget,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VariantView {
    /// `original`, `thumb_160`, `thumb_480`, `thumb_1080`; clips also
    /// `poster`, `mp4_720`, `mp4_360`.
    pub name: String,
    /// Presigned GET, valid for an hour.
    pub url: String,
    pub content_type: String,
    pub width: u32,
    pub height: u32,
    pub size_bytes: u64,
    /// Clips only.
    pub duration_ms: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AttemptView {
    pub step: String,
    pub attempt: u32,
    pub started_at_ms: i64,
    /// 0 while it runs.
    pub finished_at_ms: i64,
    /// Empty when it succeeded (or still runs).
    pub error: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AssetView {
    pub asset_id: String,
    pub owner_id: String,
    /// `image` or `video`.
    pub kind: String,
    /// `awaiting_upload`, `processing`, `ready`, `rejected` or `failed`.
    pub status: String,
    pub content_type: String,
    pub size_bytes: u64,
    #[serde(rename = "ref")]
    pub reference: String,
    pub variants: Vec<VariantView>,
    /// Every attempt of every step, in order.
    pub attempts: Vec<AttemptView>,
    /// Rejected: moderation's reasons; failed: the last error.
    pub failure_reason: String,
    /// Failed: the step that ran out of attempts.
    pub failed_step: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BlockView {
    /// The perceptual hash now blocked (16 hex digits).
    pub phash: String,
}

fn status_name(s: i32) -> &'static str {
    match pb::AssetStatus::try_from(s).unwrap_or(pb::AssetStatus::Unspecified) {
        pb::AssetStatus::AwaitingUpload => "awaiting_upload",
        pb::AssetStatus::Processing => "processing",
        pb::AssetStatus::Ready => "ready",
        pb::AssetStatus::Rejected => "rejected",
        pb::AssetStatus::Failed => "failed",
        pb::AssetStatus::Unspecified => "unspecified",
    }
}

impl From<pb::Asset> for AssetView {
    fn from(a: pb::Asset) -> AssetView {
        AssetView {
            kind: match pb::MediaKind::try_from(a.kind) {
                Ok(pb::MediaKind::Video) => "video",
                _ => "image",
            }
            .into(),
            status: status_name(a.status).into(),
            asset_id: a.asset_id,
            owner_id: a.owner_id,
            content_type: a.content_type,
            size_bytes: a.size_bytes,
            reference: a.r#ref,
            variants: a
                .variants
                .into_iter()
                .map(|v| VariantView {
                    name: v.name,
                    url: v.url,
                    content_type: v.content_type,
                    width: v.width_px,
                    height: v.height_px,
                    size_bytes: v.size_bytes,
                    duration_ms: v.duration_ms,
                })
                .collect(),
            attempts: a
                .attempts
                .into_iter()
                .map(|t| AttemptView {
                    step: t.step,
                    attempt: t.attempt,
                    started_at_ms: t.started_at_ms,
                    finished_at_ms: t.finished_at_ms,
                    error: t.error,
                })
                .collect(),
            failure_reason: a.failure_reason,
            failed_step: a.failed_step,
            created_at_ms: a.created_at_ms,
            updated_at_ms: a.updated_at_ms,
        }
    }
}

/// Declare an upload and get a presigned PUT for it (15 minutes). Upload the
/// bytes with exactly the headers returned; the pipeline starts when the
/// upload lands. A type or size outside policy is refused here, before any
/// URL is issued.
#[utoipa::path(post, path = "/media/uploads", tag = "media", request_body = UploadCreate, security(("bearer" = [])),
    responses((status = 201, body = UploadView),
        (status = 400, description = "the body is not JSON, or not sent as application/json"),
        (status = 401, description = "no or invalid access token"),
        (status = 403, description = "`ref` names a product and the caller is not an admin"),
        (status = 413, description = "body too large"),
        (status = 422, description = "a kind, type or size outside policy, all listed"),
        (status = 503, description = "media is unavailable")))]
pub async fn create_upload(
    State(state): State<AppState>,
    User(claims): User,
    ApiJson(body): ApiJson<UploadCreate>,
) -> Result<Response, Problem> {
    // Anyone may attach a picture to what they own (a post, say); a
    // product's picture is the shop's to choose.
    if body.reference.starts_with("product:") && !claims.admin {
        return Err(Problem::new(
            ErrorCode::PermissionDenied,
            "only an admin attaches pictures to products",
        ));
    }
    let kind = match body.kind.as_str() {
        "image" => pb::MediaKind::Image,
        "video" => pb::MediaKind::Video,
        _ => {
            return Err(
                Problem::new(ErrorCode::Unprocessable, "the upload is outside policy")
                    .with_field("kind", "must be image or video"),
            );
        }
    };
    let resp = state
        .media
        .clone()
        .start_ingest(request(
            StartIngestRequest {
                owner_id: claims.sub.clone(),
                filename: body.filename,
                content_type: body.content_type,
                size_bytes: body.size_bytes,
                kind: kind as i32,
                r#ref: body.reference,
            },
            &claims.tid,
            state.upstream_timeout,
        ))
        .await
        .map_err(|s| problem_of(SERVICE, s))?
        .into_inner();
    let asset = resp
        .asset
        .ok_or_else(|| Problem::new(ErrorCode::Internal, "media answered without an asset"))?;
    let location = format!("/media/{}", asset.asset_id);
    let view = UploadView {
        asset: asset.into(),
        upload: UploadTarget {
            method: "PUT".into(),
            url: resp.upload_url,
            headers: resp.upload_headers.into_iter().collect(),
            expires_at_ms: resp.upload_url_expires_at_ms,
        },
    };
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(view),
    )
        .into_response())
}

/// One of the caller's assets (admins see the tenant's): its status, every
/// step attempt, and when ready its variants as presigned GETs.
#[utoipa::path(get, path = "/media/{id}", tag = "media", security(("bearer" = [])),
    params(("id" = String, Path, description = "asset id")),
    responses((status = 200, body = AssetView), (status = 401, description = "no or invalid access token"),
        (status = 404, description = "absent or not yours"), (status = 503, description = "media is unavailable")))]
pub async fn get_asset(
    State(state): State<AppState>,
    User(claims): User,
    Path(id): Path<String>,
) -> Result<Json<AssetView>, Problem> {
    let asset = state
        .media
        .clone()
        .get_asset(request(
            GetAssetRequest {
                asset_id: id,
                owner_id: if claims.admin {
                    String::new()
                } else {
                    claims.sub.clone()
                },
                url_ttl_s: 0,
            },
            &claims.tid,
            state.upstream_timeout,
        ))
        .await
        .map_err(|s| problem_of(SERVICE, s))?
        .into_inner()
        .asset
        .ok_or_else(|| Problem::new(ErrorCode::NotFound, "no such asset"))?;
    Ok(Json(asset.into()))
}

/// Block a picture (admin): its perceptual hash joins moderation's
/// blocklist, so later uploads of it — resized, recompressed, slightly
/// edited — are rejected.
#[utoipa::path(post, path = "/admin/media/{id}/block", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "asset id")),
    responses((status = 200, body = BlockView), (status = 401, description = "no or invalid access token"),
        (status = 403, description = "not an admin"), (status = 404, description = "no such asset"),
        (status = 409, description = "the asset has not been ingested yet"),
        (status = 503, description = "media is unavailable")))]
pub async fn block_asset(
    State(state): State<AppState>,
    Admin(claims): Admin,
    Path(id): Path<String>,
) -> Result<Json<BlockView>, Problem> {
    let r = state
        .media
        .clone()
        .block_asset(request(
            BlockAssetRequest { asset_id: id },
            &claims.tid,
            state.upstream_timeout,
        ))
        .await
        .map_err(|s| problem_of(SERVICE, s))?
        .into_inner();
    Ok(Json(BlockView { phash: r.phash }))
}

/// Bound on asking media for pictures while answering a catalog read.
const IMAGES_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);
/// The thumbnail products show.
const PRODUCT_VARIANT: &str = "thumb_480";

/// Products' pictures, by product id.
#[derive(Debug, Default)]
pub struct Images {
    urls: std::collections::HashMap<String, String>,
    /// False when media did not answer (everything is a placeholder).
    pub answered: bool,
}

impl Images {
    /// The picture of product `id`: media's answer, else the placeholder.
    pub fn url(&self, id: &str) -> String {
        self.urls
            .get(id)
            .cloned()
            .unwrap_or_else(|| placeholder_url(&format!("product:{id}")))
    }
}

/// The gateway's placeholder picture of a reference.
pub fn placeholder_url(reference: &str) -> String {
    format!("/media/placeholder/{reference}.svg")
}

/// The pictures of `ids` (one call to media). A catalog read never fails
/// because of media: without an answer within [`IMAGES_TIMEOUT`], every
/// product shows its placeholder.
pub async fn product_images(state: &AppState, tenant: &str, ids: &[String]) -> Images {
    if ids.is_empty() {
        return Images {
            answered: true,
            ..Images::default()
        };
    }
    let refs = ids.iter().map(|id| format!("product:{id}")).collect();
    let r = state
        .media
        .clone()
        .resolve_images(request(
            ResolveImagesRequest {
                refs,
                variant: PRODUCT_VARIANT.into(),
            },
            tenant,
            IMAGES_TIMEOUT.min(state.upstream_timeout),
        ))
        .await;
    match r {
        Ok(r) => Images {
            urls: r
                .into_inner()
                .images
                .into_iter()
                .filter_map(|i| {
                    let id = i.r#ref.strip_prefix("product:")?.to_string();
                    Some((id, i.url))
                })
                .collect(),
            answered: true,
        },
        Err(s) => {
            tracing::debug!(code = ?s.code(), message = s.message(), "media did not resolve pictures; placeholders shown");
            Images::default()
        }
    }
}

/// A stable colour from a reference.
fn hue(reference: &str) -> u32 {
    reference.bytes().fold(2_166_136_261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16_777_619)
    }) % 360
}

/// The picture shown for a reference with no ready image: a generated SVG
/// (a colour derived from the reference and a framed-picture glyph).
#[utoipa::path(get, path = "/media/placeholder/{ref}", tag = "media",
    params(("ref" = String, Path, description = "a reference such as product:<id>, optionally ending in .svg")),
    responses((status = 200, description = "an SVG image", content_type = "image/svg+xml")))]
pub async fn placeholder(Path(reference): Path<String>) -> Response {
    let r = reference.trim_end_matches(".svg");
    let h = hue(r);
    let svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="480" height="480" viewBox="0 0 480 480"><rect width="480" height="480" fill="hsl({h},45%,88%)"/><rect x="150" y="170" width="180" height="140" rx="10" fill="none" stroke="hsl({h},35%,45%)" stroke-width="10"/><circle cx="200" cy="215" r="16" fill="hsl({h},35%,45%)"/><path d="M160 300 L220 240 L260 275 L290 250 L320 300 Z" fill="hsl({h},35%,45%)"/></svg>"##
    );
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        svg,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_product_without_an_answer_shows_its_placeholder() {
        let none = Images::default();
        assert_eq!(none.url("p1"), "/media/placeholder/product:p1.svg");
        let some = Images {
            urls: [("p2".to_string(), "http://s3/x.jpg".to_string())].into(),
            answered: true,
        };
        assert_eq!(some.url("p2"), "http://s3/x.jpg");
        assert_eq!(some.url("p3"), "/media/placeholder/product:p3.svg");
    }

    #[tokio::test]
    async fn the_placeholder_is_an_svg_of_a_stable_colour() {
        let a = placeholder(Path("product:p1.svg".to_string())).await;
        assert_eq!(a.headers()[header::CONTENT_TYPE], "image/svg+xml");
        let body = |r: Response| async {
            let b = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
            String::from_utf8(b.to_vec()).unwrap()
        };
        let (a, b) = (
            body(a).await,
            body(placeholder(Path("product:p1".to_string())).await).await,
        );
        assert!(a.starts_with("<svg"));
        assert_eq!(
            a, b,
            "the same reference, with or without .svg, draws the same"
        );
        let c = body(placeholder(Path("product:p2".to_string())).await).await;
        assert_ne!(a, c);
    }
}
