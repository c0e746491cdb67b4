//! Payments: payment intents against the card provider (Stripe, or
//! stripe-sim locally) through async-stripe. `CreateIntent` authorizes
//! (manual capture), `Capture`/`Cancel`/`Refund` follow; every call is
//! idempotent and forwards its key to the provider. Signed webhooks and a
//! reconciler keep rows in step with the provider when responses or
//! webhooks are lost; a status only moves forward, and each real change
//! goes to `payment.events` through the transactional outbox.

pub mod adapters;
pub mod api;
pub mod domain;
pub mod events;
pub mod ports;
pub mod service;

use std::{sync::Arc, time::Duration};

use secrecy::{ExposeSecret, SecretString};
use shopstream_platform::{
    clock::SystemClock,
    config::{ConfigError, ServiceConfig, env_or, env_parse, http_url_of},
    db,
    events::kafka::KafkaBus,
    ids::SystemIdGen,
    outbox::{self, Relay},
    service::{Listeners, Service},
};
use tokio_util::sync::CancellationToken;

pub use events::{PaymentStatusChanged, TOPIC};
pub use service::Payments;

/// Partitions of `payment.events` when payments creates it.
pub const TOPIC_PARTITIONS: i32 = 3;

#[derive(Debug, Clone)]
pub struct Config {
    pub service: ServiceConfig,
    pub database: String,
    /// Stripe's API base, e.g. `https://api.stripe.com` or stripe-sim's.
    pub stripe_api_base: String,
    pub stripe_secret_key: SecretString,
    pub stripe_webhook_secret: SecretString,
    /// Deadline of one provider call.
    pub stripe_timeout: Duration,
    pub reconcile_interval: Duration,
    /// In-flight payments untouched this long are read back from the provider.
    pub reconcile_min_age: Duration,
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Ok(Config {
            service: ServiceConfig::from_env("payments")?,
            database: env_or("SHOPSTREAM_PAYMENTS_DATABASE", "payments"),
            stripe_api_base: http_url_of("stripe-sim", "SHOPSTREAM_STRIPE_API_BASE")?,
            stripe_secret_key: SecretString::from(env_or(
                "SHOPSTREAM_STRIPE_SECRET_KEY",
                "sk_test_shopstream",
            )),
            stripe_webhook_secret: SecretString::from(env_or(
                "SHOPSTREAM_STRIPE_WEBHOOK_SECRET",
                "whsec_shopstream",
            )),
            stripe_timeout: Duration::from_millis(env_parse(
                "SHOPSTREAM_STRIPE_TIMEOUT_MS",
                5_000,
            )?),
            reconcile_interval: Duration::from_millis(env_parse(
                "SHOPSTREAM_PAYMENTS_RECONCILE_INTERVAL_MS",
                5_000,
            )?),
            reconcile_min_age: Duration::from_millis(env_parse(
                "SHOPSTREAM_PAYMENTS_RECONCILE_AGE_MS",
                10_000,
            )?),
        })
    }
}

/// Connect, migrate and create the outbox table; the use cases on Postgres
/// and Stripe (nothing wakes an outbox relay yet: see `run`).
pub async fn build(cfg: &Config) -> anyhow::Result<(Payments, sqlx::PgPool)> {
    let pool = db::connect(&cfg.service.endpoints.postgres_url, &cfg.database).await?;
    db::migrate(&pool, &adapters::postgres::MIGRATOR).await?;
    outbox::ensure_table(&pool).await?;
    let provider = adapters::stripe::StripeProvider::new(
        &cfg.stripe_api_base,
        cfg.stripe_secret_key.expose_secret(),
        cfg.stripe_timeout,
    )?;
    Ok((
        Payments {
            store: Arc::new(adapters::postgres::PgPayments::new(pool.clone())),
            provider: Arc::new(provider),
            clock: Arc::new(SystemClock),
            ids: Arc::new(SystemIdGen),
            webhook_secret: cfg.stripe_webhook_secret.expose_secret().into(),
            on_event: None,
        },
        pool,
    ))
}

shopstream_platform::service_entry! {
    /// Payments as `shopstream serve payments` and the test kit start it.
    Server { name: "payments", grpc: true, config: Config, run: run }
}

/// Serve gRPC, the webhook and ops endpoints, and run the outbox relay and
/// the reconciler until `shutdown` (see [`Service::run`]).
pub async fn run(
    cfg: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (mut payments, pool) = build(&cfg).await?;
    let bus = KafkaBus::connect(&cfg.service.endpoints)?;
    bus.ensure_topic(TOPIC, TOPIC_PARTITIONS).await?;
    let relay = Relay::new(pool.clone(), bus);
    let wake = relay.clone();
    payments.on_event = Some(Arc::new(move || wake.wake()));
    let default_tenant = cfg.service.default_tenant.clone();
    let svc = Service::new(&cfg.service).check_postgres("postgres", pool);
    let webhook = api::http::routes(api::http::WebhookState {
        payments: payments.clone(),
        default_tenant: default_tenant.clone(),
        deliveries: api::http::register(svc.metrics()),
    });
    let (interval, min_age) = (cfg.reconcile_interval, cfg.reconcile_min_age);
    let reconciler = payments.clone();
    svc.http(webhook)
        .grpc(
            shopstream_proto::payments::v1::payments_service_server::PaymentsServiceServer::new(
                api::grpc::GrpcApi {
                    payments,
                    default_tenant,
                },
            ),
        )
        .task("outbox", |stop| relay.run(stop))
        .task("reconciler", move |stop| async move {
            reconciler.run_reconciler(interval, min_age, stop).await
        })
        .run(listeners, shutdown)
        .await?;
    Ok(())
}
