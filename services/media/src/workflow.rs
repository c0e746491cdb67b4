//! The media pipeline on Temporal: one workflow per asset runs the steps of
//! [`Step::plan`] as activities, each with [`STEP_ATTEMPTS`] attempts and
//! exponential backoff; a rejection or a step out of attempts settles the
//! asset (rejected, or failed with the step and the reason). Temporal gives
//! durability: a worker killed mid-step stops heartbeating, and the step's
//! next attempt runs on the next worker.

use std::{future::Future, sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};
use temporalio_client::{Client, WorkflowStartOptions, errors::WorkflowStartError};
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, WorkflowContext, WorkflowResult,
    activities::{ActivityContext, ActivityError},
};
use uuid::Uuid;

use crate::{
    domain::{Kind, Status, Step},
    pipeline::{HEARTBEAT_EVERY, HEARTBEAT_TIMEOUT, Pipeline, StepError, StepOutcome},
};

/// Task queue of the media workflow and its activities.
pub const TASK_QUEUE: &str = "media";
/// Attempts per step (the reference's acceptance: 3, exponential backoff).
pub const STEP_ATTEMPTS: u32 = 3;
/// First retry after this; doubled for each next one. (The Temporal dev
/// server fires timers about a second late at most, so a shorter first
/// interval would not show its doubling.)
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// One asset's job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub tenant_id: String,
    pub asset_id: String,
    pub kind: Kind,
}

/// How an asset ends when it does not reach ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settle {
    pub asset_id: String,
    pub status: Status,
    pub failed_step: Option<Step>,
    pub reason: String,
}

fn step_options(step: Step) -> ActivityOptions {
    let start_to_close = match step {
        Step::Transcode => Duration::from_secs(600),
        _ => Duration::from_secs(120),
    };
    ActivityOptions::with_start_to_close_timeout(start_to_close)
        .heartbeat_timeout(HEARTBEAT_TIMEOUT)
        .retry_policy(
            temporalio_common::RetryPolicy::builder()
                .initial_interval(FIRST_BACKOFF)
                .backoff_coefficient(2.0)
                .maximum_interval(Duration::from_secs(10))
                .maximum_attempts(STEP_ATTEMPTS)
                .build(),
        )
        .build()
}

/// Settling retries until it succeeds (a database write).
fn settle_options() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(30))
        .retry_policy(
            temporalio_common::RetryPolicy::builder()
                .initial_interval(FIRST_BACKOFF)
                .backoff_coefficient(2.0)
                .maximum_interval(Duration::from_secs(10))
                .maximum_attempts(0)
                .build(),
        )
        .build()
}

#[workflow]
#[derive(Default)]
pub struct MediaWorkflow;

#[workflow_methods]
impl MediaWorkflow {
    /// Runs one asset's steps; returns its final status.
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, job: Job) -> WorkflowResult<String> {
        for &step in Step::plan(job.kind) {
            let o = step_options(step);
            let j = job.clone();
            let r = match step {
                Step::Ingest => ctx.execute_activity(MediaActivities::ingest, j, o).await,
                Step::Moderate => ctx.execute_activity(MediaActivities::moderate, j, o).await,
                Step::Thumbnail => ctx.execute_activity(MediaActivities::thumbnail, j, o).await,
                Step::Transcode => ctx.execute_activity(MediaActivities::transcode, j, o).await,
                Step::Ready => ctx.execute_activity(MediaActivities::ready, j, o).await,
            };
            let settle = match r {
                Ok(StepOutcome::Continue) => continue,
                Ok(StepOutcome::Rejected(reasons)) => Settle {
                    asset_id: job.asset_id.clone(),
                    status: Status::Rejected,
                    failed_step: None,
                    reason: reasons.join("; "),
                },
                Err(e) => Settle {
                    asset_id: job.asset_id.clone(),
                    status: Status::Failed,
                    failed_step: Some(step),
                    reason: root_cause(&e),
                },
            };
            let status = settle.status;
            ctx.execute_activity(MediaActivities::settle, settle, settle_options())
                .await?;
            return Ok(status.as_str().to_string());
        }
        Ok(Status::Ready.as_str().to_string())
    }
}

/// The innermost message of an error chain (the activity's own error).
fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// The activities: one per step, each a call into the [`Pipeline`] with its
/// attempt recorded, the fault switch consulted and heartbeats sent.
pub struct MediaActivities {
    pub pipeline: Arc<Pipeline>,
}

/// Run `work` while heartbeating every [`HEARTBEAT_EVERY`].
async fn heartbeating<T>(ctx: &ActivityContext, work: impl Future<Output = T>) -> T {
    tokio::pin!(work);
    let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
    loop {
        tokio::select! {
            r = &mut work => return r,
            _ = tick.tick() => {
                if let Err(e) = ctx.record_heartbeat(String::new()).await {
                    tracing::debug!(error = %e, "heartbeat not recorded");
                }
            }
        }
    }
}

impl MediaActivities {
    async fn step(
        &self,
        ctx: &ActivityContext,
        job: &Job,
        step: Step,
    ) -> Result<StepOutcome, ActivityError> {
        let p = &self.pipeline;
        let id: Uuid = job.asset_id.parse().map_err(|e| {
            ActivityError::application(temporalio_sdk::ApplicationFailure::non_retryable(
                anyhow::anyhow!("asset id {}: {e}", job.asset_id),
            ))
        })?;
        let attempt = ctx.info().attempt;
        if let Err(e) = p
            .store
            .attempt_started(id, step, attempt, p.clock.now_ms())
            .await
        {
            return Err(anyhow::anyhow!("postgres: {e}").into());
        }
        let fault = p.faults.take(step);
        let result = heartbeating(ctx, async {
            if !fault.delay.is_zero() {
                tokio::time::sleep(fault.delay).await;
            }
            if let Some(left) = fault.fail {
                let more = if left == crate::faults::UNTIL_CLEARED {
                    format!("until {} is cleared", crate::faults::THUMBNAIL_FAILING)
                } else {
                    format!("{left} more to come")
                };
                return Err(StepError::Retryable(format!(
                    "injected fault: {} fails ({more})",
                    step.as_str()
                )));
            }
            match step {
                Step::Ingest => p.ingest(id).await,
                Step::Moderate => p.moderate(id, fault.reject).await,
                Step::Thumbnail => p.thumbnail(id).await,
                Step::Transcode => p.transcode(id).await,
                Step::Ready => p.ready(id).await,
            }
        })
        .await;
        let error = result
            .as_ref()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        if result.is_err() {
            p.metrics.attempts_failed.inc();
        }
        if let Err(e) = p
            .store
            .attempt_finished(id, step, attempt, p.clock.now_ms(), &error)
            .await
        {
            tracing::warn!(asset = %id, error = %e, "attempt not recorded");
        }
        match result {
            Ok(o) => Ok(o),
            Err(StepError::Invalid(m)) => {
                tracing::warn!(asset = %id, step = step.as_str(), attempt, reason = %m, "the file is refused");
                Err(ActivityError::application(
                    temporalio_sdk::ApplicationFailure::non_retryable(anyhow::anyhow!(m)),
                ))
            }
            Err(StepError::Retryable(m)) => {
                tracing::warn!(asset = %id, step = step.as_str(), attempt, error = %m, "step failed; Temporal retries it");
                Err(anyhow::anyhow!(m).into())
            }
        }
    }
}

#[activities]
impl MediaActivities {
    #[activity]
    pub async fn ingest(
        self: Arc<Self>,
        ctx: ActivityContext,
        job: Job,
    ) -> Result<StepOutcome, ActivityError> {
        self.step(&ctx, &job, Step::Ingest).await
    }

    #[activity]
    pub async fn moderate(
        self: Arc<Self>,
        ctx: ActivityContext,
        job: Job,
    ) -> Result<StepOutcome, ActivityError> {
        self.step(&ctx, &job, Step::Moderate).await
    }

    #[activity]
    pub async fn thumbnail(
        self: Arc<Self>,
        ctx: ActivityContext,
        job: Job,
    ) -> Result<StepOutcome, ActivityError> {
        self.step(&ctx, &job, Step::Thumbnail).await
    }

    #[activity]
    pub async fn transcode(
        self: Arc<Self>,
        ctx: ActivityContext,
        job: Job,
    ) -> Result<StepOutcome, ActivityError> {
        self.step(&ctx, &job, Step::Transcode).await
    }

    #[activity]
    pub async fn ready(
        self: Arc<Self>,
        ctx: ActivityContext,
        job: Job,
    ) -> Result<StepOutcome, ActivityError> {
        self.step(&ctx, &job, Step::Ready).await
    }

    /// Rejected or failed: record it and publish it (once).
    #[activity]
    pub async fn settle(
        self: Arc<Self>,
        _ctx: ActivityContext,
        s: Settle,
    ) -> Result<(), ActivityError> {
        let id: Uuid = s
            .asset_id
            .parse()
            .map_err(|e| ActivityError::from(anyhow::anyhow!("asset id {}: {e}", s.asset_id)))?;
        self.pipeline
            .settle(id, s.status, s.failed_step, &s.reason)
            .await
            .map_err(|e| ActivityError::from(anyhow::anyhow!("{e}")))
    }
}

/// The workflow id of an asset: a second start is a no-op.
pub fn workflow_id(asset_id: &str) -> String {
    format!("media-{asset_id}")
}

/// Start the workflow of `job` (idempotent).
pub async fn start(client: &Client, task_queue: &str, job: &Job) -> Result<(), String> {
    let opts =
        WorkflowStartOptions::new(task_queue.to_string(), workflow_id(&job.asset_id)).build();
    let started = tokio::time::timeout(
        Duration::from_secs(5),
        client.start_workflow(MediaWorkflow::run, job.clone(), opts),
    )
    .await
    .map_err(|_| "temporal did not answer within 5 s".to_string())?;
    match started {
        Ok(_) | Err(WorkflowStartError::AlreadyStarted { .. }) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}
