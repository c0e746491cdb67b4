//! Identity's DSAR participant passes the contract suite on its real
//! Postgres, directly and through the gRPC surface of a running identity;
//! after an erasure the account neither logs in nor refreshes.

use std::sync::{Arc, Mutex};

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use shopstream_dsar::{
    Participant,
    contract::{self, Marker},
};
use shopstream_identity::{
    adapters::{
        postgres::{MIGRATOR, PgIdentity},
        ratelimit::RedisRateLimiter,
    },
    domain::{Email, Role, User},
    dsar::{IdentityParticipant, LOGIN_ATTEMPTS, REFRESH_FAMILIES, REFRESH_TOKENS, USERS},
    ports::{NewRefreshToken, RateLimiter, RefreshTokenStore, UserRepository},
};
use shopstream_runtime::testkit;
use uuid::Uuid;

use super::start;

const PASSWORD: &str = "correct horse battery staple";
/// What a stored password hash looks like; it must never be exported.
const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$dsar-never-exported";

/// A client address of the subject's own (documentation range).
fn client_ip(s: &shopstream_dsar::Subject) -> String {
    let low = s.user_id.as_u128() & 0xffff_ffff_ffff_ffff;
    std::net::Ipv6Addr::from((0x2001_0db8_u128 << 96) | low).to_string()
}

/// A user with two sessions, the second logged out, and a login attempt,
/// through the stores.
async fn seed_stores(
    store: &PgIdentity,
    limiter: &RedisRateLimiter,
    s: shopstream_dsar::Subject,
) -> Vec<Marker> {
    let email = s.emails[0].clone();
    // The key `Identity::login` counts an attempt under.
    let ip = client_ip(&s);
    limiter
        .hit(&format!("{}:{email}:{ip}", s.tenant))
        .await
        .unwrap()
        .unwrap();
    store
        .create(&User {
            id: s.user_id,
            tenant_id: s.tenant.clone(),
            email: Email::parse(&email).unwrap(),
            password_hash: HASH.into(),
            roles: vec![Role::Customer],
            created_at_ms: 1_700_000_000_000,
        })
        .await
        .unwrap();
    let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
    for (family, n) in [(first, 2), (second, 1)] {
        for i in 0..n {
            store
                .issue(&NewRefreshToken {
                    tenant_id: s.tenant.clone(),
                    user_id: s.user_id,
                    family_id: family,
                    token_hash: format!("{family}-{i}").into_bytes(),
                    expires_at_ms: 1_800_000_000_000 + i,
                })
                .await
                .unwrap();
        }
    }
    store.revoke_family(&s.tenant, second).await.unwrap();
    vec![
        Marker::new(USERS, email),
        Marker::new(REFRESH_FAMILIES, first.to_string()),
        Marker::new(REFRESH_TOKENS, second.to_string()),
        Marker::new(LOGIN_ATTEMPTS, ip),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn the_participant_passes_the_dsar_contract_on_postgres() {
    let pool = testkit::stack().await.database("it_identity_dsar").await;
    MIGRATOR.run(&pool).await.unwrap();
    let store = PgIdentity::new(pool.clone());
    let redis = shopstream_platform::cache::connect(&testkit::stack().await.endpoints.redis_url)
        .await
        .unwrap();
    let prefix = testkit::unique("identity:login");
    let limiter = RedisRateLimiter::new(redis.clone(), &prefix, 100, 60);
    let participant = IdentityParticipant::new(pool).with_login_counters(redis, &prefix);
    let tenant = testkit::unique("t");
    contract::check(&participant, &tenant, |s| {
        let (store, limiter) = (store.clone(), limiter.clone());
        async move { seed_stores(&store, &limiter, s).await }
    })
    .await;

    // The password is exported as set, never as its hash.
    let s = contract::fresh_subject(&tenant);
    seed_stores(&store, &limiter, s.clone()).await;
    let export = participant.export(&s).await.unwrap();
    let text = serde_json::to_string(&export.documents).unwrap();
    assert!(text.contains("\"password\":\"(set)\""), "{text}");
    assert!(!text.contains("argon2"), "{text}");
    let sessions = &export
        .documents
        .iter()
        .find(|d| d.store == REFRESH_FAMILIES)
        .unwrap()
        .json["sessions"];
    assert_eq!(sessions.as_array().unwrap().len(), 2, "{sessions}");
    assert!(
        sessions
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["revoked_reason"] == "logout"),
        "{sessions}"
    );
}

/// A POST from `ip` (the first `X-Forwarded-For` hop is the client address).
async fn post(c: &Client, url: String, tenant: &str, ip: &str, body: Value) -> reqwest::Response {
    c.post(url)
        .header("x-tenant-id", tenant)
        .header("x-forwarded-for", ip)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_participant_passes_the_dsar_contract_over_grpc_and_erased_accounts_are_refused() {
    let s = start(100).await;
    let participant = shopstream_dsar::Client::new("identity", &s.grpc).unwrap();
    let tenant = testkit::unique("t");
    let c = Client::new();
    // (email, refresh token) of every seeded subject, the subject first.
    let seeded: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    contract::check(&participant, &tenant, |subject| {
        let (c, http, tenant, seeded) = (c.clone(), s.http.clone(), tenant.clone(), seeded.clone());
        async move {
            // Sign up, log in, refresh (a rotation), and log in once more.
            let email = subject.emails[0].clone();
            let ip = client_ip(&subject);
            let creds = json!({"email": email, "password": PASSWORD});
            let r = post(
                &c,
                format!("{http}/auth/signup"),
                &tenant,
                &ip,
                creds.clone(),
            )
            .await;
            assert_eq!(r.status(), StatusCode::CREATED);
            let user: Value = r.json().await.unwrap();
            let user_id = user["id"].as_str().unwrap().to_string();
            let r = post(
                &c,
                format!("{http}/auth/login"),
                &tenant,
                &ip,
                creds.clone(),
            )
            .await;
            assert_eq!(r.status(), StatusCode::OK);
            let session: Value = r.json().await.unwrap();
            let r = post(
                &c,
                format!("{http}/auth/refresh"),
                &tenant,
                &ip,
                json!({"refresh_token": session["refresh_token"]}),
            )
            .await;
            assert_eq!(r.status(), StatusCode::OK);
            let session: Value = r.json().await.unwrap();
            let r = post(&c, format!("{http}/auth/login"), &tenant, &ip, creds).await;
            assert_eq!(r.status(), StatusCode::OK);
            let refresh = session["refresh_token"].as_str().unwrap().to_string();
            seeded.lock().unwrap().push((email.clone(), refresh));
            // Identity generated the id: the subject is found by e-mail.
            vec![
                Marker::new(USERS, email),
                Marker::new(REFRESH_FAMILIES, user_id.clone()),
                Marker::new(REFRESH_TOKENS, user_id),
                Marker::new(LOGIN_ATTEMPTS, ip),
            ]
        }
    })
    .await;

    let seeded = seeded.lock().unwrap().clone();
    let [(erased, erased_refresh), (bystander, _)] = &seeded[..] else {
        panic!("two subjects were seeded: {seeded:?}");
    };
    let login = |email: &str| {
        post(
            &c,
            format!("{}/auth/login", s.http),
            &tenant,
            "192.0.2.1",
            json!({"email": email, "password": PASSWORD}),
        )
    };
    assert_eq!(login(erased).await.status(), StatusCode::UNAUTHORIZED);
    let r = post(
        &c,
        format!("{}/auth/refresh", s.http),
        &tenant,
        "192.0.2.1",
        json!({"refresh_token": erased_refresh}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(login(bystander).await.status(), StatusCode::OK);
}
