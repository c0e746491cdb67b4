//! What every driver of the checkout saga does the same way — the Temporal
//! workflow (`workflow`) and the simulator (`shopstream-sim`): how often and
//! how patiently an activity is retried ([`RetryPolicy`]), turn what an
//! activity came to into the saga's [`Outcome`], and describe the step for
//! the order's log. Keeping it here means the simulator checks the
//! production policy and mapping, not a copy of them.

use std::time::Duration;

use crate::{
    domain::{
        order::CancelReason,
        saga::{Command, Outcome, Saga, Step},
    },
    ports::{StepRecord, StepReply},
};

/// Attempts of a forward step that gives up ([`Step::gives_up`]).
pub const STEP_ATTEMPTS: u32 = 3;

/// How an activity is retried: Temporal's retry policy and start-to-close
/// timeout as plain values. The workflow turns it into Temporal's options;
/// the simulator's worker runs its attempts by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Bound on one attempt.
    pub start_to_close: Duration,
    /// Wait after the first failed attempt.
    pub initial_interval: Duration,
    /// Each further wait is this many times the one before…
    pub backoff_coefficient: u32,
    /// …up to this.
    pub maximum_interval: Duration,
    /// `None`: retry until the activity succeeds.
    pub maximum_attempts: Option<u32>,
}

impl RetryPolicy {
    /// Forward steps before the pivot: 3 attempts, waiting 200 ms then
    /// 400 ms, each attempt bounded so a hung call cannot stall the saga.
    pub const STEP: RetryPolicy = RetryPolicy {
        start_to_close: Duration::from_secs(5),
        initial_interval: Duration::from_millis(200),
        backoff_coefficient: 2,
        maximum_interval: Duration::from_secs(2),
        maximum_attempts: Some(STEP_ATTEMPTS),
    };

    /// Compensations and finalize (after the pivot) must eventually succeed:
    /// no attempt limit, backing off to one try every 10 s.
    pub const PERSISTENT: RetryPolicy = RetryPolicy {
        start_to_close: Duration::from_secs(5),
        initial_interval: Duration::from_millis(200),
        backoff_coefficient: 2,
        maximum_interval: Duration::from_secs(10),
        maximum_attempts: None,
    };

    /// Recording a step in the order's log (a local activity): retried
    /// until it succeeds, 100 ms doubling to 10 s.
    pub const RECORD: RetryPolicy = RetryPolicy {
        start_to_close: Duration::from_secs(5),
        initial_interval: Duration::from_millis(100),
        backoff_coefficient: 2,
        maximum_interval: Duration::from_secs(10),
        maximum_attempts: None,
    };

    /// The policy of the activity that carries out `command`: a step that
    /// gives up has [`RetryPolicy::STEP`]; finalize and every compensation
    /// retry until answered.
    pub fn of(command: Command) -> RetryPolicy {
        match command {
            Command::Run(step) if step.gives_up() => RetryPolicy::STEP,
            _ => RetryPolicy::PERSISTENT,
        }
    }

    /// How long to wait after attempt `attempt` (1-based) failed.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = self
            .backoff_coefficient
            .saturating_pow(attempt.saturating_sub(1).min(16));
        self.initial_interval
            .saturating_mul(factor)
            .min(self.maximum_interval)
    }

    /// Whether `attempts` attempts used up the policy.
    pub fn exhausted(&self, attempts: u32) -> bool {
        self.maximum_attempts.is_some_and(|m| attempts >= m)
    }
}

/// What one activity came to, ready for [`Saga::on`] and the step log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub outcome: Outcome,
    pub detail: String,
    pub attempts: u32,
    /// The id the step produced (reservation, payment), if any.
    pub produced: Option<String>,
}

/// Why the order is cancelled when a step's retries run out.
pub fn exhausted_reason(step: Step) -> CancelReason {
    match step {
        Step::Authorize | Step::Capture => CancelReason::PaymentFailed,
        Step::Reserve | Step::Finalize => CancelReason::InternalError,
    }
}

/// `result` is the reply and the attempt that produced it, or why the
/// retries ran out. A forward step that ran out has an unknown outcome (its
/// effect may have happened unseen); a compensation that ran out is `Err`:
/// compensations retry until they succeed, so only a cancelled workflow (or
/// the simulator's bug zoo) gets there.
pub fn settle(
    command: Command,
    result: Result<(StepReply, u32), String>,
) -> Result<Settled, String> {
    let settled = match (command, result) {
        (Command::Run(step), Ok((reply, attempts))) => match reply {
            StepReply::Done { id, detail } => Settled {
                outcome: Outcome::Succeeded(step),
                detail,
                attempts,
                produced: Some(id),
            },
            StepReply::Rejected { reason, detail } => Settled {
                outcome: Outcome::Failed(
                    step,
                    CancelReason::parse(&reason).unwrap_or(CancelReason::InternalError),
                ),
                detail,
                attempts,
                produced: None,
            },
        },
        (Command::Run(step), Err(why)) => Settled {
            outcome: Outcome::Unknown(step, exhausted_reason(step)),
            detail: format!(
                "gave up after {STEP_ATTEMPTS} attempts, outcome unknown (so undone too): {why}"
            ),
            attempts: STEP_ATTEMPTS,
            produced: None,
        },
        (Command::Compensate(c), Ok((reply, attempts))) => Settled {
            outcome: Outcome::Compensated(c),
            detail: match reply {
                StepReply::Done { detail, .. } | StepReply::Rejected { detail, .. } => detail,
            },
            attempts,
            produced: None,
        },
        (Command::Compensate(c), Err(why)) => {
            return Err(format!("compensation {} stopped: {why}", c.as_str()));
        }
        (Command::Done(state), _) => {
            return Err(format!("nothing runs after {}", state.as_str()));
        }
    };
    Ok(settled)
}

/// The log's name of an outcome: `succeeded`, `failed` (refused, or retries
/// ran out) or `compensated`.
pub fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Succeeded(_) => "succeeded",
        Outcome::Failed(..) | Outcome::Unknown(..) => "failed",
        Outcome::Compensated(_) => "compensated",
    }
}

/// The step as the order's log records it, once `saga` has taken the
/// outcome. `at_ms` is stamped by whoever writes it.
pub fn step_record(
    seq: u32,
    command: Command,
    settled: &Settled,
    saga: &Saga,
    reservation_id: &str,
    payment_id: &str,
) -> StepRecord {
    let state = saga.state();
    let name = match command {
        Command::Run(s) => s.as_str(),
        Command::Compensate(c) => c.as_str(),
        Command::Done(s) => s.as_str(),
    };
    StepRecord {
        seq,
        step: name.to_string(),
        outcome: outcome_name(settled.outcome).to_string(),
        state: state.as_str().to_string(),
        cancel_reason: state.cancel_reason().map(|r| r.as_str().to_string()),
        detail: settled.detail.clone(),
        attempts: settled.attempts,
        failure_reason: match settled.outcome {
            Outcome::Failed(_, r) | Outcome::Unknown(_, r) => Some(r.as_str().to_string()),
            Outcome::Succeeded(_) | Outcome::Compensated(_) => None,
        },
        uncertain: matches!(settled.outcome, Outcome::Unknown(..)),
        at_ms: 0,
        reservation_id: (command == Command::Run(Step::Reserve) && !reservation_id.is_empty())
            .then(|| reservation_id.to_string()),
        payment_id: (command == Command::Run(Step::Authorize) && !payment_id.is_empty())
            .then(|| payment_id.to_string()),
    }
}

/// What a step recorded in the order's log came to, read back for
/// `command`: the saga's decision log. A driver whose results are durable
/// only with the workflow task (local activities) reads it before running
/// a step, so a replay after a lost task takes the outcome the log (and
/// whoever read the order) already saw instead of running the step again:
/// a stock refusal stays a refusal even if stock came back, and a step
/// that ran out of retries stays unknown. `Err` when the log's step is not
/// the one `command` runs (the log and the decider disagree).
pub fn recorded(command: Command, r: &StepRecord) -> Result<Settled, String> {
    let diverged = || {
        format!(
            "step {} of the log is {} {}, not what the saga runs now ({command:?})",
            r.seq, r.step, r.outcome
        )
    };
    // A log written before `failure_reason` existed has the reason only
    // where the step cancelled the order at once.
    let reason = || {
        r.failure_reason
            .as_deref()
            .or(r.cancel_reason.as_deref())
            .and_then(CancelReason::parse)
            .unwrap_or(CancelReason::InternalError)
    };
    let outcome = match (command, r.outcome.as_str()) {
        (Command::Run(step), _) if step.as_str() != r.step => return Err(diverged()),
        (Command::Compensate(c), _) if c.as_str() != r.step => return Err(diverged()),
        (Command::Run(step), "succeeded") => Outcome::Succeeded(step),
        (Command::Run(step), "failed") if r.uncertain => Outcome::Unknown(step, reason()),
        (Command::Run(step), "failed") => Outcome::Failed(step, reason()),
        (Command::Compensate(c), "compensated") => Outcome::Compensated(c),
        _ => return Err(diverged()),
    };
    let produced = match command {
        Command::Run(Step::Reserve) => r.reservation_id.clone(),
        Command::Run(Step::Authorize) => r.payment_id.clone(),
        _ => None,
    };
    Ok(Settled {
        outcome,
        detail: r.detail.clone(),
        attempts: r.attempts,
        produced,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::saga::Compensation;

    #[test]
    fn steps_before_the_pivot_give_up_and_the_rest_retry_until_answered() {
        for step in [Step::Reserve, Step::Authorize, Step::Capture] {
            assert_eq!(RetryPolicy::of(Command::Run(step)), RetryPolicy::STEP);
        }
        assert_eq!(
            RetryPolicy::of(Command::Run(Step::Finalize)),
            RetryPolicy::PERSISTENT
        );
        assert_eq!(
            RetryPolicy::of(Command::Compensate(Compensation::Refund)),
            RetryPolicy::PERSISTENT
        );
        let step = RetryPolicy::STEP;
        assert!(!step.exhausted(STEP_ATTEMPTS - 1));
        assert!(step.exhausted(STEP_ATTEMPTS));
        assert!(!RetryPolicy::PERSISTENT.exhausted(u32::MAX));
        let waits_ms: Vec<u128> = (1..=6)
            .map(|a| RetryPolicy::PERSISTENT.backoff(a).as_millis())
            .collect();
        assert_eq!(waits_ms, [200, 400, 800, 1_600, 3_200, 6_400]);
        assert_eq!(step.backoff(5), Duration::from_secs(2));
        assert_eq!(RetryPolicy::RECORD.backoff(100), Duration::from_secs(10));
    }

    #[test]
    fn a_step_that_ran_out_of_retries_is_unknown_and_a_refusal_is_failed() {
        let ran_out = settle(Command::Run(Step::Authorize), Err("timeout".into())).unwrap();
        assert_eq!(
            ran_out.outcome,
            Outcome::Unknown(Step::Authorize, CancelReason::PaymentFailed)
        );
        assert_eq!(ran_out.attempts, STEP_ATTEMPTS);
        let refused = settle(
            Command::Run(Step::Authorize),
            Ok((
                StepReply::rejected(CancelReason::PaymentDeclined, "card_declined"),
                1,
            )),
        )
        .unwrap();
        assert_eq!(
            refused.outcome,
            Outcome::Failed(Step::Authorize, CancelReason::PaymentDeclined)
        );
        assert_eq!(outcome_name(ran_out.outcome), outcome_name(refused.outcome));
        assert!(settle(Command::Compensate(Compensation::Release), Err("x".into())).is_err());
    }

    #[test]
    fn every_outcome_reads_back_from_the_log_as_the_saga_took_it() {
        let reasons = [
            CancelReason::OutOfStock,
            CancelReason::PaymentDeclined,
            CancelReason::PaymentFailed,
            CancelReason::InternalError,
        ];
        let mut cases = Vec::new();
        for step in [
            Step::Reserve,
            Step::Authorize,
            Step::Capture,
            Step::Finalize,
        ] {
            let done = StepReply::Done {
                id: format!("{}-id", step.as_str()),
                detail: "ok".into(),
            };
            cases.push((Command::Run(step), Ok((done, 2))));
            for r in reasons {
                cases.push((Command::Run(step), Ok((StepReply::rejected(r, "no"), 1))));
            }
            if step.gives_up() {
                cases.push((Command::Run(step), Err("deadline".to_string())));
            }
        }
        for c in [
            Compensation::Refund,
            Compensation::CancelIntent,
            Compensation::Release,
        ] {
            let done = StepReply::Done {
                id: String::new(),
                detail: "undone".into(),
            };
            cases.push((Command::Compensate(c), Ok((done, 4))));
        }
        for (command, result) in cases {
            let settled = settle(command, result).unwrap();
            let produced = settled.produced.clone().unwrap_or_default();
            let record = step_record(7, command, &settled, &Saga::new(), &produced, &produced);
            let read = recorded(command, &record).unwrap();
            let mut expected = settled.clone();
            // Only reserve's and authorize's ids are used (and kept).
            if !matches!(command, Command::Run(Step::Reserve | Step::Authorize)) {
                expected.produced = None;
            }
            assert_eq!(read, expected, "{command:?}");
        }
        // A log that disagrees with the decider is an error, not a guess.
        let settled = settle(
            Command::Run(Step::Reserve),
            Ok((StepReply::rejected(CancelReason::OutOfStock, "none"), 1)),
        )
        .unwrap();
        let record = step_record(
            1,
            Command::Run(Step::Reserve),
            &settled,
            &Saga::new(),
            "",
            "",
        );
        assert!(recorded(Command::Run(Step::Authorize), &record).is_err());
        assert!(recorded(Command::Compensate(Compensation::Release), &record).is_err());
    }

    #[test]
    fn the_record_carries_the_id_only_of_the_step_that_produced_it() {
        let mut saga = Saga::new();
        let settled = settle(
            Command::Run(Step::Reserve),
            Ok((
                StepReply::Done {
                    id: "r1".into(),
                    detail: "held".into(),
                },
                2,
            )),
        )
        .unwrap();
        saga.on(settled.outcome).unwrap();
        let r = step_record(1, Command::Run(Step::Reserve), &settled, &saga, "r1", "");
        assert_eq!(
            (
                r.step.as_str(),
                r.outcome.as_str(),
                r.state.as_str(),
                r.attempts
            ),
            ("reserve", "succeeded", "reserved", 2)
        );
        assert_eq!(r.reservation_id.as_deref(), Some("r1"));
        assert_eq!(r.payment_id, None);
    }
}
