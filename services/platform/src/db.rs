//! Postgres: one database per service on a shared server, created on first
//! start, with the service's sqlx migrations applied at start-up.

use std::time::Duration;

use sqlx::{
    ConnectOptions, Connection, PgConnection, PgPool,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPoolOptions},
};

/// Bound on acquiring a connection; a dead database fails fast instead of hanging.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default pool size per service process.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("invalid database name {0:?}: use lowercase letters, digits and underscores")]
    InvalidName(String),
    #[error("postgres at {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Query(#[from] sqlx::Error),
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// Create `database` on the server at `server_url` (no database part) if missing.
pub async fn ensure_database(server_url: &str, database: &str) -> Result<(), DbError> {
    ensure_databases(server_url, &[database]).await
}

/// Create each of `databases` that is missing, over one connection (a
/// readiness probe that checks a dozen databases should not fork a dozen
/// Postgres backends).
pub async fn ensure_databases(server_url: &str, databases: &[&str]) -> Result<(), DbError> {
    if let Some(bad) = databases.iter().find(|d| !valid_name(d)) {
        return Err(DbError::InvalidName(bad.to_string()));
    }
    let admin_url = format!("{}/postgres", server_url.trim_end_matches('/'));
    let opts: PgConnectOptions = admin_url.parse().map_err(|source| DbError::Connect {
        url: admin_url.clone(),
        source,
    })?;
    let mut conn: PgConnection = tokio::time::timeout(ACQUIRE_TIMEOUT, opts.connect())
        .await
        .map_err(|_| DbError::Connect {
            url: admin_url.clone(),
            source: sqlx::Error::PoolTimedOut,
        })?
        .map_err(|source| DbError::Connect {
            url: admin_url.clone(),
            source,
        })?;
    let names: Vec<String> = databases.iter().map(|d| d.to_string()).collect();
    let existing: Vec<String> =
        sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE datname = ANY($1)")
            .bind(&names)
            .fetch_all(&mut conn)
            .await?;
    for database in databases
        .iter()
        .filter(|d| !existing.iter().any(|e| e == *d))
    {
        // The name was validated above; identifiers cannot be bound as parameters.
        match sqlx::query(&format!("CREATE DATABASE \"{database}\""))
            .execute(&mut conn)
            .await
        {
            Ok(_) => {}
            // Another process created it between our check and our create.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
            Err(e) => return Err(e.into()),
        }
    }
    conn.close().await.ok();
    Ok(())
}

/// A pooled connection idle at least this long is pinged before it is
/// handed out (see [`pool_options`]).
pub const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// Pool options every service uses: sqlx pings *every* connection it hands
/// out by default, a round trip before each statement, which halved the
/// rate of one-statement reads. Only a connection that sat idle for
/// [`PING_IF_IDLE_FOR`] is pinged now: under load none is, and after a
/// Postgres restart an idle connection is still found dead before use (a
/// busy one fails its statement, which is retried like any other).
pub fn pool_options() -> PgPoolOptions {
    PgPoolOptions::new()
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IF_IDLE_FOR {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
}

/// A pool on `database`, creating the database first if needed.
pub async fn connect(server_url: &str, database: &str) -> Result<PgPool, DbError> {
    ensure_database(server_url, database).await?;
    let url = format!("{}/{}", server_url.trim_end_matches('/'), database);
    let opts: PgConnectOptions = url.parse().map_err(|source| DbError::Connect {
        url: url.clone(),
        source,
    })?;
    pool_options()
        .max_connections(DEFAULT_MAX_CONNECTIONS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(opts)
        .await
        .map_err(|source| DbError::Connect { url, source })
}

/// Connections a bookkeeping pool opens at most (see [`bookkeeping`]).
pub const BOOKKEEPING_MAX_CONNECTIONS: u32 = 2;

/// Connections to `pool`'s database whose commits do not wait for the WAL
/// to reach the disk (`synchronous_commit = off`), for at-least-once
/// bookkeeping only: a consumer's record of the events it processed, and
/// the outbox relay's marks of what it published. Each commit is still
/// atomic and in order; a crash of Postgres (not of a service) can lose the
/// last few hundred milliseconds of them, and what that costs is an event
/// handled or published again, which at-least-once delivery already allows
/// and consumers absorb by event id. Business writes keep waiting for the
/// flush. Measured at 25 orders/s: the flushes were a third of Postgres'
/// CPU, most of it in the kernel (ADR 0002).
pub fn bookkeeping(pool: &PgPool) -> PgPool {
    let opts = (*pool.connect_options())
        .clone()
        .options([("synchronous_commit", "off")]);
    pool_options()
        .max_connections(BOOKKEEPING_MAX_CONNECTIONS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_lazy_with(opts)
}

/// Apply a service's migrations (idempotent; concurrent starts are serialised
/// by sqlx's advisory lock).
pub async fn migrate(pool: &PgPool, migrator: &Migrator) -> Result<(), DbError> {
    migrator.run(pool).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_validated() {
        assert!(valid_name("orders"));
        assert!(valid_name("t_1a2b"));
        assert!(!valid_name("Orders"));
        assert!(!valid_name("a;drop database x"));
        assert!(!valid_name("1abc"));
        assert!(!valid_name(""));
    }
}
