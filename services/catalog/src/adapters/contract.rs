//! The [`ProductRepository`] contract suite: what every adapter must do, as
//! functions that panic on a violation. The in-memory adapter runs it in unit
//! tests, Postgres in the integration tests. Each check uses fresh tenants, so
//! the suite can share a database with other tests.
//!
//! Checked: round trips, unique keys per tenant, tenant isolation,
//! compare-and-swap updates, stock changes (including concurrent deltas),
//! outbox atomicity, and listings equal to `domain::query::page_of`.

use std::collections::BTreeMap;

use shopstream_platform::ids::{IdGen, SystemIdGen};
use uuid::Uuid;

use crate::{
    domain::{
        ChangeKind, Cursor, EventContext, ListQuery, MoneyDraft, OutboxEvent, Product,
        ProductDraft, ProductFilter, ProductId, Region, SkuDraft, SkuId, Sort, StockChange,
        TenantId,
        events::{self, PRODUCT_CHANGED},
        ids::Category,
        money::Currency,
        product::{self, Sku},
        query::{self, PriceFilter},
    },
    ports::{Duplicate, ProductRepository, RepoError, StockUpdate},
};

/// Run every check against `repo`.
pub async fn run(repo: &dyn ProductRepository) {
    create_get_and_unique_keys(repo).await;
    tenants_are_isolated(repo).await;
    updates_are_compare_and_swap(repo).await;
    stock_updates(repo).await;
    concurrent_stock_deltas_are_not_lost(repo).await;
    listings_match_the_reference(repo).await;
}

fn tenant() -> TenantId {
    TenantId::parse(&format!("contract-{}", Uuid::now_v7().simple())).expect("tenant id")
}

fn cx(now_ms: i64) -> EventContext {
    EventContext {
        now_ms,
        trace: BTreeMap::new(),
    }
}

fn sku(code: &str, amount_minor: i64, currency: &str, stock: i64) -> SkuDraft {
    SkuDraft {
        sku_id: Some(code.into()),
        name: None,
        attributes: BTreeMap::from([("size".to_string(), code.to_ascii_lowercase())]),
        price: Some(MoneyDraft {
            amount_minor: Some(amount_minor),
            currency: Some(currency.into()),
        }),
        stock: Some(stock),
    }
}

fn draft(slug: &str, skus: Vec<SkuDraft>) -> ProductDraft {
    ProductDraft {
        slug: Some(slug.into()),
        title: Some(format!("Title of {slug}")),
        description: Some("A product used by the contract suite.".into()),
        category: Some("contract".into()),
        regions: Some(vec!["eu".into(), "us".into()]),
        tags: Some(vec!["a".into(), "b".into()]),
        image_key: Some(format!("catalog/{slug}.jpg")),
        skus: Some(skus),
    }
}

fn build(d: &ProductDraft, now_ms: i64) -> Product {
    product::validate_new(d, ProductId(SystemIdGen.new_id()), now_ms).expect("valid draft")
}

fn created(p: &Product) -> Vec<OutboxEvent> {
    events::product_changed(p, ChangeKind::Created, &SystemIdGen, &cx(p.updated_at_ms))
}

fn updated(p: &Product) -> Vec<OutboxEvent> {
    events::product_changed(p, ChangeKind::Updated, &SystemIdGen, &cx(p.updated_at_ms))
}

async fn create(repo: &dyn ProductRepository, t: &TenantId, p: &Product) {
    repo.create(t, p, &created(p))
        .await
        .unwrap_or_else(|e| panic!("create {}: {e}", p.slug));
}

async fn outbox_len(repo: &dyn ProductRepository, t: &TenantId, id: ProductId) -> usize {
    repo.outbox(t, id).await.expect("outbox").len()
}

fn sku_id(s: &str) -> SkuId {
    SkuId::parse(s).expect("sku id")
}

/// A product round-trips exactly; slugs and SKU codes are unique per tenant;
/// a refused create writes nothing.
pub async fn create_get_and_unique_keys(repo: &dyn ProductRepository) {
    let t = tenant();
    let p = build(
        &draft(
            "lamp",
            vec![sku("LAMP-S", 1999, "EUR", 3), sku("LAMP-L", 2999, "EUR", 0)],
        ),
        1_000,
    );
    create(repo, &t, &p).await;
    assert_eq!(repo.get(&t, p.id).await.unwrap(), Some(p.clone()));
    assert_eq!(
        repo.get_by_slug(&t, &p.slug).await.unwrap(),
        Some(p.clone())
    );
    assert_eq!(repo.get(&t, ProductId(Uuid::now_v7())).await.unwrap(), None);

    let events = repo.outbox(&t, p.id).await.unwrap();
    assert_eq!(events.len(), 2, "one event per sku");
    assert!(events.iter().all(|e| e.event_type == PRODUCT_CHANGED));
    assert!(events.iter().all(|e| e.version() == Some(1)));
    assert_eq!(
        events,
        created_sorted(&repo.outbox(&t, p.id).await.unwrap())
    );

    let same_slug = build(&draft("lamp", vec![sku("OTHER-1", 1, "EUR", 0)]), 1_001);
    assert_eq!(
        repo.create(&t, &same_slug, &created(&same_slug)).await,
        Err(RepoError::Duplicate(Duplicate::Slug(p.slug.clone())))
    );
    let same_sku = build(
        &draft(
            "lamp-2",
            vec![sku("OTHER-2", 1, "EUR", 0), sku("LAMP-L", 1, "EUR", 0)],
        ),
        1_002,
    );
    assert_eq!(
        repo.create(&t, &same_sku, &created(&same_sku)).await,
        Err(RepoError::Duplicate(Duplicate::Sku(sku_id("LAMP-L"))))
    );
    for refused in [&same_slug, &same_sku] {
        assert_eq!(repo.get(&t, refused.id).await.unwrap(), None);
        assert_eq!(
            outbox_len(repo, &t, refused.id).await,
            0,
            "a refused create appended events"
        );
    }
    // OTHER-2 was not stored by the refused create: it is still free.
    let p2 = build(&draft("lamp-3", vec![sku("OTHER-2", 5, "EUR", 0)]), 1_003);
    create(repo, &t, &p2).await;
}

fn created_sorted(events: &[OutboxEvent]) -> Vec<OutboxEvent> {
    let mut v = events.to_vec();
    v.sort_by_key(|e| (e.created_at_ms, e.id));
    v
}

/// Another tenant neither sees nor collides with a tenant's products.
pub async fn tenants_are_isolated(repo: &dyn ProductRepository) {
    let (a, b) = (tenant(), tenant());
    let pa = build(
        &draft("shared-slug", vec![sku("SHARED-1", 100, "EUR", 1)]),
        10,
    );
    let pb = build(
        &draft("shared-slug", vec![sku("SHARED-1", 200, "USD", 2)]),
        20,
    );
    create(repo, &a, &pa).await;
    create(repo, &b, &pb).await;
    assert_eq!(repo.get(&b, pa.id).await.unwrap(), None);
    assert_eq!(
        repo.get_by_slug(&b, &pa.slug).await.unwrap(),
        Some(pb.clone())
    );
    assert_eq!(repo.outbox(&b, pa.id).await.unwrap(), vec![]);
    let page = repo.list(&a, &ListQuery::default()).await.unwrap();
    assert_eq!(query::ids(&page), vec![pa.id]);

    let mut next = pb.clone();
    next.version = 2;
    assert_eq!(
        repo.update(&a, &next, 1, &updated(&next)).await,
        Err(RepoError::NotFound)
    );
    let u = StockUpdate {
        sku_id: sku_id("SHARED-1"),
        product_id: Some(pb.id),
        change: StockChange::SetTo(9),
        expected_version: None,
        event_id: Uuid::now_v7(),
        context: cx(30),
    };
    assert_eq!(repo.update_stock(&a, &u).await, Err(RepoError::SkuNotFound));
    let after = repo.update_stock(&b, &u).await.unwrap();
    assert_eq!(after.skus[0].stock, 9);
    assert_eq!(repo.get(&a, pa.id).await.unwrap(), Some(pa));
}

/// `update` replaces the product only at the expected version, appends its
/// events with it, and writes nothing otherwise.
pub async fn updates_are_compare_and_swap(repo: &dyn ProductRepository) {
    let t = tenant();
    let p = build(
        &draft(
            "chair",
            vec![
                sku("CHAIR-1", 5000, "GBP", 1),
                sku("CHAIR-2", 6000, "GBP", 2),
            ],
        ),
        100,
    );
    create(repo, &t, &p).await;

    let mut v2 = p.clone();
    v2.title = "Chair, renamed".into();
    v2.regions = vec![Region::parse("uk").unwrap()];
    v2.tags = vec![];
    v2.image_key = None;
    v2.skus[1].price.amount_minor = 4000;
    v2.version = 2;
    v2.updated_at_ms = 200;
    repo.update(&t, &v2, 1, &updated(&v2)).await.unwrap();
    assert_eq!(repo.get(&t, p.id).await.unwrap(), Some(v2.clone()));
    let events = repo.outbox(&t, p.id).await.unwrap();
    assert_eq!(events.len(), 4);
    assert_eq!(
        events.iter().filter(|e| e.version() == Some(2)).count(),
        2,
        "one event per sku at the new version"
    );

    // A writer still holding version 1 loses and writes nothing.
    let mut stale = p.clone();
    stale.title = "Lost update".into();
    stale.version = 2;
    assert_eq!(
        repo.update(&t, &stale, 1, &updated(&stale)).await,
        Err(RepoError::Conflict {
            product: p.id,
            current: 2
        })
    );
    assert_eq!(repo.get(&t, p.id).await.unwrap(), Some(v2.clone()));
    assert_eq!(outbox_len(repo, &t, p.id).await, 4);

    let mut ghost = p.clone();
    ghost.id = ProductId(Uuid::now_v7());
    ghost.version = 2;
    assert_eq!(
        repo.update(&t, &ghost, 1, &[]).await,
        Err(RepoError::NotFound)
    );

    let mut skipping = v2.clone();
    skipping.version = 5;
    assert!(matches!(
        repo.update(&t, &skipping, 2, &[]).await,
        Err(RepoError::Internal(_))
    ));

    // SKUs may be removed and added; a removed code is free again.
    let mut v3 = v2.clone();
    v3.skus.remove(0);
    v3.skus.push(Sku {
        id: sku_id("CHAIR-3"),
        name: "Oak".into(),
        attributes: BTreeMap::new(),
        price: v3.skus[0].price,
        stock: 12,
    });
    v3.version = 3;
    repo.update(&t, &v3, 2, &updated(&v3)).await.unwrap();
    assert_eq!(repo.get(&t, p.id).await.unwrap(), Some(v3.clone()));
    let reuse = build(&draft("stool", vec![sku("CHAIR-1", 100, "GBP", 0)]), 300);
    create(repo, &t, &reuse).await;

    // Taking another product's SKU code or slug is refused.
    let mut v4 = v3.clone();
    v4.skus[0].id = sku_id("CHAIR-1");
    v4.version = 4;
    assert_eq!(
        repo.update(&t, &v4, 3, &updated(&v4)).await,
        Err(RepoError::Duplicate(Duplicate::Sku(sku_id("CHAIR-1"))))
    );
    let mut v4 = v3.clone();
    v4.slug = reuse.slug.clone();
    v4.version = 4;
    assert_eq!(
        repo.update(&t, &v4, 3, &updated(&v4)).await,
        Err(RepoError::Duplicate(Duplicate::Slug(reuse.slug.clone())))
    );
    assert_eq!(repo.get(&t, p.id).await.unwrap(), Some(v3));
    assert_eq!(outbox_len(repo, &t, p.id).await, 6);
}

/// Stock changes bump the version, append one event, and refuse what the
/// contract refuses without writing.
pub async fn stock_updates(repo: &dyn ProductRepository) {
    let t = tenant();
    let p = build(
        &draft(
            "mug",
            vec![sku("MUG-W", 1200, "USD", 5), sku("MUG-B", 1300, "USD", 0)],
        ),
        1_000,
    );
    create(repo, &t, &p).await;
    let update = |change, expected_version, product_id, code: &str, now_ms| StockUpdate {
        sku_id: sku_id(code),
        product_id,
        change,
        expected_version,
        event_id: Uuid::now_v7(),
        context: cx(now_ms),
    };

    let u = update(StockChange::SetTo(7), None, Some(p.id), "MUG-B", 2_000);
    let after = repo.update_stock(&t, &u).await.unwrap();
    assert_eq!(after.version, 2);
    assert_eq!(after.updated_at_ms, 2_000);
    assert_eq!(after.created_at_ms, 1_000);
    assert_eq!(after.sku(&sku_id("MUG-B")).unwrap().stock, 7);
    assert_eq!(after.sku(&sku_id("MUG-W")).unwrap().stock, 5);
    assert_eq!(repo.get(&t, p.id).await.unwrap(), Some(after.clone()));
    let events = repo.outbox(&t, p.id).await.unwrap();
    assert_eq!(events.len(), 3);
    let last = events
        .iter()
        .find(|e| e.id == u.event_id)
        .expect("stock event");
    assert_eq!(last.sku_id(), Some("MUG-B"));
    assert_eq!(last.version(), Some(2));
    assert_eq!(last.payload["stock"], 7);
    assert_eq!(last.payload["kind"], "updated");

    let after = repo
        .update_stock(
            &t,
            &update(StockChange::Delta(-3), Some(2), None, "MUG-W", 3_000),
        )
        .await
        .unwrap();
    assert_eq!((after.version, after.skus[0].stock), (3, 2));

    let refused = [
        (
            update(StockChange::Delta(-3), None, None, "MUG-W", 4_000),
            "stock below 0",
        ),
        (
            update(StockChange::SetTo(1), Some(2), None, "MUG-W", 4_000),
            "stale version",
        ),
        (
            update(StockChange::SetTo(1), None, None, "NOPE-1", 4_000),
            "unknown sku",
        ),
        (
            update(
                StockChange::SetTo(1),
                None,
                Some(ProductId(Uuid::now_v7())),
                "MUG-W",
                4_000,
            ),
            "sku of another product",
        ),
    ];
    let expected = ["invalid", "conflict", "sku not found", "sku not found"];
    for ((u, what), want) in refused.iter().zip(expected) {
        let err = repo.update_stock(&t, u).await.expect_err(what);
        let got = match &err {
            RepoError::Invalid(f) => {
                assert_eq!(f.fields(), ["stock"], "{what}");
                "invalid"
            }
            RepoError::Conflict { product, current } => {
                assert_eq!((*product, *current), (p.id, 3), "{what}");
                "conflict"
            }
            RepoError::SkuNotFound => "sku not found",
            other => panic!("{what}: unexpected {other:?}"),
        };
        assert_eq!(got, want, "{what}");
    }
    assert_eq!(repo.get(&t, p.id).await.unwrap(), Some(after));
    assert_eq!(
        outbox_len(repo, &t, p.id).await,
        4,
        "a refused stock change appended events"
    );
}

/// Concurrent deltas on one product serialise: none is lost.
pub async fn concurrent_stock_deltas_are_not_lost(repo: &dyn ProductRepository) {
    const WRITERS: i64 = 16;
    let t = tenant();
    let p = build(&draft("pen", vec![sku("PEN-1", 250, "EUR", 0)]), 1);
    create(repo, &t, &p).await;
    let updates: Vec<_> = (0..WRITERS)
        .map(|i| StockUpdate {
            sku_id: sku_id("PEN-1"),
            product_id: None,
            change: StockChange::Delta(1),
            expected_version: None,
            event_id: Uuid::now_v7(),
            context: cx(10 + i),
        })
        .collect();
    let results = futures::future::join_all(updates.iter().map(|u| repo.update_stock(&t, u))).await;
    for r in results {
        r.expect("concurrent delta");
    }
    let after = repo.get(&t, p.id).await.unwrap().unwrap();
    assert_eq!(after.skus[0].stock, WRITERS);
    assert_eq!(after.version, 1 + WRITERS);
    assert_eq!(outbox_len(repo, &t, p.id).await, 1 + WRITERS as usize);
}

/// Pages equal the reference `page_of` for every sort and several filters,
/// including when products are inserted between pages.
pub async fn listings_match_the_reference(repo: &dyn ProductRepository) {
    let t = tenant();
    let titles = ["apple", "Apple", "Äpfel", "zebra", "Zebra", "apple"];
    let categories = ["books", "home", "toys"];
    let regions = [vec!["eu"], vec!["us", "eu"], vec!["uk"], vec!["apac", "us"]];
    let mut all = Vec::new();
    for i in 0..30usize {
        let currency = if i % 4 == 0 { "USD" } else { "EUR" };
        let mut d = draft(
            &format!("item-{i}"),
            vec![
                sku(
                    &format!("ITEM-{i}-A"),
                    ((i * 37) % 9) as i64 * 100,
                    currency,
                    1,
                ),
                sku(&format!("ITEM-{i}-B"), 1_000 + (i % 3) as i64, currency, 1),
            ],
        );
        d.title = Some(titles[i % titles.len()].into());
        d.category = Some(categories[i % categories.len()].into());
        d.regions = Some(
            regions[i % regions.len()]
                .iter()
                .map(|r| r.to_string())
                .collect(),
        );
        // Repeated creation times and prices exercise the id tie-break.
        let p = build(&d, 5_000 + (i % 4) as i64);
        create(repo, &t, &p).await;
        all.push(p);
    }

    let filters = [
        ProductFilter::default(),
        ProductFilter {
            category: Some(Category::parse("home").unwrap()),
            ..ProductFilter::default()
        },
        ProductFilter {
            region: Some(Region::parse("eu").unwrap()),
            ..ProductFilter::default()
        },
        ProductFilter {
            price: PriceFilter {
                min_minor: Some(200),
                max_minor: Some(500),
                currency: None,
            },
            ..ProductFilter::default()
        },
        ProductFilter {
            category: Some(Category::parse("books").unwrap()),
            region: Some(Region::parse("us").unwrap()),
            price: PriceFilter {
                min_minor: None,
                max_minor: Some(1_001),
                currency: Some(Currency::parse("USD").unwrap()),
            },
        },
    ];
    let mut inserted = 0;
    for sort in Sort::ALL {
        for filter in &filters {
            let mut q = ListQuery {
                filter: filter.clone(),
                sort,
                limit: 4,
                after: None,
            };
            let mut pages = 0;
            loop {
                let page = repo.list(&t, &q).await.expect("list");
                let want = query::page_of(&all, &q);
                assert_eq!(
                    query::ids(&page),
                    query::ids(&want),
                    "sort {sort:?}, filter {filter:?}, page {pages}"
                );
                assert_eq!(page.items, want.items);
                assert_eq!(page.next, want.next, "sort {sort:?}, filter {filter:?}");
                pages += 1;
                // Insert between the first and second page of unfiltered listings.
                if pages == 1 && filter == &ProductFilter::default() {
                    let d = draft(
                        &format!("late-{inserted}"),
                        vec![sku(&format!("LATE-{inserted}"), 450, "EUR", 1)],
                    );
                    let p = build(&d, 9_000 + inserted);
                    create(repo, &t, &p).await;
                    all.push(p);
                    inserted += 1;
                }
                match page.next {
                    Some(c) => q.after = Some(c),
                    None => break,
                }
                assert!(pages < 50, "pagination does not end");
            }
        }
    }

    // A cursor only moves forward: a page after the last item is empty.
    let mut sorted = all.clone();
    sorted.sort_by(|a, b| query::compare(a, b, Sort::PriceAsc));
    let last = sorted.last().expect("products");
    let page = repo
        .list(
            &t,
            &ListQuery {
                sort: Sort::PriceAsc,
                after: Some(Cursor::after(last, Sort::PriceAsc)),
                ..ListQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((page.items.len(), page.next), (0, None));
}
