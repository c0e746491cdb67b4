//! The store contract on Postgres.

use shopstream_payments::adapters::{
    contract,
    postgres::{MIGRATOR, PgPayments},
};
use shopstream_platform::outbox;
use shopstream_runtime::testkit;

#[tokio::test]
async fn postgres_store_passes_the_contract() {
    let pool = testkit::stack().await.database("it_payments_store").await;
    MIGRATOR.run(&pool).await.unwrap();
    outbox::ensure_table(&pool).await.unwrap();
    contract::run(&PgPayments::new(pool)).await;
}
