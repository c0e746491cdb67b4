//! Postgres [`ProductRepository`]: runtime-checked sqlx queries (no database
//! at build time) over the tables of `migrations/0001_catalog.sql`.
//!
//! Every write runs in one transaction with its outbox rows. Updates are a
//! compare-and-swap on `product.version`; stock changes lock the product row
//! first, so concurrent deltas serialise. Writes lock the product row before
//! its children, always in that order, so they cannot deadlock each other.
//! A product read is one statement (regions and SKUs aggregated into it), so
//! it sees one snapshot without a transaction; a page of products (ids,
//! then the products) runs in one repeatable-read snapshot.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder, Row, types::Json};
use uuid::Uuid;

use crate::{
    domain::{
        Category, Cursor, ListQuery, Money, OutboxEvent, Page, Product, ProductId, Region, Sku,
        SkuId, Slug, Sort, TenantId, money::Currency, product, query::SortKey,
    },
    ports::{Duplicate, ProductRepository, RepoError, StockUpdate},
};

/// The catalog's migrations, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

const SLUG_CONSTRAINT: &str = "product_tenant_slug_key";
const SKU_CONSTRAINT: &str = "sku_pkey";

/// Products in Postgres.
#[derive(Debug, Clone)]
pub struct PostgresProductRepository {
    pool: PgPool,
}

impl PostgresProductRepository {
    /// A repository on `pool`, whose database must be migrated with [`MIGRATOR`].
    pub fn new(pool: PgPool) -> PostgresProductRepository {
        PostgresProductRepository { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A transaction reading one consistent snapshot.
    async fn snapshot(&self) -> Result<sqlx::Transaction<'static, Postgres>, RepoError> {
        // One statement instead of BEGIN + SET TRANSACTION: a round trip less
        // on every read.
        self.pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await
            .map_err(db_err)
    }

    /// The first of `codes` (in order) that the tenant already uses.
    async fn taken_sku(
        &self,
        tenant: &TenantId,
        codes: &[&SkuId],
    ) -> Result<Option<SkuId>, RepoError> {
        let raw: Vec<String> = codes.iter().map(|c| c.to_string()).collect();
        let taken: Vec<String> =
            sqlx::query_scalar("SELECT sku_id FROM sku WHERE tenant_id = $1 AND sku_id = ANY($2)")
                .bind(tenant.as_str())
                .bind(&raw)
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
        Ok(codes
            .iter()
            .find(|c| taken.iter().any(|t| t == c.as_str()))
            .map(|c| (*c).clone()))
    }

    /// Translate a failed write: unique violations become `Duplicate`.
    async fn write_err(&self, tenant: &TenantId, product: &Product, e: sqlx::Error) -> RepoError {
        let constraint = match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => {
                d.constraint().map(str::to_owned)
            }
            _ => None,
        };
        match constraint.as_deref() {
            Some(SLUG_CONSTRAINT) => RepoError::Duplicate(Duplicate::Slug(product.slug.clone())),
            Some(SKU_CONSTRAINT) => {
                let codes: Vec<&SkuId> = product.skus.iter().map(|s| &s.id).collect();
                match self.taken_sku(tenant, &codes).await {
                    Ok(Some(code)) => RepoError::Duplicate(Duplicate::Sku(code)),
                    // Freed again by the time we looked: report the collision anyway.
                    Ok(None) => RepoError::Duplicate(Duplicate::Sku(codes[0].clone())),
                    Err(e) => e,
                }
            }
            _ => db_err(e),
        }
    }
}

/// Driver errors as repository errors; connection trouble is `Unavailable`.
fn db_err(e: sqlx::Error) -> RepoError {
    match &e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => RepoError::Unavailable(e.to_string()),
        sqlx::Error::Database(d)
            if d.code().is_some_and(|c| {
                // connection exceptions, too many connections, shutdown, cannot connect now
                c.starts_with("08") || c == "53300" || c == "57P01" || c == "57P03"
            }) =>
        {
            RepoError::Unavailable(e.to_string())
        }
        _ => RepoError::Internal(e.to_string()),
    }
}

fn corrupt(what: &str, detail: impl std::fmt::Display) -> RepoError {
    RepoError::Internal(format!("corrupt {what} row: {detail}"))
}

/// A product with its regions and SKUs, as `load_where!` reads it.
#[derive(sqlx::FromRow)]
struct ProductRow {
    id: Uuid,
    slug: String,
    title: String,
    description: String,
    category: String,
    tags: Vec<String>,
    image_key: Option<String>,
    version: i64,
    created_at_ms: i64,
    updated_at_ms: i64,
    regions: Vec<String>,
    skus: Json<Vec<SkuRow>>,
}

#[derive(serde::Deserialize)]
struct SkuRow {
    sku_id: String,
    name: String,
    attributes: std::collections::BTreeMap<String, String>,
    amount_minor: i64,
    currency: String,
    quantity: i64,
}

/// Products with their regions and SKUs (prices and stock) in one
/// statement: one round trip, and one statement sees one snapshot, so no
/// transaction is needed around it. The argument is the WHERE condition on
/// `product p` after the tenant (`$1`).
macro_rules! load_where {
    ($filter:literal) => {
        concat!(
            "SELECT p.id, p.slug, p.title, p.description, p.category, p.tags, \
            p.image_key, p.version, p.created_at_ms, p.updated_at_ms, \
            ARRAY(SELECT r.region FROM product_region r \
                  WHERE r.tenant_id = p.tenant_id AND r.product_id = p.id \
                  ORDER BY r.position) AS regions, \
            COALESCE((SELECT json_agg(json_build_object( \
                        'sku_id', s.sku_id, 'name', s.name, 'attributes', s.attributes, \
                        'amount_minor', pr.amount_minor, 'currency', pr.currency::text, \
                        'quantity', st.quantity) ORDER BY s.position) \
                      FROM sku s \
                      JOIN price pr ON pr.tenant_id = s.tenant_id AND pr.sku_id = s.sku_id \
                      JOIN stock st ON st.tenant_id = s.tenant_id AND st.sku_id = s.sku_id \
                      WHERE s.tenant_id = p.tenant_id AND s.product_id = p.id), '[]') AS skus \
     FROM product p WHERE p.tenant_id = $1 AND ",
            $filter
        )
    };
}

/// The product read: `$1` the tenant, `$2` an array of product ids. Public
/// so `shopstream bench` can time the same statement straight against
/// Postgres (the floor it prints beside the gateway's figure).
pub const PRODUCT_READ_SQL: &str = load_where!("p.id = ANY($2)");

/// Load the products whose id is in `ids`, keyed by id.
async fn load(
    conn: impl sqlx::PgExecutor<'_>,
    tenant: &TenantId,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Product>, RepoError> {
    let rows: Vec<ProductRow> = sqlx::query_as(PRODUCT_READ_SQL)
        .bind(tenant.as_str())
        .bind(ids)
        .fetch_all(conn)
        .await
        .map_err(db_err)?;
    rows.into_iter()
        .map(|r| to_product(r).map(|p| (p.id.0, p)))
        .collect()
}

/// The product whose slug is `slug`, if any.
async fn load_by_slug(
    conn: impl sqlx::PgExecutor<'_>,
    tenant: &TenantId,
    slug: &Slug,
) -> Result<Option<Product>, RepoError> {
    let row: Option<ProductRow> = sqlx::query_as(load_where!("p.slug = $2"))
        .bind(tenant.as_str())
        .bind(slug.as_str())
        .fetch_optional(conn)
        .await
        .map_err(db_err)?;
    row.map(to_product).transpose()
}

fn to_product(r: ProductRow) -> Result<Product, RepoError> {
    let p = Product {
        id: ProductId(r.id),
        slug: Slug::parse(&r.slug).map_err(|e| corrupt("product.slug", e))?,
        title: r.title,
        description: r.description,
        category: Category::parse(&r.category).map_err(|e| corrupt("product.category", e))?,
        regions: r
            .regions
            .iter()
            .map(|region| Region::parse(region).map_err(|e| corrupt("product_region", e)))
            .collect::<Result<_, _>>()?,
        tags: r.tags,
        image_key: r.image_key,
        skus: r
            .skus
            .0
            .into_iter()
            .map(|s| {
                Ok(Sku {
                    id: SkuId::parse(&s.sku_id).map_err(|e| corrupt("sku", e))?,
                    name: s.name,
                    attributes: s.attributes,
                    price: Money {
                        amount_minor: s.amount_minor,
                        currency: Currency::parse(&s.currency).map_err(|e| corrupt("price", e))?,
                    },
                    stock: s.quantity,
                })
            })
            .collect::<Result<_, RepoError>>()?,
        version: r.version,
        created_at_ms: r.created_at_ms,
        updated_at_ms: r.updated_at_ms,
    };
    p.check_invariants()
        .map_err(|e| corrupt(&format!("product {}", p.id), e))?;
    Ok(p)
}

async fn load_one(
    conn: impl sqlx::PgExecutor<'_>,
    tenant: &TenantId,
    id: Uuid,
) -> Result<Option<Product>, RepoError> {
    Ok(load(conn, tenant, &[id]).await?.remove(&id))
}

/// Insert the regions of `p`, deleting the old ones first when `replace`.
async fn write_regions(
    conn: &mut PgConnection,
    tenant: &TenantId,
    p: &Product,
    replace: bool,
) -> sqlx::Result<()> {
    if replace {
        sqlx::query("DELETE FROM product_region WHERE tenant_id = $1 AND product_id = $2")
            .bind(tenant.as_str())
            .bind(p.id.0)
            .execute(&mut *conn)
            .await?;
    }
    let regions: Vec<String> = p.regions.iter().map(|r| r.to_string()).collect();
    sqlx::query(
        "INSERT INTO product_region (tenant_id, product_id, region, position) \
         SELECT $1, $2, r, (ord - 1)::smallint FROM UNNEST($3::text[]) WITH ORDINALITY AS t(r, ord)",
    )
    .bind(tenant.as_str())
    .bind(p.id.0)
    .bind(&regions)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Upsert the SKUs of `p` with their prices and stock. Returns the codes that
/// belong to another product (nothing of those is written).
async fn write_skus(
    conn: &mut PgConnection,
    tenant: &TenantId,
    p: &Product,
) -> sqlx::Result<Vec<SkuId>> {
    let codes: Vec<String> = p.skus.iter().map(|s| s.id.to_string()).collect();
    let names: Vec<String> = p.skus.iter().map(|s| s.name.clone()).collect();
    let attributes: Vec<String> = p
        .skus
        .iter()
        .map(|s| serde_json::to_string(&s.attributes).unwrap_or_else(|_| "{}".into()))
        .collect();
    let written: Vec<String> = sqlx::query_scalar(
        "INSERT INTO sku (tenant_id, sku_id, product_id, name, attributes, position) \
         SELECT $1, s, $2, n, a::jsonb, (ord - 1)::int \
         FROM UNNEST($3::text[], $4::text[], $5::text[]) WITH ORDINALITY AS t(s, n, a, ord) \
         ON CONFLICT (tenant_id, sku_id) DO UPDATE \
            SET name = EXCLUDED.name, attributes = EXCLUDED.attributes, position = EXCLUDED.position \
            WHERE sku.product_id = EXCLUDED.product_id \
         RETURNING sku_id",
    )
    .bind(tenant.as_str())
    .bind(p.id.0)
    .bind(&codes)
    .bind(&names)
    .bind(&attributes)
    .fetch_all(&mut *conn)
    .await?;
    if written.len() != codes.len() {
        return Ok(p
            .skus
            .iter()
            .filter(|s| !written.iter().any(|w| w == s.id.as_str()))
            .map(|s| s.id.clone())
            .collect());
    }
    let amounts: Vec<i64> = p.skus.iter().map(|s| s.price.amount_minor).collect();
    let currencies: Vec<String> = p
        .skus
        .iter()
        .map(|s| s.price.currency.to_string())
        .collect();
    sqlx::query(
        "INSERT INTO price (tenant_id, sku_id, amount_minor, currency) \
         SELECT $1, s, a, c FROM UNNEST($2::text[], $3::int8[], $4::text[]) AS t(s, a, c) \
         ON CONFLICT (tenant_id, sku_id) DO UPDATE \
            SET amount_minor = EXCLUDED.amount_minor, currency = EXCLUDED.currency",
    )
    .bind(tenant.as_str())
    .bind(&codes)
    .bind(&amounts)
    .bind(&currencies)
    .execute(&mut *conn)
    .await?;
    let stock: Vec<i64> = p.skus.iter().map(|s| s.stock).collect();
    sqlx::query(
        "INSERT INTO stock (tenant_id, sku_id, quantity, updated_at_ms) \
         SELECT $1, s, q, $4 FROM UNNEST($2::text[], $3::int8[]) AS t(s, q) \
         ON CONFLICT (tenant_id, sku_id) DO UPDATE \
            SET quantity = EXCLUDED.quantity, \
                updated_at_ms = CASE WHEN stock.quantity = EXCLUDED.quantity \
                                     THEN stock.updated_at_ms ELSE EXCLUDED.updated_at_ms END",
    )
    .bind(tenant.as_str())
    .bind(&codes)
    .bind(&stock)
    .bind(p.updated_at_ms)
    .execute(&mut *conn)
    .await?;
    Ok(Vec::new())
}

/// Append outbox rows; `created_at` is the event's clock time, exactly.
async fn append(
    conn: &mut PgConnection,
    tenant: &TenantId,
    events: &[OutboxEvent],
) -> sqlx::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
    let aggregates: Vec<Uuid> = events.iter().map(|e| e.aggregate_id.0).collect();
    let types: Vec<String> = events.iter().map(|e| e.event_type.clone()).collect();
    let payloads: Vec<String> = events.iter().map(|e| e.payload.to_string()).collect();
    let times: Vec<i64> = events.iter().map(|e| e.created_at_ms).collect();
    sqlx::query(
        "INSERT INTO outbox (id, tenant_id, aggregate_id, event_type, payload, created_at) \
         SELECT i, $1, a, t, p::jsonb, 'epoch'::timestamptz + m * interval '1 millisecond' \
         FROM UNNEST($2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::int8[]) AS x(i, a, t, p, m)",
    )
    .bind(tenant.as_str())
    .bind(&ids)
    .bind(&aggregates)
    .bind(&types)
    .bind(&payloads)
    .bind(&times)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Column and direction of a sort.
fn sort_column(sort: Sort) -> (&'static str, bool) {
    match sort {
        Sort::Newest => ("p.created_at_ms", true),
        Sort::PriceAsc => ("p.min_price_minor", false),
        Sort::PriceDesc => ("p.min_price_minor", true),
        Sort::Name => ("p.title", false),
    }
}

#[async_trait]
impl ProductRepository for PostgresProductRepository {
    async fn create(
        &self,
        tenant: &TenantId,
        p: &Product,
        events: &[OutboxEvent],
    ) -> Result<(), RepoError> {
        let result: sqlx::Result<Vec<SkuId>> = async {
            let mut tx = self.pool.begin().await?;
            sqlx::query(
                "INSERT INTO product (tenant_id, id, slug, title, description, category, tags, \
                                      image_key, min_price_minor, version, created_at_ms, updated_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(tenant.as_str())
            .bind(p.id.0)
            .bind(p.slug.as_str())
            .bind(&p.title)
            .bind(&p.description)
            .bind(p.category.as_str())
            .bind(&p.tags)
            .bind(&p.image_key)
            .bind(p.min_price().amount_minor)
            .bind(p.version)
            .bind(p.created_at_ms)
            .bind(p.updated_at_ms)
            .execute(&mut *tx)
            .await?;
            write_regions(&mut tx, tenant, p, false).await?;
            let taken = write_skus(&mut tx, tenant, p).await?;
            if taken.is_empty() {
                append(&mut tx, tenant, events).await?;
                tx.commit().await?;
            }
            Ok(taken)
        }
        .await;
        match result {
            Ok(taken) if taken.is_empty() => Ok(()),
            Ok(taken) => Err(RepoError::Duplicate(Duplicate::Sku(taken[0].clone()))),
            Err(e) => Err(self.write_err(tenant, p, e).await),
        }
    }

    async fn get(&self, tenant: &TenantId, id: ProductId) -> Result<Option<Product>, RepoError> {
        // One statement, one snapshot: no transaction around it.
        load_one(&self.pool, tenant, id.0).await
    }

    async fn get_by_slug(
        &self,
        tenant: &TenantId,
        slug: &Slug,
    ) -> Result<Option<Product>, RepoError> {
        load_by_slug(&self.pool, tenant, slug).await
    }

    async fn list(&self, tenant: &TenantId, q: &ListQuery) -> Result<Page, RepoError> {
        let (column, descending) = sort_column(q.sort);
        let dir = if descending { "DESC" } else { "ASC" };
        let mut qb: QueryBuilder<Postgres> =
            QueryBuilder::new("SELECT p.id FROM product p WHERE p.tenant_id = ");
        qb.push_bind(tenant.as_str());
        if let Some(c) = &q.filter.category {
            qb.push(" AND p.category = ").push_bind(c.as_str());
        }
        if let Some(r) = &q.filter.region {
            qb.push(
                " AND EXISTS (SELECT 1 FROM product_region r \
                 WHERE r.tenant_id = p.tenant_id AND r.product_id = p.id AND r.region = ",
            )
            .push_bind(r.as_str())
            .push(")");
        }
        let price = &q.filter.price;
        if !price.is_any() {
            qb.push(
                " AND EXISTS (SELECT 1 FROM sku s \
                 JOIN price pr ON pr.tenant_id = s.tenant_id AND pr.sku_id = s.sku_id \
                 WHERE s.tenant_id = p.tenant_id AND s.product_id = p.id",
            );
            if let Some(m) = price.min_minor {
                qb.push(" AND pr.amount_minor >= ").push_bind(m);
            }
            if let Some(m) = price.max_minor {
                qb.push(" AND pr.amount_minor <= ").push_bind(m);
            }
            if let Some(c) = price.currency {
                qb.push(" AND pr.currency = ")
                    .push_bind(c.to_string())
                    .push("::bpchar");
            }
            qb.push(")");
        }
        if let Some(c) = &q.after {
            let op = if descending { "<" } else { ">" };
            qb.push(format!(" AND ({column}, p.id) {op} ("));
            match &c.key {
                SortKey::Int(n) => qb.push_bind(*n),
                SortKey::Text(s) => qb.push_bind(s.clone()),
            };
            qb.push(", ").push_bind(c.id).push(")");
        }
        qb.push(format!(" ORDER BY {column} {dir}, p.id {dir} LIMIT "))
            .push_bind(q.limit as i64 + 1);

        let mut tx = self.snapshot().await?;
        let mut ids: Vec<Uuid> = qb
            .build()
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?
            .iter()
            .map(|row| row.try_get::<Uuid, _>(0))
            .collect::<Result<_, _>>()
            .map_err(db_err)?;
        let more = ids.len() > q.limit;
        ids.truncate(q.limit);
        let mut loaded = load(&mut *tx, tenant, &ids).await?;
        tx.commit().await.map_err(db_err)?;
        let items = ids
            .iter()
            .map(|id| {
                loaded.remove(id).ok_or_else(|| {
                    RepoError::Internal(format!("product {id} vanished mid-snapshot"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let next = if more {
            items.last().map(|p| Cursor::after(p, q.sort))
        } else {
            None
        };
        Ok(Page { items, next })
    }

    async fn update(
        &self,
        tenant: &TenantId,
        p: &Product,
        expected_version: i64,
        events: &[OutboxEvent],
    ) -> Result<(), RepoError> {
        if p.version != expected_version + 1 {
            return Err(RepoError::Internal(format!(
                "new version {} does not follow {expected_version}",
                p.version
            )));
        }
        enum Outcome {
            Done,
            Stale(Option<i64>),
            Taken(SkuId),
        }
        let result: sqlx::Result<Outcome> = async {
            let mut tx = self.pool.begin().await?;
            let updated = sqlx::query(
                "UPDATE product SET slug = $3, title = $4, description = $5, category = $6, \
                        tags = $7, image_key = $8, min_price_minor = $9, version = $10, \
                        updated_at_ms = $11 \
                 WHERE tenant_id = $1 AND id = $2 AND version = $12",
            )
            .bind(tenant.as_str())
            .bind(p.id.0)
            .bind(p.slug.as_str())
            .bind(&p.title)
            .bind(&p.description)
            .bind(p.category.as_str())
            .bind(&p.tags)
            .bind(&p.image_key)
            .bind(p.min_price().amount_minor)
            .bind(p.version)
            .bind(p.updated_at_ms)
            .bind(expected_version)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated == 0 {
                let current: Option<i64> = sqlx::query_scalar(
                    "SELECT version FROM product WHERE tenant_id = $1 AND id = $2",
                )
                .bind(tenant.as_str())
                .bind(p.id.0)
                .fetch_optional(&mut *tx)
                .await?;
                return Ok(Outcome::Stale(current));
            }
            write_regions(&mut tx, tenant, p, true).await?;
            let keep: Vec<String> = p.skus.iter().map(|s| s.id.to_string()).collect();
            sqlx::query(
                "DELETE FROM sku WHERE tenant_id = $1 AND product_id = $2 AND sku_id <> ALL($3)",
            )
            .bind(tenant.as_str())
            .bind(p.id.0)
            .bind(&keep)
            .execute(&mut *tx)
            .await?;
            if let Some(code) = write_skus(&mut tx, tenant, p).await?.into_iter().next() {
                return Ok(Outcome::Taken(code));
            }
            append(&mut tx, tenant, events).await?;
            tx.commit().await?;
            Ok(Outcome::Done)
        }
        .await;
        match result {
            Ok(Outcome::Done) => Ok(()),
            Ok(Outcome::Stale(None)) => Err(RepoError::NotFound),
            Ok(Outcome::Stale(Some(current))) => Err(RepoError::Conflict {
                product: p.id,
                current,
            }),
            Ok(Outcome::Taken(code)) => Err(RepoError::Duplicate(Duplicate::Sku(code))),
            Err(e) => Err(self.write_err(tenant, p, e).await),
        }
    }

    async fn update_stock(&self, tenant: &TenantId, u: &StockUpdate) -> Result<Product, RepoError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        // Lock the owning product first (the order every write uses).
        let owner: Option<Uuid> = sqlx::query_scalar(
            "SELECT p.id FROM product p \
             JOIN sku s ON s.tenant_id = p.tenant_id AND s.product_id = p.id \
             WHERE s.tenant_id = $1 AND s.sku_id = $2 \
             FOR UPDATE OF p",
        )
        .bind(tenant.as_str())
        .bind(u.sku_id.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let Some(owner) = owner.filter(|o| u.product_id.is_none_or(|id| id.0 == *o)) else {
            return Err(RepoError::SkuNotFound);
        };
        let current = load_one(&mut *tx, tenant, owner)
            .await?
            .filter(|p| p.sku(&u.sku_id).is_some())
            .ok_or(RepoError::SkuNotFound)?;
        let (next, event) = product::plan_stock_update(
            &current,
            &u.sku_id,
            u.change,
            u.expected_version,
            u.event_id,
            &u.context,
        )?;
        let quantity = next.sku(&u.sku_id).map(|s| s.stock).unwrap_or_default();
        async {
            sqlx::query(
                "UPDATE stock SET quantity = $3, updated_at_ms = $4 \
                 WHERE tenant_id = $1 AND sku_id = $2",
            )
            .bind(tenant.as_str())
            .bind(u.sku_id.as_str())
            .bind(quantity)
            .bind(u.context.now_ms)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE product SET version = $3, updated_at_ms = $4 \
                 WHERE tenant_id = $1 AND id = $2",
            )
            .bind(tenant.as_str())
            .bind(owner)
            .bind(next.version)
            .bind(next.updated_at_ms)
            .execute(&mut *tx)
            .await?;
            append(&mut tx, tenant, std::slice::from_ref(&event)).await?;
            tx.commit().await
        }
        .await
        .map_err(db_err)?;
        Ok(next)
    }

    async fn outbox(
        &self,
        tenant: &TenantId,
        product: ProductId,
    ) -> Result<Vec<OutboxEvent>, RepoError> {
        let rows: Vec<(Uuid, Uuid, String, serde_json::Value, i64)> = sqlx::query_as(
            "SELECT id, aggregate_id, event_type, payload, \
                    round(extract(epoch FROM created_at) * 1000)::bigint \
             FROM outbox WHERE tenant_id = $1 AND aggregate_id = $2 \
             ORDER BY created_at, id",
        )
        .bind(tenant.as_str())
        .bind(product.0)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows
            .into_iter()
            .map(
                |(id, aggregate, event_type, payload, created_at_ms)| OutboxEvent {
                    id,
                    aggregate_id: ProductId(aggregate),
                    event_type,
                    payload,
                    created_at_ms,
                },
            )
            .collect())
    }
}
