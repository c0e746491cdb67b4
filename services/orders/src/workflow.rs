//! The checkout saga on Temporal: a thin driver of `domain::saga`. The
//! workflow asks the saga what to do next, runs it as an activity with the
//! step's retry policy, reports the outcome back, and records each step
//! (state, event) through another activity. The workflow holds no business
//! rule of its own; Temporal gives it durability (a worker crash resumes the
//! saga where it was) and at-least-once activities (every step is idempotent).

use std::{sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};
use temporalio_client::{Client, WorkflowStartOptions, errors::WorkflowStartError};
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, ApplicationFailure, LocalActivityOptions, WorkflowContext, WorkflowResult,
    activities::{ActivityContext, ActivityError},
};
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

/// The driver's policy in Temporal's terms (no attempt limit is Temporal's 0).
fn temporal_retry(p: RetryPolicy) -> temporalio_common::RetryPolicy {
    temporalio_common::RetryPolicy::builder()
        .initial_interval(p.initial_interval)
        .backoff_coefficient(f64::from(p.backoff_coefficient))
        .maximum_interval(p.maximum_interval)
        .maximum_attempts(p.maximum_attempts.unwrap_or(0))
        .build()
}

/// Options of the activity that carries out `command` ([`RetryPolicy::of`]).
fn activity_options(command: Command) -> ActivityOptions {
    let p = RetryPolicy::of(command);
    ActivityOptions::with_start_to_close_timeout(p.start_to_close)
        .retry_policy(temporal_retry(p))
        .build()
}

/// Recording a step: a local activity retried until it succeeds.
fn record_options() -> LocalActivityOptions {
    let p = RetryPolicy::RECORD;
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
}

/// A step's reply and the attempt that produced it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepResult {
    pub reply: StepReply,
    pub attempt: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordInput {
    pub tenant_id: String,
    pub order_id: String,
    pub step: StepRecord,
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
        };
        let mut seq = 0u32;
        loop {
            let command = saga.next();
            let result = match command {
                Command::Done(state) => return Ok(state.as_str().to_string()),
                Command::Run(step) => run_step(ctx, step, &input).await,
                Command::Compensate(c) => compensate(ctx, c, &input).await,
            };
            let settled = driver::settle(command, result.map(|r| (r.reply, r.attempt)))
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
            seq += 1;
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
            };
            // A local activity: a short write in this worker's own database,
            // recorded as a marker, with no task-queue round trip.
            ctx.execute_local_activity(CheckoutActivities::record, record, record_options())
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
    let o = activity_options(Command::Run(step));
    let r = match step {
        Step::Reserve => {
            ctx.execute_activity(CheckoutActivities::reserve, i, o)
                .await
        }
        Step::Authorize => {
            ctx.execute_activity(CheckoutActivities::authorize, i, o)
                .await
        }
        Step::Capture => {
            ctx.execute_activity(CheckoutActivities::capture, i, o)
                .await
        }
        Step::Finalize => {
            ctx.execute_activity(CheckoutActivities::finalize, i, o)
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
    let o = activity_options(Command::Compensate(c));
    let r = match c {
        Compensation::Refund => ctx.execute_activity(CheckoutActivities::refund, i, o).await,
        Compensation::CancelIntent => {
            ctx.execute_activity(CheckoutActivities::cancel_intent, i, o)
                .await
        }
        Compensation::Release => {
            ctx.execute_activity(CheckoutActivities::release, i, o)
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

/// The activities: each one a call through the `SagaSteps` port, or the
/// step log through the orders service.
pub struct CheckoutActivities {
    pub orders: Orders,
    pub steps: Arc<dyn SagaSteps>,
}

fn done(
    reply: Result<StepReply, crate::ports::Transient>,
    ctx: &ActivityContext,
) -> Result<StepResult, ActivityError> {
    let attempt = ctx.info().attempt;
    match reply {
        Ok(reply) => Ok(StepResult { reply, attempt }),
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
        done(self.steps.reserve(&i.order).await, &ctx)
    }

    #[activity]
    pub async fn authorize(
        self: Arc<Self>,
        ctx: ActivityContext,
        i: StepInput,
    ) -> Result<StepResult, ActivityError> {
        done(self.steps.authorize(&i.order).await, &ctx)
    }

    #[activity]
    pub async fn capture(
        self: Arc<Self>,
        ctx: ActivityContext,
        i: StepInput,
    ) -> Result<StepResult, ActivityError> {
        done(self.steps.capture(&i.order, &i.payment_id).await, &ctx)
    }

    #[activity]
    pub async fn finalize(
        self: Arc<Self>,
        ctx: ActivityContext,
        i: StepInput,
    ) -> Result<StepResult, ActivityError> {
        done(self.steps.finalize(&i.order, &i.reservation_id).await, &ctx)
    }

    #[activity]
    pub async fn refund(
        self: Arc<Self>,
        ctx: ActivityContext,
        i: StepInput,
    ) -> Result<StepResult, ActivityError> {
        done(self.steps.refund(&i.order, &i.payment_id).await, &ctx)
    }

    #[activity]
    pub async fn cancel_intent(
        self: Arc<Self>,
        ctx: ActivityContext,
        i: StepInput,
    ) -> Result<StepResult, ActivityError> {
        done(
            self.steps.cancel_intent(&i.order, &i.payment_id).await,
            &ctx,
        )
    }

    #[activity]
    pub async fn release(
        self: Arc<Self>,
        ctx: ActivityContext,
        i: StepInput,
    ) -> Result<StepResult, ActivityError> {
        done(self.steps.release(&i.order, &i.reservation_id).await, &ctx)
    }

    /// Write a step to the order (idempotent per seq).
    #[activity]
    pub async fn record(
        self: Arc<Self>,
        _ctx: ActivityContext,
        mut r: RecordInput,
    ) -> Result<(), ActivityError> {
        let id: Uuid = r
            .order_id
            .parse()
            .map_err(|e| ActivityError::from(anyhow::anyhow!("order id {}: {e}", r.order_id)))?;
        r.step.at_ms = self.orders.clock.now_ms();
        self.orders
            .record(&r.tenant_id, id, &r.step)
            .await
            .map_err(|e| ActivityError::from(anyhow::anyhow!("{e}")))?;
        Ok(())
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
        let opts = WorkflowStartOptions::new(self.task_queue.clone(), id).build();
        let started = tokio::time::timeout(
            Duration::from_secs(5),
            self.client
                .start_workflow(CheckoutWorkflow::run, order.clone(), opts),
        )
        .await
        .map_err(|_| "temporal did not answer within 5 s".to_string())?;
        match started {
            Ok(_) | Err(WorkflowStartError::AlreadyStarted { .. }) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }
}
