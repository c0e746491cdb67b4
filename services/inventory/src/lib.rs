//! Inventory: stock per SKU and reservations with a TTL. `Reserve` holds
//! stock atomically (never oversold), `Commit` turns a hold into a sale,
//! `Release` returns it, and an expiry worker returns holds whose TTL passed.
//! All three calls are idempotent. Postgres is the truth.

pub mod adapters;
pub mod api;
pub mod domain;
pub mod ports;
pub mod service;

use std::{sync::Arc, time::Duration};

use shopstream_platform::{
    clock::SystemClock,
    config::{ConfigError, ServiceConfig, env_or, env_parse},
    db,
    ids::SystemIdGen,
    service::{Listeners, Service},
};
use tokio_util::sync::CancellationToken;

pub use service::Inventory;

#[derive(Debug, Clone)]
pub struct Config {
    pub service: ServiceConfig,
    pub database: String,
    pub expiry_interval: Duration,
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Ok(Config {
            service: ServiceConfig::from_env("inventory")?,
            database: env_or("SHOPSTREAM_INVENTORY_DATABASE", "inventory"),
            expiry_interval: Duration::from_millis(env_parse(
                "SHOPSTREAM_INVENTORY_EXPIRY_INTERVAL_MS",
                1_000,
            )?),
        })
    }
}

shopstream_platform::service_entry! {
    /// Inventory as `shopstream serve inventory` and the test kit start it.
    Server { name: "inventory", grpc: true, config: Config, run: run }
}

/// Connect and migrate; the use cases on Postgres.
pub async fn build(cfg: &Config) -> anyhow::Result<(Inventory, sqlx::PgPool)> {
    let pool = db::connect(&cfg.service.endpoints.postgres_url, &cfg.database).await?;
    db::migrate(&pool, &adapters::postgres::MIGRATOR).await?;
    Ok((
        Inventory {
            store: Arc::new(adapters::postgres::PgInventory::new(pool.clone())),
            clock: Arc::new(SystemClock),
            ids: Arc::new(SystemIdGen),
        },
        pool,
    ))
}

/// Serve gRPC (and the operational HTTP endpoints) and run the expiry worker
/// until `shutdown` (see [`Service::run`]).
pub async fn run(
    cfg: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (inventory, pool) = build(&cfg).await?;
    let every = cfg.expiry_interval;
    Service::new(&cfg.service)
        .check_postgres("postgres", pool)
        .grpc(
            shopstream_proto::inventory::v1::inventory_service_server::InventoryServiceServer::new(
                api::GrpcApi {
                    inventory: inventory.clone(),
                    default_tenant: cfg.service.default_tenant.clone(),
                },
            ),
        )
        .task("expiry", move |stop| async move {
            inventory.run_expiry(every, stop).await
        })
        .run(listeners, shutdown)
        .await?;
    Ok(())
}
