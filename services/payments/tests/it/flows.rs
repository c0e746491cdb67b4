//! The gRPC flows against stripe-sim.

use shopstream_proto::payments::v1::{
    CancelRequest, CaptureRequest, CreateIntentRequest, GetPaymentRequest, PaymentStatus,
    RefundRequest, get_payment_request::By,
};
use shopstream_runtime::testkit;

use crate::{eur, spawn_app};

fn order() -> String {
    testkit::unique("order")
}

#[tokio::test(flavor = "multi_thread")]
async fn creating_twice_with_one_key_makes_one_intent_and_one_payment() {
    let mut app = spawn_app().await;
    let o = order();
    let a = app.create(&o, 1_500, "pm_card_visa").await;
    let b = app.create(&o, 1_500, "pm_card_visa").await;
    assert_eq!(a.status, PaymentStatus::Authorized as i32, "{a:?}");
    assert_eq!(a.payment_id, b.payment_id);
    assert_eq!(a.provider_ref, b.provider_ref);
    assert!(a.provider_ref.starts_with("pi_"));
    let intents: Vec<_> = app
        .sim_intents()
        .await
        .into_iter()
        .filter(|pi| pi["metadata"]["order_id"] == o.as_str())
        .collect();
    assert_eq!(intents.len(), 1, "{intents:?}");
    assert_eq!(intents[0]["capture_method"], "manual");
    assert_eq!(intents[0]["metadata"]["tenant_id"], "default");
    // Another amount for the same order is a conflict, not a second payment.
    let err = app
        .grpc
        .create_intent(CreateIntentRequest {
            idempotency_key: "other".into(),
            order_id: o.clone(),
            amount: eur(99),
            payment_method_token: "pm_card_visa".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Aborted);
    let got = app
        .grpc
        .get_payment(GetPaymentRequest {
            by: Some(By::OrderId(o)),
        })
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(got.payment_id, a.payment_id);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_declined_card_is_a_failed_payment_not_an_error() {
    let mut app = spawn_app().await;
    let o = order();
    let p = app.create(&o, 2_000, "pm_card_chargeDeclined").await;
    assert_eq!(p.status, PaymentStatus::Failed as i32, "{p:?}");
    assert_eq!(p.failure_code, "card_declined");
    assert!(!p.failure_message.is_empty());
    let again = app.create(&o, 2_000, "pm_card_chargeDeclined").await;
    assert_eq!(again.payment_id, p.payment_id);
    assert_eq!(app.outbox_statuses(&o).await, vec!["failed".to_string()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn authorize_capture_refund() {
    let mut app = spawn_app().await;
    let o = order();
    let p = app.create(&o, 1_000, "pm_card_visa").await;
    let capture = || CaptureRequest {
        idempotency_key: format!("order:{o}:capture"),
        payment_id: p.payment_id.clone(),
        amount: None,
    };
    for _ in 0..2 {
        let c = app.grpc.capture(capture()).await.unwrap().into_inner();
        let c = c.payment.unwrap();
        assert_eq!(c.status, PaymentStatus::Captured as i32);
        assert_eq!(c.captured.unwrap().amount_minor, 1_000);
    }
    let refund = |key: &str, amount| RefundRequest {
        idempotency_key: key.into(),
        payment_id: p.payment_id.clone(),
        amount,
        reason: "customer_request".into(),
    };
    let r = app
        .grpc
        .refund(refund("r1", eur(300)))
        .await
        .unwrap()
        .into_inner();
    assert!(r.refund_id.starts_with("re_"));
    let pr = r.payment.unwrap();
    assert_eq!(pr.status, PaymentStatus::PartiallyRefunded as i32);
    assert_eq!(pr.refunded.unwrap().amount_minor, 300);
    // The same refund retried is the same refund.
    let again = app
        .grpc
        .refund(refund("r1", eur(300)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.refund_id, r.refund_id);
    assert_eq!(again.payment.unwrap().refunded.unwrap().amount_minor, 300);
    let too_much = app.grpc.refund(refund("r2", eur(701))).await.unwrap_err();
    assert_eq!(too_much.code(), tonic::Code::InvalidArgument);
    let rest = app
        .grpc
        .refund(refund("r3", None))
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(rest.status, PaymentStatus::Refunded as i32);
    assert_eq!(rest.refunded.unwrap().amount_minor, 1_000);
    let cancel = app
        .grpc
        .cancel(CancelRequest {
            idempotency_key: format!("order:{o}:cancel"),
            payment_id: p.payment_id.clone(),
            reason: "late".into(),
            order_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(cancel.code(), tonic::Code::FailedPrecondition);
    let statuses = app.outbox_statuses(&o).await;
    assert_eq!(
        statuses,
        ["authorized", "captured", "partially_refunded", "refunded"],
        "one event per real change (webhooks included)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_before_capture() {
    let mut app = spawn_app().await;
    let o = order();
    let p = app.create(&o, 700, "pm_card_mastercard").await;
    let cancel = || CancelRequest {
        idempotency_key: format!("order:{o}:cancel"),
        payment_id: p.payment_id.clone(),
        reason: "order_cancelled".into(),
        order_id: String::new(),
    };
    for _ in 0..2 {
        let c = app.grpc.cancel(cancel()).await.unwrap().into_inner();
        assert_eq!(c.payment.unwrap().status, PaymentStatus::Cancelled as i32);
    }
    let err = app
        .grpc
        .capture(CaptureRequest {
            idempotency_key: format!("order:{o}:capture"),
            payment_id: p.payment_id.clone(),
            amount: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    let sim = app.sim_intents().await;
    let pi = sim
        .iter()
        .find(|pi| pi["id"] == p.provider_ref.as_str())
        .unwrap();
    assert_eq!(pi["status"], "canceled");
}

/// The saga's undo of an authorize whose answers were all lost: it cancels
/// by order id. An existing payment is voided at the provider; an order with
/// no payment yet gets a cancelled one, so a CreateIntent arriving later
/// authorizes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn cancel_by_order_voids_the_payment_or_forestalls_it() {
    let mut app = spawn_app().await;
    let by_order = |o: &str| CancelRequest {
        idempotency_key: format!("order:{o}:cancel"),
        payment_id: String::new(),
        reason: "order_cancelled".into(),
        order_id: o.to_string(),
    };
    // A payment the caller never heard of: voided.
    let o = order();
    let p = app.create(&o, 900, "pm_card_visa").await;
    let c = app.grpc.cancel(by_order(&o)).await.unwrap().into_inner();
    let c = c.payment.unwrap();
    assert_eq!(
        (c.payment_id.as_str(), c.status),
        (p.payment_id.as_str(), PaymentStatus::Cancelled as i32)
    );
    let sim = app.sim_intents().await;
    let pi = sim
        .iter()
        .find(|pi| pi["id"] == p.provider_ref.as_str())
        .unwrap();
    assert_eq!(pi["status"], "canceled");

    // No payment yet: the cancel comes first, the create later.
    let o = order();
    for _ in 0..2 {
        let c = app.grpc.cancel(by_order(&o)).await.unwrap().into_inner();
        assert_eq!(c.payment.unwrap().status, PaymentStatus::Cancelled as i32);
    }
    let late = app.create(&o, 900, "pm_card_visa").await;
    assert_eq!(late.status, PaymentStatus::Cancelled as i32, "{late:?}");
    assert!(late.provider_ref.is_empty());
    let intents = app
        .sim_intents()
        .await
        .into_iter()
        .filter(|pi| pi["metadata"]["order_id"] == o.as_str())
        .count();
    assert_eq!(intents, 0, "nothing reached the provider");

    // Neither id: a validation error.
    let err = app.grpc.cancel(by_order("")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
}

/// stripe-sim's declined intent carries the failed payment method (in
/// `last_payment_error`, and in the 402 error body) with every field Stripe
/// always sends; async-stripe's typed `PaymentIntent` requires them all, and
/// one missing field once turned every decline into "error deserializing
/// Stripe error". This keeps the emulator's shapes readable by the client.
#[tokio::test(flavor = "multi_thread")]
async fn stripe_sims_declined_intent_is_readable_by_async_stripe() {
    let mut app = spawn_app().await;
    let o = order();
    let resp = app
        .grpc
        .create_intent(CreateIntentRequest {
            idempotency_key: format!("order:{o}:create"),
            order_id: o.clone(),
            amount: eur(2_000),
            payment_method_token: "pm_card_chargeDeclined".into(),
        })
        .await
        .expect("a decline is a FAILED payment, not an RPC error");
    let sim = app.sim_intents().await;
    let pi = sim
        .iter()
        .find(|pi| pi["metadata"]["order_id"] == o.as_str())
        .expect("the declined intent exists at the provider");
    let parsed = miniserde::json::from_str::<stripe_core::PaymentIntent>(&pi.to_string());
    assert!(
        parsed.is_ok(),
        "async-stripe reads stripe-sim's declined intent: {pi:#}"
    );
    assert!(resp.into_inner().payment.is_some());
}
