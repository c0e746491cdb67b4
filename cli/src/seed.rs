//! `shopstream seed`: the demo's data, idempotently — an admin account
//! (its generated password printed once, never stored in the repository) and
//! the catalog's products from `services/catalog/seed/products.json`.

use std::{path::Path, time::Instant};

use clap::Args;
use shopstream_platform::{
    config::{Endpoints, Ports, ServiceConfig},
    db,
};
use shopstream_runtime::Stack;

use crate::exit;

/// The catalog seed, built into the binary so `seed` works from any directory.
const PRODUCTS_JSON: &str = include_str!("../../services/catalog/seed/products.json");

/// The demo's admin account.
pub const DEFAULT_ADMIN_EMAIL: &str = "admin@shopstream.local";

#[derive(Debug, Args)]
pub struct SeedArgs {
    /// Email of the admin account to create (or to grant the admin role).
    #[arg(long, default_value = DEFAULT_ADMIN_EMAIL)]
    admin_email: String,
    /// Load products from this file instead of the built-in seed.
    #[arg(long)]
    products: Option<std::path::PathBuf>,
    #[arg(long)]
    json: bool,
}

/// What one seeding run did.
#[derive(Debug)]
pub struct Seeded {
    pub admin_email: String,
    /// The generated password, when this run created the admin account.
    pub admin_password: Option<String>,
    pub report: shopstream_catalog::seed::SeedReport,
    /// SKUs given their first stock in inventory by this run.
    pub stocked: u64,
    pub elapsed: std::time::Duration,
}

/// Give inventory (the stock truth) the seeded stock of every SKU it does not
/// know yet; SKUs it knows keep their live counts, so re-seeding never undoes
/// sales or reservations.
async fn seed_inventory(endpoints: &Endpoints, catalog: &sqlx::PgPool) -> anyhow::Result<u64> {
    use sqlx::Row;
    let rows = sqlx::query("SELECT tenant_id, sku_id, quantity FROM stock")
        .fetch_all(catalog)
        .await?;
    let (tenants, (skus, units)): (Vec<String>, (Vec<String>, Vec<i64>)) = rows
        .iter()
        .map(|r| {
            (
                r.get::<String, _>("tenant_id"),
                (
                    r.get::<String, _>("sku_id"),
                    r.get::<i64, _>("quantity").max(0),
                ),
            )
        })
        .unzip();
    let inventory = db::connect(&endpoints.postgres_url, "inventory").await?;
    db::migrate(
        &inventory,
        &shopstream_inventory::adapters::postgres::MIGRATOR,
    )
    .await?;
    let inserted = sqlx::query(
        "INSERT INTO stock (tenant_id, sku_id, on_hand)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[])
         ON CONFLICT (tenant_id, sku_id) DO NOTHING",
    )
    .bind(&tenants)
    .bind(&skus)
    .bind(&units)
    .execute(&inventory)
    .await?
    .rows_affected();
    Ok(inserted)
}

/// Seed the stack under `state_dir`, printing nothing on stdout.
/// `Ok(Err(code))` means Postgres is not reachable (said on stderr).
/// `shopstream lab run` seeds through this too.
pub async fn seed_stack(
    state_dir: &Path,
    admin_email: &str,
    products: Option<&Path>,
) -> anyhow::Result<Result<Seeded, u8>> {
    let stack = Stack::new(
        state_dir,
        Ports::from_env(Ports::DEV)?,
        std::env::current_exe()?,
    );
    let endpoints: Endpoints = stack.endpoints();
    if let Err(e) = db::ensure_database(&endpoints.postgres_url, "postgres").await {
        eprintln!("error: cannot reach Postgres ({e}); start the stack first: shopstream up");
        return Ok(Err(exit::NOT_READY));
    }
    let started = Instant::now();

    // The admin account, through identity's own use cases.
    let mut identity_cfg = shopstream_identity::Config::from_env()?;
    identity_cfg.service = ServiceConfig {
        endpoints: endpoints.clone(),
        ..identity_cfg.service
    };
    identity_cfg.key_dir = stack.root().join("keys");
    let (identity, _) = shopstream_identity::build(&identity_cfg).await?;
    let tenant = identity_cfg.service.default_tenant.clone();
    let admin_password = identity
        .ensure_admin(&tenant, admin_email)
        .await
        .map_err(|e| anyhow::anyhow!("admin account: {e}"))?;

    // The catalog.
    let pool = db::connect(&endpoints.postgres_url, "catalog").await?;
    let path = match products {
        Some(p) => p.to_path_buf(),
        None => {
            let p = stack.root().join("seed-products.json");
            std::fs::create_dir_all(stack.root())?;
            std::fs::write(&p, PRODUCTS_JSON)?;
            p
        }
    };
    let report = shopstream_catalog::seed::seed(&pool, &path).await?;
    let stocked = seed_inventory(&endpoints, &pool).await?;
    Ok(Ok(Seeded {
        stocked,
        admin_email: admin_email.to_string(),
        admin_password,
        report,
        elapsed: started.elapsed(),
    }))
}

pub async fn seed(state_dir: &Path, args: SeedArgs) -> anyhow::Result<u8> {
    let Seeded {
        admin_password,
        report,
        stocked,
        elapsed,
        ..
    } = match seed_stack(state_dir, &args.admin_email, args.products.as_deref()).await? {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };

    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "admin_email": args.admin_email,
                "admin_password": admin_password,
                "admin_created": admin_password.is_some(),
                "products_inserted": report.inserted,
                "products_updated": report.updated,
                "products_unchanged": report.unchanged,
                "inventory_skus_stocked": stocked,
                "elapsed_ms": elapsed.as_millis(),
            })
        );
    } else {
        match &admin_password {
            Some(pw) => println!(
                "admin account created: {} / {pw}\n  (shown once; keep it — it is stored only as an argon2id hash)",
                args.admin_email
            ),
            None => println!(
                "admin account {} already exists (role ensured)",
                args.admin_email
            ),
        }
        println!(
            "catalog: {} products inserted, {} updated from the file, {} unchanged ({:.1}s)",
            report.inserted,
            report.updated,
            report.unchanged,
            elapsed.as_secs_f64()
        );
        println!(
            "inventory: {stocked} SKUs given their seeded stock (known SKUs keep their counts)"
        );
    }
    Ok(exit::OK)
}
