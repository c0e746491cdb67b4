//! `shopstream search reconcile`: compare the search index with the catalog
//! and repair drift. The search service does the work (its index has one
//! writer: itself); this asks it to over HTTP.

use std::time::Duration;

use clap::{Args, Subcommand};
use shopstream_platform::config::{Ports, service_addrs};

use crate::exit;

#[derive(Debug, Args)]
pub struct SearchArgs {
    #[command(subcommand)]
    command: SearchCommand,
}

#[derive(Debug, Subcommand)]
enum SearchCommand {
    /// Compare every catalog product with the index; re-index what is missing
    /// or older, tombstone what the catalog no longer has.
    #[command(after_help = "Exit codes: 0 ok, 1 reconcile failed, 4 search not reachable.")]
    Reconcile(ReconcileArgs),
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// The search service's HTTP base URL (default: this stack's).
    #[arg(long)]
    url: Option<String>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout_s: u64,
    #[arg(long)]
    json: bool,
}

pub async fn search(args: SearchArgs) -> anyhow::Result<u8> {
    match args.command {
        SearchCommand::Reconcile(a) => reconcile(a).await,
    }
}

async fn reconcile(args: ReconcileArgs) -> anyhow::Result<u8> {
    let base = match args.url {
        Some(u) => u,
        None => {
            let ports = Ports::from_env(Ports::DEV)?;
            let (http, _) = service_addrs("search", ports.services).expect("search is a service");
            format!("http://{http}")
        }
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout_s))
        .build()?;
    if !args.json {
        eprintln!("search: reconciling the index at {base} with the catalog…");
    }
    let resp = match client.post(format!("{base}/admin/reconcile")).send().await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot reach search at {base} ({e}); start the stack: shopstream up");
            return Ok(exit::NOT_READY);
        }
    };
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    if !status.is_success() {
        eprintln!("error: reconcile failed ({status}): {body}");
        return Ok(exit::FAILED);
    }
    if args.json {
        println!("{body}");
    } else {
        println!(
            "catalog products {}, repaired {}, tombstoned {}, unchanged {}",
            body["catalog_products"], body["repaired"], body["tombstoned"], body["unchanged"]
        );
    }
    Ok(exit::OK)
}
