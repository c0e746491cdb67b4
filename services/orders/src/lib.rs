//! Orders: `CreateOrder` with a required idempotency key, reads and listings,
//! and the checkout saga — a Temporal workflow (`workflow`) that is a thin
//! driver of the pure decider in `domain::saga`, with the order state machine
//! in `domain::order`. Every state change is recorded with the saga's step log
//! and published to `order.lifecycle` through the transactional outbox.
//!
//! One process serves gRPC and runs the Temporal worker; killing it mid-saga
//! loses nothing: Temporal hands the workflow to the next worker, and every
//! step is idempotent.

pub mod adapters;
pub mod api;
pub mod domain;
pub mod driver;
pub mod ports;
pub mod service;
pub mod workflow;

use std::{sync::Arc, time::Duration};

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
    temporal::{self, PollerBehavior, Worker, WorkerOptions},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use service::Orders;

#[derive(Debug, Clone)]
pub struct Config {
    pub service: ServiceConfig,
    pub database: String,
    /// gRPC URLs of the services the saga and pricing call.
    pub catalog_url: String,
    pub inventory_url: String,
    pub payments_url: String,
    pub task_queue: String,
    /// How often orders whose saga could not be started are retried.
    pub restart_interval: Duration,
}

fn grpc_url(name: &str, var: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| {
            config::default_service_addrs(name)
                .map(|(_, g)| format!("http://{g}"))
                .unwrap_or_default()
        })
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        let (http, grpc) = config::default_service_addrs("orders").unwrap_or_else(|| {
            (
                std::net::SocketAddr::from(([127, 0, 0, 1], 18085)),
                std::net::SocketAddr::from(([127, 0, 0, 1], 18095)),
            )
        });
        Ok(Config {
            service: ServiceConfig::from_env("orders", http, grpc)?,
            database: env_or("SHOPSTREAM_ORDERS_DATABASE", "orders"),
            catalog_url: grpc_url("catalog", "SHOPSTREAM_ORDERS_CATALOG_URL"),
            inventory_url: grpc_url("inventory", "SHOPSTREAM_ORDERS_INVENTORY_URL"),
            payments_url: grpc_url("payments", "SHOPSTREAM_ORDERS_PAYMENTS_URL"),
            task_queue: env_or("SHOPSTREAM_ORDERS_TASK_QUEUE", workflow::TASK_QUEUE),
            restart_interval: Duration::from_millis(env_parse(
                "SHOPSTREAM_ORDERS_RESTART_INTERVAL_MS",
                5_000,
            )?),
        })
    }
}

/// Serve gRPC and the ops endpoints, run the Temporal worker, the outbox
/// relay and the unstarted-saga sweeper until `shutdown`.
pub async fn run(
    cfg: Config,
    http_listener: TcpListener,
    grpc_listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let e = &cfg.service.endpoints;
    let pool = db::connect(&e.postgres_url, &cfg.database).await?;
    db::migrate(&pool, &adapters::postgres::MIGRATOR).await?;
    outbox::ensure_table(&pool).await?;
    let bus: Arc<dyn EventBus> =
        Arc::new(KafkaBus::new(KafkaSettings::from_env(&e.kafka_brokers)?)?);
    bus.ensure_topic(adapters::postgres::TOPIC, 3).await?;
    let relay = Relay::new(pool.clone(), bus);
    let client = temporal::connect(&e.temporal_url, &e.temporal_namespace, "orders").await?;
    let timeout = cfg.service.request_timeout;
    let orders = Orders {
        store: Arc::new(adapters::postgres::PgOrders::new(pool.clone())),
        prices: Arc::new(adapters::grpc::GrpcPriceBook::new(
            &cfg.catalog_url,
            timeout,
        )?),
        starter: Arc::new(workflow::TemporalStarter {
            client: client.clone(),
            task_queue: cfg.task_queue.clone(),
        }),
        clock: Arc::new(SystemClock),
        ids: Arc::new(SystemIdGen),
        relay: Some(relay.clone()),
    };
    let steps = Arc::new(adapters::grpc::GrpcSteps::new(
        &cfg.inventory_url,
        &cfg.payments_url,
        timeout,
    )?);
    let options = WorkerOptions::new(cfg.task_queue.clone())
        .register_workflow::<workflow::CheckoutWorkflow>()?
        .register_activities(workflow::CheckoutActivities {
            orders: orders.clone(),
            steps,
        })
        .workflow_task_poller_behavior(PollerBehavior::SimpleMaximum(temporal::POLLERS))
        .activity_task_poller_behavior(PollerBehavior::SimpleMaximum(temporal::POLLERS))
        .build();
    let runtime = temporal::runtime()?;
    let mut worker = Worker::new(&runtime, client, options)?;
    let stop_worker = worker.shutdown_handle();

    let ops = http::Ops::from_config(
        &cfg.service,
        Readiness::new().with_postgres("postgres", pool),
    );
    let routes = tonic::service::Routes::new(
        shopstream_proto::orders::v1::orders_service_server::OrdersServiceServer::new(
            api::GrpcApi {
                orders: orders.clone(),
                default_tenant: cfg.service.default_tenant.clone(),
            },
        ),
    );
    let sweeper = {
        let orders = orders.clone();
        let shutdown = shutdown.clone();
        let every = cfg.restart_interval;
        async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
                match orders.start_unstarted(every.as_millis() as i64).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(orders = n, "started sagas that had not started"),
                    Err(e) => tracing::warn!(error = %e, "saga start sweep failed"),
                }
            }
        }
    };
    let stopper = {
        let shutdown = shutdown.clone();
        async move {
            shutdown.cancelled().await;
            stop_worker();
        }
    };
    // The worker is not Send: everything runs joined on this task.
    let (h, g, w, (), (), ()) = tokio::join!(
        http::serve(
            http_listener,
            http::router(axum::Router::new(), ops),
            shutdown.clone()
        ),
        grpc::serve(grpc_listener, routes, timeout, shutdown.clone()),
        worker.run(),
        relay.run(shutdown.clone()),
        sweeper,
        stopper,
    );
    h?;
    g?;
    w?;
    Ok(())
}
