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
