//! Fixed-window attempt counting in Redis: `INCR` + `EXPIRE NX` (the window
//! starts at the first hit and refusals do not extend it); over the limit,
//! the key's remaining TTL is the `Retry-After`. Passes
//! `adapters::contract::rate_limiter`.

use async_trait::async_trait;
use shopstream_platform::cache::ConnectionManager;

use crate::ports::{RateLimiter, RepoError};

#[derive(Clone)]
pub struct RedisRateLimiter {
    conn: ConnectionManager,
    prefix: String,
    pub limit: u32,
    pub window_s: u64,
}

impl std::fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("limit", &self.limit)
            .field("window_s", &self.window_s)
            .finish()
    }
}

impl RedisRateLimiter {
    /// `limit` attempts per key per `window_s` seconds (at least 1 s: Redis
    /// deletes a key whose expiry is 0).
    pub fn new(conn: ConnectionManager, prefix: &str, limit: u32, window_s: u64) -> Self {
        RedisRateLimiter {
            conn,
            prefix: prefix.to_string(),
            limit,
            window_s: window_s.max(1),
        }
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn hit(&self, key: &str) -> Result<Result<(), u64>, RepoError> {
        let k = format!("{}:{key}", self.prefix);
        let mut c = self.conn.clone();
        let (n, ttl): (u64, i64) = redis::pipe()
            .atomic()
            .incr(&k, 1)
            .cmd("EXPIRE")
            .arg(&k)
            .arg(self.window_s)
            .arg("NX")
            .ignore()
            .ttl(&k)
            .query_async(&mut c)
            .await
            .map_err(|e| RepoError::Storage(e.to_string()))?;
        Ok(if n > u64::from(self.limit) {
            Err(ttl.max(1) as u64)
        } else {
            Ok(())
        })
    }
}
