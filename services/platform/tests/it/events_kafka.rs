//! (c) the Kafka adapter on the native broker: keyed messages with headers in a
//! consumer group, resume from the committed offset after a restart, DLQ; the
//! event contract suite at 50,000 messages, including a broker restart, on
//! the bus services use (event doorbell included); and an idle consumer that
//! does not spin.

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

/// The bus every service builds: the environment's settings and the event
/// doorbell on the stack's Redis, so the contract suite covers consumers
/// that pause while idle.
async fn bus() -> Arc<dyn EventBus> {
    KafkaBus::connect(&testkit::stack().await.endpoints).unwrap()
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

/// Requests the consumers of `group` in this process sent, as `/metrics`
/// shows them (librdkafka's statistics, reported every `stats_interval`).
fn requests_of(group: &str, request: Option<&str>) -> f64 {
    let text = shopstream_platform::metrics::Metrics::new("it").render();
    let group = format!("group=\"{group}\"");
    let request = request.map(|r| format!("request=\"{r}\""));
    let mut labels = vec![group.as_str()];
    labels.extend(request.as_deref());
    shopstream_platform::metrics::sum_series(
        &text,
        "shopstream_kafka_consumer_requests_total",
        &labels,
    )
}

/// Records a driven subscription received.
type Received = Arc<std::sync::Mutex<Vec<Envelope>>>;

/// Drives `sub` as the consumer runner does (`next` with a short wait) until
/// `stop`, keeping every record it receives in the returned list.
fn drive(
    mut sub: Box<dyn shopstream_platform::events::Subscription>,
    stop: tokio_util::sync::CancellationToken,
) -> (Received, tokio::task::JoinHandle<()>) {
    let got = Received::default();
    let kept = got.clone();
    let task = tokio::spawn(async move {
        while !stop.is_cancelled() {
            if let Some(d) = sub.next(Duration::from_millis(250)).await.unwrap() {
                sub.ack(&d).await.unwrap();
                kept.lock().unwrap().push(d.envelope);
            }
        }
        sub.close().await.unwrap();
    });
    (got, task)
}

/// `testkit::eventually` over a condition read without awaiting.
async fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    testkit::eventually(what, limit, || std::future::ready(done().then_some(()))).await
}

/// An idle consumer on the event doorbell pauses its partitions: over a
/// window with nothing published it sends the broker at most a few requests
/// a second (heartbeats and the safety check), counted by librdkafka's own
/// statistics, while the same consumer without the doorbell sends a fetch
/// every few milliseconds. A record published afterwards still arrives,
/// woken by the doorbell alone (the safety check is an hour away), and a
/// ring for another topic does not wake it.
/// `first_offset_from`, the scenario verdict's evidence when a group still
/// lags: a fetch from an offset inside a published batch returns that
/// record, and a fetch from the end returns nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_fetch_from_an_offset_returns_that_record_and_nothing_past_the_end() {
    let stack = testkit::stack().await;
    let bus =
        KafkaBus::new(KafkaSettings::from_env(&stack.endpoints.kafka_brokers).unwrap()).unwrap();
    let topic = testkit::unique("it_first_offset");
    bus.ensure_topic(&topic, 1).await.unwrap();
    let events: Vec<Envelope> = (0..5)
        .map(|i| {
            Envelope::new(
                "test.event",
                1,
                "default",
                "k",
                &serde_json::json!({ "n": i }),
                &SystemClock,
                &SystemIdGen,
            )
            .unwrap()
        })
        .collect();
    bus.publish_batch(&topic, &events).await.unwrap();
    let wait = Duration::from_secs(10);
    for from in [0, 3, 4] {
        assert_eq!(
            bus.first_offset_from(&topic, 0, from, wait).await.unwrap(),
            Some(from),
            "a fetch from {from}"
        );
    }
    assert_eq!(
        bus.first_offset_from(&topic, 0, 5, Duration::from_secs(2))
            .await
            .unwrap(),
        None,
        "nothing past the end"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_consumer_on_the_doorbell_does_not_ask_the_broker_for_nothing() {
    use shopstream_platform::events::doorbell::Doorbell;
    let stack = testkit::stack().await;
    let settings = || KafkaSettings {
        stats_interval: Some(Duration::from_secs(1)),
        ..KafkaSettings::from_env(&stack.endpoints.kafka_brokers).unwrap()
    };
    let quiet = KafkaBus::new(KafkaSettings {
        doorbell: Some(Arc::new(Doorbell::new(&stack.endpoints.redis_url).unwrap())),
        doorbell_safety: Duration::from_secs(3600),
        ..settings()
    })
    .unwrap();
    let spinning = KafkaBus::new(settings()).unwrap();

    let topic = testkit::unique("it_idle");
    let other = testkit::unique("it_idle_other");
    quiet.ensure_topic(&topic, 3).await.unwrap();
    quiet.ensure_topic(&other, 1).await.unwrap();
    let (quiet_group, spinning_group) = (format!("{topic}-quiet"), format!("{topic}-spin"));
    let topics = vec![topic.clone()];
    let stop = tokio_util::sync::CancellationToken::new();
    let (quiet_got, quiet_task) = drive(
        quiet.subscribe(&quiet_group, &topics).await.unwrap(),
        stop.clone(),
    );
    let (spinning_got, spinning_task) = drive(
        spinning.subscribe(&spinning_group, &topics).await.unwrap(),
        stop.clone(),
    );

    // Joining the group and the first fetches are not "idle": wait until
    // both consumers reported statistics and the quiet one's fetch count
    // stood still over two reports (it paused), then count over a window of
    // its own.
    let mut last_fetches = (f64::NAN, tokio::time::Instant::now());
    wait_until(
        Duration::from_secs(30),
        "the doorbell consumer stops fetching",
        || {
            let f = requests_of(&quiet_group, Some("Fetch"));
            let now = tokio::time::Instant::now();
            if f != last_fetches.0 {
                last_fetches = (f, now);
            }
            f > 0.0
                && requests_of(&spinning_group, None) > 0.0
                && now - last_fetches.1 >= Duration::from_millis(2_500)
        },
    )
    .await;
    // The measurement itself: requests counted over a fixed window.
    let window = Duration::from_secs(8);
    let (q0, s0) = (
        requests_of(&quiet_group, None),
        requests_of(&spinning_group, None),
    );
    let qf0 = requests_of(&quiet_group, Some("Fetch"));
    tokio::time::sleep(window).await;
    let per_s = |a: f64, b: f64| (b - a) / window.as_secs_f64();
    let quiet_rate = per_s(q0, requests_of(&quiet_group, None));
    let spinning_rate = per_s(s0, requests_of(&spinning_group, None));
    let quiet_fetches = requests_of(&quiet_group, Some("Fetch")) - qf0;
    eprintln!(
        "idle consumer: {quiet_rate:.1} requests/s with the doorbell ({quiet_fetches} fetches in {window:?}), \
         {spinning_rate:.1} requests/s without"
    );
    assert!(
        spinning_rate > 20.0,
        "the measure sees a fetching consumer: {spinning_rate:.1} requests/s"
    );
    assert!(
        quiet_rate <= 3.0,
        "an idle consumer on the doorbell sent {quiet_rate:.1} requests/s"
    );

    // A ring for another topic leaves it asleep...
    let wakes = || {
        shopstream_platform::metrics::sum_series(
            &shopstream_platform::metrics::Metrics::new("it").render(),
            "shopstream_event_consumer_wakes_total",
            &[&format!("group=\"{quiet_group}\"")],
        )
    };
    let event = |n: i32| {
        Envelope::new(
            "order.state_changed",
            1,
            "default",
            "k",
            &serde_json::json!({ "n": n }),
            &SystemClock,
            &SystemIdGen,
        )
        .unwrap()
    };
    let before = wakes();
    quiet.publish(&other, &event(0)).await.unwrap();
    // An absence can only be watched over a window: a wake would show
    // within milliseconds of the ring.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        wakes(),
        before,
        "a ring for {other} woke a consumer of {topic}"
    );
    // ...one for its own topic wakes it, and the record arrives.
    let sent = event(1);
    quiet.publish(&topic, &sent).await.unwrap();
    wait_until(
        Duration::from_secs(10),
        "the record reaches both consumers",
        || !quiet_got.lock().unwrap().is_empty() && !spinning_got.lock().unwrap().is_empty(),
    )
    .await;
    stop.cancel();
    quiet_task.await.unwrap();
    spinning_task.await.unwrap();
    let ids = |r: &Received| r.lock().unwrap().iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(
        ids(&quiet_got),
        vec![sent.id],
        "the doorbell woke the consumer"
    );
    assert_eq!(ids(&spinning_got), vec![sent.id]);
    assert!(wakes() > before);
}
