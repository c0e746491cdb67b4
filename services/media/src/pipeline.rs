//! What each pipeline step does, over the store and S3. The Temporal
//! workflow (`workflow`) calls these as activities; each is idempotent: a
//! variant already recorded (and present in S3) is not made again, and every
//! variant's key is the SHA-256 of its bytes.

use std::{path::PathBuf, sync::Arc, time::Duration};

use aws_sdk_s3::primitives::ByteStream;
use prometheus_client::metrics::counter::Counter;
use sha2::{Digest, Sha256};
use shopstream_platform::{clock::Clock, events::Envelope, ids::IdGen, outbox::Relay};
use uuid::Uuid;

use crate::{
    domain::{self, Classifier, Format, Kind, ModerationInput, Policy, Status, Step, Verdict},
    faults::Faults,
    process::{self, Encoded, ProcessError, RemovedMetadata},
    store::{Asset, STATUS_EVENT, StatusChanged, Store, Variant},
};

/// Why a step failed: `Invalid` is the file's fault (retrying cannot help,
/// so the asset fails at once); `Retryable` is anything else.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Retryable(String),
}

impl From<ProcessError> for StepError {
    fn from(e: ProcessError) -> StepError {
        match e {
            ProcessError::Invalid(m) => StepError::Invalid(m),
            ProcessError::Tool(m) => StepError::Retryable(m),
        }
    }
}

fn retry(what: &str) -> impl Fn(&dyn std::fmt::Display) -> StepError + '_ {
    move |e| StepError::Retryable(format!("{what}: {e}"))
}

/// What moderation decided (the workflow stops on a rejection).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StepOutcome {
    Continue,
    Rejected(Vec<String>),
}

/// What the pipeline counts on `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct PipelineMetrics {
    pub ready: Counter,
    pub rejected: Counter,
    pub failed: Counter,
    /// Step attempts that ended in an error (retried or not).
    pub attempts_failed: Counter,
}

impl PipelineMetrics {
    pub fn register(metrics: &shopstream_platform::metrics::Metrics) -> PipelineMetrics {
        let m = PipelineMetrics::default();
        metrics.register(
            "media_assets_ready",
            "Assets that reached ready",
            m.ready.clone(),
        );
        metrics.register(
            "media_assets_rejected",
            "Assets moderation rejected",
            m.rejected.clone(),
        );
        metrics.register(
            "media_assets_failed",
            "Assets failed after a step's attempts",
            m.failed.clone(),
        );
        metrics.register(
            "media_step_attempts_failed",
            "Pipeline step attempts that ended in an error",
            m.attempts_failed.clone(),
        );
        m
    }
}

/// Everything the steps need.
pub struct Pipeline {
    pub store: Store,
    pub s3: aws_sdk_s3::Client,
    /// Where variants (and clean originals) go.
    pub bucket: String,
    pub policy: Policy,
    pub faults: Arc<Faults>,
    pub classifier: Arc<dyn Classifier>,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn IdGen>,
    pub relay: Relay,
    /// Scratch space for clips (ffmpeg works on files).
    pub scratch: PathBuf,
    pub metrics: PipelineMetrics,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Pipeline {
    async fn asset(&self, id: Uuid) -> Result<Asset, StepError> {
        self.store
            .get(id)
            .await
            .map_err(|e| retry("postgres")(&e))?
            .ok_or_else(|| StepError::Invalid(format!("asset {id} does not exist")))
    }

    async fn get_object(&self, bucket: &str, key: &str, max: u64) -> Result<Vec<u8>, StepError> {
        let o = self
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| retry("s3 get")(&aws_sdk_s3::error::DisplayErrorContext(e)))?;
        let len = o.content_length().unwrap_or(0).max(0) as u64;
        if len > max {
            return Err(StepError::Invalid(format!(
                "the object is {len} bytes, over the {max} allowed"
            )));
        }
        let body = o.body.collect().await.map_err(|e| retry("s3 read")(&e))?;
        Ok(body.into_bytes().to_vec())
    }

    /// Has `name` been recorded, and is its object there?
    async fn recorded(&self, asset: Uuid, name: &str) -> Result<Option<Variant>, StepError> {
        let variants = self
            .store
            .variants(asset)
            .await
            .map_err(|e| retry("postgres")(&e))?;
        let Some(v) = variants.into_iter().find(|v| v.name == name) else {
            return Ok(None);
        };
        let present = self
            .s3
            .head_object()
            .bucket(&self.bucket)
            .key(&v.key)
            .send()
            .await
            .is_ok();
        Ok(present.then_some(v))
    }

    /// Write `bytes` under their content key and record them as `name`.
    async fn put_variant(
        &self,
        asset: Uuid,
        name: &str,
        bytes: Vec<u8>,
        content_type: &str,
        ext: &str,
        (width, height, duration_ms): (u32, u32, u64),
    ) -> Result<Variant, StepError> {
        let key = domain::content_key(&sha256_hex(&bytes), ext);
        let v = Variant {
            name: name.to_string(),
            key: key.clone(),
            content_type: content_type.to_string(),
            width,
            height,
            size_bytes: bytes.len() as u64,
            duration_ms,
        };
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type(content_type)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| retry("s3 put")(&aws_sdk_s3::error::DisplayErrorContext(e)))?;
        if let Err(e) = self.store.put_variant(asset, &v).await {
            return Err(self.unrecorded(asset, &key, e).await);
        }
        Ok(v)
    }

    /// A variant written to S3 but not recorded. If its asset is gone (a
    /// DSAR erased it while this step ran), the object goes too unless
    /// another asset records the same content, and the step fails for
    /// good; otherwise the step is retried.
    async fn unrecorded(&self, asset: Uuid, key: &str, e: sqlx::Error) -> StepError {
        if !matches!(self.store.get(asset).await, Ok(None)) {
            return retry("postgres")(&e);
        }
        if let Ok(false) = self.store.key_in_use(key).await
            && let Err(err) = self
                .s3
                .delete_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
        {
            tracing::warn!(%asset, key, error = %aws_sdk_s3::error::DisplayErrorContext(err), "object of an erased asset not deleted");
        }
        StepError::Invalid(format!("asset {asset} was erased"))
    }

    async fn put_encoded(&self, asset: Uuid, name: &str, e: Encoded) -> Result<Variant, StepError> {
        let (ct, ext, dims) = (e.content_type, e.ext, (e.width, e.height, 0));
        self.put_variant(asset, name, e.bytes, ct, ext, dims).await
    }

    fn max_bytes(&self, kind: Kind) -> u64 {
        match kind {
            Kind::Image => self.policy.max_image_bytes,
            Kind::Video => self.policy.max_video_bytes,
        }
    }

    /// A scratch directory for one attempt, removed when dropped.
    fn scratch(&self, asset: Uuid) -> Result<Scratch, StepError> {
        let dir = self
            .scratch
            .join(format!("{asset}-{}", self.ids.new_id().simple()));
        std::fs::create_dir_all(&dir).map_err(|e| retry("scratch dir")(&e))?;
        Ok(Scratch(dir))
    }

    /// Read the upload, check what it is, and keep a clean original (and a
    /// clip's poster frame).
    pub async fn ingest(&self, id: Uuid) -> Result<StepOutcome, StepError> {
        let a = self.asset(id).await?;
        if self.recorded(id, "original").await?.is_some() && a.phash.is_some() {
            return Ok(StepOutcome::Continue);
        }
        let max = a.declared_size.min(self.max_bytes(a.kind));
        let bytes = self
            .get_object(&a.upload_bucket, &a.upload_key, max)
            .await?;
        match a.kind {
            Kind::Image => {
                let policy = self.policy.clone();
                let i = tokio::task::spawn_blocking(move || process::ingest_image(&bytes, &policy))
                    .await
                    .map_err(|e| retry("ingest task")(&e))??;
                let (w, h) = (i.clean.width, i.clean.height);
                self.put_encoded(id, "original", i.clean).await?;
                self.store
                    .set_ingested(
                        id,
                        i.format,
                        w,
                        h,
                        0,
                        i.phash,
                        &i.removed,
                        self.clock.now_ms(),
                    )
                    .await
                    .map_err(|e| retry("postgres")(&e))?;
            }
            Kind::Video => {
                let format = domain::check_format(Kind::Video, domain::sniff(&bytes))
                    .map_err(StepError::Invalid)?;
                let dir = self.scratch(id)?;
                let ext = if format == Format::WebM {
                    "webm"
                } else {
                    "mp4"
                };
                let (raw, clean, poster) = (
                    dir.0.join(format!("upload.{ext}")),
                    dir.0.join(format!("clean.{ext}")),
                    dir.0.join("poster.png"),
                );
                tokio::fs::write(&raw, &bytes)
                    .await
                    .map_err(|e| retry("scratch write")(&e))?;
                drop(bytes);
                let info = process::probe(&raw).await?;
                self.policy
                    .check_dimensions(info.width, info.height)
                    .map_err(StepError::Invalid)?;
                process::clean_clip(&raw, &clean).await?;
                process::poster_frame(&clean, info.duration_ms, &poster).await?;
                let png = tokio::fs::read(&poster)
                    .await
                    .map_err(|e| retry("poster read")(&e))?;
                let policy = self.policy.clone();
                let (frame, hash) = tokio::task::spawn_blocking(move || {
                    let (_, img, _) = process::decode_image(&png, &policy)?;
                    Ok::<_, ProcessError>((
                        process::poster_jpeg(&png, &policy)?,
                        process::phash(&img),
                    ))
                })
                .await
                .map_err(|e| retry("poster task")(&e))??;
                let clean_bytes = tokio::fs::read(&clean)
                    .await
                    .map_err(|e| retry("scratch read")(&e))?;
                self.put_variant(
                    id,
                    "original",
                    clean_bytes,
                    format.content_type(),
                    ext,
                    (info.width, info.height, info.duration_ms),
                )
                .await?;
                self.put_encoded(id, "poster", frame).await?;
                self.store
                    .set_ingested(
                        id,
                        format,
                        info.width,
                        info.height,
                        info.duration_ms,
                        hash,
                        &RemovedMetadata::default(),
                        self.clock.now_ms(),
                    )
                    .await
                    .map_err(|e| retry("postgres")(&e))?;
            }
        }
        Ok(StepOutcome::Continue)
    }

    /// Policy, the blocklist and the classifier hook; `reject` is the fault
    /// switch's forced rejection.
    pub async fn moderate(&self, id: Uuid, reject: bool) -> Result<StepOutcome, StepError> {
        let a = self.asset(id).await?;
        let (Some(format), Some(width), Some(height), Some(phash)) =
            (a.format, a.width, a.height, a.phash)
        else {
            return Err(StepError::Retryable(
                "ingest has not recorded the asset".into(),
            ));
        };
        let blocklist = self
            .store
            .blocklist(&a.tenant_id)
            .await
            .map_err(|e| retry("postgres")(&e))?;
        let input = ModerationInput {
            kind: a.kind,
            format,
            width,
            height,
            phash,
            duration_ms: a.duration_ms.unwrap_or(0),
        };
        let mut verdict = domain::moderate(&input, &self.policy, &blocklist, &*self.classifier);
        if reject {
            let forced = "rejected by the media fault switch (moderate.reject)".to_string();
            verdict = match verdict {
                Verdict::Approved => Verdict::Rejected(vec![forced]),
                Verdict::Rejected(mut r) => {
                    r.push(forced);
                    Verdict::Rejected(r)
                }
            };
        }
        Ok(match verdict {
            Verdict::Approved => StepOutcome::Continue,
            Verdict::Rejected(r) => StepOutcome::Rejected(r),
        })
    }

    /// Three sizes of the clean original (or of a clip's poster frame).
    pub async fn thumbnail(&self, id: Uuid) -> Result<StepOutcome, StepError> {
        let a = self.asset(id).await?;
        let mut missing = vec![];
        for (name, _) in domain::THUMBNAILS {
            if self.recorded(id, name).await?.is_none() {
                missing.push(name.to_string());
            }
        }
        if missing.is_empty() {
            return Ok(StepOutcome::Continue);
        }
        let source = match a.kind {
            Kind::Image => "original",
            Kind::Video => "poster",
        };
        let src = self
            .recorded(id, source)
            .await?
            .ok_or_else(|| StepError::Retryable(format!("no {source} recorded yet")))?;
        let bytes = self
            .get_object(&self.bucket, &src.key, self.policy.max_image_bytes * 4)
            .await?;
        let policy = self.policy.clone();
        let thumbs = tokio::task::spawn_blocking(move || process::thumbnails(&bytes, &policy))
            .await
            .map_err(|e| retry("thumbnail task")(&e))??;
        for (name, t) in thumbs {
            if missing.contains(&name) {
                self.put_encoded(id, &name, t).await?;
            }
        }
        Ok(StepOutcome::Continue)
    }

    /// Clips: H.264/AAC MP4 at each rendition height.
    pub async fn transcode(&self, id: Uuid) -> Result<StepOutcome, StepError> {
        let a = self.asset(id).await?;
        if a.kind != Kind::Video {
            return Ok(StepOutcome::Continue);
        }
        let mut todo = vec![];
        for (name, height) in domain::RENDITIONS {
            if self.recorded(id, name).await?.is_none() {
                todo.push((name, height));
            }
        }
        if todo.is_empty() {
            return Ok(StepOutcome::Continue);
        }
        let src = self
            .recorded(id, "original")
            .await?
            .ok_or_else(|| StepError::Retryable("no original recorded yet".into()))?;
        let bytes = self
            .get_object(&self.bucket, &src.key, self.policy.max_video_bytes)
            .await?;
        let dir = self.scratch(id)?;
        let input = dir.0.join(format!(
            "in.{}",
            src.key.rsplit('.').next().unwrap_or("mp4")
        ));
        tokio::fs::write(&input, &bytes)
            .await
            .map_err(|e| retry("scratch write")(&e))?;
        drop(bytes);
        for (name, height) in todo {
            let out = dir.0.join(format!("{name}.mp4"));
            process::transcode(&input, height, &out).await?;
            let info = process::probe(&out).await?;
            let bytes = tokio::fs::read(&out)
                .await
                .map_err(|e| retry("scratch read")(&e))?;
            self.put_variant(
                id,
                name,
                bytes,
                "video/mp4",
                "mp4",
                (info.width, info.height, info.duration_ms),
            )
            .await?;
        }
        Ok(StepOutcome::Continue)
    }

    fn event(&self, a: &Asset, c: &StatusChanged) -> Result<Envelope, StepError> {
        Envelope::new(
            STATUS_EVENT,
            1,
            &a.tenant_id,
            &a.asset_id.to_string(),
            c,
            &*self.clock,
            &*self.ids,
        )
        .map_err(|e| StepError::Retryable(format!("event: {e}")))
    }

    /// Move the asset to `status` and publish it (once).
    pub async fn settle(
        &self,
        id: Uuid,
        status: Status,
        failed_step: Option<Step>,
        reason: &str,
    ) -> Result<(), StepError> {
        let Some(a) = self
            .store
            .get(id)
            .await
            .map_err(|e| retry("postgres")(&e))?
        else {
            // Erased (a DSAR) while its pipeline ran: nothing to settle.
            tracing::info!(asset = %id, "asset erased; nothing to settle");
            return Ok(());
        };
        if a.status.is_terminal() {
            return Ok(());
        }
        let variants = if status == Status::Ready {
            self.store
                .variants(id)
                .await
                .map_err(|e| retry("postgres")(&e))?
        } else {
            vec![]
        };
        let now = self.clock.now_ms();
        let change = StatusChanged {
            asset_id: id.to_string(),
            owner_id: a.owner_id.clone(),
            kind: a.kind,
            status,
            reference: a.reference.clone(),
            variants,
            reason: reason.to_string(),
            failed_step,
            ts_ms: now,
        };
        let event = self.event(&a, &change)?;
        if self
            .store
            .finish(id, status, failed_step, reason, now, &event)
            .await
            .map_err(|e| retry("postgres")(&e))?
        {
            self.relay.wake();
            match status {
                Status::Ready => self.metrics.ready.inc(),
                Status::Rejected => self.metrics.rejected.inc(),
                _ => self.metrics.failed.inc(),
            };
            tracing::info!(asset = %id, status = status.as_str(), reason, "asset settled");
        }
        Ok(())
    }

    /// Commit: every planned variant is there, then ready.
    pub async fn ready(&self, id: Uuid) -> Result<StepOutcome, StepError> {
        let a = self.asset(id).await?;
        let mut need: Vec<&str> = vec!["original"];
        need.extend(domain::THUMBNAILS.iter().map(|(n, _)| *n));
        if a.kind == Kind::Video {
            need.push("poster");
            need.extend(domain::RENDITIONS.iter().map(|(n, _)| *n));
        }
        for name in need {
            if self.recorded(id, name).await?.is_none() {
                return Err(StepError::Retryable(format!("variant {name} is missing")));
            }
        }
        self.settle(id, Status::Ready, None, "").await?;
        Ok(StepOutcome::Continue)
    }
}

/// A directory removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How long a step may wait between heartbeats before Temporal gives its
/// attempt to another worker (a killed worker is noticed this fast).
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(4);
/// How often a running step heartbeats.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
