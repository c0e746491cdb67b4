//! Payments end to end on the real test stack (Postgres, Kafka) against a
//! stripe-sim from the test kit whose webhooks point at the in-process payments
//! HTTP listener: idempotent creation, declines, the capture/refund/cancel
//! flows, webhooks (signature, dedupe), the reconciler after a lost response
//! and a dropped webhook, and the event on `payment.events`.

mod flows;
mod healing;
mod store;

use std::time::Duration;

use serde_json::Value;
use shopstream_payments::{Config, Payments};
use shopstream_platform::{config::ServiceConfig, service::Listeners};
use shopstream_proto::{
    common::v1::Money,
    payments::v1::{CreateIntentRequest, Payment, payments_service_client::PaymentsServiceClient},
};
use shopstream_runtime::testkit;
use tonic::transport::Channel;

pub const WEBHOOK_SECRET: &str = "whsec_shopstream";

/// stripe-sim and payments, running; dropped = stopped.
pub struct App {
    pub grpc: PaymentsServiceClient<Channel>,
    pub payments_http: String,
    pub sim: String,
    pub http: reqwest::Client,
    /// The use cases on the same database (for `reconcile_once`, reads).
    pub payments: Payments,
    pub pool: sqlx::PgPool,
    _service: testkit::RunningService,
    _sim: testkit::RunningService,
}

pub async fn spawn_app() -> App {
    let stack = testkit::stack().await;
    let listeners = Listeners::ephemeral(true).await.unwrap();
    let http_addr = listeners.http_addr().unwrap();

    let sim = testkit::spawn_service::<shopstream_stripe_sim::Server>(|service| {
        shopstream_stripe_sim::Config {
            service,
            webhook_url: Some(format!("http://{http_addr}/webhooks/stripe")),
            ..Default::default()
        }
    })
    .await;
    let sim_addr = sim.http_addr;

    let database = testkit::unique("it_payments");
    let cfg = |mut service: ServiceConfig| {
        service.body_limit_bytes = 256 * 1024;
        Config {
            service,
            database: database.clone(),
            stripe_api_base: format!("http://{sim_addr}"),
            stripe_secret_key: "sk_test_shopstream".into(),
            stripe_webhook_secret: WEBHOOK_SECRET.into(),
            stripe_timeout: Duration::from_secs(5),
            // Tests drive the reconciler themselves.
            reconcile_interval: Duration::from_secs(3600),
            reconcile_min_age: Duration::ZERO,
        }
    };
    let (payments, pool) = shopstream_payments::build(&cfg(ServiceConfig::new(
        "payments",
        stack.endpoints.clone(),
    )))
    .await
    .unwrap();
    let service = testkit::spawn_service_on::<shopstream_payments::Server>(listeners, cfg).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let grpc = PaymentsServiceClient::connect(service.grpc_url())
        .await
        .unwrap();
    App {
        grpc,
        payments_http: format!("http://{http_addr}"),
        sim: format!("http://{sim_addr}"),
        http,
        payments,
        pool,
        _service: service,
        _sim: sim,
    }
}

pub fn eur(amount_minor: i64) -> Option<Money> {
    Some(Money {
        amount_minor,
        currency: "EUR".into(),
    })
}

impl App {
    pub async fn create(&mut self, order_id: &str, amount: i64, card: &str) -> Payment {
        self.grpc
            .create_intent(CreateIntentRequest {
                idempotency_key: format!("order:{order_id}:create"),
                order_id: order_id.into(),
                amount: eur(amount),
                payment_method_token: card.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .payment
            .unwrap()
    }

    /// How many webhook deliveries payments answered with `outcome`
    /// (`shopstream_payments_webhooks_total` on /metrics).
    pub async fn webhook_answers(&self, outcome: &str) -> i64 {
        let label = format!("outcome=\"{outcome}\"");
        testkit::metric(
            &self.payments_http,
            "shopstream_payments_webhooks_total",
            &[&label],
        )
        .await as i64
    }

    /// Every intent stripe-sim holds.
    pub async fn sim_intents(&self) -> Vec<Value> {
        let v = testkit::get_json(&self.http, &format!("{}/_sim/payment_intents", self.sim)).await;
        v["data"].as_array().cloned().unwrap_or_default()
    }

    pub async fn set_faults(&self, faults: Value) {
        let r = self
            .http
            .post(format!("{}/_sim/faults", self.sim))
            .json(&faults)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{:?}", r.text().await);
    }

    /// The statuses of the events enqueued for `order_id`, oldest first.
    pub async fn outbox_statuses(&self, order_id: &str) -> Vec<String> {
        let rows: Vec<Vec<u8>> =
            sqlx::query_scalar("SELECT payload FROM event_outbox WHERE key = $1 ORDER BY seq")
                .bind(order_id)
                .fetch_all(&self.pool)
                .await
                .unwrap();
        rows.iter()
            .map(|p| {
                let v: Value = serde_json::from_slice(p).unwrap();
                v["status"].as_str().unwrap_or_default().to_string()
            })
            .collect()
    }

    /// POST a webhook body with the given signature header.
    pub async fn post_webhook(&self, body: &str, signature: Option<&str>) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{}/webhooks/stripe", self.payments_http))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(s) = signature {
            req = req.header("stripe-signature", s);
        }
        req.send().await.unwrap()
    }
}
