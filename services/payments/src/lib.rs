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

use std::{net::SocketAddr, sync::Arc, time::Duration};

use secrecy::{ExposeSecret, SecretString};
use shopstream_platform::{
    clock::SystemClock,
    config::{self, ConfigError, ServiceConfig, env_or, env_parse},
    db,
    events::{
        EventBus,
        kafka::{KafkaBus, KafkaSettings},
    },
    grpc,
    health::Readiness,
    http,
    ids::SystemIdGen,
    outbox::{self, Relay},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use events::{PaymentStatusChanged, TOPIC};
pub use service::Payments;

/// Dev listeners when `payments` has no slot in the platform's port table.
pub const DEFAULT_HTTP_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 18086);
pub const DEFAULT_GRPC_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 18096);
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
        let (http, grpc) = config::default_service_addrs("payments")
            .unwrap_or((DEFAULT_HTTP_ADDR, DEFAULT_GRPC_ADDR));
        let sim_base = config::default_service_addrs("stripe-sim")
            .map(|(h, _)| format!("http://{h}"))
            .unwrap_or_else(|| "http://127.0.0.1:18084".into());
        Ok(Config {
            service: ServiceConfig::from_env("payments", http, grpc)?,
            database: env_or("SHOPSTREAM_PAYMENTS_DATABASE", "payments"),
            stripe_api_base: env_or("SHOPSTREAM_STRIPE_API_BASE", &sim_base),
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

/// Serve gRPC, the webhook and ops endpoints, and run the outbox relay and
/// the reconciler until `shutdown`.
pub async fn run(
    cfg: Config,
    http_listener: TcpListener,
    grpc_listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (mut payments, pool) = build(&cfg).await?;
    let bus: Arc<dyn EventBus> = Arc::new(KafkaBus::new(KafkaSettings::from_env(
        &cfg.service.endpoints.kafka_brokers,
    )?)?);
    bus.ensure_topic(TOPIC, TOPIC_PARTITIONS).await?;
    let relay = Relay::new(pool.clone(), bus);
    let wake = relay.clone();
    payments.on_event = Some(Arc::new(move || wake.wake()));
    let ops = http::Ops::from_config(
        &cfg.service,
        Readiness::new().with_postgres("postgres", pool),
    );
    let default_tenant = cfg.service.default_tenant.clone();
    let webhook = api::http::routes(api::http::WebhookState {
        payments: payments.clone(),
        default_tenant: default_tenant.clone(),
        deliveries: api::http::register(&ops.metrics),
    });
    let routes = tonic::service::Routes::new(
        shopstream_proto::payments::v1::payments_service_server::PaymentsServiceServer::new(
            api::grpc::GrpcApi {
                payments: payments.clone(),
                default_tenant,
            },
        ),
    );
    let (h, g, (), ()) = tokio::join!(
        http::serve(http_listener, http::router(webhook, ops), shutdown.clone()),
        grpc::serve(
            grpc_listener,
            routes,
            cfg.service.request_timeout,
            shutdown.clone()
        ),
        relay.run(shutdown.clone()),
        payments.run_reconciler(
            cfg.reconcile_interval,
            cfg.reconcile_min_age,
            shutdown.clone()
        ),
    );
    h?;
    g?;
    Ok(())
}
