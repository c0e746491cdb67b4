//! payments' `Provider` port speaking stripe-sim's real HTTP API (form
//! bodies, `Idempotency-Key`, Stripe-shaped errors) over turmoil. It stands
//! in for `adapters::stripe` (async-stripe's hyper client cannot dial turmoil
//! streams) and maps answers exactly as that adapter's `map_error` does.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::Full;
use serde_json::Value;
use shopstream_payments::{
    adapters::stripe::{METADATA_ORDER_ID, METADATA_PAYMENT_ID, METADATA_TENANT_ID},
    domain::IntentState,
    ports::{Intent, NewIntent, Provider, ProviderError, RefundMade},
};

use crate::net;

pub struct StripeHttp {
    pub host: &'static str,
    pub secret_key: String,
    pub timeout: Duration,
    /// Bug zoo `authorize-no-key`: every create sends a fresh key.
    pub fresh_create_keys: bool,
    fresh: AtomicU64,
}

impl StripeHttp {
    pub fn new(host: &'static str, secret_key: &str, timeout: Duration) -> StripeHttp {
        StripeHttp {
            host,
            secret_key: secret_key.to_string(),
            timeout,
            fresh_create_keys: false,
            fresh: AtomicU64::new(0),
        }
    }

    async fn call(
        &self,
        method: http::Method,
        path: &str,
        key: Option<&str>,
        form: &[(&str, String)],
    ) -> Result<Value, ProviderError> {
        let body = encode(form);
        let mut b = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.host)
            .header("authorization", format!("Bearer {}", self.secret_key))
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(k) = key {
            b = b.header("idempotency-key", k);
        }
        let req = b
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ProviderError::Unavailable(format!("request: {e}")))?;
        let (status, bytes) = net::http(self.host, net::HTTP_PORT, req, self.timeout)
            .await
            .map_err(ProviderError::Unavailable)?;
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ProviderError::Unavailable(format!("unreadable stripe answer: {e}")))?;
        if status.is_success() {
            return Ok(v);
        }
        let err = &v["error"];
        let code = err["code"]
            .as_str()
            .or(err["decline_code"].as_str())
            .or(err["type"].as_str())
            .unwrap_or("unknown")
            .to_string();
        Err(shopstream_payments::adapters::stripe::classify(
            status.as_u16(),
            err["type"] == "card_error",
            code,
            err["message"].as_str().unwrap_or_default().to_string(),
            err["payment_intent"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        ))
    }
}

fn encode(form: &[(&str, String)]) -> String {
    fn enc(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }
    form.iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn intent(v: &Value) -> Intent {
    Intent {
        provider_ref: v["id"].as_str().unwrap_or_default().to_string(),
        state: IntentState::from_stripe(v["status"].as_str().unwrap_or_default()),
        amount_minor: v["amount"].as_i64().unwrap_or_default(),
        captured_minor: v["amount_received"].as_i64().unwrap_or_default(),
        client_secret: v["client_secret"].as_str().unwrap_or_default().to_string(),
    }
}

#[async_trait]
impl Provider for StripeHttp {
    async fn create_intent(&self, req: NewIntent<'_>) -> Result<Intent, ProviderError> {
        let form = [
            ("amount", req.amount_minor.to_string()),
            ("currency", req.currency.to_ascii_lowercase()),
            ("capture_method", "manual".into()),
            ("confirm", "true".into()),
            ("payment_method", req.payment_method.to_string()),
            (
                &*format!("metadata[{METADATA_ORDER_ID}]"),
                req.order_id.to_string(),
            ),
            (
                &*format!("metadata[{METADATA_TENANT_ID}]"),
                req.tenant_id.to_string(),
            ),
            (
                &*format!("metadata[{METADATA_PAYMENT_ID}]"),
                req.payment_id.to_string(),
            ),
        ];
        let fresh = format!("fresh-{}", self.fresh.fetch_add(1, Ordering::SeqCst));
        let key = if self.fresh_create_keys {
            fresh.as_str()
        } else {
            req.idempotency_key
        };
        let v = self
            .call(http::Method::POST, "/v1/payment_intents", Some(key), &form)
            .await?;
        Ok(intent(&v))
    }

    async fn capture(
        &self,
        idempotency_key: &str,
        provider_ref: &str,
        amount_minor: Option<i64>,
    ) -> Result<Intent, ProviderError> {
        let form: Vec<(&str, String)> = amount_minor
            .map(|a| ("amount_to_capture", a.to_string()))
            .into_iter()
            .collect();
        let v = self
            .call(
                http::Method::POST,
                &format!("/v1/payment_intents/{provider_ref}/capture"),
                Some(idempotency_key),
                &form,
            )
            .await?;
        Ok(intent(&v))
    }

    async fn cancel(
        &self,
        idempotency_key: &str,
        provider_ref: &str,
    ) -> Result<Intent, ProviderError> {
        let v = self
            .call(
                http::Method::POST,
                &format!("/v1/payment_intents/{provider_ref}/cancel"),
                Some(idempotency_key),
                &[],
            )
            .await?;
        Ok(intent(&v))
    }

    async fn refund(
        &self,
        idempotency_key: &str,
        provider_ref: &str,
        amount_minor: i64,
        reason: &str,
    ) -> Result<RefundMade, ProviderError> {
        let mut form = vec![
            ("payment_intent", provider_ref.to_string()),
            ("amount", amount_minor.to_string()),
        ];
        if !reason.is_empty() {
            form.push(("metadata[reason]", reason.to_string()));
        }
        let v = self
            .call(
                http::Method::POST,
                "/v1/refunds",
                Some(idempotency_key),
                &form,
            )
            .await?;
        Ok(RefundMade {
            refund_id: v["id"].as_str().unwrap_or_default().to_string(),
            amount_minor: v["amount"].as_i64().unwrap_or_default(),
        })
    }

    async fn retrieve(&self, provider_ref: &str) -> Result<Intent, ProviderError> {
        let v = self
            .call(
                http::Method::GET,
                &format!("/v1/payment_intents/{provider_ref}"),
                None,
                &[],
            )
            .await?;
        Ok(intent(&v))
    }
}
