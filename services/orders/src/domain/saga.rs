//! The checkout saga's decisions: reserve stock → authorize a payment intent
//! → capture → finalize (commit the stock); on a failure after anything was
//! done, undo it (refund a capture, cancel an uncaptured intent, release the
//! stock) and end CANCELLED. Drivers (the Temporal workflow, the simulator)
//! ask [`Saga::next`] what to do, run it with their retry policy, and report
//! the outcome with [`Saga::on`]. Outcomes may arrive twice (at-least-once):
//! a repeat changes nothing. Compensations have no failure outcome: a driver
//! retries them until they succeed (they are idempotent by design).

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
    /// The step failed for good (declined card, no stock, retries exhausted).
    Failed(Step, CancelReason),
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
            if self.captured && !self.refunded {
                return Command::Compensate(Compensation::Refund);
            }
            if self.authorized && !self.captured && !self.intent_cancelled {
                return Command::Compensate(Compensation::CancelIntent);
            }
            if self.reserved && !self.finalized && !self.released {
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
            Outcome::Failed(_, r) => self.failure == Some(r),
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

    /// Drive a saga where step i fails iff `fail_at == Some(i)`, delivering
    /// every outcome `dup` times. Returns the saga and the commands run.
    fn drive(fail_at: Option<usize>, dup: usize) -> (Saga, Vec<Command>) {
        let mut saga = Saga::new();
        let mut log = Vec::new();
        let mut step_no = 0;
        for _ in 0..20 {
            let cmd = saga.next();
            log.push(cmd);
            let outcome = match cmd {
                Command::Done(_) => return (saga, log),
                Command::Run(step) => {
                    let o = if fail_at == Some(step_no) {
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
            dup in 1usize..3,
        ) {
            let (saga, log) = drive(fail_at, dup);
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
                    // No stock left held, no money kept, no intent left open.
                    prop_assert!(!saga.reserved || saga.released);
                    prop_assert!(!saga.captured || saga.refunded);
                    prop_assert!(!saga.authorized || saga.captured || saga.intent_cancelled);
                    prop_assert!(!saga.finalized);
                }
                other => prop_assert!(false, "ended in {other:?}"),
            }
        }
    }
}
