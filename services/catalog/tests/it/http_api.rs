//! The HTTP API end to end: create → get → list, validation (422 listing every
//! field), unknown ids (404), admin and tenant handling.

use reqwest::{Method, StatusCode};

use crate::support::{ADMIN, product, spawn_app};

#[tokio::test]
async fn create_then_get_then_list() {
    let app = spawn_app().await;
    let created = app
        .create(product(
            "walnut-desk",
            "furniture",
            &["eu", "uk"],
            &[45_000, 39_900],
        ))
        .await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(created["version"], 1);
    assert_eq!(created["min_price"]["amount_minor"], 39_900);
    assert_eq!(created["regions"], serde_json::json!(["eu", "uk"]));
    assert_eq!(created["skus"][1]["name"], "v1");

    let got = app.get(&format!("/products/{id}")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.etag(), Some("\"1\""));
    assert_eq!(got.json, created);

    app.create(product("oak-desk", "furniture", &["us"], &[30_000]))
        .await;
    app.create(product("pine-stool", "seating", &["eu"], &[5_000]))
        .await;
    let list = app
        .get("/products?category=furniture&region=eu&sort=price_asc")
        .await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.json);
    let items = list.json["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0], created);
    assert!(list.json["next_cursor"].is_null());

    let list = app.get("/products?category=furniture&sort=name").await;
    let slugs: Vec<&str> = list.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["oak-desk", "walnut-desk"]);
    app.stop().await;
}

#[tokio::test]
async fn validation_errors_list_every_invalid_field() {
    let app = spawn_app().await;
    let body = serde_json::json!({
        "slug": "Not a slug",
        "title": "",
        "regions": ["eu", "eu"],
        "skus": [
            {"sku_id": "OK-1", "price": {"amount_minor": -5, "currency": "EUR"}, "stock": -1},
            {"sku_id": "OK-2", "price": {"amount_minor": 100, "currency": "USD"}},
            {"sku_id": "bad code", "price": {"currency": "EUR"}}
        ]
    });
    let r = app
        .call(Method::POST, "/admin/products", &[ADMIN], Some(body))
        .await;
    r.assert_problem(422);
    assert_eq!(r.json["code"], "unprocessable");
    assert_eq!(
        r.fields(),
        [
            "slug",
            "title",
            "category",
            "regions[1]",
            "skus[0].price.amount_minor",
            "skus[0].stock",
            "skus[2].sku_id",
            "skus[2].price.amount_minor",
        ]
    );
    assert!(r.json["request_id"].as_str().is_some_and(|s| !s.is_empty()));

    // Listing parameters are validated the same way.
    let r = app
        .get("/products?limit=500&sort=cheapest&min_price=9&max_price=1&cursor=%25%25")
        .await;
    r.assert_problem(422);
    assert_eq!(r.fields(), ["max_price", "sort", "limit"]);
    let r = app.get("/products?cursor=not-a-cursor").await;
    r.assert_problem(422);
    assert_eq!(r.fields(), ["cursor"]);

    // Nothing was written.
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM product")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(n, 0);
    app.stop().await;
}

#[tokio::test]
async fn unknown_products_are_404_problems() {
    let app = spawn_app().await;
    for path in [
        format!("/products/{}", uuid::Uuid::now_v7()),
        "/products/not-a-uuid".to_string(),
    ] {
        let r = app.get(&path).await;
        r.assert_problem(404);
        assert_eq!(r.json["code"], "not_found");
    }
    let r = app
        .call(
            Method::PATCH,
            &format!("/admin/products/{}", uuid::Uuid::now_v7()),
            &[ADMIN, ("if-match", "\"1\"")],
            Some(serde_json::json!({"title": "x"})),
        )
        .await;
    r.assert_problem(404);
    let r = app
        .call(
            Method::PUT,
            "/admin/skus/NO-SUCH-SKU/stock",
            &[ADMIN],
            Some(serde_json::json!({"stock": 1})),
        )
        .await;
    r.assert_problem(404);
    app.stop().await;
}

#[tokio::test]
async fn admin_header_duplicates_and_tenants() {
    let app = spawn_app().await;
    let body = product("copper-kettle", "kitchen", &["eu"], &[7_900]);
    let r = app
        .call(Method::POST, "/admin/products", &[], Some(body.clone()))
        .await;
    r.assert_problem(403);

    let created = app.create(body.clone()).await;
    let id = created["id"].as_str().unwrap();
    let r = app
        .call(
            Method::POST,
            "/admin/products",
            &[ADMIN],
            Some(body.clone()),
        )
        .await;
    r.assert_problem(409);

    // Another tenant neither sees the product nor collides with its keys.
    let acme = ("x-tenant-id", "acme");
    let r = app
        .call(Method::GET, &format!("/products/{id}"), &[acme], None)
        .await;
    r.assert_problem(404);
    let r = app
        .call(Method::POST, "/admin/products", &[ADMIN, acme], Some(body))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let rows: Vec<String> =
        sqlx::query_scalar("SELECT tenant_id FROM product WHERE slug = 'copper-kettle' ORDER BY 1")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(rows, ["acme", "default"]);
    let r = app
        .call(
            Method::GET,
            "/products",
            &[("x-tenant-id", "no spaces allowed")],
            None,
        )
        .await;
    r.assert_problem(400);
    app.stop().await;
}
