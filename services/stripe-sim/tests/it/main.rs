//! stripe-sim end to end: started by the test kit (`spawn_service`) on a
//! port-0 listener, a webhook receiver on another, and requests over HTTP as
//! the payments service will send them.

mod faults;
mod idempotency;
mod intents;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Bytes, extract::State, http::HeaderMap, routing::post};
use reqwest::StatusCode;
use serde_json::Value;
use shopstream_runtime::testkit;
use shopstream_stripe_sim::{Config, Server, verify_signature};
use tokio_util::sync::CancellationToken;

pub const KEY: &str = "sk_test_shopstream";
pub const WEBHOOK_SECRET: &str = "whsec_shopstream";

/// One webhook request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub signature: String,
    pub payload: Bytes,
    pub event: Value,
}

/// A running simulator with its own webhook receiver.
pub struct Sim {
    pub base: String,
    pub client: reqwest::Client,
    pub received: Arc<Mutex<Vec<Received>>>,
    /// Stops the webhook receiver.
    shutdown: CancellationToken,
    _service: testkit::RunningService,
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A response: status, headers, JSON body.
pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub json: Value,
}

async fn receive(
    State(got): State<Arc<Mutex<Vec<Received>>>>,
    headers: HeaderMap,
    body: Bytes,
) -> &'static str {
    let event = serde_json::from_slice(&body).unwrap_or(Value::Null);
    got.lock().unwrap().push(Received {
        signature: headers
            .get("stripe-signature")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        payload: body,
        event,
    });
    "ok"
}

pub async fn start() -> Sim {
    let shutdown = CancellationToken::new();
    let received = Arc::new(Mutex::new(Vec::new()));
    let hook_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = hook_l.local_addr().unwrap();
    let hook_app = Router::new()
        .route("/hook", post(receive))
        .with_state(received.clone());
    let hook_shutdown = shutdown.clone();
    tokio::spawn(async move {
        axum::serve(hook_l, hook_app)
            .with_graceful_shutdown(async move { hook_shutdown.cancelled().await })
            .await
            .unwrap();
    });

    let service = testkit::spawn_service::<Server>(|service| Config {
        service,
        webhook_url: Some(format!("http://{hook_addr}/hook")),
        ..Config::default()
    })
    .await;
    Sim {
        base: service.http.clone(),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
        received,
        shutdown,
        _service: service,
    }
}

/// Poll `check` until it holds, failing after a deadline (the shared test-kit loop).
pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    shopstream_runtime::testkit::eventually(what, Duration::from_secs(10), || {
        let fut = check();
        async move { fut.await.then_some(()) }
    })
    .await
}

pub fn encode(params: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        s.append_pair(k, v);
    }
    s.finish()
}

async fn into_resp(r: reqwest::Response) -> Resp {
    let status = r.status();
    let headers = r.headers().clone();
    let json = r.json().await.unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        json,
    }
}

impl Sim {
    pub async fn post(
        &self,
        path: &str,
        params: &[(&str, &str)],
        idempotency_key: Option<&str>,
    ) -> Resp {
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(KEY)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("stripe-version", "2025-03-31.basil")
            .body(encode(params));
        if let Some(k) = idempotency_key {
            req = req.header("idempotency-key", k);
        }
        into_resp(req.send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        into_resp(
            self.client
                .get(format!("{}{path}", self.base))
                .bearer_auth(KEY)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Resp {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        into_resp(req.send().await.unwrap()).await
    }

    /// A manual-capture intent confirmed with `pm_card_visa`: `requires_capture`.
    pub async fn authorized_intent(&self, amount: &str) -> String {
        let r = self
            .post(
                "/v1/payment_intents",
                &[
                    ("amount", amount),
                    ("currency", "usd"),
                    ("payment_method", "pm_card_visa"),
                    ("capture_method", "manual"),
                    ("confirm", "true"),
                ],
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.json);
        assert_eq!(r.json["status"], "requires_capture");
        r.json["id"].as_str().unwrap().to_string()
    }

    /// Webhooks received so far for events of `event_type` about `object_id`.
    pub fn webhooks_for(&self, event_type: &str, object_id: &str) -> Vec<Received> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| {
                r.event["type"] == event_type
                    && (r.event["data"]["object"]["id"] == object_id
                        || r.event["data"]["object"]["payment_intent"] == object_id)
            })
            .cloned()
            .collect()
    }

    /// Wait for at least `n` webhooks of `event_type` about `object_id`.
    pub async fn wait_webhooks(
        &self,
        event_type: &str,
        object_id: &str,
        n: usize,
    ) -> Vec<Received> {
        wait_until(&format!("{n} x {event_type} for {object_id}"), || async {
            self.webhooks_for(event_type, object_id).len() >= n
        })
        .await;
        self.webhooks_for(event_type, object_id)
    }
}

/// The signature of a received webhook verifies with the endpoint secret.
pub fn assert_signed(r: &Received) {
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    verify_signature(&r.payload, &r.signature, WEBHOOK_SECRET, 300, now_s)
        .unwrap_or_else(|e| panic!("signature {:?} does not verify: {e}", r.signature));
    assert!(
        verify_signature(&r.payload, &r.signature, "whsec_wrong", 300, now_s).is_err(),
        "a wrong secret must not verify"
    );
}
