//! The checkout saga on Temporal: a thin driver of `domain::saga`. The
//! workflow asks the saga what to do next, runs it as a local activity with
//! the step's retry policy, reports the outcome back, and records each step
//! (state, event) through another local activity. The workflow holds no
//! business rule of its own; Temporal gives it durability (a worker crash
//! resumes the saga where it was) and at-least-once activities (every step
//! is idempotent).
//!
//! Local activities run in the worker that runs the workflow task, with no
//! task-queue round trip, and their results become durable only when that
//! task completes. A worker that dies first loses them, and the next worker
//! replays the task and runs the steps again; the order's log may already
//! say what they came to, and others may have seen it (the order's state,
//! its `order.lifecycle` events). So every step first reads its seq in the
//! log ([`crate::ports::OrderStore::step`]), and a recorded step is taken
//! from there instead of being run again (`driver::recorded`): the log is
//! the saga's decision log (ADR 0004).
//!
//! The fault `temporal-worker-paused` holds the step activities here
//! ([`hold_if_paused`]); [`temporal_ready`] is orders' readiness check of
//! the Temporal frontend.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
};
use serde::{Deserialize, Serialize};
use shopstream_platform::{faults, telemetry};
use temporalio_client::{
    Client, RetryOptions, WorkflowStartOptions, errors::WorkflowStartError,
    request_extensions::RetryConfigForCall,
};
use temporalio_common::protos::grpc::health::v1::{
    HealthCheckRequest, health_check_response::ServingStatus,
};
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::{
    ApplicationFailure, LocalActivityOptions, WorkflowContext, WorkflowResult,
    activities::{ActivityContext, ActivityError},
};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use uuid::Uuid;

use crate::{
    domain::saga::{Command, Compensation, Saga, Step},
    driver::{self, RetryPolicy},
    ports::{SagaOrder, SagaSteps, StepRecord, StepReply},
    service::{Orders, SagaStarter},
};

pub use crate::driver::STEP_ATTEMPTS;

/// Task queue of the checkout workflow and its activities.
pub const TASK_QUEUE: &str = "checkout";

/// Bound on one workflow start by [`TemporalStarter`], the client's own
/// retries included (callers may bound it tighter).
pub const START_TIMEOUT: Duration = Duration::from_secs(5);

/// The fault that holds the checkout's step activities.
pub const PAUSE_FAULT: &str = "temporal-worker-paused";
/// The component the pause fault hits.
const COMPONENT: &str = "orders";
/// How often a held activity reads the fault again (and heartbeats).
pub const PAUSE_POLL: Duration = Duration::from_millis(250);
/// The longest one attempt of a step waits for the pause to clear. It stays
/// below every step's start-to-close timeout (`RetryPolicy::STEP` and
/// `PERSISTENT`, 5 s), leaving time to run the step when the pause clears
/// late, so an attempt ends by itself (a retryable failure) instead of
/// being timed out by Temporal mid-wait.
pub const PAUSE_WAIT_MAX: Duration = Duration::from_secs(3);
const _: () = assert!(
    PAUSE_WAIT_MAX.as_millis() + 1_000 < RetryPolicy::STEP.start_to_close.as_millis()
        && PAUSE_WAIT_MAX.as_millis() + 1_000 < RetryPolicy::PERSISTENT.start_to_close.as_millis()
);

/// Step activities currently held by the pause fault in this process.
static HELD: AtomicUsize = AtomicUsize::new(0);

/// How many step activities the pause fault holds in this process now.
pub fn held_activities() -> usize {
    HELD.load(Ordering::Relaxed)
}

/// One activity counted in [`HELD`] while it lives (a dropped wait too).
struct Held;

impl Held {
    fn count() -> Held {
        HELD.fetch_add(1, Ordering::Relaxed);
        Held
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        HELD.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Wait while `paused()` holds, reading it every [`PAUSE_POLL`] (and
/// calling `beat` each time), for at most `max`. `Ok(waited)` once it no
/// longer holds; `Err(waited)` when it still held at `max`.
pub async fn wait_while_paused<P, B, F>(
    paused: P,
    beat: B,
    max: Duration,
) -> Result<Duration, Duration>
where
    P: Fn() -> bool,
    B: Fn() -> F,
    F: std::future::Future<Output = ()>,
{
    let started = tokio::time::Instant::now();
    while paused() {
        let waited = started.elapsed();
        if waited >= max {
            return Err(waited);
        }
        beat().await;
        tokio::time::sleep(PAUSE_POLL.min(max - waited)).await;
    }
    Ok(started.elapsed())
}

/// Whether `temporal-worker-paused` hits orders now.
fn paused() -> bool {
    faults::hits(PAUSE_FAULT, COMPONENT).is_some()
}

/// Hold a step activity while `temporal-worker-paused` hits orders: the
/// step has not run yet, so a held saga stalls where it is and resumes
/// when the fault clears. One attempt waits at most [`PAUSE_WAIT_MAX`];
/// still paused then, the attempt fails (retryable) and Temporal retries it
/// after the step's backoff, so a pause longer than that uses up attempts:
/// finalize and the compensations retry until they succeed and simply
/// resume; reserve, authorize and capture give up after their
/// `STEP_ATTEMPTS` (about 10 s of pause) and the saga settles them as
/// unknown and compensates — the order is cancelled, its payment voided or
/// refunded and its stock released, never charged twice or kept.
pub async fn hold_if_paused(ctx: &ActivityContext) -> Result<(), ActivityError> {
    if !paused() {
        return Ok(());
    }
    let activity = ctx.info().activity_type.clone();
    tracing::info!(%activity, fault = PAUSE_FAULT, "checkout activity held");
    let held = Held::count();
    // A local activity's heartbeat is a no-op (the SDK skips it); the
    // cancellation below reaches the wait either way.
    let beat = || async {
        let _ = ctx.record_heartbeat(PAUSE_FAULT.to_string()).await;
    };
    let waited = tokio::select! {
        w = wait_while_paused(paused, beat, PAUSE_WAIT_MAX) => w,
        () = ctx.cancelled() => return Err(ActivityError::cancelled()),
    };
    drop(held);
    match waited {
        Ok(w) => {
            tracing::info!(%activity, waited_ms = w.as_millis() as u64, "checkout activity resumed");
            Ok(())
        }
        Err(w) => {
            tracing::warn!(%activity, waited_ms = w.as_millis() as u64, "checkout activity still held; Temporal retries it");
            Err(ActivityError::from(anyhow::anyhow!(
                "held by {PAUSE_FAULT} for {} ms",
                w.as_millis()
            )))
        }
    }
}

/// Bound on orders' readiness check of Temporal.
pub const READY_TIMEOUT: Duration = Duration::from_secs(1);
/// The frontend's service in the gRPC health protocol.
const FRONTEND_SERVICE: &str = "temporal.api.workflowservice.v1.WorkflowService";

/// Whether the Temporal frontend answers: one gRPC health check, no
/// retries, bounded by [`READY_TIMEOUT`].
pub async fn temporal_ready(client: &Client) -> Result<(), String> {
    let mut req = tonic::Request::new(HealthCheckRequest {
        service: FRONTEND_SERVICE.to_string(),
    });
    req.set_timeout(READY_TIMEOUT);
    req.extensions_mut()
        .insert(RetryConfigForCall(RetryOptions::no_retries()));
    let mut health = client.connection().health_service();
    let answer = tokio::time::timeout(READY_TIMEOUT, health.check(req))
        .await
        .map_err(|_| format!("temporal did not answer within {READY_TIMEOUT:?}"))?
        .map_err(|s| format!("temporal: {:?}: {}", s.code(), s.message()))?;
    match answer.into_inner().status() {
        ServingStatus::Serving => Ok(()),
        other => Err(format!("temporal frontend is {}", other.as_str_name())),
    }
}

/// The driver's policy in Temporal's terms (no attempt limit is Temporal's 0).
fn temporal_retry(p: RetryPolicy) -> temporalio_common::RetryPolicy {
    temporalio_common::RetryPolicy::builder()
        .initial_interval(p.initial_interval)
        .backoff_coefficient(f64::from(p.backoff_coefficient))
        .maximum_interval(p.maximum_interval)
        .maximum_attempts(p.maximum_attempts.unwrap_or(0))
        .build()
}

/// Options of a local activity retried by `p`: the step's own policy
/// ([`RetryPolicy::of`]) or, for `record`, [`RetryPolicy::RECORD`]. Every
/// backoff (at most 10 s) stays under the SDK's timer threshold, so retries
/// wait in the worker; one longer than the workflow task timeout makes the
/// SDK heartbeat the task, which also makes the finished steps durable.
fn local_options(p: RetryPolicy) -> LocalActivityOptions {
    LocalActivityOptions::builder()
        .start_to_close_timeout(p.start_to_close)
        .retry_policy(temporal_retry(p))
        .build()
}

/// Input of every step activity.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepInput {
    pub order: SagaOrder,
    pub reservation_id: String,
    pub payment_id: String,
    /// The seq the step is recorded at: where the activity looks first.
    pub seq: u32,
}

/// What a step activity came to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum StepResult {
    /// The step ran: its reply and the attempt that produced it.
    Ran { reply: StepReply, attempt: u32 },
    /// The order's log already holds this seq (the workflow task that ran
    /// it was lost before it completed): what it came to then.
    Recorded(StepRecord),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordInput {
    pub tenant_id: String,
    pub order_id: String,
    pub step: StepRecord,
    /// The order's trace (see [`SagaOrder::traceparent`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

#[workflow]
#[derive(Default)]
pub struct CheckoutWorkflow;

#[workflow_methods]
impl CheckoutWorkflow {
    /// Runs the saga of one order to a terminal state; returns its name.
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, order: SagaOrder) -> WorkflowResult<String> {
        let mut saga = Saga::new();
        let mut input = StepInput {
            order,
            reservation_id: String::new(),
            payment_id: String::new(),
            seq: 1,
        };
        loop {
            let command = saga.next();
            let result = match command {
                Command::Done(state) => return Ok(state.as_str().to_string()),
                Command::Run(step) => run_step(ctx, step, &input).await,
                Command::Compensate(c) => compensate(ctx, c, &input).await,
            };
            let settled = match result {
                Ok(StepResult::Recorded(r)) => driver::recorded(command, &r),
                Ok(StepResult::Ran { reply, attempt }) => {
                    driver::settle(command, Ok((reply, attempt)))
                }
                Err(why) => driver::settle(command, Err(why)),
            }
            .map_err(ApplicationFailure::non_retryable)?;
            match (command, &settled.produced) {
                (Command::Run(Step::Reserve), Some(id)) => input.reservation_id.clone_from(id),
                (Command::Run(Step::Authorize), Some(id)) => input.payment_id.clone_from(id),
                _ => {}
            }
            let outcome = settled.outcome;
            saga.on(outcome).map_err(|e| {
                ApplicationFailure::non_retryable(format!("saga refused {outcome:?}: {e}"))
            })?;
            let seq = input.seq;
            input.seq += 1;
            let record = RecordInput {
                tenant_id: input.order.tenant_id.clone(),
                order_id: input.order.order_id.clone(),
                // Stamped (`at_ms`) by the activity, on the clock port.
                step: driver::step_record(
                    seq,
                    command,
                    &settled,
                    &saga,
                    &input.reservation_id,
                    &input.payment_id,
                ),
                traceparent: input.order.traceparent.clone(),
            };
            // A short write in this worker's own database, recorded as a
            // marker; a repeat of a seq already written changes nothing.
            let o = local_options(RetryPolicy::RECORD);
            ctx.execute_local_activity(CheckoutActivities::record, record, o)
                .await?;
        }
    }
}

async fn run_step(
    ctx: &WorkflowContext<CheckoutWorkflow>,
    step: Step,
    input: &StepInput,
) -> Result<StepResult, String> {
    let i = input.clone();
    // After the pivot (capture) a step retries until it gets an answer.
    let o = local_options(RetryPolicy::of(Command::Run(step)));
    let r = match step {
        Step::Reserve => {
            ctx.execute_local_activity(CheckoutActivities::reserve, i, o)
                .await
        }
        Step::Authorize => {
            ctx.execute_local_activity(CheckoutActivities::authorize, i, o)
                .await
        }
        Step::Capture => {
            ctx.execute_local_activity(CheckoutActivities::capture, i, o)
                .await
        }
        Step::Finalize => {
            ctx.execute_local_activity(CheckoutActivities::finalize, i, o)
                .await
        }
    };
    r.map_err(|e| root_cause(&e))
}

async fn compensate(
    ctx: &WorkflowContext<CheckoutWorkflow>,
    c: Compensation,
    input: &StepInput,
) -> Result<StepResult, String> {
    let i = input.clone();
    let o = local_options(RetryPolicy::of(Command::Compensate(c)));
    let r = match c {
        Compensation::Refund => {
            ctx.execute_local_activity(CheckoutActivities::refund, i, o)
                .await
        }
        Compensation::CancelIntent => {
            ctx.execute_local_activity(CheckoutActivities::cancel_intent, i, o)
                .await
        }
        Compensation::Release => {
            ctx.execute_local_activity(CheckoutActivities::release, i, o)
                .await
        }
    };
    r.map_err(|e| root_cause(&e))
}

/// The innermost message of an error chain (the activity's own error).
fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// The saga's own numbers on orders' `/metrics`: how long each step's
/// attempts take and how often the saga compensates.
#[derive(Clone)]
pub struct SagaMetrics {
    steps: Family<StepLabels, Histogram, fn() -> Histogram>,
    compensations: Family<StepName, Counter>,
    from_log: Family<StepName, Counter>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StepLabels {
    step: String,
    /// `done`, `rejected` or `retry` (a transient failure Temporal retries).
    outcome: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StepName {
    step: String,
}

fn step_histogram() -> Histogram {
    // 1 ms .. ~33 s
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 2.0, 16,
    ))
}

/// Registered nowhere (tests).
impl Default for SagaMetrics {
    fn default() -> SagaMetrics {
        SagaMetrics {
            steps: Family::new_with_constructor(step_histogram),
            compensations: Family::default(),
            from_log: Family::default(),
        }
    }
}

impl SagaMetrics {
    /// Register `saga_step_seconds` and `saga_compensations` on `metrics`.
    pub fn register(metrics: &shopstream_platform::metrics::Metrics) -> SagaMetrics {
        let m = SagaMetrics::default();
        metrics.register(
            "saga_step_seconds",
            "Duration of one attempt of a saga step (compensations included), by step and outcome",
            m.steps.clone(),
        );
        metrics.register(
            "saga_compensations",
            "Compensating steps the saga ran to completion, by step",
            m.compensations.clone(),
        );
        metrics.register(
            "saga_steps_from_log",
            "Saga steps a replayed workflow task took from the order's log instead of running them again, by step",
            m.from_log.clone(),
        );
        m
    }
}

impl std::fmt::Debug for SagaMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SagaMetrics")
    }
}

/// The activities: each one a call through the `SagaSteps` port, or the
/// step log through the orders service.
pub struct CheckoutActivities {
    pub orders: Orders,
    pub steps: Arc<dyn SagaSteps>,
    pub metrics: SagaMetrics,
}

/// The span of one saga activity, a child of the request that placed the
/// order (its `traceparent` travels in the workflow input).
fn saga_span(ctx: &ActivityContext, order: &SagaOrder, step: &str) -> tracing::Span {
    let compensation = matches!(step, "refund" | "cancel_intent" | "release");
    let span = tracing::info_span!(
        "saga",
        otel.name = %format!("saga {step}"),
        otel.kind = "internal",
        otel.status_code = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
        order_id = %order.order_id,
        tenant_id = %order.tenant_id,
        step = %step,
        attempt = ctx.info().attempt,
        saga.compensation = compensation,
        outcome = tracing::field::Empty,
    );
    if let Some(tp) = &order.traceparent {
        let headers = std::collections::BTreeMap::from([("traceparent".to_string(), tp.clone())]);
        let _ = span.set_parent(telemetry::extract(&telemetry::MapExtractor(&headers)));
    }
    span
}

impl CheckoutActivities {
    /// Run one step's call (after the pause fault lets it) inside its span,
    /// and record its duration and outcome.
    async fn step(
        &self,
        ctx: &ActivityContext,
        i: &StepInput,
        step: &'static str,
        call: impl Future<Output = Result<StepReply, crate::ports::Transient>>,
    ) -> Result<StepResult, ActivityError> {
        let order = &i.order;
        if let Some(r) = self.recorded(i, step).await? {
            return Ok(StepResult::Recorded(r));
        }
        let span = saga_span(ctx, order, step);
        let started = std::time::Instant::now();
        let reply = async {
            hold_if_paused(ctx).await?;
            Ok::<_, ActivityError>(call.await)
        }
        .instrument(span.clone())
        .await?;
        let outcome = match &reply {
            Ok(StepReply::Done { .. }) => "done",
            Ok(StepReply::Rejected { .. }) => "rejected",
            Err(_) => "retry",
        };
        span.record("outcome", outcome);
        match &reply {
            Err(t) => {
                span.record("otel.status_code", "error");
                span.record("otel.status_description", t.0.as_str());
            }
            Ok(StepReply::Rejected { reason, .. }) => {
                span.record("otel.status_description", reason.as_str());
            }
            Ok(StepReply::Done { .. }) => {}
        }
        self.metrics
            .steps
            .get_or_create(&StepLabels {
                step: step.to_string(),
                outcome: outcome.to_string(),
            })
            .observe(started.elapsed().as_secs_f64());
        if outcome == "done" && matches!(step, "refund" | "cancel_intent" | "release") {
            self.metrics
                .compensations
                .get_or_create(&StepName {
                    step: step.to_string(),
                })
                .inc();
        }
        let _entered = span.enter();
        done(reply, ctx)
    }

    /// Step `i.seq` of the order's log, if it is there already. A failed
    /// read fails the attempt (the step has not run; it is retried).
    async fn recorded(
        &self,
        i: &StepInput,
        step: &'static str,
    ) -> Result<Option<StepRecord>, ActivityError> {
        let order = &i.order;
        let id = order_uuid(&order.order_id)?;
        let r = self
            .orders
            .store
            .step(&order.tenant_id, id, i.seq)
            .await
            .map_err(|e| {
                ActivityError::from(anyhow::anyhow!(
                    "reading step {} of the order's log: {e}",
                    i.seq
                ))
            })?;
        if let Some(r) = &r {
            tracing::info!(
                order_id = %order.order_id,
                seq = i.seq,
                step,
                outcome = %r.outcome,
                "saga step already in the order's log (a replayed workflow task): taken from there"
            );
            self.metrics
                .from_log
                .get_or_create(&StepName {
                    step: step.to_string(),
                })
                .inc();
        }
        Ok(r)
    }
}

/// The order id the workflow carries as text, for the store.
fn order_uuid(order_id: &str) -> Result<Uuid, ActivityError> {
    order_id
        .parse()
        .map_err(|e| ActivityError::from(anyhow::anyhow!("order id {order_id}: {e}")))
}

fn done(
    reply: Result<StepReply, crate::ports::Transient>,
    ctx: &ActivityContext,
) -> Result<StepResult, ActivityError> {
    let attempt = ctx.info().attempt;
    match reply {
        Ok(reply) => Ok(StepResult::Ran { reply, attempt }),
        Err(t) => {
            tracing::warn!(activity = %ctx.info().activity_type, attempt, error = %t, "saga step failed; Temporal retries it");
            Err(ActivityError::from(t))
        }
    }
}

#[activities]
impl CheckoutActivities {
    #[activity]
    pub async fn reserve(
        self: Arc<Self>,
        ctx: ActivityContext,
        i: StepInput,
    ) -> Result<StepResult, ActivityError> {
        self.step(&ctx, &i, "reserve", self.steps.reserve(&i.order))
            .await
    }

    #[activity]
    pub async fn authorize(
        self: Arc<Self>,
        ctx: ActivityContext,
        i: StepInput,
    ) -> Result<StepResult, ActivityError> {
        self.step(&ctx, &i, "authorize", self.steps.authorize(&i.order))
            .await
    }

    #[activity]
    pub async fn capture(
        self: Arc<Self>,
        ctx: ActivityContext,
        i: StepInput,
    ) -> Result<StepResult, ActivityError> {
        let call = self.steps.capture(&i.order, &i.payment_id);
        self.step(&ctx, &i, "capture", call).await
    }

    #[activity]
    pub async fn finalize(
        self: Arc<Self>,
        ctx: ActivityContext,
        i: StepInput,
    ) -> Result<StepResult, ActivityError> {
        let call = self.steps.finalize(&i.order, &i.reservation_id);
        self.step(&ctx, &i, "finalize", call).await
    }

    #[activity]
    pub async fn refund(
        self: Arc<Self>,
        ctx: ActivityContext,
        i: StepInput,
    ) -> Result<StepResult, ActivityError> {
        let call = self.steps.refund(&i.order, &i.payment_id);
        self.step(&ctx, &i, "refund", call).await
    }

    #[activity]
    pub async fn cancel_intent(
        self: Arc<Self>,
        ctx: ActivityContext,
        i: StepInput,
    ) -> Result<StepResult, ActivityError> {
        let call = self.steps.cancel_intent(&i.order, &i.payment_id);
        self.step(&ctx, &i, "cancel_intent", call).await
    }

    #[activity]
    pub async fn release(
        self: Arc<Self>,
        ctx: ActivityContext,
        i: StepInput,
    ) -> Result<StepResult, ActivityError> {
        let call = self.steps.release(&i.order, &i.reservation_id);
        self.step(&ctx, &i, "release", call).await
    }

    /// Write a step to the order (idempotent per seq). Its span carries the
    /// order's trace, so the `order.lifecycle` event it writes does too.
    #[activity]
    pub async fn record(
        self: Arc<Self>,
        _ctx: ActivityContext,
        mut r: RecordInput,
    ) -> Result<(), ActivityError> {
        let span = tracing::info_span!(
            "saga",
            otel.name = %format!("saga record {} {}", r.step.step, r.step.outcome),
            otel.kind = "internal",
            order_id = %r.order_id,
            tenant_id = %r.tenant_id,
            seq = r.step.seq,
        );
        if let Some(tp) = &r.traceparent {
            let headers =
                std::collections::BTreeMap::from([("traceparent".to_string(), tp.clone())]);
            let _ = span.set_parent(telemetry::extract(&telemetry::MapExtractor(&headers)));
        }
        async move {
            let id = order_uuid(&r.order_id)?;
            r.step.at_ms = self.orders.clock.now_ms();
            self.orders
                .record(&r.tenant_id, id, &r.step)
                .await
                .map_err(|e| ActivityError::from(anyhow::anyhow!("{e}")))?;
            Ok(())
        }
        .instrument(span)
        .await
    }
}

/// Starts the checkout workflow; the workflow id is derived from the order,
/// so a second start of the same order is a no-op.
pub struct TemporalStarter {
    pub client: Client,
    pub task_queue: String,
}

pub fn workflow_id(tenant: &str, order_id: &str) -> String {
    format!("checkout-{tenant}-{order_id}")
}

#[async_trait::async_trait]
impl SagaStarter for TemporalStarter {
    async fn start(&self, order: &SagaOrder) -> Result<(), String> {
        let id = workflow_id(&order.tenant_id, &order.order_id);
        // Eager start: this process also runs the worker, so Temporal hands
        // the first (with local activities, usually the only) workflow task
        // to it in the answer to the start, with no task-queue round trip.
        // Without a free local slot the task goes through the queue as usual.
        let opts = WorkflowStartOptions::new(self.task_queue.clone(), id)
            .enable_eager_workflow_start(true)
            .build();
        let started = tokio::time::timeout(
            START_TIMEOUT,
            self.client
                .start_workflow(CheckoutWorkflow::run, order.clone(), opts),
        )
        .await
        .map_err(|_| format!("temporal did not answer within {START_TIMEOUT:?}"))?;
        match started {
            Ok(_) | Err(WorkflowStartError::AlreadyStarted { .. }) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_held_activity_waits_while_the_fault_is_on_and_at_most_its_bound() {
        // One test sets the process-wide fault view, so none races on it.
        faults::set_view([]);
        let beats = AtomicUsize::new(0);
        let beat = || async {
            beats.fetch_add(1, Ordering::Relaxed);
        };
        assert_eq!(
            wait_while_paused(paused, beat, PAUSE_WAIT_MAX).await,
            Ok(Duration::ZERO)
        );
        assert_eq!(beats.load(Ordering::Relaxed), 0);

        let on = faults::spec(PAUSE_FAULT)
            .unwrap()
            .activate(None, None, None, 0)
            .unwrap();
        assert_eq!(on.target, COMPONENT);
        faults::set_view([on]);
        // Still on at the bound: the attempt gives up, having polled
        // every PAUSE_POLL.
        let waited = wait_while_paused(paused, beat, PAUSE_WAIT_MAX).await;
        assert_eq!(waited, Err(PAUSE_WAIT_MAX));
        assert_eq!(
            beats.load(Ordering::Relaxed) as u32,
            PAUSE_WAIT_MAX.as_millis() as u32 / PAUSE_POLL.as_millis() as u32
        );

        // Cleared mid-wait: it resumes at the next poll.
        let clear = async {
            tokio::time::sleep(Duration::from_millis(1_100)).await;
            faults::set_view([]);
        };
        let (waited, ()) = tokio::join!(wait_while_paused(paused, beat, PAUSE_WAIT_MAX), clear);
        assert_eq!(waited, Ok(Duration::from_millis(1_250)));
        assert!(!paused());
    }
}
