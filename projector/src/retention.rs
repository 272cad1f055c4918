//! Retention (issue 19, seed §5.1.2, §5.2.2, §5.3.2): each tenant keeps its interactions
//! and audit entries for `settings.retention_days` (365 by default), counted in whole
//! months, the unit every store keeps them in: a month is expired once its last day is
//! further back than that. An expired month is archived first, as compressed JSON Lines
//! with a line in the tenant's manifest (`archive`), and then removed: its interactions
//! partition in PostgreSQL, its audit entries in MongoDB, and its interactions and
//! audit-log indices in Elasticsearch (the audit entries of Elasticsearch are the same as
//! MongoDB's, archived once).
//!
//! Re-running is safe: a month is archived again whole while it is still there (the
//! archive file is replaced, its manifest line repeated), and removing what is gone
//! already is a no-op. The projector runs this every `EVERY` under a per-tenant lock;
//! `murima-admin retention [--dry-run]` runs it (or lists what would go) by hand.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use elasticsearch::indices::{IndicesDeleteParts, IndicesGetAliasParts};
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use runtime::tenancy::{Tenancy, AUDIT_LOGS, ES_AUDIT_LOGS, INTERACTIONS};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::maintenance::Lock;
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

/// Enforces every tenant's retention as of `now` (or, `dry_run`, only lists what would
/// go); what expired, month by month.
pub async fn run(stores: &Stores, now: DateTime<Utc>, dry_run: bool) -> anyhow::Result<Vec<Expired>> {
    let tenants: Vec<(Uuid, Value)> = sqlx::query_as("SELECT id, settings FROM public.tenants ORDER BY id")
        .fetch_all(&stores.pool)
        .await
        .context("reading the tenants")?;
    let mut expired = Vec::new();
    for (tenant, settings) in tenants {
        let days =
            settings.as_object().map(events::tenant::retention_days).unwrap_or(events::tenant::DEFAULT_RETENTION_DAYS);
        let Some(boundary) = boundary(now, days) else { continue };
        let mut found = tenant_run(stores, tenant, boundary, dry_run)
            .await
            .with_context(|| format!("retention of tenant {tenant}"))?;
        expired.append(&mut found);
    }
    Ok(expired)
}

/// The first month a tenant with `days` of retention still keeps, as of `now`: every
/// month before it ended more than `days` ago.
pub fn boundary(now: DateTime<Utc>, days: i64) -> Option<DateTime<Utc>> {
    let cutoff = now.checked_sub_signed(chrono::Duration::days(days))?;
    let first = NaiveDate::from_ymd_opt(cutoff.year(), cutoff.month(), 1)?;
    Some(Utc.from_utc_datetime(&first.and_hms_opt(0, 0, 0)?))
}

async fn tenant_run(
    stores: &Stores,
    tenant: Uuid,
    boundary: DateTime<Utc>,
    dry_run: bool,
) -> anyhow::Result<Vec<Expired>> {
    let archive = stores.settings.archive_dir.join(format!("tenant-{}", tenant.simple()));
    let mut expired = Vec::new();
    let indices = expired_indices(stores, tenant, boundary).await?;
    let indices_of = |kind: &str, month: &str| -> Vec<String> {
        indices.iter().filter(|(k, m, _)| k == kind && m == month).map(|(_, _, i)| i.clone()).collect()
    };

    // Interactions: one PostgreSQL partition per month.
    for (partition, month) in expired_partitions(stores, tenant, boundary).await? {
        let schema = Tenancy(tenant).pg_schema();
        let rows: Vec<Value> =
            sqlx::query_scalar(&format!("SELECT to_jsonb(i) FROM {schema}.{partition} i ORDER BY timestamp, id"))
                .fetch_all(&stores.pool)
                .await?;
        let mut item = Expired {
            tenant_id: tenant,
            kind: INTERACTIONS,
            records: rows.len() as u64,
            indices: indices_of(INTERACTIONS, &month),
            month,
            archive: None,
        };
        if !dry_run {
            item.archive = write_archive(&archive, &item, &rows)?;
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

    // Audit entries: MongoDB's, archived and deleted month by month, and the month's
    // Elasticsearch indices with them.
    let audit = audit_before(stores, tenant, boundary).await?;
    let mut months: Vec<String> = audit.iter().map(|(month, _)| month.clone()).collect();
    for (kind, month, _) in &indices {
        if kind == AUDIT_LOGS {
            months.push(month.clone());
        }
    }
    months.sort();
    months.dedup();
    let collection = stores
        .mongo
        .database(&stores.settings.mongo_database)
        .collection::<Document>(&Tenancy(tenant).mongo_collection(AUDIT_LOGS));
    for month in months {
        let docs: Vec<&Document> = audit.iter().filter(|(m, _)| *m == month).map(|(_, d)| d).collect();
        let mut item = Expired {
            tenant_id: tenant,
            kind: AUDIT_LOGS,
            records: docs.len() as u64,
            indices: indices_of(AUDIT_LOGS, &month),
            month,
            archive: None,
        };
        if !dry_run {
            let lines: Vec<Value> = docs.iter().map(|d| Bson::Document((*d).clone()).into_relaxed_extjson()).collect();
            item.archive = write_archive(&archive, &item, &lines)?;
            let ids: Vec<Bson> = docs.iter().filter_map(|d| d.get("_id").cloned()).collect();
            for chunk in ids.chunks(DELETE_CHUNK) {
                collection.delete_many(doc! { "_id": { "$in": chunk.to_vec() } }).await?;
            }
            drop_indices(stores, &item.indices).await?;
        }
        expired.push(item);
    }
    Ok(expired)
}

/// The tenant's interactions partitions (`interactions_yYYYYmMM`) of months before
/// `boundary`, with their months (`YYYY-MM`).
async fn expired_partitions(
    stores: &Stores,
    tenant: Uuid,
    boundary: DateTime<Utc>,
) -> anyhow::Result<Vec<(String, String)>> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i
         JOIN pg_class c ON c.oid = i.inhrelid
         JOIN pg_class p ON p.oid = i.inhparent
         JOIN pg_namespace n ON n.oid = p.relnamespace
         WHERE n.nspname = $1 AND p.relname = 'interactions' ORDER BY 1",
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

/// The tenant's MongoDB audit entries dated before `boundary`, oldest first, with their
/// months.
async fn audit_before(
    stores: &Stores,
    tenant: Uuid,
    boundary: DateTime<Utc>,
) -> anyhow::Result<Vec<(String, Document)>> {
    let collection = stores
        .mongo
        .database(&stores.settings.mongo_database)
        .collection::<Document>(&Tenancy(tenant).mongo_collection(AUDIT_LOGS));
    let before = mongodb::bson::DateTime::from_millis(boundary.timestamp_millis());
    let docs: Vec<Document> = collection
        .find(doc! { "timestamp": { "$lt": before } })
        .sort(doc! { "timestamp": 1 })
        .await?
        .try_collect()
        .await?;
    Ok(docs
        .into_iter()
        .filter_map(|d| {
            let at = DateTime::<Utc>::from_timestamp_millis(d.get_datetime("timestamp").ok()?.timestamp_millis())?;
            Some((month_of(at), d))
        })
        .collect())
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

/// Writes one month's records as gzip-compressed JSON Lines
/// (`<archive>/<kind>/<YYYY-MM>.jsonl.gz`, replaced whole through a temporary file) and
/// appends a line to `<archive>/manifest.jsonl`; None when there was nothing to keep.
fn write_archive(archive: &Path, item: &Expired, records: &[Value]) -> anyhow::Result<Option<PathBuf>> {
    if records.is_empty() {
        return Ok(None);
    }
    let dir = archive.join(item.kind);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = dir.join(format!("{}.jsonl.gz", item.month));
    let partial = dir.join(format!(".{}.{}.partial", item.month, Uuid::now_v7().simple()));
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&partial).with_context(|| format!("creating {}", partial.display()))?,
        flate2::Compression::default(),
    );
    for record in records {
        serde_json::to_writer(&mut gz, record)?;
        gz.write_all(b"\n")?;
    }
    gz.finish()?.sync_all()?;
    std::fs::rename(&partial, &file)?;
    let digest: String = Sha256::digest(std::fs::read(&file)?).iter().map(|b| format!("{b:02x}")).collect();
    let line = json!({
        "kind": item.kind, "month": item.month, "file": file.strip_prefix(archive).unwrap_or(&file),
        "records": records.len(), "sha256": digest, "archived_at": Utc::now(),
    });
    let mut manifest = std::fs::OpenOptions::new().create(true).append(true).open(archive.join("manifest.jsonl"))?;
    writeln!(manifest, "{line}")?;
    manifest.sync_all()?;
    Ok(Some(file))
}

fn month_of(at: DateTime<Utc>) -> String {
    at.format("%Y-%m").to_string()
}

/// Enforces retention every `EVERY` until the task is dropped; each tenant under a lock,
/// so two projectors do not archive the same month at once.
pub async fn maintain(stores: Stores) {
    loop {
        if let Err(e) = enforce_locked(&stores).await {
            tracing::warn!(error = %format!("{e:#}"), "enforcing retention failed; will retry");
        }
        tokio::time::sleep(EVERY).await;
    }
}

async fn enforce_locked(stores: &Stores) -> anyhow::Result<()> {
    let mut redis = stores.redis().await?;
    let Some(lock) = Lock::try_acquire(&mut redis, Uuid::nil(), "retention").await? else { return Ok(()) };
    let result = run(stores, Utc::now(), false).await;
    lock.release(&mut redis).await?;
    for item in result? {
        tracing::info!(tenant_id = %item.tenant_id, kind = item.kind, month = item.month, records = item.records,
            indices = item.indices.len(), "archived and removed an expired month");
        metrics::counter!("retention_months_removed_total", "kind" => item.kind).increment(1);
        metrics::counter!("retention_records_removed_total", "kind" => item.kind).increment(item.records);
    }
    Ok(())
}
