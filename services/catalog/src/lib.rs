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
    clock::SystemClock, db, grpc, health::Readiness, http, ids::SystemIdGen,
};
use shopstream_proto::catalog::v1::catalog_service_server::CatalogServiceServer;
use tokio::net::TcpListener;
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

/// Connect to (and create if needed) `cfg.database`, apply the migrations,
/// then serve HTTP on `http` and gRPC on `grpc` until `shutdown` is
/// cancelled, draining in-flight requests. If either server fails, the other
/// is stopped and the error returned.
pub async fn run(
    cfg: Config,
    http: TcpListener,
    grpc: TcpListener,
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
    let readiness = Readiness::new().with_postgres("postgres", pool.clone());
    let app = http::router(
        api::http::routes(AppState {
            catalog: catalog.clone(),
            default_tenant: default_tenant.clone(),
        }),
        http::Ops::from_config(&cfg.service, readiness),
    );
    let routes = tonic::service::Routes::new(CatalogServiceServer::new(CatalogGrpc::new(
        catalog,
        default_tenant,
    )));

    tracing::info!(
        http_addr = ?http.local_addr().ok(),
        grpc_addr = ?grpc.local_addr().ok(),
        database = %cfg.database,
        "catalog serving"
    );
    // One server failing stops the other; shutdown stops both.
    let stop = shutdown.child_token();
    let http_server = {
        let stop = stop.clone();
        async move {
            let r = http::serve(http, app, stop.clone())
                .await
                .map_err(Error::Http);
            stop.cancel();
            r
        }
    };
    let grpc_server = {
        let stop = stop.clone();
        let timeout = cfg.service.request_timeout;
        async move {
            let r = grpc::serve(grpc, routes, timeout, stop.clone())
                .await
                .map_err(Error::Grpc);
            stop.cancel();
            r
        }
    };
    let (http_result, grpc_result) = tokio::join!(http_server, grpc_server);
    pool.close().await;
    tracing::info!("catalog stopped");
    http_result.and(grpc_result)
}
