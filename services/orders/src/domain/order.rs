//! The order state machine:
//! PENDING → RESERVED → AUTHORIZED → CAPTURED → COMPLETED, or → CANCELLED with
//! a reason from any state before COMPLETED. Terminal states are final; an
//! event that already happened is a no-op (at-least-once delivery).

/// Why an order was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CancelReason {
    OutOfStock,
    PaymentDeclined,
    PaymentFailed,
    ReservationExpired,
    UserRequested,
    InternalError,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OrderState {
    Pending,
    Reserved,
    Authorized,
    Captured,
    Completed,
    Cancelled(CancelReason),
}

impl OrderState {
    pub fn is_terminal(self) -> bool {
        matches!(self, OrderState::Completed | OrderState::Cancelled(_))
    }

    /// Position on the happy path (for "has it got this far" questions).
    fn rank(self) -> u8 {
        match self {
            OrderState::Pending => 0,
            OrderState::Reserved => 1,
            OrderState::Authorized => 2,
            OrderState::Captured => 3,
            OrderState::Completed => 4,
            OrderState::Cancelled(_) => 5,
        }
    }
}

/// What can happen to an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderEvent {
    StockReserved,
    PaymentAuthorized,
    PaymentCaptured,
    Completed,
    Cancelled(CancelReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{event:?} is not allowed in {state:?}")]
pub struct IllegalTransition {
    pub state: OrderState,
    pub event: OrderEvent,
}

/// The next state, `Ok(same state)` for a repeated event, or the refusal.
pub fn apply(state: OrderState, event: OrderEvent) -> Result<OrderState, IllegalTransition> {
    use OrderEvent as E;
    use OrderState as S;
    let illegal = Err(IllegalTransition { state, event });
    match (state, event) {
        (S::Pending, E::StockReserved) => Ok(S::Reserved),
        (S::Reserved, E::PaymentAuthorized) => Ok(S::Authorized),
        (S::Authorized, E::PaymentCaptured) => Ok(S::Captured),
        (S::Captured, E::Completed) => Ok(S::Completed),
        (s, E::Cancelled(reason)) if !s.is_terminal() => Ok(S::Cancelled(reason)),
        // Duplicates of the event that led here change nothing.
        (S::Reserved, E::StockReserved)
        | (S::Authorized, E::PaymentAuthorized)
        | (S::Captured, E::PaymentCaptured)
        | (S::Completed, E::Completed) => Ok(state),
        (S::Cancelled(a), E::Cancelled(b)) if a == b => Ok(state),
        // A late duplicate of an earlier step (e.g. a re-delivered
        // "reserved" after the payment was authorized) is also harmless.
        (s, e) if !s.is_terminal() && step_rank(e).is_some_and(|r| r < s.rank()) => Ok(state),
        _ => illegal,
    }
}

fn step_rank(e: OrderEvent) -> Option<u8> {
    match e {
        OrderEvent::StockReserved => Some(1),
        OrderEvent::PaymentAuthorized => Some(2),
        OrderEvent::PaymentCaptured => Some(3),
        OrderEvent::Completed => Some(4),
        OrderEvent::Cancelled(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reason() -> impl Strategy<Value = CancelReason> {
        prop_oneof![
            Just(CancelReason::OutOfStock),
            Just(CancelReason::PaymentDeclined),
            Just(CancelReason::PaymentFailed),
            Just(CancelReason::UserRequested),
        ]
    }

    fn event() -> impl Strategy<Value = OrderEvent> {
        prop_oneof![
            Just(OrderEvent::StockReserved),
            Just(OrderEvent::PaymentAuthorized),
            Just(OrderEvent::PaymentCaptured),
            Just(OrderEvent::Completed),
            reason().prop_map(OrderEvent::Cancelled),
        ]
    }

    proptest! {
        #[test]
        fn random_event_sequences_never_make_an_illegal_move(events in proptest::collection::vec(event(), 0..30)) {
            let mut s = OrderState::Pending;
            for e in events {
                match apply(s, e) {
                    Ok(next) => {
                        // Forward on the happy path by one step, to CANCELLED, or stay.
                        let ok = next == s
                            || matches!(next, OrderState::Cancelled(_))
                            || next.rank() == s.rank() + 1;
                        prop_assert!(ok, "{s:?} --{e:?}--> {next:?}");
                        if s.is_terminal() {
                            prop_assert_eq!(next, s, "terminal states are final");
                        }
                        s = next;
                    }
                    Err(err) => {
                        prop_assert_eq!(err.state, s);
                    }
                }
            }
        }

        #[test]
        fn repeating_any_accepted_event_is_a_no_op(events in proptest::collection::vec(event(), 0..30)) {
            let mut s = OrderState::Pending;
            for e in events {
                if let Ok(next) = apply(s, e) {
                    prop_assert_eq!(apply(next, e), Ok(next));
                    s = next;
                }
            }
        }
    }

    #[test]
    fn skipping_a_step_is_illegal_and_completed_cannot_be_cancelled() {
        assert!(apply(OrderState::Pending, OrderEvent::PaymentCaptured).is_err());
        assert!(apply(OrderState::Reserved, OrderEvent::Completed).is_err());
        assert!(
            apply(
                OrderState::Completed,
                OrderEvent::Cancelled(CancelReason::UserRequested)
            )
            .is_err()
        );
        assert!(
            apply(
                OrderState::Cancelled(CancelReason::OutOfStock),
                OrderEvent::Cancelled(CancelReason::PaymentFailed)
            )
            .is_err()
        );
    }
}

impl CancelReason {
    pub const ALL: [CancelReason; 6] = [
        CancelReason::OutOfStock,
        CancelReason::PaymentDeclined,
        CancelReason::PaymentFailed,
        CancelReason::ReservationExpired,
        CancelReason::UserRequested,
        CancelReason::InternalError,
    ];

    /// The wire/storage name, e.g. `payment_failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            CancelReason::OutOfStock => "out_of_stock",
            CancelReason::PaymentDeclined => "payment_declined",
            CancelReason::PaymentFailed => "payment_failed",
            CancelReason::ReservationExpired => "reservation_expired",
            CancelReason::UserRequested => "user_requested",
            CancelReason::InternalError => "internal_error",
        }
    }

    pub fn parse(s: &str) -> Option<CancelReason> {
        CancelReason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl OrderState {
    /// One state per name, in happy-path order; the cancellation stands for
    /// every reason (they share the name `cancelled`). What a listing filters by.
    pub const EACH_NAME: [OrderState; 6] = [
        OrderState::Pending,
        OrderState::Reserved,
        OrderState::Authorized,
        OrderState::Captured,
        OrderState::Completed,
        OrderState::Cancelled(CancelReason::InternalError),
    ];

    /// The wire/storage name, e.g. `authorized`; every cancellation is `cancelled`.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Pending => "pending",
            OrderState::Reserved => "reserved",
            OrderState::Authorized => "authorized",
            OrderState::Captured => "captured",
            OrderState::Completed => "completed",
            OrderState::Cancelled(_) => "cancelled",
        }
    }

    /// Inverse of [`OrderState::as_str`]; a cancellation needs its reason.
    pub fn parse(s: &str, reason: Option<CancelReason>) -> Option<OrderState> {
        Some(match s {
            "pending" => OrderState::Pending,
            "reserved" => OrderState::Reserved,
            "authorized" => OrderState::Authorized,
            "captured" => OrderState::Captured,
            "completed" => OrderState::Completed,
            "cancelled" => OrderState::Cancelled(reason.unwrap_or(CancelReason::InternalError)),
            _ => return None,
        })
    }

    pub fn cancel_reason(self) -> Option<CancelReason> {
        match self {
            OrderState::Cancelled(r) => Some(r),
            _ => None,
        }
    }
}

#[cfg(test)]
mod name_tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for r in CancelReason::ALL {
            assert_eq!(CancelReason::parse(r.as_str()), Some(r));
            let s = OrderState::Cancelled(r);
            assert_eq!(OrderState::parse(s.as_str(), s.cancel_reason()), Some(s));
        }
        for s in OrderState::EACH_NAME {
            assert_eq!(OrderState::parse(s.as_str(), s.cancel_reason()), Some(s));
        }
        let names: std::collections::BTreeSet<_> =
            OrderState::EACH_NAME.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names.len(),
            OrderState::EACH_NAME.len(),
            "one state per name"
        );
        assert_eq!(OrderState::parse("shipped", None), None);
    }
}
