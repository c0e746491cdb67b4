//! The smallest service on the kit: a route, a periodic worker with a metric,
//! `/healthz`, `/readyz`, `/metrics`, and one stop for all of it.
//! `SHOPSTREAM_HELLO_HTTP_ADDR=127.0.0.1:18070 cargo run -p shopstream-platform --example minimal_service`
use axum::{Router, routing::get};
use prometheus_client::metrics::counter::Counter;
use shopstream_platform::config::{ConfigError, Endpoints, ServiceConfig, env_parse};
use shopstream_platform::service::{BoxError, Listeners, Service, ServiceError, serve_from_env};
use shopstream_platform::shutdown::{CancellationToken, on_signal, sleep_or_stop};
use std::time::Duration;

pub struct Config {
    pub service: ServiceConfig,
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        let mut service = ServiceConfig::new("hello", Endpoints::from_env()?);
        service.http_addr = env_parse("SHOPSTREAM_HELLO_HTTP_ADDR", service.http_addr)?;
        Ok(Config { service })
    }
}

shopstream_platform::service_entry! {
    /// `hello`: says hello, and counts its heartbeats on `/metrics`.
    Server { name: "hello", grpc: false, config: Config, run: run }
}

pub async fn run(cfg: Config, l: Listeners, stop: CancellationToken) -> Result<(), ServiceError> {
    let (svc, beats) = (Service::new(&cfg.service), Counter::<u64>::default());
    svc.metrics()
        .register("hello_heartbeats", "Heartbeats", beats.clone());
    svc.http(Router::new().route("/hello", get(|| async { "hello\n" })))
        .task("heartbeat", |stop| async move {
            while sleep_or_stop(&stop, Duration::from_millis(100)).await {
                beats.inc();
            }
        })
        .run(l, stop)
        .await
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    serve_from_env::<Server>(on_signal()).await
}
