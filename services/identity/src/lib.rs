//! Identity: users with argon2id passwords, EdDSA-signed access tokens (≤ 15
//! min), opaque refresh tokens rotated on every use in families with reuse
//! detection, login rate limits, cookies for browsers and bearer tokens for
//! scripts. `run` serves REST and gRPC (with the DSAR participant, `dsar`)
//! until shutdown.

pub mod adapters;
pub mod api;
pub mod config;
pub mod domain;
pub mod dsar;
pub mod ports;
pub mod service;

use std::sync::Arc;

use shopstream_platform::{
    cache,
    clock::SystemClock,
    db,
    ids::SystemIdGen,
    service::{Listeners, Service},
};
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use service::Identity;

use crate::adapters::{keys::Signer, postgres::PgIdentity, ratelimit::RedisRateLimiter};

/// The Redis key prefix of the login limiter's counters.
pub fn login_limiter_prefix(cfg: &Config) -> String {
    format!("identity:login:{}", cfg.database)
}

/// Connect to Postgres (migrated) and Redis and build the use cases.
pub async fn build(cfg: &Config) -> anyhow::Result<(Identity, sqlx::PgPool)> {
    let e = &cfg.service.endpoints;
    let pool = db::connect(&e.postgres_url, &cfg.database).await?;
    db::migrate(&pool, &adapters::postgres::MIGRATOR).await?;
    let redis = cache::connect(&e.redis_url).await?;
    let store = PgIdentity::new(pool.clone());
    let identity = Identity {
        users: Arc::new(store.clone()),
        tokens: Arc::new(store),
        login_limiter: Arc::new(RedisRateLimiter::new(
            redis,
            &login_limiter_prefix(cfg),
            cfg.login_limit,
            cfg.login_window_s,
        )),
        signer: Arc::new(Signer::load_or_generate(&cfg.key_dir)?),
        clock: Arc::new(SystemClock),
        ids: Arc::new(SystemIdGen),
    };
    Ok((identity, pool))
}

shopstream_platform::service_entry! {
    /// Identity as `shopstream serve identity` and the test kit start it.
    Server { name: "identity", grpc: true, config: Config, run: run }
}

/// Serve REST and gRPC until `shutdown` (see [`Service::run`]).
pub async fn run(
    cfg: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (identity, pool) = build(&cfg).await?;
    let default_tenant = cfg.service.default_tenant.clone();
    let participant = Arc::new(
        dsar::IdentityParticipant::new(pool.clone()).with_login_counters(
            cache::connect(&cfg.service.endpoints.redis_url).await?,
            &login_limiter_prefix(&cfg),
        ),
    );
    Service::new(&cfg.service)
        .check_postgres("postgres", pool)
        .http(api::http::routes(api::http::HttpState {
            identity: identity.clone(),
            default_tenant: default_tenant.clone(),
            cookie_secure: cfg.cookie_secure,
        }))
        .grpc(
            shopstream_proto::identity::v1::identity_service_server::IdentityServiceServer::new(
                api::grpc::GrpcApi {
                    identity,
                    default_tenant: default_tenant.clone(),
                },
            ),
        )
        .grpc(shopstream_dsar::server(participant, &default_tenant))
        .run(listeners, shutdown)
        .await?;
    Ok(())
}
