//! Money: integer minor units and an ISO 4217 currency code, never a float.

use std::fmt;

use serde::Serialize;

use super::validation::FieldErrors;

/// Largest amount accepted for one price, in minor units (10 billion major
/// units): far above any real price, far below `i64` overflow when summed.
pub const MAX_AMOUNT_MINOR: i64 = 1_000_000_000_000;

/// An ISO 4217 alphabetic code: three upper-case ASCII letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    /// ISO 4217 "no currency"; only seen on a product without SKUs, which
    /// validation never produces.
    pub const NONE: Currency = Currency(*b"XXX");

    pub fn parse(s: &str) -> Result<Currency, String> {
        match s.as_bytes() {
            [a, b, c] if [a, b, c].iter().all(|x| x.is_ascii_uppercase()) => {
                Ok(Currency([*a, *b, *c]))
            }
            _ => Err("must be an ISO 4217 code of three upper-case letters, e.g. EUR".into()),
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII upper-case letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A price: non-negative minor units of one currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Money {
    pub amount_minor: i64,
    pub currency: Currency,
}

impl Money {
    /// Validate a price; field names are relative (`amount_minor`, `currency`).
    pub fn parse(amount_minor: Option<i64>, currency: Option<&str>) -> Result<Money, FieldErrors> {
        let mut errors = FieldErrors::new();
        let amount = errors
            .required("amount_minor", amount_minor)
            .and_then(|a| errors.check("amount_minor", check_amount(a)));
        let currency = errors
            .required("currency", currency)
            .and_then(|c| errors.check("currency", Currency::parse(c)));
        match (amount, currency) {
            (Some(amount_minor), Some(currency)) if errors.is_empty() => Ok(Money {
                amount_minor,
                currency,
            }),
            _ => Err(errors),
        }
    }
}

/// Check a price amount in minor units.
pub fn check_amount(amount_minor: i64) -> Result<i64, String> {
    if amount_minor < 0 {
        Err("must be >= 0".into())
    } else if amount_minor > MAX_AMOUNT_MINOR {
        Err(format!("must be <= {MAX_AMOUNT_MINOR}"))
    } else {
        Ok(amount_minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currencies_are_three_upper_case_letters() {
        assert_eq!(Currency::parse("EUR").unwrap().as_str(), "EUR");
        for bad in ["eur", "EU", "EURO", "E1R", ""] {
            assert!(Currency::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn money_lists_every_bad_field() {
        let m = Money::parse(Some(4500), Some("GBP")).unwrap();
        assert_eq!((m.amount_minor, m.currency.as_str()), (4500, "GBP"));
        let e = Money::parse(Some(-1), Some("gbp")).unwrap_err();
        assert_eq!(e.fields(), ["amount_minor", "currency"]);
        let e = Money::parse(None, None).unwrap_err();
        assert_eq!(e.fields(), ["amount_minor", "currency"]);
        assert!(Money::parse(Some(MAX_AMOUNT_MINOR + 1), Some("EUR")).is_err());
    }

    #[test]
    fn money_serializes_with_the_code_as_a_string() {
        let m = Money::parse(Some(1), Some("USD")).unwrap();
        assert_eq!(
            serde_json::to_value(m).unwrap(),
            serde_json::json!({"amount_minor": 1, "currency": "USD"})
        );
    }
}
