//! Stripe's documented test PaymentMethods and what a confirmation with each
//! one does. Unknown ids are `None`: the API answers `resource_missing`.

/// Why a card was declined, in Stripe's terms (`card_error` fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardDecline {
    /// `code` of the error object, e.g. `card_declined`, `expired_card`.
    pub code: &'static str,
    /// `decline_code`, e.g. `generic_decline`, `insufficient_funds`.
    pub decline_code: &'static str,
    pub message: &'static str,
    /// `param` of the error object when Stripe names one (`cvc`, `exp_month`).
    pub param: Option<&'static str>,
}

/// What confirming with a test card does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardOutcome {
    Approve,
    Decline(CardDecline),
}

/// A test PaymentMethod: its id, the card behind it and the outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestCard {
    pub payment_method: &'static str,
    pub brand: &'static str,
    pub last4: &'static str,
    pub outcome: CardOutcome,
}

const DECLINED: &str = "Your card was declined.";

const fn approve(
    payment_method: &'static str,
    brand: &'static str,
    last4: &'static str,
) -> TestCard {
    TestCard {
        payment_method,
        brand,
        last4,
        outcome: CardOutcome::Approve,
    }
}

const fn decline(
    payment_method: &'static str,
    last4: &'static str,
    code: &'static str,
    decline_code: &'static str,
    message: &'static str,
    param: Option<&'static str>,
) -> TestCard {
    TestCard {
        payment_method,
        brand: "visa",
        last4,
        outcome: CardOutcome::Decline(CardDecline {
            code,
            decline_code,
            message,
            param,
        }),
    }
}

/// The table, from Stripe's "Testing" docs (cards by brand, declined payments,
/// 3D Secure). The simulator has no `requires_action` step: cards that always
/// demand 3D Secure are declined with `authentication_required`, which is what
/// Stripe answers when authentication cannot be performed (off-session).
pub const TEST_CARDS: &[TestCard] = &[
    approve("pm_card_visa", "visa", "4242"),
    approve("pm_card_visa_debit", "visa", "5556"),
    approve("pm_card_mastercard", "mastercard", "4444"),
    approve("pm_card_mastercard_debit", "mastercard", "8210"),
    approve("pm_card_amex", "amex", "8431"),
    approve("pm_card_discover", "discover", "1117"),
    approve("pm_card_amex_threeDSecureNotSupported", "amex", "0005"),
    approve("pm_card_threeDSecureOptional", "visa", "3055"),
    decline(
        "pm_card_chargeDeclined",
        "0002",
        "card_declined",
        "generic_decline",
        DECLINED,
        None,
    ),
    decline(
        "pm_card_chargeDeclinedInsufficientFunds",
        "9995",
        "card_declined",
        "insufficient_funds",
        "Your card has insufficient funds.",
        None,
    ),
    decline(
        "pm_card_chargeDeclinedLostCard",
        "9987",
        "card_declined",
        "lost_card",
        DECLINED,
        None,
    ),
    decline(
        "pm_card_chargeDeclinedStolenCard",
        "9979",
        "card_declined",
        "stolen_card",
        DECLINED,
        None,
    ),
    decline(
        "pm_card_chargeDeclinedFraudulent",
        "0019",
        "card_declined",
        "fraudulent",
        DECLINED,
        None,
    ),
    decline(
        "pm_card_chargeDeclinedExpiredCard",
        "0069",
        "expired_card",
        "expired_card",
        "Your card has expired.",
        Some("exp_month"),
    ),
    decline(
        "pm_card_chargeDeclinedIncorrectCvc",
        "0127",
        "incorrect_cvc",
        "incorrect_cvc",
        "Your card's security code is incorrect.",
        Some("cvc"),
    ),
    decline(
        "pm_card_chargeDeclinedProcessingError",
        "0119",
        "processing_error",
        "processing_error",
        "An error occurred while processing your card. Try again in a little bit.",
        None,
    ),
    decline(
        "pm_card_threeDSecureRequired",
        "3063",
        "authentication_required",
        "authentication_required",
        "Your card was declined. This transaction requires authentication.",
        None,
    ),
    decline(
        "pm_card_threeDSecure2Required",
        "3220",
        "authentication_required",
        "authentication_required",
        "Your card was declined. This transaction requires authentication.",
        None,
    ),
    decline(
        "pm_card_authenticationRequired",
        "3184",
        "authentication_required",
        "authentication_required",
        "Your card was declined. This transaction requires authentication.",
        None,
    ),
    decline(
        "pm_card_threeDSecureRequiredChargeDeclined",
        "1629",
        "card_declined",
        "generic_decline",
        DECLINED,
        None,
    ),
];

/// The test card behind a PaymentMethod id.
pub fn lookup(payment_method: &str) -> Option<&'static TestCard> {
    TEST_CARDS
        .iter()
        .find(|c| c.payment_method == payment_method)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_known_ones_resolve() {
        let mut ids: Vec<_> = TEST_CARDS.iter().map(|c| c.payment_method).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), TEST_CARDS.len());
        assert_eq!(
            lookup("pm_card_visa").unwrap().outcome,
            CardOutcome::Approve
        );
        assert!(lookup("pm_card_nope").is_none());
        match &lookup("pm_card_chargeDeclinedInsufficientFunds")
            .unwrap()
            .outcome
        {
            CardOutcome::Decline(d) => assert_eq!(d.decline_code, "insufficient_funds"),
            CardOutcome::Approve => panic!("must decline"),
        }
    }
}
