//! (c) the Kafka adapter on the native broker: keyed messages with headers in a
//! consumer group, resume from the committed offset after a restart, DLQ; and
//! the event contract suite at 50,000 messages, including a broker restart.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use shopstream_platform::{
    clock::SystemClock,
    events::{
        Envelope, EventBus, contract,
        dedupe::PgDeduper,
        kafka::{KafkaBus, KafkaSettings},
    },
    ids::SystemIdGen,
};
use shopstream_runtime::{Kind, testkit};

async fn bus() -> Arc<dyn EventBus> {
    let stack = testkit::stack().await;
    Arc::new(
        KafkaBus::new(KafkaSettings::from_env(&stack.endpoints.kafka_brokers).unwrap()).unwrap(),
    )
}

fn contract_messages() -> usize {
    std::env::var("SHOPSTREAM_CONTRACT_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000)
}

#[tokio::test(flavor = "multi_thread")]
async fn keyed_messages_with_headers_resume_from_the_committed_offset() {
    let bus = bus().await;
    let topic = testkit::unique("it_orders");
    bus.ensure_topic(&topic, 3).await.unwrap();
    let events: Vec<Envelope> = (0..1_000)
        .map(|i| {
            let mut e = Envelope::new(
                "order.state_changed",
                1,
                "default",
                &format!("order-{}", i % 37),
                &serde_json::json!({ "n": i }),
                &SystemClock,
                &SystemIdGen,
            )
            .unwrap();
            e.headers.insert("x-origin".into(), "it".into());
            e
        })
        .collect();
    bus.publish_batch(&topic, &events).await.unwrap();

    let group = format!("{topic}-g");
    let topics = vec![topic.clone()];
    let mut seen = BTreeSet::new();
    let mut sub = bus.subscribe(&group, &topics).await.unwrap();
    while seen.len() < 400 {
        if let Some(d) = sub.next(Duration::from_secs(1)).await.unwrap() {
            assert_eq!(d.envelope.headers["x-origin"], "it");
            assert_eq!(d.envelope.event_type, "order.state_changed");
            assert!(seen.insert(d.envelope.id), "duplicate before any restart");
            sub.ack(&d).await.unwrap();
        }
    }
    sub.close().await.unwrap();

    // A new member of the same group resumes exactly after what was committed.
    let mut sub = bus.subscribe(&group, &topics).await.unwrap();
    let mut duplicates = 0;
    let mut idle = 0;
    while seen.len() < 1_000 && idle < 60 {
        match sub.next(Duration::from_secs(1)).await.unwrap() {
            Some(d) => {
                idle = 0;
                if !seen.insert(d.envelope.id) {
                    duplicates += 1;
                }
                sub.ack(&d).await.unwrap();
            }
            None => idle += 1,
        }
    }
    sub.close().await.unwrap();
    assert_eq!(seen.len(), 1_000, "lost events after restart");
    assert_eq!(duplicates, 0, "a graceful close must commit every ack");
    let expected: BTreeSet<_> = events.iter().map(|e| e.id).collect();
    assert_eq!(seen, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poison_message_goes_to_the_dlq_and_the_consumer_carries_on() {
    // Dedupe in the consumer's own Postgres database, as services do.
    let pool = testkit::stack().await.database("it_dlq").await;
    let dedupe = Arc::new(PgDeduper::new(pool).await.unwrap());
    contract::dlq_routing(bus().await, dedupe, &testkit::unique("it_dlq")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn contract_unacknowledged_events_are_redelivered_after_a_crash() {
    contract::redelivery_after_crash_before_ack(bus().await, &testkit::unique("it_redeliver"))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn contract_order_and_no_loss_across_consumer_restarts_at_scale() {
    let n = contract_messages();
    let r = contract::ordered_no_loss_across_consumer_restarts(
        bus().await,
        &testkit::unique("it_contract"),
        n,
        500,
    )
    .await;
    eprintln!(
        "kafka contract: {} messages, {} keys, {} restarts, {} duplicates redelivered, publish {:.0}/s, consume {:.0}/s",
        r.messages, r.keys, r.restarts, r.duplicates, r.publish_per_s, r.consume_per_s
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn contract_lag_follows_the_groups_commits() {
    contract::lag_follows_the_groups_commits(bus().await, &testkit::unique("it_lag")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn contract_no_loss_across_a_broker_restart() {
    // A broker of its own, so restarting it cannot disturb other tests.
    let (stack, brokers) = crate::consumer_stall::private_broker("broker-restart").await;
    let bus: Arc<dyn EventBus> =
        Arc::new(KafkaBus::new(KafkaSettings::from_env(&brokers).unwrap()).unwrap());
    let restart_stack = stack.clone();
    contract::survives_broker_restart(bus, "restart.contract", 20_000, || async move {
        // kill -9: acknowledged events must survive a crash, not just a clean stop
        restart_stack.kill_component(Kind::Kafka).await;
        restart_stack.start_component(Kind::Kafka).await.unwrap();
    })
    .await;
    stack.down(true).await.unwrap();
}
