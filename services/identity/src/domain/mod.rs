//! Identity's rules, free of I/O: what a valid email and password are, the
//! roles, the access-token claims, and what presenting a refresh token means.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use shopstream_platform::FieldError;

/// An email address, trimmed and lowercased (so `A@X.io` and `a@x.io` are one user).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Email(String);

impl Email {
    pub const MAX_LEN: usize = 254;

    pub fn parse(raw: &str) -> Result<Email, FieldError> {
        let e = raw.trim().to_lowercase();
        let err = |m: &str| FieldError::new("email", m);
        if e.is_empty() {
            return Err(err("is required"));
        }
        if e.len() > Self::MAX_LEN {
            return Err(err("is longer than 254 characters"));
        }
        let Some((local, domain)) = e.split_once('@') else {
            return Err(err("must contain @"));
        };
        if local.is_empty() || domain.is_empty() || domain.contains('@') {
            return Err(err("must look like name@example.com"));
        }
        if !domain.contains('.') || domain.starts_with('.') || domain.ends_with('.') {
            return Err(err("domain must contain a dot, e.g. example.com"));
        }
        if e.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(err("must not contain spaces"));
        }
        Ok(Email(e))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Password policy (NIST 800-63B style: length over composition rules).
pub const PASSWORD_MIN_LEN: usize = 12;
pub const PASSWORD_MAX_LEN: usize = 128;

/// Every way `password` breaks the policy (empty = acceptable).
pub fn password_violations(password: &str, email: Option<&Email>) -> Vec<FieldError> {
    let mut out = Vec::new();
    let n = password.chars().count();
    let mut push = |m: String| out.push(FieldError::new("password", m));
    if n < PASSWORD_MIN_LEN {
        push(format!("must be at least {PASSWORD_MIN_LEN} characters"));
    }
    if n > PASSWORD_MAX_LEN {
        push(format!("must be at most {PASSWORD_MAX_LEN} characters"));
    }
    let mut chars = password.chars();
    if let Some(first) = chars.next()
        && chars.all(|c| c == first)
    {
        push("must not repeat one character".into());
    }
    if let Some(e) = email {
        let local = e.as_str().split('@').next().unwrap_or_default();
        if local.len() >= 4 && password.to_lowercase().contains(local) {
            push("must not contain your email name".into());
        }
    }
    out
}

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Customer,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "customer" => Some(Role::Customer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: Uuid,
    pub tenant_id: String,
    pub email: Email,
    pub password_hash: String,
    pub roles: Vec<Role>,
    pub created_at_ms: i64,
}

impl User {
    pub fn is_admin(&self) -> bool {
        self.roles.contains(&Role::Admin)
    }
}

pub use shopstream_platform::auth::{Claims, ISSUER};

/// Access tokens live 15 minutes at most.
pub const ACCESS_TTL_S: i64 = 15 * 60;
/// Refresh tokens live 14 days; each use replaces the token.
pub const REFRESH_TTL_S: i64 = 14 * 24 * 3600;

/// The claims of an access token for `user`, issued at `now_ms`, living
/// [`ACCESS_TTL_S`].
pub fn claims_for(user: &User, now_ms: i64, jti: Uuid) -> Claims {
    let iat = now_ms / 1000;
    Claims {
        sub: user.id.to_string(),
        tid: user.tenant_id.clone(),
        roles: user.roles.iter().map(|r| r.as_str().to_string()).collect(),
        admin: user.is_admin(),
        iss: ISSUER.to_string(),
        iat,
        exp: iat + ACCESS_TTL_S,
        jti: jti.to_string(),
    }
}

/// The state of a presented refresh token, as the store found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshUse {
    /// Valid and now consumed: issue the next token of this family.
    Rotate {
        user_id: Uuid,
        family_id: Uuid,
    },
    /// Already consumed once: someone replays it. The family is revoked.
    Reused {
        user_id: Uuid,
        family_id: Uuid,
    },
    Expired,
    Revoked,
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn email_is_normalised() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").unwrap().as_str(),
            "ada@example.com"
        );
    }

    #[test]
    fn bad_emails_say_why() {
        for bad in [
            "",
            "ada",
            "ada@",
            "@x.io",
            "ada@localhost",
            "a b@x.io",
            "a@@x.io",
        ] {
            let e = Email::parse(bad).unwrap_err();
            assert_eq!(e.field, "email", "{bad}");
        }
    }

    #[test]
    fn password_policy_lists_every_violation() {
        let email = Email::parse("grace.hopper@example.com").unwrap();
        assert!(password_violations("correct horse battery", Some(&email)).is_empty());
        let v = password_violations("aaaa", Some(&email));
        assert_eq!(v.len(), 2, "{v:?}");
        let v = password_violations("grace.hopper-2024!", Some(&email));
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].message.contains("email"));
    }

    proptest! {
        #[test]
        fn parsed_emails_are_stable_under_reparsing(local in "[a-z0-9._]{1,20}", domain in "[a-z0-9]{1,10}\\.[a-z]{2,5}") {
            let raw = format!("{local}@{domain}");
            let e = Email::parse(&raw.to_uppercase()).unwrap();
            prop_assert_eq!(Email::parse(e.as_str()).unwrap(), e.clone());
            prop_assert_eq!(e.as_str(), raw.as_str());
        }
    }

    #[test]
    fn access_tokens_live_at_most_15_minutes() {
        let u = User {
            id: Uuid::nil(),
            tenant_id: "t".into(),
            email: Email::parse("a@b.io").unwrap(),
            password_hash: String::new(),
            roles: vec![Role::Customer, Role::Admin],
            created_at_ms: 0,
        };
        let c = claims_for(&u, 1_000_000, Uuid::nil());
        assert!(c.exp - c.iat <= 15 * 60);
        assert!(c.admin);
        assert_eq!(c.roles, vec!["customer", "admin"]);
    }
}
