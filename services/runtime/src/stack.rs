//! One native stack: a state directory, its ports, and the five components.
//! `up` is idempotent (running components are left alone, dead ones are
//! restarted), `down` leaves no process behind, `status` reports each
//! component's process and readiness.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use serde::Serialize;
use shopstream_platform::{
    cache,
    config::{Endpoints, Ports},
    db,
    events::kafka::{KafkaBus, KafkaSettings},
    object_store, temporal,
};

use crate::{
    components::{Kind, Layout, PrepareError, SERVICE_DATABASES},
    process,
};

/// What `up` reports as it goes.
#[derive(Debug, Clone)]
pub enum Progress {
    AlreadyRunning(Kind),
    /// Provided by something else (a container): only waited for.
    External(Kind),
    Starting(Kind),
    /// The previous process had died; it is being started again.
    Recovering(Kind),
    Ready(Kind, Duration),
    Failed(Kind, String),
}

/// A component as `status` sees it.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentStatus {
    pub name: &'static str,
    pub pid: Option<u32>,
    pub running: bool,
    pub ready: bool,
    pub port: u16,
    pub endpoint: String,
    /// Resident memory of the component's process tree; pages shared between
    /// processes count once per process.
    pub rss_kib: u64,
    /// Proportional memory of the process tree: shared pages split between the
    /// processes that map them, so this adds up across components. `None` when
    /// it could not be read (see [`process::TreeMemory`]).
    pub pss_kib: Option<u64>,
    pub log: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("{kind}: {source}")]
    Prepare {
        kind: &'static str,
        source: PrepareError,
    },
    #[error("{kind} did not become ready: {reason}")]
    NotReady { kind: &'static str, reason: String },
    #[error("{0}")]
    Io(String),
}

/// A native stack rooted at a state directory.
#[derive(Debug, Clone)]
pub struct Stack {
    layout: Layout,
    /// Also run the Shopstream services (the CLI does; the test kit does not:
    /// tests run services in-process).
    services: bool,
    /// Components something else runs (the testcontainers runtime's
    /// containers): never started, stopped or restarted here, only probed.
    external: Vec<Kind>,
}

/// Which runtime `up` used in a state directory (`runtime.json`), so that
/// `status`, `logs` and `down` find the same stack. Absent: native.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RuntimeRecord {
    /// `native`, `compose` or `testcontainers`.
    pub runtime: String,
    /// The `full` profile (compose) or `--full` (testcontainers).
    #[serde(default)]
    pub full: bool,
    /// compose: the compose file `up` used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose_file: Option<PathBuf>,
}

impl RuntimeRecord {
    const FILE: &str = "runtime.json";

    /// What `root` records; native when nothing is recorded.
    pub fn read(root: &Path) -> RuntimeRecord {
        std::fs::read(root.join(Self::FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_else(|| RuntimeRecord {
                runtime: "native".into(),
                ..Default::default()
            })
    }

    pub fn write(&self, root: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(root)?;
        std::fs::write(
            root.join(Self::FILE),
            serde_json::to_vec_pretty(self).unwrap_or_default(),
        )
    }

    /// Forget the record (after `down --purge`, or when native takes over).
    pub fn clear(root: &Path) {
        let _ = std::fs::remove_file(root.join(Self::FILE));
    }
}

/// When the supervisor restarts a crashed component, and when it gives up.
#[derive(Debug, Clone)]
pub struct RestartPolicy {
    /// Restarts allowed per component within `window` before giving up.
    pub max_restarts: u32,
    pub window: Duration,
    /// How often liveness is checked.
    pub check_interval: Duration,
}

impl Default for RestartPolicy {
    fn default() -> RestartPolicy {
        RestartPolicy {
            max_restarts: 5,
            window: Duration::from_secs(60),
            check_interval: Duration::from_secs(1),
        }
    }
}

/// Poll interval of readiness checks.
const READY_POLL: Duration = Duration::from_millis(150);

impl Stack {
    /// A stack under `root` on `ports`; `exe` is the `shopstream` binary that
    /// serves S3. Ports recorded by an earlier `up` in `root` take precedence,
    /// so `status` and `down` find what `up` started.
    pub fn new(root: impl Into<PathBuf>, ports: Ports, exe: impl Into<PathBuf>) -> Stack {
        // Absolute: components run with their own working directories.
        let root: PathBuf = root.into();
        let root = std::path::absolute(&root).unwrap_or(root);
        let ports = std::fs::read(root.join("stack.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(ports);
        let external = if RuntimeRecord::read(&root).runtime == "testcontainers" {
            crate::containers::Containers::KINDS.to_vec()
        } else {
            Vec::new()
        };
        Stack {
            layout: Layout {
                root,
                ports,
                exe: exe.into(),
            },
            services: false,
            external,
        }
    }

    /// Treat `kinds` as run by something else (containers): probed, never
    /// started or stopped here.
    pub fn with_external(mut self, kinds: &[Kind]) -> Stack {
        self.external = kinds.to_vec();
        self
    }

    pub fn is_external(&self, kind: Kind) -> bool {
        self.external.contains(&kind)
    }

    /// Run the services too, after the infrastructure is ready.
    pub fn with_services(mut self, services: bool) -> Stack {
        self.services = services;
        self
    }

    /// The components this stack runs, in start order.
    pub fn kinds(&self) -> Vec<Kind> {
        if self.services {
            Kind::ALL.to_vec()
        } else {
            Kind::INFRA.to_vec()
        }
    }

    pub fn root(&self) -> &Path {
        &self.layout.root
    }

    pub fn ports(&self) -> Ports {
        self.layout.ports
    }

    pub fn endpoints(&self) -> Endpoints {
        Endpoints::native(self.layout.ports)
    }

    pub fn log_path(&self, kind: Kind) -> PathBuf {
        self.layout
            .root
            .join("logs")
            .join(format!("{}.log", kind.name()))
    }

    fn pid_path(&self, kind: Kind) -> PathBuf {
        self.layout
            .root
            .join("run")
            .join(format!("{}.pid", kind.name()))
    }

    /// Pid of `kind` if its process is alive.
    pub fn running_pid(&self, kind: Kind) -> Option<u32> {
        process::read_pid(&self.pid_path(kind))
            .map(|r| r.pid)
            .filter(|p| process::is_alive(*p))
    }

    /// Name and pid of each component that is running now.
    pub fn running_pids(&self) -> Vec<(&'static str, u32)> {
        self.kinds()
            .into_iter()
            .filter_map(|k| self.running_pid(k).map(|p| (k.name(), p)))
            .collect()
    }

    fn lock(&self) -> Result<std::fs::File, StackError> {
        std::fs::create_dir_all(&self.layout.root)
            .map_err(|e| StackError::Io(format!("{}: {e}", self.layout.root.display())))?;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.layout.root.join(".lock"))
            .map_err(|e| StackError::Io(e.to_string()))?;
        f.lock().map_err(|e| StackError::Io(e.to_string()))?;
        Ok(f)
    }

    /// Start whatever is not running and wait until everything is ready.
    /// Components start concurrently; each has its own deadline.
    pub async fn up(
        &self,
        progress: Arc<dyn Fn(Progress) + Send + Sync>,
    ) -> Result<Vec<ComponentStatus>, StackError> {
        let lock = tokio::task::spawn_blocking({
            let s = self.clone();
            move || s.lock()
        })
        .await
        .map_err(|e| StackError::Io(e.to_string()))??;
        std::fs::write(
            self.layout.root.join("stack.json"),
            serde_json::to_vec_pretty(&self.layout.ports).unwrap_or_default(),
        )
        .map_err(|e| StackError::Io(e.to_string()))?;

        // Check every prerequisite before starting anything: a missing one
        // fails `up` with nothing half-started.
        let stopped: Vec<Kind> = self
            .kinds()
            .into_iter()
            .filter(|k| !self.is_external(*k) && self.running_pid(*k).is_none())
            .collect();
        for kind in &stopped {
            self.layout
                .check_prereqs(*kind)
                .map_err(|source| StackError::Prepare {
                    kind: kind.name(),
                    source,
                })?;
        }
        // Infrastructure first; services only once it answers.
        let mut results = Vec::new();
        for phase in [Kind::INFRA.to_vec(), Kind::SERVICES.to_vec()] {
            let phase: Vec<Kind> = phase
                .into_iter()
                .filter(|k| self.kinds().contains(k))
                .collect();
            let mut to_start = Vec::new();
            for kind in phase.iter().copied().filter(|k| stopped.contains(k)) {
                to_start.push((kind, self.prepare(kind)?));
            }
            let mut waits = Vec::new();
            for kind in phase {
                match to_start.iter().find(|(k, _)| *k == kind) {
                    Some((_, spec)) => self.spawn(kind, spec, &*progress)?,
                    None if self.is_external(kind) => progress(Progress::External(kind)),
                    None => progress(Progress::AlreadyRunning(kind)),
                }
                let s = self.clone();
                let progress = progress.clone();
                waits.push(async move {
                    let started = Instant::now();
                    match s.wait_ready(kind).await {
                        Ok(()) => {
                            progress(Progress::Ready(kind, started.elapsed()));
                            Ok(())
                        }
                        Err(reason) => {
                            progress(Progress::Failed(kind, reason.clone()));
                            Err(StackError::NotReady {
                                kind: kind.name(),
                                reason,
                            })
                        }
                    }
                });
            }
            let phase_results = futures::future::join_all(waits).await;
            let failed = phase_results.iter().any(Result::is_err);
            results.extend(phase_results);
            if failed {
                break;
            }
        }
        drop(lock);
        for r in results {
            r?;
        }
        Ok(self.status().await)
    }

    fn prepare(&self, kind: Kind) -> Result<process::ProcessSpec, StackError> {
        self.layout
            .prepare(kind)
            .map_err(|source| StackError::Prepare {
                kind: kind.name(),
                source,
            })
    }

    fn spawn(
        &self,
        kind: Kind,
        spec: &process::ProcessSpec,
        progress: &dyn Fn(Progress),
    ) -> Result<(), StackError> {
        if process::read_pid(&self.pid_path(kind)).is_some() {
            progress(Progress::Recovering(kind));
        } else {
            progress(Progress::Starting(kind));
        }
        process::spawn(spec, &self.log_path(kind), &self.pid_path(kind)).map_err(|e| {
            StackError::Prepare {
                kind: kind.name(),
                source: PrepareError::Setup(e.to_string()),
            }
        })?;
        Ok(())
    }

    /// Replace `kind`'s environment overrides (`<root>/overrides/<kind>.env`),
    /// merged over its normal environment from its next start on: restart
    /// it to apply them. An empty map removes them.
    pub fn set_overrides(
        &self,
        kind: Kind,
        vars: BTreeMap<String, String>,
    ) -> Result<(), StackError> {
        self.layout
            .write_overrides(kind, &vars)
            .map_err(|source| StackError::Prepare {
                kind: kind.name(),
                source,
            })
    }

    /// Remove `kind`'s environment overrides (from its next start on).
    pub fn clear_overrides(&self, kind: Kind) -> Result<(), StackError> {
        self.set_overrides(kind, BTreeMap::new())
    }

    /// `kind`'s environment overrides; empty when it has none.
    pub fn overrides(&self, kind: Kind) -> Result<BTreeMap<String, String>, StackError> {
        self.layout
            .read_overrides(kind)
            .map_err(|source| StackError::Prepare {
                kind: kind.name(),
                source,
            })
    }

    /// Start one component (if stopped) and wait until it is ready.
    pub async fn start_component(&self, kind: Kind) -> Result<(), StackError> {
        std::fs::create_dir_all(&self.layout.root).map_err(|e| StackError::Io(e.to_string()))?;
        if self.running_pid(kind).is_none() {
            let spec = self.prepare(kind)?;
            self.spawn(kind, &spec, &|_| {})?;
        }
        self.wait_ready(kind)
            .await
            .map_err(|reason| StackError::NotReady {
                kind: kind.name(),
                reason,
            })
    }

    /// Stop one component; true if it stopped within its grace period.
    pub async fn stop_component(&self, kind: Kind) -> bool {
        let Some(rec) = process::read_pid(&self.pid_path(kind)) else {
            return true;
        };
        let graceful = process::stop(rec.pid, kind.stop_signal(), kind.stop_grace()).await;
        let _ = std::fs::remove_file(self.pid_path(kind));
        graceful
    }

    /// Watch the stack until `shutdown`: restart any component whose process
    /// died, within `policy`. Returns an error when a component keeps dying.
    pub async fn supervise(
        &self,
        policy: RestartPolicy,
        shutdown: tokio_util::sync::CancellationToken,
        progress: Arc<dyn Fn(Progress) + Send + Sync>,
    ) -> Result<(), StackError> {
        let mut restarts: std::collections::BTreeMap<Kind, Vec<Instant>> = Default::default();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(policy.check_interval) => {}
            }
            for kind in self.kinds() {
                if self.is_external(kind) || self.running_pid(kind).is_some() {
                    continue;
                }
                let history = restarts.entry(kind).or_default();
                history.retain(|t| t.elapsed() < policy.window);
                if history.len() as u32 >= policy.max_restarts {
                    let reason = format!(
                        "died {} times within {:?}; giving up (see {})",
                        history.len(),
                        policy.window,
                        self.log_path(kind).display()
                    );
                    progress(Progress::Failed(kind, reason.clone()));
                    return Err(StackError::NotReady {
                        kind: kind.name(),
                        reason,
                    });
                }
                history.push(Instant::now());
                progress(Progress::Recovering(kind));
                let started = Instant::now();
                match self.start_component(kind).await {
                    Ok(()) => progress(Progress::Ready(kind, started.elapsed())),
                    Err(e) => progress(Progress::Failed(kind, e.to_string())),
                }
            }
        }
    }

    /// Kill one component with SIGKILL, as a crash would (for chaos and tests).
    pub async fn kill_component(&self, kind: Kind) {
        if let Some(rec) = process::read_pid(&self.pid_path(kind)) {
            process::stop(
                rec.pid,
                nix::sys::signal::Signal::SIGKILL,
                Duration::from_secs(5),
            )
            .await;
        }
    }

    async fn wait_ready(&self, kind: Kind) -> Result<(), String> {
        let deadline = Instant::now() + kind.ready_timeout();
        loop {
            if !self.is_external(kind) && self.running_pid(kind).is_none() {
                return Err(format!(
                    "the process exited; last lines of {}:\n{}",
                    self.log_path(kind).display(),
                    tail(&self.log_path(kind), 15)
                ));
            }
            let last = match self.check_ready(kind).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(format!(
                    "not ready after {:?}: {last}; see {}",
                    kind.ready_timeout(),
                    self.log_path(kind).display()
                ));
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// One readiness probe; also finishes first-run setup (service databases,
    /// the broker's missing index) idempotently.
    pub async fn check_ready(&self, kind: Kind) -> Result<(), String> {
        let e = self.endpoints();
        let bound = Duration::from_secs(5);
        let probe = async {
            match kind {
                Kind::Postgres => db::ensure_databases(&e.postgres_url, SERVICE_DATABASES)
                    .await
                    .map_err(|e| e.to_string()),
                Kind::Redis => {
                    let mut c = cache::connect(&e.redis_url)
                        .await
                        .map_err(|e| e.to_string())?;
                    let pong: String = redis::cmd("PING")
                        .query_async(&mut c)
                        .await
                        .map_err(|e| e.to_string())?;
                    (pong == "PONG")
                        .then_some(())
                        .ok_or_else(|| format!("PING answered {pong}"))
                }
                Kind::Kafka => {
                    let bus = KafkaBus::new(KafkaSettings::new(&e.kafka_brokers))
                        .map_err(|e| e.to_string())?;
                    bus.ping(Duration::from_secs(2))
                        .await
                        .map_err(|e| e.to_string())?;
                    if self.is_external(kind) {
                        return Ok(()); // a Kafka container, not tansu
                    }
                    self.index_broker_db()
                }
                Kind::Temporal => temporal::connect(&e.temporal_url, "default", "shopstream-up")
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
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
                    let (addr, _) = kind
                        .service_addrs(&self.layout.ports)
                        .ok_or_else(|| "no address".to_string())?;
                    http_ready(&format!("http://{addr}/readyz")).await
                }
                Kind::S3 => object_store::client(&e)
                    .list_buckets()
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("{e:?}")),
            }
        };
        tokio::time::timeout(bound, probe)
            .await
            .map_err(|_| format!("probe timed out after {bound:?}"))?
    }

    /// tansu 0.6.0 reads each record with a scan of its `header` table unless
    /// this index exists (measured: deliveries stall at ~20k records).
    fn index_broker_db(&self) -> Result<(), String> {
        let dbfile = self.layout.dir(Kind::Kafka).join("tansu.db");
        if !dbfile.exists() {
            return Err("broker database not created yet".into());
        }
        let out = std::process::Command::new("sqlite3")
            .arg("-cmd")
            .arg(".timeout 5000")
            .arg(&dbfile)
            .arg(
                "create index if not exists header_topition_offset on header(topition, offset_id);",
            )
            .output()
            .map_err(|e| format!("sqlite3: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "indexing the broker database: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Stop everything this stack started (reverse order), optionally
    /// removing all state. Returns the components that had to be killed.
    pub async fn down(&self, purge: bool) -> Result<Vec<&'static str>, StackError> {
        let lock = self.lock()?;
        let mut killed = Vec::new();
        for kind in Kind::ALL.into_iter().rev() {
            if !self.stop_component(kind).await {
                killed.push(kind.name());
            }
        }
        drop(lock);
        if purge {
            // Postgres data may live outside the root behind a symlink.
            let pg = self.layout.dir(Kind::Postgres);
            if pg.is_symlink()
                && let Ok(target) = std::fs::read_link(&pg)
            {
                let _ = std::fs::remove_dir_all(target);
            }
            std::fs::remove_dir_all(&self.layout.root).or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(StackError::Io(format!(
                        "{}: {e}",
                        self.layout.root.display()
                    )))
                }
            })?;
        }
        Ok(killed)
    }

    /// Each component's process and readiness, probed now.
    pub async fn status(&self) -> Vec<ComponentStatus> {
        let e = self.endpoints();
        let checks = self.kinds().into_iter().map(|kind| {
            let e = e.clone();
            async move {
                let pid = self.running_pid(kind);
                let probe = if pid.is_some() || self.is_external(kind) {
                    self.check_ready(kind).await
                } else {
                    Err("not running".to_string())
                };
                let mem = pid.map(process::tree_memory).unwrap_or_default();
                ComponentStatus {
                    name: kind.name(),
                    pid,
                    // A container counts as running when it answers.
                    running: pid.is_some() || (self.is_external(kind) && probe.is_ok()),
                    ready: probe.is_ok(),
                    port: kind.port(&self.layout.ports),
                    endpoint: kind.endpoint(&e, &self.layout.ports),
                    rss_kib: mem.rss_kib,
                    pss_kib: mem.pss_kib,
                    log: self.log_path(kind),
                    error: probe.err(),
                }
            }
        });
        futures::future::join_all(checks).await
    }
}

/// A service is ready when its `/readyz` answers 200.
async fn http_ready(url: &str) -> Result<(), String> {
    let resp = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("{url} answered {}", resp.status()))
    }
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    tail_matching(path, n, |_| true).join("\n")
}

/// The last `n` lines of the file at `path` that `keep` accepts (none when
/// it cannot be read).
pub fn tail_matching(path: &Path, n: usize, keep: impl Fn(&str) -> bool) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| keep(l)).collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_matching_lines_in_order() {
        let path = std::env::temp_dir().join(format!("ss-tail-{:x}.log", rand::random::<u64>()));
        std::fs::write(&path, "INFO a\nWARN b\nINFO c\nERROR d\nWARN e\nINFO f\n").unwrap();
        let loud = |l: &str| l.starts_with("WARN") || l.starts_with("ERROR");
        assert_eq!(tail_matching(&path, 2, loud), ["ERROR d", "WARN e"]);
        assert_eq!(
            tail_matching(&path, 9, loud),
            ["WARN b", "ERROR d", "WARN e"]
        );
        assert_eq!(tail(&path, 2), "WARN e\nINFO f");
        std::fs::remove_file(&path).unwrap();
        // A file that cannot be read has no lines.
        assert!(tail_matching(&path, 3, |_| true).is_empty());
    }
}
