//! Identity's use cases: signup, login, refresh (rotation with reuse
//! detection), logout, who-am-I and token validation. Orchestrates the ports;
//! the rules live in `domain`.

use std::sync::Arc;

use base64::Engine;
use sha2::Digest;
use shopstream_platform::{auth::TokenError, clock::Clock, ids::IdGen};
use uuid::Uuid;

use crate::{
    adapters::{keys::Signer, passwords},
    domain::{
        self, Claims, Email, FieldError, REFRESH_TTL_S, RefreshUse, Role, User, claims_for,
        password_violations,
    },
    ports::{NewRefreshToken, RateLimiter, RefreshTokenStore, RepoError, UserRepository},
};

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("invalid input")]
    Validation(Vec<FieldError>),
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("email or password is wrong")]
    InvalidCredentials,
    #[error("too many attempts; retry in {0} s")]
    RateLimited(u64),
    #[error("refresh token {0}")]
    InvalidRefresh(&'static str),
    #[error("refresh token reused: the session was revoked")]
    RefreshReuse,
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("user not found")]
    NotFound,
    #[error("storage: {0}")]
    Storage(String),
}

impl From<RepoError> for IdentityError {
    fn from(e: RepoError) -> Self {
        match e {
            RepoError::Duplicate => IdentityError::EmailTaken,
            RepoError::Storage(s) => IdentityError::Storage(s),
        }
    }
}

/// What a successful login or refresh hands out.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub access_token: String,
    pub access_expires_in_s: i64,
    /// Opaque; only its SHA-256 is stored.
    pub refresh_token: String,
    pub refresh_expires_in_s: i64,
}

/// The use cases, wired to their ports.
#[derive(Clone)]
pub struct Identity {
    pub users: Arc<dyn UserRepository>,
    pub tokens: Arc<dyn RefreshTokenStore>,
    pub login_limiter: Arc<dyn RateLimiter>,
    pub signer: Arc<Signer>,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn IdGen>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Identity")
    }
}

/// SHA-256 of a refresh token (what the store keeps).
pub fn token_hash(token: &str) -> Vec<u8> {
    sha2::Sha256::digest(token.as_bytes()).to_vec()
}

fn new_refresh_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Identity {
    #[tracing::instrument(skip(self, email, password), fields(tenant))]
    pub async fn signup(
        &self,
        tenant: &str,
        email: &str,
        password: &str,
    ) -> Result<User, IdentityError> {
        let mut errors = Vec::new();
        let email = match Email::parse(email) {
            Ok(e) => Some(e),
            Err(e) => {
                errors.push(e);
                None
            }
        };
        errors.extend(password_violations(password, email.as_ref()));
        let Some(email) = email.filter(|_| errors.is_empty()) else {
            return Err(IdentityError::Validation(errors));
        };
        let user = User {
            id: self.ids.new_id(),
            tenant_id: tenant.to_string(),
            email,
            password_hash: passwords::hash(password.to_string())
                .await
                .map_err(IdentityError::Storage)?,
            roles: vec![Role::Customer],
            created_at_ms: self.clock.now_ms(),
        };
        self.users.create(&user).await?;
        tracing::info!(user_id = %user.id, "user signed up");
        Ok(user)
    }

    #[tracing::instrument(skip(self, email, password), fields(tenant))]
    pub async fn login(
        &self,
        tenant: &str,
        email: &str,
        password: &str,
        client_ip: &str,
    ) -> Result<Session, IdentityError> {
        let email = Email::parse(email).map_err(|_| IdentityError::InvalidCredentials)?;
        let key = format!("{tenant}:{}:{client_ip}", email.as_str());
        if let Err(retry_after) = self.login_limiter.hit(&key).await? {
            tracing::warn!(target: "security", %client_ip, "login rate limited");
            return Err(IdentityError::RateLimited(retry_after));
        }
        let user = self.users.by_email(tenant, &email).await?;
        // Verify against a dummy hash when the email is unknown: same cost,
        // so timing does not reveal which emails have accounts.
        let phc = match &user {
            Some(u) => u.password_hash.clone(),
            None => passwords::dummy_hash().await,
        };
        let ok = passwords::verify(password.to_string(), phc).await;
        match user {
            Some(u) if ok => self.open_session(u, self.ids.new_id()).await,
            _ => Err(IdentityError::InvalidCredentials),
        }
    }

    async fn open_session(&self, user: User, family_id: Uuid) -> Result<Session, IdentityError> {
        let now = self.clock.now_ms();
        let claims = claims_for(&user, now, self.ids.new_id());
        let access_token = self
            .signer
            .sign(&claims)
            .map_err(|e| IdentityError::Storage(e.to_string()))?;
        let refresh_token = new_refresh_token();
        self.tokens
            .issue(&NewRefreshToken {
                tenant_id: user.tenant_id.clone(),
                user_id: user.id,
                family_id,
                token_hash: token_hash(&refresh_token),
                expires_at_ms: now + REFRESH_TTL_S * 1000,
            })
            .await?;
        Ok(Session {
            user,
            access_token,
            access_expires_in_s: claims.exp - claims.iat,
            refresh_token,
            refresh_expires_in_s: REFRESH_TTL_S,
        })
    }

    /// Exchange a refresh token for a new session in the same family.
    #[tracing::instrument(skip(self, refresh_token))]
    pub async fn refresh(
        &self,
        tenant: &str,
        refresh_token: &str,
    ) -> Result<Session, IdentityError> {
        let now = self.clock.now_ms();
        match self
            .tokens
            .consume(tenant, &token_hash(refresh_token), now)
            .await?
        {
            RefreshUse::Rotate { user_id, family_id } => {
                let user = self
                    .users
                    .by_id(tenant, user_id)
                    .await?
                    .ok_or(IdentityError::InvalidRefresh("belongs to no user"))?;
                self.open_session(user, family_id).await
            }
            RefreshUse::Reused { user_id, family_id } => {
                tracing::warn!(
                    target: "security",
                    event = "refresh_token_reuse",
                    %user_id,
                    %family_id,
                    "a used refresh token was presented again; the whole family is revoked"
                );
                Err(IdentityError::RefreshReuse)
            }
            RefreshUse::Expired => Err(IdentityError::InvalidRefresh("expired")),
            RefreshUse::Revoked => Err(IdentityError::InvalidRefresh("revoked")),
            RefreshUse::Unknown => Err(IdentityError::InvalidRefresh("unknown")),
        }
    }

    /// End the session the refresh token belongs to (idempotent).
    pub async fn logout(&self, tenant: &str, refresh_token: &str) -> Result<(), IdentityError> {
        if let Some(family) = self
            .tokens
            .family_of(tenant, &token_hash(refresh_token))
            .await?
        {
            self.tokens.revoke_family(tenant, family).await?;
        }
        Ok(())
    }

    pub fn validate(&self, access_token: &str) -> Result<Claims, IdentityError> {
        Ok(self
            .signer
            .verifier()
            .verify(access_token, self.clock.now_ms())?)
    }

    pub async fn user(&self, tenant: &str, id: Uuid) -> Result<User, IdentityError> {
        self.users
            .by_id(tenant, id)
            .await?
            .ok_or(IdentityError::NotFound)
    }

    /// Make sure an admin account exists. Returns the generated password when
    /// it had to create one (printed once by `shopstream seed`).
    pub async fn ensure_admin(
        &self,
        tenant: &str,
        email: &str,
    ) -> Result<Option<String>, IdentityError> {
        let e = Email::parse(email).map_err(|e| IdentityError::Validation(vec![e]))?;
        if let Some(u) = self.users.by_email(tenant, &e).await? {
            self.users.grant(tenant, u.id, Role::Admin).await?;
            return Ok(None);
        }
        let password = new_refresh_token(); // 43 random url-safe characters
        let user = self.signup(tenant, email, &password).await?;
        self.users.grant(tenant, user.id, Role::Admin).await?;
        Ok(Some(password))
    }
}

/// Re-exported for the API layer.
pub use domain::ACCESS_TTL_S;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::{MemoryIdentity, MemoryRateLimiter};
    use shopstream_platform::{clock::ManualClock, ids::SystemIdGen};

    /// A login limit no test reaches.
    const NO_LIMIT: u32 = u32::MAX;

    /// Identity on memory stores, with `limit` logins per key per minute.
    fn identity(limit: u32) -> (Identity, ManualClock) {
        let m = MemoryIdentity::default();
        let clock = ManualClock::new(1_700_000_000_000);
        let doc = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(
            &aws_lc_rs::rand::SystemRandom::new(),
        )
        .unwrap();
        let id = Identity {
            users: Arc::new(m.clone()),
            tokens: Arc::new(m.clone()),
            login_limiter: Arc::new(MemoryRateLimiter::new(limit, 60, Arc::new(clock.clone()))),
            signer: Arc::new(Signer::from_pkcs8(doc.as_ref()).unwrap()),
            clock: Arc::new(clock.clone()),
            ids: Arc::new(SystemIdGen),
        };
        (id, clock)
    }

    #[tokio::test]
    async fn refresh_rotates_and_reuse_revokes_the_family() {
        let (id, _) = identity(NO_LIMIT);
        id.signup("t", "ada@example.com", "correct horse battery")
            .await
            .unwrap();
        let s1 = id
            .login("t", "ADA@example.com", "correct horse battery", "ip")
            .await
            .unwrap();
        let s2 = id.refresh("t", &s1.refresh_token).await.unwrap();
        assert_ne!(s1.refresh_token, s2.refresh_token);
        assert!(matches!(
            id.refresh("t", &s1.refresh_token).await,
            Err(IdentityError::RefreshReuse)
        ));
        assert!(matches!(
            id.refresh("t", &s2.refresh_token).await,
            Err(IdentityError::InvalidRefresh("revoked"))
        ));
    }

    #[tokio::test]
    async fn signup_reports_every_invalid_field_and_duplicates() {
        let (id, _) = identity(NO_LIMIT);
        match id.signup("t", "nope", "short").await {
            Err(IdentityError::Validation(v)) => {
                let fields: Vec<_> = v.iter().map(|f| f.field.as_str()).collect();
                assert_eq!(fields, vec!["email", "password"]);
            }
            other => panic!("{other:?}"),
        }
        id.signup("t", "a@b.io", "correct horse battery")
            .await
            .unwrap();
        assert!(matches!(
            id.signup("t", "A@b.io", "correct horse battery").await,
            Err(IdentityError::EmailTaken)
        ));
    }

    #[tokio::test]
    async fn wrong_password_and_unknown_email_look_the_same_and_limits_apply() {
        let (id, _) = identity(3);
        id.signup("t", "a@b.io", "correct horse battery")
            .await
            .unwrap();
        assert!(matches!(
            id.login("t", "a@b.io", "wrong wrong wrong", "ip").await,
            Err(IdentityError::InvalidCredentials)
        ));
        assert!(matches!(
            id.login("t", "x@b.io", "wrong wrong wrong", "ip").await,
            Err(IdentityError::InvalidCredentials)
        ));
        id.login("t", "a@b.io", "wrong wrong wrong", "ip")
            .await
            .unwrap_err();
        id.login("t", "a@b.io", "correct horse battery", "ip")
            .await
            .unwrap();
        assert!(matches!(
            id.login("t", "a@b.io", "correct horse battery", "ip").await,
            Err(IdentityError::RateLimited(_))
        ));
        // Another client IP has its own budget.
        id.login("t", "a@b.io", "correct horse battery", "ip2")
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_rate_limited_login_passes_again_after_the_window() {
        let (id, clock) = identity(1);
        id.signup("t", "a@b.io", "correct horse battery")
            .await
            .unwrap();
        id.login("t", "a@b.io", "correct horse battery", "ip")
            .await
            .unwrap();
        match id.login("t", "a@b.io", "correct horse battery", "ip").await {
            Err(IdentityError::RateLimited(retry_after_s)) => assert_eq!(retry_after_s, 60),
            other => panic!("{other:?}"),
        }
        clock.advance_ms(60_000);
        id.login("t", "a@b.io", "correct horse battery", "ip")
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn expired_refresh_tokens_are_refused() {
        let (id, clock) = identity(NO_LIMIT);
        id.signup("t", "a@b.io", "correct horse battery")
            .await
            .unwrap();
        let s = id
            .login("t", "a@b.io", "correct horse battery", "ip")
            .await
            .unwrap();
        clock.advance_ms(REFRESH_TTL_S * 1000 + 1);
        assert!(matches!(
            id.refresh("t", &s.refresh_token).await,
            Err(IdentityError::InvalidRefresh("expired"))
        ));
    }

    #[tokio::test]
    async fn access_tokens_expire_on_the_injected_clock() {
        let (id, clock) = identity(NO_LIMIT);
        id.signup("t", "a@b.io", "correct horse battery")
            .await
            .unwrap();
        let s = id
            .login("t", "a@b.io", "correct horse battery", "ip")
            .await
            .unwrap();
        assert!(id.validate(&s.access_token).is_ok());
        clock.advance_ms((crate::domain::ACCESS_TTL_S + 10) * 1000);
        assert!(matches!(
            id.validate(&s.access_token),
            Err(IdentityError::Token(_))
        ));
    }

    #[tokio::test]
    async fn ensure_admin_creates_once_and_prints_a_password_once() {
        let (id, _) = identity(NO_LIMIT);
        let pw = id
            .ensure_admin("t", "admin@shopstream.local")
            .await
            .unwrap()
            .unwrap();
        assert!(pw.len() >= 40);
        assert!(
            id.ensure_admin("t", "admin@shopstream.local")
                .await
                .unwrap()
                .is_none()
        );
        let s = id
            .login("t", "admin@shopstream.local", &pw, "ip")
            .await
            .unwrap();
        assert!(id.validate(&s.access_token).unwrap().admin);
    }
}
