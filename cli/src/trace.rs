//! `shopstream trace ORDER_ID | TRACE_ID`: one order's life as a waterfall,
//! read from the stack's trace collector (`serve otel`,
//! services/runtime/src/otel.rs): the gateway request, the saga's steps and
//! their attempts, the gRPC calls they make, the outbox events and the
//! consumers that handled them.

use std::time::{Duration, Instant};

use clap::Args;
use shopstream_dash::{Trace, waterfall};
use shopstream_platform::config::{Ports, service_addrs};
use shopstream_runtime::otel::is_trace_id;

use crate::exit;

#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 ok, 1 no trace for that id, 4 the collector is not running.\n\n\
    The collector keeps the newest traces (5,000 by default, for 30 minutes); \
    services export their spans every second, so a request shows a moment after it ends."
)]
pub struct TraceArgs {
    /// An order id (every trace that touched the order) or a trace id (32 hex digits).
    id: String,
    /// Wait up to this many seconds for the trace to appear and stop growing
    /// (spans arrive from each service within a second or two of finishing).
    #[arg(long, default_value_t = 0)]
    wait: u64,
    /// Width of the waterfall in columns (default: the terminal's, else 120).
    #[arg(long)]
    width: Option<u16>,
    /// The collector's HTTP base URL (default: this stack's `otel`).
    #[arg(long, env = "SHOPSTREAM_OTEL_URL")]
    url: Option<String>,
    /// Print JSON: each trace's spans in causal order, with depth and offsets.
    #[arg(long)]
    json: bool,
}

/// The collector's base URL on this stack's ports.
pub fn collector_url(url: Option<&str>) -> anyhow::Result<String> {
    Ok(match url {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => {
            let ports = Ports::from_env(Ports::DEV)?;
            let (http, _) = service_addrs("otel", ports.services).expect("otel is a service");
            format!("http://{http}")
        }
    })
}

enum Fetch {
    Found(Vec<Trace>),
    Missing(String),
}

async fn fetch(client: &reqwest::Client, base: &str, id: &str) -> Result<Fetch, reqwest::Error> {
    let by_trace = is_trace_id(id);
    let url = if by_trace {
        format!("{base}/v1/traces/{}", id.to_ascii_lowercase())
    } else {
        format!("{base}/v1/orders/{id}")
    };
    let resp = client.get(url).send().await?;
    if resp.status() == reqwest::StatusCode::NOT_FOUND {
        let what = if by_trace { "trace" } else { "order" };
        return Ok(Fetch::Missing(format!(
            "the collector holds no trace for {what} {id}"
        )));
    }
    let resp = resp.error_for_status()?;
    Ok(Fetch::Found(if by_trace {
        vec![resp.json::<Trace>().await?]
    } else {
        #[derive(serde::Deserialize)]
        struct OrderTraces {
            traces: Vec<Trace>,
        }
        resp.json::<OrderTraces>().await?.traces
    }))
}

pub async fn trace(args: TraceArgs) -> anyhow::Result<u8> {
    let base = collector_url(args.url.as_deref())?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(args.wait);
    // Until the deadline: wait for the trace to appear, then until its span
    // count holds still for two export periods.
    let mut last: Option<(usize, Instant)> = None;
    let traces = loop {
        let got = match fetch(&client, &base, &args.id).await {
            Ok(f) => f,
            Err(e) if e.is_connect() || e.is_timeout() => {
                eprintln!(
                    "error: the trace collector is not reachable at {base} ({e}); start the stack: shopstream up"
                );
                return Ok(exit::NOT_READY);
            }
            Err(e) => return Err(e.into()),
        };
        let now = Instant::now();
        match got {
            Fetch::Missing(why) if now >= deadline => {
                eprintln!(
                    "error: {why} (it keeps the newest traces for a limited time; ids are order ids or 32-hex-digit trace ids)"
                );
                return Ok(exit::FAILED);
            }
            Fetch::Missing(_) => {}
            Fetch::Found(traces) => {
                let spans: usize = traces.iter().map(|t| t.spans.len()).sum();
                let settled = match last {
                    Some((n, since)) if n == spans => now.duration_since(since) >= SETTLED,
                    _ => {
                        last = Some((spans, now));
                        false
                    }
                };
                if settled || now >= deadline {
                    break traces;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    if args.json {
        let out: Vec<serde_json::Value> = traces
            .iter()
            .map(|t| {
                serde_json::json!({
                    "trace_id": t.trace_id,
                    "spans": waterfall::rows(t),
                })
            })
            .collect();
        let doc = if is_trace_id(&args.id) {
            serde_json::json!({ "trace_id": args.id.to_ascii_lowercase(), "traces": out })
        } else {
            serde_json::json!({ "order_id": args.id, "traces": out })
        };
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(exit::OK);
    }
    let width = args.width.map_or_else(terminal_width, usize::from);
    for (i, t) in traces.iter().enumerate() {
        if i > 0 {
            println!();
        }
        for line in waterfall::lines(t, width) {
            println!("{line}");
        }
    }
    Ok(exit::OK)
}

/// How long a trace's span count must hold still before `--wait` prints it:
/// two of the services' export periods.
const SETTLED: Duration = Duration::from_secs(2);

fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(120)
}
