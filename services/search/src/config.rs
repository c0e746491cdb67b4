//! The search service's typed configuration from `SHOPSTREAM_*` variables,
//! with defaults that match the native runtime.

use std::{path::PathBuf, time::Duration};

use shopstream_platform::config::{self, ConfigError, ServiceConfig, env_or, env_parse};

/// The service's name: its listeners, metrics label and consumer group.
pub const SERVICE_NAME: &str = "search";

/// Where the index lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// Embedded Tantivy index in a directory (native default).
    Tantivy { index_dir: PathBuf },
    /// An OpenSearch cluster and the index name to use.
    OpenSearch { url: String, index: String },
}

#[derive(Debug, Clone)]
pub struct Config {
    pub service: ServiceConfig,
    pub backend: Backend,
    /// gRPC URL of the catalog (hydration and reconcile).
    pub catalog_url: String,
    pub topic: String,
    pub consumer_group: String,
    /// Tantivy: commit at least this often while documents are staged...
    pub commit_interval: Duration,
    /// ...or as soon as this many are staged.
    pub commit_batch_docs: usize,
    /// Reconcile with the catalog when the service starts.
    pub reconcile_on_start: bool,
}

impl Config {
    /// Variables (defaults in brackets):
    /// `SHOPSTREAM_SEARCH_HTTP_ADDR` / `_GRPC_ADDR` [platform service ports],
    /// `SHOPSTREAM_SEARCH_BACKEND` [`tantivy`; or `opensearch`],
    /// `SHOPSTREAM_SEARCH_INDEX_DIR` [`.shopstream/search/index`],
    /// `SHOPSTREAM_OPENSEARCH_URL` [`http://127.0.0.1:9200`],
    /// `SHOPSTREAM_SEARCH_OPENSEARCH_INDEX` [`shopstream-products`],
    /// `SHOPSTREAM_SEARCH_CATALOG_URL` [the catalog's gRPC address],
    /// `SHOPSTREAM_SEARCH_TOPIC` [`product.events`],
    /// `SHOPSTREAM_SEARCH_CONSUMER_GROUP` [`search`],
    /// `SHOPSTREAM_SEARCH_COMMIT_INTERVAL_MS` [100],
    /// `SHOPSTREAM_SEARCH_COMMIT_BATCH_DOCS` [1000],
    /// `SHOPSTREAM_SEARCH_RECONCILE_ON_START` [true];
    /// plus the shared ones of [`ServiceConfig::from_env`].
    pub fn from_env() -> Result<Config, ConfigError> {
        let backend = match env_or("SHOPSTREAM_SEARCH_BACKEND", "tantivy").as_str() {
            "tantivy" => Backend::Tantivy {
                index_dir: PathBuf::from(env_or(
                    "SHOPSTREAM_SEARCH_INDEX_DIR",
                    ".shopstream/search/index",
                )),
            },
            "opensearch" => Backend::OpenSearch {
                url: env_or("SHOPSTREAM_OPENSEARCH_URL", "http://127.0.0.1:9200"),
                index: env_or("SHOPSTREAM_SEARCH_OPENSEARCH_INDEX", "shopstream-products"),
            },
            other => {
                return Err(ConfigError::Invalid {
                    name: "SHOPSTREAM_SEARCH_BACKEND".into(),
                    value: other.into(),
                    reason: "expected tantivy or opensearch".into(),
                });
            }
        };
        let catalog_url = config::grpc_url_of("catalog", "SHOPSTREAM_SEARCH_CATALOG_URL")?;
        Ok(Config {
            service: ServiceConfig::from_env(SERVICE_NAME)?,
            backend,
            catalog_url,
            topic: env_or("SHOPSTREAM_SEARCH_TOPIC", "product.events"),
            consumer_group: env_or("SHOPSTREAM_SEARCH_CONSUMER_GROUP", SERVICE_NAME),
            commit_interval: Duration::from_millis(env_parse(
                "SHOPSTREAM_SEARCH_COMMIT_INTERVAL_MS",
                100,
            )?),
            commit_batch_docs: env_parse("SHOPSTREAM_SEARCH_COMMIT_BATCH_DOCS", 1_000)?,
            reconcile_on_start: env_parse("SHOPSTREAM_SEARCH_RECONCILE_ON_START", true)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_native_runtime() {
        if std::env::vars().any(|(k, _)| k.starts_with("SHOPSTREAM_SEARCH_")) {
            return;
        }
        let cfg = Config::from_env().unwrap();
        assert_eq!(cfg.service.name, "search");
        assert_eq!(
            cfg.backend,
            Backend::Tantivy {
                index_dir: PathBuf::from(".shopstream/search/index")
            }
        );
        assert_eq!(cfg.topic, "product.events");
        assert_eq!(cfg.commit_interval, Duration::from_millis(100));
        assert!(cfg.catalog_url.starts_with("http://127.0.0.1:"));
    }
}
