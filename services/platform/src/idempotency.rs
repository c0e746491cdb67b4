//! The client's `Idempotency-Key`: one type and one limit for every service
//! that takes one (the gateway's header, orders' `CreateOrder`, payments'
//! mutating calls), so a key one of them accepts is never refused by the next.

use std::fmt;

use crate::error::FieldError;

/// A non-blank idempotency key of at most [`IdempotencyKey::MAX_CHARS`]
/// characters, kept exactly as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IdempotencyKey(String);

/// Why a key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdempotencyKeyError {
    #[error("is required")]
    Missing,
    #[error("must be at most {} characters", IdempotencyKey::MAX_CHARS)]
    TooLong,
}

impl IdempotencyKey {
    /// Longest key, in characters (not bytes): Stripe's limit, so payments can
    /// hand a key to the provider unchanged.
    pub const MAX_CHARS: usize = 255;
    /// The field name validation errors carry.
    pub const FIELD: &'static str = "idempotency_key";

    /// Accept `raw` unless it is blank or longer than [`Self::MAX_CHARS`].
    pub fn parse(raw: &str) -> Result<IdempotencyKey, IdempotencyKeyError> {
        if raw.trim().is_empty() {
            Err(IdempotencyKeyError::Missing)
        } else if raw.chars().count() > Self::MAX_CHARS {
            Err(IdempotencyKeyError::TooLong)
        } else {
            Ok(IdempotencyKey(raw.to_string()))
        }
    }

    /// [`Self::parse`], with a refusal as the field error of `idempotency_key`.
    pub fn parse_field(raw: &str) -> Result<IdempotencyKey, FieldError> {
        Self::parse(raw).map_err(|e| FieldError::new(Self::FIELD, e.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for IdempotencyKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn blank_and_too_long_keys_are_refused_and_the_limit_counts_characters() {
        assert_eq!(IdempotencyKey::parse(""), Err(IdempotencyKeyError::Missing));
        assert_eq!(
            IdempotencyKey::parse(" \t"),
            Err(IdempotencyKeyError::Missing)
        );
        let max = "k".repeat(IdempotencyKey::MAX_CHARS);
        assert_eq!(IdempotencyKey::parse(&max).unwrap().as_str(), max);
        assert_eq!(
            IdempotencyKey::parse(&format!("{max}k")),
            Err(IdempotencyKeyError::TooLong)
        );
        // 255 two-byte characters are 510 bytes and still one valid key.
        let wide = "é".repeat(IdempotencyKey::MAX_CHARS);
        assert!(IdempotencyKey::parse(&wide).is_ok());
        let e = IdempotencyKey::parse_field("").unwrap_err();
        assert_eq!(e, FieldError::new("idempotency_key", "is required"));
        assert_eq!(
            IdempotencyKey::parse_field(&format!("{max}k"))
                .unwrap_err()
                .message,
            "must be at most 255 characters"
        );
    }

    proptest! {
        #[test]
        fn a_key_is_accepted_exactly_when_non_blank_and_short_enough(raw in "\\PC{0,300}") {
            let ok = !raw.trim().is_empty() && raw.chars().count() <= IdempotencyKey::MAX_CHARS;
            let parsed = IdempotencyKey::parse(&raw);
            prop_assert_eq!(parsed.is_ok(), ok);
            if let Ok(k) = parsed {
                prop_assert_eq!(k.as_str(), raw.as_str());
            }
        }
    }
}
