//! Search routes against an in-process fake `SearchService` (a tonic server
//! with a canned index of two products) and against a search that is down.

use std::{sync::Mutex, time::Duration};

use reqwest::{Client, StatusCode};
use serde_json::Value;
use shopstream_platform::grpc;
use shopstream_proto::{
    TENANT_METADATA_KEY,
    common::v1::{Money, PageResponse},
    search::v1::{
        Facet, FacetBucket, Hit, QueryRequest, QueryResponse, SearchSort,
        search_service_server::{SearchService, SearchServiceServer},
    },
};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, service::Routes};

use super::{listener, start_with};
use shopstream_runtime::testkit;

fn hit(id: &str, title: &str, price: i64, in_stock: bool) -> Hit {
    Hit {
        product_id: id.into(),
        title: title.into(),
        category: "home".into(),
        region: "eu".into(),
        price_from: Some(Money {
            amount_minor: price,
            currency: "EUR".into(),
        }),
        in_stock,
        score: 1.5,
        highlight: format!("<em>{title}</em>"),
        thumbnail_url: String::new(),
        version: 3,
    }
}

/// Answers from two canned products and remembers the last request, so the
/// test can check what the gateway asked for.
#[derive(Default)]
struct FakeSearch {
    last: Mutex<Option<QueryRequest>>,
}

#[tonic::async_trait]
impl SearchService for FakeSearch {
    async fn query(&self, req: Request<QueryRequest>) -> Result<Response<QueryResponse>, Status> {
        match req.metadata().get(TENANT_METADATA_KEY) {
            Some(v) if v == "default" => {}
            other => return Err(Status::internal(format!("tenant metadata: {other:?}"))),
        }
        if req.metadata().get("grpc-timeout").is_none() {
            return Err(Status::internal("no deadline"));
        }
        let r = req.into_inner();
        *self.last.lock().unwrap() = Some(r.clone());
        if r.page.as_ref().is_some_and(|p| p.cursor == "bogus") {
            return Err(Status::invalid_argument(
                "invalid query; page.cursor: not a cursor from a previous page",
            ));
        }
        let mut hits = vec![
            hit("p-1", "Brass lamp", 1999, true),
            hit("p-2", "Brass vase", 2500, false),
        ];
        if r.in_stock_only {
            hits.retain(|h| h.in_stock);
        }
        if r.sort == SearchSort::PriceDesc as i32 {
            hits.reverse();
        }
        let facets = r
            .facets
            .iter()
            .map(|f| Facet {
                field: *f,
                buckets: vec![FacetBucket {
                    value: "home".into(),
                    count: hits.len() as u64,
                }],
            })
            .collect();
        let page_size = r.page.as_ref().map_or(0, |p| p.page_size);
        let next_cursor = if page_size == 1 { "o1" } else { "" };
        hits.truncate(if page_size == 0 {
            20
        } else {
            page_size as usize
        });
        Ok(Response::new(QueryResponse {
            total_hits: 2,
            hits,
            facets,
            page: Some(PageResponse {
                next_cursor: next_cursor.into(),
            }),
            took_ms: 1,
        }))
    }
}

fn problem(r: &reqwest::Response) {
    assert_eq!(r.headers()["content-type"], "application/problem+json");
}

#[tokio::test(flavor = "multi_thread")]
async fn search_and_typeahead_against_a_fake_search() {
    let fakes = CancellationToken::new();
    let _stop = fakes.clone().drop_guard();
    let (gl, ga) = listener().await;
    let routes = Routes::new(SearchServiceServer::new(FakeSearch::default()));
    tokio::spawn(grpc::serve(
        gl,
        routes,
        Duration::from_secs(5),
        fakes.clone(),
    ));
    let url = format!("http://{ga}");
    let s = start_with(|cfg| cfg.search_grpc = url.clone()).await;
    let c = Client::new();
    let base = &s.base;

    // Full text with filters, sort, facets and paging.
    let r = c
        .get(format!(
            "{base}/search?q=brass&category=home&min_price_minor=100&max_price_minor=3000\
             &sort=price_desc&limit=1&facets=category,in_stock"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["hits"].as_array().unwrap().len(), 1, "{body}");
    let h = &body["hits"][0];
    assert_eq!(h["product_id"], "p-2");
    assert_eq!(h["price_from_minor"], 2500);
    assert_eq!(h["currency"], "EUR");
    assert_eq!(h["in_stock"], false);
    assert_eq!(h["highlight"], "<em>Brass vase</em>");
    assert_eq!(h["version"], 3);
    assert_eq!(body["next_cursor"], "o1");
    assert_eq!(body["total_hits"], 2);
    let facets = body["facets"].as_array().unwrap();
    assert_eq!(facets.len(), 2);
    assert_eq!(facets[0]["field"], "category");
    assert_eq!(facets[1]["field"], "in_stock");
    assert_eq!(facets[0]["buckets"][0]["value"], "home");

    // Filters reach search; the last page has no cursor.
    let r = c
        .get(format!("{base}/search?in_stock=true"))
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["hits"].as_array().unwrap().len(), 1);
    assert_eq!(body["hits"][0]["product_id"], "p-1");
    assert!(body["next_cursor"].is_null(), "{body}");
    assert!(body["facets"].as_array().unwrap().is_empty());

    // Typeahead.
    let r = c
        .get(format!("{base}/search/typeahead?q=bra&limit=5"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["hits"].as_array().unwrap().len(), 2);

    // Bad parameters are 422 problems naming the field, from the gateway or from search.
    for (query, field) in [
        ("/search?sort=sideways", "sort"),
        ("/search?limit=500", "limit"),
        ("/search?in_stock=maybe", "in_stock"),
        ("/search?min_price_minor=abc", "min_price_minor"),
        ("/search?facets=colour", "facets"),
        ("/search?cursor=bogus", "page.cursor"),
        ("/search/typeahead?q=", "q"),
    ] {
        let r = c.get(format!("{base}{query}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        problem(&r);
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["errors"][0]["field"], field, "{query}: {p}");
    }

    // Documented.
    let doc = testkit::get_json(&c, &format!("{base}/openapi.json")).await;
    for path in ["/search", "/search/typeahead"] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from OpenAPI"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn search_down_is_a_503() {
    // start_with points search at a closed port.
    let s = start_with(|_| {}).await;
    let c = Client::new();
    for path in ["/search?q=lamp", "/search/typeahead?q=la"] {
        let r = c.get(format!("{}{path}", s.base)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        problem(&r);
    }
}
