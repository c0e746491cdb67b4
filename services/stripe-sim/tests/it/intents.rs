//! Payment intents, declines, refunds, events and authentication.

use reqwest::Method;

use crate::{assert_signed, start};

#[tokio::test]
async fn manual_capture_happy_path_with_signed_webhooks() {
    let sim = start().await;
    let r = sim
        .post(
            "/v1/payment_intents",
            &[
                ("amount", "2500"),
                ("currency", "USD"),
                ("capture_method", "manual"),
                ("metadata[order_id]", "ord_42"),
            ],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["object"], "payment_intent");
    assert_eq!(r.json["status"], "requires_payment_method");
    assert_eq!(r.json["currency"], "usd");
    assert_eq!(r.json["metadata"]["order_id"], "ord_42");
    let id = r.json["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("pi_"), "{id}");

    let r = sim
        .post(
            &format!("/v1/payment_intents/{id}/confirm"),
            &[("payment_method", "pm_card_visa")],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["status"], "requires_capture");
    assert_eq!(r.json["amount_capturable"], 2500);
    assert!(r.json["latest_charge"].as_str().unwrap().starts_with("ch_"));

    let r = sim
        .post(&format!("/v1/payment_intents/{id}/capture"), &[], None)
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["status"], "succeeded");
    assert_eq!(r.json["amount_received"], 2500);
    assert_eq!(r.json["amount_capturable"], 0);

    let got = sim.get(&format!("/v1/payment_intents/{id}")).await;
    assert_eq!(got.json, r.json);

    for kind in [
        "payment_intent.amount_capturable_updated",
        "payment_intent.succeeded",
    ] {
        let hooks = sim.wait_webhooks(kind, &id, 1).await;
        assert_signed(&hooks[0]);
        assert_eq!(hooks[0].event["object"], "event");
        assert!(hooks[0].event["id"].as_str().unwrap().starts_with("evt_"));
        assert_eq!(
            hooks[0].event["data"]["object"]["metadata"]["order_id"],
            "ord_42"
        );
    }

    // the same events through the API, newest first
    let events = sim.get("/v1/events?limit=2").await;
    assert_eq!(events.json["object"], "list");
    let data = events.json["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["type"], "payment_intent.succeeded");
    assert_eq!(data[1]["type"], "payment_intent.amount_capturable_updated");
    assert_eq!(events.json["has_more"], false);
    let one = sim
        .get(&format!("/v1/events/{}", data[0]["id"].as_str().unwrap()))
        .await;
    assert_eq!(one.json, data[0]);
}

#[tokio::test]
async fn each_decline_card_answers_402_with_its_decline_code() {
    let sim = start().await;
    let cases = [
        ("pm_card_chargeDeclined", "card_declined", "generic_decline"),
        (
            "pm_card_chargeDeclinedInsufficientFunds",
            "card_declined",
            "insufficient_funds",
        ),
        (
            "pm_card_chargeDeclinedLostCard",
            "card_declined",
            "lost_card",
        ),
        (
            "pm_card_chargeDeclinedStolenCard",
            "card_declined",
            "stolen_card",
        ),
        (
            "pm_card_chargeDeclinedFraudulent",
            "card_declined",
            "fraudulent",
        ),
        (
            "pm_card_chargeDeclinedExpiredCard",
            "expired_card",
            "expired_card",
        ),
        (
            "pm_card_chargeDeclinedIncorrectCvc",
            "incorrect_cvc",
            "incorrect_cvc",
        ),
        (
            "pm_card_chargeDeclinedProcessingError",
            "processing_error",
            "processing_error",
        ),
        (
            "pm_card_threeDSecureRequired",
            "authentication_required",
            "authentication_required",
        ),
    ];
    for (pm, code, decline_code) in cases {
        let r = sim
            .post(
                "/v1/payment_intents",
                &[
                    ("amount", "1000"),
                    ("currency", "eur"),
                    ("payment_method", pm),
                    ("confirm", "true"),
                ],
                None,
            )
            .await;
        assert_eq!(r.status, 402, "{pm}: {}", r.json);
        let e = &r.json["error"];
        assert_eq!(e["type"], "card_error", "{pm}");
        assert_eq!(e["code"], code, "{pm}");
        assert_eq!(e["decline_code"], decline_code, "{pm}");
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(
            e["payment_intent"]["status"], "requires_payment_method",
            "{pm}"
        );
        assert_eq!(
            e["payment_intent"]["last_payment_error"]["decline_code"],
            decline_code
        );
        let id = e["payment_intent"]["id"].as_str().unwrap();
        let failed = sim
            .wait_webhooks("payment_intent.payment_failed", id, 1)
            .await;
        assert_signed(&failed[0]);
    }
    // a declined intent takes a new card
    let r = sim
        .post(
            "/v1/payment_intents",
            &[
                ("amount", "700"),
                ("currency", "usd"),
                ("payment_method", "pm_card_chargeDeclined"),
                ("confirm", "true"),
            ],
            None,
        )
        .await;
    let id = r.json["error"]["payment_intent"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = sim
        .post(
            &format!("/v1/payment_intents/{id}/confirm"),
            &[("payment_method", "pm_card_mastercard")],
            None,
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.json["status"].as_str()),
        (200, Some("succeeded"))
    );
    assert_eq!(r.json["last_payment_error"], serde_json::Value::Null);
    // unknown PaymentMethods are a bad parameter
    let r = sim
        .post(
            "/v1/payment_intents",
            &[
                ("amount", "1000"),
                ("currency", "usd"),
                ("payment_method", "pm_card_bogus"),
            ],
            None,
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json["error"]["code"], "resource_missing");
    assert_eq!(r.json["error"]["param"], "payment_method");
}

#[tokio::test]
async fn illegal_transitions_are_400_unexpected_state() {
    let sim = start().await;
    let id = sim.authorized_intent("1500").await;
    let r = sim
        .post(
            &format!("/v1/payment_intents/{id}/capture"),
            &[("amount_to_capture", "2000")],
            None,
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.json["error"]["code"].as_str()),
        (400, Some("amount_too_large"))
    );
    let r = sim
        .post(
            &format!("/v1/payment_intents/{id}/capture"),
            &[("amount_to_capture", "1000")],
            None,
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.json["amount_received"].as_i64()),
        (200, Some(1000))
    );
    let again = sim
        .post(&format!("/v1/payment_intents/{id}/capture"), &[], None)
        .await;
    assert_eq!(again.status, 400);
    assert_eq!(again.json["error"]["type"], "invalid_request_error");
    assert_eq!(
        again.json["error"]["code"],
        "payment_intent_unexpected_state"
    );
    let r = sim
        .post(&format!("/v1/payment_intents/{id}/cancel"), &[], None)
        .await;
    assert_eq!(r.json["error"]["code"], "payment_intent_unexpected_state");
    let r = sim
        .post(&format!("/v1/payment_intents/{id}/confirm"), &[], None)
        .await;
    assert_eq!(r.json["error"]["code"], "payment_intent_unexpected_state");

    // cancel an authorization: released, never captured
    let id2 = sim.authorized_intent("900").await;
    let r = sim
        .post(
            &format!("/v1/payment_intents/{id2}/cancel"),
            &[("cancellation_reason", "abandoned")],
            None,
        )
        .await;
    assert_eq!(r.json["status"], "canceled");
    assert_eq!(r.json["amount_capturable"], 0);
    sim.wait_webhooks("payment_intent.canceled", &id2, 1).await;
    let r = sim
        .post(&format!("/v1/payment_intents/{id2}/capture"), &[], None)
        .await;
    assert_eq!(r.json["error"]["code"], "payment_intent_unexpected_state");

    let r = sim.get("/v1/payment_intents/pi_missing").await;
    assert_eq!(
        (r.status.as_u16(), r.json["error"]["code"].as_str()),
        (404, Some("resource_missing"))
    );
    let r = sim
        .post("/v1/payment_intents", &[("currency", "usd")], None)
        .await;
    assert_eq!(
        (r.status.as_u16(), r.json["error"]["param"].as_str()),
        (400, Some("amount"))
    );

    // labs see every intent and its state
    let all = sim.admin(Method::GET, "/_sim/payment_intents", None).await;
    let statuses: Vec<_> = all.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["status"].clone())
        .collect();
    assert_eq!(statuses, vec!["succeeded", "canceled"]);
}

#[tokio::test]
async fn partial_full_and_over_refunds() {
    let sim = start().await;
    let r = sim
        .post(
            "/v1/payment_intents",
            &[
                ("amount", "1000"),
                ("currency", "usd"),
                ("payment_method", "pm_card_visa"),
                ("confirm", "true"),
            ],
            None,
        )
        .await;
    assert_eq!(r.json["status"], "succeeded");
    let pi = r.json["id"].as_str().unwrap().to_string();

    let partial = sim
        .post(
            "/v1/refunds",
            &[("payment_intent", &pi), ("amount", "300")],
            None,
        )
        .await;
    assert_eq!(partial.status, 200, "{}", partial.json);
    assert_eq!(partial.json["object"], "refund");
    assert_eq!(partial.json["amount"], 300);
    assert_eq!(partial.json["status"], "succeeded");
    let refund_id = partial.json["id"].as_str().unwrap();
    assert!(refund_id.starts_with("re_"));
    assert_eq!(
        sim.get(&format!("/v1/refunds/{refund_id}")).await.json,
        partial.json
    );

    let over = sim
        .post(
            "/v1/refunds",
            &[("payment_intent", &pi), ("amount", "701")],
            None,
        )
        .await;
    assert_eq!(over.status, 400);
    assert_eq!(over.json["error"]["code"], "amount_too_large");

    let rest = sim
        .post("/v1/refunds", &[("payment_intent", &pi)], None)
        .await;
    assert_eq!(
        (rest.status.as_u16(), rest.json["amount"].as_i64()),
        (200, Some(700))
    );
    let none_left = sim
        .post(
            "/v1/refunds",
            &[("payment_intent", &pi), ("amount", "1")],
            None,
        )
        .await;
    assert_eq!(none_left.status, 400);
    assert_eq!(none_left.json["error"]["code"], "charge_already_refunded");

    let hooks = sim.wait_webhooks("charge.refunded", &pi, 2).await;
    let refunded: Vec<_> = hooks
        .iter()
        .map(|h| {
            h.event["data"]["object"]["amount_refunded"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert!(
        refunded.contains(&300) && refunded.contains(&1000),
        "{refunded:?}"
    );
    hooks.iter().for_each(assert_signed);

    // an uncaptured authorization cannot be refunded
    let auth = sim.authorized_intent("500").await;
    let r = sim
        .post("/v1/refunds", &[("payment_intent", &auth)], None)
        .await;
    assert_eq!(r.json["error"]["code"], "payment_intent_unexpected_state");
}

#[tokio::test]
async fn missing_or_wrong_key_is_401() {
    let sim = start().await;
    let url = format!("{}/v1/payment_intents", sim.base);
    let r = sim
        .client
        .post(&url)
        .body("amount=100&currency=usd")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let j: serde_json::Value = r.json().await.unwrap();
    assert_eq!(j["error"]["type"], "invalid_request_error");
    let r = sim
        .client
        .get(format!("{}/v1/events", sim.base))
        .bearer_auth("sk_test_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let j: serde_json::Value = r.json().await.unwrap();
    assert!(
        j["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Invalid API Key")
    );
    // nothing was created
    let all = sim.admin(Method::GET, "/_sim/payment_intents", None).await;
    assert_eq!(all.json["data"].as_array().unwrap().len(), 0);
    // unknown Stripe URLs are Stripe-shaped 404s
    let r = sim.get("/v1/customers").await;
    assert_eq!(
        (r.status.as_u16(), r.json["error"]["type"].as_str()),
        (404, Some("invalid_request_error"))
    );
}
