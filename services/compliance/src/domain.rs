//! The pure part of compliance: DSAR kinds and states, the audit record and
//! its chain, the certificate, and compact JWS (EdDSA over Ed25519) to sign
//! and verify both. No I/O: `shopstream dsar verify` runs this offline.

use aws_lc_rs::{
    rand::SystemRandom,
    signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shopstream_dsar::{Retained, StoreCount};

/// The `prev` of the first record of the chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// The issuer named in certificates.
pub const ISSUER: &str = "shopstream-compliance";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Erase,
    Export,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Erase => "erase",
            Kind::Export => "export",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "erase" | "delete" => Some(Kind::Erase),
            "export" => Some(Kind::Export),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Pending,
    Running,
    Completed,
    Failed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Running => "running",
            State::Completed => "completed",
            State::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        match s {
            "pending" => Some(State::Pending),
            "running" => Some(State::Running),
            "completed" => Some(State::Completed),
            "failed" => Some(State::Failed),
            _ => None,
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, State::Completed | State::Failed)
    }
}

/// What the sweep checked and found: the participants' own scans and the
/// independent scans (Redis keys, S3 objects, topic messages).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sweep {
    pub clean: bool,
    /// Every check with what it found (0 is clean).
    pub checks: Vec<StoreCount>,
    /// Where residue was found, e.g. `redis key cart:...`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub residue: Vec<String>,
}

impl Sweep {
    pub fn from_checks(checks: Vec<StoreCount>, residue: Vec<String>) -> Sweep {
        Sweep {
            clean: checks.iter().all(|c| c.count == 0) && residue.is_empty(),
            checks,
            residue,
        }
    }
}

/// One record of the audit chain (the payload of a chain object, a compact
/// JWS). `prev` is the SHA-256 of the previous chain object's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: u64,
    pub prev: String,
    pub dsar_id: String,
    pub tenant: String,
    pub kind: Kind,
    /// `completed` or `failed`.
    pub outcome: State,
    pub subject_hash: String,
    /// Per store, what the DSAR did there.
    pub actions: Vec<StoreCount>,
    pub retained: Vec<Retained>,
    /// Absent for exports (nothing is removed, so nothing is swept).
    pub sweep: Option<Sweep>,
    pub at_ms: i64,
}

/// The key of chain record `seq` in the audit bucket.
pub fn chain_key(seq: u64) -> String {
    format!("chain/{seq:012}.jws")
}

/// The certificate handed to the subject: signed, verifiable offline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    pub iss: String,
    pub dsar_id: String,
    pub tenant: String,
    pub kind: Kind,
    /// `sha256(salt | tenant | 0 | user id bytes)`, hex: whoever knows the
    /// user id can check it is theirs; nobody can read it back.
    pub subject_hash: String,
    /// Hex salt of `subject_hash`.
    pub subject_salt: String,
    pub requested_at_ms: i64,
    pub completed_at_ms: i64,
    /// Per store, what happened there (`erased` / `exported` counts).
    pub stores: Vec<StoreCount>,
    /// What was kept, anonymised, under which basis and for how long.
    pub retained: Vec<Retained>,
    pub sweep: Option<Sweep>,
    /// The audit chain record of this DSAR: its sequence number and the
    /// SHA-256 (hex) of its bytes.
    pub audit_seq: u64,
    pub audit_hash: String,
    /// Nothing of the subject was found anywhere.
    pub nothing_found: bool,
}

/// SHA-256 of `bytes`, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct JwsHeader {
    alg: String,
    kid: String,
    typ: String,
}

/// An Ed25519 signing key with its key id (the first 16 hex digits of the
/// public key's SHA-256).
pub struct Signer {
    pair: Ed25519KeyPair,
    pkcs8: Vec<u8>,
    kid: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("kid", &self.kid).finish()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("not a compact JWS (three base64url parts)")]
    Malformed,
    #[error("the JWS header is not EdDSA with a key id")]
    Header,
    #[error("no key {0:?} in the key set")]
    UnknownKey(String),
    #[error("the signature does not verify with key {0}")]
    Signature(String),
    #[error("the payload is not a {0}: {1}")]
    Payload(&'static str, String),
}

impl Signer {
    pub fn generate() -> Result<Signer, String> {
        let doc =
            Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|e| e.to_string())?;
        Signer::from_pkcs8(doc.as_ref())
    }

    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Signer, String> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|e| format!("ed25519 key: {e}"))?;
        let kid = sha256_hex(pair.public_key().as_ref())[..16].to_string();
        Ok(Signer {
            pair,
            pkcs8: pkcs8.to_vec(),
            kid,
        })
    }

    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn public_key(&self) -> Vec<u8> {
        self.pair.public_key().as_ref().to_vec()
    }

    /// The public key as a JWK (OKP, Ed25519).
    pub fn jwk(&self) -> Jwk {
        Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            alg: "EdDSA".into(),
            key_use: "sig".into(),
            kid: self.kid.clone(),
            x: B64.encode(self.public_key()),
        }
    }

    /// `payload` as a compact JWS (`typ` names what it is).
    pub fn sign<T: Serialize>(&self, typ: &str, payload: &T) -> Result<String, String> {
        let header = JwsHeader {
            alg: "EdDSA".into(),
            kid: self.kid.clone(),
            typ: typ.into(),
        };
        let h = B64.encode(serde_json::to_vec(&header).map_err(|e| e.to_string())?);
        let p = B64.encode(serde_json::to_vec(payload).map_err(|e| e.to_string())?);
        let input = format!("{h}.{p}");
        let sig = self.pair.sign(input.as_bytes());
        Ok(format!("{input}.{}", B64.encode(sig.as_ref())))
    }
}

/// A JSON Web Key of an Ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    #[serde(default)]
    pub alg: String,
    #[serde(rename = "use", default)]
    pub key_use: String,
    pub kid: String,
    pub x: String,
}

/// A JWK set, as `/.well-known/jwks.json` serves it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// Verify a compact JWS against `keys`; returns the key id and the payload.
pub fn verify_jws<T: serde::de::DeserializeOwned>(
    jws: &str,
    keys: &Jwks,
    what: &'static str,
) -> Result<(String, T), VerifyError> {
    let mut parts = jws.trim().split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(VerifyError::Malformed);
    };
    let header: JwsHeader = B64
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(VerifyError::Header)?;
    if header.alg != "EdDSA" || header.kid.is_empty() {
        return Err(VerifyError::Header);
    }
    let jwk = keys
        .keys
        .iter()
        .find(|k| k.kid == header.kid && k.kty == "OKP" && k.crv == "Ed25519")
        .ok_or_else(|| VerifyError::UnknownKey(header.kid.clone()))?;
    let public = B64
        .decode(&jwk.x)
        .map_err(|_| VerifyError::UnknownKey(header.kid.clone()))?;
    let sig = B64.decode(s).map_err(|_| VerifyError::Malformed)?;
    UnparsedPublicKey::new(&ED25519, public)
        .verify(format!("{h}.{p}").as_bytes(), &sig)
        .map_err(|_| VerifyError::Signature(header.kid.clone()))?;
    let payload = B64.decode(p).map_err(|_| VerifyError::Malformed)?;
    let value =
        serde_json::from_slice(&payload).map_err(|e| VerifyError::Payload(what, e.to_string()))?;
    Ok((header.kid, value))
}

/// The payload of a compact JWS, unverified (to show what a rejected
/// document claims).
pub fn jws_payload(jws: &str) -> Option<serde_json::Value> {
    let p = jws.trim().split('.').nth(1)?;
    serde_json::from_slice(&B64.decode(p).ok()?).ok()
}

/// One check of `verify` and how it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// Verify a certificate and its place in the audit chain: its signature, the
/// record it names (present, same hash, signed, about the same DSAR and
/// subject), and every link from that record back to the genesis. `chain`
/// returns the bytes of chain record `seq`, or None when it is missing.
/// With `subject`, also that the certificate names this user.
pub fn verify_certificate(
    jws: &str,
    keys: &Jwks,
    chain: &mut dyn FnMut(u64) -> Option<Vec<u8>>,
    subject: Option<(&str, uuid::Uuid)>,
) -> (Option<Certificate>, Vec<Check>) {
    let mut checks = Vec::new();
    let mut check = |name: &str, ok: bool, detail: String| {
        checks.push(Check {
            name: name.into(),
            ok,
            detail,
        });
        ok
    };
    let cert: Certificate = match verify_jws(jws, keys, "certificate") {
        Ok((kid, c)) => {
            check("certificate signature", true, format!("EdDSA, key {kid}"));
            c
        }
        Err(e) => {
            check("certificate signature", false, e.to_string());
            return (None, checks);
        }
    };
    if let Some((tenant, user)) = subject {
        let salt = hex::decode(&cert.subject_salt).unwrap_or_default();
        let s = shopstream_dsar::Subject::new(tenant, user, &[]);
        let ok = s.salted_hash(&salt) == cert.subject_hash;
        check(
            "subject",
            ok,
            if ok {
                format!("the certificate is about user {user}")
            } else {
                format!("the certificate is not about user {user} in tenant {tenant}")
            },
        );
    }
    let Some(bytes) = chain(cert.audit_seq) else {
        check(
            "audit record",
            false,
            format!("record {} is missing from the chain", cert.audit_seq),
        );
        return (Some(cert), checks);
    };
    let hash = sha256_hex(&bytes);
    if !check(
        "audit record",
        hash == cert.audit_hash,
        if hash == cert.audit_hash {
            format!("record {} has hash {}", cert.audit_seq, &hash[..16])
        } else {
            format!(
                "record {} hashes to {}, the certificate says {}",
                cert.audit_seq, hash, cert.audit_hash
            )
        },
    ) {
        return (Some(cert), checks);
    }
    let text = String::from_utf8_lossy(&bytes).to_string();
    match verify_jws::<AuditRecord>(&text, keys, "audit record") {
        Ok((_, r)) => {
            let same = r.dsar_id == cert.dsar_id
                && r.subject_hash == cert.subject_hash
                && r.seq == cert.audit_seq;
            check(
                "audit record content",
                same,
                if same {
                    format!("signed; names DSAR {} and the same subject", r.dsar_id)
                } else {
                    format!("the record names DSAR {} (seq {})", r.dsar_id, r.seq)
                },
            );
            // Walk back to the genesis.
            let (mut prev, mut seq, mut ok, mut detail) =
                (r.prev.clone(), r.seq, true, String::new());
            while seq > 0 {
                let Some(b) = chain(seq - 1) else {
                    ok = false;
                    detail = format!("record {} is missing", seq - 1);
                    break;
                };
                if sha256_hex(&b) != prev {
                    ok = false;
                    detail = format!(
                        "record {} does not hash to the `prev` of record {seq} (altered or replaced)",
                        seq - 1
                    );
                    break;
                }
                match verify_jws::<AuditRecord>(&String::from_utf8_lossy(&b), keys, "audit record")
                {
                    Ok((_, p)) if p.seq == seq - 1 => prev = p.prev,
                    Ok((_, p)) => {
                        ok = false;
                        detail = format!("record {} says it is seq {}", seq - 1, p.seq);
                        break;
                    }
                    Err(e) => {
                        ok = false;
                        detail = format!("record {}: {e}", seq - 1);
                        break;
                    }
                }
                seq -= 1;
            }
            if ok && prev != GENESIS {
                ok = false;
                detail = "record 0 does not start at the genesis".into();
            }
            if ok {
                detail = format!(
                    "{} records back to the genesis, each signed and linked",
                    r.seq + 1
                );
            }
            check("chain", ok, detail);
        }
        Err(e) => {
            check("audit record content", false, e.to_string());
        }
    }
    (Some(cert), checks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn record(seq: u64, prev: &str, dsar: &str) -> AuditRecord {
        AuditRecord {
            seq,
            prev: prev.into(),
            dsar_id: dsar.into(),
            tenant: "t".into(),
            kind: Kind::Erase,
            outcome: State::Completed,
            subject_hash: format!("h-{dsar}"),
            actions: vec![StoreCount::new("identity.users", 1, "")],
            retained: vec![],
            sweep: Some(Sweep::from_checks(vec![], vec![])),
            at_ms: 1,
        }
    }

    /// A chain of three records and a certificate for the last one.
    fn setup(signer: &Signer) -> (HashMap<u64, Vec<u8>>, String) {
        let mut chain = HashMap::new();
        let mut prev = GENESIS.to_string();
        for seq in 0..3 {
            let jws = signer
                .sign("audit-record", &record(seq, &prev, &format!("d{seq}")))
                .unwrap();
            prev = sha256_hex(jws.as_bytes());
            chain.insert(seq, jws.into_bytes());
        }
        let cert = Certificate {
            iss: ISSUER.into(),
            dsar_id: "d2".into(),
            tenant: "t".into(),
            kind: Kind::Erase,
            subject_hash: "h-d2".into(),
            subject_salt: "00".into(),
            requested_at_ms: 1,
            completed_at_ms: 2,
            stores: vec![],
            retained: vec![],
            sweep: None,
            audit_seq: 2,
            audit_hash: prev,
            nothing_found: false,
        };
        (chain, signer.sign("dsar-certificate", &cert).unwrap())
    }

    fn run(jws: &str, keys: &Jwks, chain: &HashMap<u64, Vec<u8>>) -> Vec<Check> {
        verify_certificate(jws, keys, &mut |s| chain.get(&s).cloned(), None).1
    }

    fn failed(checks: &[Check]) -> Vec<&str> {
        checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.name.as_str())
            .collect()
    }

    #[test]
    fn a_good_certificate_passes_every_check() {
        let s = Signer::generate().unwrap();
        let (chain, cert) = setup(&s);
        let keys = Jwks {
            keys: vec![s.jwk()],
        };
        let checks = run(&cert, &keys, &chain);
        assert!(failed(&checks).is_empty(), "{checks:?}");
        assert_eq!(checks.len(), 4);
        // A signer loaded back from its PKCS#8 has the same key id.
        assert_eq!(Signer::from_pkcs8(s.pkcs8()).unwrap().kid(), s.kid());
    }

    #[test]
    fn tampering_a_wrong_key_and_a_missing_record_each_fail_their_check() {
        let s = Signer::generate().unwrap();
        let (mut chain, cert) = setup(&s);
        let keys = Jwks {
            keys: vec![s.jwk()],
        };
        // A tampered payload: the signature no longer verifies.
        let mut parts: Vec<String> = cert.split('.').map(String::from).collect();
        let mut c: Certificate = serde_json::from_slice(&B64.decode(&parts[1]).unwrap()).unwrap();
        c.nothing_found = true;
        parts[1] = B64.encode(serde_json::to_vec(&c).unwrap());
        assert_eq!(
            failed(&run(&parts.join("."), &keys, &chain)),
            ["certificate signature"]
        );
        // Another key set.
        let other = Signer::generate().unwrap();
        let checks = run(
            &cert,
            &Jwks {
                keys: vec![other.jwk()],
            },
            &chain,
        );
        assert_eq!(failed(&checks), ["certificate signature"]);
        assert!(checks[0].detail.contains("no key"), "{checks:?}");
        // A record missing under the certified one breaks the chain.
        let gone = chain.remove(&1).unwrap();
        assert_eq!(failed(&run(&cert, &keys, &chain)), ["chain"]);
        // An earlier record replaced by another validly signed one.
        chain.insert(
            1,
            s.sign("audit-record", &record(1, GENESIS, "forged"))
                .unwrap()
                .into_bytes(),
        );
        assert_eq!(failed(&run(&cert, &keys, &chain)), ["chain"]);
        chain.insert(1, gone);
        // The certified record itself missing.
        chain.remove(&2);
        assert_eq!(failed(&run(&cert, &keys, &chain)), ["audit record"]);
    }

    #[test]
    fn the_subject_check_needs_the_right_user() {
        let s = Signer::generate().unwrap();
        let user = uuid::Uuid::new_v4();
        let subject = shopstream_dsar::Subject::new("t", user, &[]);
        let salt = [7u8; 16];
        let (chain, _) = setup(&s);
        let mut cert: Certificate =
            serde_json::from_value(jws_payload(&setup(&s).1).unwrap()).unwrap();
        cert.subject_hash = subject.salted_hash(&salt);
        cert.subject_salt = hex::encode(salt);
        let jws = s.sign("dsar-certificate", &cert).unwrap();
        let keys = Jwks {
            keys: vec![s.jwk()],
        };
        let mut get = |q: u64| chain.get(&q).cloned();
        let (_, ok) = verify_certificate(&jws, &keys, &mut get, Some(("t", user)));
        assert!(ok.iter().any(|c| c.name == "subject" && c.ok), "{ok:?}");
        let (_, bad) = verify_certificate(&jws, &keys, &mut get, Some(("t", uuid::Uuid::new_v4())));
        assert!(bad.iter().any(|c| c.name == "subject" && !c.ok), "{bad:?}");
    }
}
