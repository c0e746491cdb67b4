//! `shopstream dash`: the terminal dashboard of live event flow. The
//! rendering, state and keys live in the `shopstream-dash` crate; this module
//! is its data source over the running stack: process state, CPU and memory
//! from one `/proc` scan per refresh, every service's `/metrics`, the trace
//! collector's newest traces and a running scenario's progress file.

use std::{
    collections::HashMap,
    io::Write as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use clap::Args;
use shopstream_dash::{App, ComponentInput, ScenarioProgress, Source, Tick, Trace, TraceSummary};
use shopstream_platform::config::Ports;
use shopstream_runtime::{Kind, Stack, process::ProcTable};

use crate::{exit, scenario, trace::collector_url};

#[derive(Debug, Args)]
#[command(
    after_help = "Keys: ↑/↓ select a trace, Enter opens its waterfall, / filters, ? help, q or Ctrl-C quits.\n\n\
    Exit codes: 0 ok; with --once, 4 when nothing is running."
)]
pub struct DashArgs {
    /// Refresh every this many milliseconds (at least 250).
    #[arg(long, default_value_t = 1000)]
    refresh_ms: u64,
    /// Print one snapshot and exit (two readings one second apart, so rates are real).
    #[arg(long)]
    once: bool,
    /// With --once: the snapshot's data as JSON instead of the drawn frame.
    #[arg(long, requires = "once")]
    json: bool,
    /// With --once: the frame's size, COLUMNSxROWS.
    #[arg(long, default_value = "120x40", value_parser = parse_size)]
    size: (u16, u16),
    /// Append every drawn frame's text to FILE (for the book).
    #[arg(long)]
    record: Option<PathBuf>,
    /// The trace collector's HTTP base URL (default: this stack's `otel`).
    #[arg(long, env = "SHOPSTREAM_OTEL_URL")]
    otel_url: Option<String>,
}

fn parse_size(s: &str) -> Result<(u16, u16), String> {
    let (w, h) = s
        .split_once('x')
        .ok_or_else(|| format!("{s:?}: expected COLUMNSxROWS, e.g. 120x40"))?;
    let n = |v: &str| v.parse::<u16>().map_err(|e| format!("{s:?}: {e}"));
    Ok((n(w)?, n(h)?))
}

/// How long one poll may wait for a service's answer.
const CALL_TIMEOUT: Duration = Duration::from_millis(400);
/// A process that is not ready yet counts as starting (not failed) this long.
const STARTING_GRACE: Duration = Duration::from_secs(60);
/// A scenario progress file older than this belongs to a run that ended.
const PROGRESS_STALE: Duration = Duration::from_secs(5);
/// How long a component found ready is taken to stay ready without asking.
const READY_EVERY: Duration = Duration::from_secs(5);
/// Traces asked of the collector per poll.
const TRACES: usize = 50;

/// The stack as the dashboard reads it.
struct StackSource {
    stack: Stack,
    ports: Ports,
    otel: String,
    http: reqwest::Client,
    rt: tokio::runtime::Handle,
    t0: Instant,
    /// CPU seconds per component at the previous poll, for CPU %.
    cpu_before: HashMap<&'static str, (f64, Instant)>,
    /// Components last found ready: their pid and when they were asked.
    ready_at: HashMap<Kind, (u32, Instant)>,
}

impl StackSource {
    async fn poll_async(&mut self) -> Tick {
        let procs = ProcTable::read();
        let now = Instant::now();
        let http = &self.http;
        let ports = self.ports;
        // Readiness: a service answers /readyz; infrastructure accepts a
        // connection. A component found ready is asked again after
        // READY_EVERY (each /readyz runs the service's own checks); one that
        // is not, at every refresh.
        let ready_before = &self.ready_at;
        let readiness = Kind::ALL.map(|kind| {
            let pid = self.stack.running_pid(kind);
            let recent = ready_before
                .get(&kind)
                .is_some_and(|(p, at)| Some(*p) == pid && now.duration_since(*at) < READY_EVERY);
            async move {
                let Some(pid) = pid else {
                    return (kind, None, Ok(()), false);
                };
                if recent {
                    return (kind, Some(pid), Ok(()), false);
                }
                let probe = match kind.service_addrs(&ports) {
                    Some((addr, _)) => get_ok(http, &format!("http://{addr}/readyz")).await,
                    None => tokio::time::timeout(
                        CALL_TIMEOUT,
                        tokio::net::TcpStream::connect(("127.0.0.1", kind.port(&ports))),
                    )
                    .await
                    .map_err(|_| "no answer".to_string())
                    .and_then(|r| r.map(|_| ()).map_err(|e| e.to_string())),
                };
                (kind, Some(pid), probe, true)
            }
        });
        let metrics = Kind::SERVICES.map(|kind| async move {
            let (addr, _) = kind.service_addrs(&ports)?;
            let text = get_text(http, &format!("http://{addr}/metrics"))
                .await
                .ok()?;
            Some((kind.name().to_string(), text))
        });
        let traces_url = format!("{}/v1/traces?limit={TRACES}", self.otel);
        let (readiness, metrics, traces) = tokio::join!(
            futures::future::join_all(readiness),
            futures::future::join_all(metrics),
            async {
                let text = get_text(http, &traces_url).await.ok()?;
                serde_json::from_str::<Vec<TraceSummary>>(&text).ok()
            }
        );
        let mut components = Vec::new();
        for (kind, pid, probe, probed) in readiness {
            let name = kind.name();
            match (pid, &probe) {
                (Some(pid), Ok(())) if probed => {
                    self.ready_at.insert(kind, (pid, now));
                }
                (Some(_), Ok(())) => {}
                _ => {
                    self.ready_at.remove(&kind);
                }
            }
            let Some(pid) = pid else {
                components.push(ComponentInput {
                    name: name.into(),
                    running: false,
                    ready: false,
                    error: None,
                    rss_kib: 0,
                    cpu_percent: None,
                });
                continue;
            };
            let cpu_s = procs.tree_cpu_s(pid);
            let cpu_percent =
                self.cpu_before
                    .insert(name, (cpu_s, now))
                    .and_then(|(before, at)| {
                        let wall = now.duration_since(at).as_secs_f64();
                        (wall > 0.0).then(|| ((cpu_s - before) / wall * 100.0).max(0.0))
                    });
            let young = procs.age(pid).is_none_or(|a| a < STARTING_GRACE);
            components.push(ComponentInput {
                name: name.into(),
                running: true,
                ready: probe.is_ok(),
                // Not ready yet is "starting" while the process is young;
                // after that it is a failure, with the reason.
                error: probe.err().filter(|_| !young),
                rss_kib: procs.tree_rss_kib(pid),
                cpu_percent,
            });
        }
        let stack_hint = components.iter().all(|c| !c.running).then(|| {
            format!(
                "nothing is running in {}\nstart it with `shopstream up`",
                self.stack.root().display()
            )
        });
        Tick {
            at_ms: self.t0.elapsed().as_millis() as u64,
            components,
            metrics: metrics.into_iter().flatten().collect(),
            traces: traces.unwrap_or_default(),
            scenario: read_progress(&scenario::progress_path(self.stack.root())),
            stack_hint,
        }
    }
}

impl Source for StackSource {
    fn poll(&mut self) -> Tick {
        let rt = self.rt.clone();
        rt.block_on(self.poll_async())
    }

    fn trace(&mut self, trace_id: &str) -> Result<Trace, String> {
        let url = format!("{}/v1/traces/{trace_id}", self.otel);
        let http = self.http.clone();
        self.rt.block_on(async move {
            let text = get_text(&http, &url).await?;
            serde_json::from_str(&text).map_err(|e| format!("{url}: {e}"))
        })
    }
}

async fn get_text(http: &reqwest::Client, url: &str) -> Result<String, String> {
    let resp = http
        .get(url)
        .timeout(CALL_TIMEOUT)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("{url} answered {}", resp.status()));
    }
    resp.text().await.map_err(|e| e.to_string())
}

async fn get_ok(http: &reqwest::Client, url: &str) -> Result<(), String> {
    get_text(http, url).await.map(|_| ())
}

fn read_progress(path: &Path) -> Option<ScenarioProgress> {
    let fresh = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age < PROGRESS_STALE);
    if !fresh {
        return None;
    }
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

pub async fn dash(state_dir: &Path, args: DashArgs) -> anyhow::Result<u8> {
    let ports = Ports::from_env(Ports::DEV)?;
    let mut source = StackSource {
        stack: Stack::new(state_dir, ports, std::env::current_exe()?).with_services(true),
        ports,
        otel: collector_url(args.otel_url.as_deref())?,
        http: reqwest::Client::new(),
        rt: tokio::runtime::Handle::current(),
        t0: Instant::now(),
        cpu_before: HashMap::new(),
        ready_at: HashMap::new(),
    };
    if args.once {
        let mut app = App::new();
        app.apply(source.poll_async().await);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let tick = source.poll_async().await;
        let nothing_runs = tick.components.iter().all(|c| !c.running);
        app.apply(tick);
        let (w, h) = args.size;
        let frame = shopstream_dash::render_to_string(&app, w, h);
        if let Some(path) = &args.record {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            writeln!(f, "{frame}\n{}", shopstream_dash::RECORD_SEPARATOR)?;
        }
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&shopstream_dash::snapshot_json(&app))?
            );
        } else {
            println!("{frame}");
        }
        return Ok(if nothing_runs {
            exit::NOT_READY
        } else {
            exit::OK
        });
    }
    if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        eprintln!(
            "error: `shopstream dash` needs a terminal; for scripts use `shopstream dash --once [--json]`"
        );
        return Ok(2);
    }
    let refresh = Duration::from_millis(args.refresh_ms);
    let record = args.record.clone();
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        match record {
            Some(path) => {
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?;
                shopstream_dash::run_terminal_recording(source, refresh, Some(&mut f))
            }
            None => shopstream_dash::run_terminal(source, refresh),
        }
    })
    .await??;
    Ok(exit::OK)
}
