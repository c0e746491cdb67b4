//! The seed: loads the whole file into a fresh database (migrating it), and a
//! second run changes nothing (no row, no version, no outbox event).

use std::sync::Arc;

use shopstream_catalog::{
    SeedReport,
    adapters::postgres::PostgresProductRepository,
    domain::{PatchDraft, Slug, TenantId},
    seed,
    service::Catalog,
};
use shopstream_platform::{clock::SystemClock, ids::SystemIdGen};
use shopstream_runtime::testkit;

use crate::support::{seed_path, seed_products};

async fn counts(pool: &sqlx::PgPool) -> (i64, i64, i64, i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM product), (SELECT count(*) FROM sku), \
                (SELECT count(*) FROM product_region), (SELECT count(*) FROM outbox), \
                (SELECT coalesce(max(version), 0) FROM product)",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn seeding_is_idempotent() {
    let stack = testkit::stack().await;
    let pool = stack.database("catalog_seed").await;
    let products = seed_products();
    let skus: usize = products
        .iter()
        .map(|p| p["skus"].as_array().unwrap().len())
        .sum();
    let regions: usize = products
        .iter()
        .map(|p| p["regions"].as_array().unwrap().len())
        .sum();

    let first = seed(&pool, seed_path()).await.unwrap();
    assert_eq!(
        first,
        SeedReport {
            inserted: products.len(),
            updated: 0,
            unchanged: 0
        }
    );
    let after_first = counts(&pool).await;
    assert_eq!(
        after_first,
        (
            products.len() as i64,
            skus as i64,
            regions as i64,
            skus as i64,
            1
        )
    );

    let second = seed(&pool, seed_path()).await.unwrap();
    assert_eq!(
        second,
        SeedReport {
            inserted: 0,
            updated: 0,
            unchanged: products.len()
        }
    );
    assert_eq!(
        counts(&pool).await,
        after_first,
        "the second run wrote something"
    );

    // Spot-check one product against the file.
    let first_product = &products[0];
    let (title, category, stock): (String, String, i64) = sqlx::query_as(
        "SELECT p.title, p.category, st.quantity FROM product p \
         JOIN sku s ON s.tenant_id = p.tenant_id AND s.product_id = p.id AND s.position = 0 \
         JOIN stock st ON st.tenant_id = s.tenant_id AND st.sku_id = s.sku_id \
         WHERE p.tenant_id = 'default' AND p.slug = $1",
    )
    .bind(first_product["slug"].as_str().unwrap())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(title, first_product["name"].as_str().unwrap());
    assert_eq!(category, first_product["category"].as_str().unwrap());
    assert_eq!(stock, first_product["skus"][0]["stock"].as_i64().unwrap());

    // An edited seeded product is brought back in line with the file.
    let catalog = Catalog::new(
        Arc::new(PostgresProductRepository::new(pool.clone())),
        Arc::new(SystemClock),
        Arc::new(SystemIdGen),
    );
    let tenant = TenantId::default();
    let slug = Slug::parse(first_product["slug"].as_str().unwrap()).unwrap();
    let stored = catalog
        .repository()
        .get_by_slug(&tenant, &slug)
        .await
        .unwrap()
        .unwrap();
    let patch = PatchDraft {
        title: Some("Edited by an admin".into()),
        ..PatchDraft::default()
    };
    catalog.update(&tenant, stored.id, 1, &patch).await.unwrap();
    let third = seed(&pool, seed_path()).await.unwrap();
    assert_eq!(
        third,
        SeedReport {
            inserted: 0,
            updated: 1,
            unchanged: products.len() - 1
        }
    );
    let restored = catalog.get(&tenant, stored.id).await.unwrap();
    assert_eq!(restored.title, first_product["name"].as_str().unwrap());
    assert_eq!(restored.version, 3);
    let events = catalog
        .repository()
        .outbox(&tenant, stored.id)
        .await
        .unwrap();
    let skus = stored.skus.len();
    assert_eq!(
        events.len(),
        3 * skus,
        "created, edited, re-seeded: one event per sku each"
    );
    assert!(events[2 * skus..].iter().all(|e| e.version() == Some(3)));
}
