//! Webhook signing in Stripe's scheme and asynchronous delivery with bounded
//! retries.
//!
//! `Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<payload>")>`.
//! Every attempt is signed afresh with the time of that attempt, as Stripe does.
//! Deliveries run concurrently (at most [`MAX_IN_FLIGHT`]), so, as with Stripe,
//! events may arrive out of order and receivers must be idempotent.

use std::{sync::Arc, time::Duration};

use shopstream_platform::clock::Clock;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

pub use shopstream_platform::stripe_signature::{
    DEFAULT_TOLERANCE_S, HEADER as SIGNATURE_HEADER, SignatureError, sign,
};
/// Attempts per delivery (the first one included).
pub const MAX_ATTEMPTS: u32 = 5;
/// Backoff before the second attempt; doubled each time up to [`MAX_BACKOFF_MS`].
pub const FIRST_BACKOFF_MS: u64 = 200;
pub const MAX_BACKOFF_MS: u64 = 5_000;
/// Deadline of one delivery attempt.
pub const ATTEMPT_TIMEOUT_MS: u64 = 5_000;
/// Deliveries waiting to start; more are dropped with a warning.
pub const QUEUE_CAPACITY: usize = 1_024;
/// Deliveries running at once.
pub const MAX_IN_FLIGHT: usize = 32;

/// Verify a `Stripe-Signature` header the way Stripe's libraries do (see
/// `shopstream_platform::stripe_signature::verify`).
pub fn verify_signature(
    payload: &[u8],
    header: &str,
    secret: &str,
    tolerance_s: i64,
    now_s: i64,
) -> Result<(), SignatureError> {
    shopstream_platform::stripe_signature::verify(payload, Some(header), secret, tolerance_s, now_s)
}

/// One event to POST to the endpoint.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub event_id: String,
    pub payload: Arc<str>,
    /// Wait this long before the first attempt (fault injection).
    pub delay: Duration,
}

/// Queue of deliveries; cheap to clone. Without an endpoint every delivery is
/// discarded.
#[derive(Clone, Debug)]
pub struct WebhookSender {
    tx: Option<mpsc::Sender<Delivery>>,
}

impl WebhookSender {
    /// A sender that delivers nothing (no endpoint configured).
    pub fn disabled() -> WebhookSender {
        WebhookSender { tx: None }
    }

    pub fn is_enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queue a delivery without waiting; a full queue drops it with a warning.
    pub fn enqueue(&self, delivery: Delivery) {
        if let Some(tx) = &self.tx
            && let Err(e) = tx.try_send(delivery)
        {
            tracing::warn!(error = %e, "webhook queue full, delivery dropped");
        }
    }
}

/// Start the delivery worker for `url`; it stops when `shutdown` is cancelled.
pub fn spawn_delivery(
    url: String,
    secret: String,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> anyhow::Result<WebhookSender> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(ATTEMPT_TIMEOUT_MS))
        .build()?;
    let (tx, mut rx) = mpsc::channel::<Delivery>(QUEUE_CAPACITY);
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let endpoint = Arc::new(Endpoint {
        url,
        secret,
        client,
        clock,
    });
    tokio::spawn(async move {
        loop {
            let delivery = tokio::select! {
                _ = shutdown.cancelled() => break,
                d = rx.recv() => match d { Some(d) => d, None => break },
            };
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                break;
            };
            let endpoint = endpoint.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = endpoint.deliver(delivery) => {}
                }
                drop(permit);
            });
        }
    });
    Ok(WebhookSender { tx: Some(tx) })
}

struct Endpoint {
    url: String,
    secret: String,
    client: reqwest::Client,
    clock: Arc<dyn Clock>,
}

impl Endpoint {
    #[tracing::instrument(skip_all, fields(event_id = %delivery.event_id))]
    async fn deliver(&self, delivery: Delivery) {
        if !delivery.delay.is_zero() {
            tokio::time::sleep(delivery.delay).await;
        }
        let mut backoff_ms = FIRST_BACKOFF_MS;
        for attempt in 1..=MAX_ATTEMPTS {
            let now_s = self.clock.now_ms().div_euclid(1000);
            let signature = sign(delivery.payload.as_bytes(), &self.secret, now_s);
            let result = self
                .client
                .post(&self.url)
                .header("content-type", "application/json; charset=utf-8")
                .header(SIGNATURE_HEADER, signature)
                .body(delivery.payload.to_string())
                .send()
                .await;
            match result {
                Ok(r) if r.status().is_success() => {
                    tracing::debug!(attempt, "webhook delivered");
                    return;
                }
                Ok(r) => tracing::info!(attempt, status = r.status().as_u16(), "webhook refused"),
                Err(e) => tracing::info!(attempt, error = %e, "webhook delivery failed"),
            }
            if attempt < MAX_ATTEMPTS {
                tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                backoff_ms = (backoff_ms * 2).min(MAX_BACKOFF_MS);
            }
        }
        tracing::warn!(attempts = MAX_ATTEMPTS, "webhook given up");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test";

    #[test]
    fn signature_round_trips() {
        let payload = br#"{"id":"evt_1","object":"event"}"#;
        let header = sign(payload, SECRET, 1_700_000_000);
        assert!(header.starts_with("t=1700000000,v1="));
        assert_eq!(header.len(), "t=1700000000,v1=".len() + 64);
        assert_eq!(
            verify_signature(payload, &header, SECRET, 300, 1_700_000_100),
            Ok(())
        );
    }
}
