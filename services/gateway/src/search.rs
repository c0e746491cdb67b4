//! Public product search and typeahead over search's gRPC `Query`. Query
//! parameters are parsed here (so a bad one is a 422 naming the field, not an
//! extractor's 400) and mapped one to one onto `QueryRequest`.

use axum::{
    Json,
    extract::{Query, State},
    http::HeaderMap,
};
use serde::{Deserialize, Serialize};
use shopstream_platform::{ErrorCode, Problem};
use shopstream_proto::{
    common::v1::{Money, PageRequest, PriceRange},
    search::v1::{FacetField, Hit, QueryRequest, QueryResponse, SearchSort},
};
use utoipa::{IntoParams, ToSchema};

use crate::{
    AppState,
    analytics::{Action, Seen},
    auth::MaybeUser,
    catalog::tenant,
    upstream::{problem_of, request},
};

const SERVICE: &str = "search";

/// Most hits one page may ask for (search clamps to the same bound).
pub const MAX_LIMIT: u32 = 100;
/// Most hits a typeahead may ask for.
pub const MAX_TYPEAHEAD_LIMIT: u32 = 20;
/// Typeahead default when `limit` is absent.
const DEFAULT_TYPEAHEAD_LIMIT: u32 = 8;
/// Longest query text accepted (characters, after trimming).
pub const MAX_QUERY_CHARS: usize = 256;

/// Query parameters of `GET /search`. Every one is optional.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// Full text over title and description, at most 256 characters; absent
    /// or blank browses by filters.
    #[param(max_length = 256)]
    pub q: Option<String>,
    pub category: Option<String>,
    pub region: Option<String>,
    /// Lowest price from: a non-negative integer in minor units, at most
    /// `max_price_minor`; empty = none.
    #[param(pattern = r"^(\+?[0-9]{1,18})?$")]
    pub min_price_minor: Option<String>,
    /// Highest price from: a non-negative integer in minor units, at least
    /// `min_price_minor`; empty = none.
    #[param(pattern = r"^(\+?[0-9]{1,18})?$")]
    pub max_price_minor: Option<String>,
    /// Currency of the price bounds (ISO 4217); absent = any.
    pub currency: Option<String>,
    /// `true`: only products with a SKU in stock; `false` or empty: all.
    #[param(pattern = r"^(true|false)?$")]
    pub in_stock: Option<String>,
    /// relevance, price_asc, price_desc or newest; empty: relevance with `q`,
    /// newest without.
    #[param(pattern = r"^(relevance|price_asc|price_desc|newest)?$")]
    pub sort: Option<String>,
    /// Page size, an integer from 1 to 100 (more is a 422, not a silent cut);
    /// empty: 20.
    #[param(pattern = r"^(\+?0*([1-9][0-9]?|100))?$")]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page (same filters and sort).
    pub cursor: Option<String>,
    /// Comma-separated facets to count: category, region, in_stock.
    #[param(
        pattern = r"^[^\S\x1c-\x1f]*(category|region|in_stock)?[^\S\x1c-\x1f]*(,[^\S\x1c-\x1f]*(category|region|in_stock)?[^\S\x1c-\x1f]*)*$"
    )]
    pub facets: Option<String>,
}

/// Query parameters of `GET /search/typeahead`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TypeaheadParams {
    /// What the user typed so far (not blank, at most 256 characters); the
    /// last word matches as a prefix.
    #[param(required = true, value_type = String, max_length = 256, pattern = r"[\S\x1c-\x1f]")]
    pub q: Option<String>,
    /// An integer from 1 to 20; empty: 8.
    #[param(pattern = r"^(\+?0*([1-9]|1[0-9]|20))?$")]
    pub limit: Option<String>,
}

/// One search hit. Prices and stock are as fresh as the last catalog change
/// search indexed (`version`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct SearchHit {
    pub product_id: String,
    pub title: String,
    pub category: String,
    pub region: String,
    /// Lowest SKU price, in minor units.
    pub price_from_minor: Option<i64>,
    /// ISO 4217 of `price_from_minor`.
    pub currency: Option<String>,
    pub in_stock: bool,
    /// Relevance (only meaningful for ordering).
    pub score: f32,
    /// Title with matched terms in `<em>…</em>`; absent when nothing matched.
    pub highlight: Option<String>,
    /// Catalog version this hit was indexed from.
    pub version: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct FacetBucketView {
    pub value: String,
    pub count: u64,
}

/// Counts over the filtered result, highest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct FacetView {
    /// category | region | in_stock
    pub field: String,
    pub buckets: Vec<FacetBucketView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct SearchResults {
    pub hits: Vec<SearchHit>,
    /// Empty unless `facets` asked for some.
    pub facets: Vec<FacetView>,
    /// Total matches (may be an estimate for large results).
    pub total_hits: u64,
    /// Search's own query time.
    pub took_ms: u32,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

fn invalid(field: &str, message: impl Into<String>) -> Problem {
    Problem::new(ErrorCode::Unprocessable, "invalid search parameters").with_field(field, message)
}

fn nonempty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// A value that must be given exactly (numbers, flags, names): empty is
/// absent, nothing is trimmed, so the document's patterns are the rule.
fn exact(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

fn text(q: Option<String>) -> Result<String, Problem> {
    // Counted as sent, before trimming, as the document's maxLength counts.
    if q.as_ref()
        .is_some_and(|q| q.chars().count() > MAX_QUERY_CHARS)
    {
        return Err(invalid(
            "q",
            format!("at most {MAX_QUERY_CHARS} characters"),
        ));
    }
    Ok(nonempty(q).unwrap_or_default())
}

fn limit(raw: Option<String>, max: u32) -> Result<u32, Problem> {
    match exact(raw) {
        None => Ok(0),
        Some(s) => match s.parse::<u32>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(invalid("limit", format!("an integer from 1 to {max}"))),
        },
    }
}

fn price(field: &str, raw: Option<String>) -> Result<Option<i64>, Problem> {
    match exact(raw) {
        None => Ok(None),
        Some(s) => match s.parse::<i64>() {
            Ok(n) if n >= 0 => Ok(Some(n)),
            _ => Err(invalid(field, "a non-negative integer (minor units)")),
        },
    }
}

fn sort(raw: Option<String>) -> Result<SearchSort, Problem> {
    Ok(match exact(raw).as_deref() {
        None => SearchSort::Unspecified,
        Some("relevance") => SearchSort::Relevance,
        Some("price_asc") => SearchSort::PriceAsc,
        Some("price_desc") => SearchSort::PriceDesc,
        Some("newest") => SearchSort::Newest,
        Some(other) => {
            return Err(invalid(
                "sort",
                format!("{other:?} is not one of relevance, price_asc, price_desc, newest"),
            ));
        }
    })
}

fn facets(raw: Option<String>) -> Result<Vec<i32>, Problem> {
    let mut out = Vec::new();
    for f in nonempty(raw).unwrap_or_default().split(',').map(str::trim) {
        let field = match f {
            "" => continue,
            "category" => FacetField::Category,
            "region" => FacetField::Region,
            "in_stock" => FacetField::InStock,
            other => {
                return Err(invalid(
                    "facets",
                    format!("{other:?} is not one of category, region, in_stock"),
                ));
            }
        };
        if !out.contains(&(field as i32)) {
            out.push(field as i32);
        }
    }
    Ok(out)
}

/// Validate `GET /search` parameters into search's request.
pub fn search_request(p: SearchParams) -> Result<QueryRequest, Problem> {
    let in_stock_only = match exact(p.in_stock).as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(invalid("in_stock", "true or false")),
    };
    let min = price("min_price_minor", p.min_price_minor)?;
    let max = price("max_price_minor", p.max_price_minor)?;
    if let (Some(a), Some(b)) = (min, max)
        && a > b
    {
        return Err(invalid(
            "min_price_minor",
            "must not exceed max_price_minor",
        ));
    }
    let currency = nonempty(p.currency)
        .map(|c| c.to_uppercase())
        .unwrap_or_default();
    let money = |amount_minor| Money {
        amount_minor,
        currency: currency.clone(),
    };
    let price = (min.is_some() || max.is_some()).then(|| PriceRange {
        min: min.map(money),
        max: max.map(money),
    });
    Ok(QueryRequest {
        text: text(p.q)?,
        category: nonempty(p.category).unwrap_or_default(),
        region: nonempty(p.region).unwrap_or_default(),
        price,
        in_stock_only,
        sort: sort(p.sort)? as i32,
        page: Some(PageRequest {
            page_size: limit(p.limit, MAX_LIMIT)?,
            cursor: nonempty(p.cursor).unwrap_or_default(),
        }),
        typeahead: false,
        facets: facets(p.facets)?,
    })
}

/// Validate `GET /search/typeahead` parameters into search's request.
pub fn typeahead_request(p: TypeaheadParams) -> Result<QueryRequest, Problem> {
    let text = text(p.q)?;
    if text.is_empty() {
        return Err(invalid("q", "must not be empty"));
    }
    let page_size = match limit(p.limit, MAX_TYPEAHEAD_LIMIT)? {
        0 => DEFAULT_TYPEAHEAD_LIMIT,
        n => n,
    };
    Ok(QueryRequest {
        text,
        page: Some(PageRequest {
            page_size,
            cursor: String::new(),
        }),
        typeahead: true,
        ..Default::default()
    })
}

fn hit_view(h: Hit) -> SearchHit {
    let (price_from_minor, currency) = match h.price_from {
        Some(m) => (Some(m.amount_minor), Some(m.currency)),
        None => (None, None),
    };
    SearchHit {
        product_id: h.product_id,
        title: h.title,
        category: h.category,
        region: h.region,
        price_from_minor,
        currency,
        in_stock: h.in_stock,
        score: h.score,
        highlight: Some(h.highlight).filter(|s| !s.is_empty()),
        version: h.version,
    }
}

fn facet_name(f: i32) -> &'static str {
    match FacetField::try_from(f).unwrap_or(FacetField::Unspecified) {
        FacetField::Category => "category",
        FacetField::Region => "region",
        FacetField::InStock => "in_stock",
        FacetField::Unspecified => "unspecified",
    }
}

/// Search's answer → the REST body.
pub fn results_view(r: QueryResponse) -> SearchResults {
    SearchResults {
        hits: r.hits.into_iter().map(hit_view).collect(),
        facets: r
            .facets
            .into_iter()
            .map(|f| FacetView {
                field: facet_name(f.field).to_string(),
                buckets: f
                    .buckets
                    .into_iter()
                    .map(|b| FacetBucketView {
                        value: b.value,
                        count: b.count,
                    })
                    .collect(),
            })
            .collect(),
        total_hits: r.total_hits,
        took_ms: r.took_ms,
        next_cursor: r.page.map(|p| p.next_cursor).filter(|c| !c.is_empty()),
    }
}

async fn query(
    state: &AppState,
    tenant: &str,
    msg: QueryRequest,
) -> Result<Json<SearchResults>, Problem> {
    let resp = state
        .search
        .clone()
        .query(request(msg, tenant, state.upstream_timeout))
        .await
        .map_err(|s| problem_of(SERVICE, s))?
        .into_inner();
    Ok(Json(results_view(resp)))
}

/// Search products: full text (BM25), filters, facets, sorts and cursor pagination (public).
#[utoipa::path(get, path = "/search", params(SearchParams), tag = "search", security((), ("bearer" = [])),
    responses((status = 200, body = SearchResults),
        (status = 400, description = "a parameter given twice"),
        (status = 401, description = "an access token was sent and is invalid"),
        (status = 422, description = "invalid parameter or cursor (problem+json with errors[])"),
        (status = 503, description = "search is unavailable")))]
pub async fn search(
    State(state): State<AppState>,
    user: MaybeUser,
    seen: Seen,
    headers: HeaderMap,
    Query(p): Query<SearchParams>,
) -> Result<Json<SearchResults>, Problem> {
    let msg = search_request(p)?;
    let tenant = tenant(&user, &headers, &state);
    let results = query(&state, &tenant, msg).await?;
    let who = user.0.as_ref().map(|c| c.sub.as_str());
    let now = state.clock.now_ms();
    state
        .analytics
        // Without the query: events carry no free text (ADR 0012), and
        // analytics only counts searches.
        .record(&tenant, seen.event(Action::Search, "", who, now));
    Ok(results)
}

/// Typeahead: titles whose words start with what was typed (public; no facets).
#[utoipa::path(get, path = "/search/typeahead", params(TypeaheadParams), tag = "search", security((), ("bearer" = [])),
    responses((status = 200, body = SearchResults),
        (status = 400, description = "a parameter given twice"),
        (status = 401, description = "an access token was sent and is invalid"),
        (status = 422, description = "no or blank `q`, or an invalid parameter"),
        (status = 503, description = "search is unavailable")))]
pub async fn typeahead(
    State(state): State<AppState>,
    user: MaybeUser,
    headers: HeaderMap,
    Query(p): Query<TypeaheadParams>,
) -> Result<Json<SearchResults>, Problem> {
    let msg = typeahead_request(p)?;
    query(&state, &tenant(&user, &headers, &state), msg).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    #[test]
    fn parameters_map_onto_the_query_request() {
        let r = search_request(SearchParams {
            q: s(" lamp "),
            category: s("home"),
            min_price_minor: s("100"),
            max_price_minor: s("5000"),
            currency: s("eur"),
            in_stock: s("true"),
            sort: s("price_desc"),
            limit: s("10"),
            cursor: s("o10"),
            facets: s("region,category,region"),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(r.text, "lamp");
        assert_eq!(r.category, "home");
        assert!(r.in_stock_only);
        assert_eq!(r.sort, SearchSort::PriceDesc as i32);
        let price = r.price.unwrap();
        assert_eq!(price.min.unwrap().amount_minor, 100);
        assert_eq!(price.max.unwrap().currency, "EUR");
        assert_eq!(r.page.as_ref().unwrap().page_size, 10);
        assert_eq!(r.page.unwrap().cursor, "o10");
        assert_eq!(
            r.facets,
            vec![FacetField::Region as i32, FacetField::Category as i32]
        );
        let empty = search_request(SearchParams::default()).unwrap();
        assert!(empty.price.is_none());
        assert_eq!(empty.sort, SearchSort::Unspecified as i32);
    }

    #[test]
    fn bad_parameters_name_their_field() {
        let cases = [
            (
                SearchParams {
                    sort: s("sideways"),
                    ..Default::default()
                },
                "sort",
            ),
            (
                SearchParams {
                    limit: s("0"),
                    ..Default::default()
                },
                "limit",
            ),
            (
                SearchParams {
                    limit: s("101"),
                    ..Default::default()
                },
                "limit",
            ),
            (
                SearchParams {
                    in_stock: s("maybe"),
                    ..Default::default()
                },
                "in_stock",
            ),
            (
                SearchParams {
                    min_price_minor: s("-1"),
                    ..Default::default()
                },
                "min_price_minor",
            ),
            (
                SearchParams {
                    min_price_minor: s("9"),
                    max_price_minor: s("1"),
                    ..Default::default()
                },
                "min_price_minor",
            ),
            (
                SearchParams {
                    facets: s("colour"),
                    ..Default::default()
                },
                "facets",
            ),
            (
                SearchParams {
                    q: Some("x".repeat(MAX_QUERY_CHARS + 1)),
                    ..Default::default()
                },
                "q",
            ),
        ];
        for (p, field) in cases {
            let e = search_request(p).unwrap_err();
            assert_eq!(e.status, 422);
            assert_eq!(e.errors[0].field, field);
        }
        let e = typeahead_request(TypeaheadParams::default()).unwrap_err();
        assert_eq!(e.errors[0].field, "q");
        let t = typeahead_request(TypeaheadParams {
            q: s("bra"),
            limit: None,
        })
        .unwrap();
        assert!(t.typeahead);
        assert_eq!(t.page.unwrap().page_size, DEFAULT_TYPEAHEAD_LIMIT);
    }
}
