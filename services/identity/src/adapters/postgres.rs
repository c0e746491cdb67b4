//! Users and refresh-token families in identity's own Postgres database.

use async_trait::async_trait;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::{
    domain::{Email, RefreshUse, Role, User},
    ports::{NewRefreshToken, RefreshTokenStore, RepoError, UserRepository},
};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

fn storage(e: sqlx::Error) -> RepoError {
    RepoError::Storage(e.to_string())
}

#[derive(Debug, Clone)]
pub struct PgIdentity {
    pool: PgPool,
}

impl PgIdentity {
    pub fn new(pool: PgPool) -> PgIdentity {
        PgIdentity { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

fn user_from_row(row: &sqlx::postgres::PgRow) -> Result<User, RepoError> {
    let email: String = row.try_get("email").map_err(storage)?;
    let roles: Vec<String> = row.try_get("roles").map_err(storage)?;
    Ok(User {
        id: row.try_get("id").map_err(storage)?,
        tenant_id: row.try_get("tenant_id").map_err(storage)?,
        email: Email::parse(&email).map_err(|e| RepoError::Storage(e.message))?,
        password_hash: row.try_get("password_hash").map_err(storage)?,
        roles: roles.iter().filter_map(|r| Role::parse(r)).collect(),
        created_at_ms: row.try_get("created_at_ms").map_err(storage)?,
    })
}

#[async_trait]
impl UserRepository for PgIdentity {
    async fn create(&self, u: &User) -> Result<(), RepoError> {
        let roles: Vec<&str> = u.roles.iter().map(|r| r.as_str()).collect();
        let res = sqlx::query(
            "INSERT INTO users (tenant_id, id, email, password_hash, roles, created_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&u.tenant_id)
        .bind(u.id)
        .bind(u.email.as_str())
        .bind(&u.password_hash)
        .bind(&roles)
        .bind(u.created_at_ms)
        .execute(&self.pool)
        .await;
        match res {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(RepoError::Duplicate),
            Err(e) => Err(storage(e)),
        }
    }

    async fn by_email(&self, tenant: &str, email: &Email) -> Result<Option<User>, RepoError> {
        sqlx::query("SELECT * FROM users WHERE tenant_id = $1 AND email = $2")
            .bind(tenant)
            .bind(email.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(storage)?
            .map(|r| user_from_row(&r))
            .transpose()
    }

    async fn by_id(&self, tenant: &str, id: Uuid) -> Result<Option<User>, RepoError> {
        sqlx::query("SELECT * FROM users WHERE tenant_id = $1 AND id = $2")
            .bind(tenant)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(storage)?
            .map(|r| user_from_row(&r))
            .transpose()
    }

    async fn grant(&self, tenant: &str, id: Uuid, role: Role) -> Result<(), RepoError> {
        sqlx::query(
            "UPDATE users SET roles = array_append(roles, $3)
             WHERE tenant_id = $1 AND id = $2 AND NOT ($3 = ANY(roles))",
        )
        .bind(tenant)
        .bind(id)
        .bind(role.as_str())
        .execute(&self.pool)
        .await
        .map_err(storage)?;
        Ok(())
    }
}

#[async_trait]
impl RefreshTokenStore for PgIdentity {
    async fn issue(&self, t: &NewRefreshToken) -> Result<(), RepoError> {
        let mut tx = self.pool.begin().await.map_err(storage)?;
        sqlx::query(
            "INSERT INTO refresh_families (tenant_id, family_id, user_id) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(&t.tenant_id)
        .bind(t.family_id)
        .bind(t.user_id)
        .execute(&mut *tx)
        .await
        .map_err(storage)?;
        sqlx::query(
            "INSERT INTO refresh_tokens (tenant_id, token_hash, family_id, user_id, expires_at_ms)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&t.tenant_id)
        .bind(&t.token_hash)
        .bind(t.family_id)
        .bind(t.user_id)
        .bind(t.expires_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(storage)?;
        tx.commit().await.map_err(storage)
    }

    async fn consume(
        &self,
        tenant: &str,
        token_hash: &[u8],
        now_ms: i64,
    ) -> Result<RefreshUse, RepoError> {
        let mut tx = self.pool.begin().await.map_err(storage)?;
        // Lock the token row: concurrent consumers of one token serialise here.
        let row = sqlx::query(
            "SELECT t.family_id, t.user_id, t.expires_at_ms, t.consumed_at_ms, f.revoked_at_ms
             FROM refresh_tokens t
             JOIN refresh_families f USING (tenant_id, family_id)
             WHERE t.tenant_id = $1 AND t.token_hash = $2
             FOR UPDATE OF t, f",
        )
        .bind(tenant)
        .bind(token_hash)
        .fetch_optional(&mut *tx)
        .await
        .map_err(storage)?;
        let Some(row) = row else {
            return Ok(RefreshUse::Unknown);
        };
        let family_id: Uuid = row.get("family_id");
        let user_id: Uuid = row.get("user_id");
        let expires: i64 = row.get("expires_at_ms");
        let consumed: Option<i64> = row.get("consumed_at_ms");
        let revoked: Option<i64> = row.get("revoked_at_ms");
        let outcome = if revoked.is_some() {
            RefreshUse::Revoked
        } else if consumed.is_some() {
            sqlx::query(
                "UPDATE refresh_families SET revoked_at_ms = $3, revoked_reason = 'reuse'
                 WHERE tenant_id = $1 AND family_id = $2",
            )
            .bind(tenant)
            .bind(family_id)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(storage)?;
            RefreshUse::Reused { user_id, family_id }
        } else if now_ms >= expires {
            RefreshUse::Expired
        } else {
            sqlx::query(
                "UPDATE refresh_tokens SET consumed_at_ms = $3 WHERE tenant_id = $1 AND token_hash = $2",
            )
            .bind(tenant)
            .bind(token_hash)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(storage)?;
            RefreshUse::Rotate { user_id, family_id }
        };
        tx.commit().await.map_err(storage)?;
        Ok(outcome)
    }

    async fn revoke_family(&self, tenant: &str, family_id: Uuid) -> Result<(), RepoError> {
        sqlx::query(
            "UPDATE refresh_families SET revoked_at_ms = COALESCE(revoked_at_ms, (extract(epoch from now()) * 1000)::bigint),
                 revoked_reason = COALESCE(revoked_reason, 'logout')
             WHERE tenant_id = $1 AND family_id = $2",
        )
        .bind(tenant)
        .bind(family_id)
        .execute(&self.pool)
        .await
        .map_err(storage)?;
        Ok(())
    }

    async fn family_of(&self, tenant: &str, token_hash: &[u8]) -> Result<Option<Uuid>, RepoError> {
        sqlx::query_scalar(
            "SELECT family_id FROM refresh_tokens WHERE tenant_id = $1 AND token_hash = $2",
        )
        .bind(tenant)
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage)
    }
}
