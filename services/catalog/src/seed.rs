//! Loading the demo catalog (`services/catalog/seed/products.json`),
//! idempotently keyed by (tenant, slug), as `seed/README.md` specifies:
//! - a missing slug is created through the same use case as
//!   `POST /admin/products` (version 1, `created` outbox events);
//! - an existing slug whose product differs from the file is updated to
//!   match it (version bumped, `updated` outbox events). The stock of SKUs
//!   that already exist is live data and is never reset by a re-seed;
//! - an existing slug that already matches is left untouched.
//!
//! So running the seed twice changes nothing the second time.
//!
//! File format (version 1): `{ "version": 1, "products": [ { "slug", "name",
//! "description", "category", "regions": [..], "tags": [..], "image_key",
//! "skus": [ { "sku", "attributes": {..}, "price": { "amount_minor",
//! "currency" }, "stock" } ] } ] }`; other top-level keys are ignored.

use std::{collections::BTreeMap, path::Path, sync::Arc};

use serde::{Deserialize, Serialize};
use shopstream_platform::{
    clock::SystemClock,
    db,
    ids::{IdGen, SequentialIdGen, SystemIdGen},
};
use sqlx::PgPool;

use crate::{
    adapters::postgres::{MIGRATOR, PostgresProductRepository},
    domain::{MoneyDraft, ProductDraft, ProductId, SkuDraft, TenantId, product},
    error::Error,
    service::{Catalog, Synced},
};

/// Largest seed file accepted.
pub const MAX_SEED_BYTES: u64 = 64 * 1024 * 1024;
/// The seed file format this loader reads.
pub const SEED_FORMAT_VERSION: u32 = 1;
/// Invalid products listed in an error before the rest are summarised.
const MAX_REPORTED_INVALID: usize = 20;

/// What a seed run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SeedReport {
    /// Products created by this run.
    pub inserted: usize,
    /// Existing products changed to match the file.
    pub updated: usize,
    /// Existing products that already matched the file; not written.
    pub unchanged: usize,
}

#[derive(Deserialize)]
struct SeedFile {
    version: u32,
    products: Vec<SeedProduct>,
}

#[derive(Deserialize)]
struct SeedProduct {
    slug: String,
    name: String,
    #[serde(default)]
    description: String,
    category: String,
    regions: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
    image_key: Option<String>,
    skus: Vec<SeedSku>,
}

#[derive(Deserialize)]
struct SeedSku {
    sku: String,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    price: SeedMoney,
    stock: i64,
}

#[derive(Deserialize)]
struct SeedMoney {
    amount_minor: i64,
    currency: String,
}

/// Parse a seed file into drafts and validate every product; the error names
/// each invalid product and field.
pub fn parse(bytes: &[u8]) -> Result<Vec<ProductDraft>, String> {
    let file: SeedFile = serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))?;
    if file.version != SEED_FORMAT_VERSION {
        return Err(format!(
            "format version {} is not supported (expected {SEED_FORMAT_VERSION})",
            file.version
        ));
    }
    let drafts: Vec<ProductDraft> = file
        .products
        .into_iter()
        .map(|p| ProductDraft {
            slug: Some(p.slug),
            title: Some(p.name),
            description: Some(p.description),
            category: Some(p.category),
            regions: Some(p.regions),
            tags: Some(p.tags),
            image_key: p.image_key,
            skus: Some(
                p.skus
                    .into_iter()
                    .map(|s| SkuDraft {
                        sku_id: Some(s.sku),
                        name: None,
                        attributes: s.attributes,
                        price: Some(MoneyDraft {
                            amount_minor: Some(s.price.amount_minor),
                            currency: Some(s.price.currency),
                        }),
                        stock: Some(s.stock),
                    })
                    .collect(),
            ),
        })
        .collect();

    // Validate everything before writing anything; ids and time do not matter here.
    let ids = SequentialIdGen::new(0);
    let mut invalid = Vec::new();
    let mut slugs = BTreeMap::new();
    for (i, d) in drafts.iter().enumerate() {
        let slug = d.slug.clone().unwrap_or_default();
        if let Err(e) = product::validate_new(d, ProductId(ids.new_id()), 0) {
            invalid.push(format!("products[{i}] ({slug}): {e}"));
        }
        if let Some(first) = slugs.insert(slug.clone(), i) {
            invalid.push(format!(
                "products[{i}]: slug {slug} repeats products[{first}]"
            ));
        }
    }
    if invalid.is_empty() {
        return Ok(drafts);
    }
    let n = invalid.len();
    invalid.truncate(MAX_REPORTED_INVALID);
    let more = n.saturating_sub(MAX_REPORTED_INVALID);
    Err(format!(
        "{n} invalid products: {}{}",
        invalid.join("; "),
        if more > 0 {
            format!("; and {more} more")
        } else {
            String::new()
        }
    ))
}

/// Seed the default tenant of the database behind `pool` from the file at
/// `path`, migrating the database first. Running it again inserts nothing.
pub async fn seed(pool: &PgPool, path: impl AsRef<Path>) -> Result<SeedReport, Error> {
    seed_tenant(pool, path, &TenantId::default()).await
}

/// [`seed`] into `tenant`.
pub async fn seed_tenant(
    pool: &PgPool,
    path: impl AsRef<Path>,
    tenant: &TenantId,
) -> Result<SeedReport, Error> {
    db::migrate(pool, &MIGRATOR).await?;
    let catalog = Catalog::new(
        Arc::new(PostgresProductRepository::new(pool.clone())),
        Arc::new(SystemClock),
        Arc::new(SystemIdGen),
    );
    seed_catalog(&catalog, tenant, path.as_ref()).await
}

/// Seed through any catalog (any repository, clock and ids).
#[tracing::instrument(skip_all, fields(tenant = %tenant, path = %path.display()))]
pub async fn seed_catalog(
    catalog: &Catalog,
    tenant: &TenantId,
    path: &Path,
) -> Result<SeedReport, Error> {
    let fail = |reason: String| Error::Seed {
        path: path.display().to_string(),
        reason,
    };
    let size = tokio::fs::metadata(path)
        .await
        .map_err(|e| fail(e.to_string()))?
        .len();
    if size > MAX_SEED_BYTES {
        return Err(fail(format!(
            "{size} bytes is over the {MAX_SEED_BYTES}-byte limit"
        )));
    }
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let drafts = parse(&bytes).map_err(fail)?;
    let report = seed_drafts(catalog, tenant, &drafts)
        .await
        .map_err(|e| match e {
            Error::Seed { reason, .. } => fail(reason),
            other => other,
        })?;
    tracing::info!(
        inserted = report.inserted,
        updated = report.updated,
        unchanged = report.unchanged,
        "catalog seeded"
    );
    Ok(report)
}

/// Sync each draft into the tenant (see the module docs).
pub async fn seed_drafts(
    catalog: &Catalog,
    tenant: &TenantId,
    drafts: &[ProductDraft],
) -> Result<SeedReport, Error> {
    let mut report = SeedReport::default();
    for d in drafts {
        match catalog.sync(tenant, d).await {
            Ok(Synced::Inserted(_)) => report.inserted += 1,
            Ok(Synced::Updated(_)) => report.updated += 1,
            Ok(Synced::Unchanged(_)) => report.unchanged += 1,
            Err(e @ (Error::Conflict(_) | Error::Invalid { .. })) => {
                return Err(Error::Seed {
                    path: String::new(),
                    reason: format!("product {}: {e}", d.slug.as_deref().unwrap_or_default()),
                });
            }
            Err(e) => return Err(e),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::MemoryProductRepository;
    use crate::domain::{Slug, StockChange};
    use crate::service::StockRequest;
    use shopstream_platform::clock::ManualClock;

    fn file(products: serde_json::Value) -> Vec<u8> {
        serde_json::json!({"version": 1, "currency_note": "ignored", "products": products})
            .to_string()
            .into_bytes()
    }

    fn product(slug: &str, sku: &str) -> serde_json::Value {
        serde_json::json!({
            "slug": slug,
            "name": format!("Name of {slug}"),
            "description": "d",
            "category": "books",
            "regions": ["eu", "us"],
            "tags": ["t"],
            "image_key": "catalog/x.jpg",
            "skus": [{"sku": sku, "attributes": {"format": "ebook"}, "price": {"amount_minor": 1399, "currency": "EUR"}, "stock": 3}]
        })
    }

    fn catalog() -> Catalog {
        Catalog::new(
            Arc::new(MemoryProductRepository::new()),
            Arc::new(ManualClock::new(1_000)),
            Arc::new(SequentialIdGen::new(7)),
        )
    }

    #[tokio::test]
    async fn seeding_twice_inserts_nothing_the_second_time() {
        let drafts = parse(&file(serde_json::json!([
            product("a-1", "A-1"),
            product("b-2", "B-2")
        ])))
        .unwrap();
        assert_eq!(drafts[0].title.as_deref(), Some("Name of a-1"));
        let c = catalog();
        let t = TenantId::default();
        let first = seed_drafts(&c, &t, &drafts).await.unwrap();
        assert_eq!(
            first,
            SeedReport {
                inserted: 2,
                updated: 0,
                unchanged: 0
            }
        );
        let p = c
            .repository()
            .get_by_slug(&t, &Slug::parse("a-1").unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(p.skus[0].name, "ebook");
        assert_eq!(p.skus[0].stock, 3);
        let second = seed_drafts(&c, &t, &drafts).await.unwrap();
        assert_eq!(
            second,
            SeedReport {
                inserted: 0,
                updated: 0,
                unchanged: 2
            }
        );
        let again = c.repository().get(&t, p.id).await.unwrap().unwrap();
        assert_eq!(again, p, "a re-seed changed a product");
        assert_eq!(c.repository().outbox(&t, p.id).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_changed_file_updates_the_product_but_keeps_live_stock() {
        let c = catalog();
        let t = TenantId::default();
        let v1 = parse(&file(serde_json::json!([product("a-1", "A-1")]))).unwrap();
        seed_drafts(&c, &t, &v1).await.unwrap();
        let slug = Slug::parse("a-1").unwrap();
        let p = c
            .repository()
            .get_by_slug(&t, &slug)
            .await
            .unwrap()
            .unwrap();
        // Orders moved the stock since the first seed.
        c.update_stock(
            &t,
            &StockRequest {
                sku_id: p.skus[0].id.clone(),
                product_id: None,
                change: StockChange::SetTo(1),
                expected_version: None,
            },
        )
        .await
        .unwrap();
        let mut changed = product("a-1", "A-1");
        changed["skus"][0]["price"]["amount_minor"] = 1_499.into();
        let v2 = parse(&file(serde_json::json!([changed]))).unwrap();
        let report = seed_drafts(&c, &t, &v2).await.unwrap();
        assert_eq!(
            report,
            SeedReport {
                inserted: 0,
                updated: 1,
                unchanged: 0
            }
        );
        let after = c
            .repository()
            .get_by_slug(&t, &slug)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((after.id, after.version), (p.id, 3));
        assert_eq!(after.skus[0].price.amount_minor, 1_499);
        assert_eq!(after.skus[0].stock, 1, "a re-seed reset live stock");
        let events = c.repository().outbox(&t, p.id).await.unwrap();
        assert_eq!(events.last().unwrap().version(), Some(3));
        // And the same file again changes nothing.
        let report = seed_drafts(&c, &t, &v2).await.unwrap();
        assert_eq!((report.updated, report.unchanged), (0, 1));
    }

    #[tokio::test]
    async fn a_sku_taken_by_another_product_fails_the_seed() {
        let c = catalog();
        let t = TenantId::default();
        let first = parse(&file(serde_json::json!([product("a-1", "A-1")]))).unwrap();
        seed_drafts(&c, &t, &first).await.unwrap();
        let clash = parse(&file(serde_json::json!([product("other", "A-1")]))).unwrap();
        let err = seed_drafts(&c, &t, &clash).await.unwrap_err();
        assert!(err.to_string().contains("product other"), "{err}");
    }

    #[test]
    fn invalid_files_are_refused_with_every_bad_product_named() {
        let mut bad = product("ok-1", "OK-1");
        bad["skus"][0]["price"]["currency"] = "eur".into();
        let err = parse(&file(serde_json::json!([
            product("ok-1", "OK-1"),
            bad,
            product("Bad Slug", "X")
        ])))
        .unwrap_err();
        assert!(err.starts_with("3 invalid products"), "{err}");
        assert!(
            err.contains("products[1] (ok-1): skus[0].price.currency"),
            "{err}"
        );
        assert!(err.contains("slug ok-1 repeats products[0]"), "{err}");
        assert!(err.contains("products[2] (Bad Slug): slug"), "{err}");
        assert!(
            parse(br#"{"version": 2, "products": []}"#)
                .unwrap_err()
                .contains("version 2")
        );
        assert!(parse(b"{").unwrap_err().contains("invalid JSON"));
    }
}
