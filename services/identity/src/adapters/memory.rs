//! In-memory identity stores for unit tests and the simulator; they pass the
//! same `contract` as the Postgres adapter. [`MemoryRateLimiter`] passes the
//! rate-limiter contract the Redis limiter passes, on an injected clock.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use shopstream_platform::clock::Clock;
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
}

/// All identity stores in one in-memory value. Clones share state.
#[derive(Debug, Clone, Default)]
pub struct MemoryIdentity {
    state: Arc<Mutex<State>>,
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

/// Fixed-window attempt counting in memory, on the injected clock (as
/// `RedisRateLimiter` does in Redis, on Redis' clock). Clones share state.
#[derive(Clone)]
pub struct MemoryRateLimiter {
    limit: u32,
    window_ms: i64,
    clock: Arc<dyn Clock>,
    /// Per key: when its window started and the attempts counted in it.
    windows: Arc<Mutex<BTreeMap<String, (i64, u64)>>>,
}

impl std::fmt::Debug for MemoryRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryRateLimiter")
            .field("limit", &self.limit)
            .field("window_ms", &self.window_ms)
            .finish_non_exhaustive()
    }
}

impl MemoryRateLimiter {
    /// `limit` attempts per key per `window_s` seconds (at least 1 s).
    pub fn new(limit: u32, window_s: u64, clock: Arc<dyn Clock>) -> MemoryRateLimiter {
        MemoryRateLimiter {
            limit,
            window_ms: i64::try_from(window_s.max(1).saturating_mul(1000)).unwrap_or(i64::MAX),
            clock,
            windows: Arc::default(),
        }
    }
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn hit(&self, key: &str) -> Result<Result<(), u64>, RepoError> {
        let now = self.clock.now_ms();
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        // Windows that have ended are forgotten, so the map stays bounded by
        // the keys seen within one window.
        windows.retain(|_, (start, _)| now < start.saturating_add(self.window_ms));
        let (start, count) = windows.entry(key.to_string()).or_insert((now, 0));
        *count += 1;
        Ok(if *count > u64::from(self.limit) {
            // > 0: windows that ended were dropped above.
            let left_ms = u64::try_from(start.saturating_add(self.window_ms) - now).unwrap_or(1);
            // Whole seconds, rounded up: never "retry in 0 s" while refused.
            Err(left_ms.div_ceil(1000).max(1))
        } else {
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use shopstream_platform::clock::ManualClock;

    #[tokio::test]
    async fn memory_adapter_passes_the_contract() {
        let m = super::MemoryIdentity::default();
        super::super::contract::users(&m).await;
        super::super::contract::refresh_tokens(&m).await;
    }

    #[tokio::test]
    async fn memory_rate_limiter_passes_the_contract() {
        let clock = ManualClock::new(1_700_000_000_000);
        let c = clock.clone();
        super::super::contract::rate_limiter(
            |limit, window_s| super::MemoryRateLimiter::new(limit, window_s, Arc::new(c.clone())),
            |d: Duration| {
                clock.advance_ms(i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
                std::future::ready(())
            },
        )
        .await;
    }
}
