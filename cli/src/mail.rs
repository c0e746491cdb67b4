//! `shopstream mail list | show ID`: what mail-sim received (the e-mails the
//! system sent in the native runtime). A thin client of mail-sim's HTTP API.

use std::time::Duration;

use clap::{Args, Subcommand};
use shopstream_platform::config::{Ports, service_addrs};

use crate::exit;

#[derive(Debug, Args)]
pub struct MailArgs {
    #[command(subcommand)]
    command: MailCommand,
    /// mail-sim's HTTP base URL (default: this stack's mail-sim).
    #[arg(long, global = true)]
    url: Option<String>,
    /// Print JSON.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum MailCommand {
    /// Every message mail-sim kept, newest first.
    #[command(after_help = "Exit codes: 0 ok, 4 mail-sim not reachable.")]
    List,
    /// One message, headers and body.
    #[command(after_help = "Exit codes: 0 ok, 1 no such message, 4 mail-sim not reachable.")]
    Show {
        /// The message id `mail list` prints.
        id: String,
    },
}

pub async fn mail(args: MailArgs) -> anyhow::Result<u8> {
    let base = match &args.url {
        Some(u) => u.clone(),
        None => {
            let ports = Ports::from_env(Ports::DEV)?;
            let (http, _) =
                service_addrs("mail-sim", ports.services).expect("mail-sim is a service");
            format!("http://{http}")
        }
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let path = match &args.command {
        MailCommand::List => "/messages".to_string(),
        MailCommand::Show { id } => format!("/messages/{id}"),
    };
    let resp = match client.get(format!("{base}{path}")).send().await {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "error: cannot reach mail-sim at {base} ({e}); start the stack: shopstream up"
            );
            return Ok(exit::NOT_READY);
        }
    };
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    if !status.is_success() {
        eprintln!(
            "error: {}",
            body["detail"]
                .as_str()
                .unwrap_or("mail-sim refused the request")
        );
        return Ok(exit::FAILED);
    }
    if args.json {
        println!("{body}");
        return Ok(exit::OK);
    }
    match args.command {
        MailCommand::List => {
            let messages = body["messages"].as_array().cloned().unwrap_or_default();
            if messages.is_empty() {
                println!("no messages");
            }
            for m in messages {
                let to: Vec<&str> = m["to"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|t| t.as_str()).collect())
                    .unwrap_or_default();
                println!(
                    "{}  {:<28} {}",
                    m["id"].as_str().unwrap_or_default(),
                    to.join(", "),
                    m["subject"].as_str().unwrap_or_default()
                );
            }
        }
        MailCommand::Show { .. } => {
            println!("from: {}", body["from"].as_str().unwrap_or_default());
            let to: Vec<&str> = body["to"]
                .as_array()
                .map(|a| a.iter().filter_map(|t| t.as_str()).collect())
                .unwrap_or_default();
            println!("to:   {}\n", to.join(", "));
            print!("{}", body["raw"].as_str().unwrap_or_default());
        }
    }
    Ok(exit::OK)
}
