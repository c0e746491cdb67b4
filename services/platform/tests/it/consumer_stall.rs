//! A consumer on a broker that was paused (SIGSTOP, then SIGCONT) as in the
//! report of issue 16: the Kafka adapter consumes again, the runner catches
//! its group up, and a pause the broker cannot recover from is reported, not
//! silent. Each test runs a broker of its own, so pausing it cannot disturb
//! other tests. Also: `broker-slow`.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use shopstream_platform::{
    clock::SystemClock,
    events::{
        Delivery, Envelope, EventBus,
        dedupe::MemoryDeduper,
        kafka::{KafkaBus, KafkaSettings},
        runner::{self, ConsumerHealth, Handler, HandlerError, RunnerConfig},
    },
    ids::SystemIdGen,
    metrics::{Metrics, sum_series},
};
use shopstream_runtime::{Kind, Stack, testkit};
use tokio_util::sync::CancellationToken;

/// The pause of the report, which outlasted the 10 s session timeout the
/// consumers had then (now [`shopstream_platform::events::kafka::SESSION_TIMEOUT`]).
const PAUSE: Duration = Duration::from_secs(13);
/// Bound on waiting for events after the pause.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(120);

/// A broker of its own on a free port, under a state directory of its own.
pub(crate) async fn private_broker(name: &str) -> (Stack, String) {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut ports = shopstream_platform::config::Ports::TEST;
    ports.kafka = port;
    let root = testkit::stack_dir().with_file_name(testkit::unique(name));
    let stack = Stack::new(&root, ports, testkit::shopstream_bin());
    stack.start_component(Kind::Kafka).await.unwrap();
    (stack, format!("127.0.0.1:{port}"))
}

fn signal(stack: &Stack, sig: &str) {
    let pid = stack.running_pid(Kind::Kafka).expect("broker running");
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill {sig} {pid}");
}

fn events(from: usize, n: usize) -> Vec<Envelope> {
    (from..from + n)
        .map(|i| {
            Envelope::new(
                "stall.test",
                1,
                "default",
                &format!("k{}", i % 17),
                &serde_json::json!({ "i": i }),
                &SystemClock,
                &SystemIdGen,
            )
            .unwrap()
        })
        .collect()
}

fn log_to_stderr() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_test_writer()
        .try_init();
}

/// The adapter alone: a member that was in the group when the broker froze
/// receives what is published after it thaws, without being recreated.
#[tokio::test(flavor = "multi_thread")]
async fn a_subscription_consumes_again_after_a_13_s_broker_pause() {
    log_to_stderr();
    let (stack, brokers) = private_broker("stall-adapter").await;
    let bus: Arc<dyn EventBus> =
        Arc::new(KafkaBus::new(KafkaSettings::from_env(&brokers).unwrap()).unwrap());
    let topic = "stall.adapter".to_string();
    let topics = vec![topic.clone()];
    let group = "stall-adapter-g";
    bus.ensure_topic(&topic, 3).await.unwrap();
    bus.publish_batch(&topic, &events(0, 100)).await.unwrap();

    let mut sub = bus.subscribe(group, &topics).await.unwrap();
    let mut seen = BTreeSet::new();
    while seen.len() < 100 {
        if let Some(d) = sub.next(Duration::from_secs(1)).await.unwrap() {
            seen.insert(d.envelope.id);
            sub.ack(&d).await.unwrap();
        }
    }

    signal(&stack, "-STOP");
    // Keep polling through the pause, as the runner does.
    let paused = Instant::now();
    let mut errors = Vec::new();
    while paused.elapsed() < PAUSE {
        match sub.next(Duration::from_millis(250)).await {
            Ok(Some(d)) => panic!("a record while the broker is stopped: {d:?}"),
            Ok(None) => {}
            Err(e) => errors.push(e.to_string()),
        }
    }
    signal(&stack, "-CONT");
    eprintln!(
        "during the pause next() failed {} times: {errors:?}",
        errors.len()
    );

    let later = events(100, 100);
    bus.publish_batch(&topic, &later).await.unwrap();
    let want: BTreeSet<_> = later.iter().map(|e| e.id).collect();
    let thawed = Instant::now();
    let mut got = BTreeSet::new();
    let mut after_errors = Vec::new();
    while !want.is_subset(&got) && thawed.elapsed() < CATCH_UP_LIMIT {
        match sub.next(Duration::from_millis(250)).await {
            Ok(Some(d)) => {
                got.insert(d.envelope.id);
                sub.ack(&d).await.unwrap();
            }
            Ok(None) => {}
            Err(e) => after_errors.push(e.to_string()),
        }
    }
    let lag = bus.lag(group, &topics).await.unwrap();
    eprintln!(
        "after the pause: {} of 100 new events in {:?}; next() failed {} times: {after_errors:?}; lag {lag:?}",
        want.intersection(&got).count(),
        thawed.elapsed(),
        after_errors.len(),
    );
    sub.close().await.unwrap();
    if !want.is_subset(&got) {
        let log = std::fs::read_to_string(stack.log_path(Kind::Kafka)).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        eprintln!("broker log, last lines first:\n{}", tail.join("\n"));
    }
    stack.down(true).await.unwrap();
    assert!(
        want.is_subset(&got),
        "the subscription received {} of the 100 events published after the pause",
        want.intersection(&got).count()
    );
}

/// Counts distinct events handled.
#[derive(Default)]
struct Collect {
    ids: Mutex<BTreeSet<uuid::Uuid>>,
}

#[async_trait]
impl Handler for Collect {
    async fn handle(&self, d: &Delivery) -> Result<(), HandlerError> {
        self.ids.lock().unwrap().insert(d.envelope.id);
        Ok(())
    }
}

/// A runner in group `{name}-g` on a broker of its own that handled `n`
/// events, was paused for [`PAUSE`] (SIGSTOP, SIGCONT), and has `n` more
/// published after it thawed.
struct PausedRunner {
    stack: Stack,
    handler: Arc<Collect>,
    health: ConsumerHealth,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    /// When the broker was let go again.
    thawed: Instant,
}

impl PausedRunner {
    async fn start(
        name: &str,
        n: usize,
        settings: impl FnOnce(KafkaSettings) -> KafkaSettings,
        config: impl FnOnce(RunnerConfig) -> RunnerConfig,
    ) -> PausedRunner {
        log_to_stderr();
        let (stack, brokers) = private_broker(name).await;
        let bus: Arc<dyn EventBus> =
            Arc::new(KafkaBus::new(settings(KafkaSettings::from_env(&brokers).unwrap())).unwrap());
        let topic = format!("{name}.t");
        bus.ensure_topic(&topic, 3).await.unwrap();
        let cfg = config(RunnerConfig::new(&format!("{name}-g"), &[topic.as_str()]));
        let health = cfg.health.clone();
        let handler = Arc::new(Collect::default());
        let stop = CancellationToken::new();
        let task = tokio::spawn(runner::run_until_stopped(
            bus.clone(),
            Arc::new(MemoryDeduper::default()),
            handler.clone(),
            cfg,
            stop.clone(),
            Duration::from_secs(1),
        ));
        bus.publish_batch(&topic, &events(0, n)).await.unwrap();
        let r = PausedRunner {
            stack,
            handler,
            health,
            stop,
            task,
            thawed: Instant::now(),
        };
        r.until_handled(n, "before the pause").await;
        signal(&r.stack, "-STOP");
        tokio::time::sleep(PAUSE).await;
        signal(&r.stack, "-CONT");
        let r = PausedRunner {
            thawed: Instant::now(),
            ..r
        };
        bus.publish_batch(&topic, &events(n, n)).await.unwrap();
        r
    }

    fn handled(&self) -> usize {
        self.handler.ids.lock().unwrap().len()
    }

    async fn until_handled(&self, n: usize, what: &str) {
        let h = self.handler.clone();
        testkit::eventually(&format!("{n} handled {what}"), CATCH_UP_LIMIT, move || {
            std::future::ready((h.ids.lock().unwrap().len() >= n).then_some(()))
        })
        .await;
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
        self.stack.down(true).await.unwrap();
    }
}

/// The service's view: a runner on the paused broker catches up once it
/// thaws, its lag on `/metrics` returns to 0, and it is ready.
#[tokio::test(flavor = "multi_thread")]
async fn the_runner_catches_up_after_a_13_s_broker_pause() {
    let metrics = Metrics::new("stall-test");
    let health = ConsumerHealth::new(&metrics, "stall-runner-g");
    let r = PausedRunner::start("stall-runner", 100, |s| s, |c| RunnerConfig { health, ..c }).await;
    r.until_handled(200, "after the pause").await;
    let caught_up_after = r.thawed.elapsed();
    let lag_gauge = |want: f64| {
        let m = metrics.clone();
        move || {
            let text = m.render();
            let v = sum_series(
                &text,
                "shopstream_consumer_lag",
                &["topic=\"stall-runner.t\""],
            );
            let present = text.contains("shopstream_consumer_lag{");
            std::future::ready((present && v == want).then_some(()))
        }
    };
    testkit::eventually("the lag gauge reads 0", CATCH_UP_LIMIT, lag_gauge(0.0)).await;
    let text = metrics.render();
    eprintln!(
        "caught up {caught_up_after:?} after the broker thawed; restarts: stalled {}, bus {}; ready: {:?}\n{}",
        r.health.restarts("stalled"),
        r.health.restarts("bus"),
        r.health.status(),
        text.lines()
            .filter(|l| l.starts_with("shopstream_consumer"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(r.health.status(), Ok(()));
    r.stop().await;
}

/// Past the session timeout tansu 0.6.0 may keep the expired member as the
/// group's leader for ever (see `events::kafka`): then no consumer can
/// recover, and what must not happen is silence. Either the group catches
/// up, or its runner reports the stall: an error, a restart counted with
/// reason `stalled`, readiness failing. A short session timeout makes the
/// 13 s pause exceed it.
#[tokio::test(flavor = "multi_thread")]
async fn a_pause_past_the_session_timeout_ends_caught_up_or_reported() {
    let r = PausedRunner::start(
        "stall-past",
        50,
        |s| KafkaSettings {
            session_timeout: Duration::from_secs(6),
            ..s
        },
        |c| RunnerConfig {
            stall_after: Duration::from_secs(8),
            lag_refresh: Duration::from_secs(1),
            ..c
        },
    )
    .await;
    let (h, hl) = (r.handler.clone(), r.health.clone());
    let outcome = testkit::eventually("caught up or reported", CATCH_UP_LIMIT, move || {
        let caught_up = h.ids.lock().unwrap().len() >= 100;
        let reported = hl.restarts("stalled") >= 1 && hl.status().is_err();
        std::future::ready(match (caught_up, reported) {
            (true, _) => Some("caught up"),
            (false, true) => Some("reported"),
            _ => None,
        })
    })
    .await;
    eprintln!(
        "after a pause past the session timeout: {outcome}; handled {}, stalls {}, restarts (stalled) {}, ready: {:?}",
        r.handled(),
        r.health.stalls("stalled"),
        r.health.restarts("stalled"),
        r.health.status()
    );
    if outcome == "reported" {
        let not_ready = r.health.status().unwrap_err();
        assert!(not_ready.contains("stall-past-g"), "{not_ready}");
    }
    r.stop().await;
}

fn broker_slow_300_ms(name: &str, component: &str) -> Option<i64> {
    (name == "broker-slow" && component == "kafka").then_some(300)
}

/// `broker-slow`: every publish and every fetch waits the fault's value.
#[tokio::test(flavor = "multi_thread")]
async fn broker_slow_delays_every_publish_and_fetch() {
    let brokers = testkit::stack().await.endpoints.kafka_brokers.clone();
    let slow = KafkaBus::new(KafkaSettings {
        fault_value: broker_slow_300_ms,
        ..KafkaSettings::from_env(&brokers).unwrap()
    })
    .unwrap();
    let topic = testkit::unique("it_broker_slow");
    slow.ensure_topic(&topic, 1).await.unwrap();
    let evs = events(0, 3);
    let started = Instant::now();
    for e in &evs {
        slow.publish(&topic, e).await.unwrap();
    }
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "3 publishes took {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    slow.publish_batch(&topic, &evs[..1]).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));

    let mut sub = slow
        .subscribe(&format!("{topic}-g"), std::slice::from_ref(&topic))
        .await
        .unwrap();
    let started = Instant::now();
    let mut fetched = 0;
    while fetched < 4 {
        if let Some(d) = sub.next(Duration::from_secs(1)).await.unwrap() {
            sub.ack(&d).await.unwrap();
            fetched += 1;
        }
    }
    assert!(
        started.elapsed() >= Duration::from_millis(1_200),
        "4 fetches took {:?}",
        started.elapsed()
    );
    sub.close().await.unwrap();
}
