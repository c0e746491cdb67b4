//! (a) migrate and query Postgres through `platform::db`.

use shopstream_platform::db;
use shopstream_runtime::testkit;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("tests/it/migrations");

#[tokio::test]
async fn migrations_apply_once_and_queries_see_the_schema() {
    let stack = testkit::stack().await;
    let name = testkit::unique("it_pg");
    let pool = db::connect(&stack.endpoints.postgres_url, &name)
        .await
        .unwrap();
    db::migrate(&pool, &MIGRATOR).await.unwrap();
    // Applying again is a no-op, not an error.
    db::migrate(&pool, &MIGRATOR).await.unwrap();

    sqlx::query("INSERT INTO widgets (name, price_minor, currency) VALUES ($1, $2, $3)")
        .bind("lamp")
        .bind(1999_i64)
        .bind("EUR")
        .execute(&pool)
        .await
        .unwrap();
    let (name_back, price): (String, i64) =
        sqlx::query_as("SELECT name, price_minor FROM widgets WHERE name = 'lamp'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((name_back.as_str(), price), ("lamp", 1999));

    // The check constraint from the migration holds: money is never negative.
    let err =
        sqlx::query("INSERT INTO widgets (name, price_minor, currency) VALUES ('x', -1, 'EUR')")
            .execute(&pool)
            .await
            .unwrap_err();
    assert!(err.to_string().contains("check"), "{err}");

    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(applied, 1);
}

#[tokio::test]
async fn the_server_runs_with_logical_replication_enabled() {
    let stack = testkit::stack().await;
    let pool = db::connect(&stack.endpoints.postgres_url, "cdc")
        .await
        .unwrap();
    let level: String = sqlx::query_scalar("SHOW wal_level")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(level, "logical");
}

#[tokio::test]
async fn a_bad_database_name_is_refused_before_reaching_the_server() {
    let err = db::ensure_database("postgres://shopstream@127.0.0.1:1", "x; drop")
        .await
        .unwrap_err();
    assert!(matches!(err, db::DbError::InvalidName(_)), "{err}");
}
