//! Public catalog reads over gRPC, with the product cache
//! ([`crate::product_cache`]) in front of product reads and cards.

use std::collections::BTreeMap;

use axum::{
    Json,
    extract::{Path, Query, State},
    http::HeaderMap,
};
use serde::{Deserialize, Serialize};
use shopstream_platform::{ErrorCode, Problem};
use shopstream_proto::{
    catalog::v1::{GetProductRequest, ListProductsRequest, Product, ProductSort, Sku},
    common::v1::{Money, PageRequest, PriceRange},
};
use utoipa::{IntoParams, ToSchema};

use crate::{
    AppState,
    analytics::{Action, Seen},
    auth::MaybeUser,
    upstream::request,
};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct MoneyView {
    /// Integer minor units (cents).
    pub amount_minor: i64,
    /// ISO 4217.
    pub currency: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SkuView {
    pub id: String,
    pub name: String,
    pub price: Option<MoneyView>,
    pub stock: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProductView {
    pub id: String,
    pub title: String,
    pub description: String,
    pub category: String,
    pub region: String,
    pub skus: Vec<SkuView>,
    pub version: i64,
    pub updated_at_ms: i64,
    /// Its picture (480 px): a presigned GET of the newest ready image
    /// attached to `product:<id>`, else a generated placeholder.
    pub image_url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProductPage {
    pub items: Vec<ProductView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A compact product summary for listings and carts.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ProductCard {
    pub id: String,
    pub title: String,
    pub category: String,
    /// Lowest SKU price.
    pub price_from: Option<MoneyView>,
    pub in_stock: bool,
    /// As on the product (a placeholder until an image is ready).
    #[serde(default)]
    pub image_url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CardsView {
    pub cards: Vec<ProductCard>,
    /// Ids that matched no product.
    pub missing: Vec<String>,
}

fn money(m: &Option<Money>) -> Option<MoneyView> {
    m.as_ref().map(|m| MoneyView {
        amount_minor: m.amount_minor,
        currency: m.currency.clone(),
    })
}

fn sku_view(s: &Sku) -> SkuView {
    SkuView {
        id: s.sku_id.clone(),
        name: s.name.clone(),
        price: money(&s.price),
        stock: s.stock,
    }
}

impl From<Product> for ProductView {
    fn from(p: Product) -> Self {
        ProductView {
            skus: p.skus.iter().map(sku_view).collect(),
            id: p.product_id,
            title: p.title,
            description: p.description,
            category: p.category,
            region: p.region,
            version: p.version,
            updated_at_ms: p.updated_at_ms,
            image_url: String::new(),
        }
    }
}

fn card_of_view(p: &ProductView) -> ProductCard {
    ProductCard {
        id: p.id.clone(),
        title: p.title.clone(),
        category: p.category.clone(),
        price_from: p
            .skus
            .iter()
            .filter_map(|s| s.price.clone())
            .min_by_key(|m| m.amount_minor),
        in_stock: p.skus.iter().any(|s| s.stock > 0),
        image_url: p.image_url.clone(),
    }
}

/// gRPC error → problem+json with the matching HTTP status.
pub fn problem_of(s: tonic::Status) -> Problem {
    // A broken connection (tonic's client says Unknown) is a 503, as for
    // every upstream: under overload the product read answered 500 for it.
    if s.code() == tonic::Code::Unknown {
        return crate::upstream::problem_of("catalog", s);
    }
    let code = ErrorCode::from_grpc(s.code());
    let detail = if code == ErrorCode::Internal {
        "catalog failed".to_string()
    } else {
        s.message().to_string()
    };
    Problem::new(code, detail)
}

/// Tenant of the call: the token's, else `x-tenant-id`, else the default.
pub fn tenant(user: &MaybeUser, headers: &HeaderMap, state: &AppState) -> String {
    user.0
        .as_ref()
        .map(|c| c.tid.clone())
        .or_else(|| {
            headers
                .get("x-tenant-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| state.default_tenant.clone())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// A category slug; empty = any.
    #[param(max_length = 64, pattern = r"^([a-z0-9]([a-z0-9-]*[a-z0-9])?)?$")]
    pub category: Option<String>,
    /// A region name; empty = any.
    #[param(max_length = 32, pattern = r"^([a-z0-9]([a-z0-9-]*[a-z0-9])?)?$")]
    pub region: Option<String>,
    /// Minimum price in minor units (at most `max_price`).
    #[param(minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub min_price: Option<i64>,
    /// Maximum price in minor units (at least `min_price`).
    #[param(minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub max_price: Option<i64>,
    /// Currency of the price range (ISO 4217, upper case); empty = any.
    #[param(pattern = r"^([A-Z]{3})?$")]
    pub currency: Option<String>,
    /// Default `newest`; `title` is another name for `name`.
    #[param(value_type = Option<ListSort>)]
    pub sort: Option<String>,
    /// Page size, 1 to 100 (more is a 422, not a silent cut); default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page, with the same filters and sort.
    pub cursor: Option<String>,
}

/// Orders of `GET /products` (documentation: the handler reads the text, so
/// an unknown one is a 422 naming `sort`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ListSort {
    Newest,
    PriceAsc,
    PriceDesc,
    Name,
    Title,
}

/// Most products one page may ask for (catalog's own bound).
pub const MAX_LIMIT: u32 = 100;

/// List products with filters, sort and cursor pagination.
#[utoipa::path(get, path = "/products", params(ListParams), tag = "catalog", security((), ("bearer" = [])),
    responses((status = 200, body = ProductPage),
        (status = 400, description = "a parameter of the wrong type (e.g. a price that is not an integer), or repeated"),
        (status = 401, description = "an access token was sent and is invalid"),
        (status = 422, description = "invalid filter, limit or cursor, each named in errors[]"),
        (status = 503, description = "catalog is unavailable")))]
pub async fn list_products(
    State(state): State<AppState>,
    user: MaybeUser,
    headers: HeaderMap,
    Query(q): Query<ListParams>,
) -> Result<Json<ProductPage>, Problem> {
    let sort = match q.sort.as_deref() {
        None | Some("newest") => ProductSort::Newest,
        Some("price_asc") => ProductSort::PriceAsc,
        Some("price_desc") => ProductSort::PriceDesc,
        Some("name") | Some("title") => ProductSort::TitleAsc,
        Some(other) => {
            return Err(
                Problem::new(ErrorCode::Unprocessable, "invalid sort").with_field(
                    "sort",
                    format!("{other:?} is not one of newest, price_asc, price_desc, name"),
                ),
            );
        }
    };
    if q.limit.is_some_and(|n| !(1..=MAX_LIMIT).contains(&n)) {
        return Err(Problem::new(ErrorCode::Unprocessable, "invalid limit")
            .with_field("limit", format!("an integer from 1 to {MAX_LIMIT}")));
    }
    // Catalog reads the currency only with a price bound; checked here so it
    // is refused the same way without one.
    if let Some(c) = q.currency.as_deref().filter(|c| !c.is_empty())
        && !(c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()))
    {
        return Err(
            Problem::new(ErrorCode::Unprocessable, "invalid currency").with_field(
                "currency",
                "an ISO 4217 code of three upper-case letters, e.g. EUR",
            ),
        );
    }
    let currency = q.currency.clone().unwrap_or_default();
    let price = (q.min_price.is_some() || q.max_price.is_some()).then(|| PriceRange {
        min: q.min_price.map(|a| Money {
            amount_minor: a,
            currency: currency.clone(),
        }),
        max: q.max_price.map(|a| Money {
            amount_minor: a,
            currency: currency.clone(),
        }),
    });
    let msg = ListProductsRequest {
        page: Some(PageRequest {
            page_size: q.limit.unwrap_or(0),
            cursor: q.cursor.unwrap_or_default(),
        }),
        category: q.category.unwrap_or_default(),
        region: q.region.unwrap_or_default(),
        price,
        sort: sort as i32,
    };
    let tenant = tenant(&user, &headers, &state);
    let resp = state
        .catalog
        .clone()
        .list_products(request(msg, &tenant, state.upstream_timeout))
        .await
        .map_err(problem_of)?
        .into_inner();
    let mut items: Vec<ProductView> = resp.products.into_iter().map(ProductView::from).collect();
    let ids: Vec<String> = items.iter().map(|p| p.id.clone()).collect();
    let images = crate::media::product_images(&state, &tenant, &ids).await;
    for p in &mut items {
        p.image_url = images.url(&p.id);
    }
    Ok(Json(ProductPage {
        items,
        next_cursor: resp.page.map(|p| p.next_cursor).filter(|c| !c.is_empty()),
    }))
}

/// Whether the client asked to skip caches (`Cache-Control: no-cache` or
/// `Pragma: no-cache`): the read goes to catalog, and refreshes the cache.
pub fn no_cache(headers: &HeaderMap) -> bool {
    let says = |name: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|d| d.trim().eq_ignore_ascii_case("no-cache"))
            })
        })
    };
    says("cache-control") || says("pragma")
}

/// One product with its SKUs, prices and stock: from the product cache
/// (kept current by `product.events`), else from catalog with its picture
/// from media (then cached). `Cache-Control: no-cache` reads catalog.
#[utoipa::path(get, path = "/products/{id}", tag = "catalog", security((), ("bearer" = [])),
    params(("id" = String, Path, description = "product id"),
        ("cache-control" = Option<String>, Header, description = "`no-cache` reads catalog, not the gateway's cache")),
    responses((status = 200, body = ProductView),
        (status = 401, description = "an access token was sent and is invalid"),
        (status = 404, description = "no such product"), (status = 503, description = "catalog is unavailable")))]
pub async fn get_product(
    State(state): State<AppState>,
    user: MaybeUser,
    seen: Seen,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<ProductView>, Problem> {
    let tenant = tenant(&user, &headers, &state);
    let ids = [id];
    let mut views = views_for(&state, &tenant, &ids, no_cache(&headers)).await?;
    let [id] = ids;
    let view = views
        .remove(&0)
        .ok_or_else(|| Problem::new(ErrorCode::NotFound, "no such product"))?;
    let who = user.0.as_ref().map(|c| c.sub.as_str());
    let now = state.clock.now_ms();
    state
        .analytics
        .record(&tenant, seen.event(Action::View, &id, who, now));
    Ok(Json(view))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CardParams {
    /// Comma-separated product ids: 1 to 50 of them (blank entries are skipped).
    #[param(
        pattern = r"^([^\S\x1c-\x1f]*,)*[^\S\x1c-\x1f]*([^,\s]|[\x1c-\x1f])[^,]*(,[^,]*){0,49}$"
    )]
    pub ids: String,
}

/// Seconds a card whose picture media could not resolve stays cached.
pub const OUTAGE_CARD_TTL_S: u64 = 5;

/// Most ids a cards request may ask for.
pub const MAX_CARD_IDS: usize = 50;

/// Product cards for many ids at once, served from the product cache when cached.
#[utoipa::path(get, path = "/bff/product-cards", params(CardParams), tag = "bff", security((), ("bearer" = [])),
    responses((status = 200, body = CardsView), (status = 400, description = "no `ids` parameter, or repeated"),
        (status = 401, description = "an access token was sent and is invalid"),
        (status = 422, description = "no or more than 50 ids"), (status = 503, description = "catalog is unavailable")))]
pub async fn product_cards(
    State(state): State<AppState>,
    user: MaybeUser,
    headers: HeaderMap,
    Query(q): Query<CardParams>,
) -> Result<Json<CardsView>, Problem> {
    let ids: Vec<String> = q
        .ids
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if ids.is_empty() || ids.len() > MAX_CARD_IDS {
        return Err(
            Problem::new(ErrorCode::Unprocessable, "invalid ids").with_field(
                "ids",
                format!("give 1 to {MAX_CARD_IDS} comma-separated ids"),
            ),
        );
    }
    let tenant = tenant(&user, &headers, &state);
    let (cards, missing) = cards_for(&state, &tenant, &ids).await?;
    Ok(Json(CardsView {
        cards: cards.into_values().collect(),
        missing,
    }))
}

/// The cards of `ids` (by position in `ids`), from the product cache where
/// cached, else from catalog with their pictures from media (then cached);
/// and the ids that matched no product. The product-cards endpoint and the
/// feed use it.
pub async fn cards_for(
    state: &AppState,
    tenant: &str,
    ids: &[String],
) -> Result<(BTreeMap<usize, ProductCard>, Vec<String>), Problem> {
    let views = views_for(state, tenant, ids, false).await?;
    let missing = (0..ids.len())
        .filter(|i| !views.contains_key(i))
        .map(|i| ids[i].clone())
        .collect();
    let cards = views.iter().map(|(&i, v)| (i, card_of_view(v))).collect();
    Ok((cards, missing))
}

/// The views of `ids` (by position; absent: no such product), from the
/// product cache where cached (unless `bypass`), else from catalog with
/// their pictures from media in one call, then cached.
async fn views_for(
    state: &AppState,
    tenant: &str,
    ids: &[String],
    bypass: bool,
) -> Result<BTreeMap<usize, ProductView>, Problem> {
    let cached = state.products.get_many(tenant, ids, bypass).await;
    let mut views: BTreeMap<usize, ProductView> = BTreeMap::new();
    let mut misses = Vec::new();
    for (i, c) in cached.into_iter().enumerate() {
        match c {
            Some(v) => _ = views.insert(i, v),
            None => misses.push(i),
        }
    }
    if misses.is_empty() {
        return Ok(views);
    }
    let fetches = misses.iter().map(|&i| {
        let mut client = state.catalog.clone();
        let req = request(
            GetProductRequest {
                product_id: ids[i].clone(),
            },
            tenant,
            state.upstream_timeout,
        );
        async move { (i, client.get_product(req).await) }
    });
    let mut fetched = Vec::new();
    for (i, r) in futures::future::join_all(fetches).await {
        match r {
            Ok(resp) => {
                if let Some(p) = resp.into_inner().product {
                    fetched.push((i, ProductView::from(p)));
                }
            }
            Err(s) if s.code() == tonic::Code::NotFound => {}
            Err(s) if s.code() == tonic::Code::InvalidArgument => {}
            Err(s) => return Err(problem_of(s)),
        }
    }
    // The views read from catalog get their pictures in one call to media.
    let fetched_ids: Vec<String> = fetched.iter().map(|(_, v)| v.id.clone()).collect();
    let images = crate::media::product_images(state, tenant, &fetched_ids).await;
    // A placeholder shown because media did not answer is cached briefly,
    // so the real picture appears soon after media is back, while a media
    // outage still does not turn every read into a catalog read.
    let ttl = if images.answered {
        state.card_ttl_s
    } else {
        state.card_ttl_s.min(OUTAGE_CARD_TTL_S)
    };
    let fills = fetched.iter_mut().map(|(_, v)| {
        v.image_url = images.url(&v.id);
        state.products.fill(tenant, v, ttl)
    });
    futures::future::join_all(fills).await;
    views.extend(fetched);
    Ok(views)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_connection_is_a_503_and_a_failure_stays_a_500() {
        let p = problem_of(tonic::Status::unknown("transport error"));
        assert_eq!(p.status, 503);
        let p = problem_of(tonic::Status::internal("boom"));
        assert_eq!(
            (p.status, p.detail.as_deref()),
            (500, Some("catalog failed"))
        );
        assert_eq!(problem_of(tonic::Status::not_found("no")).status, 404);
    }
}
