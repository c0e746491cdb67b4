//! `product.events` → index through the real service (`run`) on the test
//! stack's Kafka with a fake catalog: duplicates and out-of-order delivery,
//! deletes, a poison record in the DLQ while consumption continues, the
//! debug endpoint and metrics, reconcile, and the gRPC query.

use std::{sync::Arc, time::Duration};

use serde_json::json;
use shopstream_platform::{
    clock::{Clock, SystemClock},
    events::{Envelope, EventBus, dlq_topic, header, kafka::KafkaBus},
    metrics::sum_series,
};
use shopstream_proto::search::v1::{
    FacetField, QueryRequest, search_service_client::SearchServiceClient,
};
use shopstream_runtime::testkit;
use shopstream_search::{
    adapters::{
        catalog_grpc::GrpcCatalog,
        tantivy::{TantivyIndex, TantivySettings},
    },
    api::http::IndexedBody,
    domain::ProductDoc,
    ports::SearchIndex,
    reconcile,
};

use crate::support::{FakeCatalog, index_dir, product, spawn_app};

/// The bus services use (event doorbell included), so what a test
/// publishes wakes the search consumer at once, as cdc's records do.
async fn bus() -> Arc<dyn EventBus> {
    KafkaBus::connect(&testkit::stack().await.endpoints).unwrap()
}

/// A catalog change on `product.events`, as cdc publishes it.
fn cdc_event(product_id: &str, version: i64, op: &str) -> Envelope {
    let payload = json!({
        "event_id": uuid::Uuid::now_v7(), "product_id": product_id, "sku_id": "S",
        "price": {"amount_minor": 100, "currency": "EUR"}, "stock": 1, "region": "eu",
        "regions": ["eu"], "version": version, "kind": "updated", "ts_ms": SystemClock.now_ms(),
    });
    testkit::cdc_product_changed(product_id, payload, op)
}

async fn indexed(app_url: &str, id: &str) -> Option<IndexedBody> {
    let r = reqwest::get(format!("{app_url}/debug/indexed/{id}"))
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

async fn wait_version(
    app: &crate::support::App,
    id: &str,
    version: i64,
    deleted: bool,
) -> IndexedBody {
    let base = app.url("");
    let base = base.trim_end_matches('/').to_string();
    testkit::eventually(
        &format!("{id} is searchable at v{version} (deleted={deleted})"),
        Duration::from_secs(60),
        || {
            let base = base.clone();
            async move {
                indexed(&base, id).await.filter(|b| {
                    b.version == version && b.deleted == deleted && b.searchable_ts_ms.is_some()
                })
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn events_are_hydrated_deduplicated_ordered_and_poison_is_dead_lettered() {
    let catalog = FakeCatalog::default();
    catalog.put(product("p-a", 3, "Woolly Mammoth Scarf", 2_500, 4));
    catalog.put(product("p-b", 1, "Canvas Tote", 1_200, 0));
    let app = spawn_app(&catalog.serve().await).await;
    let bus = bus().await;

    // Out of order, with duplicates; the catalog is at v3.
    let v2 = cdc_event("p-a", 2, "u");
    let events = vec![
        v2.clone(),
        cdc_event("p-a", 1, "c"),
        v2,
        cdc_event("p-a", 3, "u"),
    ];
    bus.publish_batch(&app.topic, &events).await.unwrap();
    let body = wait_version(&app, "p-a", 3, false).await;
    // v3 was indexed from v2's event (the catalog was already at v3), whose
    // commit time is v2's: v3 carries none rather than a wrong one.
    assert_eq!(
        body.commit_to_searchable_ms, None,
        "v3 must not be timed from v2's commit"
    );

    // A poison record, then a good one: the good one is still indexed.
    let mut poison = cdc_event("p-b", 1, "c");
    poison.payload = b"{ definitely not json".to_vec();
    bus.publish(&app.topic, &poison).await.unwrap();
    bus.publish(&app.topic, &cdc_event("p-b", 1, "c"))
        .await
        .unwrap();
    wait_version(&app, "p-b", 1, false).await;

    let dlq = dlq_topic(&app.topic);
    let mut sub = bus
        .subscribe(
            &testkit::unique("it_dlq_reader"),
            std::slice::from_ref(&dlq),
        )
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let dead = loop {
        if let Some(d) = sub.next(Duration::from_millis(500)).await.unwrap() {
            break d;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the poison record never reached the DLQ"
        );
    };
    assert_eq!(dead.envelope.id, poison.id);
    let reason = &dead.envelope.headers[header::DLQ_REASON];
    assert!(reason.contains("unparseable product event"), "{reason}");
    sub.close().await.unwrap();

    // An older event after v3 changes nothing; a newer catalog version wins.
    catalog.put(product("p-a", 5, "Woolly Mammoth Scarf XL", 2_700, 0));
    bus.publish_batch(
        &app.topic,
        &[
            cdc_event("p-a", 2, "u"),
            cdc_event("p-a", 5, "u"),
            cdc_event("p-a", 4, "u"),
        ],
    )
    .await
    .unwrap();
    wait_version(&app, "p-a", 5, false).await;

    // gRPC query sees v5 with hydrated fields.
    let mut client = SearchServiceClient::connect(format!("http://{}", app.grpc))
        .await
        .unwrap();
    let r = client
        .query(QueryRequest {
            text: "mammoth".into(),
            facets: vec![FacetField::InStock as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.total_hits, 1);
    let hit = &r.hits[0];
    assert_eq!(
        (hit.product_id.as_str(), hit.version, hit.in_stock),
        ("p-a", 5, false)
    );
    assert_eq!(hit.price_from.as_ref().unwrap().amount_minor, 2_700);
    assert_eq!(hit.highlight, "Woolly <em>Mammoth</em> Scarf XL");
    assert_eq!(r.facets[0].buckets[0].value, "false");
    let ta = client
        .query(QueryRequest {
            text: "canv".into(),
            typeahead: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        ta.hits
            .iter()
            .map(|h| h.product_id.as_str())
            .collect::<Vec<_>>(),
        vec!["p-b"]
    );

    // A delete: the catalog no longer has it -> tombstone.
    catalog.remove("p-b");
    bus.publish(&app.topic, &cdc_event("p-b", 2, "d"))
        .await
        .unwrap();
    wait_version(&app, "p-b", 2, true).await;
    let r = client
        .query(QueryRequest {
            text: "canvas".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.total_hits, 0);

    let metrics = reqwest::get(app.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("shopstream_search_commit_to_searchable_seconds_count"),
        "{metrics}"
    );
    assert!(metrics.contains("outcome=\"stale\""), "{metrics}");

    // The consumer's health: its group's lag on /metrics reaches 0 once
    // everything is applied, and it is one of the readiness checks.
    let topic_label = format!("topic=\"{}\"", app.topic);
    let metrics_url = app.url("/metrics");
    testkit::eventually("the consumer lag reads 0", Duration::from_secs(60), || {
        let (url, label) = (metrics_url.clone(), topic_label.clone());
        async move {
            let text = reqwest::get(url).await.ok()?.text().await.ok()?;
            let shown = text
                .lines()
                .any(|l| l.starts_with("shopstream_consumer_lag{") && l.contains(&label));
            let lag = sum_series(&text, "shopstream_consumer_lag", &[&label]);
            (shown && lag == 0.0).then_some(())
        }
    })
    .await;
    let ready: serde_json::Value = reqwest::get(app.url("/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["ready"], true, "{ready}");
    assert!(
        ready["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "consumer" && c["ok"] == true),
        "{ready}"
    );
    assert!(
        reqwest::get(app.url("/debug/indexed/nope"))
            .await
            .unwrap()
            .status()
            == 404
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reconcile_repairs_missing_stale_and_deleted_documents() {
    let catalog = FakeCatalog::default();
    for i in 0..250 {
        catalog.put(product(
            &format!("r{i:03}"),
            2,
            &format!("Item {i}"),
            100 + i,
            1,
        ));
    }
    let url = catalog.serve().await;
    let source = GrpcCatalog::new(
        shopstream_platform::grpc::channel(&url, Duration::from_secs(5), Duration::from_secs(5))
            .unwrap(),
    );
    let dir = index_dir("it_reconcile");
    let index = TantivyIndex::open(
        &dir,
        TantivySettings::default(),
        Arc::new(SystemClock),
        None,
    )
    .unwrap();
    // Current, stale, and gone-from-catalog documents.
    for i in 0..100 {
        let mut d = shopstream_search::adapters::catalog_grpc::to_doc(
            "default",
            &product(
                &format!("r{i:03}"),
                if i < 50 { 2 } else { 1 },
                &format!("Item {i}"),
                100 + i,
                1,
            ),
        );
        d.commit_ts_ms = None;
        index.upsert(d).await.unwrap();
    }
    index
        .upsert(ProductDoc {
            title: "Ghost".into(),
            ..shopstream_search::adapters::contract::product("default", "ghost", 9, "Ghost")
        })
        .await
        .unwrap();
    let report = reconcile(&source, &index, "default").await.unwrap();
    assert_eq!(report.catalog_products, 250);
    assert_eq!(report.unchanged, 50);
    assert_eq!(report.repaired, 200);
    assert_eq!(report.tombstoned, 1);
    let again = reconcile(&source, &index, "default").await.unwrap();
    assert_eq!(
        (again.repaired, again.tombstoned, again.unchanged),
        (0, 0, 250)
    );
    let all = index
        .search(&shopstream_search::domain::SearchQuery::all("default"))
        .await
        .unwrap();
    assert_eq!(all.total, 250);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn commit_to_searchable_latency_under_steady_edits() {
    const EDITS: usize = 200;
    let catalog = FakeCatalog::default();
    for i in 0..EDITS {
        catalog.put(product(
            &format!("e{i:03}"),
            1,
            &format!("Edited thing {i}"),
            100,
            1,
        ));
    }
    let app = spawn_app(&catalog.serve().await).await;
    let bus = bus().await;
    // Warm up: the consumer has joined once the first event is searchable.
    catalog.put(product("warm", 1, "Warm up", 1, 1));
    bus.publish(&app.topic, &cdc_event("warm", 1, "c"))
        .await
        .unwrap();
    wait_version(&app, "warm", 1, false).await;

    // One edit every 10 ms, each stamped with its commit time.
    for i in 0..EDITS {
        bus.publish(&app.topic, &cdc_event(&format!("e{i:03}"), 1, "u"))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut lat = Vec::with_capacity(EDITS);
    for i in 0..EDITS {
        let b = wait_version(&app, &format!("e{i:03}"), 1, false).await;
        lat.push(b.commit_to_searchable_ms.unwrap());
    }
    lat.sort_unstable();
    let at = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    let line = format!(
        "commit->searchable over {EDITS} edits (Kafka on the test stack, Tantivy, 100 ms commits, debug build): p50 {} ms p95 {} ms p99 {} ms max {} ms",
        at(0.50),
        at(0.95),
        at(0.99),
        lat[lat.len() - 1]
    );
    println!("{line}");
    eprintln!("{line}");
    assert!(at(0.95) < 5_000, "{line}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_query_latency_over_a_thousand_products_reconciled_at_start() {
    let catalog = FakeCatalog::default();
    let words = [
        "wool", "silk", "leather", "cotton", "linen", "denim", "scarf", "boots", "hat", "jacket",
    ];
    for i in 0..1_000usize {
        let mut p = product(
            &format!("g{i:04}"),
            1,
            &format!("{} {} {i}", words[i % 10], words[(i / 10) % 10]),
            100 + (i as i64 * 37) % 20_000,
            (i % 4) as i64,
        );
        p.category = ["scarves", "shoes", "hats", "coats"][i % 4].to_string();
        p.region = ["eu", "us", "apac"][i % 3].to_string();
        catalog.put(p);
    }
    let app = crate::support::spawn_app_with(&catalog.serve().await, true).await;
    let mut client = SearchServiceClient::connect(format!("http://{}", app.grpc))
        .await
        .unwrap();
    let probe = client.clone();
    testkit::eventually(
        "reconcile at start indexed 1,000 products",
        Duration::from_secs(60),
        || {
            let mut c = probe.clone();
            async move {
                let r = c.query(QueryRequest::default()).await.ok()?.into_inner();
                (r.total_hits == 1_000).then_some(())
            }
        },
    )
    .await;
    let mut samples = Vec::new();
    for i in 0..500usize {
        let req = if i % 2 == 0 {
            QueryRequest {
                text: format!("{} {}", words[i % 10], words[(i / 3) % 10]),
                in_stock_only: i % 4 == 0,
                category: if i % 3 == 0 {
                    "scarves".into()
                } else {
                    String::new()
                },
                facets: vec![
                    FacetField::Category as i32,
                    FacetField::Region as i32,
                    FacetField::InStock as i32,
                ],
                ..Default::default()
            }
        } else {
            QueryRequest {
                text: words[i % 10][..2].to_string(),
                typeahead: true,
                ..Default::default()
            }
        };
        let s = std::time::Instant::now();
        let r = client.query(req).await.unwrap().into_inner();
        samples.push(s.elapsed().as_micros());
        assert!(r.hits.len() <= 20);
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    let line = format!(
        "gRPC Query round trip over 1,000 products (debug build, loopback, half full text + 3 facets, half typeahead): p50 {} us p95 {} us p99 {} us",
        at(0.50),
        at(0.95),
        at(0.99)
    );
    println!("{line}");
    eprintln!("{line}");
    let page1 = client
        .query(QueryRequest {
            page: Some(shopstream_proto::common::v1::PageRequest {
                page_size: 500,
                cursor: String::new(),
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page1.hits.len(), 100, "page size is capped at 100");
    let cursor = page1.page.unwrap().next_cursor;
    assert!(!cursor.is_empty());
    let page2 = client
        .query(QueryRequest {
            page: Some(shopstream_proto::common::v1::PageRequest {
                page_size: 100,
                cursor,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page2.hits.len(), 100);
    assert!(
        page1
            .hits
            .iter()
            .all(|a| page2.hits.iter().all(|b| a.product_id != b.product_id))
    );
    app.stop().await;
}
