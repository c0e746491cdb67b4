//! The test kit: one call gives a test a running native stack.
//!
//! The stack lives under `target/test-stack` (or `$SHOPSTREAM_TEST_STACK_DIR`)
//! on the test ports ([`Ports::TEST`]), so tests run beside a developer's
//! `shopstream up`. The first test process starts it; later processes (and
//! later runs) reuse it, serialised by a file lock. `shopstream down
//! --state-dir target/test-stack` stops it; the README's test command does so
//! at the end. Tests isolate themselves by names: [`unique`] gives each its own
//! database, topic or bucket.

use std::{path::PathBuf, sync::Arc};

use shopstream_platform::config::{Endpoints, Ports};
use tokio::sync::OnceCell;

use crate::stack::{Progress, Stack};

/// The running test stack.
#[derive(Debug, Clone)]
pub struct TestStack {
    pub stack: Stack,
    pub endpoints: Endpoints,
}

static STACK: OnceCell<TestStack> = OnceCell::const_new();

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from("."))
}

/// `$SHOPSTREAM_TEST_STACK_DIR`, else `<workspace>/target/test-stack`.
pub fn stack_dir() -> PathBuf {
    std::env::var("SHOPSTREAM_TEST_STACK_DIR")
        .ok()
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target").join("test-stack"))
}

/// The `shopstream` binary that serves S3: `$SHOPSTREAM_BIN`, else the
/// workspace's debug build.
pub fn shopstream_bin() -> PathBuf {
    std::env::var("SHOPSTREAM_BIN")
        .ok()
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            workspace_root()
                .join("target")
                .join("debug")
                .join("shopstream")
        })
}

/// The shared test stack, started on first use.
///
/// Panics with the fix when something is missing: tests cannot run without it.
pub async fn stack() -> &'static TestStack {
    STACK
        .get_or_init(|| async {
            let exe = shopstream_bin();
            assert!(
                exe.exists(),
                "the test kit needs the shopstream binary at {} to serve S3: run `cargo build -p shopstream` first (or set SHOPSTREAM_BIN)",
                exe.display()
            );
            let ports = Ports::from_env(Ports::TEST).expect("test ports");
            let mut stack = Stack::new(stack_dir(), ports, exe);
            if test_runtime() == "testcontainers" {
                stack = with_containers(stack).await;
            }
            let report: Arc<dyn Fn(Progress) + Send + Sync> = Arc::new(|p| match p {
                Progress::Starting(k) | Progress::Recovering(k) => {
                    eprintln!("testkit: starting {}", k.name())
                }
                Progress::Failed(k, why) => eprintln!("testkit: {} failed: {why}", k.name()),
                _ => {}
            });
            if let Err(e) = stack.up(report).await {
                panic!(
                    "testkit: the test stack did not come up: {e}\n(run `shopstream doctor` to see what is missing)"
                );
            }
            let endpoints = stack.endpoints();
            TestStack { stack, endpoints }
        })
        .await
}

/// `$SHOPSTREAM_TEST_RUNTIME`: `native` (the default) or `testcontainers`.
pub fn test_runtime() -> String {
    std::env::var("SHOPSTREAM_TEST_RUNTIME")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "native".into())
}

/// The infrastructure in containers on the test ports, the rest native.
/// Panics with the one-line reason when Docker cannot be used.
async fn with_containers(stack: Stack) -> Stack {
    use crate::{RuntimeRecord, containers::Containers};
    let containers = Containers::new(stack.root(), stack.ports(), false);
    let report = |component: &str, what: &str| eprintln!("testkit: {component}: {what}");
    if let Err(e) = containers.up(&report).await {
        panic!("testkit: SHOPSTREAM_TEST_RUNTIME=testcontainers: {e}");
    }
    RuntimeRecord {
        runtime: "testcontainers".into(),
        ..Default::default()
    }
    .write(stack.root())
    .expect("recording the runtime");
    stack.with_external(&Containers::KINDS)
}

/// A name no other test uses: `prefix_` and 10 random hex digits (valid as a
/// database, topic, bucket or consumer-group name).
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{:010x}", rand::random::<u64>() & 0xff_ffff_ffff)
}

/// How often [`eventually`] probes.
pub const POLL: std::time::Duration = std::time::Duration::from_millis(25);

/// Probe until it yields `Some`, or panic naming `what` once `timeout` has
/// passed. Tests wait for conditions with this, never for a fixed time.
pub async fn eventually<T, F, Fut>(what: &str, timeout: std::time::Duration, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    match try_eventually(timeout, probe).await {
        Some(v) => v,
        None => panic!("timed out after {timeout:?} waiting until {what}"),
    }
}

/// [`eventually`] without the panic: `None` when `timeout` passed first.
pub async fn try_eventually<T, F, Fut>(timeout: std::time::Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Wait until `url` answers 2xx (a service's `/readyz`).
pub async fn wait_http_ok(url: &str, timeout: std::time::Duration) {
    let client = reqwest::Client::new();
    eventually(&format!("{url} answers 2xx"), timeout, || {
        let req = client
            .get(url)
            .timeout(std::time::Duration::from_secs(2))
            .send();
        async move {
            req.await
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| ())
        }
    })
    .await
}

impl TestStack {
    /// A fresh database of its own, migrated by nothing yet.
    pub async fn database(&self, prefix: &str) -> sqlx::PgPool {
        let name = unique(prefix);
        shopstream_platform::db::connect(&self.endpoints.postgres_url, &name)
            .await
            .expect("test database")
    }
}

/// Bound on a service under test becoming ready (migrations included).
pub const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// A service started by [`spawn_service`]; stopped when dropped.
#[derive(Debug)]
pub struct RunningService {
    /// `http://127.0.0.1:PORT` of its HTTP listener.
    pub http: String,
    pub http_addr: std::net::SocketAddr,
    /// `http://127.0.0.1:PORT` of its gRPC listener, when it serves gRPC.
    pub grpc: Option<String>,
    pub grpc_addr: Option<std::net::SocketAddr>,
    pub shutdown: tokio_util::sync::CancellationToken,
    result: Option<tokio::sync::oneshot::Receiver<Result<(), String>>>,
    crash: Option<tokio::sync::oneshot::Sender<()>>,
}

impl RunningService {
    /// The gRPC URL; panics for a service without gRPC.
    pub fn grpc_url(&self) -> String {
        self.grpc.clone().expect("this service serves no gRPC")
    }

    /// Stop it and return how `run` ended (panics if it takes over [`READY_TIMEOUT`]).
    pub async fn stop(mut self) -> Result<(), String> {
        self.shutdown.cancel();
        let rx = self.result.take().expect("stopped once");
        tokio::time::timeout(READY_TIMEOUT, rx)
            .await
            .expect("the service did not stop in time")
            .unwrap_or(Err("the service thread panicked".into()))
    }

    /// Stop it as a crash would: its future and its runtime are dropped
    /// where they stand, with no graceful shutdown.
    pub async fn crash(mut self) {
        if let Some(crash) = self.crash.take() {
            let _ = crash.send(());
        }
        let rx = self.result.take().expect("crashed once");
        let _ = tokio::time::timeout(READY_TIMEOUT, rx).await;
    }

    /// Wait until `run` returns by itself (e.g. after a failure).
    pub async fn finished(mut self) -> Result<(), String> {
        let rx = self.result.take().expect("finished once");
        tokio::time::timeout(READY_TIMEOUT, rx)
            .await
            .expect("the service did not finish in time")
            .unwrap_or(Err("the service thread panicked".into()))
    }
}

impl Drop for RunningService {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Start service `E` the way `shopstream serve` does, on port-0 listeners
/// against the shared test stack: `configure` turns the kit's
/// [`ServiceConfig`](shopstream_platform::config::ServiceConfig) (test
/// endpoints and the real listen addresses) into the service's config. The
/// service runs on a thread of its own (its workers need not be `Send`);
/// this returns once `/readyz` answers 2xx, and panics with the service's
/// error if it exits first.
pub async fn spawn_service<E: shopstream_platform::service::Entry>(
    configure: impl FnOnce(shopstream_platform::config::ServiceConfig) -> E::Config,
) -> RunningService {
    let listeners = shopstream_platform::service::Listeners::ephemeral(E::GRPC)
        .await
        .expect("test listeners");
    spawn_service_on::<E>(listeners, configure).await
}

/// [`spawn_service`] on listeners bound beforehand (when another party must
/// know the service's address before it starts).
pub async fn spawn_service_on<E: shopstream_platform::service::Entry>(
    listeners: shopstream_platform::service::Listeners,
    configure: impl FnOnce(shopstream_platform::config::ServiceConfig) -> E::Config,
) -> RunningService {
    use shopstream_platform::{config::ServiceConfig, service::Listeners};
    let stack = stack().await;
    let http_addr = listeners.http_addr().expect("http addr");
    let grpc_addr = listeners.grpc_addr();
    let mut service = ServiceConfig::new(E::NAME, stack.endpoints.clone());
    service.http_addr = http_addr;
    if let Some(g) = grpc_addr {
        service.grpc_addr = g;
    }
    let cfg = configure(service);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    let (crash_tx, crash_rx) = tokio::sync::oneshot::channel::<()>();
    // Listeners move to the service's own runtime.
    let std_http = listeners.http.into_std().expect("std listener");
    let std_grpc = listeners.grpc.map(|l| l.into_std().expect("std listener"));
    let stop = shutdown.clone();
    std::thread::Builder::new()
        .name(format!("svc-{}", E::NAME))
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("service runtime");
            let result = rt.block_on(async move {
                let listeners = Listeners {
                    http: tokio::net::TcpListener::from_std(std_http).map_err(|e| e.to_string())?,
                    grpc: match std_grpc {
                        Some(g) => {
                            Some(tokio::net::TcpListener::from_std(g).map_err(|e| e.to_string())?)
                        }
                        None => None,
                    },
                };
                tokio::select! {
                    r = E::run(cfg, listeners, stop) => r.map_err(|e| e.to_string()),
                    Ok(()) = crash_rx => Err("crashed".to_string()),
                }
            });
            // Dropping the runtime aborts whatever the service spawned.
            drop(rt);
            let _ = tx.send(result);
        })
        .expect("service thread");
    let http = format!("http://{http_addr}");
    let readyz = format!("{http}/readyz");
    let ready = wait_http_ok(&readyz, READY_TIMEOUT);
    tokio::select! {
        _ = ready => {}
        ended = &mut rx => panic!("{} exited before it was ready: {ended:?}", E::NAME),
    }
    RunningService {
        http,
        http_addr,
        grpc: grpc_addr.map(|g| format!("http://{g}")),
        grpc_addr,
        shutdown,
        result: Some(rx),
        crash: Some(crash_tx),
    }
}

/// A service run as `shopstream serve NAME` in a child process (killed on
/// drop), for tests of a crate that must not link the service it talks to.
#[derive(Debug)]
pub struct ServiceProcess {
    /// `http://127.0.0.1:PORT` of its HTTP listener.
    pub http: String,
    /// `http://127.0.0.1:PORT` of its gRPC listener.
    pub grpc: String,
    child: tokio::process::Child,
}

impl ServiceProcess {
    /// Wait up to `timeout` for the process to exit by itself (a crash, a
    /// failpoint); its exit status, or None if it still runs.
    pub async fn exited(
        &mut self,
        timeout: std::time::Duration,
    ) -> Option<std::process::ExitStatus> {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .ok()
            .and_then(Result::ok)
    }
}

/// Start `shopstream serve NAME` from [`shopstream_bin`] on free loopback
/// ports against the shared test stack, with `env` added (e.g. its database
/// name), and wait until `/readyz` answers 2xx.
pub async fn spawn_process(name: &str, env: &[(&str, String)]) -> ServiceProcess {
    let stack = stack().await;
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
    };
    let (http, grpc) = (free(), free());
    let upper = name.to_ascii_uppercase().replace('-', "_");
    let e = &stack.endpoints;
    let log = stack_dir().join(format!("{}.log", unique(name)));
    let out = std::fs::File::create(&log).expect("service log");
    let mut cmd = tokio::process::Command::new(shopstream_bin());
    cmd.args(["serve", name])
        .env(format!("SHOPSTREAM_{upper}_HTTP_ADDR"), http.to_string())
        .env(format!("SHOPSTREAM_{upper}_GRPC_ADDR"), grpc.to_string())
        .env("SHOPSTREAM_POSTGRES_URL", &e.postgres_url)
        .env("SHOPSTREAM_REDIS_URL", &e.redis_url)
        .env("SHOPSTREAM_KAFKA_BROKERS", &e.kafka_brokers)
        .env("SHOPSTREAM_TEMPORAL_URL", &e.temporal_url)
        .env("SHOPSTREAM_S3_ENDPOINT", &e.s3_endpoint)
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone().expect("service log"))
        .stderr(out)
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("shopstream serve");
    let http_url = format!("http://{http}");
    let readyz = format!("{http_url}/readyz");
    // A failure shows the end of the service's log: CI prints only the panic.
    let ready = std::panic::AssertUnwindSafe(wait_http_ok(&readyz, READY_TIMEOUT));
    tokio::select! {
        r = futures::FutureExt::catch_unwind(ready) => if r.is_err() {
            panic!(
                "`shopstream serve {name}` was not ready within {READY_TIMEOUT:?}; the end of {}:\n{}",
                log.display(),
                log_tail(&log)
            );
        },
        status = child.wait() => panic!(
            "`shopstream serve {name}` exited before it was ready ({status:?}); the end of {}:\n{}",
            log.display(),
            log_tail(&log)
        ),
    }
    ServiceProcess {
        http: http_url,
        grpc: format!("http://{grpc}"),
        child,
    }
}

/// `GET url` as JSON; panics naming the URL when it cannot.
pub async fn get_json(client: &reqwest::Client, url: &str) -> serde_json::Value {
    let resp = client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    resp.json()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: not JSON: {e}"))
}

/// The sum of the Prometheus series `name` at `{base}/metrics` over the lines
/// whose labels contain each of `labels` (e.g. `outcome="ok"`); 0 if none.
pub async fn metric(base: &str, name: &str, labels: &[&str]) -> f64 {
    let url = format!("{base}/metrics");
    let text = reqwest::get(&url)
        .await
        .and_then(|r| r.error_for_status())
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    shopstream_platform::metrics::sum_series(&text, name, labels)
}

/// A catalog change as the cdc service publishes it on `product.events`: a
/// platform envelope whose payload is a Debezium-style record around a
/// catalog outbox row that carries `payload` (a `ProductChanged`), with
/// cdc's commit-time header. `op` is `c`, `u` or `r` (the row in `after`)
/// or `d` (the row in `before`). For tests of the consumers of that topic
/// (search, the gateway's product cache) that publish without a catalog.
pub fn cdc_product_changed(
    product_id: &str,
    payload: serde_json::Value,
    op: &str,
) -> shopstream_platform::events::Envelope {
    use shopstream_platform::{
        clock::{Clock, SystemClock},
        ids::{IdGen, SystemIdGen},
    };
    const TYPE: &str = "shopstream.events.v1.ProductChanged";
    let now = SystemClock.now_ms();
    let row = serde_json::json!({
        "id": SystemIdGen.new_id(),
        "tenant_id": "default",
        "aggregate_id": product_id,
        "event_type": TYPE,
        "payload": payload,
        "created_at": now,
    });
    let (before, after) = if op == "d" {
        (row, serde_json::Value::Null)
    } else {
        (serde_json::Value::Null, row)
    };
    let body = serde_json::json!({
        "before": before, "after": after, "op": op, "ts_ms": now,
        "source": {"db": "catalog", "table": "outbox", "lsn": 1, "txId": 1, "ts_ms": now},
    });
    let mut e = shopstream_platform::events::Envelope::new(
        TYPE,
        1,
        "default",
        product_id,
        &body,
        &SystemClock,
        &SystemIdGen,
    )
    .expect("a JSON body encodes");
    e.headers.insert("cdc-commit-ts-ms".into(), now.to_string());
    e
}

/// The last lines of a log file (for panic messages).
fn log_tail(path: &std::path::Path) -> String {
    const LINES: usize = 40;
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LINES)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn eventually_returns_the_first_value_and_gives_up_at_the_deadline() {
        let mut n = 0;
        let v = eventually("three probes", std::time::Duration::from_secs(1), || {
            n += 1;
            let done = n == 3;
            async move { done.then_some(n) }
        })
        .await;
        assert_eq!(v, 3);
        let never = try_eventually(std::time::Duration::from_millis(100), || async {
            None::<()>
        });
        assert_eq!(never.await, None);
    }

    #[test]
    fn unique_names_are_valid_identifiers_and_differ() {
        let a = unique("orders");
        let b = unique("orders");
        assert_ne!(a, b);
        assert!(a.starts_with("orders_"));
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        );
    }
}
