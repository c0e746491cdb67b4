//! Gateway configuration (`SHOPSTREAM_*`, defaults for the native runtime).

use std::{sync::Arc, time::Duration};

use crate::live::Limits;
use shopstream_platform::clock::{Clock, SystemClock};
use shopstream_platform::config::{
    ConfigError, ServiceConfig, env_parse, grpc_url_of, http_url_of,
};

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
    /// Analytics' gRPC address (`GET /admin/stats/daily`).
    pub analytics_grpc: String,
    pub media_grpc: String,
    pub feed_grpc: String,
    /// Compliance's gRPC address (`/admin/dsar`).
    pub compliance_grpc: String,
    /// Payments' REST base (the Stripe webhook is forwarded there byte for byte).
    pub payments_http: String,
    /// Deadline of every upstream call.
    pub upstream_timeout: Duration,
    /// How long a product (and so its card) stays in Redis: the bound on a
    /// stale picture; edits invalidate it at once (see `product_cache`).
    pub card_ttl_s: u64,
    /// The topic whose records invalidate cached products (`product.events`).
    pub product_topic: String,
    /// The topic whose ready pictures invalidate cached products (`media.events`).
    pub media_topic: String,
    /// The consumer group of that invalidation (shared by all gateways).
    pub cache_group: String,
    /// Limits on live connections (WebSocket, SSE, long-poll).
    pub live: Limits,
    /// Analytics events buffered for `analytics.raw` before new ones are dropped.
    pub analytics_buffer: usize,
    /// Every read of the time (token expiry, live sockets' deadlines).
    pub clock: TimeSource,
}

/// The gateway's [`Clock`]: the system clock, unless a test sets another.
#[derive(Clone)]
pub struct TimeSource(pub Arc<dyn Clock>);

impl Default for TimeSource {
    fn default() -> Self {
        TimeSource(Arc::new(SystemClock))
    }
}

impl std::fmt::Debug for TimeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TimeSource")
    }
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Ok(Config {
            service: ServiceConfig::from_env("gateway")?,
            identity_http: http_url_of("identity", "SHOPSTREAM_IDENTITY_URL")?,
            catalog_grpc: grpc_url_of("catalog", "SHOPSTREAM_CATALOG_GRPC_URL")?,
            catalog_http: http_url_of("catalog", "SHOPSTREAM_CATALOG_URL")?,
            inventory_grpc: grpc_url_of("inventory", "SHOPSTREAM_INVENTORY_GRPC_URL")?,
            orders_grpc: grpc_url_of("orders", "SHOPSTREAM_ORDERS_GRPC_URL")?,
            payments_grpc: grpc_url_of("payments", "SHOPSTREAM_PAYMENTS_GRPC_URL")?,
            search_grpc: grpc_url_of("search", "SHOPSTREAM_SEARCH_GRPC_URL")?,
            analytics_grpc: grpc_url_of("analytics", "SHOPSTREAM_ANALYTICS_GRPC_URL")?,
            media_grpc: grpc_url_of("media", "SHOPSTREAM_MEDIA_GRPC_URL")?,
            feed_grpc: grpc_url_of("feed", "SHOPSTREAM_FEED_GRPC_URL")?,
            compliance_grpc: grpc_url_of("compliance", "SHOPSTREAM_COMPLIANCE_GRPC_URL")?,
            payments_http: http_url_of("payments", "SHOPSTREAM_PAYMENTS_URL")?,
            upstream_timeout: Duration::from_millis(env_parse(
                "SHOPSTREAM_UPSTREAM_TIMEOUT_MS",
                3_000,
            )?),
            card_ttl_s: env_parse("SHOPSTREAM_CARD_TTL_S", 30)?,
            product_topic: "product.events".into(),
            media_topic: "media.events".into(),
            cache_group: crate::product_cache::GROUP.into(),
            live: Limits {
                per_user: env_parse("SHOPSTREAM_LIVE_PER_USER", Limits::PER_USER)?,
                per_gateway: env_parse("SHOPSTREAM_LIVE_PER_GATEWAY", Limits::PER_GATEWAY)?,
                subscriptions: env_parse("SHOPSTREAM_LIVE_SUBSCRIPTIONS", Limits::SUBSCRIPTIONS)?,
                max_frame: env_parse("SHOPSTREAM_LIVE_MAX_FRAME_BYTES", Limits::MAX_FRAME)?,
                queue: env_parse("SHOPSTREAM_LIVE_QUEUE", Limits::QUEUE)?,
                idle: Duration::from_secs(env_parse(
                    "SHOPSTREAM_LIVE_IDLE_S",
                    Limits::IDLE.as_secs(),
                )?),
            },
            analytics_buffer: env_parse("SHOPSTREAM_ANALYTICS_BUFFER", crate::analytics::BUFFER)?,
            clock: TimeSource::default(),
        })
    }
}
