//! Rebuilding a projection without stopping reads.
//!
//! 1. The rebuild gets a scratch id per tenant and replays the write-side journal (the
//!    whole history, whatever the broker still holds) through the projection's own code,
//!    placed under the scratch names (`tenant_<scratch>` schema, `tenant_<scratch>:` keys).
//!    The live copy keeps serving and keeps following new events all the while.
//! 2. Progress (journal position, gaps, counts) is saved after every batch, so an
//!    interrupted rebuild resumes where it stopped, or is abandoned (copies dropped).
//!    A session advisory lock lets one process at a time run a projection's rebuild.
//! 3. Once it has caught up, it takes the projection's lock exclusively (the live worker
//!    pauses between batches), applies the last events, and switches in one step, each
//!    server as `crate::copies` says (PostgreSQL renames the schemas in one transaction;
//!    Redis renames the keys in one script). The live worker then goes on writing under the same names, into the copy,
//!    whose versions already cover what it applied. The old copy is dropped.
//!
//! Positions are taken before commit, so the journal can show position 7 before 6. A
//! position missing from a range read is remembered as a gap and read again until it
//! shows up or is old enough to be a rolled-back command.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, Utc};
use runtime::tenancy::Tenancy;
use serde::Serialize;
use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};
use uuid::Uuid;

use crate::operations::Journal;
use crate::projection::Placement;
use crate::stores::{ProjectionName, Stores};

const BATCH: i64 = 10_000;
/// A gap older than this many positions behind the head is a rolled-back command.
const GAP_HORIZON: i64 = 100_000;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub id: Uuid,
    pub projection: String,
    pub tenant_id: Option<Uuid>,
    pub tenants: usize,
    pub events: i64,
    pub seconds: f64,
    pub events_per_sec: f64,
    /// How long the live worker was paused for the last events and the switch.
    pub switch_ms: f64,
    pub resumed: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Rebuild {
    pub id: Uuid,
    pub projection: String,
    pub tenant_id: Option<Uuid>,
    pub state: String,
    #[serde(skip)]
    pub copies: sqlx::types::Json<HashMap<Uuid, Uuid>>,
    pub position: i64,
    pub gaps: Vec<i64>,
    pub events_applied: i64,
    pub target_position: i64,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Statements that make the copy's indexes again before the switch (dropped for the
    /// bulk load).
    #[serde(skip)]
    pub deferred_ddl: Vec<String>,
}

const COLUMNS: &str = "id, projection, tenant_id, state, copies, position, gaps, events_applied, target_position,
                       started_at, updated_at, finished_at, deferred_ddl";

type Row = (
    Uuid,
    String,
    Option<Uuid>,
    String,
    sqlx::types::Json<HashMap<Uuid, Uuid>>,
    i64,
    Vec<i64>,
    i64,
    i64,
    DateTime<Utc>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Vec<String>,
);

impl From<Row> for Rebuild {
    fn from(r: Row) -> Self {
        Self {
            id: r.0,
            projection: r.1,
            tenant_id: r.2,
            state: r.3,
            copies: r.4,
            position: r.5,
            gaps: r.6,
            events_applied: r.7,
            target_position: r.8,
            started_at: r.9,
            updated_at: r.10,
            finished_at: r.11,
            deferred_ddl: r.12,
        }
    }
}

/// Rebuilds, newest first.
pub async fn list(pool: &PgPool, limit: i64) -> anyhow::Result<Vec<Rebuild>> {
    let rows: Vec<Row> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM projector.rebuilds ORDER BY started_at DESC LIMIT $1"))
            .bind(limit)
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().map(Rebuild::from).collect())
}

/// The unfinished rebuild of a projection, if there is one.
async fn unfinished(pool: &PgPool, name: ProjectionName) -> anyhow::Result<Option<Rebuild>> {
    let row: Option<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM projector.rebuilds WHERE projection = $1 AND state = 'running'"
    ))
    .bind(name.as_str())
    .fetch_optional(pool)
    .await?;
    Ok(row.map(Rebuild::from))
}

/// Holds the right to run a projection's rebuild (a session advisory lock) for as long as
/// it lives. Its connection is closed, not returned to the pool, when it goes, so the lock
/// goes with it however the rebuild ends (an error, a panic, an aborted task).
struct Exclusive(Option<PoolConnection<Postgres>>);

impl Drop for Exclusive {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            drop(conn.detach());
        }
    }
}

impl Exclusive {
    async fn take(pool: &PgPool, name: ProjectionName) -> anyhow::Result<Self> {
        // A holder that just died frees the lock once the server has seen its connection
        // close: a moment, so ask a few times before refusing.
        for _ in 0..10 {
            if let Some(taken) = Self::try_take(pool, name).await? {
                return Ok(taken);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        anyhow::bail!("a rebuild of {name} is running in another process; wait for it or stop it first")
    }

    /// The lock if nobody holds it now.
    async fn try_take(pool: &PgPool, name: ProjectionName) -> anyhow::Result<Option<Self>> {
        let mut conn = pool.acquire().await?;
        let key = crate::control::lock_key(&format!("rebuild.{name}"));
        let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(key).fetch_one(&mut *conn).await?;
        Ok(taken.then(|| Self(Some(conn))))
    }
}

/// Whether a tenant has any events in the journal (a rebuild of it has something to copy).
pub async fn in_journal(pool: &PgPool, tenant: Uuid) -> anyhow::Result<bool> {
    Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM eventstore.events WHERE tenant_id = $1)")
        .bind(tenant)
        .fetch_one(pool)
        .await?)
}

/// Why a rebuild of `name` for `tenant` cannot start now, if it cannot: one is running,
/// or an unfinished one is for another target. (Checked again when it starts.)
pub async fn refusal(pool: &PgPool, name: ProjectionName, tenant: Option<Uuid>) -> anyhow::Result<Option<String>> {
    let holders = crate::control::holders(pool, crate::control::lock_key(&format!("rebuild.{name}"))).await?;
    if !holders.is_empty() {
        return Ok(Some(format!(
            "a rebuild of {name} is running ({}); follow it at /v1/admin/rebuilds",
            holders.join("; ")
        )));
    }
    Ok(unfinished(pool, name).await?.filter(|r| r.tenant_id != tenant).map(|r| {
        format!(
            "an unfinished rebuild of {name} ({}) is for {}; resume it with the same target or abandon it",
            r.id,
            r.tenant_id.map_or("every tenant".to_owned(), |t| format!("tenant {t}"))
        )
    }))
}

/// Whether an unfinished rebuild of `name` is for another target than `tenant` (so a
/// rebuild for `tenant` would be refused until it is resumed or abandoned).
pub async fn unfinished_for_another(pool: &PgPool, name: ProjectionName, tenant: Option<Uuid>) -> anyhow::Result<bool> {
    Ok(unfinished(pool, name).await?.is_some_and(|r| r.tenant_id != tenant))
}

/// Starts a rebuild of `name` (for one tenant or all), or resumes its unfinished one,
/// and runs it to the switch. `progress(done, total)` is called after every batch.
pub async fn run(
    stores: &Stores,
    projection: ProjectionName,
    tenant: Option<Uuid>,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> anyhow::Result<Report> {
    let name = projection.as_str();
    let _exclusive = Exclusive::take(&stores.pool, projection).await?;
    let pool = &stores.pool;
    // What earlier rebuilds left (their store did not answer then) goes first: a copy
    // left in place would be confused with this one's.
    clean_up_held(stores, projection).await?;
    let journal = Journal::new(pool, tenant);
    let found = unfinished(pool, projection).await?;
    let resumed = found.is_some();
    let mut rebuild = match found {
        Some(r) if r.tenant_id != tenant => anyhow::bail!(
            "an unfinished rebuild of {name} ({}) is for {}; resume it with the same target or abandon it",
            r.id,
            r.tenant_id.map_or("every tenant".to_owned(), |t| format!("tenant {t}"))
        ),
        Some(r) => r,
        None => start(pool, projection, tenant, &journal).await?,
    };
    let placement = Placement::copies(rebuild.copies.0.clone());
    let mut copier = Copier::new(stores, projection, &rebuild, stores.placed(projection, placement).await?).await?;
    tracing::info!(projection = name, rebuild = %rebuild.id, ?tenant, resumed, from = rebuild.position, "rebuilding");

    let started = Instant::now();
    let applied_before = rebuild.events_applied;
    if projection == ProjectionName::Postgres && !resumed {
        defer_indexes(pool, &mut rebuild).await.context("preparing the copy schemas")?;
    }
    // Copy while the live projection runs, until a batch comes back short.
    let mut ahead = None;
    loop {
        let (read, next) = step(&journal, &mut copier, &mut rebuild, ahead.take(), true).await?;
        save(pool, &rebuild).await?;
        progress(rebuild.position.min(rebuild.target_position).max(0) as u64, rebuild.target_position as u64);
        if read < BATCH as usize {
            break;
        }
        ahead = next;
    }

    restore_indexes(pool, &mut rebuild).await.context("building the copy's indexes")?;

    // Pause the live worker between two batches, copy the rest, switch.
    let switching = Instant::now();
    let mut hold = crate::control::exclusive(pool, name).await?;
    while step(&journal, &mut copier, &mut rebuild, None, false).await?.0 > 0 {}
    switch(stores, projection, &rebuild, &mut hold).await.with_context(|| format!("switching {name} to its copy"))?;
    sqlx::query("UPDATE projector.rebuilds SET state = 'switched', finished_at = now(), position = $2, events_applied = $3, gaps = $4, updated_at = now() WHERE id = $1")
        .bind(rebuild.id)
        .bind(rebuild.position)
        .bind(rebuild.events_applied)
        .bind(&rebuild.gaps)
        .execute(&mut *hold)
        .await?;
    hold.commit().await?;
    let switch_ms = switching.elapsed().as_secs_f64() * 1000.0;
    rebuild.state = "switched".to_owned();
    drop_bookkeeping(pool, rebuild.id).await?;
    if let Err(e) = drop_leftovers(stores, projection, &rebuild).await {
        tracing::warn!(projection = name, rebuild = %rebuild.id, error = format!("{e:#}"), "switched; what it replaced is dropped later");
    }
    progress(rebuild.target_position as u64, rebuild.target_position as u64);

    let seconds = started.elapsed().as_secs_f64();
    let events = rebuild.events_applied - applied_before;
    tracing::info!(projection = name, rebuild = %rebuild.id, events, seconds, switch_ms, "rebuild switched in");
    Ok(Report {
        id: rebuild.id,
        projection: name.to_owned(),
        tenant_id: tenant,
        tenants: rebuild.copies.0.len(),
        events,
        seconds,
        events_per_sec: events as f64 / seconds.max(1e-9),
        switch_ms,
        resumed,
    })
}

async fn start(
    pool: &PgPool,
    name: ProjectionName,
    tenant: Option<Uuid>,
    journal: &Journal<'_>,
) -> anyhow::Result<Rebuild> {
    let tenants: Vec<Uuid> = match tenant {
        Some(t) => vec![t],
        None => crate::operations::journal_tenants(pool).await?,
    };
    if let Some(t) = tenant {
        anyhow::ensure!(in_journal(pool, t).await?, "tenant {t} has no events in the journal");
    }
    let copies: HashMap<Uuid, Uuid> = tenants.into_iter().map(|t| (t, Uuid::new_v4())).collect();
    let head = journal.head().await?;
    let row: Row = sqlx::query_as(&format!(
        "INSERT INTO projector.rebuilds (id, projection, tenant_id, copies, target_position)
         VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(name)
    .bind(tenant)
    .bind(sqlx::types::Json(&copies))
    .bind(head)
    .fetch_one(pool)
    .await
    .context("recording the rebuild")?;
    Ok(row.into())
}

/// Copies one batch: the range read before (or now) and the gaps that have committed
/// since. With `read_ahead` the next range is read while this batch is applied (reading
/// and writing overlap). A gap event that turns up after later events of its stream were
/// copied is followed by those events again, so they apply on top of it (the version
/// guards skipped them the first time). Returns the length of the range and the next one.
async fn step(
    journal: &Journal<'_>,
    copier: &mut Copier,
    rebuild: &mut Rebuild,
    ahead: Option<Vec<crate::event::Event>>,
    read_ahead: bool,
) -> anyhow::Result<(usize, Option<Vec<crate::event::Event>>)> {
    let started = Instant::now();
    let range = match ahead {
        Some(range) => range,
        None => journal.read_range(rebuild.position, BATCH).await?,
    };
    let mut events = journal.read_gaps(&rebuild.gaps).await?;
    let filled: Vec<(crate::parking::StreamKey, i64)> =
        events.iter().map(|e| (crate::parking::StreamKey::of(&e.envelope), e.envelope.stream_version)).collect();
    let filled_positions: Vec<i64> = events.iter().map(|e| e.envelope.position).collect();
    let range_len = range.len();
    let upto = range.last().map_or(rebuild.position, |e| e.envelope.position).max(rebuild.position);
    events.extend(range);
    if events.is_empty() {
        return Ok((0, None));
    }
    let read = started.elapsed();
    let next = async {
        if read_ahead && range_len == BATCH as usize {
            journal.read_range(upto, BATCH).await.map(Some)
        } else {
            Ok(None)
        }
    };
    let count = events.len();
    let (applied, next) = tokio::join!(copier.apply(events), next);
    applied?;
    if !filled.is_empty() {
        let again = journal.streams_after(&filled, rebuild.position).await?;
        copier.apply(again).await?;
    }
    tracing::debug!(
        events = count,
        read_ms = read.as_millis() as u64,
        apply_ms = (started.elapsed() - read).as_millis() as u64,
        "rebuild batch"
    );
    rebuild.gaps.retain(|g| !filled_positions.contains(g));
    if upto > rebuild.position {
        rebuild.gaps.extend(journal.missing(rebuild.position.max(upto - GAP_HORIZON), upto).await?);
        rebuild.position = upto;
    }
    rebuild.gaps.retain(|g| *g > rebuild.position - GAP_HORIZON);
    rebuild.events_applied += count as i64;
    Ok((range_len, next?))
}

/// Writes a rebuild's batches into its copy as the live worker writes its own: streams
/// parked (or skipped) for the projection stay out, and an event the store refuses is
/// parked with the rest of its stream. Tenants provisioned after the rebuild started
/// have no copy; their events are left to the live projection.
struct Copier {
    copy: std::sync::Arc<dyn crate::projection::Projection>,
    copies: HashMap<Uuid, Uuid>,
    parking: crate::parking::ParkingLot,
    parked: std::collections::HashSet<crate::parking::StreamKey>,
    checkpoint: crate::projection::Checkpoint,
    pool: PgPool,
}

impl Copier {
    async fn new(
        stores: &Stores,
        name: ProjectionName,
        rebuild: &Rebuild,
        copy: std::sync::Arc<dyn crate::projection::Projection>,
    ) -> anyhow::Result<Self> {
        let parking = crate::parking::ParkingLot::new(stores.pool.clone());
        let parked = parking.held_back(name.as_str()).await?;
        let group = format!("rebuild.{}", rebuild.id);
        let checkpoint = crate::projection::Checkpoint { group, ..Default::default() };
        Ok(Self { copy, copies: rebuild.copies.0.clone(), parking, parked, checkpoint, pool: stores.pool.clone() })
    }

    async fn apply(&mut self, mut events: Vec<crate::event::Event>) -> anyhow::Result<()> {
        events.retain(|e| {
            self.copies.contains_key(&e.envelope.tenant_id)
                && !self.parked.contains(&crate::parking::StreamKey::of(&e.envelope))
        });
        let group = self.checkpoint.group.clone();
        crate::worker::apply_or_park(
            crate::worker::Target::waiting(&*self.copy),
            &crate::worker::Recorded { parking: &self.parking, pool: &self.pool, group: &group },
            events,
            &self.checkpoint,
            &mut self.parked,
        )
        .await?;
        Ok(())
    }
}

/// A bulk load into an empty table is cheaper without its secondary indexes: the copy
/// schemas are made now, their indexes that back no constraint are dropped, and the
/// statements that make them again are kept with the rebuild (in the same transaction,
/// so a resumed rebuild still has them), to run once before the switch. Foreign keys
/// stay: they are what parks an event the live projection would park too.
async fn defer_indexes(pool: &PgPool, rebuild: &mut Rebuild) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    let mut schemas = Vec::new();
    for scratch in rebuild.copies.0.values() {
        sqlx::query("SELECT public.murima_provision_tenant($1)").bind(scratch).execute(&mut *tx).await?;
        schemas.push(Tenancy(*scratch).pg_schema());
    }
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT format('DROP INDEX %I.%I', n.nspname, ic.relname), pg_get_indexdef(i.indexrelid)
         FROM pg_index i
         JOIN pg_class ic ON ic.oid = i.indexrelid
         JOIN pg_class t ON t.oid = i.indrelid
         JOIN pg_namespace n ON n.oid = t.relnamespace
         WHERE n.nspname = ANY($1) AND t.relkind IN ('r', 'p') AND NOT t.relispartition
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
    )
    .bind(&schemas)
    .fetch_all(&mut *tx)
    .await?;
    for (drop, _) in &indexes {
        sqlx::query(drop).execute(&mut *tx).await?;
    }
    rebuild.deferred_ddl = indexes.into_iter().map(|(_, make)| make).collect();
    sqlx::query("UPDATE projector.rebuilds SET deferred_ddl = $2 WHERE id = $1")
        .bind(rebuild.id)
        .bind(&rebuild.deferred_ddl)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

async fn restore_indexes(pool: &PgPool, rebuild: &mut Rebuild) -> anyhow::Result<()> {
    if rebuild.deferred_ddl.is_empty() {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    for statement in &rebuild.deferred_ddl {
        // A partitioned table's index is described `ON ONLY` the parent; made again
        // without ONLY it is made on every partition too, as provisioning made it.
        let again = statement
            .replacen("CREATE INDEX ", "CREATE INDEX IF NOT EXISTS ", 1)
            .replacen("CREATE UNIQUE INDEX ", "CREATE UNIQUE INDEX IF NOT EXISTS ", 1)
            .replacen(" ON ONLY ", " ON ", 1);
        sqlx::query(&again).execute(&mut *tx).await?;
    }
    sqlx::query("UPDATE projector.rebuilds SET deferred_ddl = '{}' WHERE id = $1")
        .bind(rebuild.id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    rebuild.deferred_ddl.clear();
    // A bulk-loaded table has no statistics until autovacuum gets to it, and without them
    // the query API's plans on a million cases took seconds instead of milliseconds.
    // (After the indexes: expression indexes get statistics too.)
    let schemas: Vec<String> = rebuild.copies.0.values().map(|s| Tenancy(*s).pg_schema()).collect();
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT format('%I.%I', schemaname, tablename) FROM pg_tables WHERE schemaname = ANY($1)")
            .bind(&schemas)
            .fetch_all(pool)
            .await?;
    for table in &tables {
        sqlx::query(&format!("ANALYZE {table}")).execute(pool).await?;
    }
    Ok(())
}

async fn save(pool: &PgPool, rebuild: &Rebuild) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE projector.rebuilds SET position = $2, gaps = $3, events_applied = $4, updated_at = now() WHERE id = $1",
    )
    .bind(rebuild.id)
    .bind(rebuild.position)
    .bind(&rebuild.gaps)
    .bind(rebuild.events_applied)
    .execute(pool)
    .await?;
    Ok(())
}

/// Puts the copies where the live names are, atomically per store, while `hold` keeps
/// the live worker paused.
async fn switch(
    stores: &Stores,
    name: ProjectionName,
    rebuild: &Rebuild,
    hold: &mut sqlx::Transaction<'static, Postgres>,
) -> anyhow::Result<()> {
    let store = crate::copies::of(name);
    for (tenant, scratch) in &rebuild.copies.0 {
        store.switch(stores, Tenancy(*tenant), Tenancy(*scratch), hold).await?;
    }
    Ok(())
}

/// Drops what a finished rebuild left: an abandoned one's copies, or what a switched one
/// replaced (the old PostgreSQL schemas, the other collections a Mongo copy made). Bounded
/// by the apply deadline: a store that does not answer leaves the rebuild marked as not
/// cleaned, for `clean_up` to finish later. Run with the rebuild's lock held.
async fn drop_leftovers(stores: &Stores, name: ProjectionName, rebuild: &Rebuild) -> anyhow::Result<()> {
    let store = crate::copies::of(name);
    let dropping = async {
        if rebuild.state == "abandoned" || store.leaves_copies() {
            for scratch in rebuild.copies.0.values() {
                store.drop_copy(stores, Tenancy(*scratch)).await?;
            }
        }
        if rebuild.state == "switched" {
            for tenant in rebuild.copies.0.keys() {
                store.retire(stores, Tenancy(*tenant)).await?;
            }
        }
        anyhow::Ok(())
    };
    let deadline = stores.settings.apply_deadline;
    tokio::time::timeout(deadline, dropping)
        .await
        .map_err(|_| anyhow::anyhow!("the {} server did not answer within {deadline:?}", name.store_name()))??;
    sqlx::query("UPDATE projector.rebuilds SET cleaned_at = now() WHERE id = $1")
        .bind(rebuild.id)
        .execute(&stores.pool)
        .await?;
    Ok(())
}

/// Finished rebuilds whose leftovers may still be there, oldest first.
async fn not_cleaned(pool: &PgPool, name: ProjectionName) -> anyhow::Result<Vec<Rebuild>> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM projector.rebuilds
         WHERE projection = $1 AND state <> 'running' AND cleaned_at IS NULL ORDER BY finished_at"
    ))
    .bind(name.as_str())
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Rebuild::from).collect())
}

/// Drops the leftovers of `name`'s finished rebuilds that are still there, with the
/// rebuild's lock held. Returns how many rebuilds are now clean.
async fn clean_up_held(stores: &Stores, name: ProjectionName) -> anyhow::Result<usize> {
    let mut cleaned = 0;
    for rebuild in not_cleaned(&stores.pool, name).await? {
        drop_leftovers(stores, name, &rebuild)
            .await
            .with_context(|| format!("dropping what rebuild {} of {name} left", rebuild.id))?;
        tracing::info!(projection = %name, rebuild = %rebuild.id, "a finished rebuild's leftovers are dropped");
        cleaned += 1;
    }
    Ok(cleaned)
}

/// Drops what finished rebuilds left behind because a store did not answer at the time
/// (the projector's maintenance runs this). A projection whose rebuild is running is
/// left for later.
pub async fn clean_up(stores: &Stores) -> anyhow::Result<usize> {
    let pending: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT projection FROM projector.rebuilds WHERE state <> 'running' AND cleaned_at IS NULL",
    )
    .fetch_all(&stores.pool)
    .await?;
    let mut cleaned = 0;
    for name in pending {
        let Ok(projection) = name.parse::<ProjectionName>() else { continue };
        let Some(_exclusive) = Exclusive::try_take(&stores.pool, projection).await? else { continue };
        cleaned += clean_up_held(stores, projection).await?;
    }
    Ok(cleaned)
}

/// Runs `clean_up` every `every`, for as long as the projector runs.
pub async fn clean_up_periodically(stores: Stores, every: std::time::Duration) {
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = clean_up(&stores).await {
            tracing::warn!(
                error = format!("{e:#}"),
                "a finished rebuild's leftovers are still there; trying again later"
            );
        }
    }
}

async fn drop_bookkeeping(pool: &PgPool, id: Uuid) -> anyhow::Result<()> {
    let group = format!("rebuild.{id}");
    sqlx::query("DELETE FROM projector.tenant_positions WHERE projection = $1").bind(&group).execute(pool).await?;
    sqlx::query("DELETE FROM projector.checkpoints WHERE projection = $1").bind(&group).execute(pool).await?;
    sqlx::query("DELETE FROM projector.progress WHERE projection = $1").bind(&group).execute(pool).await?;
    Ok(())
}

/// What abandoning a rebuild did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Abandoned {
    pub id: Uuid,
    /// Why some of its copies are still there, when they are: their store did not answer.
    /// The projector's maintenance drops them once it does.
    pub clean_up_pending: Option<String>,
}

/// Stops an unfinished rebuild of `name` for good; the live copy is untouched. It is
/// marked abandoned first, then its copies are dropped within the apply deadline: a copy
/// whose store does not answer is dropped later (`clean_up`).
pub async fn abandon(stores: &Stores, projection: ProjectionName) -> anyhow::Result<Abandoned> {
    let name = projection.as_str();
    let _exclusive = Exclusive::take(&stores.pool, projection).await?;
    let mut rebuild =
        unfinished(&stores.pool, projection).await?.with_context(|| format!("no unfinished rebuild of {name}"))?;
    sqlx::query(
        "UPDATE projector.rebuilds SET state = 'abandoned', finished_at = now(), updated_at = now() WHERE id = $1",
    )
    .bind(rebuild.id)
    .execute(&stores.pool)
    .await?;
    rebuild.state = "abandoned".to_owned();
    drop_bookkeeping(&stores.pool, rebuild.id).await?;
    let clean_up_pending = drop_leftovers(stores, projection, &rebuild).await.err().map(|e| format!("{e:#}"));
    match &clean_up_pending {
        None => tracing::warn!(projection = name, rebuild = %rebuild.id, "rebuild abandoned; its copies are dropped"),
        Some(why) => tracing::warn!(
            projection = name,
            rebuild = %rebuild.id,
            why,
            "rebuild abandoned; its copies are dropped later, once their store answers"
        ),
    }
    Ok(Abandoned { id: rebuild.id, clean_up_pending })
}

/// Drops one copy of a projection (a scratch schema, key prefix, collections or indices).
pub async fn drop_copy(stores: &Stores, name: ProjectionName, scratch: Uuid) -> anyhow::Result<()> {
    crate::copies::of(name).drop_copy(stores, Tenancy(scratch)).await
}
