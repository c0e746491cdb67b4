//! Identity's part in a DSAR (ADR 0012): the account (`identity.users`),
//! its sessions (`identity.refresh_families`, `identity.refresh_tokens`) and
//! the login rate limiter's counters in Redis (`identity.login_attempts`),
//! whose keys name the e-mail address and the client IP.
//!
//! A subject is the user with its id or with one of its e-mail addresses
//! (users are keyed on both), and sessions belong to those users. Erase
//! deletes the sessions and the account in one transaction (and the
//! counters before it commits): the e-mail and password log in no more and
//! every refresh token is unknown. Access tokens already handed out are not
//! stored; they stay valid until they expire (at most
//! [`ACCESS_TTL_S`](crate::domain::ACCESS_TTL_S)).

use serde_json::{Value, json};
use shopstream_dsar::{Document, Erasure, Error, Export, Participant, StoreCount, Subject};
use shopstream_platform::cache::ConnectionManager;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::domain::REFRESH_TTL_S;

/// The account: e-mail, roles, created at (the password only as "(set)").
pub const USERS: &str = "identity.users";
/// Sessions: one family per login, rotated on every refresh.
pub const REFRESH_FAMILIES: &str = "identity.refresh_families";
/// The refresh tokens of those sessions (their hashes are never exported).
pub const REFRESH_TOKENS: &str = "identity.refresh_tokens";
/// Login attempts per e-mail and client IP in the current window (Redis).
pub const LOGIN_ATTEMPTS: &str = "identity.login_attempts";

/// Keys per Redis `SCAN` call.
const SCAN_COUNT: usize = 1000;

/// The DSAR participant over identity's Postgres database and, when given
/// ([`IdentityParticipant::with_login_counters`]), the login limiter's Redis.
#[derive(Clone)]
pub struct IdentityParticipant {
    pool: PgPool,
    login: Option<(ConnectionManager, String)>,
}

impl std::fmt::Debug for IdentityParticipant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityParticipant")
            .field("login_prefix", &self.login.as_ref().map(|(_, p)| p))
            .finish()
    }
}

impl IdentityParticipant {
    pub fn new(pool: PgPool) -> IdentityParticipant {
        IdentityParticipant { pool, login: None }
    }

    /// Also cover the login limiter's counters under `prefix` (the
    /// `RedisRateLimiter`'s prefix), keyed `{prefix}:{tenant}:{email}:{ip}`
    /// as `Identity::login` counts them.
    pub fn with_login_counters(mut self, redis: ConnectionManager, prefix: &str) -> Self {
        self.login = Some((redis, prefix.to_string()));
        self
    }

    /// The subject's login counters, (e-mail, key): those of its e-mail
    /// addresses and of `more` (the addresses of its accounts).
    async fn login_keys(
        &self,
        s: &Subject,
        more: &[String],
    ) -> Result<Vec<(String, String)>, Error> {
        let Some((redis, prefix)) = &self.login else {
            return Ok(Vec::new());
        };
        let mut c = redis.clone();
        let mut emails: Vec<&String> = s.emails.iter().chain(more).collect();
        emails.sort();
        emails.dedup();
        let mut keys = Vec::new();
        for email in emails {
            let pattern = format!(
                "{}:{}:{}:*",
                glob_escape(prefix),
                glob_escape(&s.tenant),
                glob_escape(email)
            );
            let mut cursor: u64 = 0;
            loop {
                let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(SCAN_COUNT)
                    .query_async(&mut c)
                    .await
                    .map_err(|e| Error::store("redis", e))?;
                keys.extend(batch.into_iter().map(|k| (email.clone(), k)));
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    /// The counters of `keys`: e-mail, client IP, attempts and seconds left
    /// in the window; keys that expired meanwhile are skipped.
    async fn export_login(
        &self,
        s: &Subject,
        keys: &[(String, String)],
    ) -> Result<Vec<Value>, Error> {
        let Some((redis, prefix)) = &self.login else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(keys.len());
        let mut c = redis.clone();
        for (email, key) in keys {
            let (attempts, ttl_s): (Option<u64>, i64) = redis::pipe()
                .get(key)
                .ttl(key)
                .query_async(&mut c)
                .await
                .map_err(|e| Error::store("redis", e))?;
            let Some(attempts) = attempts else { continue };
            let client_ip = key
                .strip_prefix(&format!("{prefix}:{}:{email}:", s.tenant))
                .unwrap_or_default();
            out.push(json!({
                "email": email,
                "client_ip": client_ip,
                "attempts": attempts,
                "expires_in_s": ttl_s.max(0),
            }));
        }
        Ok(out)
    }

    async fn delete_login(&self, keys: &[(String, String)]) -> Result<u64, Error> {
        let Some((redis, _)) = &self.login else {
            return Ok(0);
        };
        if keys.is_empty() {
            return Ok(0);
        }
        let keys: Vec<&str> = keys.iter().map(|(_, k)| k.as_str()).collect();
        let mut c = redis.clone();
        redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut c)
            .await
            .map_err(|e| Error::store("redis", e))
    }
}

/// `s` matched literally by a Redis glob pattern.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if matches!(ch, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// E-mail addresses of the accounts `users`.
async fn emails_of(
    db: &mut PgConnection,
    tenant: &str,
    users: &[Uuid],
) -> Result<Vec<String>, Error> {
    Ok(
        sqlx::query_scalar("SELECT email FROM users WHERE tenant_id = $1 AND id = ANY($2)")
            .bind(tenant)
            .bind(users)
            .fetch_all(&mut *db)
            .await?,
    )
}

/// The ids of the subject's accounts: its own id (whether or not an account
/// has it) and the id of every account with one of its e-mail addresses.
/// `lock` takes the rows for an erase.
async fn user_ids(db: &mut PgConnection, s: &Subject, lock: bool) -> Result<Vec<Uuid>, Error> {
    let sql = format!(
        "SELECT id FROM users WHERE tenant_id = $1 AND (id = $2 OR email = ANY($3)){}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let mut ids: Vec<Uuid> = sqlx::query_scalar(&sql)
        .bind(&s.tenant)
        .bind(s.user_id)
        .bind(&s.emails)
        .fetch_all(&mut *db)
        .await?;
    if !ids.contains(&s.user_id) {
        ids.push(s.user_id);
    }
    Ok(ids)
}

/// Family ids of `users`.
async fn family_ids(
    db: &mut PgConnection,
    tenant: &str,
    users: &[Uuid],
) -> Result<Vec<Uuid>, Error> {
    Ok(sqlx::query_scalar(
        "SELECT family_id FROM refresh_families WHERE tenant_id = $1 AND user_id = ANY($2)",
    )
    .bind(tenant)
    .bind(users)
    .fetch_all(&mut *db)
    .await?)
}

/// When a token was issued: tokens store only their expiry, `REFRESH_TTL_S`
/// after issue.
fn issued_at_ms(expires_at_ms: i64) -> i64 {
    expires_at_ms.saturating_sub(REFRESH_TTL_S * 1000)
}

async fn export_users(
    db: &mut PgConnection,
    tenant: &str,
    users: &[Uuid],
) -> Result<Vec<Value>, Error> {
    let rows = sqlx::query(
        "SELECT id, email, roles, created_at_ms FROM users
          WHERE tenant_id = $1 AND id = ANY($2) ORDER BY created_at_ms",
    )
    .bind(tenant)
    .bind(users)
    .fetch_all(&mut *db)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let id: Uuid = r.try_get("id")?;
        let email: String = r.try_get("email")?;
        let roles: Vec<String> = r.try_get("roles")?;
        let created_at_ms: i64 = r.try_get("created_at_ms")?;
        out.push(json!({
            "user_id": id,
            "email": email,
            "roles": roles,
            "created_at_ms": created_at_ms,
            // A credential, not information about the person: only that it exists.
            "password": "(set)",
        }));
    }
    Ok(out)
}

async fn export_families(
    db: &mut PgConnection,
    tenant: &str,
    users: &[Uuid],
) -> Result<Vec<Value>, Error> {
    let rows = sqlx::query(
        "SELECT f.family_id, f.user_id, f.revoked_at_ms, f.revoked_reason,
                min(t.expires_at_ms) AS first_expiry, max(t.expires_at_ms) AS last_expiry,
                count(t.token_hash) AS tokens
           FROM refresh_families f
           LEFT JOIN refresh_tokens t USING (tenant_id, family_id)
          WHERE f.tenant_id = $1 AND f.user_id = ANY($2)
          GROUP BY f.tenant_id, f.family_id
          ORDER BY first_expiry NULLS LAST, f.family_id",
    )
    .bind(tenant)
    .bind(users)
    .fetch_all(&mut *db)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let family_id: Uuid = r.try_get("family_id")?;
        let user_id: Uuid = r.try_get("user_id")?;
        let revoked_at_ms: Option<i64> = r.try_get("revoked_at_ms")?;
        let revoked_reason: Option<String> = r.try_get("revoked_reason")?;
        let first: Option<i64> = r.try_get("first_expiry")?;
        let last: Option<i64> = r.try_get("last_expiry")?;
        let tokens: i64 = r.try_get("tokens")?;
        out.push(json!({
            "family_id": family_id,
            "user_id": user_id,
            // The login that opened the session, and the last login or
            // refresh (both from the tokens' expiry).
            "created_at_ms": first.map(issued_at_ms),
            "last_used_at_ms": last.map(issued_at_ms),
            "revoked_at_ms": revoked_at_ms,
            "revoked_reason": revoked_reason,
            "refresh_tokens": tokens,
        }));
    }
    Ok(out)
}

async fn export_tokens(
    db: &mut PgConnection,
    tenant: &str,
    families: &[Uuid],
) -> Result<Vec<Value>, Error> {
    let rows = sqlx::query(
        "SELECT family_id, user_id, expires_at_ms, consumed_at_ms FROM refresh_tokens
          WHERE tenant_id = $1 AND family_id = ANY($2)
          ORDER BY expires_at_ms, family_id",
    )
    .bind(tenant)
    .bind(families)
    .fetch_all(&mut *db)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let family_id: Uuid = r.try_get("family_id")?;
        let user_id: Uuid = r.try_get("user_id")?;
        let expires_at_ms: i64 = r.try_get("expires_at_ms")?;
        let consumed_at_ms: Option<i64> = r.try_get("consumed_at_ms")?;
        out.push(json!({
            "family_id": family_id,
            "user_id": user_id,
            "issued_at_ms": issued_at_ms(expires_at_ms),
            "expires_at_ms": expires_at_ms,
            "used_at_ms": consumed_at_ms,
        }));
    }
    Ok(out)
}

/// Rows of each store (users, families, tokens), and the accounts' e-mail
/// addresses.
async fn counts(db: &mut PgConnection, s: &Subject) -> Result<(u64, u64, u64, Vec<String>), Error> {
    let users = user_ids(db, s, false).await?;
    let emails = emails_of(db, &s.tenant, &users).await?;
    let row = sqlx::query(
        "SELECT (SELECT count(*) FROM users WHERE tenant_id = $1 AND id = ANY($2)) AS users,
                (SELECT count(*) FROM refresh_families
                  WHERE tenant_id = $1 AND user_id = ANY($2)) AS families,
                (SELECT count(*) FROM refresh_tokens t
                   JOIN refresh_families f USING (tenant_id, family_id)
                  WHERE f.tenant_id = $1 AND f.user_id = ANY($2)) AS tokens",
    )
    .bind(&s.tenant)
    .bind(&users)
    .fetch_one(&mut *db)
    .await?;
    let n = |c: &str| -> Result<u64, Error> { Ok(row.try_get::<i64, _>(c)?.max(0) as u64) };
    Ok((n("users")?, n("families")?, n("tokens")?, emails))
}

#[async_trait::async_trait]
impl Participant for IdentityParticipant {
    fn name(&self) -> &'static str {
        "identity"
    }

    async fn export(&self, s: &Subject) -> Result<Export, Error> {
        // One snapshot for the three stores.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await?;
        let users = user_ids(&mut tx, s, false).await?;
        let families = family_ids(&mut tx, &s.tenant, &users).await?;
        let profile = export_users(&mut tx, &s.tenant, &users).await?;
        let sessions = export_families(&mut tx, &s.tenant, &users).await?;
        let tokens = export_tokens(&mut tx, &s.tenant, &families).await?;
        let emails = emails_of(&mut tx, &s.tenant, &users).await?;
        tx.commit().await?;
        let mut export = Export {
            counts: vec![
                StoreCount::new(USERS, profile.len() as u64, ""),
                StoreCount::new(REFRESH_FAMILIES, sessions.len() as u64, ""),
                StoreCount::new(REFRESH_TOKENS, tokens.len() as u64, ""),
            ],
            documents: vec![
                Document {
                    store: USERS.into(),
                    json: json!({ "users": profile }),
                },
                Document {
                    store: REFRESH_FAMILIES.into(),
                    json: json!({ "sessions": sessions }),
                },
                Document {
                    store: REFRESH_TOKENS.into(),
                    json: json!({ "refresh_tokens": tokens }),
                },
            ],
            objects: Vec::new(),
        };
        if self.login.is_some() {
            let keys = self.login_keys(s, &emails).await?;
            let attempts = self.export_login(s, &keys).await?;
            export
                .counts
                .push(StoreCount::new(LOGIN_ATTEMPTS, attempts.len() as u64, ""));
            export.documents.push(Document {
                store: LOGIN_ATTEMPTS.into(),
                json: json!({ "login_attempts": attempts }),
            });
        }
        Ok(export)
    }

    async fn erase(&self, s: &Subject) -> Result<Erasure, Error> {
        let mut tx = self.pool.begin().await?;
        let users = user_ids(&mut tx, s, true).await?;
        let emails = emails_of(&mut tx, &s.tenant, &users).await?;
        // Tokens first: they reference their family.
        let tokens = sqlx::query(
            "DELETE FROM refresh_tokens t USING refresh_families f
              WHERE t.tenant_id = f.tenant_id AND t.family_id = f.family_id
                AND f.tenant_id = $1 AND f.user_id = ANY($2)",
        )
        .bind(&s.tenant)
        .bind(&users)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let families =
            sqlx::query("DELETE FROM refresh_families WHERE tenant_id = $1 AND user_id = ANY($2)")
                .bind(&s.tenant)
                .bind(&users)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        let accounts = sqlx::query("DELETE FROM users WHERE tenant_id = $1 AND id = ANY($2)")
            .bind(&s.tenant)
            .bind(&users)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        // Before the commit: if Redis fails, nothing is erased and the
        // caller's retry finds the accounts (and their addresses) again.
        let counters = self
            .delete_login(&self.login_keys(s, &emails).await?)
            .await?;
        tx.commit().await?;
        let mut counts = vec![
            StoreCount::new(USERS, accounts, "deleted"),
            StoreCount::new(REFRESH_FAMILIES, families, "deleted"),
            StoreCount::new(REFRESH_TOKENS, tokens, "deleted"),
        ];
        if self.login.is_some() {
            counts.push(StoreCount::new(LOGIN_ATTEMPTS, counters, "deleted"));
        }
        Ok(Erasure {
            counts,
            retained: Vec::new(),
        })
    }

    async fn scan(&self, s: &Subject) -> Result<Vec<StoreCount>, Error> {
        let mut db = self.pool.acquire().await?;
        let (users, families, tokens, emails) = counts(&mut db, s).await?;
        let mut out = vec![
            StoreCount::new(USERS, users, ""),
            StoreCount::new(REFRESH_FAMILIES, families, ""),
            StoreCount::new(REFRESH_TOKENS, tokens, ""),
        ];
        if self.login.is_some() {
            let keys = self.login_keys(s, &emails).await?;
            out.push(StoreCount::new(LOGIN_ATTEMPTS, keys.len() as u64, ""));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_metacharacters_in_an_address_match_only_themselves() {
        assert_eq!(glob_escape("a*b?[c]\\d@x.io"), "a\\*b\\?\\[c\\]\\\\d@x.io");
        assert_eq!(glob_escape("ada@example.com"), "ada@example.com");
    }

    #[test]
    fn a_token_was_issued_one_refresh_lifetime_before_it_expires() {
        assert_eq!(issued_at_ms(REFRESH_TTL_S * 1000 + 5), 5);
    }
}
