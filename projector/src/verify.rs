//! Verify and repair: compares what each read model holds of a tenant's streams with the
//! journal, and re-applies exactly the streams that are missing or behind.
//!
//! The journal is the record of truth. For every stream a store mirrors, the store
//! should hold the stream's last version, or one record per event for a log like the
//! audit trail. A stream is:
//! - **missing** when the store holds nothing of it,
//! - **stale** when it holds an older version than the journal,
//! - **extra** when it holds a stream or version the journal does not have.
//!
//! Only events older than `grace` count, so events still on their way through the log
//! are not reported. Streams parked or skipped for a projection are left out, because
//! they are behind on purpose. Repair re-applies every journal event of the missing and
//! stale streams through the live projection. This is idempotent: each store ignores the
//! versions it holds. Extra records are reported, not deleted; a rebuild removes them.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::Serialize;
use uuid::Uuid;

use crate::operations::Journal;
use crate::parking::StreamKey;
use crate::projection::{Checkpoint, Held};
use crate::stores::{ProjectionName, Stores};

/// How many discrepancies a report lists (all are counted).
const LISTED: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Finding {
    Missing,
    Stale,
    Extra,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Discrepancy {
    pub tenant_id: Uuid,
    pub stream_id: Uuid,
    pub stream_type: Option<String>,
    /// The kind of record compared (`cases table`, `audit entries`, ...).
    pub what: &'static str,
    pub finding: Finding,
    pub journal_version: Option<i64>,
    pub held_version: Option<i64>,
}

/// One projection's comparison with the journal.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
#[schema(as = VerifyReport)]
pub struct Report {
    pub projection: String,
    pub tenants: usize,
    pub streams_compared: usize,
    pub missing: usize,
    pub stale: usize,
    pub extra: usize,
    /// Streams re-applied by `--repair`, and how many events that took.
    pub repaired_streams: usize,
    pub repaired_events: usize,
    /// Missing or stale after the repair (the repair re-checks what it touched).
    pub unrepaired: usize,
    /// The first discrepancies found (at most 200).
    pub discrepancies: Vec<Discrepancy>,
}

/// What the journal holds of one stream.
struct Journaled {
    stream_type: String,
    /// The last version of events older than the grace period (None: all are newer).
    settled: Option<i64>,
    newest: i64,
    /// How many of its events are dated before the first month the tenant's retention
    /// keeps: their audit entries are removed by the retention job (they come first).
    expired: i64,
    /// An interaction dated before that month: removed by the retention job.
    expired_interaction: bool,
}

/// Verifies one projection (or all) for one tenant (or all), repairing when asked.
pub async fn verify(
    stores: &Stores,
    projection: Option<ProjectionName>,
    tenant: Option<Uuid>,
    grace: Duration,
    repair: bool,
) -> anyhow::Result<Vec<Report>> {
    let names: Vec<ProjectionName> = match projection {
        Some(name) => vec![name],
        None => ProjectionName::ALL.to_vec(),
    };
    let tenants: Vec<Uuid> = match tenant {
        Some(t) => vec![t],
        None => crate::operations::journal_tenants(&stores.pool).await?,
    };
    let grace = chrono::Duration::from_std(grace)?;
    let mut reports = Vec::new();
    for projection_name in names {
        let name = projection_name.as_str();
        let projection = stores.projection(projection_name).await?;
        let held_back = crate::parking::ParkingLot::new(stores.pool.clone()).held_back(name).await?;
        let mut report = Report { projection: name.to_owned(), tenants: tenants.len(), ..Report::default() };
        for &tenant in &tenants {
            let journal = journaled(stores, tenant, chrono::Utc::now() - grace).await?;
            let found = compare(tenant, &journal, &projection.held(tenant).await?, &held_back);
            report.streams_compared += journal.len();
            count(&mut report, &found);
            if !repair {
                report.discrepancies.extend(found.into_iter().take(LISTED - report.discrepancies.len().min(LISTED)));
                continue;
            }
            let streams: Vec<Uuid> = found
                .iter()
                .filter(|d| d.finding != Finding::Extra)
                .map(|d| d.stream_id)
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            if !streams.is_empty() {
                report.repaired_events += reapply(stores, projection_name, tenant, &streams).await?;
                report.repaired_streams += streams.len();
                let again = compare(tenant, &journal, &projection.held(tenant).await?, &held_back);
                report.unrepaired += again.iter().filter(|d| d.finding != Finding::Extra).count();
            }
            report.discrepancies.extend(found.into_iter().take(LISTED - report.discrepancies.len().min(LISTED)));
        }
        record(stores, &report).await?;
        reports.push(report);
    }
    Ok(reports)
}

fn count(report: &mut Report, found: &[Discrepancy]) {
    for d in found {
        match d.finding {
            Finding::Missing => report.missing += 1,
            Finding::Stale => report.stale += 1,
            Finding::Extra => report.extra += 1,
        }
    }
}

/// The journal's streams of a tenant: type, last settled version and newest version.
async fn journaled(
    stores: &Stores,
    tenant: Uuid,
    settled_before: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<HashMap<Uuid, Journaled>> {
    // What the tenant's retention removes is not expected in the stores (its months are
    // archived); with no retention set, 365 days as the job counts them.
    let settings: Option<serde_json::Value> = sqlx::query_scalar("SELECT settings FROM public.tenants WHERE id = $1")
        .bind(tenant)
        .fetch_optional(&stores.pool)
        .await?;
    let days = settings
        .as_ref()
        .and_then(|s| s.as_object())
        .map(events::tenant::retention_days)
        .unwrap_or(events::tenant::DEFAULT_RETENTION_DAYS);
    let kept_from = events::tenant::kept_from(chrono::Utc::now(), days);
    let rows: Vec<(Uuid, String, Option<i64>, i64, i64, bool)> = sqlx::query_as(
        "SELECT stream_id, stream_type, max(stream_version) FILTER (WHERE occurred_at <= $2), max(stream_version),
                count(*) FILTER (WHERE occurred_at < $3),
                coalesce(bool_or(stream_type = 'interaction' AND event_type = 'InteractionRecorded'
                                 AND (envelope #>> '{payload,timestamp}')::timestamptz < $3), false)
         FROM eventstore.events WHERE tenant_id = $1 GROUP BY stream_id, stream_type",
    )
    .bind(tenant)
    .bind(settled_before)
    .bind(kept_from)
    .fetch_all(&stores.pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, stream_type, settled, newest, expired, expired_interaction)| {
            (id, Journaled { stream_type, settled, newest, expired, expired_interaction })
        })
        .collect())
}

/// The discrepancies between the journal and what a store holds of one tenant's streams.
/// `held_back` names streams of any tenant; only this tenant's are left out.
fn compare(
    tenant: Uuid,
    journal: &HashMap<Uuid, Journaled>,
    held: &[Held],
    held_back: &HashSet<StreamKey>,
) -> Vec<Discrepancy> {
    let mut found = Vec::new();
    let kept_back = |id: &Uuid| held_back.contains(&StreamKey::new(tenant, *id));
    for records in held {
        for (id, stream) in journal.iter().filter(|(id, s)| records.mirrors(&s.stream_type) && !kept_back(id)) {
            let version = records.versions.get(id).copied();
            // Removed by the tenant's retention: whether it is still there or not.
            if stream.expired_interaction && records.mirrors("interaction") {
                continue;
            }
            // A log of events (one record per event) lost its expired ones: it should
            // hold the rest, and holding them all is fine until the job runs.
            let log = records.stream_types.is_empty();
            let settled = match stream.settled {
                Some(settled) if log && stream.expired > 0 => {
                    let kept = settled.saturating_sub(stream.expired);
                    if kept <= 0 || version.is_some_and(|v| v >= kept) {
                        continue;
                    }
                    Some(kept)
                }
                other => other,
            };
            let finding = match (settled, version) {
                (_, Some(v)) if v > stream.newest => Some(Finding::Extra),
                (Some(_), None) => Some(Finding::Missing),
                (Some(settled), Some(v)) if v < settled => Some(Finding::Stale),
                _ => None,
            };
            if let Some(finding) = finding {
                found.push(Discrepancy {
                    tenant_id: tenant,
                    stream_id: *id,
                    stream_type: Some(stream.stream_type.clone()),
                    what: records.what,
                    finding,
                    journal_version: Some(stream.newest),
                    held_version: version,
                });
            }
        }
        for (id, version) in records.versions.iter().filter(|(id, _)| !journal.contains_key(id)) {
            found.push(Discrepancy {
                tenant_id: tenant,
                stream_id: *id,
                stream_type: None,
                what: records.what,
                finding: Finding::Extra,
                journal_version: None,
                held_version: Some(*version),
            });
        }
    }
    found.sort_by_key(|d| (d.stream_id, d.what));
    found
}

/// Applies every journal event of a tenant's `streams` again through the live projection,
/// parking what the store refuses, as the worker would. Returns how many events were
/// applied. (Other tenants' streams of the same ids are not touched.)
async fn reapply(stores: &Stores, name: ProjectionName, tenant: Uuid, streams: &[Uuid]) -> anyhow::Result<usize> {
    let whole: Vec<(StreamKey, i64)> =
        streams.iter().map(|&stream_id| (StreamKey { tenant_id: tenant, stream_id }, 0)).collect();
    let events = Journal::new(&stores.pool, Some(tenant)).streams_after(&whole, i64::MAX).await?;
    let applied = events.len();
    let projection = stores.projection(name).await?;
    let name = name.as_str();
    let parking = crate::parking::ParkingLot::new(stores.pool.clone());
    let mut parked = parking.held_back(name).await?;
    let group = stores.group(name);
    let checkpoint = Checkpoint { group: group.clone(), topic: String::new(), positions: Default::default() };
    for chunk in events.chunks(1_000) {
        let chunk: Vec<_> = chunk.iter().filter(|e| !parked.contains(&StreamKey::of(&e.envelope))).cloned().collect();
        crate::worker::apply_or_park(
            crate::worker::Target::waiting(&*projection),
            &crate::worker::Recorded { parking: &parking, pool: &stores.pool, group: &group },
            chunk,
            &checkpoint,
            &mut parked,
        )
        .await?;
    }
    Ok(applied)
}

/// Keeps the last result per projection, which `/metrics` exports (`export_lag`).
async fn record(stores: &Stores, report: &Report) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO projector.verifications (projection, ran_at, missing, stale, extra, repaired_streams, unrepaired)
         VALUES ($1, now(), $2, $3, $4, $5, $6)
         ON CONFLICT (projection) DO UPDATE SET ran_at = now(), missing = EXCLUDED.missing, stale = EXCLUDED.stale,
             extra = EXCLUDED.extra, repaired_streams = EXCLUDED.repaired_streams, unrepaired = EXCLUDED.unrepaired",
    )
    .bind(stores.group(&report.projection))
    .bind(report.missing as i64)
    .bind(report.stale as i64)
    .bind(report.extra as i64)
    .bind(report.repaired_streams as i64)
    .bind(report.unrepaired as i64)
    .execute(&stores.pool)
    .await?;
    metrics::counter!("projection_verify_runs_total", "projection" => report.projection.clone()).increment(1);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journaled(entries: &[(u128, &str, Option<i64>, i64)]) -> HashMap<Uuid, Journaled> {
        entries
            .iter()
            .map(|&(id, stream_type, settled, newest)| {
                let journaled = Journaled {
                    stream_type: stream_type.to_owned(),
                    settled,
                    newest,
                    expired: 0,
                    expired_interaction: false,
                };
                (Uuid::from_u128(id), journaled)
            })
            .collect()
    }

    #[test]
    fn what_the_retention_removed_is_not_missing() {
        let mut journal =
            journaled(&[(1, "case", Some(3), 3), (2, "interaction", Some(1), 1), (3, "case", Some(2), 2)]);
        for (id, expired) in [(1, 2), (3, 2)] {
            journal.get_mut(&Uuid::from_u128(id)).unwrap().expired = expired;
        }
        journal.get_mut(&Uuid::from_u128(2)).unwrap().expired_interaction = true;
        // The case's first two audit entries went with their month; the third is held.
        let audit = held("audit entries", &[], &[(1, 1), (2, 1)]);
        let interactions = held("interactions", &["interaction"], &[]);
        assert!(compare(Uuid::nil(), &journal, &[audit, interactions], &HashSet::new()).is_empty());
        // The retained entry gone too is missing.
        let audit = held("audit entries", &[], &[(2, 1)]);
        assert_eq!(findings(&compare(Uuid::nil(), &journal, &[audit], &HashSet::new())), vec![(1, Finding::Missing)]);
    }

    fn held(what: &'static str, types: &'static [&'static str], versions: &[(u128, i64)]) -> Held {
        Held { what, stream_types: types, versions: versions.iter().map(|&(id, v)| (Uuid::from_u128(id), v)).collect() }
    }

    fn findings(found: &[Discrepancy]) -> Vec<(u128, Finding)> {
        found.iter().map(|d| (d.stream_id.as_u128(), d.finding)).collect()
    }

    #[test]
    fn streams_missing_behind_or_unknown_are_found_and_events_still_in_flight_are_not() {
        let journal = journaled(&[
            (1, "case", Some(3), 3), // held at 3: fine
            (2, "case", Some(2), 2), // not held: missing
            (3, "case", Some(4), 5), // held at 2 of a settled 4: stale
            (4, "case", None, 1),    // opened a moment ago: not compared yet
            (5, "case", Some(1), 2), // held at 2, its newest: fine (the last event is in flight)
            (6, "user", Some(1), 1), // another stream type: not mirrored by this record
        ]);
        let cases = held("cases", &["case"], &[(1, 3), (3, 2), (5, 2), (9, 1)]);
        let found = compare(Uuid::nil(), &journal, &[cases], &HashSet::new());
        assert_eq!(
            findings(&found),
            vec![(2, Finding::Missing), (3, Finding::Stale), (9, Finding::Extra)],
            "9 is held but the journal has no such stream"
        );
    }

    #[test]
    fn parked_streams_are_behind_on_purpose_and_a_log_of_events_counts_entries() {
        let journal = journaled(&[(1, "case", Some(3), 3), (2, "note", Some(2), 2)]);
        let audit = held("audit entries", &[], &[(1, 2), (2, 2)]);
        let found = compare(Uuid::nil(), &journal, std::slice::from_ref(&audit), &HashSet::new());
        assert_eq!(findings(&found), vec![(1, Finding::Stale)]);
        let parked = HashSet::from([StreamKey::new(Uuid::nil(), Uuid::from_u128(1))]);
        assert!(compare(Uuid::nil(), &journal, std::slice::from_ref(&audit), &parked).is_empty());
        // A stream of the same id parked in another tenant holds nothing back here.
        let elsewhere = HashSet::from([StreamKey::new(Uuid::from_u128(77), Uuid::from_u128(1))]);
        assert_eq!(findings(&compare(Uuid::nil(), &journal, &[audit], &elsewhere)), vec![(1, Finding::Stale)]);
    }
}
