//! The catalog's typed configuration: the settings every service shares plus
//! the name of its database, from `SHOPSTREAM_*` environment variables with
//! defaults that match the native runtime.

use shopstream_platform::config::{self, ConfigError, ServiceConfig};

/// The service's name: its listeners, metrics label and default database.
pub const SERVICE_NAME: &str = "catalog";

#[derive(Debug, Clone)]
pub struct Config {
    pub service: ServiceConfig,
    /// Database on the shared Postgres server; created on first start.
    /// Tests set a unique one.
    pub database: String,
}

impl Config {
    /// `SHOPSTREAM_CATALOG_HTTP_ADDR`, `SHOPSTREAM_CATALOG_GRPC_ADDR` (defaults
    /// 127.0.0.1:18082 / :18132), `SHOPSTREAM_CATALOG_DATABASE` (default
    /// `catalog`), and the shared variables of [`ServiceConfig::from_env`].
    pub fn from_env() -> Result<Config, ConfigError> {
        Ok(Config {
            service: ServiceConfig::from_env(SERVICE_NAME)?,
            database: config::env_or("SHOPSTREAM_CATALOG_DATABASE", SERVICE_NAME),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_native_runtime() {
        // Reads the environment; the CI environment sets none of these.
        if std::env::vars().any(|(k, _)| k.starts_with("SHOPSTREAM_CATALOG_")) {
            return;
        }
        let cfg = Config::from_env().unwrap();
        assert_eq!(cfg.database, "catalog");
        assert_eq!(cfg.service.name, "catalog");
        assert_eq!(cfg.service.http_addr.port(), 18082);
        assert_eq!(cfg.service.grpc_addr.port(), 18132);
    }
}
