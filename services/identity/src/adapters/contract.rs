//! The contract every identity store adapter must pass (memory in unit tests,
//! Postgres and Redis in integration tests). Panics on a violation.

use std::{future::Future, time::Duration};

use uuid::Uuid;

use crate::{
    domain::{Email, RefreshUse, Role, User},
    ports::{NewRefreshToken, RateLimiter, RefreshTokenStore, RepoError, UserRepository},
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

async fn hit(l: &impl RateLimiter, key: &str) -> Result<(), u64> {
    l.hit(key).await.expect("the limiter's backend answers")
}

/// The [`RateLimiter`] contract. `new(limit, window_s)` builds a limiter with
/// a fresh key space; `pass(d)` lets `d` of the limiter's time go by (a
/// manual clock moves, a real one is waited for). The windows used are 1 s,
/// so a limiter on real time finishes in about 2 s.
pub async fn rate_limiter<L, Fut>(new: impl Fn(u32, u64) -> L, pass: impl Fn(Duration) -> Fut)
where
    L: RateLimiter,
    Fut: Future<Output = ()>,
{
    // The first `limit` attempts pass, the next ones are refused with the
    // time left in the window; other keys keep their own budget.
    let l = new(3, 60);
    for i in 0..3 {
        assert_eq!(hit(&l, "a").await, Ok(()), "attempt {i} of 3");
    }
    let retry = hit(&l, "a")
        .await
        .expect_err("the 4th attempt is over the limit");
    assert!(
        (59..=60).contains(&retry),
        "retry after {retry} s of a fresh 60 s window"
    );
    assert!(hit(&l, "a").await.is_err(), "still refused");
    assert_eq!(hit(&l, "b").await, Ok(()), "keys share no budget");

    // Limit 0 allows nothing.
    let l = new(0, 60);
    let retry = hit(&l, "a")
        .await
        .expect_err("limit 0 refuses the first attempt");
    assert!((1..=60).contains(&retry), "{retry}");

    // The window starts at the first attempt; refused attempts do not extend
    // it; once it has passed the whole budget is back.
    let l = new(2, 1);
    assert_eq!(hit(&l, "a").await, Ok(()));
    assert_eq!(hit(&l, "a").await, Ok(()));
    assert_eq!(hit(&l, "a").await, Err(1));
    pass(Duration::from_millis(600)).await;
    assert_eq!(hit(&l, "a").await, Err(1), "still in the first window");
    pass(Duration::from_millis(600)).await;
    assert_eq!(
        hit(&l, "a").await,
        Ok(()),
        "a new window, not extended by refusals"
    );
    assert_eq!(hit(&l, "a").await, Ok(()), "with the whole budget");
    assert_eq!(hit(&l, "a").await, Err(1));
}
