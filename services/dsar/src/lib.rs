//! The DSAR participant kit (ADR 0012).
//!
//! Every service that stores anything about a person implements
//! [`Participant`] over its own stores and serves it with [`server`] next to
//! its own gRPC surface; the compliance workflow reaches each one with
//! [`Client`]. One contract suite ([`contract::check`]) runs against every
//! participant: seed a subject and a bystander, export (every seeded item is
//! there, nothing of the bystander's), erase, scan (zero), erase again (a
//! no-op), and the bystander is untouched.

pub mod contract;
mod grpc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use grpc::{Client, server};

/// Who a DSAR is about, in one tenant: the user id and the identifiers
/// derived from it that some store keys on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    pub tenant: String,
    pub user_id: Uuid,
    /// Lower-cased e-mail addresses.
    pub emails: Vec<String>,
}

impl Subject {
    pub fn new(tenant: &str, user_id: Uuid, emails: &[&str]) -> Subject {
        Subject {
            tenant: tenant.to_string(),
            user_id,
            emails: emails.iter().map(|e| e.trim().to_lowercase()).collect(),
        }
    }

    /// The subject as the certificate and the audit chain name it:
    /// `sha256(salt | tenant | user_id)`, hex.
    pub fn salted_hash(&self, salt: &[u8]) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(salt);
        h.update(self.tenant.as_bytes());
        h.update([0]);
        h.update(self.user_id.as_bytes());
        hex::encode(h.finalize())
    }
}

/// What one store did or holds (`"<service>.<store>"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreCount {
    pub store: String,
    pub count: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl StoreCount {
    pub fn new(store: &str, count: u64, detail: &str) -> StoreCount {
        StoreCount {
            store: store.to_string(),
            count,
            detail: detail.to_string(),
        }
    }
}

/// The sum of `counts`.
pub fn total(counts: &[StoreCount]) -> u64 {
    counts.iter().map(|c| c.count).sum()
}

/// Records kept, anonymised, instead of erased, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retained {
    pub store: String,
    pub count: u64,
    pub basis: String,
    pub fields_kept: String,
    pub retain_days: u32,
}

/// The legal basis of keeping orders and payments (anonymised).
pub const ACCOUNTING_BASIS: &str = "GDPR Art. 17(3)(b): compliance with a legal obligation \
     (tax and accounting records must be kept)";
/// How long accounting records are kept: ten years (the longest of the EU
/// member states' bookkeeping periods).
pub const ACCOUNTING_RETAIN_DAYS: u32 = 3653;

/// One store's part of an export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    pub store: String,
    pub json: serde_json::Value,
}

/// An S3 object the export archive copies in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
}

/// What a participant holds about a subject.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Export {
    pub counts: Vec<StoreCount>,
    pub documents: Vec<Document>,
    pub objects: Vec<ObjectRef>,
}

/// What an erase did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Erasure {
    pub counts: Vec<StoreCount>,
    pub retained: Vec<Retained>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A store is down or timed out: the caller retries.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The request cannot be served as asked (never retried).
    #[error("invalid: {0}")]
    Invalid(String),
}

impl Error {
    /// A store error: retryable.
    pub fn store(what: &str, e: impl std::fmt::Display) -> Error {
        Error::Unavailable(format!("{what}: {e}"))
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Error {
        Error::store("postgres", e)
    }
}

/// A service's stores, as the DSAR workflow sees them. Every method is
/// idempotent and scoped to `subject.tenant`.
#[async_trait::async_trait]
pub trait Participant: Send + Sync + 'static {
    /// The participant's name (`identity`, `orders`, ...), the prefix of its
    /// stores' names.
    fn name(&self) -> &'static str;
    /// Everything held about the subject.
    async fn export(&self, subject: &Subject) -> Result<Export, Error>;
    /// Erase (or anonymise, listing it in `retained`) the subject's data.
    async fn erase(&self, subject: &Subject) -> Result<Erasure, Error>;
    /// Count what is left of the subject, per store; zero everywhere is clean.
    async fn scan(&self, subject: &Subject) -> Result<Vec<StoreCount>, Error>;
}

/// The Redis set of a tenant's frozen and erased users (members: user ids).
/// Compliance adds a subject when its erasure starts and keeps it there
/// (rebuilt from its Postgres suppression list at start-up); the gateway
/// refuses the members' requests and backfills skip them.
pub fn blocked_key(tenant: &str) -> String {
    format!("dsar:blocked:{tenant}")
}
