//! JSON numbers read the way JSON Schema (and so the OpenAPI document) reads
//! them: `3.0` is the integer 3, `3.5` is not an integer. serde alone refuses
//! `3.0` for an integer field, which the document cannot say.

use serde::{Deserialize, Deserializer, de::Error};

/// A JSON number that is a whole number, as an `i128` wide enough for any
/// `u64` or `i64`.
fn whole<'de, D: Deserializer<'de>>(d: D) -> Result<i128, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    if let Some(i) = n.as_i64() {
        return Ok(i.into());
    }
    if let Some(u) = n.as_u64() {
        return Ok(u.into());
    }
    match n.as_f64() {
        // Past 2^63 no float is both whole and in range of the targets here.
        Some(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Ok(f as i128),
        _ => Err(D::Error::custom(format!("{n} is not an integer"))),
    }
}

fn fit<T: TryFrom<i128>, E: Error>(n: i128) -> Result<T, E> {
    T::try_from(n).map_err(|_| E::custom(format!("{n} is out of range")))
}

/// `u32` from an integer or a whole float.
pub fn u32_whole<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    fit(whole(d)?)
}

/// `i64` from an integer or a whole float.
pub fn i64_whole<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    fit(whole(d)?)
}

/// Optional `u32` (absent or `null` = `None`); use with `#[serde(default)]`.
pub fn opt_u32_whole<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    Option::<serde_json::Number>::deserialize(d)?
        .map(|n| u32_whole(n).map_err(D::Error::custom))
        .transpose()
}

/// Optional `i64` (absent or `null` = `None`); use with `#[serde(default)]`.
pub fn opt_i64_whole<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Option::<serde_json::Number>::deserialize(d)?
        .map(|n| i64_whole(n).map_err(D::Error::custom))
        .transpose()
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Line {
        #[serde(deserialize_with = "super::u32_whole")]
        quantity: u32,
        #[serde(default, deserialize_with = "super::opt_i64_whole")]
        amount: Option<i64>,
    }

    fn line(json: &str) -> Result<Line, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn whole_floats_are_integers_and_fractions_are_not() {
        let l = line(r#"{"quantity": 3.0, "amount": -7.0}"#).unwrap();
        assert_eq!((l.quantity, l.amount), (3, Some(-7)));
        assert_eq!(line(r#"{"quantity": 3}"#).unwrap().amount, None);
        assert_eq!(
            line(r#"{"quantity": 3, "amount": null}"#).unwrap().amount,
            None
        );
        assert!(line(r#"{"quantity": 3.5}"#).is_err());
        assert!(line(r#"{"quantity": -1}"#).is_err());
        assert!(line(r#"{"quantity": 4294967296}"#).is_err());
        assert!(line(r#"{"quantity": "3"}"#).is_err());
        assert!(line(r#"{"quantity": 1e300}"#).is_err());
    }
}
