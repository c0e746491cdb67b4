//! The checkout saga's decisions: reserve stock → authorize a payment intent
//! → capture → finalize (commit the stock); on a failure after anything was
//! done, undo it (refund a capture, cancel an uncaptured intent, release the
//! stock) and end CANCELLED. Drivers (the Temporal workflow, the simulator)
//! ask [`Saga::next`] what to do, run it with the step's retry policy
//! ([`Step::gives_up`]), and report the outcome with [`Saga::on`]. Outcomes
//! may arrive twice (at-least-once): a repeat changes nothing. Compensations
//! have no failure outcome: a driver retries them until they succeed (they
//! are idempotent by design).
//!
//! Capture is the pivot. Before it, a step whose retries run out has an
//! *unknown* outcome: every answer may have been lost after it took effect
//! (the simulator found exactly that), so the saga undoes it as well, by
//! order id since its result id never arrived. After the pivot, the money is
//! taken and the only way is forward: finalize retries until inventory
//! answers, and only a refusal (the hold lapsed) cancels.

use super::order::{self, CancelReason, OrderEvent, OrderState};

/// Forward steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    Reserve,
    Authorize,
    Capture,
    Finalize,
}

/// Undo steps, run in this order: refund, cancel intent, release stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compensation {
    Refund,
    CancelIntent,
    Release,
}

impl Step {
    /// Whether the driver stops retrying this step after a bounded number of
    /// attempts (then reporting [`Outcome::Unknown`]). Steps after the pivot
    /// (capture) retry until they get an answer.
    pub fn gives_up(self) -> bool {
        self != Step::Finalize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Reserve => "reserve",
            Step::Authorize => "authorize",
            Step::Capture => "capture",
            Step::Finalize => "finalize",
        }
    }
}

impl Compensation {
    pub fn as_str(self) -> &'static str {
        match self {
            Compensation::Refund => "refund",
            Compensation::CancelIntent => "cancel_intent",
            Compensation::Release => "release",
        }
    }
}

/// What the driver must do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    Run(Step),
    Compensate(Compensation),
    /// Nothing left: the order ended in this state.
    Done(OrderState),
}

/// What a step (after the driver's retries) came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Succeeded(Step),
    /// The step was refused for good (declined card, no stock): it had no effect.
    Failed(Step, CancelReason),
    /// The step's retries ran out without an answer: it may or may not have
    /// taken effect. Only steps that [`Step::gives_up`] end this way.
    Unknown(Step, CancelReason),
    Compensated(Compensation),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SagaError {
    #[error("{0:?} does not answer the saga's current command")]
    Unexpected(Outcome),
    #[error(transparent)]
    Illegal(#[from] order::IllegalTransition),
}

/// The saga of one order. Plain data: drivers persist it as they like.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Saga {
    pub order: Option<OrderState>,
    pub reserved: bool,
    pub authorized: bool,
    pub captured: bool,
    pub finalized: bool,
    pub refunded: bool,
    pub intent_cancelled: bool,
    pub released: bool,
    pub failure: Option<CancelReason>,
    /// The forward step whose outcome is unknown (its retries ran out).
    pub uncertain: Option<Step>,
}

impl Saga {
    pub fn new() -> Saga {
        Saga {
            order: Some(OrderState::Pending),
            ..Saga::default()
        }
    }

    pub fn state(&self) -> OrderState {
        self.order.unwrap_or(OrderState::Pending)
    }

    /// The one thing to do now.
    pub fn next(&self) -> Command {
        if let Some(reason) = self.failure {
            let maybe = |s: Step| self.uncertain == Some(s);
            if self.captured && !self.refunded {
                return Command::Compensate(Compensation::Refund);
            }
            // An unknown capture is undone here too: voiding a captured
            // payment refunds it.
            if (self.authorized || maybe(Step::Authorize))
                && !self.captured
                && !self.intent_cancelled
            {
                return Command::Compensate(Compensation::CancelIntent);
            }
            if (self.reserved || maybe(Step::Reserve)) && !self.finalized && !self.released {
                return Command::Compensate(Compensation::Release);
            }
            return Command::Done(OrderState::Cancelled(reason));
        }
        match self.state() {
            OrderState::Pending => Command::Run(Step::Reserve),
            OrderState::Reserved => Command::Run(Step::Authorize),
            OrderState::Authorized => Command::Run(Step::Capture),
            OrderState::Captured => Command::Run(Step::Finalize),
            s @ (OrderState::Completed | OrderState::Cancelled(_)) => Command::Done(s),
        }
    }

    /// Record what happened. A duplicate of an outcome already recorded is a
    /// no-op; an outcome the saga did not ask for is an error.
    pub fn on(&mut self, outcome: Outcome) -> Result<(), SagaError> {
        if self.already(outcome) {
            return Ok(());
        }
        let expected = match (self.next(), outcome) {
            (Command::Run(a), Outcome::Succeeded(b) | Outcome::Failed(b, _)) => a == b,
            (Command::Run(a), Outcome::Unknown(b, _)) => a == b && a.gives_up(),
            (Command::Compensate(a), Outcome::Compensated(b)) => a == b,
            _ => false,
        };
        if !expected {
            return Err(SagaError::Unexpected(outcome));
        }
        match outcome {
            Outcome::Succeeded(step) => {
                let event = match step {
                    Step::Reserve => OrderEvent::StockReserved,
                    Step::Authorize => OrderEvent::PaymentAuthorized,
                    Step::Capture => OrderEvent::PaymentCaptured,
                    Step::Finalize => OrderEvent::Completed,
                };
                self.order = Some(order::apply(self.state(), event)?);
                match step {
                    Step::Reserve => self.reserved = true,
                    Step::Authorize => self.authorized = true,
                    Step::Capture => self.captured = true,
                    Step::Finalize => self.finalized = true,
                }
            }
            Outcome::Failed(_, reason) => self.failure = Some(reason),
            Outcome::Unknown(step, reason) => {
                self.failure = Some(reason);
                self.uncertain = Some(step);
            }
            Outcome::Compensated(c) => match c {
                Compensation::Refund => self.refunded = true,
                Compensation::CancelIntent => self.intent_cancelled = true,
                Compensation::Release => self.released = true,
            },
        }
        if let Command::Done(OrderState::Cancelled(reason)) = self.next() {
            self.order = Some(order::apply(self.state(), OrderEvent::Cancelled(reason))?);
        }
        Ok(())
    }

    fn already(&self, outcome: Outcome) -> bool {
        match outcome {
            Outcome::Succeeded(Step::Reserve) => self.reserved,
            Outcome::Succeeded(Step::Authorize) => self.authorized,
            Outcome::Succeeded(Step::Capture) => self.captured,
            Outcome::Succeeded(Step::Finalize) => self.finalized,
            Outcome::Failed(_, r) => self.failure == Some(r) && self.uncertain.is_none(),
            Outcome::Unknown(s, r) => self.failure == Some(r) && self.uncertain == Some(s),
            Outcome::Compensated(Compensation::Refund) => self.refunded,
            Outcome::Compensated(Compensation::CancelIntent) => self.intent_cancelled,
            Outcome::Compensated(Compensation::Release) => self.released,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Drive a saga where step i fails iff `fail_at == Some(i)` (refused, or
    /// with an unknown outcome when `unknown` and the step gives up),
    /// delivering every outcome `dup` times. Returns the saga and the
    /// commands run.
    fn drive_with(fail_at: Option<usize>, unknown: bool, dup: usize) -> (Saga, Vec<Command>) {
        let mut saga = Saga::new();
        let mut log = Vec::new();
        let mut step_no = 0;
        for _ in 0..20 {
            let cmd = saga.next();
            log.push(cmd);
            let outcome = match cmd {
                Command::Done(_) => return (saga, log),
                Command::Run(step) => {
                    let o = if fail_at == Some(step_no) && unknown && step.gives_up() {
                        Outcome::Unknown(step, CancelReason::PaymentFailed)
                    } else if fail_at == Some(step_no) {
                        Outcome::Failed(step, CancelReason::PaymentFailed)
                    } else {
                        Outcome::Succeeded(step)
                    };
                    step_no += 1;
                    o
                }
                Command::Compensate(c) => Outcome::Compensated(c),
            };
            for _ in 0..dup {
                saga.on(outcome).unwrap();
            }
        }
        panic!("saga did not finish in 20 commands: {log:?}");
    }

    fn drive(fail_at: Option<usize>, dup: usize) -> (Saga, Vec<Command>) {
        drive_with(fail_at, false, dup)
    }

    #[test]
    fn happy_path_completes_with_one_capture_and_no_compensation() {
        let (saga, log) = drive(None, 1);
        assert_eq!(saga.state(), OrderState::Completed);
        assert_eq!(
            log,
            vec![
                Command::Run(Step::Reserve),
                Command::Run(Step::Authorize),
                Command::Run(Step::Capture),
                Command::Run(Step::Finalize),
                Command::Done(OrderState::Completed),
            ]
        );
    }

    #[test]
    fn capture_failure_cancels_the_intent_then_releases_stock() {
        let (saga, log) = drive(Some(2), 1);
        assert_eq!(
            saga.state(),
            OrderState::Cancelled(CancelReason::PaymentFailed)
        );
        assert_eq!(
            &log[3..],
            &[
                Command::Compensate(Compensation::CancelIntent),
                Command::Compensate(Compensation::Release),
                Command::Done(OrderState::Cancelled(CancelReason::PaymentFailed)),
            ]
        );
    }

    #[test]
    fn finalize_failure_after_capture_refunds_and_releases() {
        let (saga, _) = drive(Some(3), 1);
        assert!(saga.refunded && saga.released && !saga.intent_cancelled);
    }

    #[test]
    fn a_reserve_with_an_unknown_outcome_is_released() {
        let (saga, log) = drive_with(Some(0), true, 1);
        assert_eq!(
            &log[1..],
            &[
                Command::Compensate(Compensation::Release),
                Command::Done(OrderState::Cancelled(CancelReason::PaymentFailed)),
            ]
        );
        assert!(!saga.reserved && saga.released);
        // Refused outright, nothing was held: nothing to undo.
        let (_, log) = drive(Some(0), 1);
        assert_eq!(log.len(), 2);
    }

    #[test]
    fn an_authorize_with_an_unknown_outcome_is_voided_then_released() {
        let (_, log) = drive_with(Some(1), true, 1);
        assert_eq!(
            &log[2..],
            &[
                Command::Compensate(Compensation::CancelIntent),
                Command::Compensate(Compensation::Release),
                Command::Done(OrderState::Cancelled(CancelReason::PaymentFailed)),
            ]
        );
    }

    #[test]
    fn finalize_never_ends_unknown() {
        let mut s = Saga::new();
        for step in [Step::Reserve, Step::Authorize, Step::Capture] {
            s.on(Outcome::Succeeded(step)).unwrap();
        }
        let unknown = Outcome::Unknown(Step::Finalize, CancelReason::InternalError);
        assert!(s.on(unknown).is_err());
        assert!(!Step::Finalize.gives_up());
    }

    #[test]
    fn an_unasked_outcome_is_refused() {
        let mut s = Saga::new();
        assert!(s.on(Outcome::Succeeded(Step::Capture)).is_err());
        assert!(s.on(Outcome::Compensated(Compensation::Refund)).is_err());
        assert_eq!(s, Saga::new());
    }

    proptest! {
        #[test]
        fn every_run_ends_terminal_with_nothing_held_and_at_most_one_capture(
            fail_at in proptest::option::of(0usize..4),
            unknown in any::<bool>(),
            dup in 1usize..3,
        ) {
            let (saga, log) = drive_with(fail_at, unknown, dup);
            let captures = log.iter().filter(|c| **c == Command::Run(Step::Capture)).count();
            prop_assert!(captures <= 1);
            match saga.state() {
                OrderState::Completed => {
                    prop_assert!(fail_at.is_none());
                    prop_assert!(saga.captured && saga.finalized);
                    prop_assert!(!saga.released && !saga.refunded && !saga.intent_cancelled);
                }
                OrderState::Cancelled(_) => {
                    prop_assert!(fail_at.is_some());
                    // No stock left held, no money kept, no intent left open,
                    // counting what may have happened unseen.
                    let maybe = |s: Step| saga.uncertain == Some(s);
                    prop_assert!(!(saga.reserved || maybe(Step::Reserve)) || saga.released);
                    prop_assert!(!saga.captured || saga.refunded);
                    prop_assert!(
                        !(saga.authorized || maybe(Step::Authorize) || maybe(Step::Capture))
                            || saga.captured
                            || saga.intent_cancelled
                    );
                    prop_assert!(!saga.finalized);
                }
                other => prop_assert!(false, "ended in {other:?}"),
            }
        }
    }
}
