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
    config::{self, ConfigError, ServiceConfig, env_or, env_parse},
    db, grpc,
    health::Readiness,
    http,
    ids::SystemIdGen,
};
use tokio::net::TcpListener;
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
        let (http, grpc) = config::default_service_addrs("inventory").unwrap_or_else(|| {
            (
                std::net::SocketAddr::from(([127, 0, 0, 1], 18083)),
                std::net::SocketAddr::from(([127, 0, 0, 1], 18093)),
            )
        });
        Ok(Config {
            service: ServiceConfig::from_env("inventory", http, grpc)?,
            database: env_or("SHOPSTREAM_INVENTORY_DATABASE", "inventory"),
            expiry_interval: Duration::from_millis(env_parse(
                "SHOPSTREAM_INVENTORY_EXPIRY_INTERVAL_MS",
                1_000,
            )?),
        })
    }
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

/// Serve gRPC (and the operational HTTP endpoints) and run the expiry worker until `shutdown`.
pub async fn run(
    cfg: Config,
    http_listener: TcpListener,
    grpc_listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (inventory, pool) = build(&cfg).await?;
    let ops = http::Ops::from_config(
        &cfg.service,
        Readiness::new().with_postgres("postgres", pool),
    );
    let routes = tonic::service::Routes::new(
        shopstream_proto::inventory::v1::inventory_service_server::InventoryServiceServer::new(
            api::GrpcApi {
                inventory: inventory.clone(),
                default_tenant: cfg.service.default_tenant.clone(),
            },
        ),
    );
    let (h, g, ()) = tokio::join!(
        http::serve(
            http_listener,
            http::router(axum::Router::new(), ops),
            shutdown.clone()
        ),
        grpc::serve(
            grpc_listener,
            routes,
            cfg.service.request_timeout,
            shutdown.clone()
        ),
        inventory.run_expiry(cfg.expiry_interval, shutdown),
    );
    h?;
    g?;
    Ok(())
}
