//! How operator commands and running workers stay out of each other's way.
//!
//! Each projection has one PostgreSQL advisory lock. A worker holds it *shared* while it
//! handles a batch (decode, apply, park); an operator command that changes what the
//! worker writes to (a rebuild's switch, a parked retry or skip) holds it *exclusively*,
//! so it runs between two batches and never in the middle of one.

use sqlx::{PgPool, Postgres, Transaction};

/// The advisory lock key of a projection (FNV-1a of a namespaced name; stable).
pub fn lock_key(projection: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in "murima.projection.".bytes().chain(projection.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

/// A transaction holding the projection's lock shared (a worker's batch).
pub async fn shared(pool: &PgPool, projection: &str) -> sqlx::Result<Transaction<'static, Postgres>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock_shared($1)").bind(lock_key(projection)).execute(&mut *tx).await?;
    Ok(tx)
}

/// How long an operator command waits for a projection's lock. A worker holds it only
/// while one attempt at a batch runs (bounded by the apply deadline), never while it
/// waits for a store, so a longer wait means something else holds it.
pub const EXCLUSIVE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// A transaction holding the projection's lock exclusively: no batch is in flight until
/// it commits or rolls back. Gives up after `EXCLUSIVE_WAIT`, naming who holds the lock.
pub async fn exclusive(pool: &PgPool, projection: &str) -> anyhow::Result<Transaction<'static, Postgres>> {
    let mut tx = pool.begin().await?;
    sqlx::query(&format!("SET LOCAL lock_timeout = {}", EXCLUSIVE_WAIT.as_millis())).execute(&mut *tx).await?;
    let taken = sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(lock_key(projection)).execute(&mut *tx).await;
    match taken {
        Ok(_) => {
            sqlx::query("SET LOCAL lock_timeout = 0").execute(&mut *tx).await?;
            Ok(tx)
        }
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => {
            drop(tx);
            let who = match holders(pool, lock_key(projection)).await {
                Ok(held) if held.is_empty() => "nobody any more".to_owned(),
                Ok(held) => held.join("; "),
                Err(e) => format!("(unknown: {e})"),
            };
            anyhow::bail!(
                "gave up after {EXCLUSIVE_WAIT:?} waiting for the lock of projection {projection}, held by {who}; \
                 a worker holds it only while it applies one batch, so this is another operator command or a \
                 stuck session: retry, or end that session (pg_terminate_backend)"
            )
        }
        Err(e) => Err(e.into()),
    }
}

/// A lock holder's session: pid, application, client, state, seconds its transaction is open.
type HolderRow = (i32, Option<String>, Option<String>, Option<String>, Option<f64>);

/// Who holds an advisory lock of this database: each session's pid, application,
/// client, state and how long its transaction has been open (empty: nobody).
pub async fn holders(pool: &PgPool, key: i64) -> sqlx::Result<Vec<String>> {
    let key = key as u64;
    let rows: Vec<HolderRow> = sqlx::query_as(
        "SELECT a.pid, a.application_name, host(a.client_addr), a.state,
                extract(epoch FROM now() - a.xact_start)::float8
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND l.classid::bigint = $1 AND l.objid::bigint = $2 AND l.objsubid = 1",
    )
    .bind((key >> 32) as i64)
    .bind((key & 0xffff_ffff) as i64)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(pid, app, client, state, open)| {
            format!(
                "pid {pid} ({}, from {}, {}, transaction open {:.0} s)",
                app.filter(|a| !a.is_empty()).unwrap_or_else(|| "no application name".into()),
                client.unwrap_or_else(|| "a local socket".into()),
                state.unwrap_or_else(|| "unknown state".into()),
                open.unwrap_or(0.0)
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_projection_has_its_own_stable_key() {
        assert_eq!(lock_key("postgres"), lock_key("postgres"));
        assert_ne!(lock_key("postgres"), lock_key("redis"));
    }
}
