//! The gRPC surface through a real tonic client against `run()`:
//! GetProduct, ListProducts with cursor pagination, UpdateStock, and status
//! codes for unknown ids, bad input and stale versions.

use std::time::Duration;

use shopstream_platform::grpc;
use shopstream_proto::{
    catalog::v1::{
        GetProductRequest, ListProductsRequest, ProductSort, UpdateStockRequest,
        catalog_service_client::CatalogServiceClient, update_stock_request::Change,
    },
    common::v1::{Money, PageRequest, PriceRange, ProductRef},
};
use tonic::{Code, Request, transport::Channel};

use crate::support::{TestApp, product, spawn_app};

fn client(app: &TestApp) -> CatalogServiceClient<Channel> {
    let channel = grpc::channel(
        &format!("http://{}", app.grpc),
        Duration::from_secs(2),
        Duration::from_secs(10),
    )
    .unwrap();
    CatalogServiceClient::new(channel)
}

#[tokio::test]
async fn get_list_and_update_stock_over_grpc() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for (i, price) in [3_000, 1_000, 2_000, 4_000, 500].into_iter().enumerate() {
        let p = app
            .create(product(
                &format!("grpc-item-{i}"),
                "garden",
                &["apac", "eu"],
                &[price, price + 50],
            ))
            .await;
        ids.push(p["id"].as_str().unwrap().to_string());
    }
    app.create(product("other-category", "toys", &["eu"], &[10]))
        .await;
    let mut c = client(&app);

    let got = c
        .get_product(GetProductRequest {
            product_id: ids[1].clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .product
        .unwrap();
    assert_eq!(got.product_id, ids[1]);
    assert_eq!(got.title, "Title grpc-item-1");
    assert_eq!(got.category, "garden");
    assert_eq!(got.region, "apac");
    assert_eq!(got.version, 1);
    assert_eq!(got.skus.len(), 2);
    assert_eq!(got.skus[0].sku_id, "GRPC-ITEM-1-0");
    assert_eq!(got.skus[0].product_id, ids[1]);
    assert_eq!(
        got.skus[0].price,
        Some(Money {
            amount_minor: 1_000,
            currency: "EUR".into()
        })
    );
    assert_eq!(got.skus[0].stock, 10);
    assert!(got.created_at_ms > 0);

    for unknown in [uuid::Uuid::now_v7().to_string(), "nope".to_string()] {
        let err = c
            .get_product(GetProductRequest {
                product_id: unknown,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
    }
    let mut other_tenant = Request::new(GetProductRequest {
        product_id: ids[1].clone(),
    });
    other_tenant
        .metadata_mut()
        .insert("x-tenant-id", "acme".parse().unwrap());
    assert_eq!(
        c.get_product(other_tenant).await.unwrap_err().code(),
        Code::NotFound
    );

    // Cheapest first, two at a time, following the cursor.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = c
            .list_products(ListProductsRequest {
                page: Some(PageRequest {
                    page_size: 2,
                    cursor: cursor.clone(),
                }),
                category: "garden".into(),
                region: "eu".into(),
                price: Some(PriceRange {
                    min: Some(Money {
                        amount_minor: 900,
                        currency: "EUR".into(),
                    }),
                    max: None,
                }),
                sort: ProductSort::PriceAsc as i32,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.products.len() <= 2);
        seen.extend(page.products.into_iter().map(|p| p.product_id));
        cursor = page.page.unwrap_or_default().next_cursor;
        if cursor.is_empty() {
            break;
        }
    }
    // 500 is below the range; the rest by price: 1000, 2000, 3000, 4000.
    assert_eq!(
        seen,
        [
            ids[1].clone(),
            ids[2].clone(),
            ids[0].clone(),
            ids[3].clone()
        ]
    );

    let err = c
        .list_products(ListProductsRequest {
            page: Some(PageRequest {
                page_size: 2,
                cursor: "garbage".into(),
            }),
            ..ListProductsRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // UpdateStock: delta, a refused negative result, a stale version.
    let sku = ProductRef {
        product_id: ids[4].clone(),
        sku_id: "GRPC-ITEM-4-1".into(),
    };
    let r = c
        .update_stock(UpdateStockRequest {
            sku: Some(sku.clone()),
            change: Some(Change::Delta(-4)),
            expected_version: 1,
            reason: "order".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.version, r.sku.unwrap().stock), (2, 7));
    let err = c
        .update_stock(UpdateStockRequest {
            sku: Some(sku.clone()),
            change: Some(Change::Delta(-8)),
            expected_version: 0,
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let err = c
        .update_stock(UpdateStockRequest {
            sku: Some(sku.clone()),
            change: Some(Change::SetTo(1)),
            expected_version: 1,
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
    let err = c
        .update_stock(UpdateStockRequest {
            sku: Some(ProductRef {
                product_id: ids[0].clone(),
                sku_id: "GRPC-ITEM-4-1".into(),
            }),
            change: Some(Change::SetTo(1)),
            expected_version: 0,
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "a sku of another product");

    let after = c
        .get_product(GetProductRequest {
            product_id: ids[4].clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .product
        .unwrap();
    assert_eq!((after.version, after.skus[1].stock), (2, 7));
    app.stop().await;
}
