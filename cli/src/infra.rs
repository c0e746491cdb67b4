//! `up`, `down`, `status`, `logs`, `doctor`: the native runtime from the shell.

use std::{
    io::IsTerminal,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use shopstream_platform::config::Ports;
use shopstream_runtime::{
    ComponentStatus, Kind, Progress, RestartPolicy, RuntimeRecord, Stack, StackError,
    components::PrepareError, containers::Containers, docker, prereq,
};

use crate::{compose, exit, table};

/// Where the system runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Runtime {
    /// Native processes from the host's own binaries; no Docker.
    Native,
    /// `docker compose` with compose/compose.yaml: everything in containers.
    Compose,
    /// The infrastructure in containers (testcontainers), the services native.
    Testcontainers,
}

impl Runtime {
    fn name(self) -> &'static str {
        match self {
            Runtime::Native => "native",
            Runtime::Compose => "compose",
            Runtime::Testcontainers => "testcontainers",
        }
    }
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Fail instead of installing missing tansu/temporal into the cache.
    #[arg(long)]
    no_install: bool,
    /// Print the final status as JSON (progress still goes to stderr).
    #[arg(long)]
    json: bool,
    /// Stay in the foreground and restart any component that dies (at most 5
    /// times a minute each). Ctrl-C stops watching; the stack keeps running.
    #[arg(long)]
    watch: bool,
    /// Where it runs [default: what this state directory last ran, else native].
    #[arg(long, value_enum, env = "SHOPSTREAM_RUNTIME")]
    runtime: Option<Runtime>,
    /// compose: the `full` profile (adds OpenSearch, ScyllaDB, Jaeger,
    /// Prometheus, Grafana). testcontainers: adds OpenSearch and ScyllaDB and
    /// points search and the feed at them.
    #[arg(long)]
    full: bool,
    /// compose: the compose file [default: compose/compose.yaml here or above].
    #[arg(long, env = "SHOPSTREAM_COMPOSE_FILE")]
    compose_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// Also delete all state: databases, topics, objects, logs.
    #[arg(long)]
    purge: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
    /// Also each component's CPU (its process tree's user + system time, in %
    /// of one core) over this many seconds, measured before anything is probed.
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "2",
          value_parser = cpu_window)]
    cpu: Option<f64>,
}

/// `--cpu`'s window: 0.2 to 60 seconds.
fn cpu_window(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if (0.2..=60.0).contains(&v) {
        Ok(v)
    } else {
        Err("give between 0.2 and 60 seconds".into())
    }
}

/// Each component's CPU, % of one core, over `window_s`: two readings of
/// /proc around a sleep, before anything else touches the components.
async fn cpu_percent(
    stack: &Stack,
    window_s: f64,
) -> std::collections::BTreeMap<&'static str, f64> {
    use shopstream_runtime::process::CpuReading;
    let pids = stack.running_pids();
    let before = CpuReading::of(&pids);
    tokio::time::sleep(Duration::from_secs_f64(window_s)).await;
    let after = CpuReading::of(&pids);
    let elapsed = after.elapsed_since(&before).as_secs_f64();
    after
        .since(&before)
        .into_iter()
        .map(|(name, used)| (name, used / elapsed * 100.0))
        .collect()
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// postgres, redis, kafka, temporal, s3, identity, catalog, inventory, gateway or stripe-sim.
    name: String,
    /// Keep printing new lines as they are written (Ctrl-C to stop).
    #[arg(short, long)]
    follow: bool,
    /// How many trailing lines to print first.
    #[arg(short = 'n', long, default_value_t = 50)]
    lines: usize,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[arg(long)]
    json: bool,
    /// Install the prerequisites that need no root (tansu, temporal) into the cache.
    #[arg(long)]
    fix: bool,
}

fn stack(state_dir: &Path) -> anyhow::Result<Stack> {
    let exe = std::env::current_exe()?;
    let ports = Ports::from_env(Ports::DEV)?;
    Ok(Stack::new(state_dir, ports, exe).with_services(true))
}

/// Install missing self-installable tools, printing what takes time.
fn install_missing(allow: bool) -> Result<(), (u8, String)> {
    for p in prereq::check_all() {
        if p.found() || !p.self_installable {
            continue;
        }
        let needed_by_up = matches!(p.name, "tansu" | "temporal");
        if !needed_by_up {
            continue;
        }
        if !allow {
            return Err((
                exit::MISSING_PREREQ,
                format!("{} not found. Install it with: {}", p.name, p.install),
            ));
        }
        // The installer itself must exist: name it and how to get it.
        let needs = if p.name == "tansu" {
            "cargo"
        } else {
            "python3"
        };
        if let Some(tool) = prereq::check_all()
            .into_iter()
            .find(|t| t.name == needs && !t.found())
        {
            return Err((
                exit::MISSING_PREREQ,
                format!(
                    "{} not found, and installing it needs {needs}, which is missing too. Install {needs} with: {}",
                    p.name, tool.install
                ),
            ));
        }
        let log = prereq::cache_dir()
            .join("logs")
            .join(format!("install-{}.log", p.name));
        let hint = if p.name == "tansu" {
            " (a release build from the crate registry: about 15 minutes on 2 cores, once)"
        } else {
            ""
        };
        eprintln!(
            "installing {}{hint}\n  $ {}\n  log: {}",
            p.name,
            p.install,
            log.display()
        );
        let started = Instant::now();
        prereq::run_install(&p.install, &log).map_err(|e| (exit::MISSING_PREREQ, e))?;
        eprintln!("installed {} in {:.0?}", p.name, started.elapsed());
    }
    Ok(())
}

/// `up --runtime testcontainers`, first half: the infrastructure's
/// containers; the native half follows through [`bring_up`].
async fn containers_up(state_dir: &Path, full: bool) -> anyhow::Result<Result<(), u8>> {
    let root = std::path::absolute(state_dir)?;
    let ports = Ports::from_env(Ports::DEV)?;
    let containers = Containers::new(&root, ports, full);
    let report = |component: &str, what: &str| eprintln!("{component:<9} {what}");
    match containers.up(&report).await {
        Ok(()) => {}
        Err(shopstream_runtime::containers::ContainersError::Docker(p)) => {
            eprintln!("error: {p}");
            return Ok(Err(exit::MISSING_PREREQ));
        }
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(Err(exit::NOT_READY));
        }
    }
    RuntimeRecord {
        runtime: "testcontainers".into(),
        full,
        compose_file: None,
    }
    .write(&root)?;
    let stack = stack(state_dir)?;
    for (kind, env) in containers.service_overrides() {
        stack.set_overrides(kind, env)?;
    }
    Ok(Ok(()))
}

/// What `up` does before it reports: install missing tools (when allowed),
/// start whatever is not running and wait until everything is ready, with
/// progress on stderr. `Ok(Err(code))` means it failed and said why on stderr.
/// `shopstream lab run` boots through this too.
pub async fn bring_up(
    state_dir: &Path,
    allow_install: bool,
) -> anyhow::Result<Result<(Stack, Vec<ComponentStatus>, Duration), u8>> {
    // The testcontainers runtime's broker and Temporal are containers.
    let needs_tools = recorded(state_dir).runtime != "testcontainers";
    if needs_tools
        && let Err((code, msg)) =
            tokio::task::spawn_blocking(move || install_missing(allow_install)).await?
    {
        eprintln!("error: {msg}");
        return Ok(Err(code));
    }
    let stack = stack(state_dir)?;
    let started = Instant::now();
    let reporter = Reporter::new();
    let r = reporter.clone();
    let result = stack.up(Arc::new(move |p| r.report(p))).await;
    reporter.finish();
    match result {
        Ok(statuses) => Ok(Ok((stack, statuses, started.elapsed()))),
        Err(StackError::Prepare {
            kind,
            source: e @ PrepareError::Missing { .. },
        }) => {
            eprintln!("error: {kind}: {e}\n(run `shopstream doctor` to see every prerequisite)");
            Ok(Err(exit::MISSING_PREREQ))
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(Err(exit::NOT_READY))
        }
    }
}

/// The runtime a state directory last ran (native when none is recorded).
fn recorded(state_dir: &Path) -> RuntimeRecord {
    RuntimeRecord::read(&std::path::absolute(state_dir).unwrap_or_else(|_| state_dir.to_path_buf()))
}

pub async fn up(state_dir: &Path, args: UpArgs) -> anyhow::Result<u8> {
    let record = recorded(state_dir);
    let runtime = match (args.runtime, record.runtime.as_str()) {
        (None, "compose") => Runtime::Compose,
        (None, "testcontainers") => Runtime::Testcontainers,
        (None, _) => Runtime::Native,
        (Some(r), was) if was != "native" && r.name() != was => {
            eprintln!(
                "error: {} holds a {was} stack: stop it with `shopstream down` first (or use another --state-dir)",
                state_dir.display()
            );
            return Ok(2);
        }
        (Some(r), _) => r,
    };
    let full = args.full || (args.runtime.is_none() && record.full);
    match runtime {
        Runtime::Native => {}
        Runtime::Compose => {
            let (file, json) = (args.compose_file.or(record.compose_file), args.json);
            let state_dir = state_dir.to_path_buf();
            return tokio::task::spawn_blocking(move || compose::up(&state_dir, file, full, json))
                .await?;
        }
        Runtime::Testcontainers => {
            if let Err(code) = containers_up(state_dir, full).await? {
                return Ok(code);
            }
        }
    }
    let (stack, statuses, elapsed) = match bring_up(state_dir, !args.no_install).await? {
        Ok(up) => up,
        Err(code) => return Ok(code),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&statuses)?);
    } else {
        print!("{}", status_table(&statuses, None));
        println!(
            "\nall {} components ready in {:.1}s, using {}; state in {}",
            statuses.len(),
            elapsed.as_secs_f64(),
            total_pss(&statuses),
            stack.root().display()
        );
        println!("stop with `shopstream down` (add --purge to delete state)");
    }
    if args.watch {
        eprintln!("watching: a component that dies is restarted (Ctrl-C stops watching)");
        let shutdown = shopstream_platform::shutdown::on_signal();
        let r = Reporter { bars: None };
        if let Err(e) = stack
            .supervise(
                RestartPolicy::default(),
                shutdown,
                Arc::new(move |p| r.report(p)),
            )
            .await
        {
            eprintln!("error: {e}");
            return Ok(exit::NOT_READY);
        }
    }
    Ok(exit::OK)
}

pub async fn down(state_dir: &Path, args: DownArgs) -> anyhow::Result<u8> {
    let record = recorded(state_dir);
    if record.runtime == "compose" {
        let state_dir = state_dir.to_path_buf();
        return tokio::task::spawn_blocking(move || {
            compose::down(&state_dir, &record, args.purge, args.json)
        })
        .await?;
    }
    let stack = stack(state_dir)?;
    // The testcontainers runtime: its containers go too (removed with --purge).
    let containers_gone = if record.runtime == "testcontainers" {
        let containers = Containers::new(stack.root(), stack.ports(), record.full);
        match containers.down(args.purge).await {
            Ok(names) => names,
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(exit::FAILED);
            }
        }
    } else {
        Vec::new()
    };
    let before: Vec<_> = Kind::ALL
        .into_iter()
        .filter_map(|k| stack.running_pid(k).map(|p| (k.name(), p)))
        .collect();
    let killed = stack.down(args.purge).await?;
    let still: Vec<_> = before
        .iter()
        .filter(|(_, p)| shopstream_runtime::process::is_alive(*p))
        .collect();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "stopped": before.iter().map(|(n, _)| n).collect::<Vec<_>>(),
                "killed_after_grace": killed,
                "still_running": still.iter().map(|(n, _)| n).collect::<Vec<_>>(),
                "containers": containers_gone,
                "purged": args.purge,
            })
        );
    } else {
        if before.is_empty() && containers_gone.is_empty() {
            println!("nothing was running in {}", stack.root().display());
        }
        for name in &containers_gone {
            let how = if args.purge { "removed" } else { "stopped" };
            println!("{name} (container) {how}");
        }
        for (name, pid) in &before {
            let how = if killed.contains(name) {
                "killed after grace period"
            } else {
                "stopped"
            };
            println!("{name:<9} pid {pid:<8} {how}");
        }
        if args.purge {
            println!("state removed: {}", stack.root().display());
        }
    }
    if still.is_empty() {
        Ok(exit::OK)
    } else {
        eprintln!("error: still running: {still:?}");
        Ok(exit::FAILED)
    }
}

pub async fn status(state_dir: &Path, args: StatusArgs) -> anyhow::Result<u8> {
    let record = recorded(state_dir);
    if record.runtime == "compose" {
        return tokio::task::spawn_blocking(move || compose::status(&record, args.json)).await?;
    }
    let stack = stack(state_dir)?;
    let cpu = match args.cpu {
        Some(window) => Some(cpu_percent(&stack, window).await),
        None => None,
    };
    let statuses = stack.status().await;
    let all_ready = statuses.iter().all(|s| s.ready);
    let cpu_total = cpu.as_ref().map(|c| c.values().sum::<f64>());
    if args.json {
        let mut components = serde_json::to_value(&statuses)?;
        if let (Some(cpu), Some(list)) = (&cpu, components.as_array_mut()) {
            for c in list {
                let name = c["name"].as_str().unwrap_or_default().to_string();
                c["cpu_percent"] =
                    serde_json::json!(cpu.get(name.as_str()).map(|p| (p * 10.0).round() / 10.0));
            }
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "state_dir": stack.root(),
                "runtime": record.runtime,
                "ready": all_ready,
                "pss_kib": statuses.iter().filter(|s| s.running && s.pid.is_some()).map(|s| s.pss_kib).sum::<Option<u64>>(),
                "rss_kib": statuses.iter().map(|s| s.rss_kib).sum::<u64>(),
                "cpu_window_s": args.cpu,
                "cpu_percent_total": cpu_total.map(|p| (p * 10.0).round() / 10.0),
                "components": components,
            }))?
        );
    } else {
        print!("{}", status_table(&statuses, cpu.as_ref()));
        for s in statuses.iter().filter(|s| s.running && !s.ready) {
            println!("\n{}: {}", s.name, s.error.clone().unwrap_or_default());
        }
        let running = statuses.iter().filter(|s| s.running).count();
        if record.runtime == "testcontainers" {
            println!(
                "\npostgres, redis, kafka and temporal run in containers (testcontainers); their memory is not counted below"
            );
        }
        if running == 0 {
            println!("\nnothing is running: start it with `shopstream up`");
        } else {
            println!(
                "\n{running} of {} components running, using {}",
                statuses.len(),
                total_pss(&statuses)
            );
        }
        if let (Some(cpu), Some(total), Some(window)) = (&cpu, cpu_total, args.cpu)
            && let Some((busiest, pct)) = cpu.iter().max_by(|a, b| a.1.total_cmp(b.1))
        {
            println!(
                "CPU over {window} s: {total:.1} % of one core in all, the most {busiest} ({pct:.1} %)"
            );
        }
    }
    Ok(if all_ready { exit::OK } else { exit::NOT_READY })
}

pub async fn logs(state_dir: &Path, args: LogsArgs) -> anyhow::Result<u8> {
    let record = recorded(state_dir);
    if record.runtime == "compose" {
        return tokio::task::spawn_blocking(move || {
            compose::logs(&record, &args.name, args.follow, args.lines)
        })
        .await?;
    }
    let Some(kind) = Kind::parse(&args.name) else {
        let names: Vec<_> = Kind::ALL.iter().map(|k| k.name()).collect();
        eprintln!(
            "error: unknown component {:?}; one of: {}",
            args.name,
            names.join(", ")
        );
        return Ok(2);
    };
    let stack = stack(state_dir)?;
    if stack.is_external(kind) {
        // A container: its log is the engine's.
        let name = format!(
            "{}-{}",
            Containers::new(stack.root(), stack.ports(), record.full).project(),
            kind.name()
        );
        let Some(docker) = prereq::which("docker") else {
            eprintln!(
                "error: {} runs in the container {name}; its log needs the docker CLI (`docker logs {name}`)",
                kind.name()
            );
            return Ok(exit::MISSING_PREREQ);
        };
        let tail = args.lines.to_string();
        let mut cmd = std::process::Command::new(docker);
        cmd.args(["logs", "--tail", &tail]);
        if args.follow {
            cmd.arg("--follow");
        }
        let status = cmd.arg(&name).status()?;
        return Ok(if status.success() {
            exit::OK
        } else {
            exit::FAILED
        });
    }
    let path = stack.log_path(kind);
    if !path.exists() {
        eprintln!(
            "error: no log at {} (has `shopstream up` run here?)",
            path.display()
        );
        return Ok(exit::NOT_READY);
    }
    println!("{}", shopstream_runtime::stack::tail(&path, args.lines));
    if args.follow {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let mut f = tokio::fs::File::open(&path).await?;
        let mut pos = f.seek(std::io::SeekFrom::End(0)).await?;
        let mut buf = Vec::new();
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
            let len = tokio::fs::metadata(&path).await?.len();
            if len < pos {
                pos = 0; // truncated or rotated
            }
            f.seek(std::io::SeekFrom::Start(pos)).await?;
            buf.clear();
            let n = f.read_to_end(&mut buf).await?;
            pos += n as u64;
            print!("{}", String::from_utf8_lossy(&buf));
        }
    }
    Ok(exit::OK)
}

pub async fn doctor(args: DoctorArgs) -> anyhow::Result<u8> {
    if args.fix
        && let Err((code, msg)) = tokio::task::spawn_blocking(|| install_missing(true)).await?
    {
        eprintln!("error: {msg}");
        return Ok(code);
    }
    let prereqs = prereq::check_all();
    let missing = prereqs.iter().filter(|p| !p.found()).count();
    // Only the Docker runtimes need Docker: reported, never counted as missing.
    let docker_cli = prereq::which("docker");
    let engine = tokio::task::spawn_blocking(docker::check_engine).await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "ok": missing == 0,
                "cache_dir": prereq::cache_dir(),
                "prerequisites": prereqs,
                "docker": {
                    "cli": docker_cli,
                    "engine": engine.as_ref().map(|()| "running".to_string()).unwrap_or_else(|p| p.to_string()),
                    "needed_by": ["up --runtime compose", "up --runtime testcontainers"],
                },
            }))?
        );
    } else {
        let rows: Vec<Vec<String>> = prereqs
            .iter()
            .map(|p| {
                vec![
                    p.name.to_string(),
                    if p.found() {
                        "found".into()
                    } else {
                        "MISSING".into()
                    },
                    p.version
                        .as_deref()
                        .map(short_version)
                        .unwrap_or_else(|| "-".into()),
                    p.path
                        .as_ref()
                        .map(|x| x.display().to_string())
                        .unwrap_or_else(|| format!("install: {}", p.install)),
                ]
            })
            .collect();
        print!(
            "{}",
            table::render(&["prerequisite", "state", "version", "path / fix"], &rows)
        );
        match (&docker_cli, &engine) {
            (_, Ok(())) => println!(
                "\nDocker: engine running ({}): `up --runtime compose|testcontainers` can be used",
                docker::Address::from_env()
            ),
            (None, Err(_)) => println!(
                "\nDocker: not installed (only `up --runtime compose|testcontainers` need it)"
            ),
            (Some(_), Err(p)) => println!(
                "\nDocker: CLI found, but {p} (only `up --runtime compose|testcontainers` need it)"
            ),
        }
        if missing == 0 {
            println!("\neverything the native runtime needs is installed");
        } else {
            println!(
                "\n{missing} missing. tansu and temporal need no root: `shopstream doctor --fix` (or `up`) installs them into {}",
                prereq::cache_dir().display()
            );
        }
    }
    Ok(if missing == 0 {
        exit::OK
    } else {
        exit::MISSING_PREREQ
    })
}

/// A version line cut to what a table needs ("Redis server v=7.0.15 sha=…").
fn short_version(v: &str) -> String {
    const MAX: usize = 44;
    if v.chars().count() <= MAX {
        v.to_string()
    } else {
        format!("{}…", v.chars().take(MAX - 1).collect::<String>())
    }
}

fn status_table(
    statuses: &[ComponentStatus],
    cpu: Option<&std::collections::BTreeMap<&'static str, f64>>,
) -> String {
    let rows: Vec<Vec<String>> = statuses
        .iter()
        .map(|s| {
            let mut row = vec![
                s.name.to_string(),
                match (s.running, s.ready) {
                    (true, true) => "ready".into(),
                    (true, false) => "starting/unhealthy".into(),
                    _ => "stopped".into(),
                },
                s.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                s.endpoint.clone(),
                match (s.running, s.pss_kib) {
                    (true, _) if s.pid.is_none() => "container".into(),
                    (true, Some(kib)) => format!("{} MiB", kib / 1024),
                    (true, None) => "?".into(),
                    (false, _) => "-".into(),
                },
            ];
            if let Some(cpu) = cpu {
                row.push(
                    cpu.get(s.name)
                        .map(|p| format!("{p:.1} %"))
                        .unwrap_or_else(|| "-".into()),
                );
            }
            row
        })
        .collect();
    let mut headers = vec!["component", "state", "pid", "endpoint", "pss"];
    if cpu.is_some() {
        headers.push("cpu");
    }
    table::render(&headers, &rows)
}

/// The stack's memory as PSS (shared pages split between the processes
/// sharing them, so it adds up; RSS would count the one binary nine times and
/// Postgres' shared buffers once per backend). RSS stays in `--json`.
fn total_pss(statuses: &[ComponentStatus]) -> String {
    // Containers (no pid here) are the engine's to measure.
    let running = statuses.iter().filter(|s| s.running && s.pid.is_some());
    match running.map(|s| s.pss_kib).sum::<Option<u64>>() {
        Some(kib) => format!("{} MiB (PSS)", kib / 1024),
        None => "an unknown amount (PSS unreadable: run as the stack's user)".into(),
    }
}

/// One spinner per component, created on its first report.
type Bars = Arc<Mutex<Vec<(Kind, ProgressBar)>>>;

/// Spinners on a terminal, plain lines otherwise (CI logs).
#[derive(Clone)]
struct Reporter {
    bars: Option<(MultiProgress, Bars)>,
}

impl Reporter {
    fn new() -> Reporter {
        let bars = std::io::stderr()
            .is_terminal()
            .then(|| (MultiProgress::new(), Arc::new(Mutex::new(Vec::new()))));
        Reporter { bars }
    }

    fn bar(&self, kind: Kind) -> Option<ProgressBar> {
        let (multi, bars) = self.bars.as_ref()?;
        let mut bars = bars.lock().ok()?;
        if let Some((_, b)) = bars.iter().find(|(k, _)| *k == kind) {
            return Some(b.clone());
        }
        let b = multi.add(ProgressBar::new_spinner());
        b.set_style(
            ProgressStyle::with_template("{spinner} {prefix:<9} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        b.set_prefix(kind.name());
        b.enable_steady_tick(Duration::from_millis(100));
        bars.push((kind, b.clone()));
        Some(b)
    }

    fn report(&self, p: Progress) {
        let (kind, msg, done) = match &p {
            Progress::AlreadyRunning(k) => (*k, "already running".to_string(), false),
            Progress::External(k) => (
                *k,
                "in a container: waiting until it answers".to_string(),
                false,
            ),
            Progress::Starting(k) => (*k, "starting".to_string(), false),
            Progress::Recovering(k) => (
                *k,
                "was not running (crashed?): restarting".to_string(),
                false,
            ),
            Progress::Ready(k, d) => (*k, format!("ready ({:.1}s)", d.as_secs_f64()), true),
            Progress::Failed(k, why) => (*k, format!("FAILED: {why}"), true),
        };
        match self.bar(kind) {
            Some(b) if done => b.finish_with_message(msg),
            Some(b) => b.set_message(msg),
            None => eprintln!("{:<9} {msg}", kind.name()),
        }
    }

    fn finish(&self) {
        if let Some((_, bars)) = &self.bars
            && let Ok(bars) = bars.lock()
        {
            for (_, b) in bars.iter() {
                if !b.is_finished() {
                    b.finish();
                }
            }
        }
    }
}
