//! The simulated saga worker: the checkout saga's driver with Temporal's
//! delivery semantics, mirroring `shopstream_orders::workflow` — the same
//! `Saga` decider, the same retry policies (`driver::RetryPolicy`, which the
//! workflow hands to Temporal), steps as local activities, at-least-once,
//! and activity results that can be lost after the activity ran.
//!
//! Local activities are durable only when the workflow task that ran them
//! completes: the workflow's state in [`History`] (outside the orders host,
//! as Temporal's persistence is) moves on when the task completes — at the
//! end, or when the worker heartbeats a task open longer than
//! [`TASK_HEARTBEAT`] — so a crash loses every step since. The server hands
//! the task to another worker after [`TASK_TIMEOUT`]; that worker replays
//! from the last completed task, and each step first reads its seq in the
//! order's log, as production does (`driver::recorded`).

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
    workflow::StepResult,
};

use crate::{
    Bug, net,
    trace::{SharedRng, Trace, sim_ms},
};

/// Deadline of one gRPC call of an activity (the services' request timeout).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the worker polls for workflows it is not running yet.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Temporal's default workflow task timeout (the workflow starts with it).
pub const TASK_TIMEOUT: Duration = Duration::from_secs(10);
/// The SDK heartbeats a workflow task still running local activities at
/// 80 % of [`TASK_TIMEOUT`]: the task completes with what finished, and a
/// new one carries on.
pub const TASK_HEARTBEAT: Duration = Duration::from_secs(8);

/// One workflow's durable state: what Temporal's history lets a new worker
/// rebuild after a crash.
#[derive(Debug, Clone)]
pub struct Workflow {
    pub order: SagaOrder,
    pub saga: Saga,
    pub reservation_id: String,
    pub payment_id: String,
    pub seq: u32,
    /// When a worker took (or last heartbeated) the workflow task, sim ms;
    /// after a worker crash the server hands it on [`TASK_TIMEOUT`] later.
    pub task_since_ms: Option<i64>,
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
                task_since_ms: None,
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
        if let Some(since) = wf.task_since_ms {
            // The worker holding the task died: the server hands it on when
            // the task times out, and this worker replays it from the last
            // completed task.
            let due = since + TASK_TIMEOUT.as_millis() as i64;
            let wait = (due - sim_ms()).max(0) as u64;
            tokio::time::sleep(Duration::from_millis(wait)).await;
            self.trace.log(
                "temporal",
                format!(
                    "order={o} workflow task timed out (worker crashed): replayed from seq {}",
                    wf.seq
                ),
            );
        }
        let mut task_since = sim_ms();
        wf.task_since_ms = Some(task_since);
        self.history.put(&id, &wf);
        loop {
            let command = wf.saga.next();
            let activity = match command {
                Command::Done(state) => {
                    wf.done = true;
                    wf.task_since_ms = None;
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
            let seq = wf.seq + 1;
            let (result, attempts) = self.run_activity(&wf, seq, &activity).await;
            let from_log = matches!(result, Ok(StepResult::Recorded(_)));
            // The production mapping (`shopstream_orders::driver`); a
            // compensation that gave up (only the bug zoo's
            // `compensation-gives-up` does) counts as done.
            let settled = match result {
                Ok(StepResult::Recorded(r)) => driver::recorded(command, &r),
                Ok(StepResult::Ran { reply, attempt }) => {
                    driver::settle(command, Ok((reply, attempt)))
                }
                Err(why) => driver::settle(command, Err(why)),
            };
            let settled = match settled {
                Ok(s) => s,
                Err(why) => match command {
                    Command::Compensate(c) => Settled {
                        outcome: SagaOutcome::Compensated(c),
                        detail: format!("gave up: {why}"),
                        attempts,
                        produced: None,
                    },
                    // The log and the decider disagree.
                    _ => {
                        self.fail(&id, &mut wf, format!("step {seq} read back: {why}"));
                        return;
                    }
                },
            };
            match (command, &settled.produced) {
                (Command::Run(Step::Reserve), Some(rid)) => wf.reservation_id.clone_from(rid),
                (Command::Run(Step::Authorize), Some(pid)) => wf.payment_id.clone_from(pid),
                _ => {}
            }
            let outcome = settled.outcome;
            if let Err(e) = wf.saga.on(outcome) {
                self.fail(&id, &mut wf, format!("saga refused {outcome:?}: {e}"));
                return;
            }
            wf.seq = seq;
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
                    "order={o} {name} -> {}{} (attempts {}) state={}{}{}",
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
                    },
                    if from_log {
                        " (from the order's log)"
                    } else {
                        ""
                    }
                ),
            );
            self.record(&wf, record).await;
            // A task open this long is heartbeated: what ran so far is durable.
            if sim_ms() - task_since >= TASK_HEARTBEAT.as_millis() as i64 {
                task_since = sim_ms();
                wf.task_since_ms = Some(task_since);
                self.history.put(&id, &wf);
            }
        }
    }

    /// The workflow fails (a bug): durable at once, like Temporal's failure.
    fn fail(&self, id: &str, wf: &mut Workflow, why: String) {
        let o = short(&wf.order.order_id).to_string();
        self.trace
            .log("worker", format!("order={o} WORKFLOW FAILED: {why}"));
        wf.failed = Some(why);
        wf.done = true;
        wf.task_since_ms = None;
        self.history.put(id, wf);
    }

    /// Attempts of one local activity under its retry policy, each reading
    /// the step's seq in the order's log first (as the workflow's
    /// activities do). `Ok` carries what the step came to; `Err` means
    /// retries ran out. The second value is the attempts made.
    async fn run_activity(
        &self,
        wf: &Workflow,
        seq: u32,
        activity: &Activity,
    ) -> (Result<StepResult, String>, u32) {
        let o = short(&wf.order.order_id).to_string();
        let name = activity.name();
        let policy = self.retry_policy(activity);
        let mut last = String::new();
        let mut attempt = 0;
        loop {
            if policy.exhausted(attempt) {
                return (Err(last), attempt);
            }
            attempt += 1;
            let r =
                tokio::time::timeout(policy.start_to_close, self.attempt(activity, wf, seq)).await;
            let r = match r {
                Ok(Ok(StepResult::Ran { reply, .. })) => {
                    let lose = sim_ms() < self.faults_end_ms
                        && self.rng.with(|g| g.chance(self.lost_result_p));
                    if lose {
                        Err("result lost after the activity ran".to_string())
                    } else {
                        Ok(StepResult::Ran { reply, attempt })
                    }
                }
                Ok(Ok(recorded)) => Ok(recorded),
                Ok(Err(Transient(why))) => Err(why),
                Err(_) => Err("start-to-close timeout".to_string()),
            };
            match r {
                Ok(result) => return (Ok(result), attempt),
                Err(why) => {
                    self.trace.log(
                        "worker",
                        format!("order={o} {name} attempt {attempt} failed: {why}"),
                    );
                    last = why;
                    if policy.exhausted(attempt) {
                        return (Err(last), attempt);
                    }
                    tokio::time::sleep(policy.backoff(attempt)).await;
                }
            }
        }
    }

    /// One attempt: the step's seq in the order's log, else the call.
    async fn attempt(
        &self,
        activity: &Activity,
        wf: &Workflow,
        seq: u32,
    ) -> Result<StepResult, Transient> {
        let order_id = wf
            .order
            .order_id
            .parse()
            .map_err(|e| Transient(format!("order id: {e}")))?;
        let logged = self
            .orders
            .store
            .step(&wf.order.tenant_id, order_id, seq)
            .await
            .map_err(|e| Transient(format!("reading the order's log: {e}")))?;
        if let Some(r) = logged {
            return Ok(StepResult::Recorded(r));
        }
        // The reply's attempt is set by the caller.
        self.call(activity, wf)
            .await
            .map(|reply| StepResult::Ran { reply, attempt: 0 })
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
