//! The product cache: a read is served from Redis, an edit through the
//! gateway is read back at once, an edit elsewhere reaches the cache through
//! `product.events` (a CDC record as cdc publishes it), and a slow reader
//! never puts back a version an invalidation replaced.

use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use shopstream_gateway::{catalog::ProductView, product_cache::ProductCache};
use shopstream_platform::{
    clock::{Clock, SystemClock},
    events::{Envelope, kafka::KafkaBus},
    metrics::Metrics,
};
use shopstream_runtime::testkit;

use super::{ADMIN_EMAIL, product, start, token};

/// A catalog change on `product.events`, as cdc publishes it.
fn cdc_event(product_id: &str, version: i64) -> Envelope {
    let payload = json!({"product_id": product_id, "version": version, "kind": "updated",
        "ts_ms": SystemClock.now_ms()});
    testkit::cdc_product_changed(product_id, payload, "u")
}

async fn version_of(c: &Client, url: &str) -> i64 {
    let r = c.get(url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json::<Value>().await.unwrap()["version"]
        .as_i64()
        .unwrap()
}

async fn metrics(c: &Client, base: &str) -> String {
    let r = c.get(format!("{base}/metrics")).send().await.unwrap();
    r.text().await.unwrap()
}

/// The value of `name`'s sample with `label` (e.g. `result="hit"`), or 0.
fn counter(metrics: &str, name: &str, label: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cached_product_follows_edits_through_the_gateway_and_product_events() {
    let s = start().await;
    let c = Client::new();
    let base = &s.base;
    let admin = token(&c, base, ADMIN_EMAIL, &s.admin_password).await;
    let r = c
        .post(format!("{base}/admin/products"))
        .bearer_auth(&admin)
        .json(&product("cached", 1500))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let url = format!("{base}/products/{id}");

    // A miss fills the cache; the next read is a hit.
    assert_eq!(version_of(&c, &url).await, 1);
    assert_eq!(version_of(&c, &url).await, 1);
    let m = metrics(&c, base).await;
    let lookups = "shopstream_product_cache_lookups_total";
    assert!(counter(&m, lookups, r#"result="hit""#) >= 1.0, "{m}");

    // An edit through the gateway is read back at once.
    let r = c
        .patch(format!("{base}/admin/products/{id}"))
        .bearer_auth(&admin)
        .header("if-match", "\"1\"")
        .json(&json!({"title": "Cached, edited"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = c.get(&url).send().await.unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["version"].as_i64(), v["title"].as_str()),
        (Some(2), Some("Cached, edited"))
    );

    // An edit the gateway does not see (straight to catalog) stays hidden
    // behind the cache…
    let r = c
        .patch(format!("{}/admin/products/{id}", s.catalog_http))
        .header("x-shopstream-admin", "true")
        .header("x-tenant-id", "default")
        .header("if-match", "\"2\"")
        .json(&json!({"title": "Edited elsewhere"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    assert_eq!(version_of(&c, &url).await, 2, "served from the cache");
    // …except to a reader that asks for no cache…
    let r = c
        .get(&url)
        .header("cache-control", "no-cache")
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["version"], 3);
    // …which refreshed it for everyone.
    assert_eq!(version_of(&c, &url).await, 3);

    // Another edit elsewhere: its product.events record invalidates the
    // cache, and the next read finds the new version.
    let r = c
        .patch(format!("{}/admin/products/{id}", s.catalog_http))
        .header("x-shopstream-admin", "true")
        .header("x-tenant-id", "default")
        .header("if-match", "\"3\"")
        .json(&json!({"title": "Edited elsewhere again"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(version_of(&c, &url).await, 3, "served from the cache");
    let bus = KafkaBus::connect(&testkit::stack().await.endpoints).unwrap();
    bus.publish(&s.product_topic, &cdc_event(&id, 4))
        .await
        .unwrap();
    let title = testkit::eventually(
        "the event invalidated the cache",
        Duration::from_secs(30),
        || {
            let (c, url) = (c.clone(), url.clone());
            async move {
                let v: Value = c.get(&url).send().await.ok()?.json().await.ok()?;
                (v["version"] == 4).then(|| v["title"].as_str().unwrap_or_default().to_string())
            }
        },
    )
    .await;
    assert_eq!(title, "Edited elsewhere again");
    let m = metrics(&c, base).await;
    let invalidations = "shopstream_product_cache_invalidations_total";
    assert!(
        counter(&m, invalidations, r#"source="event""#) >= 1.0,
        "{m}"
    );
    assert!(
        counter(&m, invalidations, r#"source="write""#) >= 1.0,
        "{m}"
    );
}

fn view(id: &str, version: i64) -> ProductView {
    ProductView {
        id: id.into(),
        title: format!("v{version}"),
        description: String::new(),
        category: "home".into(),
        region: "eu".into(),
        skus: vec![],
        version,
        updated_at_ms: 0,
        image_url: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_reader_never_puts_back_a_replaced_version() {
    let stack = testkit::stack().await;
    let redis = shopstream_platform::cache::connect(&stack.endpoints.redis_url)
        .await
        .unwrap();
    let cache = ProductCache::new(redis, 60, None, &Metrics::new("gateway"));
    let tenant = testkit::unique("t");
    let ids = ["p".to_string()];
    let cached = |c: &ProductCache| {
        let (c, tenant, ids) = (c.clone(), tenant.clone(), ids.clone());
        async move {
            c.get_many(&tenant, &ids, false).await[0]
                .as_ref()
                .map(|v| v.version)
        }
    };

    // A reader read version 4, then the event for 5 came: its fill is refused.
    assert!(cache.invalidate(&tenant, "p", 5, "event").await.unwrap());
    assert!(!cache.fill(&tenant, &view("p", 4), 60).await);
    assert_eq!(cached(&cache).await, None);
    // Version 5 itself may be cached, and then an older event changes nothing.
    assert!(cache.fill(&tenant, &view("p", 5), 60).await);
    assert_eq!(cached(&cache).await, Some(5));
    assert!(!cache.invalidate(&tenant, "p", 5, "event").await.unwrap());
    assert!(!cache.invalidate(&tenant, "p", 3, "event").await.unwrap());
    assert!(!cache.fill(&tenant, &view("p", 4), 60).await);
    assert_eq!(cached(&cache).await, Some(5));
    // A newer version replaces it; an event for a newer one removes it.
    assert!(cache.fill(&tenant, &view("p", 6), 60).await);
    assert!(cache.invalidate(&tenant, "p", 7, "event").await.unwrap());
    assert_eq!(cached(&cache).await, None);
    // A bypassing read sees nothing even when cached.
    assert!(cache.fill(&tenant, &view("p", 7), 60).await);
    assert!(cache.get_many(&tenant, &ids, true).await[0].is_none());
    assert_eq!(cached(&cache).await, Some(7));
    // Another tenant's product of the same id is another entry.
    let other = testkit::unique("t");
    assert!(cache.get_many(&other, &ids, false).await[0].is_none());
}
