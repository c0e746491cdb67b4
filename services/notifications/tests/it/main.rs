//! Notifications against the shared test stack: a saga step published on
//! `order.lifecycle` comes out on the realtime fan-out as a live update for its
//! order, once, even when the broker delivers the event twice.

mod dsar;
mod email;

use std::time::Duration;

use futures::StreamExt;
use shopstream_notifications::{
    Config, Server, Topics,
    domain::OrderStep,
    mailer::{self, MailerConfig},
};
use shopstream_platform::{
    clock::SystemClock,
    events::{Envelope, kafka::KafkaBus},
    ids::SystemIdGen,
    realtime::{self, LiveEvent},
};
use shopstream_runtime::testkit;
use uuid::Uuid;

fn step(order_id: Uuid, seq: u32) -> OrderStep {
    OrderStep {
        order_id: order_id.to_string(),
        user_id: "buyer".into(),
        seq,
        step: if seq == 1 { "reserve" } else { "authorize" }.into(),
        outcome: "succeeded".into(),
        state: if seq == 1 { "reserved" } else { "authorized" }.into(),
        cancel_reason: None,
        detail: format!("step {seq}"),
        attempts: 1,
        at_ms: 1_000 + i64::from(seq),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_becomes_one_live_update_even_when_delivered_twice() {
    let stack = testkit::stack().await;
    // Topics of its own: a new consumer group reads from the start, and the
    // shared topics hold every other test's events.
    let topics = Topics {
        orders: testkit::unique("order.lifecycle"),
        payments: testkit::unique("payment.events"),
    };
    let _service = testkit::spawn_service::<Server>(|service| Config {
        service,
        database: testkit::unique("it_notifications"),
        consumer_group: testkit::unique("it-notifications"),
        topics: topics.clone(),
        // Steps write no e-mail: neither is called.
        identity_grpc: "http://127.0.0.1:9".into(),
        mailer: MailerConfig {
            stream: testkit::unique(mailer::STREAM),
            smtp: "127.0.0.1:9".into(),
            from: "orders@shopstream.test".into(),
            max_attempts: 1,
            backoff_base: Duration::from_millis(10),
            backoff_max: Duration::from_millis(10),
            consumer: "mailer-1".into(),
            failpoint: None,
        },
        mail_sink: None,
    })
    .await;

    // Listen where a gateway would: the tenant's pattern on the fan-out.
    let tenant = testkit::unique("tenant");
    let client = redis::Client::open(stack.endpoints.redis_url.as_str()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub
        .psubscribe(realtime::tenant_pattern(&tenant))
        .await
        .unwrap();
    let mut live = pubsub.into_on_message();

    let bus = KafkaBus::connect(&stack.endpoints).unwrap();
    let order = Uuid::now_v7();
    let envelope = |seq: u32| {
        Envelope::new(
            "order.step_recorded",
            1,
            &tenant,
            &order.to_string(),
            &step(order, seq),
            &SystemClock,
            &SystemIdGen,
        )
        .unwrap()
    };
    let first = envelope(1);
    // The same event twice (as after a producer retry), then the next step.
    bus.publish(&topics.orders, &first).await.unwrap();
    bus.publish(&topics.orders, &first).await.unwrap();
    bus.publish(&topics.orders, &envelope(2)).await.unwrap();

    let mut got: Vec<LiveEvent> = Vec::new();
    while got.last().is_none_or(|e| e.seq < 2) {
        let msg = tokio::time::timeout(testkit::READY_TIMEOUT, live.next())
            .await
            .expect("live updates within the timeout")
            .expect("the pub/sub stream stays open");
        let channel = msg.get_channel_name().to_string();
        let event: LiveEvent = serde_json::from_str(&msg.get_payload::<String>().unwrap()).unwrap();
        assert_eq!(channel, format!("rt:{tenant}:order:{order}"));
        got.push(event);
    }
    let seqs: Vec<u64> = got.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2], "each step once, in order");
    assert_eq!(got[0].topic, format!("order:{order}"));
    assert_eq!(got[0].kind, "order.step");
    assert_eq!(got[0].committed_ms, first.occurred_at_ms);
    assert_eq!(got[0].data["step"], "reserve");
    assert_eq!(got[0].data["detail"], "step 1");
}
