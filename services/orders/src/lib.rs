//! Orders: `CreateOrder` with a required idempotency key, reads and listings,
//! and the checkout saga — a Temporal workflow (`workflow`) that is a thin
//! driver of the pure decider in `domain::saga`, with the order state machine
//! in `domain::order`. Every state change is recorded with the saga's step log
//! and published to `order.lifecycle` through the transactional outbox.
//!
//! Its DSAR participant (`dsar`) anonymises a person's orders, which are kept
//! for accounting.
//!
//! One process serves gRPC and runs the Temporal worker; killing it mid-saga
//! loses nothing: Temporal hands the workflow to the next worker, and every
//! step is idempotent.

pub mod adapters;
pub mod api;
pub mod domain;
pub mod driver;
pub mod dsar;
pub mod ports;
pub mod service;
pub mod workflow;

use std::{sync::Arc, time::Duration};

use shopstream_platform::{
    clock::SystemClock,
    config::{ConfigError, ServiceConfig, env_or, env_parse, grpc_url_of},
    db,
    events::kafka::KafkaBus,
    ids::SystemIdGen,
    outbox::{self, Relay},
    service::{Listeners, Service},
    shutdown,
    temporal::{self, PollerBehavior, Worker, WorkerOptions},
};
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
    /// How often the sweeper starts the sagas that did not start (Temporal
    /// down or slow when the order was placed), and how old such an order
    /// must be first: an order is started at most about twice this after
    /// Temporal answers again.
    pub restart_interval: Duration,
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Ok(Config {
            service: ServiceConfig::from_env("orders")?,
            database: env_or("SHOPSTREAM_ORDERS_DATABASE", "orders"),
            catalog_url: grpc_url_of("catalog", "SHOPSTREAM_ORDERS_CATALOG_URL")?,
            inventory_url: grpc_url_of("inventory", "SHOPSTREAM_ORDERS_INVENTORY_URL")?,
            payments_url: grpc_url_of("payments", "SHOPSTREAM_ORDERS_PAYMENTS_URL")?,
            task_queue: env_or("SHOPSTREAM_ORDERS_TASK_QUEUE", workflow::TASK_QUEUE),
            restart_interval: Duration::from_millis(env_parse(
                "SHOPSTREAM_ORDERS_RESTART_INTERVAL_MS",
                5_000,
            )?),
        })
    }
}

shopstream_platform::service_entry! {
    /// Orders as `shopstream serve orders` and the test kit start it.
    Server { name: "orders", grpc: true, config: Config, run: run }
}

/// Serve gRPC and the ops endpoints, run the Temporal worker, the outbox
/// relay and the unstarted-saga sweeper until `shutdown` (see [`Service::run`]).
pub async fn run(
    cfg: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let e = &cfg.service.endpoints;
    let pool = db::connect(&e.postgres_url, &cfg.database).await?;
    db::migrate(&pool, &adapters::postgres::MIGRATOR).await?;
    outbox::ensure_table(&pool).await?;
    dsar::ensure_indexes(&pool).await?;
    let bus = KafkaBus::connect(e)?;
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
    let svc = Service::new(&cfg.service);
    let saga_metrics = workflow::SagaMetrics::register(svc.metrics());
    let by_state = adapters::postgres::OrdersByState::register(svc.metrics(), pool.clone());
    let options = WorkerOptions::new(cfg.task_queue.clone())
        .register_workflow::<workflow::CheckoutWorkflow>()?
        .register_activities(workflow::CheckoutActivities {
            orders: orders.clone(),
            steps,
            metrics: saga_metrics,
        })
        .workflow_task_poller_behavior(PollerBehavior::SimpleMaximum(temporal::POLLERS))
        .activity_task_poller_behavior(PollerBehavior::SimpleMaximum(temporal::POLLERS))
        .build();
    let runtime = temporal::runtime()?;
    let temporal_client = client.clone();
    let mut worker = Worker::new(&runtime, client, options)?;
    let stop_worker = worker.shutdown_handle();
    let sweeper = orders.clone();
    let participant = Arc::new(dsar::OrdersParticipant::new(pool.clone()));
    let every = cfg.restart_interval;

    svc.check_postgres("postgres", pool)
        .check("temporal", move || {
            let client = temporal_client.clone();
            async move { workflow::temporal_ready(&client).await }
        })
        .grpc(
            shopstream_proto::orders::v1::orders_service_server::OrdersServiceServer::new(
                api::GrpcApi {
                    orders,
                    default_tenant: cfg.service.default_tenant.clone(),
                },
            ),
        )
        .grpc(shopstream_dsar::server(
            participant,
            &cfg.service.default_tenant,
        ))
        // The Temporal worker is not Send: the kit joins workers on this task.
        .worker("temporal", move |_| async move { worker.run().await })
        .task("temporal-stopper", |stop| async move {
            stop.cancelled().await;
            stop_worker();
        })
        .task("outbox", |stop| relay.run(stop))
        .task("orders-by-state", move |stop| by_state.run(stop))
        .task("saga-start-sweeper", move |stop| async move {
            while shutdown::sleep_or_stop(&stop, every).await {
                match sweeper.start_unstarted(every.as_millis() as i64).await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(orders = n, "started checkout sagas that had not started")
                    }
                    Err(e) => tracing::warn!(error = %e, "saga start sweep failed"),
                }
            }
        })
        .run(listeners, shutdown)
        .await?;
    Ok(())
}
