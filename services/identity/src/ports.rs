//! What identity needs from the world. Adapters: `adapters::postgres`
//! (production) and `adapters::memory` (unit tests, simulator); both pass
//! `adapters::contract`.

use async_trait::async_trait;
use uuid::Uuid;

use crate::domain::{Email, RefreshUse, Role, User};

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The (tenant, email) pair is taken.
    #[error("duplicate")]
    Duplicate,
    #[error("storage: {0}")]
    Storage(String),
}

/// Users.
#[async_trait]
pub trait UserRepository: Send + Sync + 'static {
    /// Store a new user. MUST return `Duplicate` if the tenant already has a
    /// user with this (normalised) email, and change nothing.
    async fn create(&self, user: &User) -> Result<(), RepoError>;
    async fn by_email(&self, tenant: &str, email: &Email) -> Result<Option<User>, RepoError>;
    async fn by_id(&self, tenant: &str, id: Uuid) -> Result<Option<User>, RepoError>;
    /// Add `role` to a user (idempotent).
    async fn grant(&self, tenant: &str, id: Uuid, role: Role) -> Result<(), RepoError>;
}

/// A refresh token to store: only its hash is kept.
#[derive(Debug, Clone)]
pub struct NewRefreshToken {
    pub tenant_id: String,
    pub user_id: Uuid,
    pub family_id: Uuid,
    pub token_hash: Vec<u8>,
    pub expires_at_ms: i64,
}

/// Refresh-token families with rotation and reuse detection.
#[async_trait]
pub trait RefreshTokenStore: Send + Sync + 'static {
    /// Store a token; creates its family on first use of `family_id`.
    async fn issue(&self, token: &NewRefreshToken) -> Result<(), RepoError>;

    /// Consume the token with `token_hash`, atomically:
    /// - unknown hash → `Unknown`; family revoked → `Revoked`;
    /// - already consumed → `Reused`, and the whole family is revoked;
    /// - past `expires_at_ms` → `Expired`;
    /// - otherwise mark it consumed and return `Rotate`.
    ///
    /// Two concurrent calls with one hash MUST NOT both get `Rotate`.
    async fn consume(
        &self,
        tenant: &str,
        token_hash: &[u8],
        now_ms: i64,
    ) -> Result<RefreshUse, RepoError>;

    /// Revoke a family (logout); idempotent.
    async fn revoke_family(&self, tenant: &str, family_id: Uuid) -> Result<(), RepoError>;

    /// The family of a token, if known (logout by token).
    async fn family_of(&self, tenant: &str, token_hash: &[u8]) -> Result<Option<Uuid>, RepoError>;
}

/// Per-key attempt limiting (login: email + client IP) in fixed windows.
/// Adapters: `adapters::ratelimit` (Redis) and `adapters::memory`; both pass
/// `adapters::contract::rate_limiter`.
///
/// Contract, for a limiter of `limit` attempts per `window_s` seconds:
/// - Every `hit` counts one attempt of `key`, allowed or not.
/// - A key's window starts at its first attempt (when no window of it is
///   open) and lasts `window_s`; refused attempts MUST NOT extend it.
/// - The first `limit` attempts of a window MUST be allowed (`Ok(Ok(()))`);
///   every further attempt in it MUST be refused with `Ok(Err(retry_after_s))`,
///   the seconds left in the window, `1 <= retry_after_s <= window_s`.
/// - `limit` 0 allows nothing: every attempt is refused. There is no
///   "unlimited"; a limit is always a number of attempts.
/// - Once the window has passed, the key MUST have its whole budget again.
/// - Keys MUST NOT share budgets.
#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Count an attempt of `key`: `Ok(Err(retry_after_s))` when over the limit.
    async fn hit(&self, key: &str) -> Result<Result<(), u64>, RepoError>;
}
