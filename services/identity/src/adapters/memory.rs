//! In-memory identity stores for unit tests and the simulator; they pass the
//! same `contract` as the Postgres adapter.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use uuid::Uuid;

use crate::{
    domain::{Email, RefreshUse, Role, User},
    ports::{NewRefreshToken, RateLimiter, RefreshTokenStore, RepoError, UserRepository},
};

#[derive(Debug, Default)]
struct Token {
    family_id: Uuid,
    user_id: Uuid,
    expires_at_ms: i64,
    consumed: bool,
}

#[derive(Debug, Default)]
struct State {
    users: BTreeMap<(String, Uuid), User>,
    tokens: BTreeMap<(String, Vec<u8>), Token>,
    revoked_families: BTreeMap<(String, Uuid), ()>,
    hits: BTreeMap<String, u32>,
}

/// All identity stores in one in-memory value. Clones share state.
#[derive(Debug, Clone, Default)]
pub struct MemoryIdentity {
    state: Arc<Mutex<State>>,
    /// Attempts allowed per key by the in-memory rate limiter (0 = unlimited).
    pub rate_limit: u32,
}

impl MemoryIdentity {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl UserRepository for MemoryIdentity {
    async fn create(&self, user: &User) -> Result<(), RepoError> {
        let mut st = self.lock();
        if st
            .users
            .values()
            .any(|u| u.tenant_id == user.tenant_id && u.email == user.email)
        {
            return Err(RepoError::Duplicate);
        }
        st.users
            .insert((user.tenant_id.clone(), user.id), user.clone());
        Ok(())
    }

    async fn by_email(&self, tenant: &str, email: &Email) -> Result<Option<User>, RepoError> {
        Ok(self
            .lock()
            .users
            .values()
            .find(|u| u.tenant_id == tenant && &u.email == email)
            .cloned())
    }

    async fn by_id(&self, tenant: &str, id: Uuid) -> Result<Option<User>, RepoError> {
        Ok(self.lock().users.get(&(tenant.to_string(), id)).cloned())
    }

    async fn grant(&self, tenant: &str, id: Uuid, role: Role) -> Result<(), RepoError> {
        if let Some(u) = self.lock().users.get_mut(&(tenant.to_string(), id))
            && !u.roles.contains(&role)
        {
            u.roles.push(role);
        }
        Ok(())
    }
}

#[async_trait]
impl RefreshTokenStore for MemoryIdentity {
    async fn issue(&self, t: &NewRefreshToken) -> Result<(), RepoError> {
        self.lock().tokens.insert(
            (t.tenant_id.clone(), t.token_hash.clone()),
            Token {
                family_id: t.family_id,
                user_id: t.user_id,
                expires_at_ms: t.expires_at_ms,
                consumed: false,
            },
        );
        Ok(())
    }

    async fn consume(
        &self,
        tenant: &str,
        token_hash: &[u8],
        now_ms: i64,
    ) -> Result<RefreshUse, RepoError> {
        let mut st = self.lock();
        let key = (tenant.to_string(), token_hash.to_vec());
        let Some(t) = st.tokens.get(&key) else {
            return Ok(RefreshUse::Unknown);
        };
        let (family_id, user_id) = (t.family_id, t.user_id);
        let fam = (tenant.to_string(), family_id);
        if st.revoked_families.contains_key(&fam) {
            return Ok(RefreshUse::Revoked);
        }
        if t.consumed {
            st.revoked_families.insert(fam, ());
            return Ok(RefreshUse::Reused { user_id, family_id });
        }
        if now_ms >= t.expires_at_ms {
            return Ok(RefreshUse::Expired);
        }
        if let Some(t) = st.tokens.get_mut(&key) {
            t.consumed = true;
        }
        Ok(RefreshUse::Rotate { user_id, family_id })
    }

    async fn revoke_family(&self, tenant: &str, family_id: Uuid) -> Result<(), RepoError> {
        self.lock()
            .revoked_families
            .insert((tenant.to_string(), family_id), ());
        Ok(())
    }

    async fn family_of(&self, tenant: &str, token_hash: &[u8]) -> Result<Option<Uuid>, RepoError> {
        Ok(self
            .lock()
            .tokens
            .get(&(tenant.to_string(), token_hash.to_vec()))
            .map(|t| t.family_id))
    }
}

#[async_trait]
impl RateLimiter for MemoryIdentity {
    async fn hit(&self, key: &str) -> Result<Result<(), u64>, RepoError> {
        let mut st = self.lock();
        let n = st.hits.entry(key.to_string()).or_insert(0);
        *n += 1;
        Ok(if self.rate_limit > 0 && *n > self.rate_limit {
            Err(60)
        } else {
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn memory_adapter_passes_the_contract() {
        let m = super::MemoryIdentity::default();
        super::super::contract::users(&m).await;
        super::super::contract::refresh_tokens(&m).await;
    }
}
