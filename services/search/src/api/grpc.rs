//! gRPC `SearchService.Query`: request validation and mapping to the domain
//! query, and back.

use std::{sync::Arc, time::Instant};

use shopstream_platform::{ErrorCode, Problem, grpc::tenant};
use shopstream_proto::{
    common::v1::{Money, PageResponse},
    search::v1::{
        Facet, FacetBucket, FacetField as WireFacet, Hit as WireHit, QueryRequest, QueryResponse,
        SearchSort, search_service_server::SearchService,
    },
};
use tonic::{Request, Response, Status};

use crate::{
    domain::{self, FacetField, SearchQuery, Sort},
    ports::{IndexError, SearchIndex},
};

pub struct GrpcApi {
    pub index: Arc<dyn SearchIndex>,
    pub default_tenant: String,
}

impl std::fmt::Debug for GrpcApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GrpcApi")
    }
}

fn invalid(field: &str, msg: &str) -> Problem {
    Problem::new(ErrorCode::Unprocessable, "invalid query").with_field(field, msg)
}

/// Validate a wire request into a domain query.
pub fn to_query(tenant: &str, r: &QueryRequest) -> Result<SearchQuery, Problem> {
    let nonempty = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
    let (min, max) = r
        .price
        .as_ref()
        .map(|p| (p.min.clone(), p.max.clone()))
        .unwrap_or((None, None));
    let currency = match (&min, &max) {
        (Some(a), Some(b)) if a.currency != b.currency => {
            return Err(invalid("price", "min and max must share a currency"));
        }
        (Some(m), _) | (_, Some(m)) => nonempty(&m.currency),
        _ => None,
    };
    if let (Some(a), Some(b)) = (&min, &max)
        && a.amount_minor > b.amount_minor
    {
        return Err(invalid("price", "min must not exceed max"));
    }
    let page = r.page.clone().unwrap_or_default();
    let offset = domain::decode_cursor(&page.cursor)
        .map_err(|_| invalid("page.cursor", "not a cursor from a previous page"))?;
    let text = r.text.trim().to_string();
    let sort = match SearchSort::try_from(r.sort).unwrap_or(SearchSort::Unspecified) {
        _ if r.typeahead => Sort::Relevance,
        SearchSort::Relevance => Sort::Relevance,
        SearchSort::PriceAsc => Sort::PriceAsc,
        SearchSort::PriceDesc => Sort::PriceDesc,
        SearchSort::Newest => Sort::Newest,
        SearchSort::Unspecified if text.is_empty() => Sort::Newest,
        SearchSort::Unspecified => Sort::Relevance,
    };
    let facets = if r.typeahead {
        Vec::new()
    } else {
        r.facets
            .iter()
            .filter_map(|f| match WireFacet::try_from(*f).ok()? {
                WireFacet::Category => Some(FacetField::Category),
                WireFacet::Region => Some(FacetField::Region),
                WireFacet::InStock => Some(FacetField::InStock),
                WireFacet::Unspecified => None,
            })
            .collect()
    };
    Ok(SearchQuery {
        tenant_id: tenant.to_string(),
        text,
        category: nonempty(&r.category),
        region: nonempty(&r.region),
        price_min_minor: min.map(|m| m.amount_minor),
        price_max_minor: max.map(|m| m.amount_minor),
        currency,
        in_stock_only: r.in_stock_only,
        sort,
        limit: domain::page_size(page.page_size),
        offset,
        typeahead: r.typeahead,
        facets,
    })
}

pub fn index_problem(e: IndexError) -> Problem {
    tracing::error!(error = %e, "search index failed");
    match e {
        IndexError::Unavailable(_) => Problem::new(ErrorCode::Unavailable, "search is unavailable"),
        IndexError::Backend(_) => Problem::new(ErrorCode::Internal, "search failed"),
    }
}

#[tonic::async_trait]
impl SearchService for GrpcApi {
    async fn query(&self, req: Request<QueryRequest>) -> Result<Response<QueryResponse>, Status> {
        let started = Instant::now();
        let tenant = tenant(&req, &self.default_tenant);
        let q = to_query(&tenant, req.get_ref())?;
        let res = self.index.search(&q).await.map_err(index_problem)?;
        let next_cursor = domain::next_cursor(q.offset, res.hits.len(), res.total);
        Ok(Response::new(QueryResponse {
            hits: res
                .hits
                .into_iter()
                .map(|h| WireHit {
                    product_id: h.product_id,
                    title: h.title,
                    category: h.category,
                    region: h.region,
                    price_from: Some(Money {
                        amount_minor: h.price_from_minor,
                        currency: h.currency,
                    }),
                    in_stock: h.in_stock,
                    score: h.score,
                    highlight: h.highlight,
                    thumbnail_url: h.thumbnail_url,
                    version: h.version,
                })
                .collect(),
            facets: res
                .facets
                .into_iter()
                .map(|(field, buckets)| Facet {
                    field: match field {
                        FacetField::Category => WireFacet::Category,
                        FacetField::Region => WireFacet::Region,
                        FacetField::InStock => WireFacet::InStock,
                    } as i32,
                    buckets: buckets
                        .into_iter()
                        .map(|(value, count)| FacetBucket { value, count })
                        .collect(),
                })
                .collect(),
            page: Some(PageResponse { next_cursor }),
            total_hits: res.total,
            took_ms: u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shopstream_proto::common::v1::{PageRequest, PriceRange};

    fn money(a: i64, c: &str) -> Option<Money> {
        Some(Money {
            amount_minor: a,
            currency: c.into(),
        })
    }

    #[test]
    fn maps_filters_sort_and_page() {
        let r = QueryRequest {
            text: " wool ".into(),
            category: "scarves".into(),
            price: Some(PriceRange {
                min: money(100, "EUR"),
                max: None,
            }),
            sort: SearchSort::PriceDesc as i32,
            page: Some(PageRequest {
                page_size: 500,
                cursor: "o20".into(),
            }),
            facets: vec![WireFacet::Region as i32, 99],
            ..Default::default()
        };
        let q = to_query("t", &r).unwrap();
        assert_eq!(q.text, "wool");
        assert_eq!(q.category.as_deref(), Some("scarves"));
        assert_eq!(q.region, None);
        assert_eq!((q.price_min_minor, q.price_max_minor), (Some(100), None));
        assert_eq!(q.currency.as_deref(), Some("EUR"));
        assert_eq!((q.sort, q.limit, q.offset), (Sort::PriceDesc, 100, 20));
        assert_eq!(q.facets, vec![FacetField::Region]);
    }

    #[test]
    fn default_sort_depends_on_text_and_typeahead_drops_facets() {
        let q = to_query("t", &QueryRequest::default()).unwrap();
        assert_eq!((q.sort, q.limit), (Sort::Newest, 20));
        let r = QueryRequest {
            text: "sc".into(),
            typeahead: true,
            facets: vec![1],
            sort: SearchSort::PriceAsc as i32,
            ..Default::default()
        };
        let q = to_query("t", &r).unwrap();
        assert_eq!(q.sort, Sort::Relevance);
        assert!(q.facets.is_empty());
    }

    #[test]
    fn rejects_bad_ranges_and_cursors() {
        let range = |min, max| QueryRequest {
            price: Some(PriceRange { min, max }),
            ..Default::default()
        };
        assert!(to_query("t", &range(money(1, "EUR"), money(2, "USD"))).is_err());
        assert!(to_query("t", &range(money(3, "EUR"), money(2, "EUR"))).is_err());
        let r = QueryRequest {
            page: Some(PageRequest {
                page_size: 1,
                cursor: "garbage".into(),
            }),
            ..Default::default()
        };
        assert!(to_query("t", &r).is_err());
    }
}
