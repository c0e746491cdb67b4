//! Optimistic concurrency and the outbox: a stale edit is 409 and writes
//! nothing; a successful edit writes its `ProductChanged` rows in the same
//! transaction as the product (same `xmin`), with the new version and the
//! caller's trace context.

use reqwest::{Method, StatusCode};

use crate::support::{ADMIN, outbox_rows, product, spawn_app};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

async fn product_xmin_and_version(pool: &sqlx::PgPool, id: &str) -> (String, i64) {
    sqlx::query_as(
        "SELECT xmin::text, version FROM product WHERE tenant_id = 'default' AND id = $1::uuid",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn edits_are_versioned_and_write_the_outbox_atomically() {
    let app = spawn_app().await;
    let created = app
        .create(product(
            "linen-shirt",
            "apparel",
            &["eu", "us"],
            &[5_900, 6_900],
        ))
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    let path = format!("/admin/products/{id}");

    let rows = outbox_rows(&app.pool, &id).await;
    assert_eq!(rows.len(), 2, "one created event per sku");
    let (xmin, _) = product_xmin_and_version(&app.pool, &id).await;
    for (payload, event_type, row_xmin) in &rows {
        assert_eq!(event_type, "shopstream.events.v1.ProductChanged");
        assert_eq!(payload["version"], 1);
        assert_eq!(payload["kind"], "created");
        assert_eq!(payload["product_id"], id.as_str());
        assert_eq!(row_xmin, &xmin, "create and its events in one transaction");
    }

    // A traced edit at the current version.
    let traceparent = format!("00-{TRACE_ID}-00f067aa0ba902b7-01");
    let r = app
        .call(
            Method::PATCH,
            &path,
            &[ADMIN, ("if-match", "\"1\""), ("traceparent", &traceparent)],
            Some(serde_json::json!({
                "title": "Linen Shirt, washed",
                "skus": [{"sku_id": "LINEN-SHIRT-1", "price": {"amount_minor": 4_900, "currency": "EUR"}}]
            })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.etag(), Some("\"2\""));
    assert_eq!(r.json["version"], 2);

    let rows = outbox_rows(&app.pool, &id).await;
    assert_eq!(rows.len(), 4);
    let (xmin, version) = product_xmin_and_version(&app.pool, &id).await;
    assert_eq!(version, 2);
    let v2: Vec<_> = rows.iter().filter(|(p, _, _)| p["version"] == 2).collect();
    assert_eq!(v2.len(), 2, "one updated event per sku");
    for (payload, _, row_xmin) in &v2 {
        assert_eq!(
            row_xmin, &xmin,
            "the edit and its events in one transaction"
        );
        assert_eq!(payload["kind"], "updated");
        assert_eq!(payload["region"], "eu");
        let tp = payload["trace"]["traceparent"].as_str().unwrap_or_default();
        assert!(tp.contains(TRACE_ID), "trace context missing: {payload}");
    }
    let repriced = v2
        .iter()
        .find(|(p, _, _)| p["sku_id"] == "LINEN-SHIRT-1")
        .unwrap();
    assert_eq!(
        repriced.0["price"],
        serde_json::json!({"amount_minor": 4_900, "currency": "EUR"})
    );

    // A stale edit (still at version 1) is a 409 and writes nothing.
    let r = app
        .call(
            Method::PATCH,
            &path,
            &[ADMIN, ("if-match", "\"1\"")],
            Some(serde_json::json!({"title": "lost update"})),
        )
        .await;
    r.assert_problem(409);
    assert_eq!(r.json["code"], "conflict");
    assert_eq!(r.etag(), Some("\"2\""), "the 409 names the current version");
    // So does the same stale version sent in the body.
    let r = app
        .call(
            Method::PATCH,
            &path,
            &[ADMIN],
            Some(serde_json::json!({"version": 1, "title": "lost update"})),
        )
        .await;
    r.assert_problem(409);
    // And an invalid edit.
    let r = app
        .call(
            Method::PATCH,
            &path,
            &[ADMIN, ("if-match", "\"2\"")],
            Some(serde_json::json!({"title": "", "regions": []})),
        )
        .await;
    r.assert_problem(422);
    assert_eq!(r.fields(), ["title", "regions"]);
    assert_eq!(outbox_rows(&app.pool, &id).await.len(), 4);
    let got = app.get(&format!("/products/{id}")).await;
    assert_eq!(got.json["title"], "Linen Shirt, washed");
    assert_eq!(got.json["version"], 2);

    // A stock change bumps the version and writes one event, atomically.
    let r = app
        .call(
            Method::PUT,
            "/admin/skus/LINEN-SHIRT-0/stock",
            &[ADMIN, ("if-match", "\"2\"")],
            Some(serde_json::json!({"stock": 0, "reason": "sold out"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(
        (r.json["version"].as_i64(), r.json["sku"]["stock"].as_i64()),
        (Some(3), Some(0))
    );
    let rows = outbox_rows(&app.pool, &id).await;
    assert_eq!(rows.len(), 5);
    let (xmin, version) = product_xmin_and_version(&app.pool, &id).await;
    let (payload, _, row_xmin) = rows.iter().find(|(p, _, _)| p["version"] == 3).unwrap();
    assert_eq!((version, row_xmin), (3, &xmin));
    assert_eq!(payload["sku_id"], "LINEN-SHIRT-0");
    assert_eq!(payload["stock"], 0);
    let stock: i64 = sqlx::query_scalar(
        "SELECT quantity FROM stock WHERE tenant_id = 'default' AND sku_id = 'LINEN-SHIRT-0'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(stock, 0);

    // A stale stock change is refused too.
    let r = app
        .call(
            Method::PUT,
            "/admin/skus/LINEN-SHIRT-0/stock",
            &[ADMIN, ("if-match", "\"2\"")],
            Some(serde_json::json!({"stock": 5})),
        )
        .await;
    r.assert_problem(409);
    assert_eq!(outbox_rows(&app.pool, &id).await.len(), 5);
    app.stop().await;
}
