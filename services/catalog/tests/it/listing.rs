//! Listing over the seed data: filters and every sort with cursor pagination,
//! checked against an oracle computed from the seed file itself, and pages
//! that stay stable while products are inserted.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;
use uuid::Uuid;

use crate::support::{TestApp, product, seed_path, seed_products, spawn_app};

/// What the oracle needs of each stored product: (id, created_at_ms).
async fn stored(app: &TestApp) -> HashMap<String, (Uuid, i64)> {
    let rows: Vec<(String, Uuid, i64)> =
        sqlx::query_as("SELECT slug, id, created_at_ms FROM product WHERE tenant_id = 'default'")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    rows.into_iter().map(|(s, id, t)| (s, (id, t))).collect()
}

fn min_price(p: &Value) -> i64 {
    p["skus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["price"]["amount_minor"].as_i64().unwrap())
        .min()
        .unwrap()
}

/// Follow `next_cursor` to the end; returns the slugs in order.
async fn walk(app: &TestApp, query: &str, limit: usize) -> Vec<String> {
    let mut slugs = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1_000 {
        let path = match &cursor {
            None => format!("/products?{query}&limit={limit}"),
            Some(c) => format!("/products?{query}&limit={limit}&cursor={c}"),
        };
        let r = app.get(&path).await;
        assert_eq!(r.status.as_u16(), 200, "{path}: {}", r.json);
        let items = r.json["items"].as_array().unwrap();
        assert!(items.len() <= limit);
        slugs.extend(
            items
                .iter()
                .map(|p| p["slug"].as_str().unwrap().to_string()),
        );
        match r.json["next_cursor"].as_str() {
            Some(c) => {
                assert!(!items.is_empty(), "a cursor after an empty page");
                cursor = Some(c.to_string());
            }
            None => return slugs,
        }
    }
    panic!("pagination of {query} did not end");
}

#[tokio::test]
async fn filters_and_sorts_paginate_the_seed_data_exactly() {
    let app = spawn_app().await;
    let report = shopstream_catalog::seed(&app.pool, seed_path())
        .await
        .unwrap();
    let seed = seed_products();
    assert_eq!(report.inserted, seed.len());
    let ids = stored(&app).await;

    let (category, region, lo, hi) = ("apparel", "uk", 2_000, 10_000);
    let matching: Vec<&Value> = seed
        .iter()
        .filter(|p| p["category"] == category)
        .filter(|p| p["regions"].as_array().unwrap().iter().any(|r| r == region))
        .filter(|p| {
            p["skus"].as_array().unwrap().iter().any(|s| {
                let a = s["price"]["amount_minor"].as_i64().unwrap();
                (lo..=hi).contains(&a)
            })
        })
        .collect();
    assert!(matching.len() > 10, "the filter should span several pages");

    let filter = format!("category={category}&region={region}&min_price={lo}&max_price={hi}");
    let slug = |p: &Value| p["slug"].as_str().unwrap().to_string();
    for sort in ["price_asc", "price_desc", "newest", "name"] {
        let mut expected = matching.clone();
        expected.sort_by(|a, b| {
            let (ida, ta) = ids[&slug(a)];
            let (idb, tb) = ids[&slug(b)];
            match sort {
                "price_asc" => (min_price(a), ida).cmp(&(min_price(b), idb)),
                "price_desc" => (min_price(b), idb).cmp(&(min_price(a), ida)),
                "newest" => (tb, idb).cmp(&(ta, ida)),
                _ => (a["name"].as_str().unwrap().as_bytes(), ida)
                    .cmp(&(b["name"].as_str().unwrap().as_bytes(), idb)),
            }
        });
        let expected: Vec<String> = expected.iter().map(|p| slug(p)).collect();
        let got = walk(&app, &format!("{filter}&sort={sort}"), 7).await;
        assert_eq!(got, expected, "sort={sort}");
    }

    // The whole catalog pages through once, without repeats.
    let all = walk(&app, "sort=price_asc", 100).await;
    assert_eq!(all.len(), seed.len());
    assert_eq!(all.iter().collect::<BTreeSet<_>>().len(), seed.len());

    // A cursor belongs to its sort.
    let r = app.get("/products?sort=price_asc&limit=1").await;
    let cursor = r.json["next_cursor"].as_str().unwrap().to_string();
    let r = app
        .get(&format!("/products?sort=name&limit=1&cursor={cursor}"))
        .await;
    r.assert_problem(422);
    assert_eq!(r.fields(), ["cursor"]);
    app.stop().await;
}

#[tokio::test]
async fn pages_are_stable_while_products_are_inserted() {
    let app = spawn_app().await;
    shopstream_catalog::seed(&app.pool, seed_path())
        .await
        .unwrap();
    let before = walk(&app, "sort=newest", 100).await;

    // Page 1 of the newest products, then a burst of inserts, then the rest.
    let r = app.get("/products?sort=newest&limit=25").await;
    let first: Vec<String> = r.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["slug"].as_str().unwrap().to_string())
        .collect();
    let mut cursor = r.json["next_cursor"].as_str().unwrap().to_string();
    for i in 0..5 {
        app.create(product(
            &format!("late-arrival-{i}"),
            "books",
            &["eu"],
            &[1],
        ))
        .await;
    }
    let mut rest = Vec::new();
    loop {
        let r = app
            .get(&format!("/products?sort=newest&limit=25&cursor={cursor}"))
            .await;
        rest.extend(
            r.json["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["slug"].as_str().unwrap().to_string()),
        );
        match r.json["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    let mut seen = first;
    seen.extend(rest);
    // Exactly the products that existed, in their order: nothing skipped or repeated.
    assert_eq!(seen, before);

    // A cheap insert behind a price_asc cursor is not seen; one ahead of it is.
    let r = app.get("/products?sort=price_asc&limit=50").await;
    let boundary = r.json["items"][49]["min_price"]["amount_minor"]
        .as_i64()
        .unwrap();
    let cursor = r.json["next_cursor"].as_str().unwrap().to_string();
    app.create(product("behind-cursor", "books", &["eu"], &[boundary - 1]))
        .await;
    app.create(product(
        "ahead-of-cursor",
        "books",
        &["eu"],
        &[boundary + 1],
    ))
    .await;
    let r = app
        .get(&format!(
            "/products?sort=price_asc&limit=100&cursor={cursor}"
        ))
        .await;
    let slugs: Vec<&str> = r.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["slug"].as_str().unwrap())
        .collect();
    assert!(!slugs.contains(&"behind-cursor"));
    assert!(slugs.contains(&"ahead-of-cursor"), "{slugs:?}");
    app.stop().await;
}
