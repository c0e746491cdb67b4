//! The gateway: the REST + JSON edge for browsers and the CLI. It checks
//! access tokens locally, enforces the admin role, composes product cards with
//! a Redis cache, forwards auth to identity and admin writes to catalog, reads
//! the catalog over gRPC with deadlines, serves checkout (reservations, stock,
//! orders, refunds) over inventory's, orders' and payments' gRPC APIs, serves
//! product search and typeahead over search's gRPC API, relays
//! Stripe's webhook to payments, and documents all of it as OpenAPI (Swagger
//! UI at `/docs`). It holds no business rules. Accounts on the DSAR
//! suppression list are refused (403) on every authenticated request
//! ([`suppression`]); its gRPC port serves the DSAR participant of its own
//! Redis keys ([`dsar`]).

pub mod analytics;
pub mod auth;
pub mod catalog;
pub mod config;
pub mod dsar;
pub mod dsar_admin;
pub mod feed;
pub mod inventory;
pub mod live;
pub mod media;
pub mod orders;
pub mod payments;
pub mod product_cache;
pub mod proxy;
pub mod realtime;
pub mod rooms;
pub mod search;
pub mod stats;
pub mod suppression;
pub mod upstream;
pub mod wire;

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    extract::{DefaultBodyLimit, Request, State},
    response::Response,
    routing::{delete, get, patch, post, put},
};
use serde::Deserialize;
use shopstream_platform::{
    auth::Verifier,
    cache,
    clock::Clock,
    events::{
        EventBus,
        dedupe::HandlerDedupes,
        kafka::KafkaBus,
        runner::{self, ConsumerHealth, RunnerConfig},
    },
    grpc,
    metrics::Metrics,
    service::{Listeners, Service},
};
use shopstream_proto::{
    analytics::v1::analytics_service_client::AnalyticsServiceClient,
    catalog::v1::catalog_service_client::CatalogServiceClient,
    compliance::v1::compliance_service_client::ComplianceServiceClient,
    feed::v1::feed_service_client::FeedServiceClient,
    inventory::v1::inventory_service_client::InventoryServiceClient,
    media::v1::media_service_client::MediaServiceClient,
    orders::v1::orders_service_client::OrdersServiceClient,
    payments::v1::payments_service_client::PaymentsServiceClient,
    search::v1::search_service_client::SearchServiceClient,
};
use tokio_util::sync::CancellationToken;
use tonic::{service::interceptor::InterceptedService, transport::Channel};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_swagger_ui::SwaggerUi;

pub use config::Config;

/// A channel whose calls carry the current trace context.
pub type TracedChannel = InterceptedService<Channel, grpc::TraceInterceptor>;
pub type CatalogClient = CatalogServiceClient<TracedChannel>;
pub type InventoryClient = InventoryServiceClient<TracedChannel>;
pub type OrdersClient = OrdersServiceClient<TracedChannel>;
pub type PaymentsClient = PaymentsServiceClient<TracedChannel>;
pub type SearchClient = SearchServiceClient<TracedChannel>;
pub type AnalyticsClient = AnalyticsServiceClient<TracedChannel>;
pub type MediaClient = MediaServiceClient<TracedChannel>;
pub type FeedClient = FeedServiceClient<TracedChannel>;
pub type ComplianceClient = ComplianceServiceClient<TracedChannel>;

/// How long connecting to a gRPC backend may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Everything a handler needs, behind one `Arc`, so a clone is one
/// reference count: axum clones the state for every request, and for every
/// middleware that takes it. Cloned field by field (nine gRPC clients, each
/// a buffer sender and a URI; the verifier's validation sets; strings), that
/// showed in a profile of the product read as allocator churn and
/// `Buffer::clone`, `Uri::clone`, `AppState::clone` frames. Fields are
/// reached through `Deref` (`state.inventory`).
#[derive(Clone)]
pub struct AppState(Arc<SharedState>);

impl AppState {
    pub fn new(shared: SharedState) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = SharedState;

    fn deref(&self) -> &SharedState {
        &self.0
    }
}

/// What [`AppState`] shares.
pub struct SharedState {
    pub catalog: CatalogClient,
    pub inventory: InventoryClient,
    pub orders: OrdersClient,
    pub payments: PaymentsClient,
    pub search: SearchClient,
    pub analytics_grpc: AnalyticsClient,
    pub media: MediaClient,
    pub feed: FeedClient,
    pub compliance: ComplianceClient,
    pub verifier: Verifier,
    /// Every read of the time (token expiry, reservation TTLs).
    pub clock: Arc<dyn Clock>,
    pub redis: cache::ConnectionManager,
    pub http: reqwest::Client,
    pub identity_http: String,
    pub catalog_http: String,
    pub payments_http: String,
    pub default_tenant: String,
    pub upstream_timeout: Duration,
    pub card_ttl_s: u64,
    /// Product views (and so cards) in Redis, invalidated by `product.events`.
    pub products: product_cache::ProductCache,
    pub body_limit_bytes: usize,
    /// The realtime fan-out's local end.
    pub live: live::Hub,
    /// Fires when the gateway stops: live connections close (1001).
    pub shutdown: CancellationToken,
    /// Shopper actions for `analytics.raw` (a bounded buffer; never waits).
    pub analytics: analytics::Recorder,
}

/// The gateway's background work, run by [`run`]: the realtime fan-out's
/// Redis subscriber, the analytics publisher and the product cache's
/// invalidating consumer.
pub struct Workers {
    pub live: live::Subscriber,
    pub analytics: analytics::Publisher,
    pub cache: CacheConsumer,
}

/// The consumer that keeps the product cache current.
pub struct CacheConsumer {
    pub bus: Arc<dyn EventBus>,
    pub invalidator: product_cache::Invalidator,
    pub config: RunnerConfig,
}

impl CacheConsumer {
    /// Consume until `stop`, resubscribing after failures.
    pub async fn run(self, stop: CancellationToken) {
        let topics: Vec<String> = self.config.topics.clone();
        for t in &topics {
            // Created by their producers too; whoever starts first makes them.
            while let Err(e) = self.bus.ensure_topic(t, 3).await {
                tracing::warn!(error = %e, topic = %t, "topic not ready; retrying");
                if !shopstream_platform::shutdown::sleep_or_stop(&stop, Duration::from_secs(1))
                    .await
                {
                    return;
                }
            }
        }
        runner::run_until_stopped(
            self.bus,
            Arc::new(HandlerDedupes),
            Arc::new(self.invalidator),
            self.config,
            stop,
            Duration::from_secs(1),
        )
        .await;
    }
}

/// Body of signup and login (documentation only: the gateway forwards it).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct Credentials {
    /// `name@domain.tld`, at most 254 characters; case and surrounding
    /// spaces do not matter.
    #[schema(
        max_length = 254,
        pattern = r"^\s*[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f.][^@\s\x00-\x1f\x7f]*\.[^@\s\x00-\x1f\x7f]*[^@\s\x00-\x1f\x7f.]\s*$"
    )]
    email: String,
    /// 12 to 128 characters, not one character repeated, not containing the
    /// part of the email before `@` (signup checks these; login only compares).
    #[schema(min_length = 12, max_length = 128)]
    password: String,
}

/// Body of refresh and logout; the `ss_refresh` cookie may stand in for it.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct RefreshTokenBody {
    refresh_token: Option<String>,
}

// Patterns below: KEBAB = lowercase letters, digits and inner `-` (slug,
// category, region); SKU code = ASCII letters, digits, `-`, `_` and `.`;
// text = some character other than white space and no control character
// (catalog trims what it is given).

/// A price (documentation only: forwarded to catalog).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct PriceWrite {
    /// Minor units (cents).
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    amount_minor: i64,
    /// ISO 4217, upper case; every SKU of a product uses the same one.
    #[schema(pattern = r"^[A-Z]{3}$")]
    currency: String,
}

/// A SKU of a new product (documentation only: forwarded to catalog).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct SkuCreate {
    /// Unique in the product and the tenant.
    #[schema(min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9._-]+$")]
    sku_id: String,
    /// Defaults to the attribute values, else the SKU code.
    #[schema(
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    name: Option<String>,
    /// At most 16 entries, keys and values of 1 to 128 characters.
    #[serde(default)]
    #[schema(schema_with = attributes_schema)]
    attributes: std::collections::BTreeMap<String, String>,
    price: PriceWrite,
    /// Units in stock; default 0.
    #[schema(minimum = 0, maximum = 1_000_000_000_i64)]
    stock: Option<i64>,
}

/// A SKU's attributes (`{"colour": "red"}`): the limits on keys need
/// `propertyNames`, which the derive cannot write.
fn attributes_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::{ObjectBuilder, Type, schema::AdditionalProperties};
    let text = || {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(128))
    };
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(text()))
        .additional_properties(Some(AdditionalProperties::RefOr(text().build().into())))
        .max_properties(Some(16))
        .build()
}

/// Create a product (documentation only: forwarded to catalog).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ProductCreate {
    /// Unique per tenant.
    #[schema(max_length = 120, pattern = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")]
    slug: String,
    #[schema(
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    title: String,
    #[schema(max_length = 5000)]
    description: Option<String>,
    #[schema(max_length = 64, pattern = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")]
    category: String,
    /// Distinct region names of at most 32 characters each.
    #[schema(min_items = 1, max_items = 16, inline)]
    regions: Vec<RegionName>,
    /// At most 32 tags of 1 to 64 characters.
    #[schema(max_items = 32, inline)]
    tags: Option<Vec<TagText>>,
    #[schema(min_length = 1, max_length = 512)]
    image_key: Option<String>,
    /// Distinct SKU codes, all priced in one currency.
    #[schema(min_items = 1, max_items = 100)]
    skus: Vec<SkuCreate>,
}

/// A region name.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
#[schema(pattern = r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")]
pub struct RegionName(String);

/// A tag: 1 to 64 characters, no white space around.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
#[schema(pattern = r"^\S(.{0,62}\S)?$")]
pub struct TagText(String);

/// A SKU change in an edit (documentation only: forwarded to catalog).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct SkuEdit {
    /// An existing SKU of the product, or a new one (then `price` is needed).
    #[schema(min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9._-]+$")]
    sku_id: String,
    #[schema(
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    name: Option<String>,
    price: Option<PriceWrite>,
}

/// Edit a product: only the fields sent change (documentation only:
/// forwarded to catalog).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ProductEdit {
    /// The version the edit starts from (or send `If-Match: "<version>"`);
    /// a stale one is 409.
    #[schema(minimum = 1)]
    version: i64,
    #[schema(
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    title: Option<String>,
    #[schema(max_length = 5000)]
    description: Option<String>,
    #[schema(max_length = 64, pattern = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")]
    category: Option<String>,
    #[schema(min_items = 1, max_items = 16, inline)]
    regions: Option<Vec<RegionName>>,
    #[schema(max_items = 32, inline)]
    tags: Option<Vec<TagText>>,
    /// `null` removes the image.
    #[schema(min_length = 1, max_length = 512)]
    image_key: Option<String>,
    #[schema(max_items = 100)]
    skus: Option<Vec<SkuEdit>>,
}

/// Set a SKU's stock in the catalog (documentation only: forwarded to catalog).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct SkuStockWrite {
    /// The new absolute stock.
    #[schema(minimum = 0, maximum = 1_000_000_000_i64)]
    stock: i64,
    /// The product version the change starts from (or `If-Match`); stale is 409.
    version: Option<i64>,
    /// Why, for the log; at most 200 characters.
    #[schema(max_length = 200)]
    reason: Option<String>,
}

/// An error: an RFC 9457 problem document. Every 4xx and 5xx answer of the
/// gateway is one (`application/problem+json`).
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = Problem)]
#[allow(dead_code)]
pub struct ProblemDoc {
    #[serde(rename = "type")]
    type_uri: String,
    title: String,
    status: u16,
    /// Machine-readable, e.g. `unprocessable`, `not_found`.
    code: String,
    detail: Option<String>,
    request_id: Option<String>,
    /// One entry per invalid field (422).
    errors: Option<Vec<FieldErrorDoc>>,
    /// Seconds to wait before retrying (429, with `Retry-After`).
    retry_after_s: Option<u64>,
}

/// One invalid field of a request.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = FieldError)]
#[allow(dead_code)]
pub struct FieldErrorDoc {
    field: String,
    message: String,
}

/// Routes whose body may be left out (the refresh cookie stands in for it).
const OPTIONAL_BODY_PATHS: [&str; 2] = ["/auth/refresh", "/auth/logout"];

/// What every operation shares, added once: the bearer scheme, the problem
/// document as the body of every error answer, and optional bodies.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{
            ContentBuilder, Ref, RefOr,
            security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
        };
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .description(Some(
                            "An access token from /auth/login (or the ss_access cookie)",
                        ))
                        .build(),
                ),
            );
        for (path, item) in doc.paths.paths.iter_mut() {
            if OPTIONAL_BODY_PATHS.contains(&path.as_str())
                && let Some(body) = item.post.as_mut().and_then(|op| op.request_body.as_mut())
            {
                body.required = Some(utoipa::openapi::Required::False);
            }
            let ops = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            // Every route but the webhook passes the DSAR suppression check.
            let suppressed = path != payments::WEBHOOK_PATH;
            for op in ops.into_iter().flatten() {
                if suppressed {
                    match op.responses.responses.get_mut("403") {
                        Some(RefOr::T(r)) => r.description.push_str(
                            ", or the caller's account is being erased or was erased (DSAR)",
                        ),
                        Some(RefOr::Ref(_)) => {}
                        None => {
                            op.responses.responses.insert(
                                "403".into(),
                                RefOr::T(
                                    utoipa::openapi::ResponseBuilder::new()
                                        .description(suppression::DOC_403)
                                        .build(),
                                ),
                            );
                        }
                    }
                }
                for (status, response) in op.responses.responses.iter_mut() {
                    let is_error = status.starts_with('4') || status.starts_with('5');
                    if let (true, RefOr::T(r)) = (is_error, response)
                        && r.content.is_empty()
                    {
                        r.content.insert(
                            shopstream_platform::error::PROBLEM_CONTENT_TYPE.to_string(),
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("Problem")))
                                .build(),
                        );
                    }
                }
            }
        }
    }
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
    responses((status = 201, description = "the new account"),
        (status = 400, description = "the body is not JSON, or not sent as application/json"),
        (status = 409, description = "the email is taken"), (status = 413, description = "body too large"),
        (status = 422, description = "invalid or missing fields"), (status = 503, description = "identity is unavailable")))]
async fn signup(s: State<AppState>, req: Request) -> Response {
    let tenant = req
        .headers()
        .get(grpc::TENANT_METADATA_KEY)
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.is_empty())
        .unwrap_or(&s.default_tenant)
        .to_string();
    let state = s.0.clone();
    let resp = to_identity(s, req).await;
    if resp.status() != axum::http::StatusCode::CREATED {
        return resp;
    }
    // A new account gets its first feed slice now (popular and fresh
    // products), so its first page is a cache hit.
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, state.body_limit_bytes)
        .await
        .unwrap_or_default();
    if let Some(id) = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_owned))
    {
        tokio::spawn(feed::backfill_new_user(state, tenant, id));
    }
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

/// Log in: access token (≤ 15 min) + rotating refresh token, also as HttpOnly cookies.
/// 401 wrong credentials, 429 rate limited (Retry-After).
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = Credentials,
    responses((status = 200, description = "tokens, and the same as cookies"),
        (status = 400, description = "the body is not JSON, or not sent as application/json"),
        (status = 401, description = "wrong email or password"), (status = 413, description = "body too large"),
        (status = 422, description = "a field is missing or of the wrong type"),
        (status = 429, description = "too many attempts; see Retry-After"), (status = 503, description = "identity is unavailable")))]
async fn login(s: State<AppState>, req: Request) -> Response {
    to_identity(s, req).await
}

/// Exchange a refresh token (body or cookie) for a new pair; reusing an old one revokes the session.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth",
    request_body(content = RefreshTokenBody, description = "optional when the ss_refresh cookie is sent"),
    responses((status = 200, description = "a new token pair"),
        (status = 400, description = "the body is not JSON"), (status = 401, description = "no, unknown, expired or reused refresh token"),
        (status = 413, description = "body too large"),
        (status = 415, description = "a body sent with another content type than application/json"),
        (status = 422, description = "a field of the wrong type"), (status = 503, description = "identity is unavailable")))]
async fn refresh(s: State<AppState>, req: Request) -> Response {
    to_identity(s, req).await
}

/// End the session of a refresh token.
#[utoipa::path(post, path = "/auth/logout", tag = "auth",
    request_body(content = RefreshTokenBody, description = "optional when the ss_refresh cookie is sent"),
    responses((status = 204, description = "signed out; the cookies are cleared"),
        (status = 400, description = "the body is not JSON"), (status = 401, description = "no, unknown or expired refresh token"),
        (status = 413, description = "body too large"),
        (status = 415, description = "a body sent with another content type than application/json"),
        (status = 422, description = "a field of the wrong type"), (status = 503, description = "identity is unavailable")))]
async fn logout(s: State<AppState>, req: Request) -> Response {
    to_identity(s, req).await
}

/// The caller's account.
#[utoipa::path(get, path = "/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, description = "the account"), (status = 401, description = "no or invalid access token"),
        (status = 404, description = "the account no longer exists"), (status = 503, description = "identity is unavailable")))]
async fn me(s: State<AppState>, req: Request) -> Response {
    to_identity(s, req).await
}

/// Create a product (admin). 201, 401, 403 without the admin role, 422 with field errors.
#[utoipa::path(post, path = "/admin/products", tag = "admin", request_body = ProductCreate, security(("bearer" = [])),
    responses((status = 201, description = "created; Location and ETag set"),
        (status = 400, description = "the body is not JSON, or not sent as application/json"),
        (status = 401, description = "no or invalid access token"), (status = 403, description = "not an admin"),
        (status = 409, description = "the slug or a SKU code is taken"), (status = 413, description = "body too large"),
        (status = 422, description = "invalid fields, all listed"), (status = 503, description = "catalog is unavailable")))]
async fn admin_create(s: State<AppState>, a: auth::Admin, req: Request) -> Response {
    to_catalog_admin(s, a, req).await
}

/// Edit a product (admin) from the version it was read at (`version` or
/// `If-Match: "<version>"`); a stale version is 409.
#[utoipa::path(patch, path = "/admin/products/{id}", tag = "admin", request_body = ProductEdit, security(("bearer" = [])),
    params(("id" = String, Path, description = "product id")),
    responses((status = 200, description = "the edited product; new ETag"),
        (status = 400, description = "the body is not JSON, or not sent as application/json, or a malformed If-Match"),
        (status = 401, description = "no or invalid access token"), (status = 403, description = "not an admin"),
        (status = 404, description = "no such product"), (status = 409, description = "stale version, or a SKU code taken"),
        (status = 413, description = "body too large"), (status = 422, description = "invalid fields, all listed"),
        (status = 503, description = "catalog is unavailable")))]
async fn admin_edit(s: State<AppState>, a: auth::Admin, req: Request) -> Response {
    write_through(s, a, req).await
}

/// Set a SKU's stock in the catalog (admin).
#[utoipa::path(put, path = "/admin/skus/{sku}/stock", tag = "admin", request_body = SkuStockWrite, security(("bearer" = [])),
    params(("sku" = String, Path, description = "sku code")),
    responses((status = 200, description = "the SKU and the product's new version; ETag set"),
        (status = 400, description = "the body is not JSON, or not sent as application/json, or a malformed If-Match"),
        (status = 401, description = "no or invalid access token"), (status = 403, description = "not an admin"),
        (status = 404, description = "no such SKU"), (status = 409, description = "stale version"),
        (status = 413, description = "body too large"), (status = 422, description = "invalid fields, all listed"),
        (status = 503, description = "catalog is unavailable")))]
async fn admin_stock(s: State<AppState>, a: auth::Admin, req: Request) -> Response {
    write_through(s, a, req).await
}

/// Forward an admin write of an existing product, then, if it succeeded,
/// invalidate the product in the cache at the version the answer reports
/// (`id` or `product_id`, and `version`), so the writer reads its write
/// through this gateway at once; `product.events` does the same for every
/// other gateway within the CDC lag.
async fn write_through(s: State<AppState>, a: auth::Admin, req: Request) -> Response {
    let tenant = a.0.tid.clone();
    let state = s.0.clone();
    let resp = to_catalog_admin(s, a, req).await;
    if !resp.status().is_success() {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, state.body_limit_bytes)
        .await
        .unwrap_or_default();
    let written = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| {
            let id = v
                .get("product_id")
                .or_else(|| v.get("id"))?
                .as_str()?
                .to_owned();
            Some((id, v.get("version")?.as_i64()?))
        });
    if let Some((id, version)) = written
        && let Err(e) = state
            .products
            .invalidate(&tenant, &id, version, "write")
            .await
    {
        tracing::warn!(error = %e, product_id = %id, "product cache not invalidated; product.events will");
    }
    Response::from_parts(parts, axum::body::Body::from(bytes))
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
        realtime::order_stream, realtime::ws,
        payments::refund, payments::get_payment, payments::stripe_webhook,
        search::search, search::typeahead,
        stats::daily,
        media::create_upload, media::get_asset, media::block_asset, media::placeholder,
        feed::publish, feed::list_activity, feed::feed, feed::recommendations,
        dsar_admin::start, dsar_admin::get,
    ),
    components(schemas(
        Credentials, RefreshTokenBody, ProductCreate, ProductEdit, SkuCreate, SkuEdit, PriceWrite,
        RegionName, TagText, SkuStockWrite, ProblemDoc, FieldErrorDoc, catalog::MoneyView, catalog::SkuView, catalog::ProductView,
        catalog::ProductPage, catalog::ProductCard, catalog::CardsView, catalog::ListSort,
        inventory::ReservationLine, inventory::ReservationCreate, inventory::ReservationView,
        inventory::StockView, inventory::StockWrite,
        orders::OrderLineCreate, orders::OrderCreate, orders::OrderLineView, orders::OrderView,
        orders::OrderPage, orders::OrderStepView, orders::OrderEventsView,
        payments::PaymentView, payments::RefundCreate, payments::RefundView,
        search::SearchHit, search::FacetBucketView, search::FacetView, search::SearchResults,
        stats::DayView, stats::DailyStatsView,
        media::UploadCreate, media::UploadTarget, media::UploadView, media::VariantView,
        media::AttemptView, media::AssetView, media::BlockView,
        dsar_admin::DsarCreate, dsar_admin::DsarView, dsar_admin::DsarStoreView,
        dsar_admin::DsarCheckView, dsar_admin::DsarRetainedView,
        feed::ActivityCreate, feed::ActivityView, feed::ActivityRecorded, feed::ActivityPage,
        feed::ContributionView, feed::FeedCard, feed::FeedPage, feed::RecommendationView,
        feed::RecommendationsView,
    )),
    tags((name = "auth"), (name = "catalog"), (name = "bff"), (name = "checkout"),
        (name = "payments"), (name = "search"), (name = "admin"), (name = "realtime"), (name = "media"), (name = "feed")),
    modifiers(&Conventions),
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
        .route("/orders/{id}/stream", get(realtime::order_stream))
        .route("/ws", get(realtime::ws))
        .route("/payments/{payment_id}/refund", post(payments::refund))
        .route("/payments/{payment_id}", get(payments::get_payment))
        .route("/admin/stats/daily", get(stats::daily))
        .route("/admin/dsar", post(dsar_admin::start))
        .route("/admin/dsar/{id}", get(dsar_admin::get))
        .route("/media/uploads", post(media::create_upload))
        .route("/media/{id}", get(media::get_asset))
        .route("/media/placeholder/{reference}", get(media::placeholder))
        .route("/admin/media/{id}/block", post(media::block_asset))
        .route("/activity", post(feed::publish).get(feed::list_activity))
        .route("/feed", get(feed::feed))
        .route("/recommendations", get(feed::recommendations))
        .layer(axum::middleware::from_fn(analytics::visitor))
        // Outermost: a suppressed account is refused before anything runs.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            suppression::freeze,
        ))
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

/// Build the state: Redis, the gRPC channels, identity's public key, and the
/// realtime hub (whose Redis subscriber the caller runs).
pub async fn build(
    cfg: &Config,
    metrics: &Metrics,
    shutdown: CancellationToken,
) -> anyhow::Result<(AppState, Workers)> {
    let redis = cache::connect(&cfg.service.endpoints.redis_url).await?;
    let verifier = auth::load_verifier(&cfg.identity_http, Duration::from_secs(30)).await?;
    let (live, subscriber) = live::Hub::new(
        &cfg.service.endpoints.redis_url,
        &cfg.service.default_tenant,
        cfg.live.clone(),
        metrics,
    );
    let clock: Arc<dyn Clock> = cfg.clock.0.clone();
    // One bus (one producer, one doorbell listener) for the analytics
    // publisher and the cache's consumer.
    let bus = KafkaBus::connect(&cfg.service.endpoints)?;
    let (analytics, publisher) =
        analytics::channel(cfg.analytics_buffer, bus.clone(), clock.clone(), metrics);
    let cache_health = ConsumerHealth::new(metrics, &cfg.cache_group);
    let products = product_cache::ProductCache::new(
        redis.clone(),
        cfg.card_ttl_s,
        Some(cache_health.clone()),
        metrics,
    );
    let cache = CacheConsumer {
        bus,
        invalidator: product_cache::Invalidator {
            cache: products.clone(),
            media_topic: cfg.media_topic.clone(),
            default_tenant: cfg.service.default_tenant.clone(),
        },
        config: RunnerConfig {
            health: cache_health,
            ..RunnerConfig::new(
                &cfg.cache_group,
                &[cfg.product_topic.as_str(), cfg.media_topic.as_str()],
            )
        },
    };
    let state = AppState::new(SharedState {
        catalog: CatalogServiceClient::new(traced_channel(&cfg.catalog_grpc, cfg)?),
        inventory: InventoryServiceClient::new(traced_channel(&cfg.inventory_grpc, cfg)?),
        orders: OrdersServiceClient::new(traced_channel(&cfg.orders_grpc, cfg)?),
        payments: PaymentsServiceClient::new(traced_channel(&cfg.payments_grpc, cfg)?),
        search: SearchServiceClient::new(traced_channel(&cfg.search_grpc, cfg)?),
        analytics_grpc: AnalyticsServiceClient::new(traced_channel(&cfg.analytics_grpc, cfg)?),
        media: MediaServiceClient::new(traced_channel(&cfg.media_grpc, cfg)?),
        feed: FeedServiceClient::new(traced_channel(&cfg.feed_grpc, cfg)?),
        compliance: ComplianceServiceClient::new(traced_channel(&cfg.compliance_grpc, cfg)?),
        verifier,
        clock,
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
        products,
        body_limit_bytes: cfg.service.body_limit_bytes,
        live,
        shutdown,
        analytics,
    });
    Ok((
        state,
        Workers {
            live: subscriber,
            analytics: publisher,
            cache,
        },
    ))
}

shopstream_platform::service_entry! {
    /// The gateway as `shopstream serve gateway` and the test kit start it
    /// (its gRPC port serves only the DSAR participant).
    Server { name: "gateway", grpc: true, config: Config, run: run }
}

/// Serve until `shutdown` (see [`Service::run`]).
pub async fn run(
    cfg: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let svc = Service::new(&cfg.service);
    // Live connections hear about the stop through the state; the kit's
    // own token stops the servers.
    let (state, workers) = build(&cfg, svc.metrics(), shutdown.child_token()).await?;
    let redis = state.redis.clone();
    let hub = state.live.clone();
    let participant = dsar::Participant::new(state.redis.clone());
    svc.check("redis", move || {
        let r = redis.clone();
        async move { cache::ping(&r).await }
    })
    .check("realtime fan-out", move || {
        let up = hub.ready();
        async move {
            up.then_some(())
                .ok_or_else(|| "the Redis pub/sub subscription is down".to_string())
        }
    })
    .task("realtime fan-out", |stop| workers.live.run(stop))
    .task("analytics publisher", |stop| workers.analytics.run(stop))
    .task("product cache invalidation", |stop| workers.cache.run(stop))
    .long_poll(
        "/orders/{id}/events",
        Duration::from_millis(live::MAX_WAIT_MS),
    )
    .raw_http(passthrough_routes(state.clone()))
    .http(routes(state))
    .grpc(shopstream_dsar::server(
        Arc::new(participant),
        &cfg.service.default_tenant,
    ))
    .run(listeners, shutdown)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> serde_json::Value {
        serde_json::to_value(ApiDoc::openapi()).unwrap()
    }

    #[test]
    fn parameters_sit_where_the_route_reads_them() {
        // A struct of query parameters once came out as required path
        // parameters of routes without such a path segment.
        for (path, item) in doc()["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                for p in op["parameters"].as_array().into_iter().flatten() {
                    let name = p["name"].as_str().unwrap();
                    let placeholder = path.contains(&format!("{{{name}}}"));
                    assert_eq!(p["in"] == "path", placeholder, "{method} {path}: {p}");
                }
            }
        }
    }

    #[test]
    fn every_route_but_the_webhook_documents_the_dsar_403() {
        for (path, item) in doc()["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let documented = op["responses"].get("403").is_some();
                assert_eq!(
                    documented,
                    path != payments::WEBHOOK_PATH,
                    "{method} {path}"
                );
            }
        }
    }

    #[test]
    fn every_error_answer_is_a_problem_document() {
        for (path, item) in doc()["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                // Success is a 2xx, or 101 for the WebSocket upgrade.
                assert!(
                    responses.keys().any(|s| s.starts_with('2') || s == "101"),
                    "{method} {path}"
                );
                let errors = responses
                    .iter()
                    .filter(|(s, _)| s.starts_with('4') || s.starts_with('5'));
                for (status, r) in errors {
                    assert_eq!(
                        r["content"]["application/problem+json"]["schema"]["$ref"],
                        "#/components/schemas/Problem",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
}
