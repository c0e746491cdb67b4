//! The catalog service: products, SKUs, prices, the stock view and regions of
//! each tenant, in Postgres. It serves public reads and admin writes over HTTP
//! (`api::http`) and `GetProduct` / `ListProducts` / `UpdateStock` over gRPC
//! (`api::grpc`). Every write bumps the product's `version` and appends
//! `ProductChanged` rows to the `outbox` table in the same transaction; the
//! CDC service streams them to `product.events`.
//!
//! [`run`] is the entry point `shopstream serve catalog` calls; [`seed()`]
//! loads the demo catalog idempotently.

pub mod adapters;
pub mod api;
pub mod config;
pub mod domain;
pub mod error;
pub mod ports;
pub mod seed;
pub mod service;

use std::sync::Arc;

use shopstream_platform::{
    clock::SystemClock,
    db,
    ids::SystemIdGen,
    service::{Listeners, Service},
};
use shopstream_proto::catalog::v1::catalog_service_server::CatalogServiceServer;
use tokio_util::sync::CancellationToken;

pub use crate::{
    adapters::postgres::MIGRATOR,
    config::Config,
    error::Error,
    seed::{SeedReport, seed},
};
use crate::{
    adapters::postgres::PostgresProductRepository,
    api::{grpc::CatalogGrpc, http::AppState},
    domain::TenantId,
    service::Catalog,
};

shopstream_platform::service_entry! {
    /// The catalog as `shopstream serve catalog` and the test kit start it.
    Server { name: config::SERVICE_NAME, grpc: true, config: Config, run: run }
}

/// Connect to (and create if needed) `cfg.database`, apply the migrations,
/// then serve HTTP and gRPC until `shutdown` (see [`Service::run`]).
pub async fn run(
    cfg: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let default_tenant = TenantId::parse(&cfg.service.default_tenant).map_err(|reason| {
        shopstream_platform::config::ConfigError::Invalid {
            name: "SHOPSTREAM_DEFAULT_TENANT".into(),
            value: cfg.service.default_tenant.clone(),
            reason,
        }
    })?;
    let pool = db::connect(&cfg.service.endpoints.postgres_url, &cfg.database).await?;
    db::migrate(&pool, &MIGRATOR).await?;
    let catalog = Catalog::new(
        Arc::new(PostgresProductRepository::new(pool.clone())),
        Arc::new(SystemClock),
        Arc::new(SystemIdGen),
    );
    Service::new(&cfg.service)
        .check_postgres("postgres", pool)
        .http(api::http::routes(AppState {
            catalog: catalog.clone(),
            default_tenant: default_tenant.clone(),
        }))
        .grpc(CatalogServiceServer::new(CatalogGrpc::new(
            catalog,
            default_tenant,
        )))
        .run(listeners, shutdown)
        .await?;
    Ok(())
}
