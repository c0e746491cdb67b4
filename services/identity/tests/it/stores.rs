//! The Postgres adapter passes the same store contract as the in-memory one,
//! and the Redis rate limiter the same limiter contract.

use shopstream_identity::adapters::{
    contract,
    postgres::{MIGRATOR, PgIdentity},
    ratelimit::RedisRateLimiter,
};
use shopstream_runtime::testkit;

#[tokio::test]
async fn postgres_adapter_passes_the_store_contract() {
    let pool = testkit::stack().await.database("it_identity_store").await;
    MIGRATOR.run(&pool).await.unwrap();
    let pg = PgIdentity::new(pool);
    contract::users(&pg).await;
    contract::refresh_tokens(&pg).await;
}

#[tokio::test]
async fn redis_rate_limiter_passes_the_limiter_contract() {
    let redis = shopstream_platform::cache::connect(&testkit::stack().await.endpoints.redis_url)
        .await
        .unwrap();
    contract::rate_limiter(
        // A fresh key space for every limiter the contract builds.
        |limit, window_s| {
            RedisRateLimiter::new(
                redis.clone(),
                &testkit::unique("it_ratelimit"),
                limit,
                window_s,
            )
        },
        // Redis expires keys on its own clock: the time has to pass for real.
        tokio::time::sleep,
    )
    .await;
}

#[tokio::test]
async fn concurrent_refreshes_of_one_token_rotate_once() {
    use shopstream_identity::{
        domain::RefreshUse,
        ports::{NewRefreshToken, RefreshTokenStore},
    };
    let pool = testkit::stack().await.database("it_identity_race").await;
    MIGRATOR.run(&pool).await.unwrap();
    let pg = PgIdentity::new(pool);
    pg.issue(&NewRefreshToken {
        tenant_id: "t".into(),
        user_id: uuid::Uuid::now_v7(),
        family_id: uuid::Uuid::now_v7(),
        token_hash: b"race".to_vec(),
        expires_at_ms: i64::MAX,
    })
    .await
    .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let pg = pg.clone();
        tasks.push(tokio::spawn(async move {
            pg.consume("t", b"race", 1).await.unwrap()
        }));
    }
    let mut rotations = 0;
    for t in tasks {
        if matches!(t.await.unwrap(), RefreshUse::Rotate { .. }) {
            rotations += 1;
        }
    }
    assert_eq!(rotations, 1);
}
