//! What every driver of the checkout saga does the same way — the Temporal
//! workflow (`workflow`) and the simulator (`shopstream-sim`): turn what an
//! activity came to into the saga's [`Outcome`], and describe the step for
//! the order's log. Keeping it here means the simulator checks the
//! production mapping, not a copy of it.

use crate::{
    domain::{
        order::CancelReason,
        saga::{Command, Outcome, Saga, Step},
    },
    ports::{StepRecord, StepReply},
};

/// Attempts of a forward step that gives up ([`Step::gives_up`]).
pub const STEP_ATTEMPTS: u32 = 3;

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
        at_ms: 0,
        reservation_id: (command == Command::Run(Step::Reserve) && !reservation_id.is_empty())
            .then(|| reservation_id.to_string()),
        payment_id: (command == Command::Run(Step::Authorize) && !payment_id.is_empty())
            .then(|| payment_id.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::saga::Compensation;

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
