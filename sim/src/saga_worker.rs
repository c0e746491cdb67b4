//! The simulated saga worker: the checkout saga's driver with Temporal's
//! delivery semantics, mirroring `shopstream_orders::workflow` — the same
//! `Saga` decider, the same retry policies (`driver::RetryPolicy`, which the
//! workflow hands to Temporal), activities at-least-once, the workflow's
//! state durable across a worker crash (it lives in [`History`], outside the
//! orders host, as Temporal's persistence does), and activity results that
//! can be lost after the activity ran.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use shopstream_orders::{
    Orders,
    adapters::grpc::GrpcSteps,
    domain::saga::{Command, Compensation, Outcome as SagaOutcome, Saga, Step},
    driver::{self, RetryPolicy, STEP_ATTEMPTS, Settled},
    ports::{SagaOrder, SagaSteps, StepRecord, StepReply, Transient},
    service::SagaStarter,
};

use crate::{
    Bug, net,
    trace::{SharedRng, Trace, sim_ms},
};

/// Deadline of one gRPC call of an activity (the services' request timeout).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the worker polls for workflows it is not running yet.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// One workflow's durable state: what Temporal's history lets a new worker
/// rebuild after a crash.
#[derive(Debug, Clone)]
pub struct Workflow {
    pub order: SagaOrder,
    pub saga: Saga,
    pub reservation_id: String,
    pub payment_id: String,
    pub seq: u32,
    /// A step decided but not yet written to the order (the local activity
    /// `record`): replayed first after a crash.
    pub pending_record: Option<StepRecord>,
    /// Attempts of the current activity so far (server-side, survives crashes).
    pub attempt: u32,
    /// When the attempt in flight started (sim ms); after a worker crash the
    /// server retries it once its start-to-close timeout passes.
    pub in_flight_since_ms: Option<i64>,
    pub done: bool,
    /// The workflow failed (the saga refused an outcome): a bug.
    pub failed: Option<String>,
}

/// Temporal's persistence: every workflow by id. Survives worker crashes.
#[derive(Debug, Clone, Default)]
pub struct History(Arc<Mutex<BTreeMap<String, Workflow>>>);

impl History {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Workflow>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
    /// Start a workflow; a second start of the same id is a no-op.
    pub fn start(&self, order: &SagaOrder) -> bool {
        let id = shopstream_orders::workflow::workflow_id(&order.tenant_id, &order.order_id);
        let mut g = self.lock();
        if g.contains_key(&id) {
            return false;
        }
        g.insert(
            id,
            Workflow {
                order: order.clone(),
                saga: Saga::new(),
                reservation_id: String::new(),
                payment_id: String::new(),
                seq: 0,
                pending_record: None,
                attempt: 0,
                in_flight_since_ms: None,
                done: false,
                failed: None,
            },
        );
        true
    }
    pub fn get(&self, id: &str) -> Option<Workflow> {
        self.lock().get(id).cloned()
    }
    fn put(&self, id: &str, wf: &Workflow) {
        self.lock().insert(id.to_string(), wf.clone());
    }
    pub fn open_ids(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, w)| !w.done)
            .map(|(k, _)| k.clone())
            .collect()
    }
    pub fn all(&self) -> BTreeMap<String, Workflow> {
        self.lock().clone()
    }
}

/// The orders service's `SagaStarter` in the simulation: starts the
/// workflow in [`History`] (idempotent by workflow id, like Temporal).
pub struct SimStarter {
    pub history: History,
    pub trace: Trace,
}

#[async_trait]
impl SagaStarter for SimStarter {
    async fn start(&self, order: &SagaOrder) -> Result<(), String> {
        if self.history.start(order) {
            self.trace.log(
                "temporal",
                format!("start workflow order={}", short(&order.order_id)),
            );
        }
        Ok(())
    }
}

/// The first 8 characters of an id, for the trace.
pub fn short(id: &str) -> &str {
    let id = id.rsplit('-').next().unwrap_or(id);
    &id[id.len().saturating_sub(6)..]
}

/// Everything the worker (on the orders host) needs.
#[derive(Clone)]
pub struct Worker {
    pub history: History,
    pub orders: Orders,
    pub trace: Trace,
    pub rng: SharedRng,
    /// Probability that a finished activity's result is lost (until `faults_end_ms`).
    pub lost_result_p: f64,
    pub faults_end_ms: i64,
    pub bug: Option<Bug>,
}

enum Activity {
    Step(Step),
    Compensate(Compensation),
}

impl Activity {
    fn name(&self) -> &'static str {
        match self {
            Activity::Step(s) => s.as_str(),
            Activity::Compensate(c) => c.as_str(),
        }
    }
}

impl Worker {
    /// Poll for workflows and run each in its own task until the host dies.
    pub async fn run(self) {
        let mut running = BTreeSet::new();
        loop {
            for id in self.history.open_ids() {
                if running.insert(id.clone()) {
                    let w = self.clone();
                    tokio::spawn(async move { w.run_workflow(id).await });
                }
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    async fn run_workflow(self, id: String) {
        let Some(mut wf) = self.history.get(&id) else {
            return;
        };
        let o = short(&wf.order.order_id).to_string();
        if let Some(rec) = wf.pending_record.clone() {
            self.record(&wf, rec).await;
            wf.pending_record = None;
            self.history.put(&id, &wf);
        }
        loop {
            let command = wf.saga.next();
            let activity = match command {
                Command::Done(state) => {
                    wf.done = true;
                    self.history.put(&id, &wf);
                    self.trace.log(
                        "worker",
                        format!("order={o} workflow done: {}", state.as_str()),
                    );
                    return;
                }
                Command::Run(step) => Activity::Step(step),
                Command::Compensate(c) => Activity::Compensate(c),
            };
            let name = activity.name();
            let result = self.run_activity(&id, &mut wf, &activity).await;
            // The production mapping (`shopstream_orders::driver`); a
            // compensation that gave up (only the bug zoo's
            // `compensation-gives-up` does) counts as done.
            let settled = driver::settle(command, result).unwrap_or_else(|why| Settled {
                outcome: match command {
                    Command::Compensate(c) => SagaOutcome::Compensated(c),
                    _ => unreachable!("forward steps always settle"),
                },
                detail: format!("gave up: {why}"),
                attempts: wf.attempt,
                produced: None,
            });
            match (command, &settled.produced) {
                (Command::Run(Step::Reserve), Some(rid)) => wf.reservation_id.clone_from(rid),
                (Command::Run(Step::Authorize), Some(pid)) => wf.payment_id.clone_from(pid),
                _ => {}
            }
            let outcome = settled.outcome;
            if let Err(e) = wf.saga.on(outcome) {
                self.trace.log(
                    "worker",
                    format!("order={o} WORKFLOW FAILED: saga refused {outcome:?}: {e}"),
                );
                wf.failed = Some(e.to_string());
                wf.done = true;
                self.history.put(&id, &wf);
                return;
            }
            wf.seq += 1;
            let record = driver::step_record(
                wf.seq,
                command,
                &settled,
                &wf.saga,
                &wf.reservation_id,
                &wf.payment_id,
            );
            self.trace.log(
                "worker",
                format!(
                    "order={o} {name} -> {}{} (attempts {}) state={}{}",
                    record.outcome,
                    if matches!(outcome, SagaOutcome::Unknown(..)) {
                        " (outcome unknown)"
                    } else {
                        ""
                    },
                    record.attempts,
                    record.state,
                    // What an undo found is the interesting part of it.
                    if matches!(outcome, SagaOutcome::Compensated(_)) {
                        format!(": {}", record.detail)
                    } else {
                        String::new()
                    }
                ),
            );
            // The decision is in history before the local activity runs.
            wf.attempt = 0;
            wf.in_flight_since_ms = None;
            wf.pending_record = Some(record.clone());
            self.history.put(&id, &wf);
            self.record(&wf, record).await;
            wf.pending_record = None;
            self.history.put(&id, &wf);
        }
    }

    /// Attempts of one activity under its retry policy. `Ok` carries the
    /// reply and the attempt that produced it; `Err` means retries ran out.
    async fn run_activity(
        &self,
        id: &str,
        wf: &mut Workflow,
        activity: &Activity,
    ) -> Result<(StepReply, u32), String> {
        let o = short(&wf.order.order_id).to_string();
        let name = activity.name();
        let policy = self.retry_policy(activity);
        let mut last = String::new();
        if let Some(since) = wf.in_flight_since_ms {
            // The worker died mid-attempt: the server notices at start-to-close.
            let due = since + policy.start_to_close.as_millis() as i64;
            let wait = (due - sim_ms()).max(0) as u64;
            tokio::time::sleep(Duration::from_millis(wait)).await;
            last = "start-to-close timeout (worker crashed)".into();
            self.trace.log(
                "temporal",
                format!(
                    "order={o} {name} attempt {} timed out: worker crashed",
                    wf.attempt
                ),
            );
            wf.in_flight_since_ms = None;
            if policy.exhausted(wf.attempt) {
                return Err(last);
            }
            tokio::time::sleep(policy.backoff(wf.attempt)).await;
        }
        loop {
            if policy.exhausted(wf.attempt) {
                return Err(last);
            }
            wf.attempt += 1;
            wf.in_flight_since_ms = Some(sim_ms());
            self.history.put(id, wf);
            let attempt = wf.attempt;
            let r = tokio::time::timeout(policy.start_to_close, self.call(activity, wf)).await;
            let r = match r {
                Ok(Ok(reply)) => {
                    let lose = sim_ms() < self.faults_end_ms
                        && self.rng.with(|g| g.chance(self.lost_result_p));
                    if lose {
                        Err("result lost after the activity ran".to_string())
                    } else {
                        Ok(reply)
                    }
                }
                Ok(Err(Transient(why))) => Err(why),
                Err(_) => Err("start-to-close timeout".to_string()),
            };
            wf.in_flight_since_ms = None;
            self.history.put(id, wf);
            match r {
                Ok(reply) => return Ok((reply, attempt)),
                Err(why) => {
                    self.trace.log(
                        "worker",
                        format!("order={o} {name} attempt {attempt} failed: {why}"),
                    );
                    last = why;
                    if policy.exhausted(attempt) {
                        return Err(last);
                    }
                    tokio::time::sleep(policy.backoff(attempt)).await;
                }
            }
        }
    }

    /// The production policy of the activity (`RetryPolicy::of`), except
    /// that the bug zoo's `compensation-gives-up` caps compensations at the
    /// forward steps' attempts.
    fn retry_policy(&self, activity: &Activity) -> RetryPolicy {
        match activity {
            Activity::Step(step) => RetryPolicy::of(Command::Run(*step)),
            Activity::Compensate(c) => {
                let policy = RetryPolicy::of(Command::Compensate(*c));
                if self.bug_on(Bug::CompensationGivesUp) {
                    RetryPolicy {
                        maximum_attempts: Some(STEP_ATTEMPTS),
                        ..policy
                    }
                } else {
                    policy
                }
            }
        }
    }

    fn bug_on(&self, bug: Bug) -> bool {
        crate::ZOO && self.bug == Some(bug)
    }

    /// One attempt: the real `GrpcSteps` over fresh turmoil channels.
    async fn call(&self, activity: &Activity, wf: &Workflow) -> Result<StepReply, Transient> {
        let steps = GrpcSteps::from_channels(
            net::channel("inventory", net::GRPC_PORT, CALL_TIMEOUT),
            net::channel("payments", net::GRPC_PORT, CALL_TIMEOUT),
        );
        let o = &wf.order;
        match activity {
            Activity::Step(Step::Reserve) => steps.reserve(o).await,
            Activity::Step(Step::Authorize) => steps.authorize(o).await,
            Activity::Step(Step::Capture) => steps.capture(o, &wf.payment_id).await,
            Activity::Step(Step::Finalize) => steps.finalize(o, &wf.reservation_id).await,
            Activity::Compensate(Compensation::Refund) => steps.refund(o, &wf.payment_id).await,
            Activity::Compensate(Compensation::CancelIntent) => {
                steps.cancel_intent(o, &wf.payment_id).await
            }
            Activity::Compensate(Compensation::Release) => {
                if self.bug_on(Bug::ReleaseForgotten) {
                    return Ok(StepReply::Done {
                        id: String::new(),
                        detail: "released (not really: bug zoo)".into(),
                    });
                }
                steps.release(o, &wf.reservation_id).await
            }
        }
    }

    /// The local activity `record`: write the step to the order; retried
    /// until it succeeds (`RetryPolicy::RECORD`).
    async fn record(&self, wf: &Workflow, mut step: StepRecord) {
        let Ok(order_id) = wf.order.order_id.parse() else {
            return;
        };
        let policy = RetryPolicy::RECORD;
        let mut attempt = 0;
        loop {
            attempt += 1;
            step.at_ms = self.orders.clock.now_ms();
            match self
                .orders
                .record(&wf.order.tenant_id, order_id, &step)
                .await
            {
                Ok(_) => return,
                Err(e) => {
                    self.trace.log("worker", format!("record failed: {e}"));
                    tokio::time::sleep(policy.backoff(attempt)).await;
                }
            }
        }
    }
}

/// Every workflow's state, for the harness.
pub fn snapshot(h: &History) -> BTreeMap<String, Workflow> {
    h.all()
}
