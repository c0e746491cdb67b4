//! Fault injection through `/_sim/faults`.

use reqwest::Method;
use serde_json::json;

use crate::start;

#[tokio::test]
async fn injected_capture_failure_changes_nothing_then_capture_succeeds() {
    let sim = start().await;
    let id = sim.authorized_intent("1200").await;
    let set = sim
        .admin(
            Method::POST,
            "/_sim/faults",
            Some(json!({"fail_next": {"operation": "capture", "status": 500, "count": 1}})),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.json);
    let shown = sim.admin(Method::GET, "/_sim/faults", None).await;
    assert_eq!(shown.json["fail_next"][0]["operation"], "capture");

    let path = format!("/v1/payment_intents/{id}/capture");
    let failed = sim.post(&path, &[], Some("cap-key")).await;
    assert_eq!(failed.status, 500);
    assert_eq!(failed.json["error"]["type"], "api_error");
    let pi = sim.get(&format!("/v1/payment_intents/{id}")).await;
    assert_eq!(pi.json["status"], "requires_capture");
    assert_eq!(pi.json["amount_received"], 0);

    // the same key retried executes for real (no result was stored)
    let ok = sim.post(&path, &[], Some("cap-key")).await;
    assert_eq!(ok.status, 200, "{}", ok.json);
    assert_eq!(ok.json["status"], "succeeded");
    assert!(ok.headers.get("idempotent-replayed").is_none());
    let shown = sim.admin(Method::GET, "/_sim/faults", None).await;
    assert_eq!(shown.json["fail_next"], json!([]));
}

#[tokio::test]
async fn after_effect_failure_keeps_the_change_and_the_key_replays_it() {
    let sim = start().await;
    let id = sim.authorized_intent("1200").await;
    sim.admin(
        Method::POST,
        "/_sim/faults",
        Some(json!({"fail_next": {"operation": "capture", "status": 502, "after_effect": true}})),
    )
    .await;
    let path = format!("/v1/payment_intents/{id}/capture");
    let lost = sim.post(&path, &[], Some("cap-lost")).await;
    assert_eq!(lost.status, 502);
    assert_eq!(
        sim.get(&format!("/v1/payment_intents/{id}")).await.json["status"],
        "succeeded"
    );
    let retry = sim.post(&path, &[], Some("cap-lost")).await;
    assert_eq!(retry.status, 200);
    assert_eq!(retry.json["status"], "succeeded");
    assert_eq!(retry.headers["idempotent-replayed"], "true");
}

#[tokio::test]
async fn dropped_webhooks_are_not_delivered_duplicated_ones_arrive_twice() {
    let sim = start().await;
    sim.admin(
        Method::POST,
        "/_sim/faults",
        Some(json!({"drop_webhooks": 1, "duplicate_webhooks": 1})),
    )
    .await;
    // event 1 (amount_capturable_updated) is dropped
    let id = sim.authorized_intent("900").await;
    // event 2 (succeeded) is delivered twice
    let r = sim
        .post(&format!("/v1/payment_intents/{id}/capture"), &[], None)
        .await;
    assert_eq!(r.status, 200);
    let dup = sim.wait_webhooks("payment_intent.succeeded", &id, 2).await;
    assert_eq!(dup.len(), 2);
    assert_eq!(dup[0].event["id"], dup[1].event["id"]);
    assert!(
        sim.webhooks_for("payment_intent.amount_capturable_updated", &id)
            .is_empty()
    );
    // the dropped event still exists in the API
    let events = sim
        .get("/v1/events?type=payment_intent.amount_capturable_updated")
        .await;
    assert_eq!(events.json["data"].as_array().unwrap().len(), 1);

    // faults are used up: the next event arrives exactly once
    let id2 = sim.authorized_intent("100").await;
    sim.wait_webhooks("payment_intent.amount_capturable_updated", &id2, 1)
        .await;
    let cleared = sim.admin(Method::DELETE, "/_sim/faults", None).await;
    assert_eq!(cleared.json["drop_webhooks"], 0);
    assert_eq!(
        sim.webhooks_for("payment_intent.amount_capturable_updated", &id2)
            .len(),
        1
    );
}

#[tokio::test]
async fn latency_invalid_faults_and_reset() {
    let sim = start().await;
    let bad = sim
        .admin(
            Method::POST,
            "/_sim/faults",
            Some(json!({"fail_next": {"operation": "capture", "status": 200}})),
        )
        .await;
    assert_eq!(bad.status, 422);
    sim.admin(
        Method::POST,
        "/_sim/faults",
        Some(json!({"latency_ms": 150})),
    )
    .await;
    let started = std::time::Instant::now();
    sim.get("/v1/events").await;
    assert!(started.elapsed() >= std::time::Duration::from_millis(150));

    sim.authorized_intent("100").await;
    let reset = sim.admin(Method::POST, "/_sim/reset", None).await;
    assert_eq!(reset.status, 200);
    let all = sim.admin(Method::GET, "/_sim/payment_intents", None).await;
    assert_eq!(all.json["data"].as_array().unwrap().len(), 0);
    assert_eq!(
        sim.admin(Method::GET, "/_sim/faults", None).await.json["latency_ms"],
        0
    );
    let events = sim.get("/v1/events").await;
    assert_eq!(events.json["data"].as_array().unwrap().len(), 0);
}
