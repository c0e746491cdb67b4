//! Gateway configuration (`SHOPSTREAM_*`, defaults for the native runtime).

use std::time::Duration;

use shopstream_platform::config::{self, ConfigError, ServiceConfig, env_or, env_parse};

#[derive(Debug, Clone)]
pub struct Config {
    pub service: ServiceConfig,
    /// Identity's REST base (auth routes are forwarded there; JWKS comes from it).
    pub identity_http: String,
    /// Catalog's gRPC endpoint (public reads).
    pub catalog_grpc: String,
    /// Catalog's REST base (admin writes are forwarded there after the role check).
    pub catalog_http: String,
    /// Inventory's gRPC endpoint (reservations, stock).
    pub inventory_grpc: String,
    /// Orders' gRPC endpoint (checkout).
    pub orders_grpc: String,
    /// Payments' gRPC endpoint (refunds, payment reads).
    pub payments_grpc: String,
    /// Search's gRPC endpoint (product search and typeahead).
    pub search_grpc: String,
    /// Payments' REST base (the Stripe webhook is forwarded there byte for byte).
    pub payments_http: String,
    /// Deadline of every upstream call.
    pub upstream_timeout: Duration,
    /// How long a product card stays in Redis.
    pub card_ttl_s: u64,
}

fn url_of(name: &str, http: bool) -> String {
    let (h, g) = config::default_service_addrs(name).unwrap_or_else(|| {
        let a = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        (a, a)
    });
    format!("http://{}", if http { h } else { g })
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        let (http, grpc) = config::default_service_addrs("gateway").unwrap_or_else(|| {
            let a = std::net::SocketAddr::from(([127, 0, 0, 1], 18080));
            (a, a)
        });
        Ok(Config {
            service: ServiceConfig::from_env("gateway", http, grpc)?,
            identity_http: env_or("SHOPSTREAM_IDENTITY_URL", &url_of("identity", true)),
            catalog_grpc: env_or("SHOPSTREAM_CATALOG_GRPC_URL", &url_of("catalog", false)),
            catalog_http: env_or("SHOPSTREAM_CATALOG_URL", &url_of("catalog", true)),
            inventory_grpc: env_or("SHOPSTREAM_INVENTORY_GRPC_URL", &url_of("inventory", false)),
            orders_grpc: env_or("SHOPSTREAM_ORDERS_GRPC_URL", &url_of("orders", false)),
            payments_grpc: env_or("SHOPSTREAM_PAYMENTS_GRPC_URL", &url_of("payments", false)),
            search_grpc: env_or("SHOPSTREAM_SEARCH_GRPC_URL", &url_of("search", false)),
            payments_http: env_or("SHOPSTREAM_PAYMENTS_URL", &url_of("payments", true)),
            upstream_timeout: Duration::from_millis(env_parse(
                "SHOPSTREAM_UPSTREAM_TIMEOUT_MS",
                3_000,
            )?),
            card_ttl_s: env_parse("SHOPSTREAM_CARD_TTL_S", 30)?,
        })
    }
}
