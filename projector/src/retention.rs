//! Retention (issue 19, seed §5.1.2, §5.2.2, §5.3.2): each tenant keeps its interactions
//! and audit entries for `settings.retention_days` (365 by default), counted in whole
//! months, the unit every store keeps them in: a month is expired once its last day is
//! further back than that. An expired month is archived first, as compressed JSON Lines
//! with a line in the tenant's manifest (`archive`), and then removed: its interactions
//! partition in PostgreSQL, its audit entries in MongoDB, and its interactions and
//! audit-log indices in Elasticsearch (the audit entries of Elasticsearch are the same as
//! MongoDB's, archived once).
//!
//! Re-running is safe: what is still there is archived again and removed, what is gone
//! already is not looked for, and each run archives into files of its own, so nothing
//! archived is ever replaced. A partition is detached before it is read, so nothing
//! lands in it unarchived. One run at a time (a PostgreSQL advisory lock): the projector's, every
//! `EVERY`, or `murima-admin retention [--dry-run]` by hand. Only the read models are
//! purged: the journal keeps every event (erasure is crypto-shredding's, issue 19).
//!
//! An archive holds personal data as the journal does: sealed with its data subject's key
//! (`Sealer`), so erasing the subject after the archive was written reaches the archive
//! too, and a restore then puts back markers where their data was.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use elasticsearch::indices::{IndicesDeleteParts, IndicesGetAliasParts};
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use runtime::tenancy::{Tenancy, AUDIT_LOGS, ES_AUDIT_LOGS, INTERACTIONS};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::Connection;
use uuid::Uuid;

use crate::stores::Stores;

/// How often the projector enforces retention.
pub const EVERY: Duration = Duration::from_secs(3600);
/// Documents deleted from MongoDB per request.
const DELETE_CHUNK: usize = 500;

/// One expired month of one kind of data, and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct Expired {
    pub tenant_id: Uuid,
    /// `interactions` or `audit_logs`.
    pub kind: &'static str,
    /// `YYYY-MM`.
    pub month: String,
    /// Rows or documents the month held.
    pub records: u64,
    /// The archive file written (None on a dry run, or when the month held nothing).
    pub archive: Option<PathBuf>,
    /// Elasticsearch indices of the month removed (or to be removed).
    pub indices: Vec<String>,
}

/// One retention run at a time, whoever runs it (a projector's hourly job or
/// `murima-admin`): a PostgreSQL advisory lock held for the whole run.
const RETENTION_LOCK: i64 = 0x6d75_7269_6d61_0004;

/// Enforces every tenant's retention as of `now` (or, `dry_run`, only lists what would
/// go); what expired, month by month. A tenant whose stores fail is logged, counted
/// (`retention_failures_total`) and left for the next run; the others go on.
pub async fn run(stores: &Stores, now: DateTime<Utc>, dry_run: bool) -> anyhow::Result<Vec<Expired>> {
    let root = stores
        .settings
        .archive_dir
        .clone()
        .context("MURIMA_ARCHIVE_DIR is not set: nothing is removed that is not archived first")?;
    let lock = lock(stores).await?;
    let result = run_locked(stores, &root, now, dry_run).await;
    unlock(lock).await;
    result
}

/// The retention lock, on a connection of its own, not the pool's: whenever the holder
/// ends (finished, failed, or its task dropped), the connection closes and PostgreSQL
/// releases the lock.
async fn lock(stores: &Stores) -> anyhow::Result<sqlx::PgConnection> {
    let mut lock = sqlx::PgConnection::connect_with(&stores.pool.connect_options()).await?;
    let held: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(RETENTION_LOCK).fetch_one(&mut lock).await?;
    anyhow::ensure!(held, "another retention run (or restore) is going on");
    Ok(lock)
}

/// Released now: a dropped connection's lock goes only once the server sees it close, and
/// a run started just after another (`murima-admin retention`) was refused.
async fn unlock(mut lock: sqlx::PgConnection) {
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)").bind(RETENTION_LOCK).execute(&mut lock).await;
    let _ = lock.close().await;
}

/// What a restore put back: the archive files read and the records in them (those
/// already there are left as they are).
#[derive(Debug, Serialize)]
pub struct Restored {
    pub tenant_id: Uuid,
    pub kind: &'static str,
    pub month: String,
    pub files: Vec<PathBuf>,
    pub records: u64,
}

/// Puts a tenant's archived month back: interactions into their PostgreSQL partition,
/// audit entries into MongoDB, from every archive file of the month the manifest lists,
/// each checked against its SHA-256 first. Refused while the month is still past the
/// tenant's retention (the next run would remove it again: raise `retention_days`
/// first). Elasticsearch is not restored from archives: a rebuild of the
/// `elasticsearch` projection brings the months back from the journal.
pub async fn restore(stores: &Stores, tenant: Uuid, kind: &str, month: &str) -> anyhow::Result<Restored> {
    let kind = [INTERACTIONS, AUDIT_LOGS]
        .into_iter()
        .find(|k| *k == kind)
        .with_context(|| format!("--kind must be {INTERACTIONS} or {AUDIT_LOGS}, not {kind:?}"))?;
    let start = NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| Utc.from_utc_datetime(&d))
        .with_context(|| format!("--month must be YYYY-MM, not {month:?}"))?;
    let root = stores.settings.archive_dir.clone().context("MURIMA_ARCHIVE_DIR is not set: there is no archive")?;
    let settings: Option<Value> = sqlx::query_scalar("SELECT settings FROM public.tenants WHERE id = $1")
        .bind(tenant)
        .fetch_optional(&stores.pool)
        .await?;
    let settings = settings.with_context(|| format!("no tenant {tenant}"))?;
    let days =
        settings.as_object().map(events::tenant::retention_days).unwrap_or(events::tenant::DEFAULT_RETENTION_DAYS);
    if boundary(Utc::now(), days).is_some_and(|keep| start < keep) {
        anyhow::bail!(
            "{month} is past tenant {tenant}'s retention of {days} days: the next run would remove it again; \
             raise its settings.retention_days first"
        );
    }
    let archive = root.join(format!("tenant-{}", tenant.simple()));
    let manifest = std::fs::read_to_string(archive.join("manifest.jsonl"))
        .with_context(|| format!("no archive of tenant {tenant} in {}", root.display()))?;
    let mut files = Vec::new();
    for line in manifest.lines() {
        let entry: Value = serde_json::from_str(line).with_context(|| format!("a manifest line: {line}"))?;
        if entry["kind"] == kind && entry["month"] == month {
            let file = archive.join(entry["file"].as_str().context("a manifest line without its file")?);
            files.push((file, entry["sha256"].as_str().unwrap_or_default().to_owned()));
        }
    }
    anyhow::ensure!(!files.is_empty(), "nothing of {kind} {month} is archived for tenant {tenant}");
    for (file, sha256) in &files {
        let mut hasher = Sha256::new();
        std::io::copy(
            &mut std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?,
            &mut hasher,
        )?;
        let digest: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
        anyhow::ensure!(&digest == sha256, "{} does not match its manifest's SHA-256: not restored", file.display());
    }
    let lock = lock(stores).await?;
    let result = restore_files(stores, tenant, kind, start, &files).await;
    unlock(lock).await;
    Ok(Restored {
        tenant_id: tenant,
        kind,
        month: month.to_owned(),
        records: result?,
        files: files.into_iter().map(|(f, _)| f).collect(),
    })
}

async fn restore_files(
    stores: &Stores,
    tenant: Uuid,
    kind: &str,
    start: DateTime<Utc>,
    files: &[(PathBuf, String)],
) -> anyhow::Result<u64> {
    use std::io::BufRead;
    let schema = Tenancy(tenant).pg_schema();
    let db = stores.mongo.database(&stores.settings.mongo_database);
    // The month's audit collection as the projection makes it: validator and indexes.
    let audit = crate::mongo::Collections::default();
    if kind == INTERACTIONS {
        sqlx::query("SELECT public.murima_interaction_partition($1, $2)")
            .bind(&schema)
            .bind(start)
            .execute(&stores.pool)
            .await?;
    }
    let mut records: u64 = 0;
    for (file, _) in files {
        let lines = std::io::BufReader::new(flate2::read::GzDecoder::new(std::fs::File::open(file)?)).lines();
        let mut chunk: Vec<Value> = Vec::with_capacity(DELETE_CHUNK);
        let mut lines = lines.peekable();
        while let Some(line) = lines.next() {
            chunk.push(serde_json::from_str(&line?).with_context(|| format!("a record of {}", file.display()))?);
            if chunk.len() == DELETE_CHUNK || lines.peek().is_none() {
                records = records.saturating_add(chunk.len() as u64);
                open_archived(&stores.pool, tenant, kind, &mut chunk)
                    .await
                    .with_context(|| format!("opening the sealed data of {}", file.display()))?;
                if kind == INTERACTIONS {
                    sqlx::query(&format!(
                        "INSERT INTO {schema}.interactions
                         SELECT * FROM jsonb_populate_recordset(NULL::{schema}.interactions, $1) ON CONFLICT DO NOTHING"
                    ))
                    .bind(Value::Array(std::mem::take(&mut chunk)))
                    .execute(&stores.pool)
                    .await?;
                } else {
                    let docs = std::mem::take(&mut chunk)
                        .into_iter()
                        .map(|entry| match Bson::try_from(entry)? {
                            Bson::Document(d) => Ok(d),
                            _ => anyhow::bail!("an archived audit entry is not a document"),
                        })
                        .collect::<anyhow::Result<Vec<Document>>>()?;
                    let month = audit.ensure_audit(&db, tenant, start).await?;
                    crate::mongo::insert_new(&db.collection(&month), docs).await?;
                }
            }
        }
    }
    Ok(records)
}

async fn run_locked(stores: &Stores, root: &Path, now: DateTime<Utc>, dry_run: bool) -> anyhow::Result<Vec<Expired>> {
    let tenants: Vec<(Uuid, Value)> = sqlx::query_as("SELECT id, settings FROM public.tenants ORDER BY id")
        .fetch_all(&stores.pool)
        .await
        .context("reading the tenants")?;
    // Each run writes files of its own: an archive is never replaced.
    let run_id = Uuid::now_v7().simple().to_string();
    let mut expired = Vec::new();
    for (tenant, settings) in tenants {
        let days =
            settings.as_object().map(events::tenant::retention_days).unwrap_or(events::tenant::DEFAULT_RETENTION_DAYS);
        let Some(boundary) = boundary(now, days) else { continue };
        let archive = root.join(format!("tenant-{}", tenant.simple()));
        let run = Run { stores, tenant, boundary, dry_run, archive, run_id: &run_id };
        match run.tenant().await {
            Ok(mut found) => expired.append(&mut found),
            Err(e) => {
                tracing::error!(tenant_id = %tenant, error = %format!("{e:#}"), "retention of a tenant failed; the next run tries again");
                metrics::counter!("retention_failures_total").increment(1);
            }
        }
    }
    Ok(expired)
}

/// The first month a tenant with `days` of retention still keeps, as of `now`: every
/// month before it ended more than `days` ago.
pub fn boundary(now: DateTime<Utc>, days: i64) -> Option<DateTime<Utc>> {
    events::tenant::kept_from(now, days)
}

/// One tenant's part of a run.
struct Run<'a> {
    stores: &'a Stores,
    tenant: Uuid,
    boundary: DateTime<Utc>,
    dry_run: bool,
    archive: PathBuf,
    run_id: &'a str,
}

impl Run<'_> {
    async fn tenant(&self) -> anyhow::Result<Vec<Expired>> {
        let Run { stores, tenant, boundary, dry_run, ref archive, run_id } = *self;
        let mut expired = Vec::new();
        let mut sealer = Sealer { pool: &stores.pool, tenant, keys: HashMap::new() };
        let indices = expired_indices(stores, tenant, boundary).await?;
        let indices_of = |kind: &str, month: &str| -> Vec<String> {
            indices.iter().filter(|(k, m, _)| k == kind && m == month).map(|(_, _, i)| i.clone()).collect()
        };

        // Interactions: one PostgreSQL partition per month, read as a stream.
        let schema = Tenancy(tenant).pg_schema();
        for (partition, month) in expired_partitions(stores, tenant, boundary).await? {
            let mut item = Expired {
                tenant_id: tenant,
                kind: INTERACTIONS,
                records: 0,
                indices: indices_of(INTERACTIONS, &month),
                month,
                archive: None,
            };
            if dry_run {
                let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {schema}.{partition}"))
                    .fetch_one(&stores.pool)
                    .await?;
                item.records = u64::try_from(n).unwrap_or(0);
            } else {
                // Detached first: no insert lands in it while it is read, and readers of the
                // tenant's other months are not blocked.
                detach(stores, &schema, &partition).await?;
                let mut file = Archive::create(archive, INTERACTIONS, &item.month, run_id)?;
                let sql = format!("SELECT to_jsonb(i) FROM {schema}.{partition} i ORDER BY timestamp, id");
                let mut rows = sqlx::query_scalar::<_, Value>(&sql).fetch(&stores.pool);
                let mut chunk = Vec::with_capacity(SEAL_CHUNK);
                while let Some(row) = rows.try_next().await? {
                    chunk.push(row);
                    if chunk.len() >= SEAL_CHUNK {
                        sealer.seal_into(INTERACTIONS, &mut chunk, &mut file).await?;
                    }
                }
                sealer.seal_into(INTERACTIONS, &mut chunk, &mut file).await?;
                drop(rows);
                (item.records, item.archive) = file.finish()?;
                sqlx::query(&format!("DROP TABLE IF EXISTS {schema}.{partition}")).execute(&stores.pool).await?;
                drop_indices(stores, &item.indices).await?;
            }
            expired.push(item);
        }
        // Interactions months with indices but no partition left (removed by an earlier run
        // that stopped before the indices).
        for (kind, month, _) in &indices {
            if kind == INTERACTIONS && !expired.iter().any(|e| e.kind == INTERACTIONS && &e.month == month) {
                let item = Expired {
                    tenant_id: tenant,
                    kind: INTERACTIONS,
                    month: month.clone(),
                    records: 0,
                    archive: None,
                    indices: indices_of(INTERACTIONS, month),
                };
                if !dry_run {
                    drop_indices(stores, &item.indices).await?;
                }
                expired.push(item);
            }
        }

        // Audit entries: MongoDB's month collections past the boundary, from the oldest,
        // each read as a stream, archived and dropped, and the month's Elasticsearch
        // indices with them.
        let db = stores.mongo.database(&stores.settings.mongo_database);
        let own = tenant.to_string();
        let mut months: Vec<DateTime<Utc>> = runtime::audit_log::months(&db, Tenancy(tenant))
            .await?
            .into_iter()
            .map(|(month, _)| month)
            .filter(|month| *month < boundary)
            .collect();
        for (kind, month, _) in &indices {
            let first = NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d").ok();
            if let Some(at) = first.and_then(|d| d.and_hms_opt(0, 0, 0)).map(|d| Utc.from_utc_datetime(&d)) {
                if kind == AUDIT_LOGS && !months.contains(&at) {
                    months.push(at);
                }
            }
        }
        months.sort();
        for start in months {
            let collection = db.collection::<Document>(&Tenancy(tenant).mongo_audit_collection(start));
            let range = doc! { "tenant_id": &own };
            let month = month_of(start);
            let mut item = Expired {
                tenant_id: tenant,
                kind: AUDIT_LOGS,
                records: 0,
                indices: indices_of(AUDIT_LOGS, &month),
                month,
                archive: None,
            };
            if dry_run {
                item.records = collection.count_documents(range).await?;
            } else {
                let mut file = Archive::create(archive, AUDIT_LOGS, &item.month, run_id)?;
                let mut ids: Vec<Bson> = Vec::new();
                let mut entries = collection.find(range).sort(doc! { "timestamp": 1 }).await?;
                let mut chunk = Vec::with_capacity(SEAL_CHUNK);
                while let Some(entry) = entries.try_next().await? {
                    ids.extend(entry.get("_id").cloned());
                    chunk.push(Bson::Document(entry).into_relaxed_extjson());
                    if chunk.len() >= SEAL_CHUNK {
                        sealer.seal_into(AUDIT_LOGS, &mut chunk, &mut file).await?;
                    }
                }
                sealer.seal_into(AUDIT_LOGS, &mut chunk, &mut file).await?;
                (item.records, item.archive) = file.finish()?;
                for chunk in ids.chunks(DELETE_CHUNK) {
                    collection.delete_many(doc! { "_id": { "$in": chunk.to_vec() } }).await?;
                }
                drop_if_empty(stores, &collection).await?;
                drop_indices(stores, &item.indices).await?;
            }
            if item.records > 0 || !item.indices.is_empty() {
                expired.push(item);
            }
        }
        Ok(expired)
    }
}

/// Drops an expired month's audit collection once its entries are archived and deleted,
/// unless one came in after it was read (a replay's, a parked retry's): that one stays for
/// the next run. The audit projection's lock, held exclusively, keeps every writer out
/// between the look and the drop.
async fn drop_if_empty(stores: &Stores, collection: &mongodb::Collection<Document>) -> anyhow::Result<()> {
    let hold = crate::control::exclusive(&stores.pool, crate::stores::ProjectionName::Mongo.as_str()).await?;
    if collection.count_documents(doc! {}).await? == 0 {
        collection.drop().await?;
    }
    hold.commit().await?;
    Ok(())
}

/// The tenant's interactions partitions (`interactions_yYYYYmMM`) of months before
/// `boundary`, with their months (`YYYY-MM`).
async fn expired_partitions(
    stores: &Stores,
    tenant: Uuid,
    boundary: DateTime<Utc>,
) -> anyhow::Result<Vec<(String, String)>> {
    // By name, attached or not: a run that stopped after detaching one finds it still.
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $1 AND c.relkind = 'r' AND c.relname LIKE 'interactions\\_y%' ORDER BY 1",
    )
    .bind(Tenancy(tenant).pg_schema())
    .fetch_all(&stores.pool)
    .await?;
    let keep = month_of(boundary);
    Ok(names
        .into_iter()
        .filter_map(|name| {
            let (year, month) = name.strip_prefix("interactions_y")?.split_once('m')?;
            let month = format!("{year}-{month}");
            (month.len() == 7 && month < keep).then_some((name, month))
        })
        .collect())
}

/// Detaches an interactions partition from its table, unless it is detached already.
async fn detach(stores: &Stores, schema: &str, partition: &str) -> anyhow::Result<()> {
    let attached: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                        JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2)",
    )
    .bind(schema)
    .bind(partition)
    .fetch_one(&stores.pool)
    .await?;
    if attached {
        sqlx::query(&format!("ALTER TABLE {schema}.interactions DETACH PARTITION {schema}.{partition} CONCURRENTLY"))
            .execute(&stores.pool)
            .await?;
    }
    Ok(())
}

/// The tenant's interactions and audit-log indices of months before `boundary`, as
/// (kind, month, index), the month read from the index's name (`…-YYYY-MM`, a migrated
/// one `…-YYYY-MM-vN`, a rebuilt one the rebuild's id with the same month).
async fn expired_indices(
    stores: &Stores,
    tenant: Uuid,
    boundary: DateTime<Utc>,
) -> anyhow::Result<Vec<(String, String, String)>> {
    let keep = month_of(boundary);
    let mut found = Vec::new();
    for (kind, entity) in [(INTERACTIONS, INTERACTIONS), (AUDIT_LOGS, ES_AUDIT_LOGS)] {
        let alias = Tenancy(tenant).es_alias(entity);
        let response = stores.elastic.indices().get_alias(IndicesGetAliasParts::Name(&[&alias])).send().await?;
        if response.status_code().as_u16() == 404 {
            continue;
        }
        let body: Value = response.error_for_status_code()?.json().await?;
        for index in body.as_object().into_iter().flatten().map(|(index, _)| index) {
            // The month's own name: the index's, or for a rebuilt one its month alias.
            let named = crate::mappings::month_name(&alias, index);
            let month = named.strip_prefix(&format!("{alias}-")).unwrap_or_default().to_owned();
            if month.len() == 7 && month < keep {
                found.push((kind.to_owned(), month, index.clone()));
            }
        }
    }
    found.sort();
    Ok(found)
}

async fn drop_indices(stores: &Stores, indices: &[String]) -> anyhow::Result<()> {
    if indices.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = indices.iter().map(String::as_str).collect();
    let response = stores.elastic.indices().delete(IndicesDeleteParts::Index(&names)).send().await?;
    if response.status_code().as_u16() != 404 {
        response.error_for_status_code()?;
    }
    Ok(())
}

/// One month's records being archived as gzip-compressed JSON Lines: written to a
/// temporary file as they are read, then moved to `<archive>/<kind>/<YYYY-MM>/<run>.jsonl.gz`
/// (a file per run: what an earlier run archived is never replaced) with a line in
/// `<archive>/manifest.jsonl`.
struct Archive {
    root: PathBuf,
    kind: &'static str,
    month: String,
    partial: PathBuf,
    path: PathBuf,
    gz: flate2::write::GzEncoder<std::io::BufWriter<std::fs::File>>,
    records: u64,
}

impl Archive {
    fn create(root: &Path, kind: &'static str, month: &str, run_id: &str) -> anyhow::Result<Self> {
        let dir = root.join(kind).join(month);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let partial = dir.join(format!(".{run_id}.partial"));
        let file = std::fs::File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
        let gz = flate2::write::GzEncoder::new(std::io::BufWriter::new(file), flate2::Compression::default());
        let path = dir.join(format!("{run_id}.jsonl.gz"));
        Ok(Self { root: root.to_owned(), kind, month: month.to_owned(), partial, path, gz, records: 0 })
    }

    fn push(&mut self, record: &Value) -> anyhow::Result<()> {
        serde_json::to_writer(&mut self.gz, record)?;
        self.gz.write_all(b"\n")?;
        self.records = self.records.saturating_add(1);
        Ok(())
    }

    /// The records written and the file (None, and no file, when there were none).
    fn finish(self) -> anyhow::Result<(u64, Option<PathBuf>)> {
        let Self { root, kind, month, partial, path, gz, records } = self;
        let file = gz.finish()?.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        if records == 0 {
            std::fs::remove_file(&partial)?;
            return Ok((0, None));
        }
        std::fs::rename(&partial, &path)?;
        let mut hasher = Sha256::new();
        std::io::copy(&mut std::fs::File::open(&path)?, &mut hasher)?;
        let digest: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
        let line = json!({
            "kind": kind, "month": month, "file": path.strip_prefix(&root).unwrap_or(&path),
            "records": records, "sha256": digest, "archived_at": Utc::now(),
        });
        let mut manifest = std::fs::OpenOptions::new().create(true).append(true).open(root.join("manifest.jsonl"))?;
        writeln!(manifest, "{line}")?;
        manifest.sync_all()?;
        Ok((records, Some(path)))
    }
}

fn month_of(at: DateTime<Utc>) -> String {
    at.format("%Y-%m").to_string()
}

/// Enforces retention every `EVERY` until the task is dropped (the first time one
/// `EVERY` after the projector starts); off when `MURIMA_ARCHIVE_DIR` is not set.
pub async fn maintain(stores: Stores) {
    if stores.settings.archive_dir.is_none() {
        tracing::info!("retention is off: MURIMA_ARCHIVE_DIR is not set, so nothing would be archived first");
        return;
    }
    loop {
        tokio::time::sleep(EVERY).await;
        match run(&stores, Utc::now(), false).await {
            Ok(expired) => {
                for item in expired {
                    tracing::info!(tenant_id = %item.tenant_id, kind = item.kind, month = item.month,
                        records = item.records, indices = item.indices.len(), "archived and removed an expired month");
                    metrics::counter!("retention_months_removed_total", "kind" => item.kind).increment(1);
                    metrics::counter!("retention_records_removed_total", "kind" => item.kind).increment(item.records);
                }
            }
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "enforcing retention failed; will retry"),
        }
    }
}

/// Seals the personal values of the records a run archives with their data subjects'
/// keys (`events::personal::seal_value`), each bound to its place in the record: an
/// interaction's content, external id and metadata for the customer its case names, and
/// the values of an audit entry's changes that hold a customer's or a user's data. A
/// subject already erased gets the marker; one with no key (a user from before sealing)
/// is kept as the journal keeps them, in clear. Records are sealed a chunk at a time, with
/// one key query per chunk for the subjects not met before.
struct Sealer<'a> {
    pool: &'a sqlx::PgPool,
    tenant: Uuid,
    keys: HashMap<Uuid, Option<events::personal::KeyState>>,
}

/// How many records `Sealer::seal_into` seals with one key query.
const SEAL_CHUNK: usize = 500;

impl Sealer<'_> {
    /// Seals the records and writes them to the archive, emptying `records`.
    async fn seal_into(&mut self, kind: &str, records: &mut Vec<Value>, file: &mut Archive) -> anyhow::Result<()> {
        let places: Vec<_> = records.iter().map(|record| personal_places(kind, record)).collect();
        let unknown: std::collections::HashSet<Uuid> =
            places.iter().flatten().map(|(_, _, subject)| *subject).filter(|s| !self.keys.contains_key(s)).collect();
        if !unknown.is_empty() {
            let wanted = unknown.iter().map(|subject| (self.tenant, Some(*subject)));
            let keys = runtime::subject_keys::needed_by(self.pool, wanted).await?;
            for subject in unknown {
                self.keys.insert(subject, keys.of(self.tenant, subject));
            }
        }
        for (record, places) in records.iter_mut().zip(places) {
            for (pointer, marker, subject) in places {
                let Some(value) = record.pointer_mut(&pointer) else { continue };
                match self.keys.get(&subject).cloned().flatten() {
                    Some(events::personal::KeyState::Held(key)) => {
                        events::personal::seal_value(value, &pointer, self.tenant, subject, &key)
                    }
                    Some(events::personal::KeyState::Erased) if !value.is_null() => *value = marker.value(subject),
                    _ => {}
                }
            }
            file.push(record)?;
        }
        records.clear();
        Ok(())
    }
}

/// Opens what `Sealer` sealed in restored records, with the keys that exist now: an
/// erased subject's values read as markers, those of an archive written before archives
/// were sealed too.
async fn open_archived(pool: &sqlx::PgPool, tenant: Uuid, kind: &str, records: &mut [Value]) -> anyhow::Result<()> {
    let places: Vec<Vec<(String, events::personal::Marker, Uuid)>> =
        records.iter().map(|r| personal_places(kind, r)).collect();
    let wanted = places.iter().flatten().map(|(_, _, subject)| (tenant, Some(*subject)));
    let keys = runtime::subject_keys::needed_by(pool, wanted).await?;
    for (record, places) in records.iter_mut().zip(places) {
        for (pointer, marker, subject) in places {
            if let Some(value) = record.pointer_mut(&pointer) {
                events::personal::open_value(value, &pointer, marker, tenant, subject, &|s| keys.of(tenant, s))?;
                let erased = keys.of(tenant, subject) == Some(events::personal::KeyState::Erased);
                if erased && !value.is_null() {
                    *value = marker.value(subject);
                }
            }
        }
    }
    Ok(())
}

/// Where an archived record holds a data subject's personal data: (JSON pointer, marker,
/// subject).
fn personal_places(kind: &str, record: &Value) -> Vec<(String, events::personal::Marker, Uuid)> {
    use events::audit::{CUSTOMER_PERSONAL_FIELDS, USER_PERSONAL_FIELDS};
    let uuid = |v: &Value| v.as_str().and_then(|s| s.parse::<Uuid>().ok());
    let mut places = Vec::new();
    if kind == INTERACTIONS {
        if let Some(customer) = uuid(&record["customer_id"]) {
            for field in events::personal::fields(events::StreamType::Interaction, "InteractionRecorded") {
                places.push((field.pointer.to_owned(), field.marker, customer));
            }
        }
        return places;
    }
    // The request's address and user agent are its actor's, a tenant user's
    // (`RequestContext::erase`).
    let acting_user = record["role"].as_str().is_some_and(|role| events::workflow::ROLES.contains(&role));
    if let Some(actor) = uuid(&record["user_id"]).filter(|_| acting_user) {
        places.push(("/ip_address".to_owned(), events::personal::Marker::Nothing, actor));
        places.push(("/user_agent".to_owned(), events::personal::Marker::Text, actor));
    }
    let customer = uuid(&record["data_subject"]);
    let user = (record["entity_type"] == "user").then(|| uuid(&record["entity_id"])).flatten();
    for (i, change) in record["changes"].as_array().into_iter().flatten().enumerate() {
        let field = change["field"].as_str().unwrap_or_default();
        let subject = match (customer, user) {
            (Some(c), _) if CUSTOMER_PERSONAL_FIELDS.contains(&field) => c,
            (_, Some(u)) if USER_PERSONAL_FIELDS.contains(&field) => u,
            _ => continue,
        };
        for side in ["old_value", "new_value"] {
            places.push((format!("/changes/{i}/{side}"), events::personal::Marker::Text, subject));
        }
    }
    places
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use events::personal::Marker;

    #[test]
    fn an_archived_audit_entry_holds_a_customers_or_a_users_data_where_the_live_one_does() {
        let (customer, user) = (Uuid::from_u128(5), Uuid::from_u128(6));
        let about_a_customer = json!({ "entity_type": "case", "entity_id": Uuid::from_u128(9),
            "data_subject": customer, "changes": [
                { "field": "status", "old_value": null, "new_value": "open" },
                { "field": "title", "old_value": null, "new_value": "Her refund" },
            ] });
        let places = personal_places(AUDIT_LOGS, &about_a_customer);
        let expected = |i: usize, subject: Uuid| {
            ["old_value", "new_value"].map(|side| (format!("/changes/{i}/{side}"), Marker::Text, subject)).to_vec()
        };
        assert_eq!(places, expected(1, customer));
        let about_a_user = json!({ "entity_type": "user", "entity_id": user, "data_subject": null, "changes": [
                { "field": "email", "old_value": "a@example.org", "new_value": "b@example.org" },
                { "field": "role", "old_value": "agent", "new_value": "admin" },
            ] });
        assert_eq!(personal_places(AUDIT_LOGS, &about_a_user), expected(0, user));
        let nobodys = json!({ "entity_type": "case", "entity_id": Uuid::from_u128(9), "changes": [
                { "field": "title", "old_value": null, "new_value": "A printer" } ] });
        assert!(personal_places(AUDIT_LOGS, &nobodys).is_empty());
        // Whoever acted: their request's address and user agent are theirs.
        let acted = json!({ "entity_type": "case", "entity_id": Uuid::from_u128(9), "user_id": user,
            "role": "agent", "ip_address": "127.0.0.1", "user_agent": "curl", "changes": [] });
        assert_eq!(
            personal_places(AUDIT_LOGS, &acted),
            [("/ip_address".to_owned(), Marker::Nothing, user), ("/user_agent".to_owned(), Marker::Text, user)]
        );
        let operated = json!({ "entity_type": "tenant", "entity_id": Uuid::from_u128(9), "user_id": user,
            "role": "platform_admin", "ip_address": "127.0.0.1", "changes": [] });
        assert!(personal_places(AUDIT_LOGS, &operated).is_empty(), "an operator is nobody's data subject here");
        let interaction = json!({ "customer_id": customer, "content": "Rang", "metadata": {} });
        let places: Vec<String> = personal_places(INTERACTIONS, &interaction).into_iter().map(|p| p.0).collect();
        assert_eq!(places, ["/content", "/external_id", "/metadata"]);
        assert!(personal_places(INTERACTIONS, &json!({ "customer_id": null, "content": "Rang" })).is_empty());
    }
}
