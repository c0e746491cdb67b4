//! Compliance: data subject access requests (ADR 0012).
//!
//! `StartDSAR` records a request (one per subject at a time; a second joins
//! the first) and starts its Temporal workflow ([`workflow`]): prepare and
//! freeze → every participant's export or erase in parallel → the sweep
//! (participants' scans plus independent scans of Redis, S3 and every topic,
//! [`sweep`]) → the export archive ([`archive`]), an audit record appended to
//! a write-once chain in S3 ([`audit`]) and a certificate signed with
//! Ed25519 ([`domain`]) that `shopstream dsar verify` checks offline.

pub mod api;
pub mod archive;
pub mod audit;
pub mod client;
pub mod domain;
pub mod store;
pub mod sweep;
pub mod workflow;

use std::{sync::Arc, time::Duration};

use prometheus_client::metrics::{counter::Counter, histogram::Histogram};
use shopstream_dsar::{Client as ParticipantClient, Export, Subject};
use shopstream_platform::{
    cache::{self, ConnectionManager},
    clock::{Clock, SystemClock},
    config::{ConfigError, ServiceConfig, env_or, env_parse, grpc_url_of},
    db, grpc, object_store,
    service::{Listeners, Service},
    temporal::{self, PollerBehavior, Worker, WorkerOptions},
};
use shopstream_proto::{
    compliance::v1::compliance_service_server::ComplianceServiceServer,
    identity::v1::{GetUserRequest, identity_service_client::IdentityServiceClient},
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    domain::{Signer, State, Sweep},
    store::{Dsar, Store},
};

/// The services that hold personal data, in the order a DSAR lists them.
/// Not participants (ADR 0012): search and catalog (products only),
/// inventory (reservations name an order, not a person) and payments (keyed
/// by order id only; once orders anonymises an order, its payment names no
/// one and is kept whole as an accounting record).
pub const PARTICIPANTS: &[&str] = &[
    "identity",
    "orders",
    "notifications",
    "analytics",
    "feed",
    "media",
    "gateway",
];

const IDENTITY_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const IDENTITY_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often unfinished DSARs are re-started (a no-op for running ones).
const RESUME_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Config {
    pub service: ServiceConfig,
    pub database: String,
    pub task_queue: String,
    /// Write-once bucket of the audit chain.
    pub audit_bucket: String,
    /// Bucket of export archives (and their staging).
    pub export_bucket: String,
    /// The S3 address clients reach, which presigned URLs name.
    pub public_s3_url: String,
    /// Lifetime of an export's presigned URL.
    pub export_url_ttl: Duration,
    /// (name, gRPC URL) of every participant.
    pub participants: Vec<(String, String)>,
    pub identity_url: String,
}

impl Config {
    /// `SHOPSTREAM_COMPLIANCE_*`: `DATABASE` (compliance), `TASK_QUEUE`
    /// (compliance), `AUDIT_BUCKET` (audit), `EXPORT_BUCKET` (dsar-exports),
    /// `PUBLIC_S3_URL`, `EXPORT_URL_TTL_S` (3600), `PARTICIPANTS`
    /// (comma-separated names, default all of [`PARTICIPANTS`]); each
    /// participant at `SHOPSTREAM_<NAME>_GRPC_URL`, else its native address.
    pub fn from_env() -> Result<Config, ConfigError> {
        let service = ServiceConfig::from_env("compliance")?;
        let names = env_or(
            "SHOPSTREAM_COMPLIANCE_PARTICIPANTS",
            &PARTICIPANTS.join(","),
        );
        let mut participants = Vec::new();
        for n in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let var = format!(
                "SHOPSTREAM_{}_GRPC_URL",
                n.to_ascii_uppercase().replace('-', "_")
            );
            participants.push((n.to_string(), grpc_url_of(n, &var)?));
        }
        Ok(Config {
            database: env_or("SHOPSTREAM_COMPLIANCE_DATABASE", "compliance"),
            task_queue: env_or("SHOPSTREAM_COMPLIANCE_TASK_QUEUE", workflow::TASK_QUEUE),
            audit_bucket: env_or("SHOPSTREAM_COMPLIANCE_AUDIT_BUCKET", "audit"),
            export_bucket: env_or("SHOPSTREAM_COMPLIANCE_EXPORT_BUCKET", "dsar-exports"),
            public_s3_url: env_or(
                "SHOPSTREAM_COMPLIANCE_PUBLIC_S3_URL",
                &service.endpoints.s3_endpoint,
            ),
            export_url_ttl: Duration::from_secs(env_parse(
                "SHOPSTREAM_COMPLIANCE_EXPORT_URL_TTL_S",
                3600,
            )?),
            participants,
            identity_url: grpc_url_of("identity", "SHOPSTREAM_IDENTITY_GRPC_URL")?,
            service,
        })
    }

    /// Defaults around `service` with the given participants (tests).
    pub fn new(
        service: ServiceConfig,
        participants: Vec<(String, String)>,
        identity_url: &str,
    ) -> Config {
        Config {
            database: "compliance".into(),
            task_queue: workflow::TASK_QUEUE.into(),
            audit_bucket: "audit".into(),
            export_bucket: "dsar-exports".into(),
            public_s3_url: service.endpoints.s3_endpoint.clone(),
            export_url_ttl: Duration::from_secs(3600),
            participants,
            identity_url: identity_url.to_string(),
            service,
        }
    }
}

/// Counters of DSARs and their steps.
#[derive(Clone)]
pub struct DsarMetrics {
    pub started: Counter,
    pub completed: Counter,
    pub failed: Counter,
    pub residue_found: Counter,
    pub step_failures: Counter,
    pub step_seconds: Histogram,
}

impl DsarMetrics {
    fn register(m: &shopstream_platform::metrics::Metrics) -> DsarMetrics {
        let d = DsarMetrics {
            started: Counter::default(),
            completed: Counter::default(),
            failed: Counter::default(),
            residue_found: Counter::default(),
            step_failures: Counter::default(),
            step_seconds: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.005, 2.0, 14),
            ),
        };
        m.register(
            "dsar_started",
            "DSARs started (joined and replayed requests not counted)",
            d.started.clone(),
        );
        m.register(
            "dsar_completed",
            "DSARs completed with a certificate",
            d.completed.clone(),
        );
        m.register(
            "dsar_failed",
            "DSARs failed (the sweep kept finding residue)",
            d.failed.clone(),
        );
        m.register(
            "dsar_sweeps_with_residue",
            "Sweeps that found residue",
            d.residue_found.clone(),
        );
        m.register(
            "dsar_step_failures",
            "Participant calls that failed and were retried",
            d.step_failures.clone(),
        );
        m.register(
            "dsar_step_seconds",
            "Duration of a participant's export or erase",
            d.step_seconds.clone(),
        );
        d
    }
}

/// What the activities and the API share.
pub struct Ctx {
    pub store: Store,
    pub participants: Vec<(String, ParticipantClient)>,
    pub identity: IdentityServiceClient<tonic::transport::Channel>,
    pub redis: ConnectionManager,
    pub s3: aws_sdk_s3::Client,
    pub presigner: aws_sdk_s3::Client,
    pub audit_bucket: String,
    pub export_bucket: String,
    pub export_url_ttl: Duration,
    pub brokers: String,
    pub signer: Signer,
    pub clock: Arc<dyn Clock>,
    pub metrics: DsarMetrics,
}

impl Ctx {
    pub fn participant(&self, name: &str) -> Option<&ParticipantClient> {
        self.participants
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c)
    }
}

/// The subject's e-mail address from identity (none for an unknown user).
pub async fn subject_emails(c: &Ctx, tenant: &str, user: Uuid) -> Result<Vec<String>, String> {
    let req = grpc::with_tenant(
        GetUserRequest {
            user_id: user.to_string(),
        },
        tenant,
    );
    match c.identity.clone().get_user(req).await {
        Ok(r) => Ok(r
            .into_inner()
            .user
            .map(|u| u.email.trim().to_lowercase())
            .filter(|e| !e.is_empty())
            .into_iter()
            .collect()),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(vec![]),
        Err(s) => Err(format!("{:?}: {}", s.code(), s.message())),
    }
}

/// Put the subject on the tenant's blocked set (frozen, then suppressed).
pub async fn block(c: &Ctx, tenant: &str, user: Uuid) -> Result<(), String> {
    let mut r = c.redis.clone();
    redis::cmd("SADD")
        .arg(shopstream_dsar::blocked_key(tenant))
        .arg(user.to_string())
        .query_async::<i64>(&mut r)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn staging_key(d: &Dsar, participant: &str) -> String {
    format!(
        "staging/{}/{}/{}/{participant}.json",
        d.tenant, d.subject_user_id, d.dsar_id
    )
}

/// Keep a participant's export until the archive is built.
pub async fn stage_export(c: &Ctx, d: &Dsar, participant: &str, e: &Export) -> Result<(), String> {
    let body = serde_json::to_vec(e).map_err(|e| e.to_string())?;
    archive::put(&c.s3, &c.export_bucket, &staging_key(d, participant), body).await
}

/// Build the export archive from the staged exports, then drop them.
pub async fn build_archive(c: &Ctx, d: &Dsar) -> Result<(), String> {
    let mut parts = Vec::new();
    for (name, _) in &c.participants {
        let key = staging_key(d, name);
        let o =
            c.s3.get_object()
                .bucket(&c.export_bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| format!("s3 get {key}: {}", aws_sdk_s3::Error::from(e)))?;
        let bytes = o
            .body
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .into_bytes();
        let e: Export = serde_json::from_slice(&bytes).map_err(|e| format!("{key}: {e}"))?;
        parts.push((name.clone(), e));
    }
    let manifest = serde_json::json!({
        "dsar_id": d.dsar_id,
        "tenant": d.tenant,
        "user_id": d.subject_user_id,
        "created_at_ms": d.created_at_ms,
        "stores": d.steps.values().flat_map(|s| s.counts.clone()).collect::<Vec<_>>(),
        "about": "Everything Shopstream holds about you: one JSON document per store under stores/, \
                  your pictures and clips under objects/.",
    });
    let bytes = archive::build(&c.s3, &manifest, &parts, c.clock.now_ms()).await?;
    let key = archive::key(&d.tenant, d.subject_user_id, d.dsar_id);
    archive::put(&c.s3, &c.export_bucket, &key, bytes).await?;
    c.store
        .set_export_key(d.dsar_id, &key)
        .await
        .map_err(|e| e.to_string())?;
    for (name, _) in &c.participants {
        archive::delete(&c.s3, &c.export_bucket, &staging_key(d, name)).await?;
    }
    Ok(())
}

/// Every participant's scan, then Redis, S3 and the topics.
pub async fn sweep(c: &Ctx, s: &Subject) -> Result<Sweep, String> {
    let scans = futures::future::join_all(c.participants.iter().map(|(name, p)| async move {
        use shopstream_dsar::Participant;
        p.scan(s).await.map_err(|e| format!("{name}: {e}"))
    }))
    .await;
    let mut checks = Vec::new();
    let mut residue = Vec::new();
    for r in scans {
        for count in r? {
            if count.count > 0 {
                residue.push(format!(
                    "{} still holds {} ({})",
                    count.store, count.count, count.detail
                ));
            }
            checks.push(count);
        }
    }
    let mut redis = c.redis.clone();
    let skip = [c.audit_bucket.clone()];
    let (r, o, t) = tokio::join!(
        sweep::redis_keys(&mut redis, s),
        sweep::s3_objects(&c.s3, &skip, s),
        sweep::topics(&c.brokers, s)
    );
    for f in [r?, o?, t?] {
        residue.extend(f.residue);
        checks.push(f.check);
    }
    Ok(Sweep::from_checks(checks, residue))
}

/// Append the audit record of `d` and, when it completed, sign its
/// certificate (returned).
pub async fn audit_and_certify(
    c: &Ctx,
    d: &Dsar,
    outcome: State,
) -> Result<Option<String>, String> {
    let now = c.clock.now_ms();
    let (seq, hash) = match (d.audit_seq, &d.audit_hash) {
        (Some(seq), Some(h)) => (seq as u64, h.clone()),
        _ => {
            let (seq, hash) = audit::append(
                &c.s3,
                &c.audit_bucket,
                &c.signer,
                &d.dsar_id.to_string(),
                |seq, prev| workflow::record_of(d, outcome, seq, prev, now),
            )
            .await?;
            c.store
                .set_audit(d.dsar_id, seq, &hash)
                .await
                .map_err(|e| e.to_string())?;
            (seq, hash)
        }
    };
    if outcome != State::Completed {
        return Ok(None);
    }
    let mut cert = workflow::certificate_of(d, seq, &hash);
    cert.completed_at_ms = now;
    c.signer.sign("dsar-certificate", &cert).map(Some)
}

/// Rebuild the blocked sets from the suppression list, and re-start the
/// workflow of every unfinished DSAR (a no-op for running ones).
async fn resume(c: &Ctx, temporal: &temporalio_client::Client, task_queue: &str) {
    match c.store.suppressed().await {
        Ok(list) => {
            for (tenant, user) in list {
                if let Err(e) = block(c, &tenant, user).await {
                    tracing::warn!(error = %e, "suppression list not mirrored to redis yet");
                    break;
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "suppression list not read"),
    }
    match c.store.unfinished().await {
        Ok(ids) => {
            for id in ids {
                if let Err(e) = workflow::start(temporal, task_queue, id).await {
                    tracing::warn!(dsar = %id, error = %e, "dsar workflow not started yet");
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "unfinished dsars not read"),
    }
}

shopstream_platform::service_entry! {
    /// Compliance as `shopstream serve compliance` and the test kit start it.
    Server { name: "compliance", grpc: true, config: Config, run: run }
}

/// Serve gRPC (StartDSAR, GetDSAR), the key set and the chain over HTTP, and
/// the Temporal worker, until `shutdown`.
pub async fn run(
    cfg: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let e = &cfg.service.endpoints;
    let pool = db::connect(&e.postgres_url, &cfg.database).await?;
    db::migrate(&pool, &MIGRATOR).await?;
    let store = Store { pool: pool.clone() };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let signer = store
        .signer(clock.now_ms())
        .await
        .map_err(|e| anyhow::anyhow!("signing key: {e}"))?;
    let s3 = object_store::client(e);
    for bucket in [&cfg.audit_bucket, &cfg.export_bucket] {
        object_store::ensure_bucket(&s3, bucket)
            .await
            .map_err(|err| anyhow::anyhow!("bucket {bucket}: {err}"))?;
    }
    let mut public = e.clone();
    public.s3_endpoint = cfg.public_s3_url.clone();
    let presigner = object_store::client(&public);
    let redis = cache::connect(&e.redis_url).await?;
    let mut participants = Vec::new();
    for (name, url) in &cfg.participants {
        let n: &'static str = PARTICIPANTS
            .iter()
            .find(|p| **p == name.as_str())
            .copied()
            .unwrap_or("participant");
        participants.push((
            name.clone(),
            ParticipantClient::new(n, url).map_err(|e| anyhow::anyhow!("{e}"))?,
        ));
    }
    let identity = IdentityServiceClient::new(grpc::channel(
        &cfg.identity_url,
        IDENTITY_CONNECT_TIMEOUT,
        IDENTITY_CALL_TIMEOUT,
    )?);
    let svc = Service::new(&cfg.service);
    let metrics = DsarMetrics::register(svc.metrics());
    let ctx = Arc::new(Ctx {
        store,
        participants,
        identity,
        redis: redis.clone(),
        s3,
        presigner,
        audit_bucket: cfg.audit_bucket.clone(),
        export_bucket: cfg.export_bucket.clone(),
        export_url_ttl: cfg.export_url_ttl,
        brokers: e.kafka_brokers.clone(),
        signer,
        clock,
        metrics,
    });
    let temporal = temporal::connect(&e.temporal_url, &e.temporal_namespace, "compliance").await?;
    let options = WorkerOptions::new(cfg.task_queue.clone())
        .register_workflow::<workflow::DsarWorkflow>()?
        .register_activities(workflow::DsarActivities { ctx: ctx.clone() })
        .workflow_task_poller_behavior(PollerBehavior::SimpleMaximum(temporal::POLLERS))
        .activity_task_poller_behavior(PollerBehavior::SimpleMaximum(temporal::POLLERS))
        .build();
    let runtime = temporal::runtime()?;
    let mut worker = Worker::new(&runtime, temporal.clone(), options)?;
    let stop_worker = worker.shutdown_handle();
    let api = api::GrpcApi {
        ctx: ctx.clone(),
        temporal: temporal.clone(),
        task_queue: cfg.task_queue.clone(),
        default_tenant: cfg.service.default_tenant.clone(),
    };
    let resumer = {
        let (ctx, temporal, tq) = (ctx.clone(), temporal.clone(), cfg.task_queue.clone());
        move |stop: CancellationToken| async move {
            loop {
                resume(&ctx, &temporal, &tq).await;
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(RESUME_EVERY) => {}
                }
            }
        }
    };
    let redis_check = redis.clone();
    svc.check_postgres("postgres", pool)
        .check("redis", move || {
            let r = redis_check.clone();
            async move { cache::ping(&r).await }
        })
        .grpc(ComplianceServiceServer::new(api))
        .http(api::routes(ctx))
        .worker("temporal", move |_| async move { worker.run().await })
        .task("temporal-stopper", |stop| async move {
            stop.cancelled().await;
            stop_worker();
        })
        .task("resume", resumer)
        .run(listeners, shutdown)
        .await?;
    Ok(())
}

/// Compliance's schema.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
