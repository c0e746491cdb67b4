//! `shopstream serve NAME`: run one server in the foreground until SIGINT/SIGTERM.

use clap::Args;
use futures::future::LocalBoxFuture;
use shopstream_platform::shutdown::CancellationToken;
use shopstream_platform::{
    config,
    service::{self, BoxError, Entry},
    shutdown, telemetry,
};
use shopstream_runtime::s3_server::{self, S3Config};

use crate::exit;

/// A service started through the platform kit.
type Start = fn(CancellationToken) -> LocalBoxFuture<'static, Result<(), BoxError>>;

fn start<E: Entry + 'static>(
    stop: CancellationToken,
) -> LocalBoxFuture<'static, Result<(), BoxError>> {
    Box::pin(service::serve_from_env::<E>(stop))
}

/// Servers this binary can run: every service on the kit (stripe-sim, the
/// Stripe emulator, included), plus the S3 server, which is infrastructure
/// speaking S3's own protocol.
const SERVICES: &[(&str, Start)] = &[
    ("identity", start::<shopstream_identity::Server>),
    ("catalog", start::<shopstream_catalog::Server>),
    ("inventory", start::<shopstream_inventory::Server>),
    ("gateway", start::<shopstream_gateway::Server>),
    ("orders", start::<shopstream_orders::Server>),
    ("payments", start::<shopstream_payments::Server>),
    ("cdc", start::<shopstream_cdc::Server>),
    ("search", start::<shopstream_search::Server>),
    ("notifications", start::<shopstream_notifications::Server>),
    ("stripe-sim", start::<shopstream_stripe_sim::Server>),
    ("mail-sim", start::<shopstream_mail_sim::Server>),
    ("analytics", start::<shopstream_analytics::Server>),
    ("media", start::<shopstream_media::Server>),
    ("feed", start::<shopstream_feed::Server>),
    ("compliance", start::<shopstream_compliance::Server>),
    ("otel", start::<shopstream_runtime::otel::Server>),
];

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Which server: s3, otel (the trace collector), stripe-sim, mail-sim, identity, catalog, inventory, gateway, orders, payments, cdc, search, notifications, analytics, media, feed, compliance.
    name: String,
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<u8> {
    // Traces go to `SHOPSTREAM_OTLP_ENDPOINT` when it is set (`up` points
    // every service at its collector); the collector itself never exports,
    // or each export would produce spans to export.
    let otlp = std::env::var("SHOPSTREAM_OTLP_ENDPOINT")
        .ok()
        .filter(|v| !v.is_empty() && args.name != "otel");
    telemetry::init(
        &args.name,
        telemetry::LogFormat::from_env(),
        otlp.as_deref(),
    )?;
    if let Some((_, start)) = SERVICES.iter().find(|(n, _)| *n == args.name) {
        start(shutdown::on_signal())
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        return Ok(exit::OK);
    }
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
                notify: s3_server::parse_notify(&config::env_or("SHOPSTREAM_S3_NOTIFY", ""))?,
                worm: s3_server::parse_worm(&config::env_or("SHOPSTREAM_S3_WORM", "")),
                endpoints,
            };
            let listener = tokio::net::TcpListener::bind(addr).await?;
            s3_server::run(listener, cfg, shutdown::on_signal()).await?;
            Ok(exit::OK)
        }
        other => {
            let names: Vec<&str> = ["s3"]
                .into_iter()
                .chain(SERVICES.iter().map(|(n, _)| *n))
                .collect();
            eprintln!(
                "error: unknown server {other:?}; available: {}",
                names.join(", ")
            );
            Ok(2)
        }
    }
}
