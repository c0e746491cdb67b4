//! DSAR suppression at the edge: an account that is being erased, or was
//! erased, is refused on every authenticated request (403), before its
//! handler runs, so nothing new is written about the person while the
//! erasure runs or after it.
//!
//! The list is the Redis set [`blocked_key`] of each tenant, holding user
//! ids. The compliance service adds a user (`SADD dsar:blocked:{tenant}
//! <user_id>`) when an erasure starts and never removes it: an erased
//! account stays suppressed (its access tokens live on until they expire;
//! identity has deleted the account, so no new ones are issued). The gateway
//! only reads it, with one `SISMEMBER` per authenticated request and no
//! cache, so a block takes effect on the next request. If Redis does not
//! answer, the request goes through (logged at debug): the gateway does not
//! go down with Redis, and a blocked account can do little then anyway (its
//! data is gone from the services).
//!
//! A request is authenticated when it carries a valid access token: in the
//! `Authorization` header, the access cookie, or (WebSocket upgrades) a
//! `bearer.<token>` subprotocol. A request without one, or with an invalid
//! one, passes untouched (its handler answers 401 where it needs a caller).
//! Live connections opened before the block stay open until their token
//! expires.

use std::time::Duration;

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use shopstream_platform::{
    ErrorCode, Problem,
    auth::{Claims, access_token},
    cache::ConnectionManager,
};

use crate::AppState;

/// Bound on the membership check: past it, the request goes through.
pub const CHECK_TIMEOUT: Duration = Duration::from_millis(500);

/// The detail of the 403.
pub const BLOCKED_DETAIL: &str = "this account is being erased or was erased (DSAR); \
     it can no longer be used. Write to support if you think this is a mistake";

/// The 403 every route documents (`Conventions` adds it).
pub const DOC_403: &str = "the access token's account is being erased or was erased (DSAR)";

/// The Redis set of a tenant's frozen and erased users (one place defines it).
pub use shopstream_dsar::blocked_key;

/// The claims of the request's access token (header or cookie), checked
/// once by [`freeze`]; the auth extractors take them from here.
#[derive(Debug, Clone)]
pub struct Verified(pub Claims);

/// What the suppression list says of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Blocked,
    Allowed,
    /// Redis did not answer (in time).
    Unknown,
}

/// Whether `user_id` of `tenant` is on the suppression list.
pub async fn status(redis: &ConnectionManager, tenant: &str, user_id: &str) -> Status {
    let mut r = redis.clone();
    let mut cmd = redis::cmd("SISMEMBER");
    cmd.arg(blocked_key(tenant)).arg(user_id);
    let check = cmd.query_async::<bool>(&mut r);
    match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(Ok(true)) => Status::Blocked,
        Ok(Ok(false)) => Status::Allowed,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "DSAR suppression check failed; letting the request through");
            Status::Unknown
        }
        Err(_) => {
            tracing::debug!(
                timeout = ?CHECK_TIMEOUT,
                "DSAR suppression check timed out; letting the request through"
            );
            Status::Unknown
        }
    }
}

/// Middleware: 403 for an authenticated request of a suppressed account.
pub async fn freeze(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let in_headers = access_token(req.headers()).is_some();
    let Some(token) = crate::realtime::ws_token(req.headers()) else {
        return next.run(req).await;
    };
    let Ok(claims) = state.verifier.verify(&token, state.clock.now_ms()) else {
        return next.run(req).await;
    };
    if status(&state.redis, &claims.tid, &claims.sub).await == Status::Blocked {
        shopstream_platform::http::record_tenant(&claims.tid);
        tracing::info!(tenant = %claims.tid, "request of a DSAR-suppressed account refused");
        return Problem::new(ErrorCode::PermissionDenied, BLOCKED_DETAIL).into_response();
    }
    if in_headers {
        req.extensions_mut().insert(Verified(claims));
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_per_tenant() {
        assert_eq!(blocked_key("acme"), "dsar:blocked:acme");
    }
}
