//! stripe-sim: a stateful emulator of the Stripe API subset Shopstream uses —
//! payment intents (manual and automatic capture, test-card declines),
//! refunds, events and signed webhooks, with Stripe's idempotency keys — plus
//! fault injection under `/_sim/` for labs and chaos tests.
//!
//! `/v1` routes answer Stripe-shaped JSON and errors, so they sit outside the
//! platform's problem+json layer; `/healthz`, `/readyz`, `/metrics` and
//! unmatched paths come from [`shopstream_platform::http::router`].

pub mod api;
pub mod config;
pub mod domain;
pub mod error;
pub mod faults;
pub mod form;
pub mod objects;
pub mod state;
pub mod webhooks;

use std::sync::{Arc, Mutex};

use axum::{Router, extract::DefaultBodyLimit};
use secrecy::ExposeSecret;
use shopstream_platform::{
    clock::{Clock, SystemClock},
    http,
    ids::{IdGen, SystemIdGen},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use webhooks::{SignatureError, sign, verify_signature};

/// The full router: Stripe routes, admin routes and the platform's ops
/// endpoints. Webhook deliveries stop when `shutdown` is cancelled.
pub fn app(
    cfg: &Config,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGen>,
    shutdown: CancellationToken,
) -> anyhow::Result<Router> {
    let webhooks = match &cfg.webhook_url {
        Some(url) => webhooks::spawn_delivery(
            url.clone(),
            cfg.webhook_secret.expose_secret().to_string(),
            clock.clone(),
            shutdown,
        )?,
        None => webhooks::WebhookSender::disabled(),
    };
    let state = api::http::HttpState {
        sim: Arc::new(Mutex::new(state::StripeState::new(clock, ids, webhooks))),
        secret_key: cfg.secret_key.clone(),
    };
    let mut ops = http::Ops::new("stripe-sim");
    ops.body_limit_bytes = cfg.body_limit_bytes;
    let platform = http::router(Router::new(), ops);
    Ok(api::http::routes(state)
        .layer(DefaultBodyLimit::max(cfg.body_limit_bytes))
        .fallback_service(platform))
}

/// Serve on `listener` until `shutdown`, with the system clock and ids.
pub async fn run(
    cfg: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    run_with(
        cfg,
        listener,
        shutdown,
        Arc::new(SystemClock),
        Arc::new(SystemIdGen),
    )
    .await
}

/// [`run`] with the clock and id generator given (tests, simulations).
pub async fn run_with(
    cfg: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGen>,
) -> anyhow::Result<()> {
    let router = app(&cfg, clock, ids, shutdown.clone())?;
    tracing::info!(
        addr = %listener.local_addr()?,
        webhook_url = cfg.webhook_url.as_deref().unwrap_or("none"),
        "stripe-sim serving"
    );
    http::serve(listener, router, shutdown).await?;
    Ok(())
}
