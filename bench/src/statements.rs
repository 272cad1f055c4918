//! How many PostgreSQL statements the command API runs per command (each one a round
//! trip), from `pg_stat_statements`: the statements of the `murima_command` role in the
//! journal's database. `scripts/stack.sh` preloads the extension in its cluster; on a
//! server without it the figure is reported as not measured.

use sqlx::PgPool;

pub struct Statements {
    pool: PgPool,
}

impl Statements {
    /// None (and why, on stderr) when the server does not count statements.
    pub async fn connect(url: &str) -> Option<Self> {
        let pool = match runtime::db::connect(url, 1).await {
            Ok(pool) => pool,
            Err(e) => {
                eprintln!("statements per command not measured: {e:#}");
                return None;
            }
        };
        let ready = async {
            sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").execute(&pool).await?;
            sqlx::query("SELECT count(*) FROM pg_stat_statements").execute(&pool).await?;
            anyhow::Ok(())
        };
        match ready.await {
            Ok(()) => Some(Self { pool }),
            Err(e) => {
                eprintln!(
                    "statements per command not measured: {e:#} (scripts/stack.sh preloads pg_stat_statements; restart \
                     its PostgreSQL with `scripts/stack.sh stop && scripts/stack.sh start` if it was started before)"
                );
                None
            }
        }
    }

    /// Events written but not yet published by the relay (its backlog).
    pub async fn unrelayed(&self) -> Option<i64> {
        sqlx::query_scalar("SELECT count(*) FROM eventstore.outbox").fetch_one(&self.pool).await.ok()
    }

    /// Statements the command API's role has run so far (relay and housekeeping included).
    pub async fn so_far(&self) -> Option<i64> {
        sqlx::query_scalar(
            "SELECT coalesce(sum(s.calls), 0)::bigint FROM pg_stat_statements s
             JOIN pg_roles r ON r.oid = s.userid JOIN pg_database d ON d.oid = s.dbid
             WHERE r.rolname = 'murima_command' AND d.datname = current_database()",
        )
        .fetch_one(&self.pool)
        .await
        .ok()
    }
}
