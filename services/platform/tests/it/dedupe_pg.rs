//! The Postgres deduper passes the same contract as the in-memory one, and its
//! marks survive a new connection pool (a consumer restart).

use shopstream_platform::events::dedupe::{self, Deduper, PgDeduper};
use shopstream_runtime::testkit;

#[tokio::test]
async fn pg_deduper_passes_the_contract_and_survives_a_restart() {
    let stack = testkit::stack().await;
    let pool = stack.database("it_dedupe").await;
    let d = PgDeduper::new(pool.clone()).await.unwrap();
    dedupe::contract(&d).await;

    let id = uuid::Uuid::now_v7();
    d.mark("orders-consumer", id).await.unwrap();
    let db: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    let again = shopstream_platform::db::connect(&stack.endpoints.postgres_url, &db)
        .await
        .unwrap();
    let d = PgDeduper::new(again).await.unwrap();
    assert!(d.seen("orders-consumer", id).await.unwrap());
}
