//! `shopstream dsar`: data subject access requests (ADR 0012).
//!
//! - `start USER --kind erase|export` starts one and follows it to its end,
//!   participant by participant (the DSAR shows whom it waits for);
//! - `status ID` shows one (`--certificate FILE` saves its certificate);
//! - `export ID --out FILE` downloads an export's archive;
//! - `verify FILE` checks a certificate: its signature, its record in the
//!   audit chain and every link back to the chain's start — offline with
//!   `--jwks FILE --chain DIR` (as `chain --out DIR` saves them);
//! - `chain --out DIR` saves the key set and every chain record.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use shopstream_compliance::{
    client::{ClientError, Compliance, is_terminal, kind_name, state_name},
    domain::{self, Jwks, Kind},
};
use shopstream_platform::config::{Ports, service_addrs};
use shopstream_proto::compliance::v1::Dsar;

use crate::exit;

#[derive(Debug, Args)]
pub struct DsarArgs {
    #[command(subcommand)]
    command: DsarCommand,
}

#[derive(Debug, Subcommand)]
enum DsarCommand {
    /// Start an erasure or an export of one user and follow it to its end.
    #[command(
        after_help = "Exit codes: 0 completed, 1 failed or refused, 4 compliance not reachable.\n\
Example: shopstream dsar start 0190a0a0-0000-7000-8000-000000000001 --kind erase"
    )]
    Start(StartArgs),
    /// Show one DSAR: per store, the sweep, what was retained, the certificate.
    #[command(after_help = "Exit codes: 0 ok, 1 not found or refused, 4 compliance not reachable.")]
    Status(StatusArgs),
    /// Download an export's archive (.tar.gz) through its presigned URL.
    #[command(after_help = "Exit codes: 0 ok, 1 not an export or not completed, 4 not reachable.")]
    Export(ExportArgs),
    /// Verify a certificate: signature, audit record, chain back to its start.
    #[command(
        after_help = "Exit codes: 0 every check passed, 1 a check failed (named), 4 not reachable.\n\
Offline: shopstream dsar chain --out chain/ && shopstream dsar verify cert.jws --jwks chain/jwks.json --chain chain/"
    )]
    Verify(VerifyArgs),
    /// Save the key set (jwks.json) and every audit chain record into a directory.
    #[command(after_help = "Exit codes: 0 ok, 4 compliance not reachable.")]
    Chain(ChainArgs),
}

#[derive(Debug, Args)]
struct Common {
    /// The tenant (shop).
    #[arg(long, default_value = shopstream_platform::config::DEFAULT_TENANT)]
    tenant: String,
    /// Compliance's gRPC URL (default: this stack's).
    #[arg(long)]
    grpc: Option<String>,
    /// Compliance's HTTP base (default: this stack's).
    #[arg(long)]
    http: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum KindArg {
    Erase,
    Export,
}

#[derive(Debug, Args)]
struct StartArgs {
    /// The user's id.
    user: String,
    #[arg(long, value_enum)]
    kind: KindArg,
    /// Who asks (written to the audit record).
    #[arg(long, default_value = "operator (shopstream cli)")]
    requested_by: String,
    /// A retried start with the same key does not start a second DSAR.
    #[arg(long, default_value = "")]
    idempotency_key: String,
    /// Return once started, without following it.
    #[arg(long)]
    no_wait: bool,
    /// Give up following after this many seconds (the DSAR goes on).
    #[arg(long, default_value_t = 300)]
    timeout_s: u64,
    /// Save the certificate (a compact JWS) here once completed.
    #[arg(long)]
    certificate: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Args)]
struct StatusArgs {
    id: String,
    /// Save the certificate (a compact JWS) here.
    #[arg(long)]
    certificate: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Args)]
struct ExportArgs {
    id: String,
    /// Where to write the archive.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// The certificate: a compact JWS, as `status --certificate` saves it.
    file: PathBuf,
    /// The key set: a URL or a file (default: this stack's compliance).
    #[arg(long)]
    jwks: Option<String>,
    /// The audit chain: a directory of `<seq>.jws` files, or compliance's HTTP base.
    #[arg(long)]
    chain: Option<String>,
    /// Also check that the certificate is about this user (in --tenant).
    #[arg(long)]
    subject: Option<uuid::Uuid>,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Args)]
struct ChainArgs {
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    common: Common,
}

fn urls(c: &Common) -> anyhow::Result<(String, String)> {
    let ports = Ports::from_env(Ports::DEV)?;
    let (http, grpc) =
        service_addrs("compliance", ports.services).context("compliance has no address")?;
    Ok((
        c.grpc.clone().unwrap_or_else(|| format!("http://{grpc}")),
        c.http.clone().unwrap_or_else(|| format!("http://{http}")),
    ))
}

fn connect(c: &Common) -> anyhow::Result<Compliance> {
    let (g, h) = urls(c)?;
    Ok(Compliance::new(&g, &h)?)
}

/// Exit code of a client error, with the message printed.
fn fail(e: ClientError) -> u8 {
    eprintln!("error: {e}");
    match e {
        ClientError::Unreachable { .. } => {
            eprintln!("Is the stack up? `shopstream status` shows it; `shopstream up` starts it.");
            exit::NOT_READY
        }
        _ => exit::FAILED,
    }
}

pub async fn dsar(a: DsarArgs) -> anyhow::Result<u8> {
    match a.command {
        DsarCommand::Start(a) => start(a).await,
        DsarCommand::Status(a) => status(a).await,
        DsarCommand::Export(a) => export(a).await,
        DsarCommand::Verify(a) => verify(a).await,
        DsarCommand::Chain(a) => chain(a).await,
    }
}

/// One line per store, the sweep, retained items.
pub fn print_dsar(d: &Dsar) {
    println!(
        "DSAR {}  {} of user {}  {}",
        d.dsar_id,
        kind_name(d),
        d.subject_user_id,
        state_name(d).to_uppercase()
    );
    if !d.waiting_on.is_empty() {
        println!("  waiting on: {}", d.waiting_on);
    }
    let mut rows = Vec::new();
    for s in &d.stores {
        rows.push(vec![
            s.participant.clone(),
            s.store.clone(),
            s.records_affected.to_string(),
            format!("{} ms", s.took_ms),
            s.attempts.to_string(),
            s.detail.clone(),
        ]);
    }
    print!(
        "{}",
        crate::table::render(
            &["participant", "store", "count", "took", "attempts", "what"],
            &rows
        )
    );
    if d.swept {
        println!(
            "  sweep: {} ({} checks)",
            if d.sweep_clean {
                "CLEAN"
            } else {
                "RESIDUE FOUND"
            },
            d.sweep.len()
        );
        for c in &d.sweep {
            println!("    {:<28} {:>6}  {}", c.store, c.count, c.detail);
        }
        for r in &d.residue {
            println!("    residue: {r}");
        }
    }
    for r in &d.retained {
        println!(
            "  retained: {} {} ({}), kept {}: {}",
            r.count,
            r.store,
            r.fields_kept,
            retention(r.retain_days),
            r.basis
        );
    }
    if !d.error.is_empty() {
        println!("  error: {}", d.error);
    }
    if !d.audit_record_id.is_empty() {
        println!(
            "  audit record: {} (sha256 {})",
            d.audit_record_id, d.audit_hash
        );
    }
    if !d.export_url.is_empty() {
        println!(
            "  archive: presigned URL valid until {} ms (shopstream dsar export {} --out FILE)",
            d.export_url_expires_at_ms, d.dsar_id
        );
    }
}

/// A retention period: days, or no fixed term (0: kept while it serves its
/// purpose, e.g. a product picture).
pub fn retention(days: u32) -> String {
    match days {
        0 => "with no fixed term".to_string(),
        d => format!("{d} days"),
    }
}

fn save_certificate(d: &Dsar, path: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        !d.certificate_jws.is_empty(),
        "DSAR {} has no certificate (it is {})",
        d.dsar_id,
        state_name(d)
    );
    std::fs::write(path, &d.certificate_jws)
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!("certificate saved to {}", path.display());
    Ok(())
}

async fn start(a: StartArgs) -> anyhow::Result<u8> {
    let c = connect(&a.common)?;
    let kind = match a.kind {
        KindArg::Erase => Kind::Erase,
        KindArg::Export => Kind::Export,
    };
    let d = match c
        .start(
            &a.common.tenant,
            &a.user,
            kind,
            &a.requested_by,
            &a.idempotency_key,
        )
        .await
    {
        Ok(d) => d,
        Err(e) => return Ok(fail(e)),
    };
    if kind_name(&d) != kind.as_str() {
        eprintln!(
            "a {} of this user is already running: this request joined DSAR {}",
            kind_name(&d),
            d.dsar_id
        );
    }
    if a.no_wait {
        if a.common.json {
            println!(
                "{}",
                serde_json::json!({"dsar_id": d.dsar_id, "state": state_name(&d)})
            );
        } else {
            println!(
                "DSAR {} started ({}); follow it with: shopstream dsar status {}",
                d.dsar_id,
                state_name(&d),
                d.dsar_id
            );
        }
        return Ok(exit::OK);
    }
    let pb = ProgressBar::new_spinner();
    pb.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}").expect("template"),
    );
    pb.enable_steady_tick(Duration::from_millis(120));
    let done = c
        .wait(
            &a.common.tenant,
            &d.dsar_id,
            Duration::from_secs(a.timeout_s),
            |d| {
                let finished = d
                    .stores
                    .iter()
                    .filter(|s| s.state == 3)
                    .map(|s| &s.participant)
                    .collect::<std::collections::BTreeSet<_>>();
                let mut msg = format!(
                    "{} {}: {} participants done",
                    kind_name(d),
                    state_name(d),
                    finished.len()
                );
                if d.swept {
                    msg.push_str(if d.sweep_clean {
                        ", sweep clean"
                    } else {
                        ", sweep found residue"
                    });
                }
                if !d.waiting_on.is_empty() {
                    msg.push_str(&format!(" — waiting on {}", d.waiting_on));
                }
                pb.set_message(msg);
            },
        )
        .await;
    pb.finish_and_clear();
    let d = match done {
        Ok(d) => d,
        Err(e) => return Ok(fail(e)),
    };
    report(&d, a.common.json, a.certificate.as_deref())
}

fn report(d: &Dsar, json: bool, certificate: Option<&Path>) -> anyhow::Result<u8> {
    if json {
        println!("{}", serde_json::to_string_pretty(&dsar_json(d))?);
    } else {
        print_dsar(d);
    }
    if let Some(p) = certificate {
        save_certificate(d, p)?;
    }
    Ok(if state_name(d) == "failed" {
        exit::FAILED
    } else {
        exit::OK
    })
}

/// A DSAR as JSON for scripts.
pub fn dsar_json(d: &Dsar) -> serde_json::Value {
    serde_json::json!({
        "dsar_id": d.dsar_id,
        "subject_user_id": d.subject_user_id,
        "kind": kind_name(d),
        "state": state_name(d),
        "waiting_on": d.waiting_on,
        "stores": d.stores.iter().map(|s| serde_json::json!({
            "participant": s.participant, "store": s.store, "count": s.records_affected,
            "detail": s.detail, "took_ms": s.took_ms, "attempts": s.attempts,
        })).collect::<Vec<_>>(),
        "sweep": if d.swept { serde_json::json!({
            "clean": d.sweep_clean,
            "checks": d.sweep.iter().map(|c| serde_json::json!({"store": c.store, "count": c.count, "detail": c.detail})).collect::<Vec<_>>(),
            "residue": d.residue,
        }) } else { serde_json::Value::Null },
        "retained": d.retained.iter().map(|r| serde_json::json!({
            "store": r.store, "count": r.count, "basis": r.basis, "fields_kept": r.fields_kept, "retain_days": r.retain_days,
        })).collect::<Vec<_>>(),
        "error": d.error,
        "audit_seq": d.audit_seq,
        "audit_hash": d.audit_hash,
        "certificate_jws": d.certificate_jws,
        "export_url": d.export_url,
        "created_at_ms": d.created_at_ms,
        "completed_at_ms": d.completed_at_ms,
    })
}

async fn status(a: StatusArgs) -> anyhow::Result<u8> {
    let c = connect(&a.common)?;
    match c.get(&a.common.tenant, &a.id).await {
        Ok(d) => {
            let code = report(&d, a.common.json, a.certificate.as_deref())?;
            Ok(if is_terminal(&d) { code } else { exit::OK })
        }
        Err(e) => Ok(fail(e)),
    }
}

async fn export(a: ExportArgs) -> anyhow::Result<u8> {
    let c = connect(&a.common)?;
    let d = match c.get(&a.common.tenant, &a.id).await {
        Ok(d) => d,
        Err(e) => return Ok(fail(e)),
    };
    if kind_name(&d) != "export" || d.export_url.is_empty() {
        eprintln!(
            "error: DSAR {} is {} {}, not a completed export",
            d.dsar_id,
            kind_name(&d),
            state_name(&d)
        );
        return Ok(exit::FAILED);
    }
    let bytes = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?
        .get(&d.export_url)
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    std::fs::write(&a.out, &bytes).with_context(|| format!("writing {}", a.out.display()))?;
    let mut files = Vec::new();
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
    for e in tar.entries()? {
        let e = e?;
        files.push((e.path()?.display().to_string(), e.size()));
    }
    if a.common.json {
        println!(
            "{}",
            serde_json::json!({
                "file": a.out, "bytes": bytes.len(),
                "entries": files.iter().map(|(p, s)| serde_json::json!({"path": p, "bytes": s})).collect::<Vec<_>>(),
            })
        );
    } else {
        println!(
            "{} ({} bytes, {} files):",
            a.out.display(),
            bytes.len(),
            files.len()
        );
        for (p, s) in files {
            println!("  {s:>9}  {p}");
        }
    }
    Ok(exit::OK)
}

/// A chain source: a directory of `<seq>.jws` files or compliance over HTTP.
enum ChainSource {
    Dir(PathBuf),
    Remote(Box<Compliance>),
}

async fn verify(a: VerifyArgs) -> anyhow::Result<u8> {
    let jws = std::fs::read_to_string(&a.file)
        .with_context(|| format!("reading {}", a.file.display()))?;
    let (grpc, http) = urls(&a.common)?;
    let remote = || Compliance::new(&grpc, &http);
    let keys: Jwks = match &a.jwks {
        Some(src) if src.starts_with("http://") || src.starts_with("https://") => {
            reqwest::get(src)
                .await
                .with_context(|| format!("fetching {src}"))?
                .json()
                .await?
        }
        Some(file) => {
            serde_json::from_slice(&std::fs::read(file).with_context(|| format!("reading {file}"))?)
                .with_context(|| format!("{file} is not a JWK set"))?
        }
        None => match remote()?.jwks().await {
            Ok(k) => k,
            Err(e) => return Ok(fail(e)),
        },
    };
    let source = match &a.chain {
        Some(s) if Path::new(s).is_dir() => ChainSource::Dir(PathBuf::from(s)),
        Some(s) => ChainSource::Remote(Box::new(Compliance::new(&grpc, s)?)),
        None => ChainSource::Remote(Box::new(remote()?)),
    };
    // The chain up to the certified record, fetched first (verify is sync).
    let claimed = domain::jws_payload(&jws)
        .and_then(|p| p["audit_seq"].as_u64())
        .unwrap_or(0);
    let mut records = std::collections::HashMap::new();
    for seq in 0..=claimed {
        let bytes = match &source {
            ChainSource::Dir(d) => std::fs::read(d.join(format!("{seq}.jws"))).ok(),
            ChainSource::Remote(c) => match c.record(seq).await {
                Ok(b) => b,
                Err(e) => return Ok(fail(e)),
            },
        };
        if let Some(b) = bytes {
            records.insert(seq, b);
        }
    }
    let subject = a.subject.map(|u| (a.common.tenant.as_str(), u));
    let (cert, checks) =
        domain::verify_certificate(&jws, &keys, &mut |s| records.get(&s).cloned(), subject);
    let ok = checks.iter().all(|c| c.ok);
    if a.common.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "valid": ok, "checks": checks, "certificate": cert,
            }))?
        );
    } else {
        for c in &checks {
            println!(
                "  {} {:<22} {}",
                if c.ok { "PASS" } else { "FAIL" },
                c.name,
                c.detail
            );
        }
        if let Some(c) = &cert {
            println!(
                "certificate: {} of DSAR {} (tenant {}), subject {}…, {} stores, {} retained, sweep {}",
                c.kind.as_str(),
                c.dsar_id,
                c.tenant,
                &c.subject_hash[..16.min(c.subject_hash.len())],
                c.stores.len(),
                c.retained.len(),
                match &c.sweep {
                    Some(s) if s.clean => "clean",
                    Some(_) => "NOT clean",
                    None => "none (export)",
                }
            );
        }
        println!("{}", if ok { "VALID" } else { "INVALID" });
    }
    Ok(if ok { exit::OK } else { exit::FAILED })
}

async fn chain(a: ChainArgs) -> anyhow::Result<u8> {
    let c = connect(&a.common)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let keys = match c.jwks().await {
        Ok(k) => k,
        Err(e) => return Ok(fail(e)),
    };
    std::fs::write(a.out.join("jwks.json"), serde_json::to_vec_pretty(&keys)?)?;
    let seqs = match c.chain().await {
        Ok(s) => s,
        Err(e) => return Ok(fail(e)),
    };
    for &seq in &seqs {
        if let Some(b) = c.record(seq).await.map_err(|e| anyhow::anyhow!("{e}"))? {
            std::fs::write(a.out.join(format!("{seq}.jws")), b)?;
        }
    }
    if a.common.json {
        println!(
            "{}",
            serde_json::json!({"dir": a.out, "records": seqs.len(), "keys": keys.keys.len()})
        );
    } else {
        println!(
            "{} records and the key set saved to {}",
            seqs.len(),
            a.out.display()
        );
    }
    Ok(exit::OK)
}
