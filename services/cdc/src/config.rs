//! The CDC service's configuration: which databases and tables to stream to
//! which topics, and the limits of the pipeline.
//!
//! `SHOPSTREAM_CDC_SOURCES` lists the sources, `;` between databases, `,`
//! between tables: `catalog:outbox=product.events;orders:outbox=order.lifecycle,public.orders=cdc.orders`.
//! A table named `outbox` is streamed as an outbox (inserts only, identity
//! from the row); any other table as rows (every operation). Each database
//! gets its own slot and publication, `shopstream_cdc_<database>`.

use std::time::Duration;

use shopstream_platform::config::{ConfigError, ServiceConfig, env_or, env_parse};

use crate::domain::change::TableKind;

/// One streamed table and the topic its events go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRoute {
    pub schema: String,
    pub table: String,
    pub topic: String,
    pub kind: TableKind,
}

/// One database streamed through one slot and one publication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConfig {
    pub database: String,
    pub slot: String,
    pub publication: String,
    pub tables: Vec<TableRoute>,
}

impl SourceConfig {
    /// A source with the default slot and publication names.
    pub fn new(database: &str, tables: Vec<TableRoute>) -> SourceConfig {
        let name = format!("shopstream_cdc_{database}");
        SourceConfig {
            database: database.to_string(),
            slot: name.clone(),
            publication: name,
            tables,
        }
    }

    /// The route of `schema.table`, if it is streamed.
    pub fn route(&self, schema: &str, table: &str) -> Option<&TableRoute> {
        self.tables
            .iter()
            .find(|r| r.schema == schema && r.table == table)
    }
}

impl TableRoute {
    /// `[schema.]table` to `topic`; the kind follows the table's name.
    pub fn new(qualified: &str, topic: &str) -> TableRoute {
        let (schema, table) = qualified.split_once('.').unwrap_or(("public", qualified));
        TableRoute {
            schema: schema.to_string(),
            table: table.to_string(),
            topic: topic.to_string(),
            kind: if table == "outbox" {
                TableKind::Outbox
            } else {
                TableKind::Row
            },
        }
    }
}

/// Default `SHOPSTREAM_CDC_SOURCES`: the catalog's outbox to `product.events`.
pub const DEFAULT_SOURCES: &str = "catalog:outbox=product.events";

fn ident(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 48
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

/// Parse the `SHOPSTREAM_CDC_SOURCES` syntax.
pub fn parse_sources(spec: &str) -> Result<Vec<SourceConfig>, String> {
    let mut out: Vec<SourceConfig> = Vec::new();
    for part in spec.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (db, tables) = part
            .split_once(':')
            .ok_or_else(|| format!("{part:?}: expected database:table=topic[,table=topic]"))?;
        let db = db.trim();
        if !ident(db) {
            return Err(format!("{db:?} is not a valid database name"));
        }
        let mut routes = Vec::new();
        for t in tables.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (table, topic) = t
                .split_once('=')
                .ok_or_else(|| format!("{t:?}: expected table=topic"))?;
            let route = TableRoute::new(table.trim(), topic.trim());
            if !ident(&route.schema) || !ident(&route.table) || route.topic.is_empty() {
                return Err(format!("{t:?}: invalid table or topic"));
            }
            routes.push(route);
        }
        if routes.is_empty() {
            return Err(format!("{part:?}: no tables"));
        }
        if out.iter().any(|s| s.database == db) {
            return Err(format!("database {db} is listed twice"));
        }
        out.push(SourceConfig::new(db, routes));
    }
    if out.is_empty() {
        return Err("no sources".into());
    }
    Ok(out)
}

#[derive(Debug, Clone)]
pub struct Config {
    pub service: ServiceConfig,
    /// The service's own database (checkpoints): `SHOPSTREAM_CDC_DATABASE`, default `cdc`.
    pub database: String,
    /// `SHOPSTREAM_CDC_SOURCES`, default [`DEFAULT_SOURCES`].
    pub sources: Vec<SourceConfig>,
    /// Partitions of topics the service creates: `SHOPSTREAM_CDC_TOPIC_PARTITIONS`, default 3.
    pub topic_partitions: i32,
    /// Applied with `ALTER SYSTEM` when the server has no limit (-1), so an
    /// unread slot cannot fill the disk: `SHOPSTREAM_CDC_MAX_SLOT_WAL_KEEP_SIZE`,
    /// default `1024MB`; empty turns this off.
    pub max_slot_wal_keep_size: String,
    /// Records published per Kafka batch at most: `SHOPSTREAM_CDC_MAX_BATCH_RECORDS`, default 1000.
    pub max_batch_records: usize,
    /// How soon an acknowledged LSN reaches Postgres: `SHOPSTREAM_CDC_STATUS_INTERVAL_MS`, default 1000.
    pub status_interval: Duration,
    /// How often lag in bytes is read: `SHOPSTREAM_CDC_LAG_POLL_MS`, default 1000.
    pub lag_poll_interval: Duration,
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        let spec = env_or("SHOPSTREAM_CDC_SOURCES", DEFAULT_SOURCES);
        let sources = parse_sources(&spec).map_err(|reason| ConfigError::Invalid {
            name: "SHOPSTREAM_CDC_SOURCES".into(),
            value: spec.clone(),
            reason,
        })?;
        Ok(Config {
            service: ServiceConfig::from_env("cdc")?,
            database: env_or("SHOPSTREAM_CDC_DATABASE", "cdc"),
            sources,
            topic_partitions: env_parse("SHOPSTREAM_CDC_TOPIC_PARTITIONS", 3)?,
            max_slot_wal_keep_size: std::env::var("SHOPSTREAM_CDC_MAX_SLOT_WAL_KEEP_SIZE")
                .unwrap_or_else(|_| "1024MB".into()),
            max_batch_records: env_parse("SHOPSTREAM_CDC_MAX_BATCH_RECORDS", 1_000)?,
            status_interval: Duration::from_millis(env_parse(
                "SHOPSTREAM_CDC_STATUS_INTERVAL_MS",
                1_000,
            )?),
            lag_poll_interval: Duration::from_millis(env_parse(
                "SHOPSTREAM_CDC_LAG_POLL_MS",
                1_000,
            )?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_streams_the_catalog_outbox_to_product_events() {
        let s = parse_sources(DEFAULT_SOURCES).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].database, "catalog");
        assert_eq!(s[0].slot, "shopstream_cdc_catalog");
        assert_eq!(s[0].publication, "shopstream_cdc_catalog");
        let r = s[0].route("public", "outbox").unwrap();
        assert_eq!(r.topic, "product.events");
        assert_eq!(r.kind, TableKind::Outbox);
    }

    #[test]
    fn several_databases_and_tables_parse() {
        let s = parse_sources(
            "catalog:outbox=product.events, public.product=cdc.product ; orders:outbox=order.lifecycle",
        )
        .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].tables.len(), 2);
        assert_eq!(
            s[0].route("public", "product").unwrap().kind,
            TableKind::Row
        );
        assert_eq!(s[1].tables[0].topic, "order.lifecycle");
    }

    #[test]
    fn bad_specs_are_refused() {
        for bad in [
            "",
            "catalog",
            "catalog:",
            "catalog:outbox",
            "Cat:outbox=t",
            "c:outbox=t;c:x=y",
            "c:a;b=t",
        ] {
            assert!(parse_sources(bad).is_err(), "{bad:?} accepted");
        }
    }
}
