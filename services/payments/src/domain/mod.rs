//! Payments as a pure state machine. A payment only moves forward:
//! PENDING -> AUTHORIZED -> CAPTURED -> PARTIALLY_REFUNDED -> REFUNDED, with
//! FAILED (from PENDING) and CANCELLED (from PENDING or AUTHORIZED) as dead
//! ends. Everything the provider tells us (API responses, webhooks, the
//! reconciler's reads) arrives as an [`Observation`] and is merged by
//! [`merge`]: a late or repeated observation never moves a payment back, and
//! only a real change produces a new row (and so one event).

pub mod signature;

use std::collections::BTreeMap;

pub use shopstream_platform::FieldError;
use shopstream_platform::idempotency::IdempotencyKey;

/// Largest amount accepted, as Stripe's limit (minor units).
pub const MAX_AMOUNT_MINOR: i64 = 99_999_999;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    Pending,
    Authorized,
    Captured,
    PartiallyRefunded,
    Refunded,
    Failed,
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Pending,
        Status::Authorized,
        Status::Captured,
        Status::PartiallyRefunded,
        Status::Refunded,
        Status::Failed,
        Status::Cancelled,
    ];

    /// The lowercase name used in rows and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Authorized => "authorized",
            Status::Captured => "captured",
            Status::PartiallyRefunded => "partially_refunded",
            Status::Refunded => "refunded",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Nothing the provider reports can change a terminal payment.
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Refunded | Status::Failed | Status::Cancelled)
    }

    /// Money has been taken (and possibly given back).
    pub fn is_captured(self) -> bool {
        matches!(
            self,
            Status::Captured | Status::PartiallyRefunded | Status::Refunded
        )
    }

    /// Whether a payment may go from `self` to `next` (strictly forward).
    pub fn can_become(self, next: Status) -> bool {
        use Status::*;
        matches!(
            (self, next),
            (
                Pending,
                Authorized | Captured | PartiallyRefunded | Refunded | Failed | Cancelled
            ) | (
                Authorized,
                Captured | PartiallyRefunded | Refunded | Cancelled
            ) | (Captured, PartiallyRefunded | Refunded)
                | (PartiallyRefunded, Refunded)
        )
    }
}

/// One payment as the service keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub id: uuid::Uuid,
    pub tenant_id: String,
    pub order_id: String,
    /// The idempotency key of the first CreateIntent, reused for every
    /// provider retry of the creation so the provider never creates twice.
    pub create_key: String,
    pub status: Status,
    pub amount_minor: i64,
    /// ISO 4217, upper case.
    pub currency: String,
    /// The provider's payment-method token of the creation (e.g. "pm_..."),
    /// kept so the creation can be replayed under its key; never card data.
    pub payment_method: String,
    pub captured_minor: i64,
    pub refunded_minor: i64,
    /// Refunds we know by id (provider refund id -> amount): a replayed
    /// refund response is counted once.
    pub refunds: BTreeMap<String, i64>,
    /// The provider's intent id; empty until the provider answered.
    pub provider_ref: String,
    pub failure_code: String,
    pub failure_message: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

impl Payment {
    /// Captured and not yet refunded.
    pub fn refundable_minor(&self) -> i64 {
        (self.captured_minor - self.refunded_minor).max(0)
    }
}

/// What the provider says about a payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// The intent's state (API response, intent webhook, reconciler read).
    Intent {
        provider_ref: String,
        state: IntentState,
        /// `amount_received` when the intent succeeded.
        captured_minor: i64,
    },
    /// Confirmation declined: the payment failed.
    Declined {
        provider_ref: String,
        code: String,
        message: String,
    },
    /// One refund, from a refund response.
    Refund {
        refund_id: String,
        amount_minor: i64,
    },
    /// The charge's total refunded so far (`charge.refunded`).
    RefundedTotal { refunded_minor: i64 },
}

/// The provider's intent states we distinguish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntentState {
    /// Created, awaiting a method, confirmation, action or processing.
    Open,
    RequiresCapture,
    Succeeded,
    Canceled,
}

impl IntentState {
    /// Stripe's `status` string; unknown ones count as open.
    pub fn from_stripe(status: &str) -> IntentState {
        match status {
            "requires_capture" => IntentState::RequiresCapture,
            "succeeded" => IntentState::Succeeded,
            "canceled" => IntentState::Canceled,
            _ => IntentState::Open,
        }
    }
}

fn status_for_refunds(captured_minor: i64, refunded_minor: i64) -> Status {
    if refunded_minor <= 0 {
        Status::Captured
    } else if refunded_minor >= captured_minor {
        Status::Refunded
    } else {
        Status::PartiallyRefunded
    }
}

impl Payment {
    /// A payment as first stored: nothing captured, refunded or known at the
    /// provider yet.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: uuid::Uuid,
        tenant_id: &str,
        order_id: &str,
        create_key: &str,
        status: Status,
        amount_minor: i64,
        currency: &str,
        payment_method: &str,
        now_ms: i64,
    ) -> Payment {
        Payment {
            id,
            tenant_id: tenant_id.to_string(),
            order_id: order_id.to_string(),
            create_key: create_key.to_string(),
            status,
            amount_minor,
            currency: currency.to_string(),
            payment_method: payment_method.to_string(),
            captured_minor: 0,
            refunded_minor: 0,
            refunds: BTreeMap::new(),
            provider_ref: String::new(),
            failure_code: String::new(),
            failure_message: String::new(),
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
        }
    }
}

/// Merge an observation into a payment. `None` means nothing changed (a
/// repeat, a late or a stale observation); `Some` is the new payment, whose
/// `updated_at_ms` is `now_ms`.
pub fn merge(p: &Payment, obs: &Observation, now_ms: i64) -> Option<Payment> {
    let mut next = p.clone();
    match obs {
        Observation::Intent {
            provider_ref,
            state,
            captured_minor,
        } => {
            if next.provider_ref.is_empty() {
                next.provider_ref.clone_from(provider_ref);
            }
            match state {
                IntentState::Open => {}
                IntentState::RequiresCapture => next.status = Status::Authorized,
                IntentState::Succeeded => {
                    if !p.status.is_captured() {
                        next.status = Status::Captured;
                    }
                    next.captured_minor = next.captured_minor.max(*captured_minor);
                }
                IntentState::Canceled => next.status = Status::Cancelled,
            }
        }
        Observation::Declined {
            provider_ref,
            code,
            message,
        } => {
            if next.provider_ref.is_empty() {
                next.provider_ref.clone_from(provider_ref);
            }
            next.status = Status::Failed;
            next.failure_code.clone_from(code);
            next.failure_message.clone_from(message);
        }
        Observation::Refund {
            refund_id,
            amount_minor,
        } => {
            if !next.refunds.contains_key(refund_id) {
                next.refunds.insert(refund_id.clone(), *amount_minor);
                let known: i64 = next.refunds.values().sum();
                next.refunded_minor = next.refunded_minor.max(known);
            }
        }
        Observation::RefundedTotal { refunded_minor } => {
            next.refunded_minor = next.refunded_minor.max(*refunded_minor);
        }
    }
    if next.refunded_minor > p.refunded_minor {
        // A refund implies the capture, even if we missed it.
        if next.captured_minor == 0 {
            next.captured_minor = next.amount_minor;
        }
        next.status = status_for_refunds(next.captured_minor, next.refunded_minor);
    }
    // Forward only: keep the old status unless the new one is allowed.
    if next.status != p.status && !p.status.can_become(next.status) {
        next.status = p.status;
        next.failure_code.clone_from(&p.failure_code);
        next.failure_message.clone_from(&p.failure_message);
    }
    // A terminal payment keeps its numbers, except refunds, which only grow.
    if p.status.is_terminal() && p.status != Status::Refunded {
        next.captured_minor = p.captured_minor;
        next.refunded_minor = p.refunded_minor;
        next.refunds.clone_from(&p.refunds);
    }
    if next == *p {
        return None;
    }
    next.updated_at_ms = now_ms;
    Some(next)
}

/// Whether a status change (as opposed to a refund id or provider ref being
/// recorded) happened, i.e. whether an event is due.
pub fn is_event_worthy(before: &Payment, after: &Payment) -> bool {
    before.status != after.status
        || before.refunded_minor != after.refunded_minor
        || before.captured_minor != after.captured_minor
}

/// The amount an event about `p` is about: refunded, captured or authorized.
pub fn event_amount_minor(p: &Payment) -> i64 {
    match p.status {
        Status::PartiallyRefunded | Status::Refunded => p.refunded_minor,
        Status::Captured => p.captured_minor,
        _ => p.amount_minor,
    }
}

fn field(field: &str, message: impl Into<String>) -> FieldError {
    FieldError::new(field, message)
}

/// Validate an idempotency key (the one rule every service shares).
pub fn check_key(key: &str, errors: &mut Vec<FieldError>) {
    if let Err(e) = IdempotencyKey::parse_field(key) {
        errors.push(e);
    }
}

/// Validate an amount in minor units.
pub fn check_amount(name: &str, amount_minor: i64, errors: &mut Vec<FieldError>) {
    if amount_minor <= 0 {
        errors.push(field(name, "must be positive"));
    } else if amount_minor > MAX_AMOUNT_MINOR {
        errors.push(field(name, format!("must be at most {MAX_AMOUNT_MINOR}")));
    }
}

/// Validate and normalise a currency code (three ASCII letters, upper case).
pub fn check_currency(currency: &str, errors: &mut Vec<FieldError>) -> String {
    let c = currency.trim().to_ascii_uppercase();
    if c.len() != 3 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
        errors.push(field("amount.currency", "must be an ISO 4217 code"));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn payment(status: Status) -> Payment {
        Payment {
            id: uuid::Uuid::nil(),
            tenant_id: "t".into(),
            order_id: "o".into(),
            create_key: "k".into(),
            status,
            amount_minor: 1000,
            currency: "EUR".into(),
            captured_minor: 0,
            refunded_minor: 0,
            refunds: BTreeMap::new(),
            provider_ref: "pi_1".into(),
            failure_code: String::new(),
            failure_message: String::new(),
            payment_method: "pm_card_visa".into(),
            created_at_ms: 1,
            updated_at_ms: 1,
        }
    }

    fn intent(state: IntentState, captured: i64) -> Observation {
        Observation::Intent {
            provider_ref: "pi_1".into(),
            state,
            captured_minor: captured,
        }
    }

    #[test]
    fn the_happy_path_moves_forward_once_per_step() {
        let p = payment(Status::Pending);
        let a = merge(&p, &intent(IntentState::RequiresCapture, 0), 2).unwrap();
        assert_eq!(a.status, Status::Authorized);
        assert_eq!(merge(&a, &intent(IntentState::RequiresCapture, 0), 3), None);
        let c = merge(&a, &intent(IntentState::Succeeded, 1000), 3).unwrap();
        assert_eq!((c.status, c.captured_minor), (Status::Captured, 1000));
        let r1 = Observation::Refund {
            refund_id: "re_1".into(),
            amount_minor: 300,
        };
        let pr = merge(&c, &r1, 4).unwrap();
        assert_eq!(
            (pr.status, pr.refunded_minor),
            (Status::PartiallyRefunded, 300)
        );
        assert_eq!(merge(&pr, &r1, 5), None, "a replayed refund counts once");
        let total = Observation::RefundedTotal {
            refunded_minor: 300,
        };
        assert_eq!(merge(&pr, &total, 5), None, "its webhook changes nothing");
        let r = merge(
            &pr,
            &Observation::RefundedTotal {
                refunded_minor: 1000,
            },
            6,
        )
        .unwrap();
        assert_eq!(r.status, Status::Refunded);
    }

    #[test]
    fn a_late_authorization_never_overwrites_a_capture() {
        let mut c = payment(Status::Captured);
        c.captured_minor = 1000;
        assert_eq!(merge(&c, &intent(IntentState::RequiresCapture, 0), 9), None);
        assert_eq!(merge(&c, &intent(IntentState::Open, 0), 9), None);
        assert_eq!(merge(&c, &intent(IntentState::Canceled, 0), 9), None);
    }

    #[test]
    fn webhook_before_response_does_not_double_count_a_refund() {
        let mut c = payment(Status::Captured);
        c.captured_minor = 1000;
        let after_hook = merge(
            &c,
            &Observation::RefundedTotal {
                refunded_minor: 400,
            },
            2,
        )
        .unwrap();
        let after_resp = merge(
            &after_hook,
            &Observation::Refund {
                refund_id: "re_1".into(),
                amount_minor: 400,
            },
            3,
        )
        .unwrap();
        assert_eq!(after_resp.refunded_minor, 400);
        assert!(!is_event_worthy(&after_hook, &after_resp));
    }

    #[test]
    fn declines_fail_only_pending_payments() {
        let d = Observation::Declined {
            provider_ref: "pi_1".into(),
            code: "card_declined".into(),
            message: "no".into(),
        };
        let f = merge(&payment(Status::Pending), &d, 2).unwrap();
        assert_eq!(
            (f.status, f.failure_code.as_str()),
            (Status::Failed, "card_declined")
        );
        assert_eq!(merge(&payment(Status::Authorized), &d, 2), None);
        assert_eq!(merge(&f, &intent(IntentState::RequiresCapture, 0), 3), None);
    }

    #[test]
    fn statuses_round_trip_and_only_dead_ends_are_terminal() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
            assert!(!s.can_become(s), "{s:?} -> itself is not a change");
            if s.is_terminal() {
                assert!(Status::ALL.iter().all(|n| !s.can_become(*n)));
            }
        }
        assert!(!Status::Captured.can_become(Status::Cancelled));
        assert!(Status::Authorized.can_become(Status::Cancelled));
    }

    fn observation() -> impl Strategy<Value = Observation> {
        prop_oneof![
            (0..4u8, 0..2000i64).prop_map(|(s, c)| intent(
                [
                    IntentState::Open,
                    IntentState::RequiresCapture,
                    IntentState::Succeeded,
                    IntentState::Canceled
                ][s as usize],
                c
            )),
            Just(Observation::Declined {
                provider_ref: "pi_1".into(),
                code: "card_declined".into(),
                message: "m".into()
            }),
            (0..3u8, 1..500i64).prop_map(|(i, a)| Observation::Refund {
                refund_id: format!("re_{i}"),
                amount_minor: a
            }),
            (0..1500i64).prop_map(|t| Observation::RefundedTotal { refunded_minor: t }),
        ]
    }

    proptest! {
        #[test]
        fn status_only_moves_forward_and_repeats_are_no_ops(
            obs in proptest::collection::vec(observation(), 0..30)
        ) {
            let mut p = payment(Status::Pending);
            for (i, o) in obs.iter().enumerate() {
                if let Some(next) = merge(&p, o, i as i64 + 2) {
                    prop_assert!(next.status == p.status || p.status.can_become(next.status),
                        "{:?} -> {:?}", p.status, next.status);
                    prop_assert!(next.refunded_minor >= p.refunded_minor);
                    p = next;
                }
                prop_assert_eq!(merge(&p, o, 1_000), None, "applying {:?} twice", o);
            }
        }
    }
}
