//! stripe-sim: a stateful emulator of the Stripe API subset Shopstream uses —
//! payment intents (manual and automatic capture, test-card declines),
//! refunds, events and signed webhooks, with Stripe's idempotency keys — plus
//! fault injection under `/_sim/` for labs and chaos tests.
//!
//! It runs on the service kit like every service, but its `/v1` and `/_sim`
//! routes answer Stripe-shaped JSON and errors, so they are the kit's raw
//! routes, outside the platform's problem+json layer; `/healthz`, `/readyz`,
//! `/metrics` and unmatched paths come from the kit.

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
    ids::{IdGen, SystemIdGen},
    service::{Listeners, Service},
};
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use webhooks::{SignatureError, sign, verify_signature};

/// The Stripe routes (`/v1`) and the admin routes (`/_sim`). Webhook
/// deliveries stop when `shutdown` is cancelled.
pub fn routes(
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
    Ok(api::http::routes(state).layer(DefaultBodyLimit::max(cfg.body_limit_bytes)))
}

shopstream_platform::service_entry! {
    /// stripe-sim as `shopstream serve stripe-sim` and the test kit start it.
    Server { name: "stripe-sim", grpc: false, config: Config, run: run }
}

/// Serve until `shutdown`, with the system clock and ids.
pub async fn run(
    cfg: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    run_with(
        cfg,
        listeners,
        shutdown,
        Arc::new(SystemClock),
        Arc::new(SystemIdGen),
    )
    .await
}

/// [`run`] with the clock and id generator given (tests, simulations).
pub async fn run_with(
    cfg: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGen>,
) -> anyhow::Result<()> {
    let stripe = routes(&cfg, clock, ids, shutdown.clone())?;
    tracing::info!(
        webhook_url = cfg.webhook_url.as_deref().unwrap_or("none"),
        "stripe-sim delivers webhooks"
    );
    Service::new(&cfg.service)
        .raw_http(stripe)
        .run(listeners, shutdown)
        .await?;
    Ok(())
}
