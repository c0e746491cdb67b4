//! The Temporal workflow as a driver of `domain::saga`: happy path, a capture
//! that fails on every attempt (retries, then compensation), a declined card,
//! and idempotent creation. Inventory and payments are scripted through the
//! `SagaSteps` port so each test controls exactly what fails; the end-to-end
//! run over the real services is in the CLI's tests.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use shopstream_orders::{
    Orders,
    adapters::postgres::{MIGRATOR, PgOrders, TOPIC},
    domain::{
        checkout::{Price, RequestedLine},
        order::CancelReason,
        saga::{Command, Saga, Step},
    },
    driver,
    ports::{PriceBook, PriceError, SagaOrder, SagaSteps, StepReply, Transient},
    service::{
        EVENT_TYPE, OrderStateChanged, OrderStepRecorded, OrdersError, STEP_EVENT_TYPE,
        SagaStarter, saga_order,
    },
    workflow::{self, CheckoutActivities, CheckoutWorkflow, TemporalStarter},
};
use shopstream_platform::{
    clock::SystemClock,
    db,
    events::{
        EventBus,
        kafka::{KafkaBus, KafkaSettings},
    },
    faults,
    ids::SystemIdGen,
    outbox::{self, Relay},
    temporal::{self, PollerBehavior, Worker, WorkerOptions},
};
use shopstream_runtime::testkit;
use tokio_util::sync::CancellationToken;

/// Prices: every product "p-<sku>" has one SKU "<sku>" at 1250 EUR minor.
struct FixedPrices;

#[async_trait]
impl PriceBook for FixedPrices {
    async fn prices(
        &self,
        _: &str,
        product_id: &str,
    ) -> Result<BTreeMap<String, Price>, PriceError> {
        let sku = product_id
            .strip_prefix("p-")
            .ok_or_else(|| PriceError::UnknownProduct(product_id.into()))?;
        Ok(BTreeMap::from([(
            sku.to_string(),
            Price {
                amount_minor: 1250,
                currency: "EUR".into(),
            },
        )]))
    }
}

/// Scripted inventory and payments: the payment method decides the outcome
/// ("pm_card_visa" succeeds, "pm_card_chargeDeclined" is declined,
/// "pm_fail_capture" makes every capture attempt fail transiently,
/// "pm_fail_authorize" every authorize attempt, "pm_slow_finalize" the first
/// 4 finalize attempts).
#[derive(Default)]
struct Script {
    calls: Mutex<Vec<(String, String)>>,
}

impl Script {
    fn log(&self, o: &SagaOrder, step: &str) {
        self.calls
            .lock()
            .unwrap()
            .push((o.order_id.clone(), step.to_string()));
    }

    fn calls(&self, order_id: &str) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(o, _)| o == order_id)
            .map(|(_, s)| s.clone())
            .collect()
    }
}

fn done(id: &str) -> Result<StepReply, Transient> {
    Ok(StepReply::Done {
        id: id.to_string(),
        detail: format!("scripted {id}"),
    })
}

#[async_trait]
impl SagaSteps for Script {
    async fn reserve(&self, o: &SagaOrder) -> Result<StepReply, Transient> {
        self.log(o, "reserve");
        done(&format!("res-{}", o.order_id))
    }
    async fn authorize(&self, o: &SagaOrder) -> Result<StepReply, Transient> {
        self.log(o, "authorize");
        if o.payment_method == "pm_fail_authorize" {
            return Err(Transient("no answer from payments".into()));
        }
        if o.payment_method == "pm_card_chargeDeclined" {
            return Ok(StepReply::Rejected {
                reason: "payment_declined".into(),
                detail: "Your card was declined. (card_declined)".into(),
            });
        }
        done(&format!("pay-{}", o.order_id))
    }
    async fn capture(&self, o: &SagaOrder, payment_id: &str) -> Result<StepReply, Transient> {
        assert_eq!(payment_id, format!("pay-{}", o.order_id));
        self.log(o, "capture");
        if o.payment_method == "pm_fail_capture" {
            return Err(Transient("provider answered 500".into()));
        }
        done(payment_id)
    }
    async fn finalize(&self, o: &SagaOrder, reservation_id: &str) -> Result<StepReply, Transient> {
        assert_eq!(reservation_id, format!("res-{}", o.order_id));
        self.log(o, "finalize");
        let attempts = self
            .calls(&o.order_id)
            .iter()
            .filter(|c| *c == "finalize")
            .count();
        if o.payment_method == "pm_slow_finalize" && attempts <= 4 {
            return Err(Transient("inventory unavailable".into()));
        }
        done(reservation_id)
    }
    async fn refund(&self, o: &SagaOrder, payment_id: &str) -> Result<StepReply, Transient> {
        self.log(o, "refund");
        done(payment_id)
    }
    async fn cancel_intent(&self, o: &SagaOrder, payment_id: &str) -> Result<StepReply, Transient> {
        // No payment id: the authorize's answers were all lost.
        self.log(
            o,
            if payment_id.is_empty() {
                "cancel_intent by order"
            } else {
                "cancel_intent"
            },
        );
        done(payment_id)
    }
    async fn release(&self, o: &SagaOrder, reservation_id: &str) -> Result<StepReply, Transient> {
        self.log(o, "release");
        done(reservation_id)
    }
}

struct Env {
    orders: Orders,
    script: Arc<Script>,
    bus: Arc<dyn EventBus>,
}

/// The fault view is process-wide: the test that sets it holds this for
/// writing; every other test whose sagas (or service) read it, for reading.
pub static FAULT_VIEW: std::sync::LazyLock<tokio::sync::RwLock<()>> =
    std::sync::LazyLock::new(|| tokio::sync::RwLock::new(()));

/// Orders on a fresh database, a worker on a fresh task queue; runs `body`
/// while the worker runs on the same task (it is not Send).
async fn with_checkout<F, Fut>(body: F)
where
    F: FnOnce(Env) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let _view = FAULT_VIEW.read().await;
    checkout(body).await;
}

/// [`with_checkout`] for a caller that holds [`FAULT_VIEW`] itself.
async fn checkout<F, Fut>(body: F)
where
    F: FnOnce(Env) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let stack = testkit::stack().await;
    let e = &stack.endpoints;
    let pool = stack.database("orders").await;
    db::migrate(&pool, &MIGRATOR).await.unwrap();
    outbox::ensure_table(&pool).await.unwrap();
    let bus: Arc<dyn EventBus> =
        Arc::new(KafkaBus::new(KafkaSettings::new(&e.kafka_brokers)).unwrap());
    bus.ensure_topic(TOPIC, 3).await.unwrap();
    let relay = Relay::new(pool.clone(), bus.clone());
    let client = temporal::connect(&e.temporal_url, &e.temporal_namespace, "it-orders")
        .await
        .unwrap();
    let queue = testkit::unique("it_checkout");
    let orders = Orders {
        store: Arc::new(PgOrders::new(pool)),
        prices: Arc::new(FixedPrices),
        starter: Arc::new(TemporalStarter {
            client: client.clone(),
            task_queue: queue.clone(),
        }),
        clock: Arc::new(SystemClock),
        ids: Arc::new(SystemIdGen),
        relay: Some(relay.clone()),
    };
    let script = Arc::new(Script::default());
    let options = WorkerOptions::new(queue)
        .register_workflow::<CheckoutWorkflow>()
        .unwrap()
        .register_activities(CheckoutActivities {
            metrics: Default::default(),
            orders: orders.clone(),
            steps: script.clone(),
        })
        .workflow_task_poller_behavior(PollerBehavior::SimpleMaximum(temporal::POLLERS))
        .activity_task_poller_behavior(PollerBehavior::SimpleMaximum(temporal::POLLERS))
        .build();
    let runtime = temporal::runtime().unwrap();
    let mut worker = Worker::new(&runtime, client, options).unwrap();
    let stop = worker.shutdown_handle();
    let shutdown = CancellationToken::new();
    let env = Env {
        orders,
        script,
        bus,
    };
    let test = async {
        body(env).await;
        shutdown.cancel();
        stop();
    };
    let (run, (), ()) = tokio::join!(worker.run(), test, relay.run(shutdown.clone()));
    run.unwrap();
}

fn line(sku: &str, quantity: u32) -> RequestedLine {
    RequestedLine {
        product_id: format!("p-{sku}"),
        sku_id: sku.into(),
        quantity,
    }
}

/// Wait for the order to reach a terminal state; returns its state name.
async fn settle(orders: &Orders, tenant: &str, id: uuid::Uuid) -> String {
    testkit::eventually("the saga to finish", Duration::from_secs(60), || async {
        let o = orders.get(tenant, id).await.ok()?;
        o.state.is_terminal().then(|| o.state.as_str().to_string())
    })
    .await
}

/// The states published to `order.lifecycle` for `order_id`, in order. The
/// saga's steps come on the same topic (`order.step_recorded`): each once, in
/// order, each one before the state change it caused.
async fn lifecycle(bus: &Arc<dyn EventBus>, order_id: &str, expect: usize) -> Vec<String> {
    let mut sub = bus
        .subscribe(&testkit::unique("it-lifecycle"), &[TOPIC.to_string()])
        .await
        .unwrap();
    let mut states = Vec::new();
    let mut last_step: Option<OrderStepRecorded> = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while states.len() < expect && tokio::time::Instant::now() < deadline {
        let Some(d) = sub.next(Duration::from_millis(500)).await.unwrap() else {
            continue;
        };
        if d.envelope.key != order_id {
            continue;
        }
        match d.envelope.event_type.as_str() {
            STEP_EVENT_TYPE => {
                let step: OrderStepRecorded = d.envelope.json().unwrap();
                let next = last_step.as_ref().map_or(1, |s| s.seq + 1);
                assert_eq!(step.seq, next, "steps once and in order: {step:?}");
                last_step = Some(step);
            }
            EVENT_TYPE => {
                let ev: OrderStateChanged = d.envelope.json().unwrap();
                // After creation, a state changes only by a step, published first.
                if ev.state != "pending" {
                    let step = last_step.as_ref().expect("a step before the change");
                    assert_eq!(step.state, ev.state, "{step:?}");
                }
                states.push(ev.state);
            }
            other => panic!("unexpected event type {other}"),
        }
    }
    sub.close().await.unwrap();
    states
}

#[tokio::test(flavor = "multi_thread")]
async fn happy_path_completes_and_publishes_each_state_in_order() {
    with_checkout(|env| async move {
        let t = testkit::unique("t");
        let (order, replayed) = env
            .orders
            .create(&t, "u1", "k1", &[line("a", 2)], "pm_card_visa")
            .await
            .unwrap();
        assert!(!replayed);
        assert_eq!((order.total_minor, order.currency.as_str()), (2500, "EUR"));
        assert_eq!(settle(&env.orders, &t, order.order_id).await, "completed");
        let id = order.order_id.to_string();
        assert_eq!(
            env.script.calls(&id),
            ["reserve", "authorize", "capture", "finalize"]
        );
        let stored = env.orders.get(&t, order.order_id).await.unwrap();
        assert_eq!(stored.reservation_id, format!("res-{id}"));
        assert_eq!(stored.payment_id, format!("pay-{id}"));
        let steps = env.orders.steps(&t, order.order_id).await.unwrap();
        let names: Vec<_> = steps
            .iter()
            .map(|s| (s.step.as_str(), s.outcome.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("reserve", "succeeded"),
                ("authorize", "succeeded"),
                ("capture", "succeeded"),
                ("finalize", "succeeded")
            ]
        );
        assert_eq!(
            lifecycle(&env.bus, &id, 5).await,
            ["pending", "reserved", "authorized", "captured", "completed"]
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_capture_failing_every_attempt_is_retried_three_times_then_compensated() {
    with_checkout(|env| async move {
        let t = testkit::unique("t");
        let (order, _) = env
            .orders
            .create(&t, "u1", "k1", &[line("a", 1)], "pm_fail_capture")
            .await
            .unwrap();
        assert_eq!(settle(&env.orders, &t, order.order_id).await, "cancelled");
        let id = order.order_id.to_string();
        assert_eq!(
            env.script.calls(&id),
            [
                "reserve",
                "authorize",
                "capture",
                "capture",
                "capture",
                "cancel_intent",
                "release"
            ]
        );
        let stored = env.orders.get(&t, order.order_id).await.unwrap();
        assert_eq!(
            stored.state.cancel_reason().map(|r| r.as_str()),
            Some("payment_failed")
        );
        assert!(
            stored.cancel_detail.contains("provider answered 500"),
            "{}",
            stored.cancel_detail
        );
        let steps = env.orders.steps(&t, order.order_id).await.unwrap();
        let capture = steps.iter().find(|s| s.step == "capture").unwrap();
        assert_eq!((capture.outcome.as_str(), capture.attempts), ("failed", 3));
        let tail: Vec<_> = steps[3..]
            .iter()
            .map(|s| (s.step.as_str(), s.outcome.as_str()))
            .collect();
        assert_eq!(
            tail,
            [("cancel_intent", "compensated"), ("release", "compensated")]
        );
        assert_eq!(
            lifecycle(&env.bus, &id, 4).await,
            ["pending", "reserved", "authorized", "cancelled"]
        );
    })
    .await;
}

/// ADR 0006: an authorize whose every attempt went unanswered may have
/// authorized; the saga voids by order id (it never got a payment id).
#[tokio::test(flavor = "multi_thread")]
async fn an_authorize_without_any_answer_is_voided_by_order_then_released() {
    with_checkout(|env| async move {
        let t = testkit::unique("t");
        let (order, _) = env
            .orders
            .create(&t, "u1", "k1", &[line("a", 1)], "pm_fail_authorize")
            .await
            .unwrap();
        assert_eq!(settle(&env.orders, &t, order.order_id).await, "cancelled");
        assert_eq!(
            env.script.calls(&order.order_id.to_string()),
            [
                "reserve",
                "authorize",
                "authorize",
                "authorize",
                "cancel_intent by order",
                "release"
            ]
        );
        let steps = env.orders.steps(&t, order.order_id).await.unwrap();
        let authorize = steps.iter().find(|s| s.step == "authorize").unwrap();
        assert!(
            authorize.detail.contains("outcome unknown"),
            "{}",
            authorize.detail
        );
    })
    .await;
}

/// ADR 0006: after the capture (the pivot) finalize does not give up after 3
/// attempts: a paid order completes once inventory answers.
#[tokio::test(flavor = "multi_thread")]
async fn finalize_retries_past_three_attempts_and_the_paid_order_completes() {
    with_checkout(|env| async move {
        let t = testkit::unique("t");
        let (order, _) = env
            .orders
            .create(&t, "u1", "k1", &[line("a", 1)], "pm_slow_finalize")
            .await
            .unwrap();
        assert_eq!(settle(&env.orders, &t, order.order_id).await, "completed");
        let calls = env.script.calls(&order.order_id.to_string());
        assert_eq!(calls.iter().filter(|c| *c == "finalize").count(), 5);
        assert!(
            !calls.iter().any(|c| c == "refund" || c == "release"),
            "{calls:?}"
        );
        let steps = env.orders.steps(&t, order.order_id).await.unwrap();
        let finalize = steps.iter().find(|s| s.step == "finalize").unwrap();
        assert_eq!(
            (finalize.outcome.as_str(), finalize.attempts),
            ("succeeded", 5)
        );
    })
    .await;
}

/// Starts nothing: an order whose saga has not begun yet.
struct NoStart;

#[async_trait]
impl SagaStarter for NoStart {
    async fn start(&self, _: &SagaOrder) -> Result<(), String> {
        Ok(())
    }
}

/// Steps run as local activities, durable only when their workflow task
/// completes; a worker that dies first leaves steps in the order's log
/// that the next worker's replay would otherwise run again. Here the log
/// already holds what such a lost task recorded — stock reserved, then the
/// card declined — when the workflow starts. The saga takes both from the
/// log instead of running them (the script would now authorize this
/// card), keeps the decline the order already showed, and only releases.
#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_saga_takes_recorded_steps_from_the_log_instead_of_running_them() {
    with_checkout(|env| async move {
        let t = testkit::unique("t");
        let unstarted = Orders {
            starter: Arc::new(NoStart),
            ..env.orders.clone()
        };
        let (order, _) = unstarted
            .create(&t, "u1", "k1", &[line("a", 1)], "pm_card_visa")
            .await
            .unwrap();
        let id = order.order_id.to_string();
        let mut saga = Saga::new();
        let lost_task = [
            (
                Command::Run(Step::Reserve),
                StepReply::Done {
                    id: format!("res-{id}"),
                    detail: "held".into(),
                },
            ),
            (
                Command::Run(Step::Authorize),
                StepReply::rejected(CancelReason::PaymentDeclined, "card_declined"),
            ),
        ];
        for (seq, (command, reply)) in (1..).zip(lost_task) {
            assert_eq!(saga.next(), command);
            let settled = driver::settle(command, Ok((reply, 1))).unwrap();
            saga.on(settled.outcome).unwrap();
            let produced = settled.produced.clone().unwrap_or_default();
            let step = driver::step_record(seq, command, &settled, &saga, &produced, "");
            env.orders.record(&t, order.order_id, &step).await.unwrap();
        }
        // Declined but not yet cancelled: the release is still to come.
        assert_eq!(
            env.orders
                .get(&t, order.order_id)
                .await
                .unwrap()
                .state
                .as_str(),
            "reserved"
        );
        env.orders.starter.start(&saga_order(&order)).await.unwrap();
        assert_eq!(settle(&env.orders, &t, order.order_id).await, "cancelled");
        assert_eq!(env.script.calls(&id), ["release"]);
        let stored = env.orders.get(&t, order.order_id).await.unwrap();
        assert_eq!(
            stored.state.cancel_reason().map(|r| r.as_str()),
            Some("payment_declined")
        );
        let steps = env.orders.steps(&t, order.order_id).await.unwrap();
        let names: Vec<_> = steps
            .iter()
            .map(|s| (s.seq, s.step.as_str(), s.outcome.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                (1, "reserve", "succeeded"),
                (2, "authorize", "failed"),
                (3, "release", "compensated")
            ]
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_declined_card_releases_the_stock_without_touching_the_payment_again() {
    with_checkout(|env| async move {
        let t = testkit::unique("t");
        let (order, _) = env
            .orders
            .create(&t, "u1", "k1", &[line("a", 1)], "pm_card_chargeDeclined")
            .await
            .unwrap();
        assert_eq!(settle(&env.orders, &t, order.order_id).await, "cancelled");
        assert_eq!(
            env.script.calls(&order.order_id.to_string()),
            ["reserve", "authorize", "release"]
        );
        let stored = env.orders.get(&t, order.order_id).await.unwrap();
        assert_eq!(
            stored.state.cancel_reason().map(|r| r.as_str()),
            Some("payment_declined")
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_key_one_order_one_charge_and_a_changed_body_is_refused() {
    with_checkout(|env| async move {
        let t = testkit::unique("t");
        // Eight concurrent submissions of the same checkout.
        let lines = [line("a", 1), line("b", 3)];
        let attempts = futures::future::join_all((0..8).map(|_| {
            env.orders
                .create(&t, "u1", "same-key", &lines, "pm_card_visa")
        }))
        .await;
        let results: Vec<_> = attempts.into_iter().map(Result::unwrap).collect();
        let id = results[0].0.order_id;
        assert!(results.iter().all(|(o, _)| o.order_id == id));
        assert_eq!(results.iter().filter(|(_, replayed)| !replayed).count(), 1);
        // Line order does not matter; a different body under the key does.
        let (again, replayed) = env
            .orders
            .create(
                &t,
                "u1",
                "same-key",
                &[line("b", 3), line("a", 1)],
                "pm_card_visa",
            )
            .await
            .unwrap();
        assert!(replayed && again.order_id == id);
        let err = env
            .orders
            .create(&t, "u1", "same-key", &[line("a", 2)], "pm_card_visa")
            .await
            .unwrap_err();
        assert!(matches!(err, OrdersError::KeyReuse), "{err:?}");
        // Another user may use the same key for their own order.
        let (other, replayed) = env
            .orders
            .create(&t, "u2", "same-key", &[line("a", 1)], "pm_card_visa")
            .await
            .unwrap();
        assert!(!replayed && other.order_id != id);

        assert_eq!(settle(&env.orders, &t, id).await, "completed");
        let calls = env.script.calls(&id.to_string());
        assert_eq!(calls.iter().filter(|c| *c == "authorize").count(), 1);
        assert_eq!(calls.iter().filter(|c| *c == "capture").count(), 1);
        // Invalid input changes nothing.
        let err = env
            .orders
            .create(&t, "u1", "k-bad", &[line("a", 0)], "")
            .await
            .unwrap_err();
        assert!(
            matches!(err, OrdersError::Invalid(ref f) if f.len() == 2),
            "{err:?}"
        );
        let mine = env
            .orders
            .list(&t, Some("u1"), &[], None, 10)
            .await
            .unwrap();
        assert_eq!(mine.len(), 1);
    })
    .await;
}

/// `temporal-worker-paused`: the saga's first step waits instead of running
/// (nothing reaches inventory or payments, the order stays pending) and the
/// saga goes on from there once the fault clears.
#[tokio::test(flavor = "multi_thread")]
async fn a_paused_worker_holds_the_saga_until_the_fault_clears() {
    let _only = FAULT_VIEW.write().await;
    checkout(|env| async move {
        let pause = faults::spec(workflow::PAUSE_FAULT)
            .unwrap()
            .activate(None, None, None, 0)
            .unwrap();
        faults::set_view([pause]);
        let t = testkit::unique("t");
        let (order, _) = env
            .orders
            .create(&t, "u1", "k1", &[line("a", 1)], "pm_card_visa")
            .await
            .unwrap();
        assert!(order.workflow_started);
        testkit::eventually(
            "the first step to be held",
            Duration::from_secs(60),
            || async { (workflow::held_activities() > 0).then_some(()) },
        )
        .await;
        let id = order.order_id.to_string();
        assert!(
            env.script.calls(&id).is_empty(),
            "{:?}",
            env.script.calls(&id)
        );
        let held = env.orders.get(&t, order.order_id).await.unwrap();
        assert_eq!(held.state.as_str(), "pending");
        assert!(
            env.orders
                .steps(&t, order.order_id)
                .await
                .unwrap()
                .is_empty()
        );

        faults::set_view([]);
        assert_eq!(settle(&env.orders, &t, order.order_id).await, "completed");
        assert_eq!(
            env.script.calls(&id),
            ["reserve", "authorize", "capture", "finalize"]
        );
        assert_eq!(workflow::held_activities(), 0);
    })
    .await;
}
