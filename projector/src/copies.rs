//! Where a rebuild's copy of a projection lives, per server, and how it takes the live
//! copy's place (`CopyStore`): a schema per tenant in PostgreSQL, a key prefix in Redis,
//! indices in Elasticsearch, collections in MongoDB. `rebuild.rs` keeps only the state
//! machine; each server's renames and drops are here.

use anyhow::Context;
use runtime::tenancy::{Tenancy, AUDIT_LOGS};
use sqlx::{Postgres, Transaction};

use crate::stores::{ProjectionName, StoreKind, Stores};

/// What a rebuild does with one server's copies.
#[async_trait::async_trait]
pub trait CopyStore: Send + Sync {
    /// Puts the tenant's `copy` where `live` is (atomically where the server can), while
    /// `hold` keeps the live worker paused. A copy that was never made switches nothing.
    async fn switch(
        &self,
        stores: &Stores,
        live: Tenancy,
        copy: Tenancy,
        hold: &mut Transaction<'static, Postgres>,
    ) -> anyhow::Result<()>;

    /// Drops what a switch of `live` put aside (nothing, unless the server keeps it).
    async fn retire(&self, _stores: &Stores, _live: Tenancy) -> anyhow::Result<()> {
        Ok(())
    }

    /// Drops a copy, whatever of it is there.
    async fn drop_copy(&self, stores: &Stores, copy: Tenancy) -> anyhow::Result<()>;

    /// Whether a switched copy leaves more behind than what it switched (its drop then
    /// follows a switch too).
    fn leaves_copies(&self) -> bool {
        false
    }
}

/// The copies of `name`'s server.
pub fn of(name: ProjectionName) -> Box<dyn CopyStore> {
    match name.store() {
        StoreKind::Postgres => Box::new(Schemas),
        StoreKind::Redis => Box::new(Keys),
        StoreKind::Elasticsearch => Box::new(Indices),
        StoreKind::Mongo { owns } => Box::new(Collections { owns }),
    }
}

/// PostgreSQL: a schema per tenant, renamed; the live one is kept aside until retired.
struct Schemas;

#[async_trait::async_trait]
impl CopyStore for Schemas {
    async fn switch(
        &self,
        _stores: &Stores,
        live: Tenancy,
        copy: Tenancy,
        hold: &mut Transaction<'static, Postgres>,
    ) -> anyhow::Result<()> {
        let (tenant, live, copy) = (live.0, live.pg_schema(), copy.pg_schema());
        if !schema_exists(hold, &copy).await? {
            return Ok(());
        }
        // Readers see the statistics of the copy from the first moment.
        sqlx::query(&format!("REFRESH MATERIALIZED VIEW {copy}.case_statistics")).execute(&mut **hold).await?;
        if schema_exists(hold, &live).await? {
            sqlx::query(&format!("ALTER SCHEMA {live} RENAME TO {}", retired(&live))).execute(&mut **hold).await?;
        }
        sqlx::query(&format!("ALTER SCHEMA {copy} RENAME TO {live}")).execute(&mut **hold).await?;
        sqlx::query("SELECT public.murima_interaction_partitions_ahead($1)").bind(tenant).execute(&mut **hold).await?;
        Ok(())
    }

    async fn retire(&self, stores: &Stores, live: Tenancy) -> anyhow::Result<()> {
        let old = retired(&live.pg_schema());
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {old} CASCADE")).execute(&stores.pool).await?;
        Ok(())
    }

    async fn drop_copy(&self, stores: &Stores, copy: Tenancy) -> anyhow::Result<()> {
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {} CASCADE", copy.pg_schema())).execute(&stores.pool).await?;
        Ok(())
    }
}

fn retired(schema: &str) -> String {
    format!("{schema}_retired")
}

async fn schema_exists(tx: &mut sqlx::Transaction<'static, Postgres>, schema: &str) -> anyhow::Result<bool> {
    Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
        .bind(schema)
        .fetch_one(&mut **tx)
        .await?)
}

/// Redis: a key prefix per tenant, renamed key by key in one script.
struct Keys;

#[async_trait::async_trait]
impl CopyStore for Keys {
    async fn switch(
        &self,
        stores: &Stores,
        live: Tenancy,
        copy: Tenancy,
        _hold: &mut Transaction<'static, Postgres>,
    ) -> anyhow::Result<()> {
        switch_redis_keys(stores, live, copy).await
    }

    async fn drop_copy(&self, stores: &Stores, copy: Tenancy) -> anyhow::Result<()> {
        let mut conn = stores.redis().await?;
        for chunk in scan(&mut conn, &format!("{}*", copy.redis_key(""))).await?.chunks(500) {
            let _: i64 = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await?;
        }
        Ok(())
    }
}

/// The projection-owned key families: replaced by the copy's wholesale.
const REDIS_OWNED: &[&str] = &["counters:*", "projection:*", "notifications:*"];

/// Renames every copy key onto its live name in one script (atomic in Redis), deletes
/// live projection-owned keys the copy does not have, and merges presence (which the
/// query API also writes) instead of replacing it.
const REDIS_SWITCH: &str = r#"
local copy, live, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
local renamed = {}
for i = 1, n do
  local target = live .. string.sub(KEYS[i], #copy + 1)
  if target == live .. 'online_users' then
    redis.call('ZUNIONSTORE', target, 2, target, KEYS[i], 'AGGREGATE', 'MAX')
    redis.call('DEL', KEYS[i])
  else
    redis.call('RENAME', KEYS[i], target)
  end
  renamed[target] = true
end
for i = n + 1, #KEYS do
  if not renamed[KEYS[i]] then redis.call('DEL', KEYS[i]) end
end
return n
"#;

async fn switch_redis_keys(stores: &Stores, live: Tenancy, copy: Tenancy) -> anyhow::Result<()> {
    let mut conn = stores.redis().await?;
    let copy_prefix = copy.redis_key("");
    let live_prefix = live.redis_key("");
    let copy_keys = scan(&mut conn, &format!("{copy_prefix}*")).await?;
    let mut live_keys = Vec::new();
    for family in REDIS_OWNED {
        live_keys.extend(scan(&mut conn, &format!("{live_prefix}{family}")).await?);
    }
    let n = copy_keys.len();
    let keys: Vec<String> = copy_keys.into_iter().chain(live_keys).collect();
    let script = redis::Script::new(REDIS_SWITCH);
    let mut invocation = script.prepare_invoke();
    for key in &keys {
        invocation.key(key);
    }
    invocation.arg(&copy_prefix).arg(&live_prefix).arg(n);
    let _: i64 = invocation.invoke_async(&mut conn).await.context("renaming the copy's keys")?;
    Ok(())
}

async fn scan(conn: &mut redis::aio::ConnectionManager, pattern: &str) -> anyhow::Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) =
            redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(1000).query_async(conn).await?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// Elasticsearch: the tenant's indices, swapped under its aliases.
struct Indices;

#[async_trait::async_trait]
impl CopyStore for Indices {
    async fn switch(
        &self,
        stores: &Stores,
        live: Tenancy,
        copy: Tenancy,
        _hold: &mut Transaction<'static, Postgres>,
    ) -> anyhow::Result<()> {
        crate::mappings::switch_copy(&stores.elastic, live, copy).await
    }

    async fn drop_copy(&self, stores: &Stores, copy: Tenancy) -> anyhow::Result<()> {
        crate::mappings::drop_indices(&stores.elastic, copy).await
    }
}

/// MongoDB: the collection a projection owns renamed (the audit log's months each). A
/// copy's audit projection makes every tenant collection; what it did not switch goes
/// with the copy.
struct Collections {
    owns: &'static str,
}

#[async_trait::async_trait]
impl CopyStore for Collections {
    async fn switch(
        &self,
        stores: &Stores,
        live: Tenancy,
        copy: Tenancy,
        _hold: &mut Transaction<'static, Postgres>,
    ) -> anyhow::Result<()> {
        let db = stores.mongo.database(&stores.settings.mongo_database);
        if self.owns == AUDIT_LOGS {
            return switch_audit_months(stores, &db, live, copy).await;
        }
        let (from, to) = (copy.mongo_collection(self.owns), live.mongo_collection(self.owns));
        if db.list_collection_names().await?.contains(&from) {
            rename_collection(stores, &db, &from, &to).await?;
        }
        Ok(())
    }

    async fn drop_copy(&self, stores: &Stores, copy: Tenancy) -> anyhow::Result<()> {
        let db = stores.mongo.database(&stores.settings.mongo_database);
        let prefix = copy.mongo_collection("");
        for name in db.list_collection_names().await? {
            if name.starts_with(&prefix) {
                db.collection::<mongodb::bson::Document>(&name).drop().await?;
            }
        }
        Ok(())
    }

    fn leaves_copies(&self) -> bool {
        true
    }
}

/// The copy's audit months in place of the live ones, each renamed onto its live name.
/// A live month the copy lacks stays: the copy replays the whole journal, so it has every
/// month the live log can have, unless a switch cut short is retried (its months renamed
/// already are not in the copy any more, and must not go).
async fn switch_audit_months(
    stores: &Stores,
    db: &mongodb::Database,
    live: Tenancy,
    copy: Tenancy,
) -> anyhow::Result<()> {
    for (month, from) in runtime::audit_log::months(db, copy).await? {
        rename_collection(stores, db, &from, &live.mongo_audit_collection(month)).await?;
    }
    Ok(())
}

async fn rename_collection(stores: &Stores, db: &mongodb::Database, from: &str, to: &str) -> anyhow::Result<()> {
    let namespace = |c: &str| format!("{}.{c}", db.name());
    stores
        .mongo
        .database("admin")
        .run_command(mongodb::bson::doc! {
            "renameCollection": namespace(from), "to": namespace(to), "dropTarget": true,
        })
        .await
        .with_context(|| format!("renaming {from} to {to}"))?;
    Ok(())
}
