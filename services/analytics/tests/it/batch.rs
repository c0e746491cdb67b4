//! The batch path (`Count::handle_batch`, `Rollups::record_many`) against
//! the path that records one event at a time: the same events, mixed as a
//! consumer receives them (views of signed-in and anonymous shoppers, an id
//! twice in one batch, an order placed and completed, a refund, another
//! day's view), give the same days, the same links and the same answers;
//! the same batch again counts nothing; late facts of a closed day correct
//! it once each.

use std::sync::Arc;

use serde_json::json;
use shopstream_analytics::{
    ACTION_EVENT, Count, ORDER_STATE_EVENT, PAYMENT_STATUS_EVENT, RAW_TOPIC,
    domain::Day,
    store::{DayRow, Rollups},
};
use shopstream_platform::{
    clock::ManualClock,
    events::{Delivery, Envelope, runner::Handler},
    ids::SystemIdGen,
    metrics::Metrics,
};
use shopstream_runtime::testkit;

/// 2026-06-01T12:00:00Z.
const NOON: i64 = 1_780_272_000_000 + 12 * 3_600_000;
const DAY_MS: i64 = 86_400_000;

fn event(tenant: &str, event_type: &str, key: &str, payload: serde_json::Value) -> Envelope {
    Envelope::new(
        event_type,
        1,
        tenant,
        key,
        &payload,
        &ManualClock::new(NOON),
        &SystemIdGen,
    )
    .unwrap()
}

fn view(tenant: &str, user: Option<&str>, visitor: &str, ts_ms: i64) -> Envelope {
    event(
        tenant,
        ACTION_EVENT,
        visitor,
        json!({"user_id": user, "visitor_id": visitor, "action": "view",
            "object_id": "p1", "ts_ms": ts_ms, "device": "mobile", "referrer": ""}),
    )
}

fn order(tenant: &str, id: &str, state: &str, ts_ms: i64) -> Envelope {
    event(
        tenant,
        ORDER_STATE_EVENT,
        id,
        json!({"order_id": id, "user_id": "u1", "state": state, "cancel_reason": null,
            "total_minor": 1_000, "currency": "EUR", "reservation_id": "r", "ts_ms": ts_ms}),
    )
}

fn payment(tenant: &str, id: &str, status: &str, amount: i64, ts_ms: i64) -> Envelope {
    event(
        tenant,
        PAYMENT_STATUS_EVENT,
        id,
        json!({"payment_id": "p", "order_id": id, "status": status, "amount_minor": amount,
            "currency": "EUR", "failure_code": "", "ts_ms": ts_ms}),
    )
}

fn deliveries(events: &[Envelope]) -> Vec<Delivery> {
    events
        .iter()
        .enumerate()
        .map(|(i, e)| Delivery {
            topic: RAW_TOPIC.into(),
            partition: 0,
            offset: i as i64,
            envelope: e.clone(),
        })
        .collect()
}

/// A counter of its own: its own database, its clock at noon.
async fn counter(clock: &ManualClock) -> (Arc<Rollups>, Count) {
    let pool = testkit::stack().await.database("it_analytics_batch").await;
    shopstream_platform::db::migrate(&pool, &shopstream_analytics::MIGRATOR)
        .await
        .unwrap();
    let rollups = Arc::new(Rollups::load(pool, Arc::new(clock.clone())).await.unwrap());
    let count = Count::new(rollups.clone(), &Metrics::new("it"));
    (rollups, count)
}

/// The two days the events fall on, as the API shows them (the time the
/// row was written left out).
async fn two_days(rollups: &Rollups, tenant: &str) -> Vec<(String, bool, i32, String)> {
    let day = Day::of(NOON);
    let rows: Vec<DayRow> = rollups.days(tenant, day, day.next()).await.unwrap();
    rows.into_iter()
        .map(|r| {
            (
                r.stats.date.clone(),
                r.closed,
                r.version,
                format!("{:?}", r.stats),
            )
        })
        .collect()
}

/// `ds` to `batched` in one batch and to `single` one at a time; every
/// delivery handled.
async fn both(batched: &Count, single: &Count, ds: &[Delivery]) {
    let refs: Vec<&Delivery> = ds.iter().collect();
    let results = batched.handle_batch(&refs).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    for d in ds {
        single.handle(d).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_counts_what_one_at_a_time_counts_once_and_corrects_closed_days_per_fact() {
    let tenant = testkit::unique("t");
    let t = tenant.as_str();
    let (a, b) = (ManualClock::new(NOON), ManualClock::new(NOON));
    let (batched, batch_count) = counter(&a).await;
    let (single, single_count) = counter(&b).await;

    let twice = view(t, None, "v-anon", NOON - 3_600_000);
    let events = vec![
        view(t, Some("u1"), "v1", NOON - 7_200_000),
        twice.clone(),
        order(t, "o1", "pending", NOON - 600_000),
        view(t, Some("u1"), "v1", NOON - 60_000),
        // The same event id again in the same batch: counted once.
        twice,
        payment(t, "o1", "captured", 1_000, NOON - 500_000),
        order(t, "o1", "completed", NOON - 420_000),
        // Payments sends the running total refunded.
        payment(t, "o1", "partially_refunded", 300, NOON - 300_000),
        view(t, Some("u2"), "v2", NOON),
        // The next day's first view.
        view(t, None, "v3", NOON + DAY_MS),
        // Not a fact: ignored.
        event(t, "analytics.other", "x", json!({})),
    ];
    let ds = deliveries(&events);
    both(&batch_count, &single_count, &ds).await;
    let counted = two_days(&batched, t).await;
    assert_eq!(counted, two_days(&single, t).await);
    assert!(counted[0].3.contains("views: 4"), "{counted:?}");
    assert!(counted[0].3.contains("orders_completed: 1"), "{counted:?}");
    for r in [&batched, &single] {
        let (visitors, _) = r.user_data(t, "u1").await.unwrap();
        assert_eq!(visitors, vec![("v1".to_string(), NOON - 7_200_000)]);
    }

    // The same batch again (a redelivery): nothing more is counted.
    let refs: Vec<&Delivery> = ds.iter().collect();
    let again = batch_count.handle_batch(&refs).await;
    assert!(again.iter().all(Result::is_ok), "{again:?}");
    assert_eq!(two_days(&batched, t).await, counted);

    // The first day closes (version 1); two late views of it in one batch
    // correct it twice, as two batches of one would; a view of the open day
    // in the same batch is counted there.
    for (clock, r) in [(&a, &batched), (&b, &single)] {
        clock.set_ms(NOON + DAY_MS);
        assert_eq!(r.close_due().await.unwrap().len(), 1);
    }
    let late = deliveries(&[
        view(t, None, "v4", NOON + 1_000),
        view(t, None, "v5", NOON + 2_000),
        view(t, None, "v4", NOON + DAY_MS + 1_000),
    ]);
    both(&batch_count, &single_count, &late).await;
    let corrected = two_days(&batched, t).await;
    assert_eq!(corrected, two_days(&single, t).await);
    assert_eq!((corrected[0].1, corrected[0].2), (true, 3), "{corrected:?}");
    assert!(corrected[0].3.contains("views: 6"), "{corrected:?}");
    assert!(corrected[1].3.contains("views: 2"), "{corrected:?}");
}
