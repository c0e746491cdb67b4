//! The contract every order store passes (memory in unit tests, Postgres in
//! integration tests). Panics on a violation.

use shopstream_platform::{
    clock::ManualClock,
    events::Envelope,
    ids::{IdGen, SystemIdGen},
};
use uuid::Uuid;

use crate::{
    domain::{checkout::PricedLine, order::OrderState},
    ports::{Order, OrderStore, StepRecord, StoreError},
};

fn order(tenant: &str, user: &str, key: &str, created: i64) -> Order {
    Order {
        tenant_id: tenant.into(),
        order_id: Uuid::now_v7(),
        user_id: user.into(),
        state: OrderState::Pending,
        cancel_detail: String::new(),
        lines: vec![PricedLine {
            product_id: "p".into(),
            sku_id: "s".into(),
            quantity: 2,
            unit_price_minor: 150,
            line_total_minor: 300,
        }],
        total_minor: 300,
        currency: "EUR".into(),
        payment_method: "pm_card_visa".into(),
        reservation_id: String::new(),
        payment_id: String::new(),
        idempotency_key: key.into(),
        fingerprint: format!("fp-{key}"),
        workflow_started: false,
        created_at_ms: created,
        updated_at_ms: created,
    }
}

fn event(tenant: &str, o: &Order) -> Envelope {
    Envelope::new(
        "order.state_changed",
        1,
        tenant,
        &o.order_id.to_string(),
        &serde_json::json!({"state": "pending"}),
        &ManualClock::new(1),
        &SystemIdGen,
    )
    .unwrap()
}

fn step(seq: u32, name: &str, outcome: &str, state: &str) -> StepRecord {
    StepRecord {
        seq,
        step: name.into(),
        outcome: outcome.into(),
        state: state.into(),
        cancel_reason: (state == "cancelled").then(|| "payment_failed".to_string()),
        detail: format!("{name} {outcome}"),
        attempts: 1,
        // A capture that ran out of retries: the log must keep it apart
        // from a refusal.
        failure_reason: (outcome == "failed").then(|| "payment_failed".to_string()),
        uncertain: outcome == "failed" && name == "capture",
        at_ms: 1_000 + i64::from(seq),
        reservation_id: (name == "reserve").then(|| "res-1".to_string()),
        payment_id: (name == "authorize").then(|| "pay-1".to_string()),
    }
}

pub async fn run(store: &dyn OrderStore) {
    let t = format!("t-{}", SystemIdGen.new_id());
    let other = format!("{t}-other");

    // Insert; the same key returns the first order and creates nothing.
    let a = order(&t, "u1", "k1", 100);
    let (stored, created) = store.insert(&a, &event(&t, &a)).await.unwrap();
    assert!(created);
    assert_eq!(stored, a);
    let dup = order(&t, "u1", "k1", 101);
    let (again, created) = store.insert(&dup, &event(&t, &dup)).await.unwrap();
    assert!(!created);
    assert_eq!(again.order_id, a.order_id);
    assert_eq!(again.lines, a.lines);
    assert!(store.get(&t, dup.order_id).await.unwrap().is_none());
    // Keys are per user and per tenant.
    let b = order(&t, "u2", "k1", 102);
    assert!(store.insert(&b, &event(&t, &b)).await.unwrap().1);
    let c = order(&other, "u1", "k1", 103);
    assert!(store.insert(&c, &event(&other, &c)).await.unwrap().1);
    assert_eq!(
        store
            .by_key(&t, "u1", "k1")
            .await
            .unwrap()
            .map(|o| o.order_id),
        Some(a.order_id)
    );
    assert!(store.get(&other, a.order_id).await.unwrap().is_none());

    // Listing: newest first, per user or tenant, by state, with a cursor.
    let d = order(&t, "u1", "k2", 104);
    store.insert(&d, &event(&t, &d)).await.unwrap();
    let mine = store.list(&t, Some("u1"), &[], None, 10).await.unwrap();
    let ids: Vec<_> = mine.iter().map(|o| o.order_id).collect();
    assert_eq!(ids, [d.order_id, a.order_id]);
    let page = store.list(&t, None, &[], None, 2).await.unwrap();
    assert_eq!(page.len(), 2);
    let last = page.last().unwrap();
    let rest = store
        .list(&t, None, &[], Some((last.created_at_ms, last.order_id)), 10)
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    assert!(
        store
            .list(&t, None, &["completed".into()], None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Steps: idempotent per seq; state, ids and the failure detail follow.
    assert!(
        store
            .record_step(
                &t,
                a.order_id,
                &step(1, "reserve", "succeeded", "reserved"),
                &[]
            )
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_step(
                &t,
                a.order_id,
                &step(1, "reserve", "succeeded", "reserved"),
                &[]
            )
            .await
            .unwrap()
    );
    store
        .record_step(
            &t,
            a.order_id,
            &step(2, "authorize", "succeeded", "authorized"),
            &[],
        )
        .await
        .unwrap();
    store
        .record_step(
            &t,
            a.order_id,
            &step(3, "capture", "failed", "authorized"),
            &[],
        )
        .await
        .unwrap();
    store
        .record_step(
            &t,
            a.order_id,
            &step(4, "release", "compensated", "cancelled"),
            &[],
        )
        .await
        .unwrap();
    let o = store.get(&t, a.order_id).await.unwrap().unwrap();
    assert_eq!(o.state.as_str(), "cancelled");
    assert_eq!(
        o.state.cancel_reason().map(|r| r.as_str()),
        Some("payment_failed")
    );
    assert_eq!(
        (o.reservation_id.as_str(), o.payment_id.as_str()),
        ("res-1", "pay-1")
    );
    assert_eq!(o.cancel_detail, "capture failed");
    assert_eq!(o.updated_at_ms, 1_004);
    let steps = store.steps(&t, a.order_id).await.unwrap();
    assert_eq!(
        steps.iter().map(|s| s.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    // The decision log: each seq reads back as written, `uncertain`
    // included, with the id only the step that produced it carries.
    for (seq, name, outcome, state) in [
        (1, "reserve", "succeeded", "reserved"),
        (2, "authorize", "succeeded", "authorized"),
        (3, "capture", "failed", "authorized"),
        (4, "release", "compensated", "cancelled"),
    ] {
        let read = store.step(&t, a.order_id, seq).await.unwrap();
        assert_eq!(read, Some(step(seq, name, outcome, state)), "step {seq}");
    }
    assert!(
        store
            .step(&t, a.order_id, 3)
            .await
            .unwrap()
            .unwrap()
            .uncertain
    );
    assert_eq!(store.step(&t, a.order_id, 5).await.unwrap(), None);
    assert_eq!(store.step(&other, a.order_id, 1).await.unwrap(), None);
    assert_eq!(
        store
            .record_step(
                &t,
                Uuid::now_v7(),
                &step(1, "reserve", "succeeded", "reserved"),
                &[]
            )
            .await
            .unwrap_err(),
        StoreError::NotFound
    );
    assert!(store.steps(&other, a.order_id).await.unwrap().is_empty());

    // Unstarted orders until marked.
    let due: Vec<_> = store
        .unstarted(i64::MAX, 1_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|o| o.tenant_id == t)
        .map(|o| o.order_id)
        .collect();
    assert_eq!(due, [a.order_id, b.order_id, d.order_id]);
    store.mark_started(&t, a.order_id).await.unwrap();
    assert!(
        store
            .get(&t, a.order_id)
            .await
            .unwrap()
            .unwrap()
            .workflow_started
    );
    assert!(
        !store
            .unstarted(i64::MAX, 1_000)
            .await
            .unwrap()
            .iter()
            .any(|o| o.order_id == a.order_id)
    );
}
