//! Typed configuration from `SHOPSTREAM_*` environment variables.
//!
//! Every default matches the native runtime started by `shopstream up`, so a
//! service started with no environment at all finds the local infrastructure.
//! The port numbers live here once; the runtime and the test kit read them from
//! [`Ports`].

use std::{net::SocketAddr, str::FromStr, time::Duration};

use secrecy::SecretString;

/// Errors while reading configuration: always name the variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {name} has an invalid value {value:?}: {reason}")]
    Invalid {
        name: String,
        value: String,
        reason: String,
    },
}

/// Read `name` from the environment, falling back to `default`.
pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// Read and parse `name`, falling back to `default` when unset.
pub fn env_parse<T>(name: &str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    parse_value(name, std::env::var(name).ok().as_deref(), default)
}

/// Parse the raw value of `name` (None or empty = unset).
fn parse_value<T>(name: &str, raw: Option<&str>, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    match raw {
        Some(v) if !v.is_empty() => v.parse().map_err(|e: T::Err| ConfigError::Invalid {
            name: name.to_string(),
            value: v.to_string(),
            reason: e.to_string(),
        }),
        _ => Ok(default),
    }
}

/// Loopback ports of the native infrastructure. Non-default on purpose, so a
/// Postgres or Redis the user already runs is never touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ports {
    pub postgres: u16,
    pub redis: u16,
    pub kafka: u16,
    pub temporal: u16,
    pub temporal_http: u16,
    pub temporal_metrics: u16,
    pub s3: u16,
    /// First port of the services: service i (in [`SERVICE_NAMES`] order)
    /// listens for HTTP on `services + i` and for gRPC on
    /// `services + GRPC_PORT_OFFSET + i`.
    pub services: u16,
}

impl Ports {
    /// Ports of the stack that `shopstream up` starts.
    pub const DEV: Ports = Ports {
        postgres: 15432,
        redis: 16379,
        kafka: 19092,
        temporal: 17233,
        temporal_http: 17243,
        temporal_metrics: 17263,
        s3: 19000,
        services: 18080,
    };

    /// Ports of the stack the test kit starts, so tests can run beside a dev stack.
    pub const TEST: Ports = Ports {
        postgres: 25432,
        redis: 26379,
        kafka: 29092,
        temporal: 27233,
        temporal_http: 27243,
        temporal_metrics: 27263,
        s3: 29000,
        services: 28080,
    };

    /// `base` with each port overridable by `SHOPSTREAM_<NAME>_PORT`.
    pub fn from_env(base: Ports) -> Result<Ports, ConfigError> {
        Ok(Ports {
            postgres: env_parse("SHOPSTREAM_PG_PORT", base.postgres)?,
            redis: env_parse("SHOPSTREAM_REDIS_PORT", base.redis)?,
            kafka: env_parse("SHOPSTREAM_KAFKA_PORT", base.kafka)?,
            temporal: env_parse("SHOPSTREAM_TEMPORAL_PORT", base.temporal)?,
            temporal_http: env_parse("SHOPSTREAM_TEMPORAL_HTTP_PORT", base.temporal_http)?,
            temporal_metrics: env_parse("SHOPSTREAM_TEMPORAL_METRICS_PORT", base.temporal_metrics)?,
            s3: env_parse("SHOPSTREAM_S3_PORT", base.s3)?,
            services: env_parse("SHOPSTREAM_SERVICES_PORT_BASE", base.services)?,
        })
    }

    /// The variables [`Ports::from_env`] reads, set to these ports: what a
    /// child process (a service, or a test's `shopstream`) needs to find this stack.
    pub fn env_vars(&self) -> [(&'static str, String); 8] {
        [
            ("SHOPSTREAM_PG_PORT", self.postgres.to_string()),
            ("SHOPSTREAM_REDIS_PORT", self.redis.to_string()),
            ("SHOPSTREAM_KAFKA_PORT", self.kafka.to_string()),
            ("SHOPSTREAM_TEMPORAL_PORT", self.temporal.to_string()),
            (
                "SHOPSTREAM_TEMPORAL_HTTP_PORT",
                self.temporal_http.to_string(),
            ),
            (
                "SHOPSTREAM_TEMPORAL_METRICS_PORT",
                self.temporal_metrics.to_string(),
            ),
            ("SHOPSTREAM_S3_PORT", self.s3.to_string()),
            ("SHOPSTREAM_SERVICES_PORT_BASE", self.services.to_string()),
        ]
    }
}

/// The services, in port order (see [`Ports::services`]).
pub const SERVICE_NAMES: &[&str] = &[
    "gateway",
    "identity",
    "catalog",
    "inventory",
    "stripe-sim",
    "orders",
    "payments",
    "cdc",
    "search",
    "notifications",
    "mail-sim",
    "analytics",
    "media",
    "feed",
    "compliance",
    "otel",
];

/// A service's gRPC port is its HTTP port plus this (room for 50 services).
pub const GRPC_PORT_OFFSET: u16 = 50;

/// HTTP and gRPC loopback addresses of service `name` for a port base.
pub fn service_addrs(name: &str, base: u16) -> Option<(SocketAddr, SocketAddr)> {
    let i = SERVICE_NAMES.iter().position(|n| *n == name)? as u16;
    Some((
        SocketAddr::from(([127, 0, 0, 1], base + i)),
        SocketAddr::from(([127, 0, 0, 1], base + GRPC_PORT_OFFSET + i)),
    ))
}

/// Default addresses of service `name` (dev ports, `SHOPSTREAM_SERVICES_PORT_BASE`
/// applied). `SHOPSTREAM_<NAME>_HTTP_ADDR` / `_GRPC_ADDR` still override each.
pub fn default_service_addrs(name: &str) -> Result<(SocketAddr, SocketAddr), ConfigError> {
    let base = Ports::from_env(Ports::DEV)?.services;
    service_addrs(name, base).ok_or_else(|| ConfigError::Invalid {
        name: "service name".into(),
        value: name.into(),
        reason: format!("not one of {}", SERVICE_NAMES.join(", ")),
    })
}

/// The `SHOPSTREAM_<NAME>_...` prefix of a service: `stripe-sim` → `STRIPE_SIM`.
fn env_name(service: &str) -> String {
    service.to_ascii_uppercase().replace('-', "_")
}

/// Where to reach service `name` over gRPC: `$var` when set, else its default
/// address on the dev ports, as `http://host:port`.
pub fn grpc_url_of(name: &str, var: &str) -> Result<String, ConfigError> {
    let (_, grpc) = default_service_addrs(name)?;
    Ok(env_or(var, &format!("http://{grpc}")))
}

/// Where to reach service `name` over HTTP: `$var` when set, else its default
/// address on the dev ports, as `http://host:port`.
pub fn http_url_of(name: &str, var: &str) -> Result<String, ConfigError> {
    let (http, _) = default_service_addrs(name)?;
    Ok(env_or(var, &format!("http://{http}")))
}

/// Where the shared infrastructure is. Built from [`Ports`] for the native
/// runtime, or entirely from `SHOPSTREAM_*_URL` variables for compose and AWS.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// Postgres server URL without a database name, e.g. `postgres://shopstream@127.0.0.1:15432`.
    pub postgres_url: String,
    pub redis_url: String,
    /// Kafka bootstrap servers, comma separated.
    pub kafka_brokers: String,
    /// Temporal frontend, e.g. `http://127.0.0.1:17233`.
    pub temporal_url: String,
    pub temporal_namespace: String,
    pub s3_endpoint: String,
    pub s3_region: String,
    pub s3_access_key: String,
    pub s3_secret_key: SecretString,
    /// OTLP gRPC endpoint; traces are exported only when this is set.
    pub otlp_endpoint: Option<String>,
}

/// Access key of the native S3 server. Local-only credentials, not a secret.
pub const NATIVE_S3_ACCESS_KEY: &str = "shopstream";
/// Secret key of the native S3 server. Local-only credentials, not a secret.
pub const NATIVE_S3_SECRET_KEY: &str = "shopstream-local-secret";

impl Endpoints {
    /// Endpoints of a native stack on `ports`, before environment overrides.
    pub fn native(ports: Ports) -> Endpoints {
        Endpoints {
            postgres_url: format!("postgres://shopstream@127.0.0.1:{}", ports.postgres),
            redis_url: format!("redis://127.0.0.1:{}", ports.redis),
            kafka_brokers: format!("127.0.0.1:{}", ports.kafka),
            temporal_url: format!("http://127.0.0.1:{}", ports.temporal),
            temporal_namespace: "default".into(),
            s3_endpoint: format!("http://127.0.0.1:{}", ports.s3),
            s3_region: "us-east-1".into(),
            s3_access_key: NATIVE_S3_ACCESS_KEY.into(),
            s3_secret_key: SecretString::from(NATIVE_S3_SECRET_KEY),
            otlp_endpoint: None,
        }
    }

    /// Native defaults on the dev ports, each overridable by `SHOPSTREAM_*`.
    pub fn from_env() -> Result<Endpoints, ConfigError> {
        let native = Endpoints::native(Ports::from_env(Ports::DEV)?);
        Ok(Endpoints {
            postgres_url: env_or("SHOPSTREAM_POSTGRES_URL", &native.postgres_url),
            redis_url: env_or("SHOPSTREAM_REDIS_URL", &native.redis_url),
            kafka_brokers: env_or("SHOPSTREAM_KAFKA_BROKERS", &native.kafka_brokers),
            temporal_url: env_or("SHOPSTREAM_TEMPORAL_URL", &native.temporal_url),
            temporal_namespace: env_or("SHOPSTREAM_TEMPORAL_NAMESPACE", &native.temporal_namespace),
            s3_endpoint: env_or("SHOPSTREAM_S3_ENDPOINT", &native.s3_endpoint),
            s3_region: env_or("SHOPSTREAM_S3_REGION", &native.s3_region),
            s3_access_key: env_or("SHOPSTREAM_S3_ACCESS_KEY", &native.s3_access_key),
            s3_secret_key: SecretString::from(env_or(
                "SHOPSTREAM_S3_SECRET_KEY",
                NATIVE_S3_SECRET_KEY,
            )),
            otlp_endpoint: std::env::var("SHOPSTREAM_OTLP_ENDPOINT")
                .ok()
                .filter(|v| !v.is_empty()),
        })
    }

    /// URL of one database on the Postgres server.
    pub fn database_url(&self, database: &str) -> String {
        format!("{}/{}", self.postgres_url.trim_end_matches('/'), database)
    }
}

/// The tenant of requests that carry none (the demo runs one tenant).
pub const DEFAULT_TENANT: &str = "default";

/// Settings every service shares: its name, listeners, limits and the infrastructure.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Service name; also its database name and its consumer-group prefix.
    pub name: String,
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    pub endpoints: Endpoints,
    pub request_timeout: Duration,
    pub body_limit_bytes: usize,
    /// Tenant used when a request carries none (the demo runs one tenant).
    pub default_tenant: String,
}

impl ServiceConfig {
    /// Default request deadline for HTTP and gRPC handlers.
    pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 10_000;
    /// Default body limit; larger requests get 413.
    pub const DEFAULT_BODY_LIMIT_BYTES: usize = 1024 * 1024;

    /// Read `SHOPSTREAM_<SERVICE>_HTTP_ADDR`, `SHOPSTREAM_<SERVICE>_GRPC_ADDR`
    /// (defaults: the service's slot in [`Ports::services`]) and the shared
    /// variables. An unknown service name is an error, never a made-up port.
    pub fn from_env(name: &str) -> Result<ServiceConfig, ConfigError> {
        let (default_http, default_grpc) = default_service_addrs(name)?;
        let upper = env_name(name);
        Ok(ServiceConfig {
            http_addr: env_parse(&format!("SHOPSTREAM_{upper}_HTTP_ADDR"), default_http)?,
            grpc_addr: env_parse(&format!("SHOPSTREAM_{upper}_GRPC_ADDR"), default_grpc)?,
            endpoints: Endpoints::from_env()?,
            request_timeout: Duration::from_millis(env_parse(
                "SHOPSTREAM_REQUEST_TIMEOUT_MS",
                Self::DEFAULT_REQUEST_TIMEOUT_MS,
            )?),
            body_limit_bytes: env_parse(
                "SHOPSTREAM_BODY_LIMIT_BYTES",
                Self::DEFAULT_BODY_LIMIT_BYTES,
            )?,
            default_tenant: env_or("SHOPSTREAM_DEFAULT_TENANT", DEFAULT_TENANT),
            ..ServiceConfig::new(name, Endpoints::native(Ports::DEV))
        })
    }

    /// Defaults for `name` on `endpoints`, listening on ephemeral loopback
    /// ports (the caller binds the real listeners): what tests start from.
    pub fn new(name: &str, endpoints: Endpoints) -> ServiceConfig {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        ServiceConfig {
            name: name.to_string(),
            http_addr: any,
            grpc_addr: any,
            endpoints,
            request_timeout: Duration::from_millis(Self::DEFAULT_REQUEST_TIMEOUT_MS),
            body_limit_bytes: Self::DEFAULT_BODY_LIMIT_BYTES,
            default_tenant: DEFAULT_TENANT.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_endpoints_use_the_given_ports() {
        let e = Endpoints::native(Ports::TEST);
        assert_eq!(e.postgres_url, "postgres://shopstream@127.0.0.1:25432");
        assert_eq!(
            e.database_url("orders"),
            "postgres://shopstream@127.0.0.1:25432/orders"
        );
        assert_eq!(e.kafka_brokers, "127.0.0.1:29092");
    }

    #[test]
    fn dev_and_test_ports_never_collide() {
        let dev = serde_json::to_value(Ports::DEV).unwrap();
        let test = serde_json::to_value(Ports::TEST).unwrap();
        let dev: Vec<_> = dev.as_object().unwrap().values().collect();
        for p in test.as_object().unwrap().values() {
            assert!(!dev.contains(&p), "port {p} is in both profiles");
        }
    }

    #[test]
    fn service_ports_follow_the_base() {
        let (h, g) = service_addrs("identity", 18080).unwrap();
        assert_eq!((h.port(), g.port()), (18081, 18131));
        assert!(service_addrs("nope", 18080).is_none());
        let err = default_service_addrs("nope").unwrap_err().to_string();
        assert!(err.contains("gateway"), "{err}");
        assert_eq!(env_name("stripe-sim"), "STRIPE_SIM");
    }

    #[test]
    fn invalid_value_names_the_variable() {
        let err = parse_value("SHOPSTREAM_PG_PORT", Some("abc"), 1u16).unwrap_err();
        assert!(err.to_string().contains("SHOPSTREAM_PG_PORT"), "{err}");
        assert_eq!(parse_value("X", Some(""), 7u16).unwrap(), 7);
        assert_eq!(parse_value("X", None, 7u16).unwrap(), 7);
        assert_eq!(parse_value("X", Some("9"), 7u16).unwrap(), 9);
    }
}
