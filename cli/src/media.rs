//! `shopstream media upload FILE`: upload a photo or a clip through the
//! public API — declare it, PUT the bytes straight to S3 with the presigned
//! URL (a progress bar), then follow the asset through the pipeline, one
//! line per step attempt with its duration, to its variants.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use shopstream_labs::{
    LabError, Target,
    media::{self as client},
    target::Gateway,
};
use shopstream_platform::config::Ports;

use crate::exit;

#[derive(Debug, Args)]
pub struct MediaArgs {
    #[command(subcommand)]
    command: MediaCommand,
}

#[derive(Debug, Subcommand)]
enum MediaCommand {
    /// Upload a photo (jpg, png, webp, gif) or a clip (mp4, mov, webm) and
    /// follow it to ready, printing each step with its duration.
    #[command(
        after_help = "The type comes from the extension; the pipeline checks the bytes.\n\
Without --email, a new account is created for the upload (its e-mail is printed).\n\n\
Exit codes: 0 ready, 1 rejected, failed or refused, 2 unreadable file or unknown type, 4 not reachable.\n\
Example: shopstream media upload photo.jpg --ref product:0192f0aa-..."
    )]
    Upload(UploadArgs),
}

#[derive(Debug, Args)]
pub struct UploadArgs {
    /// The file to upload.
    file: PathBuf,
    /// What it illustrates, e.g. `post:<id>`, or `product:<id>` (as an admin).
    #[arg(long = "ref", default_value = "")]
    reference: String,
    /// Upload as this account (with --password).
    #[arg(long, env = "SHOPSTREAM_EMAIL", requires = "password")]
    email: Option<String>,
    #[arg(long, env = "SHOPSTREAM_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Give up following after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// The gateway's base URL (default: this stack's gateway).
    #[arg(long)]
    gateway: Option<String>,
    /// Print the final asset as JSON (no progress output).
    #[arg(long)]
    json: bool,
}

pub async fn media(args: MediaArgs) -> anyhow::Result<u8> {
    match args.command {
        MediaCommand::Upload(a) => upload(a).await,
    }
}

fn code_of(e: &LabError) -> u8 {
    match e {
        LabError::NotReady(_) => exit::NOT_READY,
        _ => exit::FAILED,
    }
}

async fn upload(args: UploadArgs) -> anyhow::Result<u8> {
    let name = args
        .file
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let Some((kind, content_type)) = client::type_of(&name) else {
        eprintln!(
            "error: {}: unknown type; name it .jpg, .png, .webp, .gif, .mp4, .mov or .webm",
            args.file.display()
        );
        return Ok(2);
    };
    let bytes = match std::fs::read(&args.file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", args.file.display());
            return Ok(2);
        }
    };
    let base = match &args.gateway {
        Some(g) => g.clone(),
        None => Target::from_ports(&Ports::from_env(Ports::DEV)?).gateway_url,
    };
    let mut gw = Gateway::new(&base).map_err(|e| anyhow::anyhow!("{e}"))?;
    let login = match (&args.email, &args.password) {
        (Some(e), Some(p)) => gw.login(e, p).await.map(|_| e.clone()),
        _ => {
            let suffix = uuid::Uuid::new_v4().simple().to_string();
            let email = format!("uploader-{}@cli.shopstream.dev", &suffix[..10]);
            gw.signup_and_login(&email, &suffix).await.map(|_| email)
        }
    };
    let email = match login {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(code_of(&e));
        }
    };
    let human = !args.json;
    if human && args.email.is_none() {
        println!("uploading as a new account {email} (pass --email/--password to use yours)");
    }
    let size = bytes.len() as u64;
    let declared =
        match client::declare(&gw, kind, content_type, size, &name, &args.reference).await {
            Ok(d) => d,
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(code_of(&e));
            }
        };
    let id = declared["asset"]["asset_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let started = std::time::Instant::now();
    let bar = if human {
        println!("asset {id}: {kind}, {content_type}, {size} bytes");
        let b = ProgressBar::new(size);
        b.set_style(
            ProgressStyle::with_template(
                "upload  [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let b = bar.clone();
    if let Err(e) = client::put(&declared["upload"], bytes, move |sent, _| {
        b.set_position(sent)
    })
    .await
    {
        bar.abandon();
        eprintln!("error: {e}");
        return Ok(code_of(&e));
    }
    bar.finish();
    let uploaded_ms = started.elapsed().as_millis();
    let mut printed = 0usize;
    let mut last_status = String::new();
    let followed = client::follow(&gw, &id, Duration::from_secs(args.timeout), |a| {
        if !human {
            return;
        }
        let status = a["status"].as_str().unwrap_or_default().to_string();
        if status != last_status {
            println!("status  {status}");
            last_status = status;
        }
        let attempts = a["attempts"].as_array().cloned().unwrap_or_default();
        // Print each attempt once it has finished.
        let done: Vec<&Value> = attempts
            .iter()
            .filter(|t| t["finished_at_ms"].as_i64().unwrap_or(0) > 0)
            .collect();
        for t in done.iter().skip(printed) {
            println!("  {}", client::describe_attempt(t));
        }
        printed = printed.max(done.len());
    })
    .await;
    let asset = match followed {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(code_of(&e));
        }
    };
    let status = asset["status"].as_str().unwrap_or_default();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&asset)?);
    } else {
        println!(
            "{status} in {} ms after the upload ({} ms uploading)",
            started.elapsed().as_millis() - uploaded_ms,
            uploaded_ms
        );
        if let Some(vs) = asset["variants"].as_array() {
            for v in vs {
                let n = |k: &str| v[k].as_u64().unwrap_or(0);
                println!(
                    "  {:<11} {:>5}×{:<5} {:>9} bytes  {}",
                    v["name"].as_str().unwrap_or_default(),
                    n("width"),
                    n("height"),
                    n("size_bytes"),
                    v["content_type"].as_str().unwrap_or_default()
                );
            }
        }
        if status != "ready" {
            let step = asset["failed_step"].as_str().unwrap_or_default();
            let why = asset["failure_reason"].as_str().unwrap_or_default();
            if step.is_empty() {
                println!("  reason: {why}");
            } else {
                println!("  failed at {step}: {why}");
            }
        }
    }
    Ok(if status == "ready" {
        exit::OK
    } else {
        exit::FAILED
    })
}
