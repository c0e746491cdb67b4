//! `shopstream deploy aws --plan | --apply | --destroy`: Terraform over the
//! layers in `infra/`, in order, with the state and variables each needs.
//!
//! It refuses before running anything when Terraform or AWS credentials are
//! missing, when a layer's required value is not given, and, for `--apply`
//! and `--destroy`, without `--yes` (and for `--apply`, without a budget for
//! the AWS Budgets alarm). Tests drive it with a stand-in `terraform` on
//! PATH: nothing here has ever been applied to an AWS account.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use clap::{Args, Subcommand};

use crate::exit;

#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(subcommand)]
    target: Target,
}

#[derive(Debug, Subcommand)]
enum Target {
    /// The AWS deployment in infra/ (ECS Fargate, RDS, ElastiCache, MSK
    /// Serverless, OpenSearch, S3): plan it, apply it, or destroy it.
    ///
    /// Layers run in order (00-bootstrap, 10-network, 20-data, 30-compute,
    /// 40-guardrails; destroy in reverse, never the state bucket). Without
    /// infra/backend.hcl, --apply applies 00-bootstrap first and writes that
    /// file from its outputs. Needs terraform and AWS credentials (environment,
    /// profile or ~/.aws); --apply needs --yes and --budget-usd.
    Aws(AwsArgs),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("action").required(true).args(["plan", "apply", "destroy"])))]
pub struct AwsArgs {
    /// Show what would change (terraform plan); changes nothing.
    #[arg(long)]
    plan: bool,
    /// Create or update the deployment (needs --yes and --budget-usd).
    #[arg(long)]
    apply: bool,
    /// Delete the deployment, layers in reverse (needs --yes); the state
    /// bucket (00-bootstrap) is kept.
    #[arg(long)]
    destroy: bool,
    /// Confirm --apply or --destroy: they change a real AWS account and cost money.
    #[arg(long)]
    yes: bool,
    /// Monthly budget in US dollars for the AWS Budgets alarm (infra/README.md
    /// estimates the demo at ~$940 a month).
    #[arg(long, value_name = "USD")]
    budget_usd: Option<u32>,
    /// Who gets the budget alarms (repeat for more).
    #[arg(long = "alert-email", value_name = "ADDRESS")]
    alert_emails: Vec<String>,
    /// The image tag in the deployment's ECR repository (30-compute).
    #[arg(long)]
    image_tag: Option<String>,
    /// ACM certificate for the load balancer's HTTPS listener (30-compute).
    #[arg(long, value_name = "ARN")]
    certificate_arn: Option<String>,
    /// Origins allowed to use presigned S3 URLs from a browser (20-data; repeat for more).
    #[arg(long = "public-origin", value_name = "URL")]
    public_origins: Vec<String>,
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    region: String,
    /// Prefix of every resource name.
    #[arg(long, default_value = "shopstream-demo")]
    name_prefix: String,
    /// Only this layer (e.g. 30-compute).
    #[arg(long)]
    layer: Option<String>,
    /// The Terraform root [default: infra/ of the checkout, found from here upwards].
    #[arg(long)]
    infra_dir: Option<PathBuf>,
    /// Print a summary of what ran as JSON at the end.
    #[arg(long)]
    json: bool,
}

/// The layers, in apply order.
pub const LAYERS: [&str; 5] = [
    "00-bootstrap",
    "10-network",
    "20-data",
    "30-compute",
    "40-guardrails",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Plan,
    Apply,
    Destroy,
}

/// Is there something the AWS provider will find credentials in?
/// (Environment keys, a profile, web identity, a container role, or ~/.aws.)
pub fn aws_credentials_present(env: &dyn Fn(&str) -> Option<String>, home: Option<&Path>) -> bool {
    let set = |k: &str| env(k).is_some_and(|v| !v.is_empty());
    if set("AWS_ACCESS_KEY_ID") && set("AWS_SECRET_ACCESS_KEY") {
        return true;
    }
    if set("AWS_WEB_IDENTITY_TOKEN_FILE")
        || set("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        || set("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
    {
        return true;
    }
    let files = [
        env("AWS_SHARED_CREDENTIALS_FILE").map(PathBuf::from),
        env("AWS_CONFIG_FILE").map(PathBuf::from),
        home.map(|h| h.join(".aws/credentials")),
        home.map(|h| h.join(".aws/config")),
    ];
    files.into_iter().flatten().any(|f| f.is_file())
}

/// `bucket = "…"` from backend.hcl.
pub fn backend_bucket(hcl: &str) -> Option<String> {
    hcl.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == "bucket").then(|| v.trim().trim_matches('"').to_string())
    })
}

/// What a layer needs that only the user can give.
fn required(layer: &str, a: &AwsArgs, action: Action) -> Vec<&'static str> {
    let mut missing = Vec::new();
    match layer {
        "30-compute" => {
            if a.image_tag.is_none() {
                missing.push("--image-tag TAG (the image in the deployment's ECR repository)");
            }
            if a.certificate_arn.is_none() {
                missing.push("--certificate-arn ARN (HTTPS on the load balancer)");
            }
        }
        "40-guardrails" => {
            if a.alert_emails.is_empty() {
                missing.push("--alert-email ADDRESS (who gets the budget alarms)");
            }
            if action == Action::Apply && a.budget_usd.is_none() {
                missing.push("--budget-usd N (the monthly AWS Budgets alarm; nothing is applied without one)");
            }
        }
        _ => {}
    }
    missing
}

/// `-var` arguments for a layer.
fn vars(layer: &str, a: &AwsArgs, state_bucket: Option<&str>) -> Vec<String> {
    let mut v = vec![
        format!("region={}", a.region),
        format!("name_prefix={}", a.name_prefix),
    ];
    if layer != "00-bootstrap" && layer != "10-network" {
        v.push(format!("state_bucket={}", state_bucket.unwrap_or_default()));
    }
    match layer {
        "20-data" if !a.public_origins.is_empty() => {
            v.push(format!(
                "public_origins={}",
                serde_json::to_string(&a.public_origins).unwrap_or_default()
            ));
        }
        "30-compute" => {
            v.push(format!(
                "image_tag={}",
                a.image_tag.clone().unwrap_or_default()
            ));
            v.push(format!(
                "certificate_arn={}",
                a.certificate_arn.clone().unwrap_or_default()
            ));
        }
        "40-guardrails" => {
            if let Some(b) = a.budget_usd {
                v.push(format!("monthly_budget_usd={b}"));
            }
            v.push(format!(
                "alert_emails={}",
                serde_json::to_string(&a.alert_emails).unwrap_or_default()
            ));
        }
        _ => {}
    }
    v.into_iter()
        .flat_map(|x| ["-var".to_string(), x])
        .collect()
}

pub async fn run(args: DeployArgs) -> anyhow::Result<u8> {
    let Target::Aws(a) = args.target;
    tokio::task::spawn_blocking(move || aws(a)).await?
}

fn refuse(code: u8, lines: &[String]) -> anyhow::Result<u8> {
    eprintln!("error: deploy aws refuses to run; nothing was planned or applied:");
    for l in lines {
        eprintln!("  - {l}");
    }
    Ok(code)
}

fn aws(a: AwsArgs) -> anyhow::Result<u8> {
    let action = if a.apply {
        Action::Apply
    } else if a.destroy {
        Action::Destroy
    } else {
        Action::Plan
    };
    let layers: Vec<&str> = match &a.layer {
        Some(l) => match LAYERS.iter().find(|x| *x == l) {
            Some(x) => vec![*x],
            None => {
                eprintln!("error: no layer {l:?}; one of: {}", LAYERS.join(", "));
                return Ok(2);
            }
        },
        None if action == Action::Destroy => LAYERS[1..].iter().rev().copied().collect(),
        None => LAYERS.to_vec(),
    };

    // Everything missing, said at once.
    let mut prereqs = Vec::new();
    let terraform = shopstream_runtime::prereq::which("terraform");
    if terraform.is_none() {
        prereqs.push("terraform is not on PATH: install Terraform ≥ 1.10 (HashiCorp's apt repository or release archive)".to_string());
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    if !aws_credentials_present(&|k| std::env::var(k).ok(), home.as_deref()) {
        prereqs.push("no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with ~/.aws/config (`aws configure` or `aws sso login`)".to_string());
    }
    let infra = match a.infra_dir.clone().or_else(|| {
        let here = std::env::current_dir().ok()?;
        here.ancestors()
            .map(|d| d.join("infra"))
            .find(|d| d.join("00-bootstrap").is_dir())
    }) {
        Some(d) if d.join("00-bootstrap").is_dir() => std::path::absolute(&d).unwrap_or(d),
        _ => {
            prereqs.push("no infra/ with the Terraform layers here or above: run this in a Shopstream checkout, or pass --infra-dir".to_string());
            PathBuf::new()
        }
    };
    let mut usage = Vec::new();
    if matches!(action, Action::Apply | Action::Destroy) && !a.yes {
        usage.push(format!(
            "--yes: --{} changes a real AWS account and costs money; add --yes to confirm (try --plan first)",
            if action == Action::Apply { "apply" } else { "destroy" }
        ));
    }
    if action == Action::Apply && a.budget_usd.is_none() && !layers.contains(&"40-guardrails") {
        usage.push("--budget-usd N: nothing is applied without a budget alarm".to_string());
    }
    for layer in &layers {
        usage.extend(required(layer, &a, action).into_iter().map(String::from));
    }
    if !prereqs.is_empty() || !usage.is_empty() {
        let code = if prereqs.is_empty() {
            2
        } else {
            exit::MISSING_PREREQ
        };
        return refuse(code, &[prereqs, usage].concat());
    }
    let terraform = terraform.unwrap_or_default();

    let backend = infra.join("backend.hcl");
    let mut state_bucket = std::fs::read_to_string(&backend)
        .ok()
        .and_then(|t| backend_bucket(&t));
    let mut ran = Vec::new();
    let started = Instant::now();
    for layer in layers {
        let bootstrap = layer == "00-bootstrap";
        if !bootstrap && state_bucket.is_none() {
            if action == Action::Plan {
                eprintln!(
                    "deploy: {layer} and later layers keep their state in the bucket 00-bootstrap creates; \
                     plan them once it exists (`--apply` makes it and writes {}), or write that file from infra/backend.hcl.example",
                    backend.display()
                );
                break;
            }
            eprintln!(
                "error: {} is missing: apply 00-bootstrap first (`--apply --layer 00-bootstrap`)",
                backend.display()
            );
            return Ok(exit::MISSING_PREREQ);
        }
        let dir = infra.join(layer);
        let tf = |args: &[String]| -> anyhow::Result<bool> {
            eprintln!(
                "deploy: terraform -chdir={} {}",
                dir.display(),
                args.join(" ")
            );
            let status = Command::new(&terraform)
                .arg(format!("-chdir={}", dir.display()))
                .args(args)
                .env("TF_IN_AUTOMATION", "1")
                .stdin(Stdio::null())
                .status()?;
            Ok(status.success())
        };
        let mut init = vec!["init".to_string(), "-input=false".to_string()];
        if !bootstrap {
            init.push(format!("-backend-config={}", backend.display()));
        }
        let v = vars(layer, &a, state_bucket.as_deref());
        let with = |head: &[&str], extra: &[String]| -> Vec<String> {
            head.iter()
                .map(|s| s.to_string())
                .chain(["-input=false".to_string()])
                .chain(v.iter().cloned())
                .chain(extra.iter().cloned())
                .collect()
        };
        let unprotect = ["-var".to_string(), "deletion_protection=false".to_string()];
        let steps: Vec<Vec<String>> = match action {
            Action::Plan => vec![init, with(&["plan"], &[])],
            Action::Apply => vec![init, with(&["apply", "-auto-approve"], &[])],
            // The database and the load balancer are protected: lift that first.
            Action::Destroy if matches!(layer, "20-data" | "30-compute") => vec![
                init,
                with(&["apply", "-auto-approve"], &unprotect),
                with(&["destroy", "-auto-approve"], &unprotect),
            ],
            Action::Destroy => vec![init, with(&["destroy", "-auto-approve"], &[])],
        };
        for step in steps {
            if !tf(&step)? {
                eprintln!(
                    "error: terraform {} failed in {layer}; later layers were not touched",
                    step[0]
                );
                return Ok(exit::FAILED);
            }
        }
        if bootstrap && action == Action::Apply && !backend.exists() {
            let out = Command::new(&terraform)
                .arg(format!("-chdir={}", dir.display()))
                .args(["output", "-json"])
                .stdin(Stdio::null())
                .output()?;
            let outputs: serde_json::Value =
                serde_json::from_slice(&out.stdout).unwrap_or_default();
            let value = |k: &str| outputs[k]["value"].as_str().map(String::from);
            match (value("state_bucket"), value("state_kms_key_arn")) {
                (Some(bucket), Some(key)) => {
                    std::fs::write(
                        &backend,
                        format!(
                            "# Written by `shopstream deploy aws` from 00-bootstrap's outputs.\n\
                             bucket       = \"{bucket}\"\nregion       = \"{}\"\nkms_key_id   = \"{key}\"\n\
                             encrypt      = true\nuse_lockfile = true\n",
                            a.region
                        ),
                    )?;
                    eprintln!("deploy: wrote {}", backend.display());
                    state_bucket = Some(bucket);
                }
                _ => {
                    eprintln!(
                        "error: 00-bootstrap has no state_bucket/state_kms_key_arn outputs; write {} by hand",
                        backend.display()
                    );
                    return Ok(exit::FAILED);
                }
            }
        }
        ran.push(layer);
    }
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "action": format!("{action:?}").to_lowercase(),
                "layers": ran,
                "seconds": started.elapsed().as_secs_f64(),
            })
        );
    } else {
        eprintln!(
            "deploy: {:?} done for {} in {:.0?}",
            action,
            ran.join(", "),
            started.elapsed()
        );
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_keys_roles_or_files() {
        let none = |_: &str| None;
        let dir = std::env::temp_dir().join(format!("deploy-home-{:x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(!aws_credentials_present(&none, Some(&dir)));
        let keys = |k: &str| {
            matches!(k, "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY").then(|| "x".to_string())
        };
        assert!(aws_credentials_present(&keys, None));
        let half = |k: &str| (k == "AWS_ACCESS_KEY_ID").then(|| "x".to_string());
        assert!(
            !aws_credentials_present(&half, Some(&dir)),
            "a key id alone is not credentials"
        );
        std::fs::create_dir_all(dir.join(".aws")).unwrap();
        std::fs::write(dir.join(".aws/config"), "[default]\nregion = us-east-1\n").unwrap();
        assert!(aws_credentials_present(&none, Some(&dir)));
    }

    #[test]
    fn the_state_bucket_is_read_from_backend_hcl() {
        let example = include_str!("../../infra/backend.hcl.example");
        assert_eq!(
            backend_bucket(example).as_deref(),
            Some("shopstream-demo-tfstate-123456789012")
        );
        assert_eq!(backend_bucket("region = \"x\"\n"), None);
    }

    #[test]
    fn the_layers_are_the_folders_of_infra() {
        let infra = Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra");
        for layer in LAYERS {
            assert!(infra.join(layer).join("main.tf").is_file(), "{layer}");
        }
    }
}
