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

/// A transaction holding the projection's lock exclusively: no batch is in flight until
/// it commits or rolls back.
pub async fn exclusive(pool: &PgPool, projection: &str) -> sqlx::Result<Transaction<'static, Postgres>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(lock_key(projection)).execute(&mut *tx).await?;
    Ok(tx)
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
