//! The DSAR on Temporal: one workflow per request (id `dsar-{id}`, so a
//! second start is a no-op), input the DSAR id only (the subject's e-mail
//! addresses never enter Temporal's history).
//!
//! prepare (resolve the subject, freeze it for an erasure) → every
//! participant in parallel (export or erase, each retried with backoff until
//! it answers; the DSAR shows whom it waits for) → for an erasure, the sweep
//! (every participant's `Scan` plus the independent scans); residue sends the
//! participants round again, up to [`SWEEP_ROUNDS`] sweeps, after which the
//! DSAR fails without a certificate → finish (archive for an export; audit
//! record; certificate). Durable: a killed worker's activity is retried on
//! the next one; a killed compliance resumes at start-up.

use std::{sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};
use shopstream_dsar::{Erasure, Participant, StoreCount, total};
use temporalio_client::{Client, WorkflowStartOptions, errors::WorkflowStartError};
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, WorkflowContext, WorkflowResult,
    activities::{ActivityContext, ActivityError},
};
use uuid::Uuid;

use crate::{
    Ctx,
    domain::{AuditRecord, Certificate, ISSUER, Kind, State, Sweep},
    store::Step,
};

/// Task queue of the DSAR workflow and its activities.
pub const TASK_QUEUE: &str = "compliance";
/// Sweeps before an erasure that keeps finding residue fails.
pub const SWEEP_ROUNDS: u32 = 3;
/// First retry of a failed activity; doubled up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// The local participant: the DSAR's own export archives.
pub const LOCAL: &str = "compliance";

/// An activity whose worker died stops heartbeating: after this it runs
/// again on another worker (instead of after its whole start-to-close bound).
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(4);
/// How often a running activity heartbeats.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// Retried until it succeeds: a participant that is down is waited for.
fn forever(start_to_close: Duration) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(start_to_close)
        .heartbeat_timeout(HEARTBEAT_TIMEOUT)
        .retry_policy(
            temporalio_common::RetryPolicy::builder()
                .initial_interval(FIRST_BACKOFF)
                .backoff_coefficient(2.0)
                .maximum_interval(MAX_BACKOFF)
                .maximum_attempts(0)
                .build(),
        )
        .build()
}

/// What prepare found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub kind: Kind,
    pub participants: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepInput {
    pub dsar_id: String,
    pub participant: String,
    pub round: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailInput {
    pub dsar_id: String,
    pub reason: String,
}

#[workflow]
#[derive(Default)]
pub struct DsarWorkflow;

#[workflow_methods]
impl DsarWorkflow {
    /// Runs one DSAR to its end; returns its final state.
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, dsar_id: String) -> WorkflowResult<String> {
        let short = forever(Duration::from_secs(60));
        let plan = ctx
            .execute_activity(DsarActivities::prepare, dsar_id.clone(), short.clone())
            .await?;
        let mut round = 0;
        loop {
            let steps = plan.participants.iter().map(|p| {
                ctx.execute_activity(
                    DsarActivities::step,
                    StepInput {
                        dsar_id: dsar_id.clone(),
                        participant: p.clone(),
                        round,
                    },
                    forever(Duration::from_secs(300)),
                )
            });
            for r in temporalio_sdk::workflows::join_all(steps).await {
                r?;
            }
            if plan.kind == Kind::Export {
                break;
            }
            let sweep = ctx
                .execute_activity(
                    DsarActivities::sweep,
                    dsar_id.clone(),
                    forever(Duration::from_secs(300)),
                )
                .await?;
            if sweep.clean {
                break;
            }
            round += 1;
            if round >= SWEEP_ROUNDS {
                let reason = format!(
                    "the sweep found residue {SWEEP_ROUNDS} times: {}",
                    sweep.residue.join("; ")
                );
                ctx.execute_activity(
                    DsarActivities::fail,
                    FailInput {
                        dsar_id: dsar_id.clone(),
                        reason,
                    },
                    short,
                )
                .await?;
                return Ok(State::Failed.as_str().to_string());
            }
        }
        ctx.execute_activity(
            DsarActivities::finish,
            dsar_id,
            forever(Duration::from_secs(300)),
        )
        .await?;
        Ok(State::Completed.as_str().to_string())
    }
}

/// The workflow id of a DSAR.
pub fn workflow_id(dsar_id: Uuid) -> String {
    format!("dsar-{dsar_id}")
}

/// Start the workflow of `dsar_id` (idempotent).
pub async fn start(client: &Client, task_queue: &str, dsar_id: Uuid) -> Result<(), String> {
    let opts = WorkflowStartOptions::new(task_queue.to_string(), workflow_id(dsar_id)).build();
    let started = tokio::time::timeout(
        Duration::from_secs(5),
        client.start_workflow(DsarWorkflow::run, dsar_id.to_string(), opts),
    )
    .await
    .map_err(|_| "temporal did not answer within 5 s".to_string())?;
    match started {
        Ok(_) | Err(WorkflowStartError::AlreadyStarted { .. }) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

pub struct DsarActivities {
    pub ctx: Arc<Ctx>,
}

/// Run `work` while heartbeating every [`HEARTBEAT_EVERY`].
async fn heartbeating<T>(ctx: &ActivityContext, work: impl std::future::Future<Output = T>) -> T {
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

fn fatal(e: impl std::fmt::Display) -> ActivityError {
    ActivityError::application(temporalio_sdk::ApplicationFailure::non_retryable(
        anyhow::anyhow!("{e}"),
    ))
}

fn retry(e: impl std::fmt::Display) -> ActivityError {
    anyhow::anyhow!("{e}").into()
}

fn parse_id(s: &str) -> Result<Uuid, ActivityError> {
    s.parse().map_err(|e| fatal(format!("dsar id {s}: {e}")))
}

impl DsarActivities {
    /// Note what the DSAR waits for, then hand the error to Temporal.
    async fn waiting(&self, id: Uuid, who: &str, e: impl std::fmt::Display) -> ActivityError {
        let text = format!("{who}: {e}");
        tracing::warn!(dsar = %id, waiting_on = %text, "dsar step failed; retrying");
        let _ = self.ctx.store.set_waiting(id, &text).await;
        retry(text)
    }

    async fn local_erase(&self, d: &crate::store::Dsar) -> Result<Erasure, String> {
        let c = &self.ctx;
        let keys =
            crate::archive::list(&c.s3, &c.export_bucket, &d.tenant, d.subject_user_id).await?;
        for k in &keys {
            crate::archive::delete(&c.s3, &c.export_bucket, k).await?;
        }
        Ok(Erasure {
            counts: vec![StoreCount::new(
                "compliance.exports",
                keys.len() as u64,
                "earlier export archives",
            )],
            retained: vec![],
        })
    }
}

#[activities]
impl DsarActivities {
    /// Resolve the subject's e-mail addresses, mark the DSAR running and,
    /// for an erasure, freeze the subject (the gateway refuses its requests
    /// from now on; its refresh tokens go with identity's erase).
    #[activity]
    pub async fn prepare(
        self: Arc<Self>,
        a: ActivityContext,
        dsar_id: String,
    ) -> Result<Plan, ActivityError> {
        heartbeating(&a, self.prepare_inner(dsar_id)).await
    }

    #[activity]
    pub async fn step(
        self: Arc<Self>,
        a: ActivityContext,
        input: StepInput,
    ) -> Result<Step, ActivityError> {
        let attempt = a.info().attempt;
        heartbeating(&a, self.step_inner(input, attempt)).await
    }

    #[activity]
    pub async fn sweep(
        self: Arc<Self>,
        a: ActivityContext,
        dsar_id: String,
    ) -> Result<Sweep, ActivityError> {
        heartbeating(&a, self.sweep_inner(dsar_id)).await
    }

    #[activity]
    pub async fn finish(
        self: Arc<Self>,
        a: ActivityContext,
        dsar_id: String,
    ) -> Result<(), ActivityError> {
        heartbeating(&a, self.finish_inner(dsar_id)).await
    }

    #[activity]
    pub async fn fail(
        self: Arc<Self>,
        a: ActivityContext,
        input: FailInput,
    ) -> Result<(), ActivityError> {
        heartbeating(&a, self.fail_inner(input)).await
    }
}

impl DsarActivities {
    async fn prepare_inner(&self, dsar_id: String) -> Result<Plan, ActivityError> {
        let id = parse_id(&dsar_id)?;
        let c = &self.ctx;
        let d = c.store.load(id).await.map_err(retry)?;
        let emails = match crate::subject_emails(c, &d.tenant, d.subject_user_id).await {
            Ok(e) => e,
            Err(e) => return Err(self.waiting(id, "identity", e).await),
        };
        // Addresses seen before (a resumed DSAR after identity's erase) are kept.
        let mut all = d.emails.clone();
        for e in emails {
            if !all.contains(&e) {
                all.push(e);
            }
        }
        c.store.set_running(id, &all).await.map_err(retry)?;
        if d.kind == Kind::Erase
            && let Err(e) = crate::block(c, &d.tenant, d.subject_user_id).await
        {
            return Err(self.waiting(id, "redis (freeze)", e).await);
        }
        let mut participants: Vec<String> = c.participants.iter().map(|(n, _)| n.clone()).collect();
        participants.push(LOCAL.to_string());
        Ok(Plan {
            kind: d.kind,
            participants,
        })
    }

    /// One participant's export or erase.
    async fn step_inner(&self, input: StepInput, attempts: u32) -> Result<Step, ActivityError> {
        let id = parse_id(&input.dsar_id)?;
        let c = &self.ctx;
        let d = c.store.load(id).await.map_err(retry)?;
        let subject = d.subject();
        let name = input.participant.as_str();
        // A retry of a step that completed (its answer to Temporal was lost).
        if let Some(done) = d.steps.get(name)
            && done.state == "completed"
            && done.round == input.round
        {
            return Ok(done.clone());
        }
        let started = std::time::Instant::now();
        let outcome: Result<(Vec<StoreCount>, Vec<shopstream_dsar::Retained>), String> =
            match (d.kind, name) {
                (Kind::Erase, LOCAL) => self.local_erase(&d).await.map(|e| (e.counts, e.retained)),
                (Kind::Export, LOCAL) => Ok((vec![], vec![])),
                (kind, _) => {
                    let Some(p) = c.participant(name) else {
                        return Err(fatal(format!("no participant {name}")));
                    };
                    match kind {
                        Kind::Erase => {
                            // What is there before erasing, kept across
                            // attempts: an attempt that erased and then lost
                            // its answer (a crash) is followed by one that
                            // finds nothing, and the count must not be lost.
                            let prev = d.steps.get(name).cloned().unwrap_or_default();
                            let found = match (&prev.found, input.round) {
                                (Some(f), _) => f.clone(),
                                (None, 0) => match p.scan(&subject).await {
                                    Ok(f) => {
                                        let step = Step {
                                            state: "running".into(),
                                            found: Some(f.clone()),
                                            attempts,
                                            ..prev
                                        };
                                        c.store.set_step(id, name, &step).await.map_err(retry)?;
                                        f
                                    }
                                    Err(e) => return Err(self.waiting(id, name, e).await),
                                },
                                (None, _) => vec![],
                            };
                            p.erase(&subject)
                                .await
                                .map(|e| {
                                    let retained = fill_retained(e.retained, &e.counts, &found);
                                    (at_least(e.counts, &found), retained)
                                })
                                .map_err(|e| e.to_string())
                        }
                        Kind::Export => match p.export(&subject).await {
                            Ok(e) => crate::stage_export(c, &d, name, &e)
                                .await
                                .map(|()| (e.counts, vec![])),
                            Err(e) => Err(e.to_string()),
                        },
                    }
                }
            };
        match outcome {
            Ok((counts, retained)) => {
                // A later sweep round adds to what the first one did.
                let prev = d.steps.get(name).cloned().unwrap_or_default();
                let step = Step {
                    state: "completed".into(),
                    counts: if input.round == 0 {
                        counts
                    } else {
                        merge(prev.counts, counts)
                    },
                    retained: if input.round == 0 || prev.retained.is_empty() {
                        retained
                    } else {
                        prev.retained
                    },
                    detail: String::new(),
                    attempts,
                    found: prev.found,
                    round: input.round,
                    completed_at_ms: c.clock.now_ms(),
                    took_ms: started.elapsed().as_millis() as i64,
                };
                c.store.set_step(id, name, &step).await.map_err(retry)?;
                let _ = c.store.set_waiting(id, "").await;
                c.metrics
                    .step_seconds
                    .observe(started.elapsed().as_secs_f64());
                Ok(step)
            }
            Err(e) => {
                let step = Step {
                    state: "running".into(),
                    detail: e.clone(),
                    attempts,
                    ..d.steps.get(name).cloned().unwrap_or_default()
                };
                let _ = c.store.set_step(id, name, &step).await;
                c.metrics.step_failures.inc();
                Err(self.waiting(id, name, e).await)
            }
        }
    }

    /// Every participant's scan and the independent scans.
    async fn sweep_inner(&self, dsar_id: String) -> Result<Sweep, ActivityError> {
        let id = parse_id(&dsar_id)?;
        let c = &self.ctx;
        let d = c.store.load(id).await.map_err(retry)?;
        match crate::sweep(c, &d.subject()).await {
            Ok(s) => {
                c.store.set_sweep(id, &s).await.map_err(retry)?;
                if !s.clean {
                    c.metrics.residue_found.inc();
                    tracing::warn!(dsar = %id, residue = ?s.residue, "the sweep found residue");
                }
                Ok(s)
            }
            Err(e) => Err(self.waiting(id, "sweep", e).await),
        }
    }

    /// The archive (export), the suppression (erase), the audit record and
    /// the certificate.
    async fn finish_inner(&self, dsar_id: String) -> Result<(), ActivityError> {
        let id = parse_id(&dsar_id)?;
        let c = &self.ctx;
        let d = c.store.load(id).await.map_err(retry)?;
        if d.state.is_terminal() {
            return Ok(());
        }
        if d.kind == Kind::Export
            && d.export_key.is_none()
            && let Err(e) = crate::build_archive(c, &d).await
        {
            return Err(self.waiting(id, "export archive", e).await);
        }
        if d.kind == Kind::Erase {
            c.store
                .suppress(&d.tenant, d.subject_user_id, id, c.clock.now_ms())
                .await
                .map_err(retry)?;
        }
        let d = c.store.load(id).await.map_err(retry)?;
        let cert = crate::audit_and_certify(c, &d, State::Completed)
            .await
            .map_err(retry)?;
        c.store
            .finish(id, State::Completed, cert.as_deref(), "", c.clock.now_ms())
            .await
            .map_err(retry)?;
        c.metrics.completed.inc();
        tracing::info!(dsar = %id, kind = d.kind.as_str(), "dsar completed");
        Ok(())
    }

    /// The sweep kept finding residue: an audit record of the failure, no
    /// certificate. The subject stays frozen.
    async fn fail_inner(&self, input: FailInput) -> Result<(), ActivityError> {
        let id = parse_id(&input.dsar_id)?;
        let c = &self.ctx;
        let d = c.store.load(id).await.map_err(retry)?;
        if d.state.is_terminal() {
            return Ok(());
        }
        crate::audit_and_certify(c, &d, State::Failed)
            .await
            .map_err(retry)?;
        c.store
            .finish(id, State::Failed, None, &input.reason, c.clock.now_ms())
            .await
            .map_err(retry)?;
        c.metrics.failed.inc();
        tracing::error!(dsar = %id, reason = %input.reason, "dsar failed");
        Ok(())
    }
}

/// Per store, what an erase reports or, when more, what a scan found before
/// it (an earlier attempt erased it and its answer was lost).
fn at_least(mut erased: Vec<StoreCount>, found: &[StoreCount]) -> Vec<StoreCount> {
    for f in found {
        match erased.iter_mut().find(|x| x.store == f.store) {
            Some(x) => x.count = x.count.max(f.count),
            None if f.count > 0 => erased.push(f.clone()),
            None => {}
        }
    }
    erased
}

/// Retained entries whose count an earlier, lost attempt took: when the
/// erase found nothing at all in a store the scan before it found rows in,
/// an earlier attempt did the work, and what it kept is what the scan found.
/// (A participant that erases some of a store's rows and keeps others, as
/// media does with product pictures, can be overstated in that one case: a
/// crash between its answer and the bookkeeping.)
fn fill_retained(
    mut retained: Vec<shopstream_dsar::Retained>,
    erased: &[StoreCount],
    found: &[StoreCount],
) -> Vec<shopstream_dsar::Retained> {
    let count = |list: &[StoreCount], store: &str| -> u64 {
        list.iter()
            .filter(|c| c.store == store)
            .map(|c| c.count)
            .sum()
    };
    for r in retained.iter_mut().filter(|r| r.count == 0) {
        if count(erased, &r.store) == 0 {
            r.count = count(found, &r.store);
        }
    }
    retained
}

/// Counts of two rounds added per store.
fn merge(mut a: Vec<StoreCount>, b: Vec<StoreCount>) -> Vec<StoreCount> {
    for c in b {
        match a.iter_mut().find(|x| x.store == c.store) {
            Some(x) => x.count += c.count,
            None => a.push(c),
        }
    }
    a
}

/// The certificate's body for a finished DSAR.
pub fn certificate_of(d: &crate::store::Dsar, audit_seq: u64, audit_hash: &str) -> Certificate {
    let stores: Vec<StoreCount> = d.steps.values().flat_map(|s| s.counts.clone()).collect();
    let retained: Vec<_> = d
        .steps
        .values()
        .flat_map(|s| s.retained.clone())
        .filter(|r| r.count > 0)
        .collect();
    Certificate {
        iss: ISSUER.into(),
        dsar_id: d.dsar_id.to_string(),
        tenant: d.tenant.clone(),
        kind: d.kind,
        subject_hash: d.subject().salted_hash(&d.salt),
        subject_salt: hex::encode(&d.salt),
        requested_at_ms: d.created_at_ms,
        completed_at_ms: d.completed_at_ms,
        nothing_found: total(&stores) == 0 && retained.is_empty(),
        stores,
        retained,
        sweep: d.sweep.clone(),
        audit_seq,
        audit_hash: audit_hash.to_string(),
    }
}

/// The audit record of a finished DSAR.
pub fn record_of(
    d: &crate::store::Dsar,
    outcome: State,
    seq: u64,
    prev: &str,
    now_ms: i64,
) -> AuditRecord {
    AuditRecord {
        seq,
        prev: prev.to_string(),
        dsar_id: d.dsar_id.to_string(),
        tenant: d.tenant.clone(),
        kind: d.kind,
        outcome,
        subject_hash: d.subject().salted_hash(&d.salt),
        actions: d.steps.values().flat_map(|s| s.counts.clone()).collect(),
        retained: d
            .steps
            .values()
            .flat_map(|s| s.retained.clone())
            .filter(|r| r.count > 0)
            .collect(),
        sweep: d.sweep.clone(),
        at_ms: now_ms,
    }
}
