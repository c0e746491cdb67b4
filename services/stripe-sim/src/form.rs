//! Stripe's request encoding: `application/x-www-form-urlencoded` with bracket
//! keys (`metadata[order_id]=42`, `expand[]=latest_charge`), also accepted
//! in the query string of GET requests.

use std::collections::BTreeMap;

/// Most metadata keys Stripe accepts on one object, and their lengths.
pub const METADATA_MAX_KEYS: usize = 50;
pub const METADATA_KEY_MAX_CHARS: usize = 40;
pub const METADATA_VALUE_MAX_CHARS: usize = 500;

/// A parameter that could not be used; `param` is Stripe's `param` field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParamError {
    pub param: String,
    pub message: String,
}

impl ParamError {
    fn new(param: &str, message: impl Into<String>) -> ParamError {
        ParamError {
            param: param.to_string(),
            message: message.into(),
        }
    }
}

/// Decoded parameters in request order. Repeated keys keep every value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    pub fn parse(body: &[u8]) -> Form {
        Form {
            pairs: form_urlencoded::parse(body).into_owned().collect(),
        }
    }

    /// The pairs sorted, so two bodies with the same parameters in another
    /// order compare equal (idempotency checks).
    pub fn canonical(&self) -> Vec<(String, String)> {
        let mut pairs = self.pairs.clone();
        pairs.sort();
        pairs
    }

    /// The last value of a plain key.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A non-empty string parameter.
    pub fn string(&self, key: &str) -> Option<String> {
        self.str(key).filter(|v| !v.is_empty()).map(str::to_owned)
    }

    pub fn i64(&self, key: &str) -> Result<Option<i64>, ParamError> {
        match self.str(key) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| ParamError::new(key, format!("Invalid integer: {v}"))),
        }
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>, ParamError> {
        match self.str(key) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(v) => Err(ParamError::new(key, format!("Invalid boolean: {v}"))),
        }
    }

    /// A hash parameter such as `metadata[k]=v`, with Stripe's metadata limits.
    /// Empty values are skipped (Stripe uses them to unset a key).
    pub fn metadata(&self, key: &str) -> Result<BTreeMap<String, String>, ParamError> {
        let mut out = BTreeMap::new();
        for (k, v) in &self.pairs {
            let Some(sub) = bracket_key(k, key) else {
                if k == key && !v.is_empty() {
                    return Err(ParamError::new(key, format!("Invalid hash: {key}")));
                }
                continue;
            };
            if sub.is_empty() || sub.contains(['[', ']']) {
                return Err(ParamError::new(k, format!("Invalid {key} key: {k}")));
            }
            if sub.chars().count() > METADATA_KEY_MAX_CHARS {
                return Err(ParamError::new(
                    k,
                    format!("{key} keys can be at most {METADATA_KEY_MAX_CHARS} characters long"),
                ));
            }
            if v.chars().count() > METADATA_VALUE_MAX_CHARS {
                return Err(ParamError::new(
                    k,
                    format!(
                        "{key} values can be at most {METADATA_VALUE_MAX_CHARS} characters long"
                    ),
                ));
            }
            if v.is_empty() {
                out.remove(sub);
            } else {
                out.insert(sub.to_string(), v.clone());
            }
        }
        if out.len() > METADATA_MAX_KEYS {
            return Err(ParamError::new(
                key,
                format!("{key} can have at most {METADATA_MAX_KEYS} keys"),
            ));
        }
        Ok(out)
    }
}

/// `"metadata[order_id]"` with prefix `"metadata"` → `Some("order_id")`.
fn bracket_key<'a>(key: &'a str, prefix: &str) -> Option<&'a str> {
    key.strip_prefix(prefix)?
        .strip_prefix('[')?
        .strip_suffix(']')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bracket_keys_and_scalars() {
        let f = Form::parse(
            b"amount=2000&currency=usd&metadata%5Border_id%5D=o-1&metadata[note]=a+b%26c&confirm=true&expand[]=latest_charge",
        );
        assert_eq!(f.i64("amount").unwrap(), Some(2000));
        assert_eq!(f.str("currency"), Some("usd"));
        assert_eq!(f.bool("confirm").unwrap(), Some(true));
        let m = f.metadata("metadata").unwrap();
        assert_eq!(m["order_id"], "o-1");
        assert_eq!(m["note"], "a b&c");
        assert_eq!(m.len(), 2);
        assert_eq!(f.str("expand[]"), Some("latest_charge"));
    }

    #[test]
    fn bad_values_name_the_param() {
        let f = Form::parse(b"amount=12x&confirm=yes&metadata[a][b]=1");
        assert_eq!(f.i64("amount").unwrap_err().param, "amount");
        assert_eq!(f.bool("confirm").unwrap_err().param, "confirm");
        assert_eq!(f.metadata("metadata").unwrap_err().param, "metadata[a][b]");
        let long = format!("metadata[{}]=1", "k".repeat(41));
        assert!(Form::parse(long.as_bytes()).metadata("metadata").is_err());
    }

    #[test]
    fn empty_metadata_value_unsets_and_order_does_not_matter_canonically() {
        let f = Form::parse(b"metadata[a]=1&metadata[a]=");
        assert!(f.metadata("metadata").unwrap().is_empty());
        assert_eq!(
            Form::parse(b"a=1&b=2").canonical(),
            Form::parse(b"b=2&a=1").canonical()
        );
    }

    proptest! {
        #[test]
        fn metadata_round_trips_through_the_encoding(
            entries in proptest::collection::btree_map("[a-z_]{1,20}", "[ -~]{1,40}", 0..10)
        ) {
            let mut ser = form_urlencoded::Serializer::new(String::new());
            ser.append_pair("amount", "100");
            for (k, v) in &entries {
                ser.append_pair(&format!("metadata[{k}]"), v);
            }
            let body = ser.finish();
            let f = Form::parse(body.as_bytes());
            prop_assert_eq!(f.metadata("metadata").unwrap(), entries);
            prop_assert_eq!(f.i64("amount").unwrap(), Some(100));
        }
    }
}
