//! PostgreSQL pools and the schema migrations in `migrations/` (sqlx, timestamped names),
//! embedded in the binary at build time (`build.rs`); `MURIMA_MIGRATIONS_DIR` reads them
//! from a directory instead.

use std::borrow::Cow;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use futures::future::BoxFuture;
use sqlx::error::BoxDynError;
use sqlx::migrate::{MigrateDatabase, Migration, MigrationSource, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/migrations.rs"));
}

/// The migrations this binary was built with, read as sqlx reads a directory of them
/// (`<version>_<description>.sql`), so the checksums of applied ones match.
#[derive(Debug)]
struct Embedded;

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move {
            embedded::EMBEDDED
                .iter()
                .map(|(name, sql)| {
                    let (version, rest) =
                        name.split_once('_').ok_or_else(|| format!("migration {name:?} has no version prefix"))?;
                    let version: i64 = version.parse().map_err(|_| format!("migration {name:?}: bad version"))?;
                    let kind = MigrationType::from_filename(rest);
                    let description = rest.trim_end_matches(kind.suffix()).replace('_', " ");
                    let no_tx = sql.starts_with("-- no-transaction");
                    Ok(Migration::new(version, Cow::Owned(description), kind, Cow::Borrowed(*sql), no_tx))
                })
                .collect()
        })
    }
}

async fn migrator() -> anyhow::Result<Migrator> {
    match std::env::var_os("MURIMA_MIGRATIONS_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            Migrator::new(dir.as_path()).await.with_context(|| format!("reading migrations from {dir:?}"))
        }
        None => Migrator::new(Embedded).await.context("reading the embedded migrations"),
    }
}

/// Connects, creating the database if it is missing, and applies pending migrations.
/// Safe to call from several processes at once: sqlx takes an advisory lock.
pub async fn connect_and_migrate(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    if !Postgres::database_exists(url).await.context("checking the database exists")? {
        // Two services starting together may both try; the loser finds it created.
        if let Err(e) = Postgres::create_database(url).await {
            if !Postgres::database_exists(url).await.unwrap_or(false) {
                return Err(e).context("creating the database");
            }
        }
    }
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .context("connecting to PostgreSQL")?;
    migrator().await?.run(&pool).await.context("applying migrations")?;
    Ok(pool)
}

/// A service's pool: the migrations first (see `Settings::migrations`, on a pool of their
/// own, unbounded: a migration may take long), then its own connections. With
/// `statement_deadline`, the server cancels any statement of this pool that runs longer
/// (`statement_timeout`): a statement stuck behind a lock or a slow disk ends with an
/// error instead of holding its connection, the caller's 503 in the APIs.
pub async fn connect_service(
    settings: &crate::Settings,
    max_connections: u32,
    statement_deadline: Option<Duration>,
) -> anyhow::Result<PgPool> {
    let owner = match &settings.migrations {
        crate::Migrations::SameAsService => Some(&settings.database_url),
        crate::Migrations::With(owner) => Some(owner),
        crate::Migrations::Skip => None,
    };
    if let Some(owner) = owner {
        connect_and_migrate(owner, 2).await?.close().await;
    }
    connect_bounded(&settings.database_url, max_connections, statement_deadline).await
}

pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    connect_bounded(url, max_connections, None).await
}

async fn connect_bounded(
    url: &str,
    max_connections: u32,
    statement_deadline: Option<Duration>,
) -> anyhow::Result<PgPool> {
    let mut options: PgConnectOptions = url.parse().context("reading MURIMA_DATABASE_URL")?;
    if let Some(deadline) = statement_deadline {
        options = options.options([("statement_timeout", deadline.as_millis().max(1).to_string())]);
    }
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        // No ping before each use: it is a round trip per acquire (half a command's cost
        // once a command is one statement). A connection the server dropped fails its
        // next statement, which is a 503 (`Io`), and the pool closes it.
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .context("connecting to PostgreSQL")
}

/// `url` with `role` as its user (and no password): `postgres://postgres@h:5432/db` as
/// `murima_query` is `postgres://murima_query@h:5432/db`.
pub fn as_role(url: &str, role: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    match rest.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://{role}@{host}"),
        None => format!("{scheme}://{role}@{rest}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_names_another_role() {
        assert_eq!(
            as_role("postgres://postgres@127.0.0.1:5432/m", "murima_query"),
            "postgres://murima_query@127.0.0.1:5432/m"
        );
        assert_eq!(as_role("postgres://a:b@h/m", "r"), "postgres://r@h/m");
        assert_eq!(as_role("postgres://h/m", "r"), "postgres://r@h/m");
    }
}
