//! mail-sim: an SMTP sink for local runs, labs and tests, as stripe-sim is
//! for Stripe. It keeps every message it accepts (under its state directory),
//! lists and shows them over HTTP (`GET /messages`, `GET /messages/{id}`;
//! `shopstream mail list|show`), deletes those sent to an address
//! (`DELETE /messages?to=ADDR`, a DSAR erasure; see [`api`]), and takes
//! injected faults at run time
//! (`/_sim/faults`): the next N messages refused with 421 (temporary), every
//! message refused with 550 (permanent), or a delay before each accept; and
//! the fault catalog's `email-provider-failing`: a share of messages refused
//! with 503.
//!
//! It runs on the service kit. It serves no gRPC: its second listener is the
//! SMTP one (`SHOPSTREAM_MAIL_SIM_SMTP_ADDR`, default its second port).

pub mod api;
pub mod smtp;
pub mod store;

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use shopstream_platform::{
    config::{ConfigError, ServiceConfig, env_or, env_parse},
    service::{Listeners, Service},
};
use tokio_util::sync::CancellationToken;

pub use smtp::Refusal;
pub use store::Store;

/// The catalog fault that refuses a share of messages.
const PROVIDER_FAILING: &str = "email-provider-failing";

/// Largest message accepted (the EHLO `SIZE` it announces).
pub const MAX_MESSAGE_BYTES: usize = 10 * 1024 * 1024;
/// Longest injectable delay.
pub const MAX_LATENCY_MS: u64 = 60_000;

#[derive(Debug, Clone)]
pub struct Config {
    /// Its HTTP address and, as the second listener, its SMTP address.
    pub service: ServiceConfig,
    /// Where messages are kept.
    pub dir: PathBuf,
    pub max_message_bytes: usize,
}

impl Config {
    /// `SHOPSTREAM_MAIL_SIM_HTTP_ADDR`, `SHOPSTREAM_MAIL_SIM_SMTP_ADDR`
    /// (default: mail-sim's two ports in `config::Ports`),
    /// `SHOPSTREAM_MAIL_SIM_DIR` (default `.shopstream/mail-sim/messages`).
    pub fn from_env() -> Result<Config, ConfigError> {
        let mut service = ServiceConfig::from_env("mail-sim")?;
        service.grpc_addr = env_parse("SHOPSTREAM_MAIL_SIM_SMTP_ADDR", service.grpc_addr)?;
        Ok(Config {
            service,
            dir: env_or("SHOPSTREAM_MAIL_SIM_DIR", ".shopstream/mail-sim/messages").into(),
            max_message_bytes: MAX_MESSAGE_BYTES,
        })
    }
}

shopstream_platform::service_entry! {
    /// mail-sim as `shopstream serve mail-sim` and the test kit start it
    /// (its "gRPC" listener is the SMTP one).
    Server { name: "mail-sim", grpc: true, config: Config, run: run }
}

/// The faults in force, changed at run time through `/_sim/faults`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSettings {
    /// Refuse the next N messages with 421 (a client should retry).
    #[serde(default)]
    pub temporary: u32,
    /// Refuse every message with 550 until cleared (retrying cannot help).
    #[serde(default)]
    pub permanent: bool,
    /// Wait this long before accepting each message (at most 60,000).
    #[serde(default)]
    pub latency_ms: u64,
}

/// [`FaultSettings`] shared by the SMTP sessions and the HTTP API.
#[derive(Debug, Default)]
pub struct Faults(Mutex<FaultSettings>);

impl Faults {
    pub fn get(&self) -> FaultSettings {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set(&self, f: FaultSettings) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = f;
    }

    /// Whether the message now starting (`MAIL FROM`) is refused; uses up a
    /// temporary refusal. The catalog's `email-provider-failing` refuses its
    /// share of messages too (a fresh draw per message).
    pub fn on_mail(&self) -> Option<Refusal> {
        let mut f = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if f.permanent {
            Some(Refusal::Permanent)
        } else if shopstream_platform::faults::roll(PROVIDER_FAILING, "mail-sim") {
            tracing::info!(fault = PROVIDER_FAILING, "message refused (503)");
            Some(Refusal::Unavailable)
        } else if f.temporary > 0 {
            f.temporary -= 1;
            Some(Refusal::Temporary)
        } else {
            None
        }
    }

    /// The injected delay before accepting a message.
    pub async fn delay(&self) {
        let ms = self.get().latency_ms;
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
}

/// Serve HTTP and SMTP until `shutdown`.
pub async fn run(
    cfg: Config,
    mut listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let smtp_listener = listeners
        .grpc
        .take()
        .ok_or_else(|| anyhow::anyhow!("mail-sim needs its SMTP listener"))?;
    tracing::info!(smtp = ?smtp_listener.local_addr().ok(), dir = %cfg.dir.display(), "mail-sim SMTP");
    let store = Store::open(&cfg.dir)?;
    let faults = Arc::new(Faults::default());
    let (smtp_store, smtp_faults) = (store.clone(), faults.clone());
    let max = cfg.max_message_bytes;
    Service::new(&cfg.service)
        .http(api::routes(store, faults))
        .worker("smtp", move |stop| {
            smtp::serve(smtp_listener, smtp_store, smtp_faults, max, stop)
        })
        .run(listeners, shutdown)
        .await?;
    Ok(())
}
