//! Webhook signing in Stripe's scheme and asynchronous delivery with bounded
//! retries.
//!
//! `Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<payload>")>`.
//! Every attempt is signed afresh with the time of that attempt, as Stripe does.
//! Deliveries run concurrently (at most [`MAX_IN_FLIGHT`]), so, as with Stripe,
//! events may arrive out of order and receivers must be idempotent.

use std::{sync::Arc, time::Duration};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use shopstream_platform::clock::Clock;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

type HmacSha256 = Hmac<Sha256>;

/// Header carrying the signature.
pub const SIGNATURE_HEADER: &str = "stripe-signature";
/// Default tolerance of Stripe's libraries for the signed timestamp.
pub const DEFAULT_TOLERANCE_S: i64 = 300;
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

/// Why a signature header was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signature header has no valid timestamp")]
    MissingTimestamp,
    #[error("signature header has no v1 signature")]
    MissingSignature,
    #[error("no v1 signature matches the payload")]
    Mismatch,
    #[error("timestamp {timestamp_s} is more than {tolerance_s} s away from now ({now_s})")]
    OutsideTolerance {
        timestamp_s: i64,
        now_s: i64,
        tolerance_s: i64,
    },
}

fn mac(secret: &str, timestamp_s: i64, payload: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("hmac accepts any key");
    mac.update(timestamp_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    mac
}

/// The `Stripe-Signature` value for `payload` signed at `timestamp_s`.
pub fn sign(payload: &[u8], secret: &str, timestamp_s: i64) -> String {
    let sig = hex::encode(mac(secret, timestamp_s, payload).finalize().into_bytes());
    format!("t={timestamp_s},v1={sig}")
}

/// Verify a `Stripe-Signature` header the way Stripe's libraries do: any `v1`
/// entry may match (several appear while a secret is rolled), compared in
/// constant time; the timestamp must be within `tolerance_s` of `now_s`
/// (either direction, so a skewed future timestamp is refused too).
pub fn verify_signature(
    payload: &[u8],
    header: &str,
    secret: &str,
    tolerance_s: i64,
    now_s: i64,
) -> Result<(), SignatureError> {
    let mut timestamp_s = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        match item.trim().split_once('=') {
            Some(("t", v)) => timestamp_s = v.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.extend(hex::decode(v).ok()),
            _ => {}
        }
    }
    let timestamp_s = timestamp_s.ok_or(SignatureError::MissingTimestamp)?;
    if signatures.is_empty() {
        return Err(SignatureError::MissingSignature);
    }
    let expected = mac(secret, timestamp_s, payload);
    if !signatures
        .iter()
        .any(|s| expected.clone().verify_slice(s).is_ok())
    {
        return Err(SignatureError::Mismatch);
    }
    if (now_s - timestamp_s).abs() > tolerance_s {
        return Err(SignatureError::OutsideTolerance {
            timestamp_s,
            now_s,
            tolerance_s,
        });
    }
    Ok(())
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

    #[test]
    fn known_vector_matches_hmac_sha256_of_t_dot_payload() {
        // echo -n '12345.{}' | openssl dgst -sha256 -hmac 'whsec_test'
        let header = sign(b"{}", SECRET, 12345);
        assert_eq!(
            header,
            "t=12345,v1=f7d0d6f2476273381fa231a8ba13a821a0c87029e7b1bfae51e93d0240fb7c32"
        );
    }

    #[test]
    fn tampering_wrong_secret_and_stale_timestamps_are_rejected() {
        let payload = b"{\"a\":1}";
        let header = sign(payload, SECRET, 1_000);
        assert_eq!(
            verify_signature(b"{\"a\":2}", &header, SECRET, 300, 1_000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(payload, &header, "whsec_other", 300, 1_000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(payload, &header, SECRET, 300, 1_300),
            Ok(())
        );
        assert!(matches!(
            verify_signature(payload, &header, SECRET, 300, 1_301),
            Err(SignatureError::OutsideTolerance { .. })
        ));
        assert!(matches!(
            verify_signature(payload, &header, SECRET, 300, 699),
            Err(SignatureError::OutsideTolerance { .. })
        ));
    }

    #[test]
    fn header_shapes() {
        let payload = b"x";
        let good = sign(payload, SECRET, 50);
        let v1 = good.split_once(",v1=").unwrap().1;
        // several v1 entries (secret roll): one match is enough, order free
        let rolled = format!("v1={},t=50,v0=ignored,v1={v1}", "00".repeat(32));
        assert_eq!(verify_signature(payload, &rolled, SECRET, 10, 50), Ok(()));
        assert_eq!(
            verify_signature(payload, &format!("v1={v1}"), SECRET, 10, 50),
            Err(SignatureError::MissingTimestamp)
        );
        assert_eq!(
            verify_signature(payload, "t=50,v0=abc", SECRET, 10, 50),
            Err(SignatureError::MissingSignature)
        );
        assert_eq!(
            verify_signature(payload, "garbage", SECRET, 10, 50),
            Err(SignatureError::MissingTimestamp)
        );
    }
}
