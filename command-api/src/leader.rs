//! Leadership among command APIs: one process at a time runs a singleton job (the relay,
//! the SLA and task schedulers) while it holds a PostgreSQL advisory lock; the others wait as
//! standbys and one of them takes over when the leader's connection closes.

use std::time::Duration;

use sqlx::postgres::PgConnection;
use sqlx::{Connection, PgPool};

/// How often a standby tries the lock, and a leader checks that it still holds it.
pub const RETRY: Duration = Duration::from_secs(1);

/// Waits until this process holds the advisory lock `key` and returns the connection that
/// holds it. The connection is not from the pool: a pooled one would go back to the pool,
/// lock and all, when leading fails, and no process anywhere could lead again. Dropped, it
/// closes, and PostgreSQL releases the lock (also when this process is killed).
pub async fn acquire(pool: &PgPool, key: i64) -> anyhow::Result<PgConnection> {
    let mut conn = PgConnection::connect_with(&pool.connect_options()).await?;
    loop {
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(key).fetch_one(&mut conn).await?;
        if got {
            return Ok(conn);
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Fails when the lock's connection is gone (then the lock is too, and another process may
/// lead): a leader calls it between rounds of work.
pub async fn still_held(conn: &mut PgConnection) -> anyhow::Result<()> {
    sqlx::query("SELECT 1").execute(conn).await?;
    Ok(())
}

/// Sets a gauge to 1 while a leader lives, and back to 0 when it stops leading.
pub struct Leading(&'static str);

impl Leading {
    pub fn new(gauge: &'static str) -> Self {
        metrics::gauge!(gauge).set(1.0);
        Leading(gauge)
    }
}

impl Drop for Leading {
    fn drop(&mut self) {
        metrics::gauge!(self.0).set(0.0);
    }
}

/// A scheduler's life: waits to lead on `key`, then runs `round` again and again (at once
/// after a full round, `tick` after one that found less), checking between rounds that it
/// still leads; when leading fails, it waits as a standby again. Never returns.
pub async fn schedule<F, Fut>(
    pool: &PgPool,
    key: i64,
    job: &'static str,
    gauge: &'static str,
    tick: Duration,
    mut round: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    loop {
        let led: anyhow::Result<()> = async {
            let mut lock = acquire(pool, key).await?;
            tracing::info!(job, "leading");
            let _leading = Leading::new(gauge);
            loop {
                let full = round().await?;
                still_held(&mut lock).await?;
                if !full {
                    tokio::time::sleep(tick).await;
                }
            }
        }
        .await;
        if let Err(e) = led {
            tracing::warn!(job, error = %format!("{e:#}"), "stopped leading; retrying");
            tokio::time::sleep(RETRY).await;
        }
    }
}
