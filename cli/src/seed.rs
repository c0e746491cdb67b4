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

#[derive(Debug, Args)]
pub struct SeedArgs {
    /// Email of the admin account to create (or to grant the admin role).
    #[arg(long, default_value = "admin@shopstream.local")]
    admin_email: String,
    /// Load products from this file instead of the built-in seed.
    #[arg(long)]
    products: Option<std::path::PathBuf>,
    #[arg(long)]
    json: bool,
}

pub async fn seed(state_dir: &Path, args: SeedArgs) -> anyhow::Result<u8> {
    let stack = Stack::new(
        state_dir,
        Ports::from_env(Ports::DEV)?,
        std::env::current_exe()?,
    );
    let endpoints: Endpoints = stack.endpoints();
    if let Err(e) = db::ensure_database(&endpoints.postgres_url, "postgres").await {
        eprintln!("error: cannot reach Postgres ({e}); start the stack first: shopstream up");
        return Ok(exit::NOT_READY);
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
        .ensure_admin(&tenant, &args.admin_email)
        .await
        .map_err(|e| anyhow::anyhow!("admin account: {e}"))?;

    // The catalog.
    let pool = db::connect(&endpoints.postgres_url, "catalog").await?;
    let path = match &args.products {
        Some(p) => p.clone(),
        None => {
            let p = stack.root().join("seed-products.json");
            std::fs::create_dir_all(stack.root())?;
            std::fs::write(&p, PRODUCTS_JSON)?;
            p
        }
    };
    let report = shopstream_catalog::seed::seed(&pool, &path).await?;
    let elapsed = started.elapsed();

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
    }
    Ok(exit::OK)
}
