//! Postgres on the control plane (plain SQL, not the replication protocol):
//! the publication and the slot, created idempotently; the WAL-retention
//! limit; the slot's position and lag; and the checkpoint table in the
//! service's own database.

use sqlx::PgPool;

use crate::config::SourceConfig;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// SQLSTATE duplicate_object: a concurrent start created the same thing.
const DUPLICATE_OBJECT: &str = "42710";

fn is_duplicate(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some(DUPLICATE_OBJECT))
}

/// `"schema"."table"`: names were validated by the config parser; quote anyway.
fn qualified(schema: &str, table: &str) -> String {
    format!("\"{schema}\".\"{table}\"")
}

/// Create the source's publication for its tables, or add tables missing
/// from an existing one. Never removes tables.
pub async fn ensure_publication(pool: &PgPool, source: &SourceConfig) -> Result<(), sqlx::Error> {
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)")
            .bind(&source.publication)
            .fetch_one(pool)
            .await?;
    let tables: Vec<String> = source
        .tables
        .iter()
        .map(|t| qualified(&t.schema, &t.table))
        .collect();
    if !exists {
        let sql = format!(
            "CREATE PUBLICATION \"{}\" FOR TABLE {}",
            source.publication,
            tables.join(", ")
        );
        match sqlx::query(&sql).execute(pool).await {
            Ok(_) => return Ok(()),
            Err(e) if is_duplicate(&e) => {}
            Err(e) => return Err(e),
        }
    }
    let present: Vec<(String, String)> = sqlx::query_as(
        "SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1",
    )
    .bind(&source.publication)
    .fetch_all(pool)
    .await?;
    for t in &source.tables {
        if !present.iter().any(|(s, n)| *s == t.schema && *n == t.table) {
            let sql = format!(
                "ALTER PUBLICATION \"{}\" ADD TABLE {}",
                source.publication,
                qualified(&t.schema, &t.table)
            );
            match sqlx::query(&sql).execute(pool).await {
                Ok(_) => {}
                Err(e) if is_duplicate(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Create the logical slot (pgoutput) unless it exists; true if created now.
pub async fn ensure_slot(pool: &PgPool, slot: &str) -> Result<bool, sqlx::Error> {
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
    )
    .bind(slot)
    .fetch_one(pool)
    .await?;
    if exists {
        return Ok(false);
    }
    match sqlx::query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')")
        .bind(slot)
        .execute(pool)
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if is_duplicate(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Drop `slot` if no session holds it; true if it was dropped. For tests
/// and operators: a dropped slot loses every change not yet streamed.
pub async fn drop_slot(pool: &PgPool, slot: &str) -> Result<bool, sqlx::Error> {
    let inactive: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND NOT active)",
    )
    .bind(slot)
    .fetch_one(pool)
    .await?;
    if !inactive {
        return Ok(false);
    }
    sqlx::query("SELECT pg_drop_replication_slot($1)")
        .bind(slot)
        .execute(pool)
        .await?;
    Ok(true)
}

/// The slot's `confirmed_flush_lsn`, if the slot exists and has one.
pub async fn slot_confirmed_flush(pool: &PgPool, slot: &str) -> Result<Option<u64>, sqlx::Error> {
    let lsn: Option<Option<i64>> = sqlx::query_scalar(
        "SELECT (confirmed_flush_lsn - '0/0'::pg_lsn)::bigint FROM pg_replication_slots WHERE slot_name = $1",
    )
    .bind(slot)
    .fetch_optional(pool)
    .await?;
    Ok(lsn.flatten().map(|l| l.max(0) as u64))
}

/// Server WAL position minus the slot's confirmed flush position, in bytes.
pub async fn lag_bytes(pool: &PgPool, slot: &str) -> Result<Option<i64>, sqlx::Error> {
    let lag: Option<Option<i64>> = sqlx::query_scalar(
        "SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint FROM pg_replication_slots WHERE slot_name = $1",
    )
    .bind(slot)
    .fetch_optional(pool)
    .await?;
    Ok(lag.flatten())
}

/// Rows read per snapshot page.
pub const SNAPSHOT_PAGE: i64 = 1_000;

/// The primary-key columns of `schema.table`, in key order.
pub async fn primary_key(
    conn: &mut sqlx::PgConnection,
    schema: &str,
    table: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT a.attname::text FROM pg_index i
           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey::int2[])
          WHERE i.indrelid = $1::regclass AND i.indisprimary
          ORDER BY array_position(i.indkey::int2[], a.attnum)",
    )
    .bind(qualified(schema, table))
    .fetch_all(conn)
    .await
}

/// One page of `schema.table` as JSON rows, inside the caller's
/// repeatable-read transaction (one snapshot for every page). An outbox is
/// read in write order; other tables in physical order.
pub async fn snapshot_page(
    conn: &mut sqlx::PgConnection,
    schema: &str,
    table: &str,
    outbox: bool,
    offset: i64,
) -> Result<Vec<String>, sqlx::Error> {
    let order = if outbox {
        "t.created_at, t.id"
    } else {
        "t.ctid"
    };
    let sql = format!(
        "SELECT row_to_json(t)::text FROM {} t ORDER BY {order} LIMIT $1 OFFSET $2",
        qualified(schema, table)
    );
    sqlx::query_scalar(&sql)
        .bind(SNAPSHOT_PAGE)
        .bind(offset)
        .fetch_all(conn)
        .await
}

/// What [`ensure_wal_keep_limit`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalKeepLimit {
    /// The server already has a limit (the native runtime starts Postgres with one).
    AlreadySet(String),
    /// It had none; `ALTER SYSTEM` set this one and the configuration was reloaded.
    Applied(String),
    /// It has none and the service may not set it (not a superuser, a managed
    /// database): set `max_slot_wal_keep_size` in the server's parameters.
    Refused(String),
    /// No limit configured for the service to apply.
    Disabled,
}

fn valid_size(s: &str) -> bool {
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &s[digits.len()..];
    !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
        && ["", "kB", "MB", "GB", "TB"].contains(&unit)
}

/// Make sure an unread slot cannot fill the disk: if the server's
/// `max_slot_wal_keep_size` is unlimited (-1), set it to `size` with
/// `ALTER SYSTEM` (a reload applies it; no restart).
pub async fn ensure_wal_keep_limit(pool: &PgPool, size: &str) -> Result<WalKeepLimit, sqlx::Error> {
    let current: String = sqlx::query_scalar("SHOW max_slot_wal_keep_size")
        .fetch_one(pool)
        .await?;
    if current != "-1" {
        return Ok(WalKeepLimit::AlreadySet(current));
    }
    if size.is_empty() {
        return Ok(WalKeepLimit::Disabled);
    }
    if !valid_size(size) {
        return Ok(WalKeepLimit::Refused(format!("invalid size {size:?}")));
    }
    let sql = format!("ALTER SYSTEM SET max_slot_wal_keep_size = '{size}'");
    match sqlx::query(&sql).execute(pool).await {
        Ok(_) => {
            sqlx::query("SELECT pg_reload_conf()").execute(pool).await?;
            Ok(WalKeepLimit::Applied(size.to_string()))
        }
        Err(sqlx::Error::Database(e)) => Ok(WalKeepLimit::Refused(e.message().to_string())),
        Err(e) => Err(e),
    }
}

/// The checkpoint table in the service's own database.
#[derive(Debug, Clone)]
pub struct PgCheckpoints {
    pool: PgPool,
}

impl PgCheckpoints {
    /// A store on `pool`, whose database must be migrated with [`MIGRATOR`].
    pub fn new(pool: PgPool) -> PgCheckpoints {
        PgCheckpoints { pool }
    }

    pub async fn load(&self, slot: &str) -> Result<Option<u64>, sqlx::Error> {
        let lsn: Option<i64> = sqlx::query_scalar("SELECT lsn FROM cdc_checkpoint WHERE slot = $1")
            .bind(slot)
            .fetch_optional(&self.pool)
            .await?;
        Ok(lsn.map(|l| l.max(0) as u64))
    }

    /// Forget `slot` (it was created anew): no checkpoint, no snapshot yet.
    pub async fn forget(&self, slot: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM cdc_checkpoint WHERE slot = $1")
            .bind(slot)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Whether the initial snapshot of `slot`'s tables was published.
    pub async fn snapshot_done(&self, slot: &str) -> Result<bool, sqlx::Error> {
        let done: Option<bool> =
            sqlx::query_scalar("SELECT snapshot_done FROM cdc_checkpoint WHERE slot = $1")
                .bind(slot)
                .fetch_optional(&self.pool)
                .await?;
        Ok(done.unwrap_or(false))
    }

    pub async fn mark_snapshot_done(&self, slot: &str, now_ms: i64) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO cdc_checkpoint (slot, lsn, updated_at_ms, snapshot_done) VALUES ($1, 0, $2, TRUE)
             ON CONFLICT (slot) DO UPDATE SET snapshot_done = TRUE, updated_at_ms = EXCLUDED.updated_at_ms",
        )
        .bind(slot)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Raise the checkpoint of `slot` to `lsn` (never lowers it).
    pub async fn save(&self, slot: &str, lsn: u64, now_ms: i64) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO cdc_checkpoint (slot, lsn, updated_at_ms) VALUES ($1, $2, $3)
             ON CONFLICT (slot) DO UPDATE
                SET lsn = GREATEST(cdc_checkpoint.lsn, EXCLUDED.lsn),
                    updated_at_ms = EXCLUDED.updated_at_ms",
        )
        .bind(slot)
        .bind(i64::try_from(lsn).unwrap_or(i64::MAX))
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_sizes_are_validated_before_reaching_sql() {
        for ok in ["1024MB", "1GB", "512", "64kB"] {
            assert!(valid_size(ok), "{ok}");
        }
        for bad in ["", "MB", "1 GB", "1GB'; DROP", "-1", "1PB"] {
            assert!(!valid_size(bad), "{bad}");
        }
    }
}
