//! Access tokens as every service sees them: the [`Claims`] identity signs,
//! the [`Verifier`] that checks them with identity's public key only, and where
//! a request carries one (`Authorization: Bearer ...` or the [`ACCESS_COOKIE`]).
//! Signing stays in identity; verifying needs nothing of identity's crate.
//!
//! Verification pins EdDSA and the issuer, so `alg: none`, HS/RS confusion,
//! foreign issuers and expired tokens fail.

use base64::Engine;
use http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

/// Issuer of every access token.
pub const ISSUER: &str = "shopstream-identity";
/// Cookie carrying the access token for browsers (HttpOnly, path `/`).
pub const ACCESS_COOKIE: &str = "ss_access";
/// Cookie carrying the refresh token for browsers (HttpOnly, path `/auth`).
pub const REFRESH_COOKIE: &str = "ss_refresh";
/// Prefix of the `Authorization` header value carrying an access token.
pub const BEARER_PREFIX: &str = "Bearer ";

/// Claims of an access token (a JWT signed with EdDSA).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// Tenant id.
    pub tid: String,
    pub roles: Vec<String>,
    pub admin: bool,
    pub iss: String,
    pub iat: i64,
    pub exp: i64,
    /// Token id, for audit logs.
    pub jti: String,
}

/// Why a token was refused (all map to 401).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("invalid token: {0}")]
pub struct TokenError(pub String);

/// A public key that cannot be used.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("invalid key: {0}")]
pub struct InvalidKey(pub String);

/// Verifies access tokens with the public key only (the gateway holds one).
#[derive(Clone)]
pub struct Verifier {
    decoding: DecodingKey,
    validation: Validation,
    /// Tokens whose signature, algorithm and issuer checked out, with their
    /// claims (shared by clones). Those checks depend only on the token's
    /// bytes and this key, so a token seen again skips the Ed25519
    /// verification (about 40 µs, an eighth of the gateway's CPU per
    /// request under a flash sale); expiry is checked on every call.
    verified: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Claims>>>,
}

/// Most tokens [`Verifier`] remembers; when full it forgets them all (a
/// client's requests come close together, so the recent ones come back).
pub const VERIFIED_TOKENS_MAX: usize = 8_192;

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier")
    }
}

impl Verifier {
    /// Allowed clock difference between issuer and verifier.
    pub const LEEWAY_S: i64 = 5;

    /// From a raw 32-byte Ed25519 public key.
    pub fn from_public_key(public: &[u8]) -> Verifier {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.algorithms = vec![Algorithm::EdDSA];
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "sub"]);
        // Expiry is checked against the caller's clock (the Clock port), not
        // the library's wall clock, so simulations control it.
        validation.validate_exp = false;
        Verifier {
            decoding: DecodingKey::from_ed_der(public),
            validation,
            verified: Default::default(),
        }
    }

    /// From a JWKS document as identity serves it at `/.well-known/jwks.json`.
    pub fn from_jwks(jwks: &serde_json::Value) -> Result<Verifier, InvalidKey> {
        let x = jwks["keys"][0]["x"]
            .as_str()
            .ok_or_else(|| InvalidKey("jwks has no keys[0].x".into()))?;
        let public = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(x)
            .map_err(|e| InvalidKey(e.to_string()))?;
        if public.len() != 32 {
            return Err(InvalidKey("Ed25519 public key must be 32 bytes".into()));
        }
        Ok(Verifier::from_public_key(&public))
    }

    /// Check signature, algorithm, issuer and expiry (at `now_ms`, from the
    /// caller's `Clock`).
    pub fn verify(&self, token: &str, now_ms: i64) -> Result<Claims, TokenError> {
        let known = self
            .verified
            .lock()
            .ok()
            .and_then(|v| v.get(token).cloned());
        let claims = match known {
            Some(claims) => claims,
            None => {
                let claims =
                    jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
                        .map(|d| d.claims)
                        .map_err(|e| TokenError(e.to_string()))?;
                if let Ok(mut v) = self.verified.lock() {
                    if v.len() >= VERIFIED_TOKENS_MAX {
                        v.clear();
                    }
                    v.insert(token.to_string(), claims.clone());
                }
                claims
            }
        };
        if now_ms / 1000 > claims.exp + Self::LEEWAY_S {
            return Err(TokenError("ExpiredSignature".into()));
        }
        Ok(claims)
    }
}

/// The access token a request carries: the `Authorization: Bearer` header
/// first, else the [`ACCESS_COOKIE`]. Not verified.
pub fn access_token(headers: &HeaderMap) -> Option<String> {
    let bearer = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix(BEARER_PREFIX))
        .map(str::to_owned);
    bearer.or_else(|| cookie(headers, ACCESS_COOKIE))
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn bearer_wins_over_the_cookie_and_the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        assert_eq!(access_token(&h), None);
        h.insert(
            http::header::COOKIE,
            HeaderValue::from_static("theme=dark; ss_access=from-cookie; ss_refresh=r"),
        );
        assert_eq!(access_token(&h).as_deref(), Some("from-cookie"));
        assert_eq!(cookie(&h, REFRESH_COOKIE).as_deref(), Some("r"));
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Bearer from-header"),
        );
        assert_eq!(access_token(&h).as_deref(), Some("from-header"));
        // Another scheme is not a bearer token: the cookie applies.
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Basic Zm9vOmJhcg=="),
        );
        assert_eq!(access_token(&h).as_deref(), Some("from-cookie"));
    }

    #[test]
    fn a_jwks_without_a_usable_key_is_refused() {
        for bad in [
            serde_json::json!({}),
            serde_json::json!({"keys": [{"x": "!!not base64!!"}]}),
            serde_json::json!({"keys": [{"x": "AAAA"}]}),
        ] {
            assert!(Verifier::from_jwks(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn garbage_is_not_a_token() {
        let v = Verifier::from_public_key(&[7; 32]);
        assert!(v.verify("not.a.jwt", 0).is_err());
        assert!(v.verify("", 0).is_err());
    }
}
