//! Scheduled upkeep of the relational read model: interaction partitions made ahead of
//! time (seed §5.1.2) and the case_statistics materialized view refreshed concurrently
//! (seed §8.4.1). Every projector replica runs these loops; a per-tenant Redis lock with
//! a TTL (seed §2.3.2 `locks`) keeps two replicas from refreshing the same view at once,
//! and a replica that dies holding one frees it when the TTL runs out.

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Script;
use runtime::tenancy::Tenancy;
use sqlx::PgPool;
use uuid::Uuid;

const LOCK_TTL_MS: u64 = 30_000;

/// Deletes the lock only if it still holds our token (it may have expired and been taken).
const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

/// A lock `{tenant}:locks:{resource}` held for at most 30 s.
pub struct Lock {
    key: String,
    token: String,
}

impl Lock {
    /// Takes the lock if nobody holds it; `None` when someone does.
    pub async fn try_acquire(
        redis: &mut ConnectionManager,
        tenant: Uuid,
        resource: &str,
    ) -> redis::RedisResult<Option<Self>> {
        let key = Tenancy(tenant).redis_lock(resource);
        let token = Uuid::now_v7().to_string();
        let taken: Option<String> =
            redis::cmd("SET").arg(&key).arg(&token).arg("NX").arg("PX").arg(LOCK_TTL_MS).query_async(redis).await?;
        Ok(taken.map(|_| Self { key, token }))
    }

    pub async fn release(self, redis: &mut ConnectionManager) -> redis::RedisResult<()> {
        let _: i64 = Script::new(RELEASE).key(&self.key).arg(&self.token).invoke_async(redis).await?;
        Ok(())
    }
}

/// Creates every tenant's interaction partitions for this month and the next two, so
/// inserts rarely need to create one. Runs until the task is dropped.
pub async fn maintain_partitions(pool: PgPool, every: Duration) {
    loop {
        let result = sqlx::query("SELECT public.murima_interaction_partitions_ahead(id) FROM public.tenants")
            .execute(&pool)
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "creating interaction partitions ahead failed; will retry");
        }
        tokio::time::sleep(every).await;
    }
}

/// Refreshes every tenant's case_statistics view concurrently (readers are never
/// blocked). Runs until the task is dropped.
pub async fn refresh_statistics(pool: PgPool, mut redis: ConnectionManager, every: Duration) {
    loop {
        match sqlx::query_scalar::<_, Uuid>("SELECT id FROM public.tenants").fetch_all(&pool).await {
            Ok(tenants) => {
                for tenant in tenants {
                    if let Err(e) = refresh_one(&pool, &mut redis, tenant).await {
                        tracing::warn!(%tenant, error = %e, "refreshing case_statistics failed; will retry");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "listing tenants failed; will retry"),
        }
        tokio::time::sleep(every).await;
    }
}

pub async fn refresh_one(pool: &PgPool, redis: &mut ConnectionManager, tenant: Uuid) -> anyhow::Result<bool> {
    let Some(lock) = Lock::try_acquire(redis, tenant, "case_statistics").await? else {
        tracing::debug!(%tenant, "another replica is refreshing case_statistics");
        return Ok(false);
    };
    // The view by its name, not the schema's refresh_case_statistics(): that function's
    // body names the schema it was made in, and a rebuilt schema was made under its copy's
    // name and renamed at the switch.
    let schema = Tenancy(tenant).pg_schema();
    let refreshed =
        sqlx::query(&format!("REFRESH MATERIALIZED VIEW CONCURRENTLY {schema}.case_statistics")).execute(pool).await;
    lock.release(redis).await?;
    refreshed?;
    Ok(true)
}
