//! The harness: `spawn_app()` runs the real `run()` on port-0 listeners with
//! a fresh database on the test stack, and helpers read the seed file as an
//! independent oracle.

use std::{net::SocketAddr, path::PathBuf};

use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::Value;
use shopstream_catalog::Config;
use shopstream_platform::db;
use shopstream_runtime::testkit;
use sqlx::PgPool;

pub const ADMIN: (&str, &str) = ("x-shopstream-admin", "true");

/// A running catalog on its own database.
pub struct TestApp {
    pub http: String,
    pub grpc: SocketAddr,
    /// A pool on the service's database, for assertions.
    pub pool: PgPool,
    pub client: reqwest::Client,
    service: testkit::RunningService,
}

pub async fn spawn_app() -> TestApp {
    let stack = testkit::stack().await;
    let database = testkit::unique("catalog");
    let service = testkit::spawn_service::<shopstream_catalog::Server>(|service| Config {
        service,
        database: database.clone(),
    })
    .await;
    // The HTTP server starts only after migrations, so ready means migrated.
    let pool = db::connect(&stack.endpoints.postgres_url, &database)
        .await
        .unwrap();
    TestApp {
        http: service.http.clone(),
        grpc: service.grpc_addr.expect("catalog serves gRPC"),
        pool,
        client: reqwest::Client::builder()
            .timeout(testkit::READY_TIMEOUT)
            .build()
            .unwrap(),
        service,
    }
}

/// A response's status, headers and JSON body (`Null` when not JSON).
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
}

impl Reply {
    /// Field names of a problem document's `errors`.
    pub fn fields(&self) -> Vec<String> {
        self.json["errors"]
            .as_array()
            .map(|es| {
                es.iter()
                    .map(|e| e["field"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn etag(&self) -> Option<&str> {
        self.headers.get("etag").and_then(|v| v.to_str().ok())
    }

    #[track_caller]
    pub fn assert_problem(&self, status: u16) {
        assert_eq!(self.status.as_u16(), status, "{}", self.json);
        assert_eq!(
            self.headers
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/problem+json"),
            "{}",
            self.json
        );
        assert_eq!(self.json["status"], status);
    }
}

impl TestApp {
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Reply {
        let mut req = self.client.request(method, format!("{}{path}", self.http));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            json,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, &[], None).await
    }

    /// Create a product as an admin; panics unless 201.
    pub async fn create(&self, body: Value) -> Value {
        let r = self
            .call(Method::POST, "/admin/products", &[ADMIN], Some(body))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
        r.json
    }

    /// Stop the service and check it shut down cleanly.
    pub async fn stop(self) {
        self.service.stop().await.unwrap();
    }
}

/// A product body for `POST /admin/products` with one SKU per price.
pub fn product(slug: &str, category: &str, regions: &[&str], prices_minor: &[i64]) -> Value {
    let code = slug.to_ascii_uppercase();
    serde_json::json!({
        "slug": slug,
        "title": format!("Title {slug}"),
        "description": "made by the integration tests",
        "category": category,
        "regions": regions,
        "skus": prices_minor.iter().enumerate().map(|(i, p)| serde_json::json!({
            "sku_id": format!("{code}-{i}"),
            "attributes": {"variant": format!("v{i}")},
            "price": {"amount_minor": p, "currency": "EUR"},
            "stock": 10 + i as i64,
        })).collect::<Vec<_>>(),
    })
}

pub fn seed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seed/products.json")
}

/// The seed file's products, read independently of the crate's loader.
pub fn seed_products() -> Vec<Value> {
    let bytes = std::fs::read(seed_path()).unwrap();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    v["products"].as_array().unwrap().clone()
}

/// Outbox rows of one product: (payload, event_type, xmin).
pub async fn outbox_rows(pool: &PgPool, product_id: &str) -> Vec<(Value, String, String)> {
    sqlx::query_as(
        "SELECT payload, event_type, xmin::text FROM outbox \
         WHERE tenant_id = 'default' AND aggregate_id = $1::uuid ORDER BY created_at, id",
    )
    .bind(product_id)
    .fetch_all(pool)
    .await
    .unwrap()
}
