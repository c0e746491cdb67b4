//! `shopstream serve NAME`: run one server in the foreground until SIGINT/SIGTERM.

use clap::Args;
use shopstream_platform::{config, shutdown, telemetry};
use shopstream_runtime::s3_server::{self, S3Config};

use crate::exit;

/// Servers this binary can run. Services join this list as they are built.
const SERVERS: &[&str] = &[
    "s3",
    "identity",
    "catalog",
    "inventory",
    "gateway",
    "stripe-sim",
    "orders",
    "payments",
    "cdc",
    "search",
];

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Which server: s3, identity, catalog, inventory, gateway, stripe-sim, orders, payments, cdc, search.
    name: String,
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<u8> {
    telemetry::init(&args.name, telemetry::LogFormat::from_env(), None)?;
    match args.name.as_str() {
        "s3" => {
            let addr: std::net::SocketAddr = config::env_parse(
                "SHOPSTREAM_S3_ADDR",
                std::net::SocketAddr::from(([127, 0, 0, 1], config::Ports::DEV.s3)),
            )?;
            let endpoints = config::Endpoints::from_env()?;
            let cfg = S3Config {
                addr,
                root: config::env_or("SHOPSTREAM_S3_ROOT", ".shopstream/s3/data").into(),
                access_key: endpoints.s3_access_key.clone(),
                secret_key: secrecy::ExposeSecret::expose_secret(&endpoints.s3_secret_key)
                    .to_string(),
            };
            let listener = tokio::net::TcpListener::bind(addr).await?;
            s3_server::run(listener, cfg, shutdown::on_signal()).await?;
            Ok(exit::OK)
        }
        "identity" => {
            let cfg = shopstream_identity::Config::from_env()?;
            let (http, grpc) = listeners(&cfg.service).await?;
            shopstream_identity::run(cfg, http, grpc, shutdown::on_signal()).await?;
            Ok(exit::OK)
        }
        "catalog" => {
            let cfg = shopstream_catalog::Config::from_env()?;
            let (http, grpc) = listeners(&cfg.service).await?;
            shopstream_catalog::run(cfg, http, grpc, shutdown::on_signal()).await?;
            Ok(exit::OK)
        }
        "inventory" => {
            let cfg = shopstream_inventory::Config::from_env()?;
            let (http, grpc) = listeners(&cfg.service).await?;
            shopstream_inventory::run(cfg, http, grpc, shutdown::on_signal()).await?;
            Ok(exit::OK)
        }
        "orders" => {
            let cfg = shopstream_orders::Config::from_env()?;
            let (http, grpc) = listeners(&cfg.service).await?;
            shopstream_orders::run(cfg, http, grpc, shutdown::on_signal()).await?;
            Ok(exit::OK)
        }
        "payments" => {
            let cfg = shopstream_payments::Config::from_env()?;
            let (http, grpc) = listeners(&cfg.service).await?;
            shopstream_payments::run(cfg, http, grpc, shutdown::on_signal()).await?;
            Ok(exit::OK)
        }
        "cdc" => {
            let cfg = shopstream_cdc::Config::from_env()?;
            let (http, grpc) = listeners(&cfg.service).await?;
            shopstream_cdc::run(cfg, http, grpc, shutdown::on_signal()).await?;
            Ok(exit::OK)
        }
        "search" => {
            let cfg = shopstream_search::Config::from_env()?;
            let (http, grpc) = listeners(&cfg.service).await?;
            shopstream_search::run(cfg, http, grpc, shutdown::on_signal()).await?;
            Ok(exit::OK)
        }
        "stripe-sim" => {
            let cfg = shopstream_stripe_sim::Config::from_env()?;
            let listener = tokio::net::TcpListener::bind(cfg.addr).await?;
            shopstream_stripe_sim::run(cfg, listener, shutdown::on_signal()).await?;
            Ok(exit::OK)
        }
        "gateway" => {
            let cfg = shopstream_gateway::Config::from_env()?;
            let http = tokio::net::TcpListener::bind(cfg.service.http_addr).await?;
            shopstream_gateway::run(cfg, http, shutdown::on_signal()).await?;
            Ok(exit::OK)
        }
        other => {
            eprintln!(
                "error: unknown server {other:?}; available: {}",
                SERVERS.join(", ")
            );
            Ok(2)
        }
    }
}

/// Bind a service's HTTP and gRPC listeners.
async fn listeners(
    service: &config::ServiceConfig,
) -> anyhow::Result<(tokio::net::TcpListener, tokio::net::TcpListener)> {
    let bind = |addr| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))
    };
    Ok((
        bind(service.http_addr).await?,
        bind(service.grpc_addr).await?,
    ))
}
