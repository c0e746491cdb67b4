//! `shopstream seed`: the demo's data, idempotently — an admin account
//! (its generated password printed once, never stored in the repository),
//! the catalog's products from `services/catalog/seed/products.json`, and a
//! generated picture per product through the media pipeline.

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
    /// Products to give a generated picture through the media pipeline
    /// (uploaded now, processed in the background; products without one
    /// show a placeholder). Products that have one are skipped.
    #[arg(long, default_value_t = DEFAULT_IMAGES)]
    images: usize,
    #[arg(long)]
    json: bool,
}

/// Products given a picture by default.
pub const DEFAULT_IMAGES: usize = 600;
/// Uploads in flight while seeding pictures.
const IMAGE_CONCURRENCY: usize = 4;
/// Size of a seeded product picture.
const IMAGE_SIZE: (u32, u32) = (800, 600);

/// Upload a generated picture for up to `n` products that have none
/// (`StartIngest` with `ref = product:<id>`, then the presigned PUT); the
/// pipeline makes them ready in the background. Returns (uploaded, skipped).
pub async fn seed_images(stack: &Stack, n: usize) -> anyhow::Result<(usize, usize)> {
    use futures::StreamExt;
    use shopstream_proto::media::v1::{
        MediaKind, StartIngestRequest, media_service_client::MediaServiceClient,
    };
    use sqlx::Row;
    if n == 0 {
        return Ok((0, 0));
    }
    let endpoints = stack.endpoints();
    let catalog = db::connect(&endpoints.postgres_url, "catalog").await?;
    let rows = sqlx::query("SELECT tenant_id, id::text AS id FROM product ORDER BY id LIMIT $1")
        .bind(n as i64)
        .fetch_all(&catalog)
        .await?;
    let media_db = db::connect(&endpoints.postgres_url, "media").await?;
    db::migrate(&media_db, &shopstream_media::MIGRATOR).await?;
    let have: std::collections::HashSet<String> = sqlx::query_scalar(
        "SELECT DISTINCT ref FROM assets WHERE ref LIKE 'product:%' AND status NOT IN ('failed', 'rejected')",
    )
    .fetch_all(&media_db)
    .await?
    .into_iter()
    .collect();
    let todo: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.get::<String, _>("tenant_id"), r.get::<String, _>("id")))
        .filter(|(_, id)| !have.contains(&format!("product:{id}")))
        .collect();
    let skipped = rows.len() - todo.len();
    let (_, grpc) = shopstream_platform::config::service_addrs("media", stack.ports().services)
        .expect("media is a service");
    let timeout = std::time::Duration::from_secs(10);
    let channel = shopstream_platform::grpc::channel(&format!("http://{grpc}"), timeout, timeout)?;
    let client = MediaServiceClient::new(channel);
    let http = reqwest::Client::builder().timeout(timeout).build()?;
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(todo)
        .map(|(tenant, id)| {
            let (mut client, http) = (client.clone(), http.clone());
            async move {
                let seed = id
                    .bytes()
                    .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
                let bytes = shopstream_media::samples::photo(IMAGE_SIZE.0, IMAGE_SIZE.1, seed);
                let s = client
                    .start_ingest(shopstream_platform::grpc::with_tenant(
                        StartIngestRequest {
                            owner_id: "seed".into(),
                            filename: format!("{id}.jpg"),
                            content_type: "image/jpeg".into(),
                            size_bytes: bytes.len() as u64,
                            kind: MediaKind::Image as i32,
                            r#ref: format!("product:{id}"),
                        },
                        &tenant,
                    ))
                    .await
                    .map_err(|e| anyhow::anyhow!("media: {}", e.message()))?
                    .into_inner();
                let mut put = http.put(&s.upload_url);
                for (k, v) in &s.upload_headers {
                    if !k.eq_ignore_ascii_case("content-length") {
                        put = put.header(k, v);
                    }
                }
                let r = put.body(bytes).send().await?;
                anyhow::ensure!(r.status().is_success(), "S3 PUT: HTTP {}", r.status());
                Ok(())
            }
        })
        .buffer_unordered(IMAGE_CONCURRENCY)
        .collect()
        .await;
    let uploaded = results.iter().filter(|r| r.is_ok()).count();
    if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
        anyhow::bail!(
            "{} of {} pictures not uploaded; first error: {e}",
            results.len() - uploaded,
            results.len()
        );
    }
    Ok((uploaded, skipped))
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
    let stack = Stack::new(
        state_dir,
        Ports::from_env(Ports::DEV)?,
        std::env::current_exe()?,
    );
    let images_started = Instant::now();
    let (images_uploaded, images_skipped) = match seed_images(&stack, args.images).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: product pictures: {e:#} (is media up? `shopstream status`)");
            return Ok(exit::NOT_READY);
        }
    };
    let images_elapsed = images_started.elapsed();

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
                "images_uploaded": images_uploaded,
                "images_already_there": images_skipped,
                "elapsed_ms": (elapsed + images_elapsed).as_millis(),
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
        println!(
            "media: {images_uploaded} generated product pictures uploaded ({:.1}s), {images_skipped} products had one; \
             the pipeline makes them ready in the background (placeholders until then)",
            images_elapsed.as_secs_f64()
        );
    }
    Ok(exit::OK)
}
