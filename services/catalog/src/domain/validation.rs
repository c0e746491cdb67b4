//! Field-level validation results: every invalid field of a request is
//! collected, so one 422 response lists them all.

use std::fmt;

/// One invalid field: a dotted path with indices (`skus[1].price.currency`)
/// and a human-readable reason (the platform's, so every service answers
/// invalid input alike).
pub use shopstream_platform::FieldError;

/// Every invalid field of one input, in the order they were found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    pub fn new() -> FieldErrors {
        FieldErrors::default()
    }

    /// A list holding one error.
    pub fn single(field: impl Into<String>, message: impl Into<String>) -> FieldErrors {
        let mut e = FieldErrors::new();
        e.push(field, message);
        e
    }

    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// Record `result`'s error under `field`; the value when it is valid.
    pub fn check<T>(&mut self, field: impl Into<String>, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(message) => {
                self.push(field, message);
                None
            }
        }
    }

    /// Record "is required" under `field` when `value` is `None`.
    pub fn required<T>(&mut self, field: &str, value: Option<T>) -> Option<T> {
        if value.is_none() {
            self.push(field, "is required");
        }
        value
    }

    /// Append another list as it is.
    pub fn append(&mut self, other: FieldErrors) {
        self.0.extend(other.0);
    }

    /// Append another list, prefixing each of its fields with `prefix.`.
    pub fn extend_prefixed(&mut self, prefix: &str, other: FieldErrors) {
        for e in other.0 {
            let field = if e.field.is_empty() {
                prefix.to_string()
            } else {
                format!("{prefix}.{}", e.field)
            };
            self.0.push(FieldError {
                field,
                message: e.message,
            });
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &FieldError> {
        self.0.iter()
    }

    /// Field names only, e.g. for assertions and logs.
    pub fn fields(&self) -> Vec<&str> {
        self.0.iter().map(|e| e.field.as_str()).collect()
    }

    /// `Ok(value)` when nothing was recorded, else these errors.
    pub fn into_result<T>(self, value: impl FnOnce() -> T) -> Result<T, FieldErrors> {
        if self.is_empty() {
            Ok(value())
        } else {
            Err(self)
        }
    }
}

impl IntoIterator for FieldErrors {
    type Item = FieldError;
    type IntoIter = std::vec::IntoIter<FieldError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", e.field, e.message)?;
        }
        Ok(())
    }
}

/// Check that `s` has between `min` and `max` characters.
pub fn length(s: &str, min: usize, max: usize) -> Result<(), String> {
    let n = s.chars().count();
    if n < min {
        if min == 1 {
            Err("must not be empty".into())
        } else {
            Err(format!("must be at least {min} characters"))
        }
    } else if n > max {
        Err(format!("must be at most {max} characters"))
    } else {
        Ok(())
    }
}

/// A lowercase identifier: `a-z`, `0-9` and `-`, not starting or ending with `-`.
pub fn kebab(s: &str, max: usize) -> Result<(), String> {
    length(s, 1, max)?;
    if !s
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err("may contain only lowercase letters, digits and '-'".into());
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err("must not start or end with '-'".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_every_error_with_prefixes() {
        let mut inner = FieldErrors::new();
        inner.push("amount_minor", "must be >= 0");
        inner.push("", "is required");
        let mut outer = FieldErrors::single("title", "must not be empty");
        outer.extend_prefixed("skus[0].price", inner);
        assert_eq!(
            outer.fields(),
            ["title", "skus[0].price.amount_minor", "skus[0].price"]
        );
        assert!(outer.to_string().contains("title: must not be empty"));
        assert!(outer.into_result(|| ()).is_err());
        assert_eq!(FieldErrors::new().into_result(|| 7), Ok(7));
    }

    #[test]
    fn kebab_rules() {
        assert!(kebab("the-winter-kitchen-0001", 120).is_ok());
        assert!(kebab("Winter", 120).is_err());
        assert!(kebab("-a", 120).is_err());
        assert!(kebab("a b", 120).is_err());
        assert!(kebab("", 120).is_err());
        assert!(kebab("abc", 2).is_err());
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        assert!(length("été", 1, 3).is_ok());
        assert!(length("", 1, 3).is_err());
        assert!(length("abcd", 1, 3).is_err());
    }
}
