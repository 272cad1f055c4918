//! One active worker per projection instance (consumer group) across every projector
//! process: a PostgreSQL session advisory lock held on a connection of its own.
//!
//! PostgreSQL releases the lock as soon as that connection ends, also when the process
//! holding it is killed, so a standby projector takes over within a second or two. The
//! connection is not from the pool: a pooled connection would go back to the pool, lock
//! and all, when the worker is dropped. Two workers applying the same events would still
//! be correct (every store is version-guarded); the lease only keeps them from doing the
//! work twice and from moving each other's checkpoints.

use sqlx::postgres::PgConnection;
use sqlx::{Connection, PgPool};

pub struct Lease {
    connection: PgConnection,
}

impl Lease {
    /// Takes the lease of `group` if no other worker holds it. A standby keeps trying on
    /// the same connection (`connection` is kept between attempts; None: open one).
    pub async fn try_take(
        pool: &PgPool,
        group: &str,
        connection: &mut Option<PgConnection>,
    ) -> sqlx::Result<Option<Lease>> {
        let mut conn = match connection.take() {
            Some(conn) => conn,
            None => PgConnection::connect_with(&pool.connect_options()).await?,
        };
        let key = crate::control::lock_key(&format!("lease.{group}"));
        let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(key).fetch_one(&mut conn).await?;
        if taken {
            return Ok(Some(Lease { connection: conn }));
        }
        *connection = Some(conn);
        Ok(None)
    }

    /// Whether the lease still holds: a session lock lasts as long as its connection.
    pub async fn holds(&mut self) -> bool {
        sqlx::query("SELECT 1").execute(&mut self.connection).await.is_ok()
    }
}
