//! REST: `/auth/signup|login|refresh|logout`, `/me`, and the public key at
//! `/.well-known/jwks.json`. Browsers get HttpOnly cookies (the refresh
//! cookie only on `/auth`); scripts use the JSON body and `Authorization: Bearer`.

use std::net::SocketAddr;

use axum::{
    Json, Router,
    extract::{ConnectInfo, FromRequestParts, State},
    http::{HeaderMap, StatusCode, request::Parts},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use serde::{Deserialize, Serialize};
use shopstream_platform::{
    ErrorCode, Problem,
    auth::{ACCESS_COOKIE, REFRESH_COOKIE, access_token},
    http::ApiJson,
};

use crate::{
    domain::{Claims, User},
    service::{Identity, IdentityError, Session},
};

pub const TENANT_HEADER: &str = "x-tenant-id";

#[derive(Clone, Debug)]
pub struct HttpState {
    pub identity: Identity,
    pub default_tenant: String,
    pub cookie_secure: bool,
}

pub fn routes(state: HttpState) -> Router {
    Router::new()
        .route("/auth/signup", post(signup))
        .route("/auth/login", post(login))
        .route("/auth/refresh", post(refresh))
        .route("/auth/logout", post(logout))
        .route("/me", get(me))
        .route("/.well-known/jwks.json", get(jwks))
        .with_state(state)
}

impl From<IdentityError> for Problem {
    fn from(e: IdentityError) -> Problem {
        match e {
            IdentityError::Validation(fields) => {
                Problem::invalid("some fields are invalid", fields)
            }
            IdentityError::EmailTaken => Problem::new(ErrorCode::Conflict, e.to_string()),
            IdentityError::RateLimited(s) => {
                Problem::new(ErrorCode::RateLimited, e.to_string()).with_retry_after(s)
            }
            IdentityError::InvalidCredentials
            | IdentityError::InvalidRefresh(_)
            | IdentityError::RefreshReuse
            | IdentityError::Token(_) => Problem::new(ErrorCode::Unauthenticated, e.to_string()),
            IdentityError::NotFound => Problem::new(ErrorCode::NotFound, e.to_string()),
            IdentityError::Storage(detail) => {
                tracing::error!(%detail, "identity storage error");
                Problem::new(ErrorCode::Unavailable, "identity storage is unavailable")
            }
        }
    }
}

/// The caller's tenant: `x-tenant-id`, else the default tenant.
fn tenant(headers: &HeaderMap, state: &HttpState) -> String {
    headers
        .get(TENANT_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty())
        .unwrap_or(&state.default_tenant)
        .to_string()
}

/// The client address: first `X-Forwarded-For` hop (set by the gateway), else the peer.
pub struct ClientIp(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let forwarded = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string());
        Ok(ClientIp(
            forwarded.or(peer).unwrap_or_else(|| "unknown".into()),
        ))
    }
}

#[derive(Debug, Deserialize)]
pub struct Credentials {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct UserView {
    pub id: String,
    pub email: String,
    pub roles: Vec<String>,
    pub admin: bool,
    pub created_at_ms: i64,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        UserView {
            id: u.id.to_string(),
            email: u.email.as_str().to_string(),
            roles: u.roles.iter().map(|r| r.as_str().to_string()).collect(),
            admin: u.is_admin(),
            created_at_ms: u.created_at_ms,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SessionView {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: i64,
    pub refresh_token: String,
    pub user: UserView,
}

fn session_response(state: &HttpState, jar: CookieJar, s: Session) -> Response {
    let access = Cookie::build((ACCESS_COOKIE, s.access_token.clone()))
        .path("/")
        .http_only(true)
        .secure(state.cookie_secure)
        .same_site(SameSite::Lax)
        .max_age(time_s(s.access_expires_in_s))
        .build();
    let refresh = Cookie::build((REFRESH_COOKIE, s.refresh_token.clone()))
        .path("/auth")
        .http_only(true)
        .secure(state.cookie_secure)
        .same_site(SameSite::Strict)
        .max_age(time_s(s.refresh_expires_in_s))
        .build();
    let body = SessionView {
        access_token: s.access_token,
        token_type: "Bearer".into(),
        expires_in: s.access_expires_in_s,
        refresh_token: s.refresh_token,
        user: UserView::from(&s.user),
    };
    (jar.add(access).add(refresh), Json(body)).into_response()
}

fn time_s(s: i64) -> time::Duration {
    time::Duration::seconds(s)
}

async fn signup(
    State(state): State<HttpState>,
    headers: HeaderMap,
    ApiJson(c): ApiJson<Credentials>,
) -> Result<Response, Problem> {
    let user = state
        .identity
        .signup(&tenant(&headers, &state), &c.email, &c.password)
        .await?;
    Ok((StatusCode::CREATED, Json(UserView::from(&user))).into_response())
}

async fn login(
    State(state): State<HttpState>,
    headers: HeaderMap,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
    ApiJson(c): ApiJson<Credentials>,
) -> Result<Response, Problem> {
    let s = state
        .identity
        .login(&tenant(&headers, &state), &c.email, &c.password, &ip)
        .await?;
    Ok(session_response(&state, jar, s))
}

#[derive(Debug, Default, Deserialize)]
pub struct RefreshBody {
    pub refresh_token: Option<String>,
}

fn refresh_token_of(body: Option<RefreshBody>, jar: &CookieJar) -> Result<String, Problem> {
    body.and_then(|b| b.refresh_token)
        .or_else(|| jar.get(REFRESH_COOKIE).map(|c| c.value().to_string()))
        .ok_or_else(|| {
            Problem::new(
                ErrorCode::Unauthenticated,
                "no refresh token: send {\"refresh_token\": ...} or the ss_refresh cookie",
            )
        })
}

async fn refresh(
    State(state): State<HttpState>,
    headers: HeaderMap,
    jar: CookieJar,
    body: Option<Json<RefreshBody>>,
) -> Result<Response, Problem> {
    let token = refresh_token_of(body.map(|b| b.0), &jar)?;
    let s = state
        .identity
        .refresh(&tenant(&headers, &state), &token)
        .await?;
    Ok(session_response(&state, jar, s))
}

async fn logout(
    State(state): State<HttpState>,
    headers: HeaderMap,
    jar: CookieJar,
    body: Option<Json<RefreshBody>>,
) -> Result<Response, Problem> {
    let token = refresh_token_of(body.map(|b| b.0), &jar)?;
    state
        .identity
        .logout(&tenant(&headers, &state), &token)
        .await?;
    let jar = jar
        .remove(Cookie::build(ACCESS_COOKIE).path("/"))
        .remove(Cookie::build(REFRESH_COOKIE).path("/auth"));
    Ok((jar, StatusCode::NO_CONTENT).into_response())
}

/// Claims of the caller's access token (Bearer header or cookie).
pub fn authenticate(identity: &Identity, headers: &HeaderMap) -> Result<Claims, Problem> {
    let token = access_token(headers)
        .ok_or_else(|| Problem::new(ErrorCode::Unauthenticated, "no access token"))?;
    Ok(identity.validate(&token)?)
}

async fn me(State(state): State<HttpState>, headers: HeaderMap) -> Result<Json<UserView>, Problem> {
    let claims = authenticate(&state.identity, &headers)?;
    let id = claims
        .sub
        .parse()
        .map_err(|_| Problem::new(ErrorCode::Unauthenticated, "token subject is not a user id"))?;
    let user = state.identity.user(&claims.tid, id).await?;
    Ok(Json(UserView::from(&user)))
}

async fn jwks(State(state): State<HttpState>) -> Json<serde_json::Value> {
    Json(state.identity.signer.jwks())
}
