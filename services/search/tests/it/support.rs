//! A fake catalog gRPC server and a search service started through `run`.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use shopstream_proto::{
    catalog::v1::{
        GetProductRequest, GetProductResponse, ListProductsRequest, ListProductsResponse, Product,
        Sku, UpdateStockRequest, UpdateStockResponse,
        catalog_service_server::{CatalogService, CatalogServiceServer},
    },
    common::v1::{Money, PageResponse},
};
use shopstream_runtime::testkit;
use shopstream_search::{Backend, Config};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status, transport::server::TcpIncoming};

/// Products by id; tests edit it directly.
#[derive(Clone, Default)]
pub struct FakeCatalog {
    pub products: Arc<Mutex<BTreeMap<String, Product>>>,
}

pub fn product(id: &str, version: i64, title: &str, price: i64, stock: i64) -> Product {
    Product {
        product_id: id.to_string(),
        title: title.to_string(),
        description: format!("description of {title}"),
        category: "misc".into(),
        region: "eu".into(),
        skus: vec![Sku {
            sku_id: format!("{id}-S"),
            product_id: id.to_string(),
            name: "one".into(),
            price: Some(Money {
                amount_minor: price,
                currency: "EUR".into(),
            }),
            stock,
        }],
        version,
        updated_at_ms: version,
        ..Default::default()
    }
}

impl FakeCatalog {
    pub fn put(&self, p: Product) {
        self.products
            .lock()
            .unwrap()
            .insert(p.product_id.clone(), p);
    }

    pub fn remove(&self, id: &str) {
        self.products.lock().unwrap().remove(id);
    }

    /// Serve on a fresh port; returns its URL.
    pub async fn serve(&self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let svc = CatalogServiceServer::new(self.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(TcpIncoming::from(listener))
                .await
                .unwrap();
        });
        format!("http://{addr}")
    }
}

#[tonic::async_trait]
impl CatalogService for FakeCatalog {
    async fn get_product(
        &self,
        req: Request<GetProductRequest>,
    ) -> Result<Response<GetProductResponse>, Status> {
        let id = req.into_inner().product_id;
        match self.products.lock().unwrap().get(&id) {
            Some(p) => Ok(Response::new(GetProductResponse {
                product: Some(p.clone()),
            })),
            None => Err(Status::not_found("no such product")),
        }
    }

    async fn list_products(
        &self,
        req: Request<ListProductsRequest>,
    ) -> Result<Response<ListProductsResponse>, Status> {
        let page = req.into_inner().page.unwrap_or_default();
        let size = (page.page_size.clamp(1, 100)) as usize;
        let offset: usize = page.cursor.parse().unwrap_or(0);
        let all: Vec<Product> = self.products.lock().unwrap().values().cloned().collect();
        let products: Vec<Product> = all.iter().skip(offset).take(size).cloned().collect();
        let next = offset + products.len();
        Ok(Response::new(ListProductsResponse {
            products,
            page: Some(PageResponse {
                next_cursor: if next < all.len() {
                    next.to_string()
                } else {
                    String::new()
                },
            }),
        }))
    }

    async fn update_stock(
        &self,
        _req: Request<UpdateStockRequest>,
    ) -> Result<Response<UpdateStockResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

/// A fresh index directory.
pub fn index_dir(prefix: &str) -> PathBuf {
    std::env::temp_dir().join(testkit::unique(prefix))
}

/// A running search service.
pub struct App {
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    pub topic: String,
    pub service: testkit::RunningService,
}

impl App {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub async fn stop(self) {
        let _ = self.service.stop().await;
    }
}

/// Start the search service through `run` on the test stack's Kafka with its
/// own topic, consumer group and index directory.
pub async fn spawn_app(catalog_url: &str) -> App {
    spawn_app_with(catalog_url, false).await
}

/// [`spawn_app`], optionally reconciling with the catalog at start.
pub async fn spawn_app_with(catalog_url: &str, reconcile_on_start: bool) -> App {
    let topic = testkit::unique("it_product_events");
    let service = testkit::spawn_service::<shopstream_search::Server>(|service| Config {
        service,
        backend: Backend::Tantivy {
            index_dir: index_dir("it_search_index"),
        },
        catalog_url: catalog_url.to_string(),
        topic: topic.clone(),
        consumer_group: format!("{topic}_search"),
        commit_interval: Duration::from_millis(100),
        commit_batch_docs: 1_000,
        reconcile_on_start,
    })
    .await;
    App {
        http: service.http_addr,
        grpc: service.grpc_addr.expect("search serves gRPC"),
        topic,
        service,
    }
}
