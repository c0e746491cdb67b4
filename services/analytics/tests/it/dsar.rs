//! Analytics as a DSAR participant: a shopper's actions before and after
//! signing in (one visitor id) pass the contract, counted through the
//! service's own handler in process and published on `analytics.raw` for the
//! service over gRPC; the open day is counted again without the subject.

use std::sync::Arc;

use serde_json::json;
use shopstream_analytics::{
    ACTION_EVENT, Config, Count, RAW_TOPIC, Server,
    domain::Day,
    dsar::{self, Participant},
    store::Rollups,
};
use shopstream_dsar::{
    Subject,
    contract::{self, Marker},
};
use shopstream_platform::{
    clock::{ManualClock, SystemClock},
    events::{Delivery, Envelope, kafka::KafkaBus, runner::Handler},
    ids::{IdGen, SystemIdGen},
    metrics::Metrics,
};
use shopstream_runtime::testkit;

/// 2026-06-01T12:00:00Z.
const NOON: i64 = 1_780_272_000_000 + 12 * 3_600_000;

/// A shopper's action as the gateway publishes it.
fn action(s: &Subject, signed_in: bool, visitor: &str, what: &str, ts_ms: i64) -> Envelope {
    let user = signed_in.then(|| s.user_id.to_string());
    Envelope::new(
        ACTION_EVENT,
        1,
        &s.tenant,
        visitor,
        &json!({"user_id": user, "visitor_id": visitor, "action": what,
            "object_id": "p1", "ts_ms": ts_ms, "device": "mobile",
            "referrer": "https://example.test/"}),
        &SystemClock,
        &SystemIdGen,
    )
    .unwrap()
}

/// A view while signed out, then (the same visitor) a search and an add to
/// cart signed in: the visitor is the subject's, and so are all three.
fn actions(s: &Subject, ts_ms: i64) -> (String, Vec<Envelope>) {
    let visitor = SystemIdGen.new_id().to_string();
    let events = vec![
        action(s, false, &visitor, "view", ts_ms),
        action(s, true, &visitor, "search", ts_ms + 60_000),
        action(s, true, &visitor, "add_to_cart", ts_ms + 120_000),
    ];
    (visitor, events)
}

fn markers(visitor: &str, events: &[Envelope]) -> Vec<Marker> {
    vec![
        Marker::new(dsar::VISITORS, visitor),
        // The action before signing in.
        Marker::new(dsar::FACTS, events[0].id.to_string()),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn analytics_passes_the_dsar_contract_and_recounts_the_open_day() {
    let stack = testkit::stack().await;
    let pool = stack.database("it_analytics_dsar").await;
    shopstream_platform::db::migrate(&pool, &shopstream_analytics::MIGRATOR)
        .await
        .unwrap();
    let clock = ManualClock::new(NOON);
    let rollups = Arc::new(Rollups::load(pool, Arc::new(clock)).await.unwrap());
    let count = Count::new(rollups.clone(), &Metrics::new("it"));
    let p = Participant::new(rollups.clone());
    let tenant = testkit::unique("t");
    contract::check(&p, &tenant, |s| {
        let count = &count;
        async move {
            let (visitor, events) = actions(&s, NOON);
            for (offset, envelope) in events.iter().enumerate() {
                let d = Delivery {
                    topic: RAW_TOPIC.into(),
                    partition: 0,
                    offset: offset as i64,
                    envelope: envelope.clone(),
                };
                count.handle(&d).await.unwrap();
            }
            markers(&visitor, &events)
        }
    })
    .await;
    // The day is open: its totals are the bystander's alone now.
    let day = Day::of(NOON);
    let [row] = rollups
        .days(&tenant, day, day)
        .await
        .unwrap()
        .try_into()
        .unwrap();
    assert!(!row.closed);
    assert_eq!(
        (row.stats.visitors, row.stats.views, row.stats.searches),
        (1, 1, 1)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn analytics_passes_the_dsar_contract_over_grpc() {
    let stack = testkit::stack().await;
    let database = testkit::unique("it_analytics");
    let svc = testkit::spawn_service::<Server>({
        let database = database.clone();
        move |service| Config {
            service,
            database,
            consumer_group: testkit::unique("it-analytics"),
            batch_max: shopstream_analytics::BATCH_MAX,
            clock: Arc::new(SystemClock),
        }
    })
    .await;
    let pool = shopstream_platform::db::connect(&stack.endpoints.postgres_url, &database)
        .await
        .unwrap();
    let bus = KafkaBus::connect(&stack.endpoints).unwrap();
    let client = shopstream_dsar::Client::new("analytics", &svc.grpc_url()).unwrap();
    let now = shopstream_platform::clock::Clock::now_ms(&SystemClock);
    contract::check(&client, &testkit::unique("t"), |s| {
        let (bus, pool) = (&bus, &pool);
        async move {
            let (visitor, events) = actions(&s, now);
            for e in &events {
                bus.publish(RAW_TOPIC, e).await.unwrap();
            }
            // Counted once the last one is stored (one visitor, one partition).
            let last = events[2].id.to_string();
            testkit::eventually("the actions counted", testkit::READY_TIMEOUT, || async {
                let n: i64 = sqlx::query_scalar("SELECT count(*) FROM facts WHERE id = $1")
                    .bind(&last)
                    .fetch_one(pool)
                    .await
                    .unwrap();
                (n == 1).then_some(())
            })
            .await;
            markers(&visitor, &events)
        }
    })
    .await;
}
