//! The contract every [`SearchIndex`] adapter passes (Tantivy always,
//! OpenSearch when `SHOPSTREAM_OPENSEARCH_URL` is set). Each run uses its own
//! tenants, so it can share an index with other runs. Panics on a violation.

use crate::{
    domain::{Applied, FacetField, ProductDoc, SearchQuery, Sort},
    ports::SearchIndex,
};

/// A live document for the suite.
pub fn product(tenant: &str, id: &str, version: i64, title: &str) -> ProductDoc {
    ProductDoc {
        tenant_id: tenant.to_string(),
        product_id: id.to_string(),
        version,
        title: title.to_string(),
        description: String::new(),
        category: "misc".into(),
        region: "eu".into(),
        price_from_minor: 1_000,
        currency: "EUR".into(),
        in_stock: true,
        updated_at_ms: version,
        ..ProductDoc::default()
    }
}

async fn ids(index: &dyn SearchIndex, q: &SearchQuery) -> Vec<String> {
    index
        .search(q)
        .await
        .expect("search")
        .hits
        .into_iter()
        .map(|h| h.product_id)
        .collect()
}

fn text(tenant: &str, t: &str) -> SearchQuery {
    SearchQuery {
        text: t.to_string(),
        sort: Sort::Relevance,
        ..SearchQuery::all(tenant)
    }
}

/// Run every check with tenants derived from `run_id`.
pub async fn run(index: &dyn SearchIndex, run_id: &str) {
    versions_never_regress(index, &format!("{run_id}-v")).await;
    tombstones_hide_and_keep_their_version(index, &format!("{run_id}-d")).await;
    queries(index, &format!("{run_id}-q"), &format!("{run_id}-other")).await;
}

async fn versions_never_regress(index: &dyn SearchIndex, t: &str) {
    assert_eq!(
        index
            .upsert(product(t, "p1", 2, "alpha two"))
            .await
            .unwrap(),
        Applied::Written
    );
    let older = index
        .upsert(product(t, "p1", 1, "alpha one"))
        .await
        .unwrap();
    assert!(
        matches!(older, Applied::Stale { indexed } if indexed.version == 2),
        "{older:?}"
    );
    // A repeat may be rewritten (same content) or skipped, never a regression.
    index
        .upsert(product(t, "p1", 2, "alpha two"))
        .await
        .unwrap();
    let m = index.meta(t, "p1").await.unwrap().expect("indexed");
    assert_eq!((m.version, m.deleted), (2, false));
    // Out of order: 5, 3, 4 converge on 5.
    for v in [5, 3, 4] {
        index
            .upsert(product(t, "p2", v, &format!("beta v{v}")))
            .await
            .unwrap();
    }
    assert_eq!(index.meta(t, "p2").await.unwrap().unwrap().version, 5);
    index.refresh().await.unwrap();
    let r = index.search(&text(t, "beta")).await.unwrap();
    assert_eq!(r.total, 1);
    assert_eq!(
        (r.hits[0].title.as_str(), r.hits[0].version),
        ("beta v5", 5)
    );
    assert_eq!(ids(index, &text(t, "one")).await, Vec::<String>::new());
    assert_eq!(ids(index, &text(t, "two")).await, vec!["p1"]);
    assert!(index.meta(t, "nope").await.unwrap().is_none());
}

async fn tombstones_hide_and_keep_their_version(index: &dyn SearchIndex, t: &str) {
    index.upsert(product(t, "p1", 3, "gamma")).await.unwrap();
    let tomb = ProductDoc::tombstone(t, "p1", 3, Some(42));
    assert_eq!(index.upsert(tomb).await.unwrap(), Applied::Written);
    let again = index.upsert(product(t, "p1", 3, "gamma")).await.unwrap();
    assert!(
        matches!(again, Applied::Stale { .. }),
        "a live v3 resurrected a v3 tombstone"
    );
    let stale = index.upsert(product(t, "p1", 2, "gamma")).await.unwrap();
    assert!(matches!(stale, Applied::Stale { .. }));
    let m = index.meta(t, "p1").await.unwrap().unwrap();
    assert_eq!((m.version, m.deleted, m.commit_ts_ms), (3, true, Some(42)));
    index.refresh().await.unwrap();
    assert!(ids(index, &text(t, "gamma")).await.is_empty());
    assert_eq!(index.search(&SearchQuery::all(t)).await.unwrap().total, 0);
    let listed = index.list(t).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].1.deleted);
    // A newer version brings it back.
    assert_eq!(
        index.upsert(product(t, "p1", 4, "gamma")).await.unwrap(),
        Applied::Written
    );
    index.refresh().await.unwrap();
    assert_eq!(ids(index, &text(t, "gamma")).await, vec!["p1"]);
}

async fn queries(index: &dyn SearchIndex, t: &str, other: &str) {
    let doc =
        |id: &str, title: &str, desc: &str, cat: &str, region: &str, price, stock, at| ProductDoc {
            description: desc.to_string(),
            category: cat.to_string(),
            region: region.to_string(),
            price_from_minor: price,
            in_stock: stock,
            updated_at_ms: at,
            ..product(t, id, 1, title)
        };
    let docs = [
        doc(
            "s1",
            "Red Wool Scarf",
            "warm and soft",
            "scarves",
            "eu",
            2_500,
            true,
            10,
        ),
        doc(
            "s2",
            "Silk Scarf",
            "light, not wool",
            "scarves",
            "us",
            4_000,
            false,
            20,
        ),
        doc(
            "b1",
            "Leather Boots",
            "waterproof boots for winter",
            "shoes",
            "eu",
            9_000,
            true,
            30,
        ),
        doc("b2", "Rain Boots", "rubber", "shoes", "eu", 3_000, true, 40),
        doc(
            "h1",
            "Wool Hat",
            "wool beanie",
            "hats",
            "us",
            1_500,
            true,
            50,
        ),
    ];
    for d in docs {
        assert_eq!(index.upsert(d).await.unwrap(), Applied::Written);
    }
    index
        .upsert(product(other, "x1", 1, "Red Wool Scarf"))
        .await
        .unwrap();
    index.refresh().await.unwrap();

    // Full text over title and description, title matches first.
    let r = index.search(&text(t, "wool")).await.unwrap();
    assert_eq!(r.total, 3, "{r:?}");
    let top: Vec<_> = r.hits.iter().map(|h| h.product_id.as_str()).collect();
    assert!(
        top[..2].contains(&"h1") && top[..2].contains(&"s1"),
        "{top:?}"
    );
    assert_eq!(top[2], "s2", "a description-only match ranks last: {top:?}");
    assert!(r.hits[0].score >= r.hits[2].score);
    let s1 = r.hits.iter().find(|h| h.product_id == "s1").unwrap();
    assert_eq!(s1.highlight, "Red <em>Wool</em> Scarf");
    assert_eq!(
        (s1.category.as_str(), s1.region.as_str()),
        ("scarves", "eu")
    );
    assert_eq!(
        (s1.price_from_minor, s1.currency.as_str(), s1.in_stock),
        (2_500, "EUR", true)
    );
    // Every word must match.
    assert_eq!(ids(index, &text(t, "wool scarf")).await.len(), 2);

    // Filters.
    let q = |f: &dyn Fn(&mut SearchQuery)| {
        let mut q = SearchQuery::all(t);
        f(&mut q);
        q
    };
    let mut got = ids(index, &q(&|q| q.category = Some("shoes".into()))).await;
    got.sort();
    assert_eq!(got, vec!["b1", "b2"]);
    assert_eq!(
        ids(index, &q(&|q| q.region = Some("us".into())))
            .await
            .len(),
        2
    );
    let mut got = ids(
        index,
        &q(&|q| {
            q.price_min_minor = Some(2_500);
            q.price_max_minor = Some(4_000);
            q.currency = Some("EUR".into());
        }),
    )
    .await;
    got.sort();
    assert_eq!(got, vec!["b2", "s1", "s2"]);
    assert_eq!(ids(index, &q(&|q| q.in_stock_only = true)).await.len(), 4);
    assert_eq!(
        ids(
            index,
            &q(&|q| {
                q.text = "boots".into();
                q.region = Some("eu".into());
                q.price_max_minor = Some(5_000);
            })
        )
        .await,
        vec!["b2"]
    );

    // Sorts and pages.
    let by = |s: Sort| q(&move |q: &mut SearchQuery| q.sort = s);
    assert_eq!(
        ids(index, &by(Sort::PriceAsc)).await,
        vec!["h1", "s1", "b2", "s2", "b1"]
    );
    assert_eq!(
        ids(index, &by(Sort::PriceDesc)).await,
        vec!["b1", "s2", "b2", "s1", "h1"]
    );
    assert_eq!(
        ids(index, &by(Sort::Newest)).await,
        vec!["h1", "b2", "b1", "s2", "s1"]
    );
    let page = |offset| {
        q(&move |q: &mut SearchQuery| {
            q.sort = Sort::PriceAsc;
            q.limit = 2;
            q.offset = offset;
        })
    };
    let p2 = index.search(&page(2)).await.unwrap();
    assert_eq!(p2.total, 5);
    assert_eq!(
        p2.hits
            .iter()
            .map(|h| h.product_id.as_str())
            .collect::<Vec<_>>(),
        vec!["b2", "s2"]
    );
    assert_eq!(ids(index, &page(4)).await, vec!["b1"]);

    // Facets over the filtered result.
    let r = index
        .search(&q(&|q| {
            q.in_stock_only = true;
            q.facets = vec![
                FacetField::Category,
                FacetField::Region,
                FacetField::InStock,
            ];
        }))
        .await
        .unwrap();
    let facet = |f| {
        r.facets
            .iter()
            .find(|(x, _)| *x == f)
            .map(|(_, b)| b.clone())
            .unwrap()
    };
    assert_eq!(
        facet(FacetField::Category),
        vec![
            ("shoes".to_string(), 2),
            ("hats".to_string(), 1),
            ("scarves".to_string(), 1)
        ]
    );
    assert_eq!(
        facet(FacetField::Region),
        vec![("eu".to_string(), 3), ("us".to_string(), 1)]
    );
    assert_eq!(facet(FacetField::InStock), vec![("true".to_string(), 4)]);

    // Typeahead: the last word is a prefix; no facets.
    let ta = |s: &str| SearchQuery {
        text: s.to_string(),
        typeahead: true,
        sort: Sort::Relevance,
        facets: vec![FacetField::Category],
        ..SearchQuery::all(t)
    };
    let mut got = ids(index, &ta("sca")).await;
    got.sort();
    assert_eq!(got, vec!["s1", "s2"]);
    assert_eq!(ids(index, &ta("wool sc")).await, vec!["s1"]);
    let r = index.search(&ta("bo")).await.unwrap();
    assert_eq!(r.total, 2);
    assert!(r.facets.is_empty());
    assert!(
        r.hits
            .iter()
            .all(|h| h.highlight.contains("<em>Boots</em>")),
        "{r:?}"
    );

    // Tenants never mix.
    assert_eq!(
        index.search(&SearchQuery::all(other)).await.unwrap().total,
        1
    );
    assert_eq!(index.list(t).await.unwrap().len(), 5);
}
