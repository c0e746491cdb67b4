//! Idempotency keys, as Stripe honours them.

use reqwest::Method;

use crate::start;

#[tokio::test]
async fn same_key_same_body_replays_different_body_is_refused() {
    let sim = start().await;
    let params = [
        ("amount", "4200"),
        ("currency", "usd"),
        ("capture_method", "manual"),
        ("metadata[order_id]", "ord_7"),
    ];
    let first = sim
        .post("/v1/payment_intents", &params, Some("order-ord_7-intent"))
        .await;
    assert_eq!(first.status, 200);
    assert!(first.headers.get("idempotent-replayed").is_none());

    // same parameters in another order: still the same request
    let mut reordered = params;
    reordered.reverse();
    let replay = sim
        .post(
            "/v1/payment_intents",
            &reordered,
            Some("order-ord_7-intent"),
        )
        .await;
    assert_eq!(replay.status, 200);
    assert_eq!(replay.json, first.json);
    assert_eq!(replay.headers["idempotent-replayed"], "true");

    let all = sim.admin(Method::GET, "/_sim/payment_intents", None).await;
    assert_eq!(
        all.json["data"].as_array().unwrap().len(),
        1,
        "a replay must not create"
    );

    let other = sim
        .post(
            "/v1/payment_intents",
            &[("amount", "4300"), ("currency", "usd")],
            Some("order-ord_7-intent"),
        )
        .await;
    assert_eq!(other.status, 400);
    assert_eq!(other.json["error"]["type"], "idempotency_error");

    // the same key on another endpoint is another request too
    let id = first.json["id"].as_str().unwrap();
    let cross = sim
        .post(
            &format!("/v1/payment_intents/{id}/cancel"),
            &[],
            Some("order-ord_7-intent"),
        )
        .await;
    assert_eq!(cross.json["error"]["type"], "idempotency_error");
    assert_eq!(
        sim.get(&format!("/v1/payment_intents/{id}")).await.json["status"],
        "requires_payment_method"
    );
}

#[tokio::test]
async fn declines_replay_and_validation_errors_do_not_burn_the_key() {
    let sim = start().await;
    let params = [
        ("amount", "1000"),
        ("currency", "usd"),
        ("payment_method", "pm_card_chargeDeclinedInsufficientFunds"),
        ("confirm", "true"),
    ];
    let first = sim
        .post("/v1/payment_intents", &params, Some("k-decline"))
        .await;
    assert_eq!(first.status, 402);
    let again = sim
        .post("/v1/payment_intents", &params, Some("k-decline"))
        .await;
    assert_eq!(again.status, 402);
    assert_eq!(again.json, first.json);
    assert_eq!(again.headers["idempotent-replayed"], "true");

    // refused while validating parameters: nothing stored, the key stays usable
    let bad = sim
        .post("/v1/payment_intents", &[("currency", "usd")], Some("k-fix"))
        .await;
    assert_eq!(bad.status, 400);
    let fixed = sim
        .post(
            "/v1/payment_intents",
            &[("amount", "10"), ("currency", "usd")],
            Some("k-fix"),
        )
        .await;
    assert_eq!(fixed.status, 200, "{}", fixed.json);

    // a capture retried with its key is captured once, then replayed
    let id = sim.authorized_intent("800").await;
    let path = format!("/v1/payment_intents/{id}/capture");
    let c1 = sim.post(&path, &[], Some("cap-1")).await;
    let c2 = sim.post(&path, &[], Some("cap-1")).await;
    assert_eq!((c1.status.as_u16(), c2.status.as_u16()), (200, 200));
    assert_eq!(c1.json, c2.json);
    let c3 = sim.post(&path, &[], Some("cap-2")).await;
    assert_eq!(c3.json["error"]["code"], "payment_intent_unexpected_state");
}
