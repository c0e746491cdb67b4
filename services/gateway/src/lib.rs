//! The gateway: the REST + JSON edge for browsers and the CLI. It checks
//! access tokens locally, enforces the admin role, composes product cards with
//! a Redis cache, forwards auth to identity and admin writes to catalog, reads
//! the catalog over gRPC with deadlines, serves checkout (reservations, stock,
//! orders, refunds) over inventory's, orders' and payments' gRPC APIs, serves
//! product search and typeahead over search's gRPC API, relays
//! Stripe's webhook to payments, and documents all of it as OpenAPI (Swagger
//! UI at `/docs`). It holds no business rules.

pub mod auth;
pub mod catalog;
pub mod config;
pub mod inventory;
pub mod orders;
pub mod payments;
pub mod proxy;
pub mod search;
pub mod upstream;

use std::time::Duration;

use axum::{
    Router,
    extract::{DefaultBodyLimit, Request, State},
    response::Response,
    routing::{delete, get, patch, post, put},
};
use prometheus_client::metrics::counter::Counter;
use serde::Deserialize;
use shopstream_identity::adapters::keys::Verifier;
use shopstream_platform::{cache, grpc, health::Readiness, http};
use shopstream_proto::{
    catalog::v1::catalog_service_client::CatalogServiceClient,
    inventory::v1::inventory_service_client::InventoryServiceClient,
    orders::v1::orders_service_client::OrdersServiceClient,
    payments::v1::payments_service_client::PaymentsServiceClient,
    search::v1::search_service_client::SearchServiceClient,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{service::interceptor::InterceptedService, transport::Channel};
use utoipa::{OpenApi, ToSchema};
use utoipa_swagger_ui::SwaggerUi;

pub use config::Config;

/// A channel whose calls carry the current trace context.
pub type TracedChannel = InterceptedService<Channel, grpc::TraceInterceptor>;
pub type CatalogClient = CatalogServiceClient<TracedChannel>;
pub type InventoryClient = InventoryServiceClient<TracedChannel>;
pub type OrdersClient = OrdersServiceClient<TracedChannel>;
pub type PaymentsClient = PaymentsServiceClient<TracedChannel>;
pub type SearchClient = SearchServiceClient<TracedChannel>;

/// How long connecting to a gRPC backend may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Everything a handler needs. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub catalog: CatalogClient,
    pub inventory: InventoryClient,
    pub orders: OrdersClient,
    pub payments: PaymentsClient,
    pub search: SearchClient,
    pub verifier: Verifier,
    pub redis: cache::ConnectionManager,
    pub http: reqwest::Client,
    pub identity_http: String,
    pub catalog_http: String,
    pub payments_http: String,
    pub default_tenant: String,
    pub upstream_timeout: Duration,
    pub card_ttl_s: u64,
    pub body_limit_bytes: usize,
    pub card_hits: Counter,
    pub card_misses: Counter,
}

/// Body of signup and login (documentation only: the gateway forwards it).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct Credentials {
    email: String,
    password: String,
}

/// Create or edit a product (documentation only: forwarded to catalog).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct ProductWrite {
    slug: Option<String>,
    title: Option<String>,
    description: Option<String>,
    category: Option<String>,
    regions: Option<Vec<String>>,
    version: Option<i64>,
}

async fn to_identity(State(s): State<AppState>, req: Request) -> Response {
    proxy::forward(&s.http, &s.identity_http, req, &[], s.body_limit_bytes).await
}

async fn to_catalog_admin(
    State(s): State<AppState>,
    auth::Admin(claims): auth::Admin,
    req: Request,
) -> Response {
    let extra = [
        (proxy::ADMIN_HEADER, "true".to_string()),
        ("x-tenant-id", claims.tid.clone()),
        ("x-shopstream-user", claims.sub.clone()),
    ];
    proxy::forward(&s.http, &s.catalog_http, req, &extra, s.body_limit_bytes).await
}

/// Create an account (forwarded to identity). 201, 409 duplicate email, 422 invalid fields.
#[utoipa::path(post, path = "/auth/signup", tag = "auth", request_body = Credentials,
    responses((status = 201), (status = 409), (status = 422)))]
async fn signup(s: State<AppState>, req: Request) -> Response {
    to_identity(s, req).await
}

/// Log in: access token (≤ 15 min) + rotating refresh token, also as HttpOnly cookies.
/// 401 wrong credentials, 429 rate limited (Retry-After).
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = Credentials,
    responses((status = 200), (status = 401), (status = 429)))]
async fn login(s: State<AppState>, req: Request) -> Response {
    to_identity(s, req).await
}

/// Exchange a refresh token (body or cookie) for a new pair; reusing an old one revokes the session.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", responses((status = 200), (status = 401)))]
async fn refresh(s: State<AppState>, req: Request) -> Response {
    to_identity(s, req).await
}

/// End the session of a refresh token.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", responses((status = 204), (status = 401)))]
async fn logout(s: State<AppState>, req: Request) -> Response {
    to_identity(s, req).await
}

/// The caller's account.
#[utoipa::path(get, path = "/me", tag = "auth", responses((status = 200), (status = 401)))]
async fn me(s: State<AppState>, req: Request) -> Response {
    to_identity(s, req).await
}

/// Create a product (admin). 201, 401, 403 without the admin role, 422 with field errors.
#[utoipa::path(post, path = "/admin/products", tag = "admin", request_body = ProductWrite,
    responses((status = 201), (status = 401), (status = 403), (status = 422)))]
async fn admin_create(s: State<AppState>, a: auth::Admin, req: Request) -> Response {
    to_catalog_admin(s, a, req).await
}

/// Edit a product (admin) with `If-Match: "<version>"`; a stale version is 409.
#[utoipa::path(patch, path = "/admin/products/{id}", tag = "admin", request_body = ProductWrite,
    params(("id" = String, Path, description = "product id")),
    responses((status = 200), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)))]
async fn admin_edit(s: State<AppState>, a: auth::Admin, req: Request) -> Response {
    to_catalog_admin(s, a, req).await
}

/// Set a SKU's stock (admin).
#[utoipa::path(put, path = "/admin/skus/{sku}/stock", tag = "admin",
    params(("sku" = String, Path, description = "sku code")),
    responses((status = 200), (status = 401), (status = 403), (status = 404), (status = 409)))]
async fn admin_stock(s: State<AppState>, a: auth::Admin, req: Request) -> Response {
    to_catalog_admin(s, a, req).await
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Shopstream gateway", description = "REST edge of Shopstream. Errors are application/problem+json (RFC 9457)."),
    paths(
        signup, login, refresh, logout, me,
        catalog::list_products, catalog::get_product, catalog::product_cards,
        admin_create, admin_edit, admin_stock,
        inventory::reserve, inventory::release, inventory::get_stock, inventory::set_stock,
        orders::create_order, orders::get_order, orders::list_orders, orders::order_events,
        payments::refund, payments::get_payment, payments::stripe_webhook,
        search::search, search::typeahead,
    ),
    components(schemas(
        Credentials, ProductWrite, catalog::MoneyView, catalog::SkuView, catalog::ProductView,
        catalog::ProductPage, catalog::ProductCard, catalog::CardsView,
        inventory::ReservationLine, inventory::ReservationCreate, inventory::ReservationView,
        inventory::StockView, inventory::StockWrite,
        orders::OrderLineCreate, orders::OrderCreate, orders::OrderLineView, orders::OrderView,
        orders::OrderPage, orders::OrderStepView, orders::OrderEventsView,
        payments::PaymentView, payments::RefundCreate, payments::RefundView,
        search::SearchHit, search::FacetBucketView, search::FacetView, search::SearchResults,
    )),
    tags((name = "auth"), (name = "catalog"), (name = "bff"), (name = "checkout"),
        (name = "payments"), (name = "search"), (name = "admin")),
)]
pub struct ApiDoc;

/// The gateway's routes (without the operational middleware).
pub fn routes(state: AppState) -> Router {
    let api = Router::new()
        .route("/auth/signup", post(signup))
        .route("/auth/login", post(login))
        .route("/auth/refresh", post(refresh))
        .route("/auth/logout", post(logout))
        .route("/me", get(me))
        .route("/products", get(catalog::list_products))
        .route("/products/{id}", get(catalog::get_product))
        .route("/bff/product-cards", get(catalog::product_cards))
        .route("/search", get(search::search))
        .route("/search/typeahead", get(search::typeahead))
        .route("/admin/products", post(admin_create))
        .route("/admin/products/{id}", patch(admin_edit))
        .route("/admin/skus/{sku}/stock", put(admin_stock))
        .route("/reservations", post(inventory::reserve))
        .route("/reservations/{id}", delete(inventory::release))
        .route("/inventory/{sku_id}", get(inventory::get_stock))
        .route("/admin/inventory/{sku_id}", put(inventory::set_stock))
        .route(
            "/orders",
            post(orders::create_order).get(orders::list_orders),
        )
        .route("/orders/{id}", get(orders::get_order))
        .route("/orders/{id}/events", get(orders::order_events))
        .route("/payments/{payment_id}/refund", post(payments::refund))
        .route("/payments/{payment_id}", get(payments::get_payment))
        .with_state(state);
    api.merge(SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
}

/// Routes whose upstream answer must reach the client untouched, so they sit
/// outside the operational middleware (which rewrites every error into
/// problem+json): the Stripe webhook.
pub fn passthrough_routes(state: AppState) -> Router {
    let limit = state.body_limit_bytes;
    Router::new()
        .route(payments::WEBHOOK_PATH, post(payments::stripe_webhook))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

fn traced_channel(url: &str, cfg: &Config) -> anyhow::Result<TracedChannel> {
    let channel = grpc::channel(url, CONNECT_TIMEOUT, cfg.upstream_timeout)?;
    Ok(InterceptedService::new(channel, grpc::TraceInterceptor))
}

/// Build the state: Redis, the catalog channel, identity's public key.
pub async fn build(cfg: &Config, ops: &http::Ops) -> anyhow::Result<AppState> {
    let redis = cache::connect(&cfg.service.endpoints.redis_url).await?;
    let verifier = auth::load_verifier(&cfg.identity_http, Duration::from_secs(30)).await?;
    let card_hits = Counter::default();
    let card_misses = Counter::default();
    ops.metrics.register(
        "product_card_cache_hits",
        "Product cards served from Redis",
        card_hits.clone(),
    );
    ops.metrics.register(
        "product_card_cache_misses",
        "Product cards read from catalog",
        card_misses.clone(),
    );
    Ok(AppState {
        catalog: CatalogServiceClient::new(traced_channel(&cfg.catalog_grpc, cfg)?),
        inventory: InventoryServiceClient::new(traced_channel(&cfg.inventory_grpc, cfg)?),
        orders: OrdersServiceClient::new(traced_channel(&cfg.orders_grpc, cfg)?),
        payments: PaymentsServiceClient::new(traced_channel(&cfg.payments_grpc, cfg)?),
        search: SearchServiceClient::new(traced_channel(&cfg.search_grpc, cfg)?),
        verifier,
        redis,
        http: reqwest::Client::builder()
            .timeout(cfg.upstream_timeout)
            .build()?,
        identity_http: cfg.identity_http.clone(),
        catalog_http: cfg.catalog_http.clone(),
        payments_http: cfg.payments_http.clone(),
        default_tenant: cfg.service.default_tenant.clone(),
        upstream_timeout: cfg.upstream_timeout,
        card_ttl_s: cfg.card_ttl_s,
        body_limit_bytes: cfg.service.body_limit_bytes,
        card_hits,
        card_misses,
    })
}

/// Serve until `shutdown`.
pub async fn run(
    cfg: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let ops = http::Ops::from_config(&cfg.service, Readiness::new());
    let state = build(&cfg, &ops).await?;
    let passthrough = passthrough_routes(state.clone());
    let redis = state.redis.clone();
    let ops = http::Ops {
        readiness: Readiness::new().with_check("redis", move || {
            let mut r = redis.clone();
            async move {
                redis::cmd("PING")
                    .query_async::<String>(&mut r)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        }),
        ..ops
    };
    tracing::info!(http = %listener.local_addr()?, "gateway serving");
    let app = http::router(routes(state), ops).merge(passthrough);
    http::serve(listener, app, shutdown).await?;
    Ok(())
}
