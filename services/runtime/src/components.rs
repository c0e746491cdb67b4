//! The five pieces of native infrastructure: how to prepare, start and check
//! each one. Everything lives under the stack's state directory and listens on
//! loopback ports from [`Ports`].

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use nix::sys::signal::Signal;
use serde::Serialize;
use shopstream_platform::config::{Endpoints, Ports};

use crate::{prereq, process::ProcessSpec};

/// One component of a stack: infrastructure or a Shopstream service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Postgres,
    Redis,
    Kafka,
    Temporal,
    S3,
    /// Services are `shopstream serve NAME` processes.
    Identity,
    Catalog,
    Inventory,
    Gateway,
    /// The Stripe emulator (payments talk to it in the native runtime).
    StripeSim,
    Payments,
    /// Orders also runs the checkout saga's Temporal worker.
    Orders,
    /// Change data capture: the catalog outbox → `product.events`.
    Cdc,
    /// The search index fed from `product.events`.
    Search,
    /// Live updates and e-mail from `order.lifecycle` and `payment.events`.
    Notifications,
    /// The SMTP sink e-mail goes to in the native runtime.
    MailSim,
    /// Daily rollups from `analytics.raw`, `order.lifecycle` and `payment.events`.
    Analytics,
    /// Uploads straight to S3 and the media pipeline (a Temporal worker).
    Media,
    /// Activities, the timeline, the feature job and ranked feed slices.
    Feed,
    /// DSARs: export and erasure across every participant (a Temporal
    /// worker), the audit chain and certificates.
    Compliance,
    /// The trace collector (`serve otel`): every service exports its spans
    /// to it; `shopstream trace` and `dash` read them back.
    Otel,
}

impl Kind {
    /// Infrastructure, in start order.
    pub const INFRA: [Kind; 5] = [
        Kind::Postgres,
        Kind::Redis,
        Kind::Kafka,
        Kind::Temporal,
        Kind::S3,
    ];
    /// Services, started once the infrastructure is ready.
    /// The collector comes first, so the others' first spans have somewhere to go.
    pub const SERVICES: [Kind; 16] = [
        Kind::Otel,
        Kind::Identity,
        Kind::Catalog,
        Kind::Inventory,
        Kind::Gateway,
        Kind::StripeSim,
        Kind::Payments,
        Kind::Orders,
        Kind::Cdc,
        Kind::Search,
        Kind::Notifications,
        Kind::MailSim,
        Kind::Analytics,
        Kind::Media,
        Kind::Feed,
        Kind::Compliance,
    ];
    /// Everything, in start order; `down` stops in reverse.
    pub const ALL: [Kind; 21] = [
        Kind::Postgres,
        Kind::Redis,
        Kind::Kafka,
        Kind::Temporal,
        Kind::S3,
        Kind::Otel,
        Kind::Identity,
        Kind::Catalog,
        Kind::Inventory,
        Kind::Gateway,
        Kind::StripeSim,
        Kind::Payments,
        Kind::Orders,
        Kind::Cdc,
        Kind::Search,
        Kind::Notifications,
        Kind::MailSim,
        Kind::Analytics,
        Kind::Media,
        Kind::Feed,
        Kind::Compliance,
    ];

    pub fn is_service(self) -> bool {
        Kind::SERVICES.contains(&self)
    }

    /// HTTP and gRPC addresses of a service kind on `ports`.
    pub fn service_addrs(
        self,
        ports: &Ports,
    ) -> Option<(std::net::SocketAddr, std::net::SocketAddr)> {
        if !self.is_service() {
            return None;
        }
        shopstream_platform::config::service_addrs(self.name(), ports.services)
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Postgres => "postgres",
            Kind::Redis => "redis",
            Kind::Kafka => "kafka",
            Kind::Temporal => "temporal",
            Kind::S3 => "s3",
            Kind::Identity => "identity",
            Kind::Catalog => "catalog",
            Kind::Inventory => "inventory",
            Kind::Gateway => "gateway",
            Kind::StripeSim => "stripe-sim",
            Kind::Payments => "payments",
            Kind::Orders => "orders",
            Kind::Cdc => "cdc",
            Kind::Search => "search",
            Kind::Notifications => "notifications",
            Kind::MailSim => "mail-sim",
            Kind::Analytics => "analytics",
            Kind::Media => "media",
            Kind::Feed => "feed",
            Kind::Compliance => "compliance",
            Kind::Otel => "otel",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }

    pub fn port(self, ports: &Ports) -> u16 {
        match self {
            Kind::Postgres => ports.postgres,
            Kind::Redis => ports.redis,
            Kind::Kafka => ports.kafka,
            Kind::Temporal => ports.temporal,
            Kind::S3 => ports.s3,
            Kind::Identity
            | Kind::Catalog
            | Kind::Inventory
            | Kind::Gateway
            | Kind::StripeSim
            | Kind::Payments
            | Kind::Orders
            | Kind::Cdc
            | Kind::Search
            | Kind::Notifications
            | Kind::MailSim
            | Kind::Analytics
            | Kind::Media
            | Kind::Feed
            | Kind::Compliance
            | Kind::Otel => self.service_addrs(ports).map_or(0, |(h, _)| h.port()),
        }
    }

    /// What a client connects to.
    pub fn endpoint(self, e: &Endpoints, ports: &Ports) -> String {
        match self {
            Kind::Postgres => e.postgres_url.clone(),
            Kind::Redis => e.redis_url.clone(),
            Kind::Kafka => format!("kafka://{}", e.kafka_brokers),
            Kind::Temporal => e.temporal_url.clone(),
            Kind::S3 => e.s3_endpoint.clone(),
            Kind::Identity
            | Kind::Catalog
            | Kind::Inventory
            | Kind::Gateway
            | Kind::StripeSim
            | Kind::Payments
            | Kind::Orders
            | Kind::Cdc
            | Kind::Search
            | Kind::Notifications
            | Kind::MailSim
            | Kind::Analytics
            | Kind::Media
            | Kind::Feed
            | Kind::Compliance
            | Kind::Otel => self
                .service_addrs(ports)
                .map(|(h, _)| format!("http://{h}"))
                .unwrap_or_default(),
        }
    }

    /// How long a cold start may take before `up` gives up on it.
    pub fn ready_timeout(self) -> Duration {
        match self {
            Kind::Postgres => Duration::from_secs(60),
            Kind::Temporal => Duration::from_secs(60),
            _ => Duration::from_secs(30),
        }
    }

    /// The signal for a fast, clean stop: Postgres stops fast on SIGINT
    /// (SIGTERM would wait for every client to disconnect).
    pub fn stop_signal(self) -> Signal {
        match self {
            Kind::Postgres => Signal::SIGINT,
            _ => Signal::SIGTERM,
        }
    }

    /// How long `down` waits after the stop signal before SIGKILL.
    pub fn stop_grace(self) -> Duration {
        match self {
            Kind::Postgres => Duration::from_secs(15),
            _ => Duration::from_secs(10),
        }
    }
}

/// One database per service, created when Postgres first comes up.
pub const SERVICE_DATABASES: &[&str] = &[
    "identity",
    "catalog",
    "inventory",
    "orders",
    "payments",
    "search",
    "media",
    "feed",
    "notifications",
    "analytics",
    "compliance",
    "cdc",
];

/// Dynamic settings of Temporal's dev server, the same in every runtime
/// (native here, testcontainers in `containers.rs`, `compose/compose.yaml`).
/// Besides the version check, they take away what the dev server does at rest
/// for a long-lived cluster that a lab stack is not (ADR 0017, measured alone,
/// idle, no workers: 0.58 % of a core before, 0.25 % after):
/// - one partition per task queue instead of four: a partition is loaded and
///   polled on its own, and at a lab's tens of tasks a second one is plenty;
/// - the namespace cache refreshed every 30 s, not every 2 s by each of its
///   four services (the stack uses only `default`, which exists from the start);
/// - no task-queue, history or executions scanners: they clean up and check
///   what years of a production cluster leave behind.
///
/// Schedules and batch operations stay on, for a learner who tries them.
pub const TEMPORAL_DEV_SETTINGS: &[&str] = &[
    "frontend.enableServerVersionCheck=false",
    "matching.numTaskqueueReadPartitions=1",
    "matching.numTaskqueueWritePartitions=1",
    "system.namespaceCacheRefreshInterval=\"30s\"",
    "worker.taskQueueScannerEnabled=false",
    "worker.historyScannerEnabled=false",
    "worker.executionsScannerEnabled=false",
];

/// `--dynamic-config-value V` for each of [`TEMPORAL_DEV_SETTINGS`].
pub fn temporal_dev_settings_args() -> impl Iterator<Item = String> {
    TEMPORAL_DEV_SETTINGS
        .iter()
        .flat_map(|v| ["--dynamic-config-value".to_string(), (*v).to_string()])
}

/// Why a component could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("{binary} not found. Install it with: {install}")]
    Missing { binary: String, install: String },
    #[error("{0}")]
    Setup(String),
}

fn missing(name: &str) -> PrepareError {
    let p = prereq::check_all()
        .into_iter()
        .find(|p| p.name == name)
        .map(|p| p.install)
        .unwrap_or_default();
    PrepareError::Missing {
        binary: name.to_string(),
        install: p,
    }
}

/// The unprivileged account Postgres runs as when we are root.
fn postgres_user() -> Result<Option<(u32, u32)>, PrepareError> {
    if !nix::unistd::Uid::effective().is_root() {
        return Ok(None);
    }
    for name in ["postgres", "shopstream"] {
        if let Ok(Some(u)) = nix::unistd::User::from_name(name) {
            return Ok(Some((u.uid.as_raw(), u.gid.as_raw())));
        }
    }
    Err(PrepareError::Setup(
        "running as root, and PostgreSQL refuses to: create an unprivileged user with \
         `useradd --system --no-create-home postgres` (the postgresql package does this)"
            .into(),
    ))
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> Result<(), PrepareError> {
    let uid = nix::unistd::Uid::from_raw(uid);
    let gid = nix::unistd::Gid::from_raw(gid);
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        nix::unistd::chown(&p, Some(uid), Some(gid))
            .map_err(|e| PrepareError::Setup(format!("chown {}: {e}", p.display())))?;
        if p.is_dir() && !p.is_symlink() {
            let entries = std::fs::read_dir(&p)
                .map_err(|e| PrepareError::Setup(format!("{}: {e}", p.display())))?;
            stack.extend(entries.flatten().map(|e| e.path()));
        }
    }
    Ok(())
}

/// Scheduler threads each Rust and Go process of the native stack runs its
/// work on. Twenty processes share one machine's cores here, and a runtime
/// sized for the whole machine in each of them (tokio's and Go's default: a
/// worker per core) spends the cores on waking and stealing between its
/// own threads; with one each, the processes themselves are what the
/// kernel spreads over the cores. ADR 0020 has the measurements (checkout
/// at 20 to 30 orders/s on 2 cores).
pub const PROCESS_THREADS: usize = 1;

/// The environment that gives `kind` [`PROCESS_THREADS`] scheduler
/// threads: `TOKIO_WORKER_THREADS` for every `shopstream serve` process
/// and tansu, `GOMAXPROCS` for Temporal's dev server, nothing for Postgres
/// and Redis. A variable the user already set (`is_set`) is left alone:
/// the process inherits the user's value.
pub fn scheduler_env(kind: Kind, is_set: impl Fn(&str) -> bool) -> Vec<(String, String)> {
    let var = match kind {
        Kind::Postgres | Kind::Redis => return vec![],
        Kind::Temporal => "GOMAXPROCS",
        _ => "TOKIO_WORKER_THREADS",
    };
    if is_set(var) {
        return vec![];
    }
    vec![(var.to_string(), PROCESS_THREADS.to_string())]
}

/// A process spec run as the current user, whose only environment so far
/// is its [`scheduler_env`]; callers extend it.
fn spec(kind: Kind, program: PathBuf, args: Vec<String>, cwd: PathBuf) -> ProcessSpec {
    ProcessSpec {
        name: kind.name().into(),
        program,
        args,
        env: scheduler_env(kind, |v| std::env::var_os(v).is_some()),
        cwd,
        user: None,
        stop_signal: kind.stop_signal(),
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// True if user `uid` can traverse every ancestor of `path` (others or owner x bit).
fn reachable_by(path: &Path, uid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let mut cur = Some(path);
    while let Some(p) = cur {
        if let Ok(m) = std::fs::metadata(p) {
            let ok = m.mode() & 0o001 != 0 || (m.uid() == uid && m.mode() & 0o100 != 0);
            if !ok {
                return false;
            }
        }
        cur = p.parent();
    }
    true
}

/// Where Postgres data goes when the state directory is private to root:
/// `/var/tmp/shopstream-postgres/<hash of the state dir>`.
pub fn postgres_fallback_dir(root: &Path) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    root.hash(&mut h);
    PathBuf::from("/var/tmp/shopstream-postgres").join(format!("{:016x}", h.finish()))
}

fn mkdir(p: &Path) -> Result<(), PrepareError> {
    std::fs::create_dir_all(p).map_err(|e| PrepareError::Setup(format!("{}: {e}", p.display())))
}

/// An override must be a plain variable name and a one-line value.
fn check_override(key: &str, value: &str) -> Result<(), String> {
    let name_ok = !key.is_empty()
        && !key.starts_with(|c: char| c.is_ascii_digit())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !name_ok {
        return Err(format!(
            "`{key}` is not a variable name (letters, digits and _, not starting with a digit)"
        ));
    }
    if value.contains(['\n', '\r', '\0']) {
        return Err(format!("the value of {key} spans more than one line"));
    }
    Ok(())
}

/// `KEY=VALUE` lines; blank lines and `#` comments are skipped.
fn parse_overrides(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut vars = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("line {}: expected KEY=VALUE", i + 1))?;
        check_override(key, value).map_err(|e| format!("line {}: {e}", i + 1))?;
        vars.insert(key.to_string(), value.to_string());
    }
    Ok(vars)
}

fn format_overrides(kind: Kind, vars: &BTreeMap<String, String>) -> String {
    let mut text = format!(
        "# Environment of {}, merged over its normal environment when it starts.\n",
        kind.name()
    );
    for (key, value) in vars {
        text.push_str(&format!("{key}={value}\n"));
    }
    text
}

/// Everything needed to build process specs for one stack.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
    pub ports: Ports,
    /// The `shopstream` binary, for `shopstream serve s3`.
    pub exe: PathBuf,
}

impl Layout {
    pub fn dir(&self, kind: Kind) -> PathBuf {
        self.root.join(kind.name())
    }

    /// Fail with the install command if a binary `kind` needs is missing.
    /// Cheap: no state is touched.
    pub fn check_prereqs(&self, kind: Kind) -> Result<(), PrepareError> {
        let need: &[(&str, Option<PathBuf>)] = &match kind {
            Kind::Postgres => vec![
                ("initdb", prereq::postgres_bin("initdb")),
                ("postgres", prereq::postgres_bin("postgres")),
            ],
            Kind::Redis => vec![("redis-server", prereq::which("redis-server"))],
            Kind::Kafka => vec![
                ("tansu", prereq::tansu_bin()),
                ("sqlite3", prereq::which("sqlite3")),
            ],
            Kind::Temporal => vec![("temporal", prereq::temporal_bin())],
            Kind::S3
            | Kind::Identity
            | Kind::Catalog
            | Kind::Inventory
            | Kind::Gateway
            | Kind::StripeSim
            | Kind::Payments
            | Kind::Orders
            | Kind::Cdc
            | Kind::Search
            | Kind::Notifications
            | Kind::MailSim
            | Kind::Analytics
            | Kind::Media
            | Kind::Feed
            | Kind::Compliance
            | Kind::Otel => vec![],
        };
        match need.iter().find(|(_, p)| p.is_none()) {
            Some((name, _)) => Err(missing(name)),
            None => Ok(()),
        }
    }

    /// Prepare on-disk state (first run only) and return how to start `kind`:
    /// its normal environment with its overrides ([`Layout::read_overrides`])
    /// merged over it.
    pub fn prepare(&self, kind: Kind) -> Result<ProcessSpec, PrepareError> {
        let mut spec = self.prepare_base(kind)?;
        let overrides = self.read_overrides(kind)?;
        if !overrides.is_empty() {
            spec.env.retain(|(k, _)| !overrides.contains_key(k));
            spec.env.extend(overrides);
        }
        Ok(spec)
    }

    /// Where `kind`'s environment overrides live: `overrides/<kind>.env`
    /// under the state root, `KEY=VALUE` lines.
    pub fn overrides_path(&self, kind: Kind) -> PathBuf {
        self.root
            .join("overrides")
            .join(format!("{}.env", kind.name()))
    }

    /// `kind`'s environment overrides; none when there is no file.
    pub fn read_overrides(&self, kind: Kind) -> Result<BTreeMap<String, String>, PrepareError> {
        let path = self.overrides_path(kind);
        match std::fs::read_to_string(&path) {
            Ok(text) => parse_overrides(&text)
                .map_err(|e| PrepareError::Setup(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(PrepareError::Setup(format!("{}: {e}", path.display()))),
        }
    }

    /// Replace `kind`'s overrides (none: remove the file). They apply from
    /// the component's next start.
    pub fn write_overrides(
        &self,
        kind: Kind,
        vars: &BTreeMap<String, String>,
    ) -> Result<(), PrepareError> {
        let path = self.overrides_path(kind);
        let setup = |e: std::io::Error| PrepareError::Setup(format!("{}: {e}", path.display()));
        if vars.is_empty() {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(setup(e)),
                _ => Ok(()),
            };
        }
        for (key, value) in vars {
            check_override(key, value).map_err(PrepareError::Setup)?;
        }
        if let Some(dir) = path.parent() {
            mkdir(dir)?;
        }
        let text = format_overrides(kind, vars);
        // Written whole, then renamed: a crash never leaves half a file.
        let tmp = path.with_extension("env.tmp");
        std::fs::write(&tmp, text).map_err(setup)?;
        std::fs::rename(&tmp, &path).map_err(setup)
    }

    #[rustfmt::skip]
    fn prepare_base(&self, kind: Kind) -> Result<ProcessSpec, PrepareError> {
        let dir = self.dir(kind);
        if kind == Kind::Postgres {
            let user = postgres_user()?;
            self.place_postgres_dir(&dir, user)?;
            // Resolve the symlink: the postgres account may not traverse the root.
            let dir = dir
                .canonicalize()
                .map_err(|e| PrepareError::Setup(format!("{}: {e}", dir.display())))?;
            return self.prepare_postgres(&dir, user);
        }
        mkdir(&dir)?;
        let p = self.ports;
        match kind {
            Kind::Postgres => unreachable!("handled above"),
            Kind::Redis => {
                let bin = prereq::which("redis-server").ok_or_else(|| missing("redis-server"))?;
                // Feed slices are sorted sets of up to 200 members: kept as
                // listpacks (not skiplists) they take ~4x less memory, which
                // is what lets 10,000 users' slices fit under maxmemory.
                let args = strings(&[
                    "--bind", "127.0.0.1",
                    "--port", &p.redis.to_string(),
                    "--dir", &dir.display().to_string(),
                    "--appendonly", "yes",
                    "--appendfsync", "everysec",
                    "--save", "",
                    "--daemonize", "no",
                    "--protected-mode", "yes",
                    "--maxmemory", "256mb",
                    "--zset-max-listpack-entries", "256",
                ]);
                Ok(spec(kind, bin, args, dir))
            }
            Kind::Kafka => {
                let bin = prereq::tansu_bin().ok_or_else(|| missing("tansu"))?;
                let listener = format!("tcp://127.0.0.1:{}", p.kafka);
                let args = strings(&[
                    "broker",
                    "--listener-url", &listener,
                    "--advertised-listener-url", &listener,
                    // relative to cwd: tansu resolves sqlite paths that way
                    "--storage-engine", "sqlite://tansu.db",
                    "--silent",
                ]);
                Ok(spec(kind, bin, args, dir))
            }
            Kind::Temporal => {
                let bin = prereq::temporal_bin().ok_or_else(|| missing("temporal"))?;
                let mut args = strings(&[
                    "server", "start-dev", "--headless",
                    "--ip", "127.0.0.1",
                    "--port", &p.temporal.to_string(),
                    "--http-port", &p.temporal_http.to_string(),
                    "--metrics-port", &p.temporal_metrics.to_string(),
                    "--db-filename", &dir.join("temporal.db").display().to_string(),
                    "--log-level", "warn",
                    "--sqlite-pragma", "journal_mode=wal",
                    "--sqlite-pragma", "synchronous=normal",
                ]);
                args.extend(temporal_dev_settings_args());
                Ok(spec(kind, bin, args, dir))
            }
            Kind::Identity
            | Kind::Catalog
            | Kind::Inventory
            | Kind::Gateway
            | Kind::StripeSim
            | Kind::Payments
            | Kind::Orders
            | Kind::Cdc
            | Kind::Search
            | Kind::Notifications
            | Kind::MailSim
            | Kind::Analytics
            | Kind::Media
            | Kind::Feed
            | Kind::Compliance
            | Kind::Otel => {
                let mut s = spec(kind, self.exe.clone(), strings(&["serve", kind.name()]), dir);
                s.env.extend(self.service_env(kind));
                // stripe-sim delivers its webhooks to payments.
                if let (Kind::StripeSim, Some((payments, _))) =
                    (kind, Kind::Payments.service_addrs(&self.ports))
                {
                    s.env.push((
                        "SHOPSTREAM_STRIPE_SIM_WEBHOOK_URL".into(),
                        format!("http://{payments}/webhooks/stripe"),
                    ));
                }
                s.env.push((
                    "SHOPSTREAM_IDENTITY_KEY_DIR".into(),
                    self.root.join("keys").display().to_string(),
                ));
                // mail-sim keeps its messages with the stack's state.
                s.env.push((
                    "SHOPSTREAM_MAIL_SIM_DIR".into(),
                    self.dir(Kind::MailSim).join("messages").display().to_string(),
                ));
                // The search index lives with the stack's state.
                s.env.push((
                    "SHOPSTREAM_SEARCH_INDEX_DIR".into(),
                    self.dir(Kind::Search).join("index").display().to_string(),
                ));
                Ok(s)
            }
            Kind::S3 => {
                let mut s = spec(kind, self.exe.clone(), strings(&["serve", "s3"]), dir.clone());
                s.env.extend([
                    ("SHOPSTREAM_S3_ADDR".into(), format!("127.0.0.1:{}", p.s3)),
                    ("SHOPSTREAM_S3_ROOT".into(), dir.join("data").display().to_string()),
                    // Object-created notifications of the upload buckets
                    // (`media-uploads*`) go to `media.work` on this stack's broker.
                    ("SHOPSTREAM_S3_NOTIFY".into(), crate::s3_server::DEFAULT_NOTIFY.into()),
                    // The audit chain's bucket is write-once (Object Lock).
                    ("SHOPSTREAM_S3_WORM".into(), crate::s3_server::DEFAULT_WORM.into()),
                    ("SHOPSTREAM_KAFKA_PORT".into(), p.kafka.to_string()),
                ]);
                Ok(s)
            }
        }
    }

    /// What every service process needs to find this stack's infrastructure.
    fn service_env(&self, kind: Kind) -> Vec<(String, String)> {
        let p = self.ports;
        let upper = kind.name().to_ascii_uppercase().replace('-', "_");
        let (http, grpc) = kind
            .service_addrs(&p)
            .map(|(h, g)| (h.to_string(), g.to_string()))
            .unwrap_or_default();
        let mut env = vec![
            (format!("SHOPSTREAM_{upper}_HTTP_ADDR"), http),
            (format!("SHOPSTREAM_{upper}_GRPC_ADDR"), grpc),
            ("SHOPSTREAM_LOG_FORMAT".into(), "json".into()),
        ];
        env.extend(p.env_vars().map(|(k, v)| (k.to_string(), v)));
        // Spans go to this stack's collector (the collector itself never exports).
        if kind != Kind::Otel
            && let Some((_, otlp)) = Kind::Otel.service_addrs(&p)
        {
            env.push(("SHOPSTREAM_OTLP_ENDPOINT".into(), format!("http://{otlp}")));
        }
        env
    }

    /// Postgres runs as an unprivileged account when we are root; if that
    /// account cannot reach the state directory (a checkout under `/root`,
    /// mode 700), its folder lives in [`postgres_fallback_dir`] behind a symlink.
    fn place_postgres_dir(&self, dir: &Path, user: Option<(u32, u32)>) -> Result<(), PrepareError> {
        if dir.exists() {
            return Ok(());
        }
        match user {
            Some((uid, _)) if !reachable_by(&self.root, uid) => {
                let target = postgres_fallback_dir(&self.root);
                mkdir(&target)?;
                mkdir(&self.root)?;
                std::os::unix::fs::symlink(&target, dir)
                    .map_err(|e| PrepareError::Setup(format!("{}: {e}", dir.display())))
            }
            _ => mkdir(dir),
        }
    }

    fn prepare_postgres(
        &self,
        dir: &Path,
        user: Option<(u32, u32)>,
    ) -> Result<ProcessSpec, PrepareError> {
        let initdb = prereq::postgres_bin("initdb").ok_or_else(|| missing("initdb"))?;
        let postgres = prereq::postgres_bin("postgres").ok_or_else(|| missing("postgres"))?;
        let data = dir.join("data");
        let sock = dir.join("sock");
        mkdir(&sock)?;
        if let Some((uid, gid)) = user {
            chown_tree(dir, uid, gid)?;
        }
        if !data.join("PG_VERSION").exists() {
            let _ = std::fs::remove_dir_all(&data);
            use std::os::unix::process::CommandExt;
            let mut cmd = std::process::Command::new(&initdb);
            cmd.arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    "shopstream",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ])
                .current_dir(dir);
            if let Some((uid, gid)) = user {
                cmd.uid(uid).gid(gid);
            }
            let out = cmd
                .output()
                .map_err(|e| PrepareError::Setup(format!("initdb: {e}")))?;
            if !out.status.success() {
                return Err(PrepareError::Setup(format!(
                    "initdb failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
        let settings = [
            "listen_addresses=127.0.0.1".to_string(),
            format!("unix_socket_directories={}", sock.display()),
            "wal_level=logical".into(),
            "max_replication_slots=16".into(),
            "max_wal_senders=16".into(),
            // an unread replication slot must not fill the disk
            "max_slot_wal_keep_size=1024MB".into(),
            "max_connections=200".into(),
            "shared_buffers=64MB".into(),
            "log_min_messages=warning".into(),
        ];
        let mut args = vec![
            "-D".to_string(),
            data.display().to_string(),
            "-p".into(),
            self.ports.postgres.to_string(),
        ];
        for s in settings {
            args.push("-c".into());
            args.push(s);
        }
        Ok(ProcessSpec {
            name: "postgres".into(),
            program: postgres,
            args,
            env: vec![],
            cwd: dir.to_path_buf(),
            user,
            stop_signal: Kind::Postgres.stop_signal(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rust_and_go_process_gets_one_scheduler_thread_unless_the_user_chose() {
        let unset = |_: &str| false;
        let one = |v: &str| vec![(v.to_string(), "1".to_string())];
        for kind in Kind::SERVICES.into_iter().chain([Kind::Kafka, Kind::S3]) {
            assert_eq!(
                scheduler_env(kind, unset),
                one("TOKIO_WORKER_THREADS"),
                "{kind:?}"
            );
        }
        assert_eq!(scheduler_env(Kind::Temporal, unset), one("GOMAXPROCS"));
        assert!(scheduler_env(Kind::Postgres, unset).is_empty());
        assert!(scheduler_env(Kind::Redis, unset).is_empty());
        // A value in the user's environment is inherited instead.
        let user_set = |v: &str| v == "TOKIO_WORKER_THREADS";
        assert!(scheduler_env(Kind::Gateway, user_set).is_empty());
        // What `up` starts carries it beside the service's own environment
        // (unless this test's own environment sets it).
        if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
            let l = layout("scheduler-env");
            for kind in [Kind::Orders, Kind::S3] {
                let spec = l.prepare(kind).unwrap();
                assert_eq!(env_of(&spec, "TOKIO_WORKER_THREADS"), ["1"], "{kind:?}");
                assert!(
                    spec.env.iter().any(|(k, _)| k.starts_with("SHOPSTREAM_")),
                    "{kind:?}"
                );
            }
        }
        assert_eq!(scheduler_env(Kind::Temporal, user_set), one("GOMAXPROCS"));
    }

    /// A layout under a fresh directory of the system's temp dir.
    fn layout(name: &str) -> Layout {
        let root = std::env::temp_dir().join(format!(
            "shopstream-components-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&root);
        Layout {
            root,
            ports: Ports::TEST,
            exe: PathBuf::from("/bin/true"),
        }
    }

    fn env_of(spec: &ProcessSpec, key: &str) -> Vec<String> {
        spec.env
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    #[test]
    fn overrides_are_persisted_and_merged_over_the_normal_environment() {
        let l = layout("overrides");
        assert!(l.read_overrides(Kind::Orders).unwrap().is_empty());
        let normal = l.prepare(Kind::Orders).unwrap();
        assert_eq!(env_of(&normal, "SHOPSTREAM_PG_PORT"), ["25432"]);

        let vars = BTreeMap::from([
            (
                "SHOPSTREAM_ORDERS_PAYMENTS_URL".to_string(),
                "http://127.0.0.1:40001".to_string(),
            ),
            ("SHOPSTREAM_PG_PORT".to_string(), "40002".to_string()),
        ]);
        l.write_overrides(Kind::Orders, &vars).unwrap();
        let text = std::fs::read_to_string(l.root.join("overrides/orders.env")).unwrap();
        assert!(text.contains("\nSHOPSTREAM_PG_PORT=40002\n"), "{text}");
        assert_eq!(l.read_overrides(Kind::Orders).unwrap(), vars);

        let spec = l.prepare(Kind::Orders).unwrap();
        assert_eq!(env_of(&spec, "SHOPSTREAM_PG_PORT"), ["40002"]);
        assert_eq!(
            env_of(&spec, "SHOPSTREAM_ORDERS_PAYMENTS_URL"),
            ["http://127.0.0.1:40001"]
        );
        // Other components are untouched.
        assert_eq!(
            env_of(&l.prepare(Kind::Payments).unwrap(), "SHOPSTREAM_PG_PORT"),
            ["25432"]
        );

        l.write_overrides(Kind::Orders, &BTreeMap::new()).unwrap();
        assert!(!l.overrides_path(Kind::Orders).exists());
        assert_eq!(l.prepare(Kind::Orders).unwrap().env, normal.env);
        let _ = std::fs::remove_dir_all(&l.root);
    }

    #[test]
    fn bad_overrides_are_refused() {
        let l = layout("bad-overrides");
        for (k, v) in [
            ("", "x"),
            ("A B", "x"),
            ("1X", "x"),
            ("A=B", "x"),
            ("OK", "two\nlines"),
        ] {
            let vars = BTreeMap::from([(k.to_string(), v.to_string())]);
            assert!(
                l.write_overrides(Kind::Orders, &vars).is_err(),
                "{k:?}={v:?}"
            );
        }
        assert_eq!(parse_overrides("# comment\n\nA=1=2\n").unwrap()["A"], "1=2");
        let err = parse_overrides("A=1\nnonsense\n").unwrap_err();
        assert!(err.contains("line 2"), "{err}");
        let _ = std::fs::remove_dir_all(&l.root);
    }
}
