//! Media: clients upload photos and short clips straight to S3 with a
//! presigned PUT (`StartIngest`); the S3 server's object-created
//! notification on `media.work` starts a Temporal workflow per asset
//! (`workflow`): ingest → moderate → thumbnail → transcode (clips) → ready,
//! each step 3 attempts with exponential backoff. Variants are
//! content-addressed objects served by presigned GETs (`GetAsset`); the
//! outcome is published on `media.events` through the outbox. The service
//! never proxies bytes (ADR 0010). The DSAR participant ([`dsar`]) exports
//! and erases a person's uploads (rows and objects) and keeps product
//! pictures, unlinked from their uploader.

pub mod api;
pub mod domain;
pub mod dsar;
pub mod faults;
pub mod pipeline;
pub mod process;
pub mod samples;
pub mod store;
pub mod work;
pub mod workflow;

use std::{path::PathBuf, sync::Arc, time::Duration};

use shopstream_platform::{
    clock::SystemClock,
    config::{ConfigError, ServiceConfig, env_or, env_parse},
    db,
    events::{
        dedupe::PgDeduper,
        dlq_topic,
        kafka::KafkaBus,
        runner::{self, RunnerConfig},
    },
    ids::SystemIdGen,
    object_store,
    outbox::{self, Relay},
    service::{Listeners, Service},
    temporal::{self, PollerBehavior, Worker, WorkerOptions},
};
use shopstream_proto::media::v1::media_service_server::MediaServiceServer;
use tokio_util::sync::CancellationToken;

use crate::{domain::Policy, faults::Faults, pipeline::Pipeline, store::Store};

/// Partitions of the topics media creates when absent.
const TOPIC_PARTITIONS: i32 = 3;
/// Attempts per notification before it is dead-lettered.
const MAX_ATTEMPTS: u32 = 8;
const CONSUMER_RESTART_DELAY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct Config {
    pub service: ServiceConfig,
    pub database: String,
    /// Where clients upload (the S3 server notifies `media.work` for it).
    pub upload_bucket: String,
    /// Where clean originals and variants go.
    pub bucket: String,
    /// The S3 address clients reach, which presigned URLs name.
    pub public_s3_url: String,
    pub consumer_group: String,
    pub work_topic: String,
    pub task_queue: String,
    pub policy: Policy,
    /// Where a reference without a ready image points (`{this}/{ref}.svg`).
    pub placeholder_base: String,
    /// Scratch files of clips while ffmpeg works on them.
    pub scratch_dir: PathBuf,
}

fn list(var: &str, default: &[String]) -> Vec<String> {
    std::env::var(var)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
        .unwrap_or_else(|| default.to_vec())
}

impl Config {
    /// `SHOPSTREAM_MEDIA_*`: `DATABASE` (media), `UPLOAD_BUCKET`
    /// (media-uploads), `BUCKET` (media), `PUBLIC_S3_URL` (the S3 endpoint),
    /// `GROUP` (media), `WORK_TOPIC` (media.work), `TASK_QUEUE` (media),
    /// `IMAGE_TYPES`, `VIDEO_TYPES` (comma-separated MIME types),
    /// `MAX_IMAGE_MIB` (20), `MAX_VIDEO_MIB` (200), `PLACEHOLDER_URL`
    /// (/media/placeholder), `SCRATCH_DIR` (the temp dir).
    pub fn from_env() -> Result<Config, ConfigError> {
        let service = ServiceConfig::from_env("media")?;
        let d = Policy::default();
        let policy = Policy {
            image_types: list("SHOPSTREAM_MEDIA_IMAGE_TYPES", &d.image_types),
            video_types: list("SHOPSTREAM_MEDIA_VIDEO_TYPES", &d.video_types),
            max_image_bytes: env_parse(
                "SHOPSTREAM_MEDIA_MAX_IMAGE_MIB",
                d.max_image_bytes / domain::MIB,
            )? * domain::MIB,
            max_video_bytes: env_parse(
                "SHOPSTREAM_MEDIA_MAX_VIDEO_MIB",
                d.max_video_bytes / domain::MIB,
            )? * domain::MIB,
            ..d
        };
        Ok(Config {
            database: env_or("SHOPSTREAM_MEDIA_DATABASE", "media"),
            upload_bucket: env_or("SHOPSTREAM_MEDIA_UPLOAD_BUCKET", "media-uploads"),
            bucket: env_or("SHOPSTREAM_MEDIA_BUCKET", "media"),
            public_s3_url: env_or(
                "SHOPSTREAM_MEDIA_PUBLIC_S3_URL",
                &service.endpoints.s3_endpoint,
            ),
            consumer_group: env_or("SHOPSTREAM_MEDIA_GROUP", "media"),
            work_topic: env_or("SHOPSTREAM_MEDIA_WORK_TOPIC", work::WORK_TOPIC),
            task_queue: env_or("SHOPSTREAM_MEDIA_TASK_QUEUE", workflow::TASK_QUEUE),
            policy,
            placeholder_base: env_or("SHOPSTREAM_MEDIA_PLACEHOLDER_URL", "/media/placeholder"),
            scratch_dir: env_or(
                "SHOPSTREAM_MEDIA_SCRATCH_DIR",
                &std::env::temp_dir()
                    .join("shopstream-media")
                    .display()
                    .to_string(),
            )
            .into(),
            service,
        })
    }

    /// Defaults around `service` (tests pick their own buckets and topic).
    pub fn new(service: ServiceConfig) -> Config {
        Config {
            database: "media".into(),
            upload_bucket: "media-uploads".into(),
            bucket: "media".into(),
            public_s3_url: service.endpoints.s3_endpoint.clone(),
            consumer_group: "media".into(),
            work_topic: work::WORK_TOPIC.into(),
            task_queue: workflow::TASK_QUEUE.into(),
            policy: Policy::default(),
            placeholder_base: "/media/placeholder".into(),
            scratch_dir: std::env::temp_dir().join("shopstream-media"),
            service,
        }
    }
}

shopstream_platform::service_entry! {
    /// Media as `shopstream serve media` and the test kit start it.
    Server { name: "media", grpc: true, config: Config, run: run }
}

/// Serve gRPC, the fault switch, the Temporal worker, the `media.work`
/// consumer and the outbox relay until `shutdown` (see [`Service::run`]).
pub async fn run(
    cfg: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let e = &cfg.service.endpoints;
    let pool = db::connect(&e.postgres_url, &cfg.database).await?;
    db::migrate(&pool, &MIGRATOR).await?;
    outbox::ensure_table(&pool).await?;
    let bus = KafkaBus::connect(e)?;
    for topic in [cfg.work_topic.as_str(), store::EVENTS_TOPIC] {
        bus.ensure_topic(topic, TOPIC_PARTITIONS).await?;
    }
    bus.ensure_topic(&dlq_topic(&cfg.work_topic), 1).await?;
    let relay = Relay::new(pool.clone(), bus.clone());
    let s3 = object_store::client(e);
    for bucket in [&cfg.upload_bucket, &cfg.bucket] {
        object_store::ensure_bucket(&s3, bucket)
            .await
            .map_err(|err| anyhow::anyhow!("bucket {bucket}: {err}"))?;
    }
    let mut public = e.clone();
    public.s3_endpoint = cfg.public_s3_url.clone();
    let presigner = object_store::client(&public);
    let temporal = temporal::connect(&e.temporal_url, &e.temporal_namespace, "media").await?;
    if !process::ffmpeg_available() {
        tracing::warn!(
            "ffmpeg not found: clips will fail at ingest; images work. Install it with {}",
            process::FFMPEG_INSTALL
        );
    }
    let store = Store { pool: pool.clone() };
    let faults = Arc::new(Faults::default());
    let svc = Service::new(&cfg.service);
    let metrics = pipeline::PipelineMetrics::register(svc.metrics());
    let pipeline = Arc::new(Pipeline {
        store: store.clone(),
        s3: s3.clone(),
        bucket: cfg.bucket.clone(),
        policy: cfg.policy.clone(),
        faults: faults.clone(),
        classifier: Arc::new(domain::NoClassifier),
        clock: Arc::new(SystemClock),
        ids: Arc::new(SystemIdGen),
        relay: relay.clone(),
        scratch: cfg.scratch_dir.clone(),
        metrics,
    });
    let options = WorkerOptions::new(cfg.task_queue.clone())
        .register_workflow::<workflow::MediaWorkflow>()?
        .register_activities(workflow::MediaActivities { pipeline })
        .workflow_task_poller_behavior(PollerBehavior::SimpleMaximum(temporal::POLLERS))
        .activity_task_poller_behavior(PollerBehavior::SimpleMaximum(temporal::POLLERS))
        .build();
    let runtime = temporal::runtime()?;
    let mut worker = Worker::new(&runtime, temporal.clone(), options)?;
    let stop_worker = worker.shutdown_handle();
    let dedupe = Arc::new(PgDeduper::new(pool.clone()).await?);
    let handler = Arc::new(work::StartOnUpload {
        store: store.clone(),
        s3: s3.clone(),
        temporal,
        task_queue: cfg.task_queue.clone(),
        upload_bucket: cfg.upload_bucket.clone(),
        clock: Arc::new(SystemClock),
    });
    let rcfg = RunnerConfig {
        max_attempts: MAX_ATTEMPTS,
        health: runner::ConsumerHealth::new(svc.metrics(), &cfg.consumer_group),
        ..RunnerConfig::new(&cfg.consumer_group, &[cfg.work_topic.as_str()])
    };
    let participant = dsar::MediaParticipant {
        store: store.clone(),
        s3,
        bucket: cfg.bucket.clone(),
    };
    let api = api::GrpcApi {
        store,
        presigner,
        upload_bucket: cfg.upload_bucket.clone(),
        bucket: cfg.bucket.clone(),
        policy: cfg.policy.clone(),
        clock: Arc::new(SystemClock),
        ids: Arc::new(SystemIdGen),
        default_tenant: cfg.service.default_tenant.clone(),
        placeholder_base: cfg.placeholder_base.clone(),
    };
    svc.check_postgres("postgres", pool)
        .check("consumer", rcfg.health.readiness())
        .grpc(MediaServiceServer::new(api))
        .grpc(shopstream_dsar::server(
            Arc::new(participant),
            &cfg.service.default_tenant,
        ))
        .http(faults::routes(faults))
        // The Temporal worker is not Send: the kit joins workers on this task.
        .worker("temporal", move |_| async move { worker.run().await })
        .task("temporal-stopper", |stop| async move {
            stop.cancelled().await;
            stop_worker();
        })
        .task("outbox", |stop| relay.run(stop))
        .task("uploads", move |stop| {
            runner::run_until_stopped(bus, dedupe, handler, rcfg, stop, CONSUMER_RESTART_DELAY)
        })
        .run(listeners, shutdown)
        .await?;
    Ok(())
}

/// Media's schema.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
