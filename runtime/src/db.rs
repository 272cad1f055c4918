//! PostgreSQL pools and the schema migrations in `migrations/` (sqlx, timestamped names).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres};

pub fn migrations_dir() -> PathBuf {
    std::env::var_os("MURIMA_MIGRATIONS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations")))
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
    let dir = migrations_dir();
    let migrator = Migrator::new(dir.as_path()).await.with_context(|| format!("reading migrations from {dir:?}"))?;
    migrator.run(&pool).await.context("applying migrations")?;
    Ok(pool)
}

/// A service's pool: the migrations first (see `Settings::migrations`), then its own
/// connection.
pub async fn connect_service(settings: &crate::Settings, max_connections: u32) -> anyhow::Result<PgPool> {
    match &settings.migrations {
        crate::Migrations::SameAsService => connect_and_migrate(&settings.database_url, max_connections).await,
        crate::Migrations::With(owner) => {
            connect_and_migrate(owner, 2).await?.close().await;
            connect(&settings.database_url, max_connections).await
        }
        crate::Migrations::Skip => connect(&settings.database_url, max_connections).await,
    }
}

pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
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
