//! The contract every payment store passes (memory in unit tests, Postgres
//! in integration tests). Panics on a violation.

use shopstream_platform::{clock::ManualClock, events::Envelope, ids::SystemIdGen};
use uuid::Uuid;

use crate::{
    domain::{self, IntentState, Observation, Payment, Status},
    ports::{PaymentStore, StoreError},
};

fn new_payment(tenant: &str, order: &str, now_ms: i64) -> Payment {
    Payment::new(
        Uuid::now_v7(),
        tenant,
        order,
        &format!("order:{order}:create"),
        Status::Pending,
        1_000,
        "EUR",
        "pm_card_visa",
        now_ms,
    )
}

fn event(p: &Payment) -> Envelope {
    Envelope::new(
        "payment.status_changed",
        1,
        &p.tenant_id,
        &p.order_id,
        &p.status.as_str(),
        &ManualClock::new(p.updated_at_ms),
        &SystemIdGen,
    )
    .expect("encodes")
}

/// Merge `obs` at `now_ms`, with an event on every change.
async fn apply(
    store: &dyn PaymentStore,
    p: &Payment,
    obs: Observation,
    now_ms: i64,
) -> Result<Payment, StoreError> {
    store
        .update(&p.tenant_id, p.id, &move |cur: &Payment| {
            domain::merge(cur, &obs, now_ms).map(|next| {
                let e = event(&next);
                (next, Some(e))
            })
        })
        .await
}

pub async fn run(store: &dyn PaymentStore) {
    let t = format!("t-{}", Uuid::now_v7());
    let other = format!("u-{}", Uuid::now_v7());

    // One payment per (tenant, order); another tenant is another world.
    let first = new_payment(&t, "o1", 1_000);
    let (p, created) = store.insert(&first).await.unwrap();
    assert!(created);
    assert_eq!(p, first);
    let (again, created) = store.insert(&new_payment(&t, "o1", 2_000)).await.unwrap();
    assert!(!created, "the order already has a payment");
    assert_eq!(again, first);
    let (theirs, created) = store
        .insert(&new_payment(&other, "o1", 1_000))
        .await
        .unwrap();
    assert!(created);
    assert_ne!(theirs.id, first.id);
    assert_eq!(store.get(&t, p.id).await.unwrap(), first);
    assert_eq!(store.get(&other, p.id).await, Err(StoreError::NotFound));
    assert_eq!(store.by_order(&t, "o1").await.unwrap().id, p.id);
    assert_eq!(store.by_order(&t, "nope").await, Err(StoreError::NotFound));
    assert_eq!(
        store.by_provider_ref(&t, "").await,
        Err(StoreError::NotFound)
    );

    // Updates store the merged row; a no-op change stores nothing.
    let authorized = Observation::Intent {
        provider_ref: format!("pi_{t}"),
        state: IntentState::RequiresCapture,
        captured_minor: 0,
    };
    let a = apply(store, &p, authorized.clone(), 1_500).await.unwrap();
    assert_eq!(a.status, Status::Authorized);
    assert_eq!(a.updated_at_ms, 1_500);
    assert_eq!(store.get(&t, p.id).await.unwrap(), a);
    let same = apply(store, &p, authorized, 1_700).await.unwrap();
    assert_eq!(same, a, "a repeat observation changes nothing");
    assert_eq!(
        store.by_provider_ref(&t, &a.provider_ref).await.unwrap().id,
        p.id
    );
    assert_eq!(
        store.by_provider_ref(&other, &a.provider_ref).await,
        Err(StoreError::NotFound)
    );

    // Refund ids and amounts survive the round trip.
    let c = apply(
        store,
        &p,
        Observation::Intent {
            provider_ref: a.provider_ref.clone(),
            state: IntentState::Succeeded,
            captured_minor: 1_000,
        },
        1_800,
    )
    .await
    .unwrap();
    let r = apply(
        store,
        &p,
        Observation::Refund {
            refund_id: "re_1".into(),
            amount_minor: 250,
        },
        1_900,
    )
    .await
    .unwrap();
    assert_eq!(c.status, Status::Captured);
    assert_eq!(r.status, Status::PartiallyRefunded);
    assert_eq!(store.get(&t, p.id).await.unwrap().refunds["re_1"], 250);
    assert_eq!(
        store.update(&t, Uuid::now_v7(), &|_| None).await,
        Err(StoreError::NotFound)
    );

    // Concurrent updates of one payment serialize: no refund is lost.
    let (q, _) = store.insert(&new_payment(&t, "o2", 1_000)).await.unwrap();
    apply(
        store,
        &q,
        Observation::Intent {
            provider_ref: format!("pi2_{t}"),
            state: IntentState::Succeeded,
            captured_minor: 1_000,
        },
        1_100,
    )
    .await
    .unwrap();
    let refunds = (0..10).map(|i| {
        apply(
            store,
            &q,
            Observation::Refund {
                refund_id: format!("re_{i}"),
                amount_minor: 100,
            },
            1_200,
        )
    });
    for r in futures::future::join_all(refunds).await {
        r.unwrap();
    }
    let done = store.get(&t, q.id).await.unwrap();
    assert_eq!(
        (done.refunded_minor, done.status),
        (1_000, Status::Refunded)
    );

    // Webhook ids: the first sighting only.
    let evt = format!("evt_{t}");
    assert!(store.record_webhook(&evt, "x", 1).await.unwrap());
    assert!(!store.record_webhook(&evt, "x", 2).await.unwrap());

    // The reconciler's list: in flight, with a ref, not touched recently.
    let (s, _) = store.insert(&new_payment(&t, "o3", 500)).await.unwrap();
    assert!(
        stale_before(store, &t, 600).await.is_empty(),
        "no provider ref yet"
    );
    apply(
        store,
        &s,
        Observation::Intent {
            provider_ref: format!("pi3_{t}"),
            state: IntentState::Open,
            captured_minor: 0,
        },
        700,
    )
    .await
    .unwrap();
    assert_eq!(stale_before(store, &t, 701).await, vec!["o3".to_string()]);
    assert!(
        stale_before(store, &t, 700).await.is_empty(),
        "updated at 700"
    );
    assert_eq!(
        stale_before(store, &t, 1_600).await,
        vec!["o3".to_string()],
        "o1 is captured: not in flight"
    );
    assert_eq!(store.stale(i64::MAX, 0).await.unwrap(), vec![]);
}

/// Order ids of tenant `t`'s payments that are stale before `ms`.
async fn stale_before(store: &dyn PaymentStore, t: &str, ms: i64) -> Vec<String> {
    store
        .stale(ms, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|p| p.tenant_id == t)
        .map(|p| p.order_id)
        .collect()
}
