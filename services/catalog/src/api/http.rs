//! The catalog's HTTP routes: public reads and the admin writes, translated
//! between JSON and the use cases. Every error is problem+json.
//!
//! Routes (wrapped by `platform::http::router`, which adds `/healthz`,
//! `/readyz`, `/metrics`, request ids, deadlines and body limits):
//! - `GET /products?category&region&min_price&max_price&currency&sort&limit&cursor`
//!   → 200 `{ items, next_cursor }`; 422 on invalid parameters.
//! - `GET /products/{id}` → 200 with `ETag: "<version>"`; 404 when unknown.
//! - `POST /admin/products` → 201 with `Location` and `ETag`; 422 listing every
//!   invalid field; 409 when the slug or a SKU code is taken.
//! - `PATCH /admin/products/{id}` with `If-Match: "<version>"` or a `version`
//!   field → 200 with the new `ETag`; 409 when the version is stale; 404; 422.
//! - `PUT /admin/skus/{sku}/stock` `{ "stock": n, "version"?: v }` → 200
//!   `{ product_id, sku, version }` with `ETag`; 404; 409; 422.
//!
//! Tenancy: the tenant is the `x-tenant-id` header, else the configured
//! default tenant; an invalid value is 400.
//!
//! Admin: the catalog does not authenticate. The gateway validates the access
//! token, enforces the admin role, strips any client-sent
//! `x-shopstream-admin` header and sets `x-shopstream-admin: true` on admin
//! requests; `/admin/*` answers 403 without it. The catalog's listener must
//! therefore only be reachable through the gateway.

use std::collections::BTreeMap;

use axum::{
    Json, Router,
    extract::{FromRequestParts, Path, Query, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, patch, post, put},
};
use serde::{Deserialize, Deserializer, Serialize};
use shopstream_platform::{ErrorCode, Problem, http::ApiJson};

use crate::{
    domain::{
        FieldErrors, ListParams, ListQuery, Money, MoneyDraft, PatchDraft, Product, ProductDraft,
        ProductId, Sku, SkuDraft, SkuId, SkuPatchDraft, StockChange, TenantId,
        product::stock_reason,
    },
    error::Error,
    service::{Catalog, StockRequest},
};

/// Header carrying the tenant (the gateway copies it from the access token).
pub const TENANT_HEADER: &str = "x-tenant-id";
/// Header the gateway sets on requests of callers with the admin role.
pub const ADMIN_HEADER: &str = "x-shopstream-admin";

/// What the handlers share.
#[derive(Clone, Debug)]
pub struct AppState {
    pub catalog: Catalog,
    /// Tenant of requests without `x-tenant-id`.
    pub default_tenant: TenantId,
}

/// The catalog's routes, without the operational ones.
pub fn routes(state: AppState) -> Router {
    let admin = Router::new()
        .route("/admin/products", post(create_product))
        .route("/admin/products/{id}", patch(update_product))
        .route("/admin/skus/{sku}/stock", put(put_stock))
        .route_layer(middleware::from_fn(require_admin));
    Router::new()
        .route("/products", get(list_products))
        .route("/products/{id}", get(get_product))
        .merge(admin)
        .with_state(state)
}

async fn require_admin(req: Request, next: Next) -> Response {
    let admin = req
        .headers()
        .get(ADMIN_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if admin {
        next.run(req).await
    } else {
        Problem::new(
            ErrorCode::PermissionDenied,
            "admin routes need the admin role, asserted by the gateway",
        )
        .into_response()
    }
}

/// The request's tenant.
#[derive(Debug, Clone)]
pub struct Tenant(pub TenantId);

impl FromRequestParts<AppState> for Tenant {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Tenant, Problem> {
        match parts.headers.get(TENANT_HEADER) {
            None => Ok(Tenant(state.default_tenant.clone())),
            Some(v) => v
                .to_str()
                .map_err(|_| "is not ASCII".to_string())
                .and_then(TenantId::parse)
                .map(Tenant)
                .map_err(|m| Error::BadRequest(format!("{TENANT_HEADER} {m}")).to_problem()),
        }
    }
}

/// A product as JSON: the domain fields plus its lowest price.
#[derive(Serialize)]
struct ProductBody<'a> {
    #[serde(flatten)]
    product: &'a Product,
    min_price: Money,
}

fn body(p: &Product) -> ProductBody<'_> {
    ProductBody {
        product: p,
        min_price: p.min_price(),
    }
}

fn etag(version: i64) -> HeaderValue {
    // Digits and quotes are always a valid header value.
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

fn product_response(status: StatusCode, p: &Product) -> Response {
    let mut resp = (status, Json(body(p))).into_response();
    resp.headers_mut().insert(header::ETAG, etag(p.version));
    resp
}

fn error_response(e: Error) -> Response {
    let current = match &e {
        Error::VersionConflict { current, .. } => Some(*current),
        _ => None,
    };
    let mut resp = e.to_problem().into_response();
    if let Some(v) = current {
        // Tell the client which version to re-read and retry from.
        resp.headers_mut().insert(header::ETAG, etag(v));
    }
    resp
}

/// An id that cannot exist is simply not found.
fn product_id(raw: &str) -> Result<ProductId, Error> {
    ProductId::parse(raw).map_err(|_| Error::ProductNotFound(raw.to_string()))
}

/// `If-Match: "<version>"` (or the bare number), if sent.
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, Error> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .map(|s| s.trim().trim_matches('"'))
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|n| *n >= 1)
        .map(Some)
        .ok_or_else(|| {
            Error::BadRequest("If-Match must be an ETag from this service, e.g. \"3\"".into())
        })
}

/// The version the client edits from: `If-Match` or the body's `version`.
fn expected_version(
    headers: &HeaderMap,
    body: Option<i64>,
    required: bool,
) -> Result<Option<i64>, Error> {
    match (if_match(headers)?, body) {
        (Some(h), Some(b)) if h != b => Err(Error::invalid(FieldErrors::single(
            "version",
            format!("is {b} but If-Match says {h}"),
        ))),
        (Some(v), _) | (None, Some(v)) => Ok(Some(v)),
        (None, None) if required => Err(Error::invalid(FieldErrors::single(
            "version",
            "is required: send If-Match: \"<version>\" or a version field",
        ))),
        (None, None) => Ok(None),
    }
}

#[derive(Debug, Default, Deserialize)]
struct ListQueryString {
    category: Option<String>,
    region: Option<String>,
    min_price: Option<String>,
    max_price: Option<String>,
    currency: Option<String>,
    sort: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

#[derive(Serialize)]
struct ListResponse<'a> {
    items: Vec<ProductBody<'a>>,
    next_cursor: Option<String>,
}

async fn list_products(
    State(s): State<AppState>,
    Tenant(tenant): Tenant,
    Query(q): Query<ListQueryString>,
) -> Response {
    let params = ListParams {
        category: q.category,
        region: q.region,
        min_price: q.min_price,
        max_price: q.max_price,
        currency: q.currency,
        sort: q.sort,
        limit: q.limit,
        cursor: q.cursor,
    };
    let query = match ListQuery::parse(&params) {
        Ok(q) => q,
        Err(f) => return error_response(Error::invalid(f)),
    };
    match s.catalog.list(&tenant, &query).await {
        Ok(page) => Json(ListResponse {
            items: page.items.iter().map(body).collect(),
            next_cursor: page.next.map(|c| c.encode()),
        })
        .into_response(),
        Err(e) => error_response(e),
    }
}

async fn get_product(
    State(s): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Response {
    let result = async { s.catalog.get(&tenant, product_id(&id)?).await }.await;
    match result {
        Ok(p) => product_response(StatusCode::OK, &p),
        Err(e) => error_response(e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MoneyBody {
    amount_minor: Option<i64>,
    currency: Option<String>,
}

impl From<MoneyBody> for MoneyDraft {
    fn from(m: MoneyBody) -> MoneyDraft {
        MoneyDraft {
            amount_minor: m.amount_minor,
            currency: m.currency,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSkuBody {
    sku_id: Option<String>,
    name: Option<String>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    price: Option<MoneyBody>,
    stock: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    slug: Option<String>,
    title: Option<String>,
    description: Option<String>,
    category: Option<String>,
    regions: Option<Vec<String>>,
    tags: Option<Vec<String>>,
    image_key: Option<String>,
    skus: Option<Vec<NewSkuBody>>,
}

async fn create_product(
    State(s): State<AppState>,
    Tenant(tenant): Tenant,
    ApiJson(b): ApiJson<CreateBody>,
) -> Response {
    let draft = ProductDraft {
        slug: b.slug,
        title: b.title,
        description: b.description,
        category: b.category,
        regions: b.regions,
        tags: b.tags,
        image_key: b.image_key,
        skus: b.skus.map(|skus| {
            skus.into_iter()
                .map(|s| SkuDraft {
                    sku_id: s.sku_id,
                    name: s.name,
                    attributes: s.attributes,
                    price: s.price.map(Into::into),
                    stock: s.stock,
                })
                .collect()
        }),
    };
    match s.catalog.create(&tenant, &draft).await {
        Ok(p) => {
            let mut resp = product_response(StatusCode::CREATED, &p);
            if let Ok(loc) = HeaderValue::from_str(&format!("/products/{}", p.id)) {
                resp.headers_mut().insert(header::LOCATION, loc);
            }
            resp
        }
        Err(e) => error_response(e),
    }
}

/// `Some(None)` for an explicit `null`, `None` when the field is absent.
fn nullable<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SkuPatchBody {
    sku_id: Option<String>,
    name: Option<String>,
    price: Option<MoneyBody>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    version: Option<i64>,
    title: Option<String>,
    description: Option<String>,
    category: Option<String>,
    regions: Option<Vec<String>>,
    tags: Option<Vec<String>>,
    #[serde(default, deserialize_with = "nullable")]
    image_key: Option<Option<String>>,
    skus: Option<Vec<SkuPatchBody>>,
}

async fn update_product(
    State(s): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(b): ApiJson<PatchBody>,
) -> Response {
    let result = async {
        let version = expected_version(&headers, b.version, true)?.unwrap_or_default();
        let draft = PatchDraft {
            title: b.title,
            description: b.description,
            category: b.category,
            regions: b.regions,
            tags: b.tags,
            image_key: b.image_key,
            skus: b.skus.map(|skus| {
                skus.into_iter()
                    .map(|s| SkuPatchDraft {
                        sku_id: s.sku_id,
                        name: s.name,
                        price: s.price.map(Into::into),
                    })
                    .collect()
            }),
        };
        s.catalog
            .update(&tenant, product_id(&id)?, version, &draft)
            .await
    }
    .await;
    match result {
        Ok(p) => product_response(StatusCode::OK, &p),
        Err(e) => error_response(e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StockBody {
    /// The new absolute stock (PUT is idempotent; deltas go through gRPC).
    stock: Option<i64>,
    version: Option<i64>,
    reason: Option<String>,
}

#[derive(Serialize)]
struct StockResponse<'a> {
    product_id: ProductId,
    sku: &'a Sku,
    version: i64,
}

async fn put_stock(
    State(s): State<AppState>,
    Tenant(tenant): Tenant,
    Path(sku): Path<String>,
    headers: HeaderMap,
    ApiJson(b): ApiJson<StockBody>,
) -> Response {
    let result = async {
        let mut e = FieldErrors::new();
        let stock = e.required("stock", b.stock);
        if let Some(r) = &b.reason {
            e.check("reason", stock_reason(r));
        }
        let version = match expected_version(&headers, b.version, false) {
            Ok(v) => v,
            Err(Error::Invalid { fields, .. }) => {
                e.append(fields);
                None
            }
            Err(other) => return Err(other),
        };
        let Some(stock) = stock.filter(|_| e.is_empty()) else {
            return Err(Error::invalid(e));
        };
        // A code that cannot exist is simply not found.
        let sku_id = SkuId::parse(&sku).map_err(|_| Error::SkuNotFound(sku.clone()))?;
        tracing::info!(sku_id = %sku_id, stock, reason = b.reason.as_deref().unwrap_or(""), "stock set");
        s.catalog
            .update_stock(
                &tenant,
                &StockRequest {
                    sku_id,
                    product_id: None,
                    change: StockChange::SetTo(stock),
                    expected_version: version,
                },
            )
            .await
            .map(|p| (p, sku))
    }
    .await;
    match result {
        Ok((p, sku)) => {
            let Some(sku) = p.skus.iter().find(|s| s.id.as_str() == sku) else {
                return error_response(Error::Internal("updated sku missing".into()));
            };
            let mut resp = Json(StockResponse {
                product_id: p.id,
                sku,
                version: p.version,
            })
            .into_response();
            resp.headers_mut().insert(header::ETAG, etag(p.version));
            resp
        }
        Err(e) => error_response(e),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use shopstream_platform::{clock::ManualClock, ids::SequentialIdGen};
    use tower::ServiceExt;

    use super::*;
    use crate::adapters::memory::MemoryProductRepository;

    fn app() -> Router {
        let catalog = Catalog::new(
            Arc::new(MemoryProductRepository::new()),
            Arc::new(ManualClock::new(1_700_000_000_000)),
            Arc::new(SequentialIdGen::new(1)),
        );
        routes(AppState {
            catalog,
            default_tenant: TenantId::default(),
        })
    }

    async fn call(
        app: &Router,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Option<serde_json::Value>,
    ) -> (StatusCode, HeaderMap, serde_json::Value) {
        let mut req = axum::http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (status, headers, json)
    }

    fn new_product() -> serde_json::Value {
        serde_json::json!({
            "slug": "desk-lamp",
            "title": "Desk Lamp",
            "category": "home",
            "regions": ["eu"],
            "skus": [{"sku_id": "LAMP-1", "price": {"amount_minor": 3999, "currency": "EUR"}, "stock": 4}]
        })
    }

    const ADMIN: (&str, &str) = (ADMIN_HEADER, "true");

    #[tokio::test]
    async fn admin_routes_need_the_gateway_header() {
        let app = app();
        let (s, h, j) = call(&app, "POST", "/admin/products", &[], Some(new_product())).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert_eq!(h[header::CONTENT_TYPE], "application/problem+json");
        assert_eq!(j["code"], "permission_denied");
        let (s, _, _) = call(
            &app,
            "POST",
            "/admin/products",
            &[(ADMIN_HEADER, "false")],
            Some(new_product()),
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, _, _) = call(
            &app,
            "POST",
            "/admin/products",
            &[ADMIN],
            Some(new_product()),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED);
    }

    #[tokio::test]
    async fn create_get_patch_with_etags() {
        let app = app();
        let (s, h, created) = call(
            &app,
            "POST",
            "/admin/products",
            &[ADMIN],
            Some(new_product()),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED);
        assert_eq!(h[header::ETAG], "\"1\"");
        let id = created["id"].as_str().unwrap().to_string();
        assert_eq!(h[header::LOCATION], format!("/products/{id}").as_str());
        assert_eq!(created["min_price"]["amount_minor"], 3999);
        assert_eq!(created["skus"][0]["sku_id"], "LAMP-1");

        let (s, h, got) = call(&app, "GET", &format!("/products/{id}"), &[], None).await;
        assert_eq!(
            (s, &h[header::ETAG]),
            (StatusCode::OK, &HeaderValue::from_static("\"1\""))
        );
        assert_eq!(got, created);

        let patch = serde_json::json!({"title": "Reading Lamp"});
        let uri = format!("/admin/products/{id}");
        let (s, h, j) = call(
            &app,
            "PATCH",
            &uri,
            &[ADMIN, ("if-match", "\"1\"")],
            Some(patch.clone()),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{j}");
        assert_eq!(h[header::ETAG], "\"2\"");
        assert_eq!(
            (j["version"].as_i64(), j["title"].as_str()),
            (Some(2), Some("Reading Lamp"))
        );

        // Stale: 409 with the current version as ETag.
        let (s, h, j) = call(
            &app,
            "PATCH",
            &uri,
            &[ADMIN, ("if-match", "\"1\"")],
            Some(patch.clone()),
        )
        .await;
        assert_eq!(s, StatusCode::CONFLICT);
        assert_eq!(h[header::ETAG], "\"2\"");
        assert_eq!(j["code"], "conflict");
        // The body's version works too; both present must agree.
        let (s, _, _) = call(
            &app,
            "PATCH",
            &uri,
            &[ADMIN],
            Some(serde_json::json!({"version": 2, "title": "x"})),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        let (s, _, j) = call(
            &app,
            "PATCH",
            &uri,
            &[ADMIN, ("if-match", "\"3\"")],
            Some(serde_json::json!({"version": 2, "title": "x"})),
        )
        .await;
        assert_eq!(
            (s, j["errors"][0]["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("version"))
        );
        let (s, _, j) = call(
            &app,
            "PATCH",
            &uri,
            &[ADMIN],
            Some(serde_json::json!({"title": "x"})),
        )
        .await;
        assert_eq!(
            (s, j["errors"][0]["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("version"))
        );
        let (s, _, _) = call(
            &app,
            "PATCH",
            &uri,
            &[ADMIN, ("if-match", "W/abc")],
            Some(patch),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let (s, _, j) = call(
            &app,
            "PATCH",
            &uri,
            &[ADMIN],
            Some(serde_json::json!({"version": 3, "titel": "x"})),
        )
        .await;
        assert_eq!(
            (s, j["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("unprocessable"))
        );
    }

    #[tokio::test]
    async fn unknown_ids_are_404_and_tenants_are_separate() {
        let app = app();
        let (s, _, created) = call(
            &app,
            "POST",
            "/admin/products",
            &[ADMIN],
            Some(new_product()),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED);
        let id = created["id"].as_str().unwrap();
        let (s, _, _) = call(
            &app,
            "GET",
            &format!("/products/{id}"),
            &[(TENANT_HEADER, "acme")],
            None,
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _, j) = call(&app, "GET", "/products/not-a-uuid", &[], None).await;
        assert_eq!(
            (s, j["status"].as_i64()),
            (StatusCode::NOT_FOUND, Some(404))
        );
        let (s, _, _) = call(
            &app,
            "GET",
            "/products",
            &[(TENANT_HEADER, "bad tenant")],
            None,
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let (s, _, j) = call(&app, "GET", "/products", &[(TENANT_HEADER, "acme")], None).await;
        assert_eq!(
            (s, j["items"].as_array().map(Vec::len)),
            (StatusCode::OK, Some(0))
        );
        let (s, _, _) = call(
            &app,
            "PUT",
            "/admin/skus/NOPE-1/stock",
            &[ADMIN],
            Some(serde_json::json!({"stock": 1})),
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _, _) = call(
            &app,
            "PUT",
            "/admin/skus/bad%20code/stock",
            &[ADMIN],
            Some(serde_json::json!({"stock": 1})),
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn validation_errors_list_every_field() {
        let app = app();
        let body = serde_json::json!({
            "slug": "Bad Slug",
            "category": "",
            "regions": [],
            "skus": [{"sku_id": "OK-1", "price": {"amount_minor": -1, "currency": "euro"}}]
        });
        let (s, h, j) = call(&app, "POST", "/admin/products", &[ADMIN], Some(body)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(h[header::CONTENT_TYPE], "application/problem+json");
        let fields: Vec<&str> = j["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(
            fields,
            [
                "slug",
                "title",
                "category",
                "regions",
                "skus[0].price.amount_minor",
                "skus[0].price.currency"
            ]
        );
        let (s, _, j) = call(
            &app,
            "GET",
            "/products?limit=0&sort=cheap&min_price=x",
            &[],
            None,
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(j["errors"].as_array().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn put_stock_sets_and_refuses() {
        let app = app();
        let (_, _, created) = call(
            &app,
            "POST",
            "/admin/products",
            &[ADMIN],
            Some(new_product()),
        )
        .await;
        let (s, h, j) = call(
            &app,
            "PUT",
            "/admin/skus/LAMP-1/stock",
            &[ADMIN],
            Some(serde_json::json!({"stock": 9, "reason": "restock"})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{j}");
        assert_eq!(h[header::ETAG], "\"2\"");
        assert_eq!(
            (j["sku"]["stock"].as_i64(), j["version"].as_i64()),
            (Some(9), Some(2))
        );
        assert_eq!(j["product_id"], created["id"]);
        let (s, _, _) = call(
            &app,
            "PUT",
            "/admin/skus/LAMP-1/stock",
            &[ADMIN, ("if-match", "\"1\"")],
            Some(serde_json::json!({"stock": 1})),
        )
        .await;
        assert_eq!(s, StatusCode::CONFLICT);
        let (s, _, j) = call(
            &app,
            "PUT",
            "/admin/skus/LAMP-1/stock",
            &[ADMIN],
            Some(serde_json::json!({"stock": -1})),
        )
        .await;
        assert_eq!(
            (s, j["errors"][0]["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("stock"))
        );
        let (s, _, j) = call(
            &app,
            "PUT",
            "/admin/skus/LAMP-1/stock",
            &[ADMIN],
            Some(serde_json::json!({})),
        )
        .await;
        assert_eq!(
            (s, j["errors"][0]["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("stock"))
        );
    }
}
