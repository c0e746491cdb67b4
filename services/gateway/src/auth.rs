//! Access-token checks at the edge: tokens are verified locally with the
//! identity service's public key (fetched once from its JWKS), never by a
//! call per request, at the time the state's `Clock` reads.

use std::time::{Duration, Instant};

use axum::{extract::FromRequestParts, http::request::Parts};
use shopstream_platform::{
    ErrorCode, Problem,
    auth::{Claims, Verifier, access_token},
};

use crate::{AppState, suppression::Verified};

/// Fetch identity's JWKS, retrying until `deadline` (identity may still be starting).
pub async fn load_verifier(identity_http: &str, deadline: Duration) -> anyhow::Result<Verifier> {
    let url = format!("{identity_http}/.well-known/jwks.json");
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        let attempt = async {
            let resp = client
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await?
                .error_for_status()?;
            anyhow::Ok(resp.json::<serde_json::Value>().await?)
        };
        match attempt.await {
            Ok(jwks) => return Ok(Verifier::from_jwks(&jwks)?),
            Err(e) if started.elapsed() < deadline => {
                tracing::info!(error = %e, %url, "waiting for identity's JWKS");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => anyhow::bail!("could not fetch {url} within {deadline:?}: {e}"),
        }
    }
}

/// The caller, if a valid access token came with the request. A token that is
/// present but invalid is an error (401), not an anonymous caller.
#[derive(Debug, Clone)]
pub struct MaybeUser(pub Option<Claims>);

impl FromRequestParts<AppState> for MaybeUser {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        // Checked once already on the way in (see `suppression::freeze`).
        if let Some(Verified(c)) = parts.extensions.get::<Verified>() {
            shopstream_platform::http::record_tenant(&c.tid);
            return Ok(MaybeUser(Some(c.clone())));
        }
        match access_token(&parts.headers) {
            None => Ok(MaybeUser(None)),
            Some(t) => state
                .verifier
                .verify(&t, state.clock.now_ms())
                .map(|c| {
                    // Every log line of this request now names the caller's tenant.
                    shopstream_platform::http::record_tenant(&c.tid);
                    MaybeUser(Some(c))
                })
                .map_err(|e| Problem::new(ErrorCode::Unauthenticated, e.to_string())),
        }
    }
}

/// A caller with the admin role: 401 without a valid token, 403 without the role.
#[derive(Debug, Clone)]
pub struct Admin(pub Claims);

impl FromRequestParts<AppState> for Admin {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let User(c) = User::from_request_parts(parts, state).await?;
        if c.admin {
            Ok(Admin(c))
        } else {
            Err(Problem::new(
                ErrorCode::PermissionDenied,
                "this route needs the admin role",
            ))
        }
    }
}

/// A signed-in caller: 401 without a valid token.
#[derive(Debug, Clone)]
pub struct User(pub Claims);

impl FromRequestParts<AppState> for User {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        match MaybeUser::from_request_parts(parts, state).await? {
            MaybeUser(Some(c)) => Ok(User(c)),
            MaybeUser(None) => Err(Problem::new(
                ErrorCode::Unauthenticated,
                "this route needs an access token (Authorization: Bearer ...)",
            )),
        }
    }
}
