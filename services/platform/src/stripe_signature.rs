//! Stripe's webhook signature scheme, shared by stripe-sim (which signs and
//! verifies) and payments (which verifies): `Stripe-Signature: t=<unix s>,v1=<hex
//! HMAC-SHA256(secret, "<t>.<payload>")>[,v1=...]`. Any `v1` may match (a
//! secret being rolled shows two), compared in constant time; the timestamp
//! must be within the tolerance of now, in either direction.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Header carrying the signature.
pub const HEADER: &str = "stripe-signature";
/// Stripe's libraries' default tolerance.
pub const DEFAULT_TOLERANCE_S: i64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no Stripe-Signature header")]
    Missing,
    #[error("signature header has no valid timestamp")]
    NoTimestamp,
    #[error("signature header has no v1 signature")]
    NoSignature,
    #[error("no v1 signature matches the payload")]
    Mismatch,
    #[error("signature timestamp {timestamp_s} is more than {tolerance_s} s from now ({now_s})")]
    OutsideTolerance {
        timestamp_s: i64,
        now_s: i64,
        tolerance_s: i64,
    },
}

fn mac(secret: &str, timestamp_s: i64, payload: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("hmac takes any key length"));
    mac.update(timestamp_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    mac
}

/// The header value signing `payload` at `timestamp_s` (tests, tooling).
pub fn sign(payload: &[u8], secret: &str, timestamp_s: i64) -> String {
    let sig = hex::encode(mac(secret, timestamp_s, payload).finalize().into_bytes());
    format!("t={timestamp_s},v1={sig}")
}

/// Verify `header` for `payload` at `now_s`.
pub fn verify(
    payload: &[u8],
    header: Option<&str>,
    secret: &str,
    tolerance_s: i64,
    now_s: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp_s = None;
    let mut candidates = Vec::new();
    for item in header.split(',') {
        match item.trim().split_once('=') {
            Some(("t", v)) => timestamp_s = v.parse::<i64>().ok(),
            Some(("v1", v)) => candidates.extend(hex::decode(v).ok()),
            _ => {}
        }
    }
    let timestamp_s = timestamp_s.ok_or(SignatureError::NoTimestamp)?;
    if candidates.is_empty() {
        return Err(SignatureError::NoSignature);
    }
    let expected = mac(secret, timestamp_s, payload);
    if !candidates
        .iter()
        .any(|c| expected.clone().verify_slice(c).is_ok())
    {
        return Err(SignatureError::Mismatch);
    }
    if (now_s - timestamp_s).abs() > tolerance_s {
        return Err(SignatureError::OutsideTolerance {
            timestamp_s,
            now_s,
            tolerance_s,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test";

    #[test]
    fn known_vector() {
        // echo -n '12345.{}' | openssl dgst -sha256 -hmac 'whsec_test'
        assert_eq!(
            sign(b"{}", SECRET, 12345),
            "t=12345,v1=f7d0d6f2476273381fa231a8ba13a821a0c87029e7b1bfae51e93d0240fb7c32"
        );
    }

    #[test]
    fn good_signatures_pass_within_the_tolerance_only() {
        let p = br#"{"id":"evt_1"}"#;
        let h = sign(p, SECRET, 1_000);
        assert_eq!(verify(p, Some(&h), SECRET, 300, 1_300), Ok(()));
        assert_eq!(verify(p, Some(&h), SECRET, 300, 700), Ok(()));
        assert!(matches!(
            verify(p, Some(&h), SECRET, 300, 1_301),
            Err(SignatureError::OutsideTolerance { .. })
        ));
        assert!(matches!(
            verify(p, Some(&h), SECRET, 300, 699),
            Err(SignatureError::OutsideTolerance { .. })
        ));
    }

    #[test]
    fn tampering_wrong_secrets_and_bad_headers_fail() {
        let p = b"{\"a\":1}";
        let h = sign(p, SECRET, 50);
        assert_eq!(
            verify(b"{\"a\":2}", Some(&h), SECRET, 300, 50),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(p, Some(&h), "whsec_other", 300, 50),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(p, None, SECRET, 300, 50),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(p, Some("garbage"), SECRET, 300, 50),
            Err(SignatureError::NoTimestamp)
        );
        assert_eq!(
            verify(p, Some("t=50,v0=abc"), SECRET, 300, 50),
            Err(SignatureError::NoSignature)
        );
        // A rolled secret: one matching v1 among several is enough.
        let v1 = h.split_once(",v1=").unwrap().1;
        let rolled = format!("v1={},t=50,v1={v1}", "00".repeat(32));
        assert_eq!(verify(p, Some(&rolled), SECRET, 300, 50), Ok(()));
    }

    #[test]
    fn header_shapes() {
        let payload = b"x";
        let good = sign(payload, SECRET, 50);
        let v1 = good.split_once(",v1=").unwrap().1;
        // several v1 entries (secret roll): one match is enough, order free
        let rolled = format!("v1={},t=50,v0=ignored,v1={v1}", "00".repeat(32));
        assert_eq!(verify(payload, Some(&rolled), SECRET, 10, 50), Ok(()));
        assert_eq!(
            verify(payload, Some(&format!("v1={v1}")), SECRET, 10, 50),
            Err(SignatureError::NoTimestamp)
        );
        assert_eq!(
            verify(payload, Some("t=50,v0=abc"), SECRET, 10, 50),
            Err(SignatureError::NoSignature)
        );
        assert_eq!(
            verify(payload, Some("garbage"), SECRET, 10, 50),
            Err(SignatureError::NoTimestamp)
        );
    }
}
