//! stripe-sim's configuration (`SHOPSTREAM_STRIPE_SIM_*`, defaults for the
//! native runtime).

use secrecy::SecretString;
use shopstream_platform::config::{
    ConfigError, Endpoints, Ports, ServiceConfig, env_or, env_parse,
};

/// Secret key clients must send as `Authorization: Bearer ...` by default.
pub const DEFAULT_SECRET_KEY: &str = "sk_test_shopstream";
/// Secret that signs webhooks by default.
pub const DEFAULT_WEBHOOK_SECRET: &str = "whsec_shopstream";
/// Largest request body accepted.
pub const DEFAULT_BODY_LIMIT_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone)]
pub struct Config {
    /// Its name and listen address (`SHOPSTREAM_STRIPE_SIM_HTTP_ADDR`,
    /// default stripe-sim's slot in `config::Ports`; [`Config::default`]
    /// leaves the port to the listener the caller binds).
    pub service: ServiceConfig,
    /// The only API key accepted.
    pub secret_key: SecretString,
    /// The endpoint secret (`whsec_...`) webhooks are signed with.
    pub webhook_secret: SecretString,
    /// Where events are POSTed; none means events are only listed.
    pub webhook_url: Option<String>,
    pub body_limit_bytes: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            service: ServiceConfig::new("stripe-sim", Endpoints::native(Ports::DEV)),
            secret_key: SecretString::from(DEFAULT_SECRET_KEY),
            webhook_secret: SecretString::from(DEFAULT_WEBHOOK_SECRET),
            webhook_url: None,
            body_limit_bytes: DEFAULT_BODY_LIMIT_BYTES,
        }
    }
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Ok(Config {
            service: ServiceConfig::from_env("stripe-sim")?,
            secret_key: SecretString::from(env_or(
                "SHOPSTREAM_STRIPE_SIM_SECRET_KEY",
                DEFAULT_SECRET_KEY,
            )),
            webhook_secret: SecretString::from(env_or(
                "SHOPSTREAM_STRIPE_SIM_WEBHOOK_SECRET",
                DEFAULT_WEBHOOK_SECRET,
            )),
            webhook_url: std::env::var("SHOPSTREAM_STRIPE_SIM_WEBHOOK_URL")
                .ok()
                .filter(|v| !v.is_empty()),
            body_limit_bytes: env_parse(
                "SHOPSTREAM_STRIPE_SIM_BODY_LIMIT_BYTES",
                DEFAULT_BODY_LIMIT_BYTES,
            )?,
        })
    }
}
