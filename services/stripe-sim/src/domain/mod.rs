//! The payment-intent state machine and refunds, as Stripe documents them,
//! without I/O, clocks or id generation: callers pass ids and times in.
//!
//! ```text
//! requires_payment_method --(payment_method)--> requires_confirmation
//! requires_*  --confirm, approved, manual-->    requires_capture --capture--> succeeded
//! requires_*  --confirm, approved, automatic--> succeeded
//! requires_*  --confirm, declined-->            requires_payment_method (+ last_payment_error)
//! requires_*  --cancel-->                       canceled
//! succeeded   --refund (sum <= amount_received)
//! ```

pub mod cards;

use std::collections::BTreeMap;

pub use cards::{CardDecline, CardOutcome, TestCard};

/// Largest amount Stripe accepts (in the smallest currency unit).
pub const MAX_AMOUNT: i64 = 99_999_999;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    RequiresPaymentMethod,
    RequiresConfirmation,
    RequiresCapture,
    Succeeded,
    Canceled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::RequiresPaymentMethod => "requires_payment_method",
            Status::RequiresConfirmation => "requires_confirmation",
            Status::RequiresCapture => "requires_capture",
            Status::Succeeded => "succeeded",
            Status::Canceled => "canceled",
        }
    }

    /// Whether Stripe allows going from `self` to `next` (staying put is allowed).
    pub fn can_become(self, next: Status) -> bool {
        use Status::*;
        self == next
            || matches!(
                (self, next),
                (
                    RequiresPaymentMethod,
                    RequiresConfirmation | RequiresCapture | Succeeded | Canceled
                ) | (
                    RequiresConfirmation,
                    RequiresPaymentMethod | RequiresCapture | Succeeded | Canceled
                ) | (RequiresCapture, Succeeded | Canceled)
            )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureMethod {
    Automatic,
    Manual,
}

impl CaptureMethod {
    pub fn parse(s: &str) -> Option<CaptureMethod> {
        match s {
            // `automatic_async` is Stripe's newer default; same observable flow here.
            "automatic" | "automatic_async" => Some(CaptureMethod::Automatic),
            "manual" => Some(CaptureMethod::Manual),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CaptureMethod::Automatic => "automatic",
            CaptureMethod::Manual => "manual",
        }
    }
}

/// The last failed confirmation, as Stripe keeps it on the intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentError {
    pub decline: CardDecline,
    pub payment_method: String,
    pub charge: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentIntent {
    pub id: String,
    pub client_secret: String,
    pub amount: i64,
    pub currency: String,
    pub capture_method: CaptureMethod,
    pub status: Status,
    pub payment_method: Option<String>,
    pub amount_capturable: i64,
    pub amount_received: i64,
    /// Sum of the refunds of the charge (Stripe keeps it on the charge).
    pub amount_refunded: i64,
    pub metadata: BTreeMap<String, String>,
    pub created_s: i64,
    pub canceled_at_s: Option<i64>,
    pub cancellation_reason: Option<String>,
    pub last_payment_error: Option<PaymentError>,
    /// The charge of the last confirmation (failed or not).
    pub latest_charge: Option<String>,
}

/// A refund of (part of) an intent's captured charge. Refunds succeed at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    pub id: String,
    pub amount: i64,
    pub charge: String,
    pub currency: String,
    pub payment_intent: String,
    pub reason: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub created_s: i64,
}

/// What Stripe would announce as an Event after an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainEvent {
    AmountCapturableUpdated,
    Succeeded,
    PaymentFailed,
    Canceled,
    ChargeRefunded,
}

impl DomainEvent {
    /// Stripe's event type.
    pub fn event_type(self) -> &'static str {
        match self {
            DomainEvent::AmountCapturableUpdated => "payment_intent.amount_capturable_updated",
            DomainEvent::Succeeded => "payment_intent.succeeded",
            DomainEvent::PaymentFailed => "payment_intent.payment_failed",
            DomainEvent::Canceled => "payment_intent.canceled",
            DomainEvent::ChargeRefunded => "charge.refunded",
        }
    }
}

/// Why an operation was refused. Every variant leaves the intent unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error(
        "This PaymentIntent could not be {action} because it has a status of {status}. Only a PaymentIntent with one of the following statuses may be {action}: {allowed}."
    )]
    UnexpectedState {
        action: &'static str,
        status: &'static str,
        allowed: &'static str,
    },
    #[error(
        "You cannot confirm this PaymentIntent because it's missing a payment method. To confirm the PaymentIntent with {id}, specify a payment method attached to this customer."
    )]
    MissingPaymentMethod { id: String },
    #[error("No such PaymentMethod: '{0}'")]
    UnknownPaymentMethod(String),
    #[error("Invalid {param}: must be an integer between {min} and {max}")]
    InvalidAmount {
        param: &'static str,
        min: i64,
        max: i64,
    },
    #[error(
        "The amount_to_capture ({requested}) must be less than or equal to the amount_capturable ({capturable})."
    )]
    CaptureTooLarge { requested: i64, capturable: i64 },
    #[error(
        "Refund amount ({requested}) is greater than unrefunded amount on charge ({remaining})"
    )]
    RefundTooLarge { requested: i64, remaining: i64 },
    #[error("Charge {0} has already been refunded.")]
    AlreadyRefunded(String),
}

impl DomainError {
    /// Stripe's `code` for the error.
    pub fn code(&self) -> &'static str {
        match self {
            DomainError::UnexpectedState { .. } | DomainError::MissingPaymentMethod { .. } => {
                "payment_intent_unexpected_state"
            }
            DomainError::UnknownPaymentMethod(_) => "resource_missing",
            DomainError::InvalidAmount { .. } => "parameter_invalid_integer",
            DomainError::CaptureTooLarge { .. } | DomainError::RefundTooLarge { .. } => {
                "amount_too_large"
            }
            DomainError::AlreadyRefunded(_) => "charge_already_refunded",
        }
    }

    /// Stripe's `param` for the error, when there is one.
    pub fn param(&self) -> Option<&'static str> {
        match self {
            DomainError::UnknownPaymentMethod(_) => Some("payment_method"),
            DomainError::InvalidAmount { param, .. } => Some(param),
            DomainError::CaptureTooLarge { .. } => Some("amount_to_capture"),
            DomainError::RefundTooLarge { .. } => Some("amount"),
            _ => None,
        }
    }
}

/// Inputs of `POST /v1/payment_intents` (already parsed).
#[derive(Debug, Clone)]
pub struct NewIntent {
    pub id: String,
    pub client_secret: String,
    pub amount: i64,
    pub currency: String,
    pub capture_method: CaptureMethod,
    pub payment_method: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub created_s: i64,
}

/// Result of a confirmation that was not refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmed {
    Approved(DomainEvent),
    /// The intent is back in `requires_payment_method` with `last_payment_error`.
    Declined(CardDecline),
}

fn check_amount(param: &'static str, amount: i64, max: i64) -> Result<(), DomainError> {
    if (1..=max).contains(&amount) {
        Ok(())
    } else {
        Err(DomainError::InvalidAmount { param, min: 1, max })
    }
}

impl PaymentIntent {
    /// A new intent: `requires_confirmation` with a payment method, else
    /// `requires_payment_method`.
    pub fn create(new: NewIntent) -> Result<PaymentIntent, DomainError> {
        check_amount("amount", new.amount, MAX_AMOUNT)?;
        if let Some(pm) = &new.payment_method {
            cards::lookup(pm).ok_or_else(|| DomainError::UnknownPaymentMethod(pm.clone()))?;
        }
        Ok(PaymentIntent {
            status: if new.payment_method.is_some() {
                Status::RequiresConfirmation
            } else {
                Status::RequiresPaymentMethod
            },
            id: new.id,
            client_secret: new.client_secret,
            amount: new.amount,
            currency: new.currency,
            capture_method: new.capture_method,
            payment_method: new.payment_method,
            amount_capturable: 0,
            amount_received: 0,
            amount_refunded: 0,
            metadata: new.metadata,
            created_s: new.created_s,
            canceled_at_s: None,
            cancellation_reason: None,
            last_payment_error: None,
            latest_charge: None,
        })
    }

    /// Confirm with `payment_method` (or the one already attached); `charge_id`
    /// names the charge this attempt creates.
    pub fn confirm(
        &mut self,
        payment_method: Option<String>,
        charge_id: String,
    ) -> Result<Confirmed, DomainError> {
        self.confirm_or_decline(payment_method, charge_id, None)
    }

    /// [`PaymentIntent::confirm`], declined with `decline` whatever the card
    /// would do (an injected decline rate) when one is given.
    pub fn confirm_or_decline(
        &mut self,
        payment_method: Option<String>,
        charge_id: String,
        decline: Option<CardDecline>,
    ) -> Result<Confirmed, DomainError> {
        if !matches!(
            self.status,
            Status::RequiresPaymentMethod | Status::RequiresConfirmation
        ) {
            return Err(DomainError::UnexpectedState {
                action: "confirmed",
                status: self.status.as_str(),
                allowed: "requires_payment_method, requires_confirmation",
            });
        }
        let pm = payment_method
            .or_else(|| self.payment_method.clone())
            .ok_or_else(|| DomainError::MissingPaymentMethod {
                id: self.id.clone(),
            })?;
        let card =
            cards::lookup(&pm).ok_or_else(|| DomainError::UnknownPaymentMethod(pm.clone()))?;
        self.latest_charge = Some(charge_id.clone());
        let outcome = match decline {
            Some(d) => CardOutcome::Decline(d),
            None => card.outcome.clone(),
        };
        match &outcome {
            CardOutcome::Approve => {
                self.payment_method = Some(pm);
                self.last_payment_error = None;
                Ok(Confirmed::Approved(match self.capture_method {
                    CaptureMethod::Manual => {
                        self.status = Status::RequiresCapture;
                        self.amount_capturable = self.amount;
                        DomainEvent::AmountCapturableUpdated
                    }
                    CaptureMethod::Automatic => {
                        self.status = Status::Succeeded;
                        self.amount_received = self.amount;
                        DomainEvent::Succeeded
                    }
                }))
            }
            CardOutcome::Decline(d) => {
                // Stripe detaches the failed method so the next confirm needs a new one.
                self.status = Status::RequiresPaymentMethod;
                self.payment_method = None;
                self.last_payment_error = Some(PaymentError {
                    decline: d.clone(),
                    payment_method: pm,
                    charge: charge_id,
                });
                Ok(Confirmed::Declined(d.clone()))
            }
        }
    }

    /// Capture `amount_to_capture` (default: all of `amount_capturable`); the
    /// rest is released, as Stripe does.
    pub fn capture(&mut self, amount_to_capture: Option<i64>) -> Result<DomainEvent, DomainError> {
        if self.status != Status::RequiresCapture {
            return Err(DomainError::UnexpectedState {
                action: "captured",
                status: self.status.as_str(),
                allowed: "requires_capture",
            });
        }
        let amount = amount_to_capture.unwrap_or(self.amount_capturable);
        check_amount("amount_to_capture", amount, MAX_AMOUNT)?;
        if amount > self.amount_capturable {
            return Err(DomainError::CaptureTooLarge {
                requested: amount,
                capturable: self.amount_capturable,
            });
        }
        self.status = Status::Succeeded;
        self.amount_received = amount;
        self.amount_capturable = 0;
        Ok(DomainEvent::Succeeded)
    }

    pub fn cancel(
        &mut self,
        reason: Option<String>,
        now_s: i64,
    ) -> Result<DomainEvent, DomainError> {
        if matches!(self.status, Status::Succeeded | Status::Canceled) {
            return Err(DomainError::UnexpectedState {
                action: "canceled",
                status: self.status.as_str(),
                allowed: "requires_payment_method, requires_capture, requires_confirmation, requires_action, processing",
            });
        }
        self.status = Status::Canceled;
        self.amount_capturable = 0;
        self.canceled_at_s = Some(now_s);
        self.cancellation_reason = reason;
        Ok(DomainEvent::Canceled)
    }

    /// Refund `amount` (default: everything not refunded yet) of the captured
    /// charge. Returns the amount refunded.
    pub fn refund(&mut self, amount: Option<i64>) -> Result<i64, DomainError> {
        if self.status != Status::Succeeded {
            return Err(DomainError::UnexpectedState {
                action: "refunded",
                status: self.status.as_str(),
                allowed: "succeeded",
            });
        }
        let remaining = self.amount_received - self.amount_refunded;
        if remaining == 0 {
            return Err(DomainError::AlreadyRefunded(
                self.latest_charge.clone().unwrap_or_default(),
            ));
        }
        let amount = amount.unwrap_or(remaining);
        check_amount("amount", amount, MAX_AMOUNT)?;
        if amount > remaining {
            return Err(DomainError::RefundTooLarge {
                requested: amount,
                remaining,
            });
        }
        self.amount_refunded += amount;
        Ok(amount)
    }

    /// The invariants every reachable intent satisfies.
    pub fn check_invariants(&self) -> Result<(), String> {
        let ok = |c: bool, what: &str| {
            if c {
                Ok(())
            } else {
                Err(format!("{what}: {self:?}"))
            }
        };
        ok(
            0 <= self.amount_refunded && self.amount_refunded <= self.amount_received,
            "refunded within received",
        )?;
        ok(
            self.amount_received <= self.amount,
            "received within amount",
        )?;
        ok(
            (self.amount_capturable > 0) == (self.status == Status::RequiresCapture),
            "capturable only in requires_capture",
        )?;
        ok(
            (self.amount_received > 0) == (self.status == Status::Succeeded),
            "received only when succeeded",
        )?;
        ok(
            self.canceled_at_s.is_some() == (self.status == Status::Canceled),
            "canceled_at only when canceled",
        )?;
        ok(
            self.status != Status::RequiresConfirmation || self.payment_method.is_some(),
            "requires_confirmation has a payment method",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn new_intent(capture: CaptureMethod, pm: Option<&str>) -> PaymentIntent {
        PaymentIntent::create(NewIntent {
            id: "pi_1".into(),
            client_secret: "pi_1_secret_x".into(),
            amount: 1000,
            currency: "usd".into(),
            capture_method: capture,
            payment_method: pm.map(str::to_owned),
            metadata: BTreeMap::new(),
            created_s: 1,
        })
        .unwrap()
    }

    #[test]
    fn manual_capture_happy_path() {
        let mut pi = new_intent(CaptureMethod::Manual, Some("pm_card_visa"));
        assert_eq!(pi.status, Status::RequiresConfirmation);
        assert_eq!(
            pi.confirm(None, "ch_1".into()).unwrap(),
            Confirmed::Approved(DomainEvent::AmountCapturableUpdated)
        );
        assert_eq!(
            (pi.status, pi.amount_capturable),
            (Status::RequiresCapture, 1000)
        );
        assert_eq!(pi.capture(Some(600)).unwrap(), DomainEvent::Succeeded);
        assert_eq!(
            (pi.status, pi.amount_received, pi.amount_capturable),
            (Status::Succeeded, 600, 0)
        );
        assert_eq!(
            pi.capture(None).unwrap_err().code(),
            "payment_intent_unexpected_state"
        );
    }

    #[test]
    fn decline_returns_to_requires_payment_method_and_can_retry() {
        let mut pi = new_intent(CaptureMethod::Automatic, None);
        assert!(matches!(
            pi.confirm(None, "ch_0".into()),
            Err(DomainError::MissingPaymentMethod { .. })
        ));
        let d = pi
            .confirm(Some("pm_card_chargeDeclined".into()), "ch_1".into())
            .unwrap();
        assert!(matches!(d, Confirmed::Declined(ref d) if d.decline_code == "generic_decline"));
        assert_eq!(pi.status, Status::RequiresPaymentMethod);
        assert_eq!(pi.payment_method, None);
        assert_eq!(pi.last_payment_error.as_ref().unwrap().charge, "ch_1");
        assert_eq!(
            pi.confirm(Some("pm_card_visa".into()), "ch_2".into())
                .unwrap(),
            Confirmed::Approved(DomainEvent::Succeeded)
        );
        assert_eq!(
            (pi.amount_received, pi.last_payment_error.is_none()),
            (1000, true)
        );
    }

    #[test]
    fn refunds_sum_to_at_most_the_captured_amount() {
        let mut pi = new_intent(CaptureMethod::Automatic, Some("pm_card_visa"));
        pi.confirm(None, "ch_1".into()).unwrap();
        assert_eq!(pi.refund(Some(300)).unwrap(), 300);
        assert_eq!(
            pi.refund(Some(800)).unwrap_err(),
            DomainError::RefundTooLarge {
                requested: 800,
                remaining: 700
            }
        );
        assert_eq!(pi.refund(None).unwrap(), 700);
        assert_eq!(
            pi.refund(None).unwrap_err().code(),
            "charge_already_refunded"
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Confirm(Option<usize>),
        Capture(Option<i64>),
        Cancel,
        Refund(Option<i64>),
    }

    fn op() -> impl Strategy<Value = Op> {
        let pm = proptest::option::of(0..cards::TEST_CARDS.len() + 1);
        let amount = proptest::option::of(-5i64..1500);
        prop_oneof![
            pm.prop_map(Op::Confirm),
            amount.clone().prop_map(Op::Capture),
            Just(Op::Cancel),
            amount.prop_map(Op::Refund),
        ]
    }

    proptest! {
        #[test]
        fn random_operations_keep_the_invariants(
            manual in any::<bool>(),
            initial_pm in proptest::option::of(0..cards::TEST_CARDS.len()),
            ops in proptest::collection::vec(op(), 0..30),
        ) {
            let capture = if manual { CaptureMethod::Manual } else { CaptureMethod::Automatic };
            let mut pi = new_intent(capture, initial_pm.map(|i| cards::TEST_CARDS[i].payment_method));
            pi.check_invariants().map_err(TestCaseError::fail)?;
            let mut refunded_total = 0;
            for (n, op) in ops.into_iter().enumerate() {
                let before = pi.clone();
                let result = match op {
                    Op::Confirm(pm) => {
                        // index == len stands for an unknown PaymentMethod
                        let pm = pm.map(|i| cards::TEST_CARDS.get(i).map_or("pm_card_bogus", |c| c.payment_method).to_string());
                        pi.confirm(pm, format!("ch_{n}")).map(|_| ())
                    }
                    Op::Capture(a) => pi.capture(a).map(|_| ()),
                    Op::Cancel => pi.cancel(None, 5).map(|_| ()),
                    Op::Refund(a) => pi.refund(a).map(|r| refunded_total += r),
                };
                if result.is_err() {
                    prop_assert_eq!(&pi, &before, "a refused operation changed the intent");
                }
                prop_assert!(before.status.can_become(pi.status), "illegal {:?} -> {:?}", before.status, pi.status);
                pi.check_invariants().map_err(TestCaseError::fail)?;
                prop_assert_eq!(refunded_total, pi.amount_refunded);
            }
        }
    }
}
