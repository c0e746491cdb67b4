//! The one way a service starts.
//!
//! A service declares what it is — its name and shared config, its HTTP
//! router, its gRPC routes, its readiness checks and its background workers —
//! and [`Service::run`] serves it on listeners the caller bound. Everything
//! runs until `shutdown` fires **or any part fails**: an HTTP listener that
//! dies, a gRPC server error or a worker returning an error stops every other
//! part, and `run` returns that first error. Nothing is left serving half a
//! service.
//!
//! ```text
//! Service::new(&cfg.service)
//!     .check_postgres("postgres", pool)
//!     .http(api::http::routes(state))
//!     .grpc(FooServiceServer::new(api))
//!     .worker("expiry", move |stop| async move { expire(stop).await; Ok(()) })
//!     .run(listeners, shutdown)
//!     .await
//! ```
//!
//! Workers run on the caller's task (joined, not spawned), so a worker need
//! not be `Send` — the Temporal worker is not.

use std::{
    future::Future,
    io,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, serve::ListenerExt as _};
use futures::{StreamExt, future::LocalBoxFuture, stream::FuturesUnordered};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::{config::ServiceConfig, grpc, health::Readiness, http, metrics::Metrics};

/// Any error a worker or a start-up step reports.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// How long the HTTP accept loop waits after running out of file descriptors
/// or memory before it tries again (the condition may clear as connections close).
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(500);

/// Why a service stopped other than by `shutdown`.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{service}: HTTP listener failed: {source}")]
    HttpListener { service: String, source: io::Error },
    #[error("{service}: HTTP server failed: {source}")]
    Http { service: String, source: io::Error },
    #[error("{service}: gRPC server failed: {source}")]
    Grpc {
        service: String,
        source: tonic::transport::Error,
    },
    #[error("{service}: gRPC routes were declared but no gRPC listener was given")]
    NoGrpcListener { service: String },
    #[error("{service}: worker {worker} failed: {source}")]
    Worker {
        service: String,
        worker: &'static str,
        source: BoxError,
    },
}

/// The listeners a service serves on. The caller binds them (the CLI on the
/// configured addresses, tests on port 0), so tests never race for ports.
#[derive(Debug)]
pub struct Listeners {
    pub http: TcpListener,
    /// `None` for services without a gRPC surface.
    pub grpc: Option<TcpListener>,
}

impl Listeners {
    /// Bind the configured addresses: HTTP always, gRPC when `with_grpc`.
    pub async fn bind(cfg: &ServiceConfig, with_grpc: bool) -> io::Result<Listeners> {
        let http = bind(cfg.http_addr).await?;
        let grpc = match with_grpc {
            true => Some(bind(cfg.grpc_addr).await?),
            false => None,
        };
        Ok(Listeners { http, grpc })
    }

    /// Ephemeral loopback listeners (port 0), for tests.
    pub async fn ephemeral(with_grpc: bool) -> io::Result<Listeners> {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let http = TcpListener::bind(any).await?;
        let grpc = match with_grpc {
            true => Some(TcpListener::bind(any).await?),
            false => None,
        };
        Ok(Listeners { http, grpc })
    }

    pub fn http_addr(&self) -> io::Result<SocketAddr> {
        self.http.local_addr()
    }

    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc.as_ref().and_then(|l| l.local_addr().ok())
    }
}

async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

type StartWorker<'a> =
    Box<dyn FnOnce(CancellationToken) -> LocalBoxFuture<'a, Result<(), BoxError>> + 'a>;

/// A service being declared; [`Service::run`] serves it.
pub struct Service<'a> {
    ops: http::Ops,
    redis_url: String,
    default_tenant: String,
    request_timeout: Duration,
    http: Router,
    raw_http: Router,
    grpc: Option<tonic::service::Routes>,
    workers: Vec<(&'static str, StartWorker<'a>)>,
    on_stop: Vec<LocalBoxFuture<'a, ()>>,
}

impl std::fmt::Debug for Service<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("name", &self.ops.service)
            .field("grpc", &self.grpc.is_some())
            .field(
                "workers",
                &self.workers.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl<'a> Service<'a> {
    /// A service named and limited by `cfg`, with `/healthz`, `/readyz` and
    /// `/metrics`, no routes, no checks and no workers yet.
    pub fn new(cfg: &ServiceConfig) -> Service<'a> {
        Service {
            ops: http::Ops::from_config(cfg, Readiness::new()),
            redis_url: cfg.endpoints.redis_url.clone(),
            default_tenant: cfg.default_tenant.clone(),
            request_timeout: cfg.request_timeout,
            http: Router::new(),
            raw_http: Router::new(),
            grpc: None,
            workers: Vec::new(),
            on_stop: Vec::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.ops.service
    }

    /// The registry `/metrics` renders; register the service's own metrics here.
    pub fn metrics(&self) -> &Metrics {
        &self.ops.metrics
    }

    /// Routes served behind the platform middleware (problem+json errors,
    /// deadline, body limit, request metrics, trace context). Merged with
    /// earlier ones.
    pub fn http(mut self, routes: Router) -> Service<'a> {
        self.http = self.http.merge(routes);
        self
    }

    /// Routes whose answers must reach the client untouched (a relayed
    /// webhook, an emulated third-party API): outside the problem+json layer.
    pub fn raw_http(mut self, routes: Router) -> Service<'a> {
        self.raw_http = self.raw_http.merge(routes);
        self
    }

    /// Add a gRPC service (with the platform's deadline and trace layer).
    pub fn grpc<S>(mut self, svc: S) -> Service<'a>
    where
        S: tower::Service<::http::Request<tonic::body::Body>, Error = std::convert::Infallible>
            + tonic::server::NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.grpc = Some(match self.grpc.take() {
            Some(routes) => routes.add_service(svc),
            None => tonic::service::Routes::new(svc),
        });
        self
    }

    /// Let requests to `route` (as routed, e.g. `/orders/{id}/events`) run
    /// `extra` longer than the request deadline: a long-poll's wait.
    pub fn long_poll(mut self, route: &str, extra: std::time::Duration) -> Service<'a> {
        let mut routes = self.ops.long_polls.as_ref().clone();
        routes.push((route.to_string(), extra));
        self.ops.long_polls = Arc::new(routes);
        self
    }

    /// A readiness check behind `/readyz` (bounded by [`crate::health::CHECK_TIMEOUT`]).
    pub fn check<F, Fut>(mut self, name: &str, check: F) -> Service<'a>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.ops.readiness = self.ops.readiness.with_check(name.to_string(), check);
        self
    }

    /// Ready while `SELECT 1` answers on `pool`; the pool is closed after the
    /// service stopped.
    pub fn check_postgres(mut self, name: &str, pool: sqlx::PgPool) -> Service<'a> {
        self.ops.readiness = self.ops.readiness.with_postgres(name, pool.clone());
        self.on_stop(async move { pool.close().await })
    }

    /// A background worker. It gets a token that fires when the service
    /// stops and must return soon after. Returning `Ok` early just ends
    /// that worker; returning an error stops the whole service.
    pub fn worker<F, Fut, E>(mut self, name: &'static str, start: F) -> Service<'a>
    where
        F: FnOnce(CancellationToken) -> Fut + 'a,
        Fut: Future<Output = Result<(), E>> + 'a,
        E: Into<BoxError>,
    {
        self.workers.push((
            name,
            Box::new(move |stop| Box::pin(async move { start(stop).await.map_err(Into::into) })),
        ));
        self
    }

    /// A background task that cannot fail (a periodic sweep that logs its
    /// own errors): [`Service::worker`] without the `Result`.
    pub fn task<F, Fut>(self, name: &'static str, start: F) -> Service<'a>
    where
        F: FnOnce(CancellationToken) -> Fut + 'a,
        Fut: Future<Output = ()> + 'a,
    {
        self.worker(name, move |stop| async move {
            start(stop).await;
            Ok::<(), std::convert::Infallible>(())
        })
    }

    /// Something to run once everything has stopped (close a pool, flush an index).
    pub fn on_stop(mut self, fut: impl Future<Output = ()> + 'a) -> Service<'a> {
        self.on_stop.push(Box::pin(fut));
        self
    }

    /// Serve until `shutdown` fires or any part fails; then stop every part,
    /// run the `on_stop` steps and return the first failure.
    pub async fn run(
        self,
        listeners: Listeners,
        shutdown: CancellationToken,
    ) -> Result<(), ServiceError> {
        let service = self.ops.service.clone();
        let stop = shutdown.child_token();
        // The fault catalog: this process reads the flag store, and the
        // memory and CPU hogs wait for their faults.
        if !self.redis_url.is_empty() {
            crate::faults::start(&self.redis_url, &service);
        }
        let hogs = tokio::spawn(crate::faults::run_hogs(service.clone()));
        let http_addr = listeners.http.local_addr().ok();
        let grpc_addr = listeners.grpc_addr();
        let mut parts: FuturesUnordered<LocalBoxFuture<'a, Result<(), ServiceError>>> =
            FuturesUnordered::new();

        let failed = Arc::new(Mutex::new(None));
        let app = http::router(self.http, self.ops).merge(self.raw_http);
        let listener = GuardedListener {
            inner: listeners.http,
            failed: failed.clone(),
            stop: stop.clone(),
        }
        .tap_io(|tcp: &mut TcpStream| {
            let _ = tcp.set_nodelay(true);
        });
        parts.push(Box::pin({
            let (stop, service) = (stop.clone(), service.clone());
            async move {
                let served = axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
                if let Some(source) = failed.lock().map(|mut f| f.take()).unwrap_or(None) {
                    return Err(ServiceError::HttpListener { service, source });
                }
                served.map_err(|source| ServiceError::Http { service, source })
            }
        }));

        match (self.grpc, listeners.grpc) {
            (Some(routes), Some(listener)) => parts.push(Box::pin({
                let (stop, service) = (stop.clone(), service.clone());
                let tenant = self.default_tenant.clone();
                async move {
                    grpc::serve_as(
                        &service,
                        listener,
                        routes,
                        self.request_timeout,
                        tenant,
                        stop,
                    )
                    .await
                    .map_err(|source| ServiceError::Grpc { service, source })
                }
            })),
            (Some(_), None) => return Err(ServiceError::NoGrpcListener { service }),
            (None, _) => {}
        }

        for (worker, start) in self.workers {
            let service = service.clone();
            let fut = start(stop.clone());
            parts.push(Box::pin(async move {
                fut.await.map_err(|source| ServiceError::Worker {
                    service,
                    worker,
                    source,
                })
            }));
        }

        tracing::info!(
            http_addr = ?http_addr,
            grpc_addr = ?grpc_addr,
            "{service} serving"
        );
        let mut first_error = None;
        while let Some(result) = parts.next().await {
            if let Err(e) = result {
                if first_error.is_none() {
                    tracing::error!(error = %e, "{service} stopping: a part failed");
                    first_error = Some(e);
                }
                stop.cancel();
            }
        }
        hogs.abort();
        for step in self.on_stop {
            step.await;
        }
        tracing::info!("{service} stopped");
        first_error.map_or(Ok(()), Err)
    }
}

/// A TCP listener whose fatal accept error stops the service instead of being
/// retried forever (axum's own listener logs and retries every error).
struct GuardedListener {
    inner: TcpListener,
    failed: Arc<Mutex<Option<io::Error>>>,
    stop: CancellationToken,
}

impl axum::serve::Listener for GuardedListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok(conn) => return conn,
                Err(e) if is_per_connection(&e) => continue,
                Err(e) if is_exhaustion(&e) => {
                    tracing::error!(error = %e, "accept failed; retrying");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "HTTP listener failed");
                    if let Ok(mut slot) = self.failed.lock() {
                        slot.get_or_insert(e);
                    }
                    self.stop.cancel();
                    // Graceful shutdown ends the server; never accept again.
                    std::future::pending::<()>().await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// Errors about one incoming connection, not the listener.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// Out of file descriptors, buffers or memory: may clear as connections close.
fn is_exhaustion(e: &io::Error) -> bool {
    const EMFILE: i32 = 24;
    const ENFILE: i32 = 23;
    const ENOBUFS: i32 = 105;
    const ENOMEM: i32 = 12;
    matches!(e.raw_os_error(), Some(EMFILE | ENFILE | ENOBUFS | ENOMEM))
}

/// A started service: what `shopstream serve NAME` runs. Implemented by each
/// service crate's entry point so the CLI's table and the test kit start
/// every service the same way.
pub trait Entry {
    /// The service's typed configuration.
    type Config: Send + 'static;
    /// Its name in `shopstream serve NAME` and [`crate::config::SERVICE_NAMES`].
    const NAME: &'static str;
    /// Whether it serves gRPC (and so needs a gRPC listener).
    const GRPC: bool;

    fn config_from_env() -> Result<Self::Config, BoxError>;
    /// The shared part of the config (listen addresses, endpoints, limits).
    fn service_config(cfg: &Self::Config) -> &ServiceConfig;
    /// Serve until `shutdown` or a failure.
    fn run(
        cfg: Self::Config,
        listeners: Listeners,
        shutdown: CancellationToken,
    ) -> impl Future<Output = Result<(), BoxError>>;
}

/// `shopstream serve NAME` for an [`Entry`]: read the config, bind the
/// configured listeners, serve until `shutdown`.
pub async fn serve_from_env<E: Entry>(shutdown: CancellationToken) -> Result<(), BoxError> {
    let cfg = E::config_from_env()?;
    let listeners = Listeners::bind(E::service_config(&cfg), E::GRPC).await?;
    E::run(cfg, listeners, shutdown).await
}

/// Declare a service crate's [`Entry`]: a unit struct whose config type has
/// `from_env()` and a `service: ServiceConfig` field, started by an async
/// `run(cfg, listeners, shutdown)`.
///
/// ```text
/// shopstream_platform::service_entry! {
///     /// Catalog as `shopstream serve catalog` and the test kit start it.
///     Server { name: "catalog", grpc: true, config: Config, run: run }
/// }
/// ```
#[macro_export]
macro_rules! service_entry {
    ($(#[$meta:meta])* $server:ident {
        name: $name:expr, grpc: $grpc:expr, config: $cfg:ty, run: $run:path $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Debug)]
        pub struct $server;

        impl $crate::service::Entry for $server {
            type Config = $cfg;
            const NAME: &'static str = $name;
            const GRPC: bool = $grpc;

            fn config_from_env() -> Result<$cfg, $crate::service::BoxError> {
                Ok(<$cfg>::from_env()?)
            }

            fn service_config(cfg: &$cfg) -> &$crate::config::ServiceConfig {
                &cfg.service
            }

            async fn run(
                cfg: $cfg,
                listeners: $crate::service::Listeners,
                shutdown: $crate::shutdown::CancellationToken,
            ) -> Result<(), $crate::service::BoxError> {
                Ok($run(cfg, listeners, shutdown).await?)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Endpoints, Ports};

    fn cfg() -> ServiceConfig {
        ServiceConfig::new("kit-test", Endpoints::native(Ports::TEST))
    }

    #[tokio::test]
    async fn shutdown_stops_servers_and_workers() {
        let listeners = Listeners::ephemeral(false).await.unwrap();
        let shutdown = CancellationToken::new();
        let svc = Service::new(&cfg()).worker("waits", |stop| async move {
            stop.cancelled().await;
            Ok::<(), io::Error>(())
        });
        shutdown.cancel();
        svc.run(listeners, shutdown).await.unwrap();
    }

    #[tokio::test]
    async fn a_failing_worker_stops_everything_and_is_returned() {
        let listeners = Listeners::ephemeral(false).await.unwrap();
        let stopped_other = Arc::new(Mutex::new(false));
        let flag = stopped_other.clone();
        let err = Service::new(&cfg())
            .worker("patient", move |stop| async move {
                stop.cancelled().await;
                *flag.lock().unwrap() = true;
                Ok::<(), io::Error>(())
            })
            .worker("broken", |_| async { Err(io::Error::other("boom")) })
            .run(listeners, CancellationToken::new())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ServiceError::Worker {
                    worker: "broken",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("boom"), "{err}");
        assert!(*stopped_other.lock().unwrap());
    }

    #[tokio::test]
    async fn declared_grpc_without_a_listener_is_an_error() {
        let listeners = Listeners::ephemeral(false).await.unwrap();
        let health = tonic_health_stub();
        let err = Service::new(&cfg())
            .grpc(health)
            .run(listeners, CancellationToken::new())
            .await
            .unwrap_err();
        assert!(matches!(err, ServiceError::NoGrpcListener { .. }), "{err}");
    }

    /// The smallest gRPC service there is: routes nothing, named "stub".
    fn tonic_health_stub() -> Stub {
        Stub
    }

    #[derive(Clone)]
    struct Stub;

    impl tonic::server::NamedService for Stub {
        const NAME: &'static str = "stub.Stub";
    }

    impl tower::Service<::http::Request<tonic::body::Body>> for Stub {
        type Response = ::http::Response<tonic::body::Body>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: ::http::Request<tonic::body::Body>) -> Self::Future {
            std::future::ready(Ok(tonic::Status::unimplemented("stub").into_http()))
        }
    }
}
