//! The order store contract on Postgres (the memory adapter runs it in unit tests).

use shopstream_orders::adapters::{
    contract,
    postgres::{MIGRATOR, PgOrders},
};
use shopstream_platform::{db, outbox};
use shopstream_runtime::testkit;

#[tokio::test(flavor = "multi_thread")]
async fn postgres_store_passes_the_contract() {
    let pool = testkit::stack().await.database("orders").await;
    db::migrate(&pool, &MIGRATOR).await.unwrap();
    outbox::ensure_table(&pool).await.unwrap();
    contract::run(&PgOrders::new(pool)).await;
}
