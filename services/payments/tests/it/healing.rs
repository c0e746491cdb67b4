//! Webhooks (signature, dedupe), the reconciler after a lost response and a
//! dropped webhook, and the event on Kafka.

use std::time::Duration;

use serde_json::json;
use shopstream_payments::{PaymentStatusChanged, TOPIC};
use shopstream_platform::{
    clock::{Clock, SystemClock},
    events::{
        EventBus,
        kafka::{KafkaBus, KafkaSettings},
    },
};
use shopstream_proto::payments::v1::{
    CaptureRequest, GetPaymentRequest, Payment, PaymentStatus, get_payment_request::By,
};
use shopstream_runtime::testkit;
use shopstream_stripe_sim::sign;

use crate::{App, WEBHOOK_SECRET, spawn_app};

async fn get(app: &mut App, payment_id: &str) -> Payment {
    app.grpc
        .get_payment(GetPaymentRequest {
            by: Some(By::PaymentId(payment_id.into())),
        })
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap()
}

/// A `payment_intent.succeeded` event for `p`, as Stripe would send it.
fn succeeded_event(event_id: &str, p: &Payment) -> String {
    json!({
        "id": event_id,
        "object": "event",
        "type": "payment_intent.succeeded",
        "created": 1,
        "data": { "object": {
            "id": p.provider_ref,
            "object": "payment_intent",
            "status": "succeeded",
            "amount": p.amount.as_ref().unwrap().amount_minor,
            "amount_received": p.amount.as_ref().unwrap().amount_minor,
            "metadata": { "order_id": p.order_id, "tenant_id": "default", "payment_id": p.payment_id },
        }},
    })
    .to_string()
}

fn now_s() -> i64 {
    SystemClock.now_ms() / 1000
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_with_a_bad_signature_is_refused_and_changes_nothing() {
    let mut app = spawn_app().await;
    let o = testkit::unique("order");
    let p = app.create(&o, 1_200, "pm_card_visa").await;
    let body = succeeded_event(&testkit::unique("evt"), &p);
    for sig in [
        None,
        Some("t=1,v1=deadbeef".to_string()),
        Some(sign(body.as_bytes(), "whsec_wrong", now_s())),
        Some(sign(body.as_bytes(), WEBHOOK_SECRET, now_s() - 3_600)),
    ] {
        let r = app.post_webhook(&body, sig.as_deref()).await;
        assert_eq!(r.status(), 400, "{sig:?}");
        assert_eq!(
            r.headers()["content-type"].to_str().unwrap(),
            "application/problem+json"
        );
    }
    let after = get(&mut app, &p.payment_id).await;
    assert_eq!(after.status, PaymentStatus::Authorized as i32);
    assert_eq!(after.updated_at_ms, p.updated_at_ms);
    assert_eq!(app.outbox_statuses(&o).await, ["authorized"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_duplicate_webhook_delivery_is_a_no_op() {
    let mut app = spawn_app().await;
    let o = testkit::unique("order");
    let p = app.create(&o, 900, "pm_card_visa").await;
    let body = succeeded_event(&testkit::unique("evt"), &p);
    let first = app
        .post_webhook(&body, Some(&sign(body.as_bytes(), WEBHOOK_SECRET, now_s())))
        .await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.text().await.unwrap(), "applied");
    let second = app
        .post_webhook(&body, Some(&sign(body.as_bytes(), WEBHOOK_SECRET, now_s())))
        .await;
    assert_eq!(second.status(), 200);
    assert_eq!(second.text().await.unwrap(), "duplicate");
    assert_eq!(
        get(&mut app, &p.payment_id).await.status,
        PaymentStatus::Captured as i32
    );
    assert_eq!(app.outbox_statuses(&o).await, ["authorized", "captured"]);

    // stripe-sim delivering every event twice changes nothing either.
    let events = |pool: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM webhook_events")
            .fetch_one(&pool)
            .await
            .ok()
    };
    let (events_before, duplicates_before) = (
        events(app.pool.clone()).await.unwrap(),
        app.webhook_answers("duplicate").await,
    );
    app.set_faults(json!({"duplicate_webhooks": 10})).await;
    let o2 = testkit::unique("order");
    let p2 = app.create(&o2, 400, "pm_card_visa").await;
    // Every event o2 caused has been recorded once and its second copy
    // answered `duplicate` (payments counts its answers on /metrics).
    let seen = testkit::eventually("both copies arrive", Duration::from_secs(10), || {
        let app = &app;
        async move {
            let new = events(app.pool.clone()).await? - events_before;
            let duplicates = app.webhook_answers("duplicate").await - duplicates_before;
            (new >= 1 && duplicates >= new).then_some(new)
        }
    })
    .await;
    assert!(seen >= 1);
    assert_eq!(app.outbox_statuses(&o2).await, ["authorized"]);
    assert_eq!(
        get(&mut app, &p2.payment_id).await.status,
        PaymentStatus::Authorized as i32
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_capture_response_and_a_dropped_webhook_are_healed_by_the_reconciler() {
    let mut app = spawn_app().await;
    let o = testkit::unique("order");
    let p = app.create(&o, 2_500, "pm_card_visa").await;
    app.set_faults(json!({
        "fail_next": {"operation": "capture", "status": 500, "after_effect": true},
        "drop_webhooks": 1
    }))
    .await;
    let err = app
        .grpc
        .capture(CaptureRequest {
            idempotency_key: format!("order:{o}:capture"),
            payment_id: p.payment_id.clone(),
            amount: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    let sim = app.sim_intents().await;
    let pi = sim
        .iter()
        .find(|pi| pi["id"] == p.provider_ref.as_str())
        .unwrap();
    assert_eq!(
        pi["status"], "succeeded",
        "the capture happened at the provider"
    );
    assert_eq!(
        get(&mut app, &p.payment_id).await.status,
        PaymentStatus::Authorized as i32,
        "we do not know yet"
    );
    // The reconciler takes payments untouched since before "now": the first
    // round may still see this one as touched in the current millisecond.
    let healed = testkit::eventually(
        "the reconciler heals it",
        Duration::from_secs(5),
        || async {
            let n = app.payments.reconcile_once(Duration::ZERO).await.ok()?;
            (n >= 1).then_some(n)
        },
    )
    .await;
    assert!(healed >= 1);
    let after = get(&mut app, &p.payment_id).await;
    assert_eq!(after.status, PaymentStatus::Captured as i32);
    assert_eq!(after.captured.unwrap().amount_minor, 2_500);
    assert_eq!(app.outbox_statuses(&o).await, ["authorized", "captured"]);
    assert_eq!(
        app.payments.reconcile_once(Duration::ZERO).await.unwrap(),
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn payment_status_changed_lands_on_payment_events() {
    let stack = testkit::stack().await;
    let mut app = spawn_app().await;
    let bus =
        KafkaBus::new(KafkaSettings::from_env(&stack.endpoints.kafka_brokers).unwrap()).unwrap();
    bus.ensure_topic(TOPIC, shopstream_payments::TOPIC_PARTITIONS)
        .await
        .unwrap();
    let o = testkit::unique("order");
    let p = app.create(&o, 3_100, "pm_card_visa").await;
    let mut sub = bus
        .subscribe(&testkit::unique("it_payments_g"), &[TOPIC.to_string()])
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let event = loop {
        assert!(tokio::time::Instant::now() < deadline, "no event for {o}");
        let Some(d) = sub.next(Duration::from_secs(1)).await.unwrap() else {
            continue;
        };
        sub.ack(&d).await.unwrap();
        if d.envelope.key == o {
            break d.envelope;
        }
    };
    sub.close().await.unwrap();
    assert_eq!(event.event_type, "payment.status_changed");
    assert_eq!(event.schema_version, 1);
    assert_eq!(event.tenant_id, "default");
    let payload: PaymentStatusChanged = event.json().unwrap();
    assert_eq!(payload.payment_id, p.payment_id);
    assert_eq!(payload.order_id, o);
    assert_eq!(payload.status, "authorized");
    assert_eq!(payload.amount_minor, 3_100);
    assert_eq!(payload.currency, "EUR");
}
