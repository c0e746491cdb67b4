//! Analytics against the shared test stack, on a test clock: events published
//! on the three topics roll up into exactly what a recount of the same facts
//! gives; a redelivered event counts once; the day stays open at 00:04:59
//! and closes at 00:05 the next day (version 1); a late event corrects the
//! closed day and bumps its version; bad ranges are refused.

mod batch;
mod dsar;

use std::{sync::Arc, time::Duration};

use serde_json::json;
use shopstream_analytics::{
    Config, ORDER_TOPIC, PAYMENT_TOPIC, RAW_TOPIC, Server,
    domain::{self, Day, Fact},
    fact_of,
};
use shopstream_platform::{
    clock::ManualClock,
    events::{Envelope, EventBus, kafka::KafkaBus},
    grpc::with_tenant,
    ids::SystemIdGen,
};
use shopstream_proto::analytics::v1::{
    DailyStats, GetDailyStatsRequest, analytics_service_client::AnalyticsServiceClient,
};
use shopstream_runtime::testkit;
use tonic::transport::Channel;

/// 2026-06-01T00:00:00Z.
const DAY_START: i64 = 1_780_272_000_000;
const HOUR: i64 = 3_600_000;

struct Published {
    tenant: String,
    bus: std::sync::Arc<dyn EventBus>,
    clock: ManualClock,
    sent: Vec<(String, Envelope)>,
}

impl Published {
    async fn send(&mut self, topic: &str, event_type: &str, key: &str, payload: serde_json::Value) {
        let e = Envelope::new(
            event_type,
            1,
            &self.tenant,
            key,
            &payload,
            &self.clock,
            &SystemIdGen,
        )
        .unwrap();
        self.bus.publish(topic, &e).await.unwrap();
        self.sent.push((topic.to_string(), e));
    }

    async fn action(&mut self, visitor: &str, action: &str, ts_ms: i64) {
        self.send(
            RAW_TOPIC,
            "analytics.action",
            visitor,
            json!({"user_id": null, "visitor_id": visitor, "action": action,
                "object_id": "p1", "ts_ms": ts_ms, "device": "desktop", "referrer": ""}),
        )
        .await;
    }

    async fn order(&mut self, order: &str, state: &str, ts_ms: i64) {
        self.send(
            ORDER_TOPIC,
            "order.state_changed",
            order,
            json!({"order_id": order, "user_id": "u1", "state": state,
                "cancel_reason": (state == "cancelled").then_some("out_of_stock"),
                "total_minor": 1_000, "currency": "EUR", "reservation_id": "r", "ts_ms": ts_ms}),
        )
        .await;
    }

    async fn payment(&mut self, order: &str, status: &str, amount: i64, ts_ms: i64) {
        self.send(
            PAYMENT_TOPIC,
            "payment.status_changed",
            order,
            json!({"payment_id": "p", "order_id": order, "status": status,
                "amount_minor": amount, "currency": "EUR", "failure_code": "", "ts_ms": ts_ms}),
        )
        .await;
    }

    /// The facts of what was sent, as the service derives them (checkout
    /// durations filled from the placed times, as its store does).
    fn facts(&self) -> Vec<Fact> {
        let mut placed = std::collections::HashMap::new();
        let mut refunded = std::collections::HashMap::new();
        let mut out = Vec::new();
        for (_, e) in &self.sent {
            let Some(mut f) = fact_of(&e.event_type, &e.id.to_string(), &e.payload).unwrap() else {
                continue;
            };
            match &mut f {
                Fact::OrderPlaced {
                    order_id, ts_ms, ..
                } => {
                    placed.entry(order_id.clone()).or_insert(*ts_ms);
                }
                Fact::OrderCompleted {
                    order_id,
                    ts_ms,
                    checkout_ms,
                    ..
                } => {
                    *checkout_ms = placed.get(order_id).map(|p| (*ts_ms - p) as u64);
                }
                Fact::Refunded {
                    order_id,
                    amount_minor,
                    ..
                } => {
                    // Payments sends the running total; the fact is this refund.
                    let before = refunded
                        .insert(order_id.clone(), *amount_minor)
                        .unwrap_or(0);
                    *amount_minor -= before;
                }
                _ => {}
            }
            out.push(f);
        }
        out
    }
}

async fn days(
    c: &mut AnalyticsServiceClient<Channel>,
    tenant: &str,
    from: &str,
    to: &str,
) -> Result<Vec<DailyStats>, tonic::Status> {
    c.get_daily_stats(with_tenant(
        GetDailyStatsRequest {
            from_date: from.into(),
            to_date: to.into(),
            days: 0,
        },
        tenant,
    ))
    .await
    .map(|r| r.into_inner().days)
}

/// The row of `day` once it satisfies `ok`.
async fn day_when(
    c: &mut AnalyticsServiceClient<Channel>,
    tenant: &str,
    day: &str,
    what: &str,
    ok: impl Fn(&DailyStats) -> bool,
) -> DailyStats {
    testkit::eventually(what, testkit::READY_TIMEOUT, || {
        let mut c = c.clone();
        let ok = &ok;
        async move {
            let d = days(&mut c, tenant, day, day).await.ok()?;
            d.into_iter().next().filter(ok)
        }
    })
    .await
}

fn eur(m: &[shopstream_proto::common::v1::Money]) -> i64 {
    m.iter()
        .filter(|m| m.currency == "EUR")
        .map(|m| m.amount_minor)
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn rollups_equal_a_recount_the_day_closes_at_0005_and_a_late_event_corrects_it() {
    let stack = testkit::stack().await;
    let clock = ManualClock::new(DAY_START + 12 * HOUR);
    let svc = testkit::spawn_service::<Server>({
        let clock = clock.clone();
        move |service| Config {
            service,
            database: testkit::unique("it_analytics"),
            consumer_group: testkit::unique("it-analytics"),
            batch_max: shopstream_analytics::BATCH_MAX,
            clock: Arc::new(clock),
        }
    })
    .await;
    let mut c = AnalyticsServiceClient::connect(svc.grpc_url())
        .await
        .unwrap();
    let mut p = Published {
        tenant: testkit::unique("shop"),
        bus: KafkaBus::connect(&stack.endpoints).unwrap(),
        clock: clock.clone(),
        sent: Vec::new(),
    };
    let at = |h: i64, min: i64| DAY_START + h * HOUR + min * 60_000;

    // Two visitors: a browses twice an hour apart (two sessions) and buys;
    // b looks once. Two orders: one completes after 90 s, one is cancelled.
    p.action("va", "view", at(9, 0)).await;
    p.action("va", "search", at(9, 10)).await;
    p.action("va", "view", at(10, 30)).await;
    p.action("va", "add_to_cart", at(10, 31)).await;
    p.action("va", "checkout_started", at(10, 32)).await;
    p.action("vb", "view", at(11, 0)).await;
    p.order("o1", "pending", at(10, 33)).await;
    p.payment("o1", "captured", 1_000, at(10, 34)).await;
    p.order("o1", "completed", at(10, 33) + 90_000).await;
    p.order("o2", "pending", at(10, 40)).await;
    p.order("o2", "cancelled", at(10, 41)).await;
    p.payment("o1", "partially_refunded", 300, at(11, 30)).await;
    // A second refund: payments sends the running total (300 + 200).
    p.payment("o1", "partially_refunded", 500, at(11, 40)).await;
    // A redelivery (the same event id) counts once.
    let (topic, dup) = p.sent[0].clone();
    p.bus.publish(&topic, &dup).await.unwrap();

    let day = Day::of(DAY_START);
    let expected = domain::recount(day, &p.facts());
    let date = day.to_string();
    let got = day_when(&mut c, &p.tenant, &date, "every fact counted", |d| {
        d.orders_cancelled == 1 && eur(&d.refunds) == 500 && d.views == 3
    })
    .await;
    assert_eq!(got.date, "2026-06-01");
    assert_eq!(got.active_users, expected.visitors);
    assert_eq!((got.active_users, got.sessions), (2, 3));
    assert_eq!(got.sessions, expected.sessions);
    assert_eq!(
        (
            got.views,
            got.searches,
            got.add_to_carts,
            got.checkouts_started
        ),
        (
            expected.views,
            expected.searches,
            expected.add_to_carts,
            expected.checkouts_started
        )
    );
    assert_eq!(
        (
            got.orders_created,
            got.orders_completed,
            got.orders_cancelled
        ),
        (2, 1, 1)
    );
    assert_eq!(eur(&got.gross_sales), 1_000);
    assert_eq!(got.conversion_rate, expected.conversion);
    assert_eq!(got.p50_checkout_latency_ms, 90_000);
    assert_eq!(
        Some(u64::from(got.p95_checkout_latency_ms)),
        expected.checkout_p95_ms
    );
    assert!(!got.closed);
    assert_eq!(got.version, 0);
    // Per order, for the consistency check: the two refunds add up to the
    // running total payments last sent.
    let facts = c
        .get_order_facts(with_tenant(
            shopstream_proto::analytics::v1::GetOrderFactsRequest {
                order_ids: vec!["o1".into(), "o2".into(), "o3".into()],
            },
            &p.tenant,
        ))
        .await
        .unwrap()
        .into_inner()
        .orders;
    let o1 = facts.iter().find(|f| f.order_id == "o1").unwrap();
    assert!(o1.placed && o1.completed && !o1.cancelled);
    assert_eq!((o1.captured_minor, o1.refunded_minor), (1_000, 500));
    let o2 = facts.iter().find(|f| f.order_id == "o2").unwrap();
    assert!(o2.placed && o2.cancelled);
    assert!(facts.iter().all(|f| f.order_id != "o3"));

    // 00:04:59 the next day: still open. 00:05: closed, version 1.
    clock.set_ms(DAY_START + 24 * HOUR + 4 * 60_000 + 59_000);
    // A check that something does NOT happen has no condition to wait for:
    // give the closer (1 s tick) two ticks on the 00:04:59 clock, then look.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let open = days(&mut c, &p.tenant, &date, &date).await.unwrap();
    assert!(!open[0].closed, "closed before 00:05: {:?}", open[0]);
    clock.set_ms(DAY_START + 24 * HOUR + 5 * 60_000);
    let closed = day_when(&mut c, &p.tenant, &date, "the day closed", |d| d.closed).await;
    assert_eq!(closed.version, 1);
    assert_eq!(closed.views, got.views);

    // A late view of that day: counted into the closed day, version 2.
    p.action("vc", "view", at(23, 59)).await;
    let corrected = day_when(&mut c, &p.tenant, &date, "the late correction", |d| {
        d.version == 2
    })
    .await;
    assert!(corrected.closed);
    assert_eq!((corrected.views, corrected.active_users), (4, 3));
    let expected = domain::recount(day, &p.facts());
    assert_eq!(corrected.active_users, expected.visitors);
    assert_eq!(corrected.conversion_rate, expected.conversion);

    // The next day (today on the test clock) is open and empty; an empty
    // range asks for the week ending today.
    let week = days(&mut c, &p.tenant, "", "").await.unwrap();
    assert_eq!(week.len(), 7);
    assert_eq!(week[6].date, "2026-06-02");
    assert_eq!(week[5].date, "2026-06-01");
    assert_eq!(week[5].version, 2);
    assert_eq!(week[6].views, 0);

    // Bad ranges.
    for (from, to) in [
        ("2026-06-02", "2026-06-01"),
        ("2026-02-30", "2026-03-01"),
        ("2025-01-01", "2026-06-01"),
        ("june", ""),
    ] {
        let e = days(&mut c, &p.tenant, from, to).await.unwrap_err();
        assert_eq!(
            e.code(),
            tonic::Code::InvalidArgument,
            "{from}..{to}: {e:?}"
        );
    }
}
