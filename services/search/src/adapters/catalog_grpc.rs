//! [`CatalogSource`] over the catalog's gRPC `GetProduct` / `ListProducts`,
//! with the tenant in metadata and a deadline on every call.

use async_trait::async_trait;
use shopstream_platform::grpc::TraceInterceptor;
use shopstream_proto::{
    TENANT_METADATA_KEY,
    catalog::v1::{
        GetProductRequest, ListProductsRequest, Product, ProductSort,
        catalog_service_client::CatalogServiceClient,
    },
    common::v1::PageRequest,
};
use tonic::{Code, codegen::InterceptedService, metadata::MetadataValue, transport::Channel};

use crate::{
    domain::ProductDoc,
    ports::{CatalogError, CatalogPage, CatalogSource},
};

/// The catalog over gRPC. Cheap to clone.
#[derive(Debug, Clone)]
pub struct GrpcCatalog {
    client: CatalogServiceClient<InterceptedService<Channel, TraceInterceptor>>,
}

impl GrpcCatalog {
    /// `channel` should carry connect and request deadlines
    /// (`platform::grpc::channel`).
    pub fn new(channel: Channel) -> GrpcCatalog {
        GrpcCatalog {
            client: CatalogServiceClient::with_interceptor(channel, TraceInterceptor),
        }
    }
}

fn request<T>(tenant: &str, msg: T) -> Result<tonic::Request<T>, CatalogError> {
    let mut req = tonic::Request::new(msg);
    let v: MetadataValue<_> = tenant
        .parse()
        .map_err(|_| CatalogError::Other("tenant id is not a valid header value".into()))?;
    req.metadata_mut().insert(TENANT_METADATA_KEY, v);
    Ok(req)
}

fn status_err(s: tonic::Status) -> CatalogError {
    match s.code() {
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::Cancelled
        | Code::Unknown => CatalogError::Unavailable(s.message().to_string()),
        c => CatalogError::Other(format!("{c:?}: {}", s.message())),
    }
}

/// A catalog product as a live index document.
pub fn to_doc(tenant: &str, p: &Product) -> ProductDoc {
    let cheapest = p
        .skus
        .iter()
        .filter_map(|s| s.price.as_ref())
        .min_by_key(|m| m.amount_minor);
    ProductDoc {
        tenant_id: tenant.to_string(),
        product_id: p.product_id.clone(),
        version: p.version,
        deleted: false,
        title: p.title.clone(),
        description: p.description.clone(),
        category: p.category.clone(),
        region: p.region.clone(),
        price_from_minor: cheapest.map(|m| m.amount_minor).unwrap_or(0),
        currency: cheapest.map(|m| m.currency.clone()).unwrap_or_default(),
        in_stock: p.skus.iter().any(|s| s.stock > 0),
        thumbnail_url: String::new(),
        updated_at_ms: p.updated_at_ms,
        commit_ts_ms: None,
    }
}

#[async_trait]
impl CatalogSource for GrpcCatalog {
    async fn get_product(
        &self,
        tenant: &str,
        product_id: &str,
    ) -> Result<Option<ProductDoc>, CatalogError> {
        let req = request(
            tenant,
            GetProductRequest {
                product_id: product_id.to_string(),
            },
        )?;
        match self.client.clone().get_product(req).await {
            Ok(r) => Ok(r.into_inner().product.map(|p| to_doc(tenant, &p))),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            // A product id the catalog cannot parse is one it does not have.
            Err(s) if s.code() == Code::InvalidArgument => Ok(None),
            Err(s) => Err(status_err(s)),
        }
    }

    async fn list_products(
        &self,
        tenant: &str,
        cursor: &str,
        page_size: u32,
    ) -> Result<CatalogPage, CatalogError> {
        let req = request(
            tenant,
            ListProductsRequest {
                page: Some(PageRequest {
                    page_size,
                    cursor: cursor.to_string(),
                }),
                sort: ProductSort::Newest as i32,
                ..Default::default()
            },
        )?;
        let r = self
            .client
            .clone()
            .list_products(req)
            .await
            .map_err(status_err)?
            .into_inner();
        Ok(CatalogPage {
            products: r.products.iter().map(|p| to_doc(tenant, p)).collect(),
            next_cursor: r.page.map(|p| p.next_cursor).unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shopstream_proto::{catalog::v1::Sku, common::v1::Money};

    #[test]
    fn price_from_is_the_cheapest_sku_and_in_stock_any_sku() {
        let sku = |price, stock| Sku {
            price: Some(Money {
                amount_minor: price,
                currency: "EUR".into(),
            }),
            stock,
            ..Default::default()
        };
        let p = Product {
            product_id: "p".into(),
            title: "Scarf".into(),
            version: 4,
            skus: vec![sku(900, 0), sku(500, 0), sku(700, 2)],
            ..Default::default()
        };
        let d = to_doc("t", &p);
        assert_eq!((d.price_from_minor, d.currency.as_str()), (500, "EUR"));
        assert!(d.in_stock);
        assert_eq!(d.version, 4);
        let empty = to_doc("t", &Product::default());
        assert_eq!(
            (
                empty.price_from_minor,
                empty.currency.as_str(),
                empty.in_stock
            ),
            (0, "", false)
        );
    }
}
