//! The Postgres repository passes the same contract suite as the in-memory one.

use shopstream_catalog::{
    MIGRATOR, adapters::contract, adapters::postgres::PostgresProductRepository,
};
use shopstream_platform::db;
use shopstream_runtime::testkit;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_repository_passes_the_contract() {
    let stack = testkit::stack().await;
    let pool = stack.database("catalog_contract").await;
    db::migrate(&pool, &MIGRATOR).await.unwrap();
    // Applying again is a no-op.
    db::migrate(&pool, &MIGRATOR).await.unwrap();
    contract::run(&PostgresProductRepository::new(pool)).await;
}
