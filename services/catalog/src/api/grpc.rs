//! The catalog's gRPC surface (`shopstream.catalog.v1.CatalogService`):
//! `GetProduct`, `ListProducts` and `UpdateStock`, translated between protobuf
//! and the use cases. Errors become status codes through
//! `Problem::to_status`; the tenant is the `x-tenant-id` metadata, else the
//! configured default tenant.

use shopstream_proto::{
    TENANT_METADATA_KEY,
    catalog::v1::{
        self as pb, GetProductRequest, GetProductResponse, ListProductsRequest,
        ListProductsResponse, ProductSort, UpdateStockRequest, UpdateStockResponse,
        catalog_service_server::CatalogService, update_stock_request::Change,
    },
    common::v1::{Money as PbMoney, PageResponse},
};
use tonic::{Request, Response, Status};

use crate::{
    domain::{
        FieldErrors, ListParams, ListQuery, Product, ProductId, Sku, SkuId, Sort, StockChange,
        TenantId, product::stock_reason,
    },
    error::Error,
    service::{Catalog, StockRequest},
};

/// The gRPC service over the catalog's use cases.
#[derive(Debug, Clone)]
pub struct CatalogGrpc {
    catalog: Catalog,
    default_tenant: TenantId,
}

impl CatalogGrpc {
    pub fn new(catalog: Catalog, default_tenant: TenantId) -> CatalogGrpc {
        CatalogGrpc {
            catalog,
            default_tenant,
        }
    }

    fn tenant<T>(&self, req: &Request<T>) -> Result<TenantId, Status> {
        match req.metadata().get(TENANT_METADATA_KEY) {
            None => Ok(self.default_tenant.clone()),
            Some(v) => v
                .to_str()
                .map_err(|_| "is not ASCII".to_string())
                .and_then(TenantId::parse)
                .map_err(|m| Error::BadRequest(format!("{TENANT_METADATA_KEY} {m}")).into()),
        }
    }
}

fn money(m: &crate::domain::Money) -> PbMoney {
    PbMoney {
        amount_minor: m.amount_minor,
        currency: m.currency.to_string(),
    }
}

fn sku(product: ProductId, s: &Sku) -> pb::Sku {
    pb::Sku {
        sku_id: s.id.to_string(),
        product_id: product.to_string(),
        name: s.name.clone(),
        price: Some(money(&s.price)),
        stock: s.stock,
    }
}

/// A product on the wire. `region` is its home region (the first of its regions).
pub fn product(p: &Product) -> pb::Product {
    pb::Product {
        product_id: p.id.to_string(),
        title: p.title.clone(),
        description: p.description.clone(),
        category: p.category.to_string(),
        region: p.home_region().map(|r| r.to_string()).unwrap_or_default(),
        skus: p.skus.iter().map(|s| sku(p.id, s)).collect(),
        media_asset_ids: Vec::new(),
        version: p.version,
        created_at_ms: p.created_at_ms,
        updated_at_ms: p.updated_at_ms,
    }
}

fn sort(s: ProductSort) -> Sort {
    match s {
        ProductSort::Unspecified | ProductSort::Newest => Sort::Newest,
        ProductSort::PriceAsc => Sort::PriceAsc,
        ProductSort::PriceDesc => Sort::PriceDesc,
        ProductSort::TitleAsc => Sort::Name,
    }
}

/// Proto field names for the listing parameters' errors.
fn proto_field(field: &str) -> &str {
    match field {
        "min_price" => "price.min.amount_minor",
        "max_price" => "price.max.amount_minor",
        "currency" => "price.min.currency",
        "limit" => "page.page_size",
        "cursor" => "page.cursor",
        other => other,
    }
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// Validate a `ListProductsRequest` with the same rules as the HTTP listing.
fn list_query(req: ListProductsRequest) -> Result<ListQuery, Error> {
    let mut e = FieldErrors::new();
    let sort_value = match ProductSort::try_from(req.sort) {
        Ok(s) => sort(s),
        Err(_) => {
            e.push("sort", "is not a ProductSort value");
            Sort::Newest
        }
    };
    let page = req.page.unwrap_or_default();
    let range = req.price.unwrap_or_default();
    let (min, max) = (range.min, range.max);
    let min_currency = min.as_ref().and_then(|m| non_empty(m.currency.clone()));
    let max_currency = max.as_ref().and_then(|m| non_empty(m.currency.clone()));
    if let (Some(a), Some(b)) = (&min_currency, &max_currency)
        && a != b
    {
        e.push("price.max.currency", "must equal price.min.currency");
    }
    let params = ListParams {
        category: non_empty(req.category),
        region: non_empty(req.region),
        min_price: min.map(|m| m.amount_minor.to_string()),
        max_price: max.map(|m| m.amount_minor.to_string()),
        currency: min_currency.or(max_currency),
        sort: Some(sort_value.as_str().to_string()),
        limit: Some(ListQuery::clamp_limit(page.page_size).to_string()),
        cursor: non_empty(page.cursor),
    };
    match ListQuery::parse(&params) {
        Ok(q) if e.is_empty() => Ok(q),
        Ok(_) => Err(Error::invalid(e)),
        Err(fields) => {
            for f in fields {
                e.push(proto_field(&f.field), f.message);
            }
            Err(Error::invalid(e))
        }
    }
}

#[tonic::async_trait]
impl CatalogService for CatalogGrpc {
    async fn get_product(
        &self,
        request: Request<GetProductRequest>,
    ) -> Result<Response<GetProductResponse>, Status> {
        let tenant = self.tenant(&request)?;
        let raw = request.into_inner().product_id;
        let id = ProductId::parse(&raw)
            .map_err(|_| Status::from(Error::ProductNotFound(raw.clone())))?;
        let p = self.catalog.get(&tenant, id).await?;
        Ok(Response::new(GetProductResponse {
            product: Some(product(&p)),
        }))
    }

    async fn list_products(
        &self,
        request: Request<ListProductsRequest>,
    ) -> Result<Response<ListProductsResponse>, Status> {
        let tenant = self.tenant(&request)?;
        let query = list_query(request.into_inner())?;
        let page = self.catalog.list(&tenant, &query).await?;
        Ok(Response::new(ListProductsResponse {
            products: page.items.iter().map(product).collect(),
            page: Some(PageResponse {
                next_cursor: page.next.map(|c| c.encode()).unwrap_or_default(),
            }),
        }))
    }

    async fn update_stock(
        &self,
        request: Request<UpdateStockRequest>,
    ) -> Result<Response<UpdateStockResponse>, Status> {
        let tenant = self.tenant(&request)?;
        let req = request.into_inner();
        let mut e = FieldErrors::new();
        let sku_ref = req.sku.unwrap_or_default();
        if sku_ref.sku_id.is_empty() {
            e.push("sku.sku_id", "is required");
        }
        let change = match req.change {
            Some(Change::SetTo(n)) => Some(StockChange::SetTo(n)),
            Some(Change::Delta(d)) => Some(StockChange::Delta(d)),
            None => {
                e.push("change", "is required: set_to or delta");
                None
            }
        };
        if req.expected_version < 0 {
            e.push("expected_version", "must be >= 0 (0 means any version)");
        }
        e.check("reason", stock_reason(&req.reason));
        let Some(change) = change.filter(|_| e.is_empty()) else {
            return Err(Error::invalid(e).into());
        };
        // Ids that cannot exist are simply not found.
        let not_found = || Status::from(Error::SkuNotFound(sku_ref.sku_id.clone()));
        let sku_id = SkuId::parse(&sku_ref.sku_id).map_err(|_| not_found())?;
        let product_id = match non_empty(sku_ref.product_id.clone()) {
            None => None,
            Some(raw) => Some(ProductId::parse(&raw).map_err(|_| not_found())?),
        };
        tracing::info!(sku_id = %sku_id, ?change, reason = %req.reason, "stock change");
        let p = self
            .catalog
            .update_stock(
                &tenant,
                &StockRequest {
                    sku_id: sku_id.clone(),
                    product_id,
                    change,
                    expected_version: (req.expected_version != 0).then_some(req.expected_version),
                },
            )
            .await?;
        let s = p
            .sku(&sku_id)
            .ok_or_else(|| Status::from(Error::Internal("updated sku missing".into())))?;
        Ok(Response::new(UpdateStockResponse {
            sku: Some(sku(p.id, s)),
            version: p.version,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shopstream_proto::common::v1::{PageRequest, PriceRange};

    #[test]
    fn list_requests_map_to_queries() {
        let q = list_query(ListProductsRequest::default()).unwrap();
        assert_eq!(q, ListQuery::default());
        let q = list_query(ListProductsRequest {
            page: Some(PageRequest {
                page_size: 1_000,
                cursor: String::new(),
            }),
            category: "books".into(),
            region: "eu".into(),
            price: Some(PriceRange {
                min: Some(PbMoney {
                    amount_minor: 100,
                    currency: "EUR".into(),
                }),
                max: None,
            }),
            sort: ProductSort::TitleAsc as i32,
        })
        .unwrap();
        assert_eq!(q.limit, crate::domain::query::MAX_LIMIT);
        assert_eq!(q.sort, Sort::Name);
        assert_eq!(q.filter.price.min_minor, Some(100));
        assert_eq!(
            q.filter.price.currency.map(|c| c.to_string()).as_deref(),
            Some("EUR")
        );
    }

    #[test]
    fn invalid_list_requests_name_proto_fields() {
        let err = list_query(ListProductsRequest {
            page: Some(PageRequest {
                page_size: 5,
                cursor: "garbage!".into(),
            }),
            price: Some(PriceRange {
                min: Some(PbMoney {
                    amount_minor: -1,
                    currency: "EUR".into(),
                }),
                max: Some(PbMoney {
                    amount_minor: 10,
                    currency: "USD".into(),
                }),
            }),
            sort: 99,
            ..ListProductsRequest::default()
        })
        .unwrap_err();
        let Error::Invalid { fields, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(
            fields.fields(),
            [
                "sort",
                "price.max.currency",
                "price.min.amount_minor",
                "page.cursor"
            ]
        );
        assert_eq!(Status::from(err).code(), tonic::Code::InvalidArgument);
    }
}
