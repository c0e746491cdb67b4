//! Notifications: consumes `order.lifecycle` and `payment.events`, decides
//! who is told what (pure: [`domain::notices`] for live
//! updates, [`email::intents`] for e-mail) and delivers it. Live updates go
//! onto the realtime fan-out (`platform::realtime`), which every gateway holds
//! one subscription to and passes on to its WebSocket, SSE and long-poll
//! clients. E-mails are rendered from templates and queued on the Redis
//! stream `email.outbound`, which the [`mailer`] sends over SMTP with retries
//! and a DLQ. It answers DSARs over its gRPC port ([`dsar`]): channels,
//! the delivery log, queued and dead-lettered e-mails, and the messages the
//! mail sink holds.
//!
//! A redelivered event has no second effect, without a record of processed
//! event ids: a live update carries its step's sequence number, this process
//! does not publish one at or below the last it published on its topic, and
//! the gateway drops one at or below the last it delivered (ADR 0008), which
//! covers the repeats after a restart; an e-mail's
//! key is (event id, template), and the mailer sends a key once (ADR 0009);
//! the order's owner is written `ON CONFLICT DO NOTHING`, and a refund's
//! running total with `GREATEST`.

pub mod api;
pub mod domain;
pub mod dsar;
pub mod email;
pub mod mailer;

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use prometheus_client::metrics::{counter::Counter, histogram::Histogram};
use shopstream_platform::{
    cache,
    clock::{Clock, SystemClock},
    config::{
        ConfigError, ServiceConfig, default_service_addrs, env_or, env_parse, grpc_url_of,
        http_url_of,
    },
    db,
    events::{
        Delivery,
        dedupe::HandlerDedupes,
        dlq_topic,
        kafka::KafkaBus,
        runner::{self, Handler, HandlerError, RunnerConfig},
    },
    grpc::{TraceInterceptor, channel, with_tenant},
    metrics::Metrics,
    realtime,
    service::{Listeners, Service},
};
use shopstream_proto::{
    identity::v1::{GetUserRequest, identity_service_client::IdentityServiceClient},
    notifications::v1::notifications_service_server::NotificationsServiceServer,
};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tonic::{codegen::InterceptedService, transport::Channel};

use crate::{
    domain::Notice,
    email::{Intent, Recipient},
    mailer::{Mailer, MailerConfig, Outbound},
};

/// The topic whose steps become live updates and whose state changes become
/// e-mails.
pub const ORDER_TOPIC: &str = "order.lifecycle";
/// The topic whose refunds become e-mails.
pub const PAYMENT_TOPIC: &str = "payment.events";
/// Bound on one call to identity.
const IDENTITY_TIMEOUT: Duration = Duration::from_secs(3);
/// Partitions the topics are created with when absent (as orders and payments do).
const TOPIC_PARTITIONS: i32 = 3;
/// Attempts per event before it is dead-lettered (Redis down for a few seconds
/// is ridden out with the runner's backoff).
const MAX_ATTEMPTS: u32 = 8;
/// Longest wait between two attempts at one e-mail.
const EMAIL_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Pause before a failed consumer loop starts again.
const CONSUMER_RESTART_DELAY: Duration = Duration::from_secs(1);

/// Where order and payment events are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub orders: String,
    pub payments: String,
}

impl Default for Topics {
    fn default() -> Topics {
        Topics {
            orders: ORDER_TOPIC.into(),
            payments: PAYMENT_TOPIC.into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub service: ServiceConfig,
    /// Its Postgres database (processed event ids).
    pub database: String,
    /// Its consumer group on `order.lifecycle` and `payment.events`.
    pub consumer_group: String,
    /// The topics it reads: [`ORDER_TOPIC`] and [`PAYMENT_TOPIC`] (tests read
    /// topics of their own, apart from every other test's history).
    pub topics: Topics,
    /// Identity's gRPC address (recipients' addresses and names).
    pub identity_grpc: String,
    /// How e-mail is sent.
    pub mailer: MailerConfig,
    /// The mail sink's HTTP base URL (mail-sim's `GET|DELETE /messages`),
    /// where a DSAR finds and erases the messages a person was sent; `None`
    /// where the provider keeps no mailbox that can be erased.
    pub mail_sink: Option<String>,
}

impl Config {
    /// `SHOPSTREAM_NOTIFICATIONS_DATABASE` (default `notifications`),
    /// `SHOPSTREAM_NOTIFICATIONS_GROUP` (default `notifications`),
    /// `SHOPSTREAM_NOTIFICATIONS_ORDER_TOPIC` and `_PAYMENT_TOPIC` (defaults
    /// `order.lifecycle`, `payment.events`),
    /// `SHOPSTREAM_IDENTITY_GRPC_URL`, and for e-mail
    /// `SHOPSTREAM_NOTIFICATIONS_SMTP` (`host:port`, default mail-sim's SMTP
    /// port), `SHOPSTREAM_NOTIFICATIONS_MAIL_FROM`,
    /// `SHOPSTREAM_EMAIL_STREAM` (`email.outbound`), `SHOPSTREAM_EMAIL_MAX_ATTEMPTS` (5), `SHOPSTREAM_EMAIL_BACKOFF_MS`
    /// (500, doubled per attempt up to 30 s), `SHOPSTREAM_NOTIFICATIONS_MAILER`
    /// (the mailer's consumer name), `SHOPSTREAM_FAILPOINT`, and
    /// `SHOPSTREAM_NOTIFICATIONS_MAIL_SINK_URL` (default mail-sim's HTTP
    /// address; empty for none); plus the shared variables of
    /// [`ServiceConfig::from_env`].
    pub fn from_env() -> Result<Config, ConfigError> {
        let (_, mail_sim_smtp) = default_service_addrs("mail-sim")?;
        Ok(Config {
            service: ServiceConfig::from_env("notifications")?,
            database: env_or("SHOPSTREAM_NOTIFICATIONS_DATABASE", "notifications"),
            consumer_group: env_or("SHOPSTREAM_NOTIFICATIONS_GROUP", "notifications"),
            topics: Topics {
                orders: env_or("SHOPSTREAM_NOTIFICATIONS_ORDER_TOPIC", ORDER_TOPIC),
                payments: env_or("SHOPSTREAM_NOTIFICATIONS_PAYMENT_TOPIC", PAYMENT_TOPIC),
            },
            identity_grpc: grpc_url_of("identity", "SHOPSTREAM_IDENTITY_GRPC_URL")?,
            mailer: MailerConfig {
                stream: env_or("SHOPSTREAM_EMAIL_STREAM", mailer::STREAM),
                smtp: env_or("SHOPSTREAM_NOTIFICATIONS_SMTP", &mail_sim_smtp.to_string()),
                from: env_or(
                    "SHOPSTREAM_NOTIFICATIONS_MAIL_FROM",
                    "orders@shopstream.local",
                ),
                max_attempts: env_parse("SHOPSTREAM_EMAIL_MAX_ATTEMPTS", 5u32)?.max(1),
                backoff_base: Duration::from_millis(env_parse("SHOPSTREAM_EMAIL_BACKOFF_MS", 500)?),
                backoff_max: EMAIL_BACKOFF_MAX,
                consumer: env_or("SHOPSTREAM_NOTIFICATIONS_MAILER", "mailer-1"),
                failpoint: std::env::var("SHOPSTREAM_FAILPOINT")
                    .ok()
                    .filter(|f| !f.is_empty()),
            },
            mail_sink: Some(http_url_of(
                "mail-sim",
                "SHOPSTREAM_NOTIFICATIONS_MAIL_SINK_URL",
            )?)
            .filter(|u| !u.trim().is_empty()),
        })
    }
}

shopstream_platform::service_entry! {
    /// Notifications as `shopstream serve notifications` and the test kit start it.
    Server { name: "notifications", grpc: true, config: Config, run: run }
}

type Identity = IdentityServiceClient<InterceptedService<Channel, TraceInterceptor>>;

/// Puts each event's notices where they go.
pub struct Deliver {
    pub redis: cache::ConnectionManager,
    /// The e-mail stream (see [`mailer::STREAM`]).
    pub stream: String,
    pub pool: PgPool,
    pub identity: Identity,
    pub clock: Arc<dyn Clock>,
    /// `shopstream_notifications_emails_queued_total`.
    pub queued: Counter,
    /// `shopstream_notifications_emails_skipped_total` (the user is gone).
    pub skipped: Counter,
    /// `shopstream_notifications_live_published_total`.
    pub published: Counter,
    /// `shopstream_notifications_commit_to_fanout_seconds`.
    pub commit_to_fanout: Histogram,
    /// What this process has done for recent orders (see [`Recent`]).
    recent: std::sync::Mutex<Recent>,
}

/// What [`Deliver`] has done for recent orders, so that an order's repeats
/// cost nothing: whose owner it wrote (an order's later state changes skip
/// the insert), and the last step it published on each live topic (a
/// repeated step, e.g. a producer retry, is not published again). Bounded:
/// emptied when it holds [`RECENT_MAX`] entries; a restart starts empty.
/// Forgetting is safe: the owner is written `ON CONFLICT DO NOTHING`, and the
/// gateway drops a live update at or below the last it delivered.
#[derive(Debug, Default)]
struct Recent {
    owners: std::collections::HashSet<(String, String)>,
    live: std::collections::HashMap<(String, String), u64>,
}

/// How many orders and live topics [`Recent`] holds at most, each.
const RECENT_MAX: usize = 4_096;

impl Deliver {
    pub fn new(
        redis: cache::ConnectionManager,
        stream: String,
        pool: PgPool,
        identity: Identity,
        metrics: &Metrics,
    ) -> Deliver {
        let published = Counter::default();
        let (queued, skipped) = (Counter::default(), Counter::default());
        metrics.register(
            "notifications_emails_queued",
            "E-mails rendered and queued on email.outbound",
            queued.clone(),
        );
        metrics.register(
            "notifications_emails_skipped",
            "E-mails not written because their user no longer exists",
            skipped.clone(),
        );
        // 1 ms .. ~16 s
        let commit_to_fanout = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 15),
        );
        metrics.register(
            "notifications_live_published",
            "Live updates published on the realtime fan-out",
            published.clone(),
        );
        metrics.register(
            "notifications_commit_to_fanout_seconds",
            "Source commit of an event to its live update on the fan-out",
            commit_to_fanout.clone(),
        );
        Deliver {
            redis,
            stream,
            pool,
            identity,
            clock: Arc::new(SystemClock),
            queued,
            skipped,
            published,
            commit_to_fanout,
            recent: Default::default(),
        }
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, Recent> {
        let mut r = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if r.owners.len() >= RECENT_MAX {
            r.owners.clear();
        }
        if r.live.len() >= RECENT_MAX {
            r.live.clear();
        }
        r
    }

    /// Whether this process has not yet written `order`'s owner; notes it as
    /// written from now on.
    fn owner_unwritten(&self, tenant: &str, order: &str) -> bool {
        self.recent()
            .owners
            .insert((tenant.to_string(), order.to_string()))
    }

    /// Forget that `order`'s owner was written (the write failed).
    fn owner_unwritten_again(&self, tenant: &str, order: &str) {
        self.recent()
            .owners
            .remove(&(tenant.to_string(), order.to_string()));
    }

    /// Whether update `seq` on `topic` is past the last this process published.
    fn live_unpublished(&self, tenant: &str, topic: &str, seq: u64) -> bool {
        self.recent()
            .live
            .get(&(tenant.to_string(), topic.to_string()))
            .is_none_or(|&last| seq > last)
    }

    /// Note update `seq` on `topic` as published.
    fn live_published(&self, tenant: &str, topic: &str, seq: u64) {
        let mut r = self.recent();
        let last = r
            .live
            .entry((tenant.to_string(), topic.to_string()))
            .or_default();
        *last = (*last).max(seq);
    }
}

#[async_trait]
impl Handler for Deliver {
    async fn handle(&self, d: &Delivery) -> Result<(), HandlerError> {
        let e = &d.envelope;
        let notices = domain::notices(&e.event_type, &e.payload, e.occurred_at_ms)
            .map_err(|err| HandlerError::Permanent(err.to_string()))?;
        for n in notices {
            match n {
                Notice::Live { topic, event } => {
                    if !self.live_unpublished(&e.tenant_id, &event.topic, event.seq) {
                        continue;
                    }
                    let mut redis = self.redis.clone();
                    realtime::publish(&mut redis, &e.tenant_id, &topic, &event)
                        .await
                        .map_err(|err| HandlerError::Retryable(format!("redis: {err}")))?;
                    self.live_published(&e.tenant_id, &event.topic, event.seq);
                    self.published.inc();
                    let lag_ms = (self.clock.now_ms() - event.committed_ms).max(0);
                    self.commit_to_fanout.observe(lag_ms as f64 / 1000.0);
                }
            }
        }
        let db = |err: sqlx::Error| HandlerError::Retryable(format!("postgres: {err}"));
        if e.event_type == email::ORDER_STATE_EVENT
            && let Ok(o) = serde_json::from_slice::<email::OrderStateChanged>(&e.payload)
            && self.owner_unwritten(&e.tenant_id, &o.order_id)
        {
            let written = sqlx::query(
                "INSERT INTO order_owners (tenant_id, order_id, user_id) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
            )
            .bind(&e.tenant_id)
            .bind(&o.order_id)
            .bind(&o.user_id)
            .execute(&self.pool)
            .await;
            if let Err(err) = written {
                self.owner_unwritten_again(&e.tenant_id, &o.order_id);
                return Err(db(err));
            }
        }
        let intents = email::intents(&e.event_type, &e.payload)
            .map_err(|err| HandlerError::Permanent(err.to_string()))?;
        for i in intents {
            self.queue(d, i).await?;
        }
        Ok(())
    }
}

impl Deliver {
    /// Look up who `i` is for, render it and queue it on `email.outbound`.
    async fn queue(&self, d: &Delivery, i: Intent) -> Result<(), HandlerError> {
        let e = &d.envelope;
        let db = |err: sqlx::Error| HandlerError::Retryable(format!("postgres: {err}"));
        let user_id = match &i.to {
            Recipient::User(u) => u.clone(),
            Recipient::OrderOwner(order) => sqlx::query_scalar(
                "SELECT user_id FROM order_owners WHERE tenant_id = $1 AND order_id = $2",
            )
            .bind(&e.tenant_id)
            .bind(order)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .ok_or_else(|| {
                // order.lifecycle and payment.events are separate topics: the
                // order's first event may not be here yet.
                HandlerError::Retryable(format!("order {order} not seen on the order topic yet"))
            })?,
        };
        let mut identity = self.identity.clone();
        let user = match identity
            .get_user(with_tenant(
                GetUserRequest {
                    user_id: user_id.clone(),
                },
                &e.tenant_id,
            ))
            .await
        {
            Ok(r) => r.into_inner().user.unwrap_or_default(),
            Err(s) if s.code() == tonic::Code::NotFound => {
                tracing::info!(%user_id, template = i.template.as_str(), "no such user: no e-mail");
                self.skipped.inc();
                return Ok(());
            }
            Err(s) => return Err(HandlerError::Retryable(format!("identity: {s}"))),
        };
        let registered: Vec<String> = sqlx::query_scalar(
            "SELECT address FROM channels
             WHERE tenant_id = $1 AND user_id = $2 AND kind = 'email'
               AND (topics = '{}' OR $3 = ANY(topics))
             ORDER BY address",
        )
        .bind(&e.tenant_id)
        .bind(&user_id)
        .bind(&d.topic)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let to = if registered.is_empty() {
            vec![user.email.clone()]
        } else {
            registered
        };
        let mut vars = i.vars;
        // Payments' refund events carry the running total refunded: the
        // e-mail names this refund, the difference from the total last mailed.
        let mut refund_total = None;
        if i.template == email::Template::OrderRefunded
            && let Ok(p) = serde_json::from_slice::<email::PaymentStatusChanged>(&e.payload)
        {
            let before: i64 = sqlx::query_scalar(
                "SELECT refunded_minor FROM refund_totals WHERE tenant_id = $1 AND order_id = $2",
            )
            .bind(&e.tenant_id)
            .bind(&i.order_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .unwrap_or(0);
            if p.amount_minor <= before {
                return Ok(());
            }
            vars.insert(
                "amount".into(),
                email::money(p.amount_minor - before, &p.currency),
            );
            refund_total = Some(p.amount_minor);
        }
        let name = if user.display_name.is_empty() {
            email::display_name(&user.email)
        } else {
            user.display_name
        };
        vars.insert("name".into(), name);
        let rendered = email::render(i.template, &vars)
            .map_err(|err| HandlerError::Permanent(err.to_string()))?;
        let out = Outbound {
            key: email::key(&e.id.to_string(), i.template),
            tenant_id: e.tenant_id.clone(),
            template: i.template,
            to,
            order_id: i.order_id,
            subject: rendered.subject,
            body: rendered.body,
        };
        let mut redis = self.redis.clone();
        mailer::enqueue(&mut redis, &self.stream, &out)
            .await
            .map_err(|err| HandlerError::Retryable(format!("redis: {err}")))?;
        self.queued.inc();
        if let Some(total) = refund_total {
            // After the enqueue: a redelivery before this line computes the
            // same amount again, and the mailer sends the key once.
            sqlx::query(
                "INSERT INTO refund_totals (tenant_id, order_id, refunded_minor) VALUES ($1, $2, $3)
                 ON CONFLICT (tenant_id, order_id)
                 DO UPDATE SET refunded_minor = GREATEST(refund_totals.refunded_minor, EXCLUDED.refunded_minor)",
            )
            .bind(&e.tenant_id)
            .bind(&out.order_id)
            .bind(total)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        }
        Ok(())
    }
}

/// Consume `order.lifecycle` and `payment.events`, send e-mail and serve
/// the gRPC API and the operational endpoints until `shutdown` (see
/// [`Service::run`]).
pub async fn run(
    cfg: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let svc = Service::new(&cfg.service);
    let pool = db::connect(&cfg.service.endpoints.postgres_url, &cfg.database).await?;
    db::migrate(&pool, &MIGRATOR).await?;
    // Each effect is its own dedupe (see the module's doc): no id record.
    let dedupe = Arc::new(HandlerDedupes);
    let redis = cache::connect(&cfg.service.endpoints.redis_url).await?;
    let identity = IdentityServiceClient::with_interceptor(
        channel(&cfg.identity_grpc, Duration::from_secs(2), IDENTITY_TIMEOUT)?,
        TraceInterceptor,
    );
    let deliver = Arc::new(Deliver::new(
        redis.clone(),
        cfg.mailer.stream.clone(),
        pool.clone(),
        identity,
        svc.metrics(),
    ));
    // The mailer blocks on its reads: it gets a connection of its own.
    let mailer = Mailer::new(
        cache::connect(&cfg.service.endpoints.redis_url).await?,
        pool.clone(),
        cfg.mailer.clone(),
        svc.metrics(),
    )?;
    let bus = KafkaBus::connect(&cfg.service.endpoints)?;
    let topics = [cfg.topics.orders.as_str(), cfg.topics.payments.as_str()];
    for topic in topics {
        bus.ensure_topic(topic, TOPIC_PARTITIONS).await?;
        bus.ensure_topic(&dlq_topic(topic), 1).await?;
    }
    let rcfg = RunnerConfig {
        max_attempts: MAX_ATTEMPTS,
        health: runner::ConsumerHealth::new(svc.metrics(), &cfg.consumer_group),
        ..RunnerConfig::new(&cfg.consumer_group, &topics)
    };
    let api = api::GrpcApi {
        pool: pool.clone(),
        redis: redis.clone(),
        stream: cfg.mailer.stream.clone(),
        clock: Arc::new(SystemClock),
        default_tenant: cfg.service.default_tenant.clone(),
    };
    let participant = dsar::Participant::new(
        pool.clone(),
        redis.clone(),
        &cfg.mailer.stream,
        cfg.mail_sink.as_deref(),
    )?;
    let dead_letters = api::http_routes(redis.clone(), cfg.mailer.stream.clone());
    svc.http(dead_letters)
        .check_postgres("postgres", pool)
        .check("consumer", rcfg.health.readiness())
        .check("redis", move || {
            let r = redis.clone();
            async move { cache::ping(&r).await }
        })
        .grpc(NotificationsServiceServer::new(api))
        .grpc(shopstream_dsar::server(
            Arc::new(participant),
            &cfg.service.default_tenant,
        ))
        .task("events", move |stop| {
            runner::run_until_stopped(bus, dedupe, deliver, rcfg, stop, CONSUMER_RESTART_DELAY)
        })
        .task("mailer", move |stop| mailer.run(stop))
        .run(listeners, shutdown)
        .await?;
    Ok(())
}

/// Notifications' schema.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
