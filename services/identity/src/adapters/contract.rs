//! The contract every identity store adapter must pass (memory in unit tests,
//! Postgres in integration tests). Panics on a violation.

use uuid::Uuid;

use crate::{
    domain::{Email, RefreshUse, Role, User},
    ports::{NewRefreshToken, RefreshTokenStore, RepoError, UserRepository},
};

fn user(tenant: &str, email: &str) -> User {
    User {
        id: Uuid::now_v7(),
        tenant_id: tenant.into(),
        email: Email::parse(email).unwrap(),
        password_hash: "$argon2id$fake".into(),
        roles: vec![Role::Customer],
        created_at_ms: 1,
    }
}

pub async fn users(repo: &dyn UserRepository) {
    let tenant = format!("t-{}", Uuid::now_v7());
    let u = user(&tenant, "ada@example.com");
    repo.create(&u).await.unwrap();
    let dup = user(&tenant, "ADA@example.com");
    assert!(matches!(repo.create(&dup).await, Err(RepoError::Duplicate)));
    // Same email in another tenant is another user.
    repo.create(&user(&format!("{tenant}-2"), "ada@example.com"))
        .await
        .unwrap();
    let found = repo.by_email(&tenant, &u.email).await.unwrap().unwrap();
    assert_eq!(found, u);
    assert_eq!(repo.by_id(&tenant, u.id).await.unwrap().unwrap().id, u.id);
    assert!(
        repo.by_id("other", u.id).await.unwrap().is_none(),
        "crossed tenants"
    );
    repo.grant(&tenant, u.id, Role::Admin).await.unwrap();
    repo.grant(&tenant, u.id, Role::Admin).await.unwrap();
    let roles = repo.by_id(&tenant, u.id).await.unwrap().unwrap().roles;
    assert_eq!(roles, vec![Role::Customer, Role::Admin]);
}

pub async fn refresh_tokens(store: &dyn RefreshTokenStore) {
    let tenant = format!("t-{}", Uuid::now_v7());
    let family = Uuid::now_v7();
    let user_id = Uuid::now_v7();
    let tok = |h: &[u8], exp: i64| NewRefreshToken {
        tenant_id: tenant.clone(),
        user_id,
        family_id: family,
        token_hash: h.to_vec(),
        expires_at_ms: exp,
    };
    store.issue(&tok(b"first", 1_000)).await.unwrap();
    assert_eq!(
        store.consume(&tenant, b"first", 10).await.unwrap(),
        RefreshUse::Rotate {
            user_id,
            family_id: family
        }
    );
    store.issue(&tok(b"second", 1_000)).await.unwrap();
    // Replaying the consumed token revokes the family...
    assert_eq!(
        store.consume(&tenant, b"first", 20).await.unwrap(),
        RefreshUse::Reused {
            user_id,
            family_id: family
        }
    );
    // ...so the newest token of the family is dead too.
    assert_eq!(
        store.consume(&tenant, b"second", 30).await.unwrap(),
        RefreshUse::Revoked
    );
    assert_eq!(
        store.consume(&tenant, b"nope", 30).await.unwrap(),
        RefreshUse::Unknown
    );
    assert_eq!(
        store.family_of(&tenant, b"second").await.unwrap(),
        Some(family)
    );

    // Expiry and logout in a second family.
    let fam2 = Uuid::now_v7();
    let mut t = tok(b"old", 100);
    t.family_id = fam2;
    store.issue(&t).await.unwrap();
    assert_eq!(
        store.consume(&tenant, b"old", 100).await.unwrap(),
        RefreshUse::Expired
    );
    let mut t = tok(b"fresh", 1_000);
    t.family_id = fam2;
    store.issue(&t).await.unwrap();
    store.revoke_family(&tenant, fam2).await.unwrap();
    store.revoke_family(&tenant, fam2).await.unwrap();
    assert_eq!(
        store.consume(&tenant, b"fresh", 10).await.unwrap(),
        RefreshUse::Revoked
    );
    // Tokens are per tenant.
    assert_eq!(
        store.consume("other", b"fresh", 10).await.unwrap(),
        RefreshUse::Unknown
    );
}
