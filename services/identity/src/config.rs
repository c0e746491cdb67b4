//! Identity's configuration (`SHOPSTREAM_*`, defaults for the native runtime).

use std::path::PathBuf;

use shopstream_platform::config::{ConfigError, ServiceConfig, env_or, env_parse};

#[derive(Debug, Clone)]
pub struct Config {
    pub service: ServiceConfig,
    /// Database name on the shared Postgres server.
    pub database: String,
    /// Where the signing key pair lives (generated on first start).
    pub key_dir: PathBuf,
    /// `Secure` on cookies; off by default because the native runtime is plain HTTP.
    pub cookie_secure: bool,
    /// Login attempts per email + client IP per window (0 refuses every
    /// login; see `ports::RateLimiter`).
    pub login_limit: u32,
    /// Length of a rate-limit window, from a key's first attempt.
    pub login_window_s: u64,
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Ok(Config {
            service: ServiceConfig::from_env("identity")?,
            database: env_or("SHOPSTREAM_IDENTITY_DATABASE", "identity"),
            key_dir: env_or("SHOPSTREAM_IDENTITY_KEY_DIR", ".shopstream/keys").into(),
            cookie_secure: env_parse("SHOPSTREAM_COOKIE_SECURE", false)?,
            login_limit: env_parse("SHOPSTREAM_LOGIN_LIMIT", 5)?,
            login_window_s: env_parse("SHOPSTREAM_LOGIN_WINDOW_S", 60)?,
        })
    }
}
