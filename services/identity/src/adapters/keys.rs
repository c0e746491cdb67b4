//! The access-token signing key: an Ed25519 pair generated into the key
//! directory on first start (`identity-ed25519.pk8`, owner-only), and JWT
//! signing with it. Verification is `platform::auth::Verifier`, which every
//! service holds with the public key only.

use std::path::Path;

use aws_lc_rs::{
    rand::SystemRandom,
    signature::{Ed25519KeyPair, KeyPair},
};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use shopstream_platform::auth::{Claims, Verifier};

/// File names inside the key directory.
pub const PRIVATE_KEY_FILE: &str = "identity-ed25519.pk8";
pub const PUBLIC_KEY_FILE: &str = "identity-ed25519.pub";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("invalid key: {0}")]
    Invalid(String),
}

/// Signs access tokens.
pub struct Signer {
    encoding: EncodingKey,
    verifier: Verifier,
    /// Raw 32-byte public key.
    public: Vec<u8>,
    kid: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("kid", &self.kid).finish()
    }
}

fn kid_of(public: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(public);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&d[..8])
}

impl Signer {
    /// Load the key pair from `dir`, generating it on first use.
    pub fn load_or_generate(dir: &Path) -> Result<Signer, KeyError> {
        let path = dir.join(PRIVATE_KEY_FILE);
        let file_err = |reason: String| KeyError::File {
            path: path.display().to_string(),
            reason,
        };
        let pkcs8 = if path.exists() {
            std::fs::read(&path).map_err(|e| file_err(e.to_string()))?
        } else {
            std::fs::create_dir_all(dir).map_err(|e| file_err(e.to_string()))?;
            let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                .map_err(|e| KeyError::Invalid(e.to_string()))?;
            let bytes = doc.as_ref().to_vec();
            write_private(&path, &bytes).map_err(|e| file_err(e.to_string()))?;
            bytes
        };
        let signer = Signer::from_pkcs8(&pkcs8)?;
        let _ = std::fs::write(dir.join(PUBLIC_KEY_FILE), signer.jwks().to_string());
        Ok(signer)
    }

    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Signer, KeyError> {
        let pair =
            Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|e| KeyError::Invalid(e.to_string()))?;
        let public = pair.public_key().as_ref().to_vec();
        Ok(Signer {
            encoding: EncodingKey::from_ed_der(pkcs8),
            verifier: Verifier::from_public_key(&public),
            kid: kid_of(&public),
            public,
        })
    }

    pub fn sign(&self, claims: &Claims) -> Result<String, KeyError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| KeyError::Invalid(e.to_string()))
    }

    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// The public key as a JWKS document (RFC 8037 OKP key).
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({
            "keys": [{
                "kty": "OKP",
                "crv": "Ed25519",
                "alg": "EdDSA",
                "use": "sig",
                "kid": self.kid,
                "x": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&self.public),
            }]
        })
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Email, Role, User, claims_for};

    const NOW_S: i64 = 1_800_000_000;
    const NOW_MS: i64 = NOW_S * 1000;

    fn claims(exp_offset_s: i64) -> Claims {
        let now = NOW_S;
        let user = User {
            id: uuid::Uuid::now_v7(),
            tenant_id: "default".into(),
            email: Email::parse("a@b.io").unwrap(),
            password_hash: String::new(),
            roles: vec![Role::Customer],
            created_at_ms: 0,
        };
        let mut c = claims_for(&user, now * 1000, uuid::Uuid::now_v7());
        c.exp = now + exp_offset_s;
        c
    }

    fn b64(v: &serde_json::Value) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    }

    fn signer() -> Signer {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Signer::from_pkcs8(doc.as_ref()).unwrap()
    }

    #[test]
    fn a_signed_token_verifies_and_through_jwks_too() {
        let s = signer();
        let t = s.sign(&claims(60)).unwrap();
        assert_eq!(s.verifier().verify(&t, NOW_MS).unwrap().tid, "default");
        let v = Verifier::from_jwks(&s.jwks()).unwrap();
        assert!(v.verify(&t, NOW_MS).is_ok());
    }

    #[test]
    fn alg_none_is_refused() {
        let s = signer();
        let body = serde_json::to_value(claims(60)).unwrap();
        let token = format!(
            "{}.{}.",
            b64(&serde_json::json!({"alg": "none", "typ": "JWT"})),
            b64(&body)
        );
        assert!(s.verifier().verify(&token, NOW_MS).is_err());
    }

    #[test]
    fn hs256_signed_with_the_public_key_is_refused() {
        // Key confusion: an attacker signs HS256 using the (public) key bytes as secret.
        let s = signer();
        let public = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.jwks()["keys"][0]["x"].as_str().unwrap())
            .unwrap();
        let forged = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(60),
            &EncodingKey::from_secret(&public),
        )
        .unwrap();
        assert!(s.verifier().verify(&forged, NOW_MS).is_err());
    }

    #[test]
    fn tampered_expired_foreign_issuer_and_other_key_are_refused() {
        let s = signer();
        let t = s.sign(&claims(60)).unwrap();
        // Flip the payload: signature no longer matches.
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        let mut c = claims(60);
        c.admin = true;
        parts[1] = b64(&serde_json::to_value(&c).unwrap());
        assert!(s.verifier().verify(&parts.join("."), NOW_MS).is_err());
        // Expired (beyond the 5 s leeway).
        assert!(
            s.verifier()
                .verify(&s.sign(&claims(-60)).unwrap(), NOW_MS)
                .is_err()
        );
        // Within the leeway it still passes.
        assert!(
            s.verifier()
                .verify(&s.sign(&claims(-3)).unwrap(), NOW_MS)
                .is_ok()
        );
        // Another issuer.
        let mut c = claims(60);
        c.iss = "evil".into();
        assert!(s.verifier().verify(&s.sign(&c).unwrap(), NOW_MS).is_err());
        // Signed by another key.
        assert!(signer().verifier().verify(&t, NOW_MS).is_err());
    }

    #[test]
    fn a_token_verified_before_still_expires_and_its_tampered_copy_is_still_refused() {
        let s = signer();
        let v = s.verifier();
        let t = s.sign(&claims(60)).unwrap();
        assert!(v.verify(&t, NOW_MS).is_ok());
        // Remembered now: the same bytes pass again, until they expire.
        assert!(v.verify(&t, NOW_MS + 30_000).is_ok());
        assert!(
            v.verify(&t, NOW_MS + 66_000).is_err(),
            "expired beyond the leeway"
        );
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        let mut c = claims(60);
        c.admin = true;
        parts[1] = b64(&serde_json::to_value(&c).unwrap());
        assert!(v.verify(&parts.join("."), NOW_MS).is_err());
        // A clone shares what was verified; another key's verifier does not.
        assert!(v.clone().verify(&t, NOW_MS).is_ok());
        assert!(signer().verifier().verify(&t, NOW_MS).is_err());
    }

    #[test]
    fn keys_are_generated_once_and_reloaded() {
        let dir = std::env::temp_dir().join(format!("ss-keys-{}", uuid::Uuid::now_v7()));
        let a = Signer::load_or_generate(&dir).unwrap();
        let b = Signer::load_or_generate(&dir).unwrap();
        assert_eq!(a.jwks(), b.jwks());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(PRIVATE_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let _ = std::fs::remove_dir_all(dir);
    }
}
