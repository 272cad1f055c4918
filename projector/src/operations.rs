//! What an operator can ask of the projections, shared by the `murima-admin` command
//! line and the projector's admin HTTP endpoints: status, replay, republish, and the
//! parked events (list, retry, skip). Rebuilds are in `rebuild`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::event::Event;
use crate::parking::StreamKey;
use crate::projection::{ApplyError, Checkpoint, Projection};
use crate::stores::{ProjectionName, Stores};
use crate::worker::policy::Target;

/// One projection as an operator sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProjectionStatus {
    pub projection: String,
    pub store: String,
    pub group: String,
    /// Partition -> the next offset the projection will read.
    pub checkpoint: BTreeMap<String, i64>,
    /// The journal position of the last event it applied.
    pub last_position: i64,
    /// Messages in the log it has not applied yet (None when the broker did not answer).
    pub lag_events: Option<i64>,
    /// How far behind the newest event it is in event time (0 when caught up).
    pub lag_seconds: f64,
    pub events_per_sec: f64,
    pub events_applied: i64,
    /// Parked events, and the streams they belong to (each held back whole).
    pub parked: i64,
    pub parked_streams: i64,
    pub last_batch_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    /// `transient` (the store was away or busy; retried) or `deterministic` (the store
    /// refused an event; its stream was parked).
    pub last_error_class: Option<String>,
    /// Since when the projection has been retrying a batch (None: it is applying).
    pub retrying_since: Option<DateTime<Utc>>,
    /// How often its worker replaced its consumer (stalled, lost broker, gap in the
    /// log, lost lease), when it last did and why.
    pub restarts: i64,
    pub last_restart_at: Option<DateTime<Utc>>,
    pub last_restart_reason: Option<String>,
}

struct ProgressRow {
    projection: String,
    events_applied: i64,
    events_per_sec: f64,
    last_position: i64,
    last_event_at: Option<DateTime<Utc>>,
    last_batch_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    last_error_at: Option<DateTime<Utc>>,
    last_error_class: Option<String>,
    retrying_since: Option<DateTime<Utc>>,
    restarts: i64,
    last_restart_at: Option<DateTime<Utc>>,
    last_restart_reason: Option<String>,
}

/// Every projection's checkpoint, lag, rate, parked count and last error.
pub async fn status(stores: &Stores) -> anyhow::Result<Vec<ProjectionStatus>> {
    let pool = &stores.pool;
    type Row = (
        String,
        i64,
        f64,
        i64,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
        Option<String>,
        Option<DateTime<Utc>>,
        i64,
        Option<DateTime<Utc>>,
        Option<String>,
        Option<String>,
        Option<DateTime<Utc>>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT projection, events_applied, events_per_sec, last_position, last_event_at, last_batch_at,
                last_error, last_error_at, restarts, last_restart_at, last_restart_reason,
                last_error_class, retrying_since
         FROM projector.progress",
    )
    .fetch_all(pool)
    .await?;
    let rows: Vec<ProgressRow> = rows
        .into_iter()
        .map(|r| ProgressRow {
            projection: r.0,
            events_applied: r.1,
            events_per_sec: r.2,
            last_position: r.3,
            last_event_at: r.4,
            last_batch_at: r.5,
            last_error: r.6,
            last_error_at: r.7,
            restarts: r.8,
            last_restart_at: r.9,
            last_restart_reason: r.10,
            last_error_class: r.11,
            retrying_since: r.12,
        })
        .collect();
    let parked: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT projection, count(*), count(DISTINCT (tenant_id, stream_id)) FROM projector.parked_events
         GROUP BY projection",
    )
    .fetch_all(pool)
    .await?;
    let newest: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT occurred_at FROM eventstore.events ORDER BY position DESC LIMIT 1")
            .fetch_optional(pool)
            .await?;
    let brokers = stores.settings.kafka_brokers.clone();
    let topic = stores.settings.kafka_topic.clone();
    let watermarks = tokio::task::spawn_blocking({
        let topic = topic.clone();
        move || high_watermarks(&brokers, &topic).ok()
    })
    .await?;

    let mut statuses = Vec::new();
    for projection in ProjectionName::ALL {
        let (name, store) = (projection.as_str(), projection.store_name());
        let group = stores.group(name);
        let row = rows.iter().find(|r| r.projection == group);
        let checkpoint: BTreeMap<String, i64> = crate::checkpoint::load(pool, &group, &topic)
            .await?
            .into_iter()
            .map(|(partition, at)| (partition.to_string(), at.next_offset))
            .collect();
        let lag_events = watermarks.as_ref().map(|highs| {
            highs
                .iter()
                .map(|(partition, high)| (high - checkpoint.get(&partition.to_string()).copied().unwrap_or(0)).max(0))
                .sum()
        });
        let last_event_at = row.and_then(|r| r.last_event_at);
        let lag_seconds = match (lag_events, newest, last_event_at) {
            (Some(0), _, _) => 0.0,
            (_, Some(newest), Some(applied)) => ((newest - applied).num_milliseconds().max(0) as f64) / 1000.0,
            (_, Some(newest), None) => ((Utc::now() - newest).num_milliseconds().max(0) as f64) / 1000.0,
            _ => 0.0,
        };
        statuses.push(ProjectionStatus {
            projection: (*name).to_owned(),
            store: (*store).to_owned(),
            group,
            checkpoint,
            last_position: row.map_or(0, |r| r.last_position),
            lag_events,
            lag_seconds,
            // The rate of recent batches; a projection with nothing to do for 10 s runs at 0.
            events_per_sec: row
                .filter(|r| r.last_batch_at.is_some_and(|at| Utc::now() - at < chrono::Duration::seconds(10)))
                .map_or(0.0, |r| r.events_per_sec),
            events_applied: row.map_or(0, |r| r.events_applied),
            parked: parked.iter().find(|(p, _, _)| p == name).map_or(0, |(_, n, _)| *n),
            parked_streams: parked.iter().find(|(p, _, _)| p == name).map_or(0, |(_, _, n)| *n),
            last_batch_at: row.and_then(|r| r.last_batch_at),
            last_error: row.and_then(|r| r.last_error.clone()),
            last_error_at: row.and_then(|r| r.last_error_at),
            last_error_class: row.and_then(|r| r.last_error_class.clone()),
            retrying_since: row.and_then(|r| r.retrying_since),
            restarts: row.map_or(0, |r| r.restarts),
            last_restart_at: row.and_then(|r| r.last_restart_at),
            last_restart_reason: row.and_then(|r| r.last_restart_reason.clone()),
        });
    }
    Ok(statuses)
}

/// The events topic's high watermark per partition (blocking: asks the broker).
fn high_watermarks(brokers: &str, topic: &str) -> anyhow::Result<Vec<(i32, i64)>> {
    let client: BaseConsumer = runtime::kafka::client_config(brokers).create()?;
    let timeout = Duration::from_secs(2);
    let metadata = client.fetch_metadata(Some(topic), timeout)?;
    let partitions: Vec<i32> = metadata.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
    partitions.into_iter().map(|p| Ok((p, client.fetch_watermarks(topic, p, timeout)?.1))).collect()
}

/// Keeps the lag and parked gauges of `/metrics` current.
pub async fn export_lag(stores: Stores, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        match status(&stores).await {
            Ok(statuses) => {
                for s in statuses {
                    let name = s.projection.clone();
                    if let Some(lag) = s.lag_events {
                        metrics::gauge!("projection_lag_events", "projection" => name.clone()).set(lag as f64);
                    }
                    metrics::gauge!("projection_lag_seconds", "projection" => name.clone()).set(s.lag_seconds);
                    metrics::gauge!("projection_parked_events", "projection" => name).set(s.parked as f64);
                }
            }
            Err(e) => tracing::debug!(error = %e, "could not read the projections' status"),
        }
        if let Err(e) = export_verifications(&stores).await {
            tracing::debug!(error = %e, "could not read the last verifications");
        }
    }
}

/// The last `verify` of each projection as gauges (it may have run in `murima-admin`).
async fn export_verifications(stores: &Stores) -> anyhow::Result<()> {
    let rows: Vec<(String, i64, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT projection, missing, stale, extra, repaired_streams, unrepaired FROM projector.verifications",
    )
    .fetch_all(&stores.pool)
    .await?;
    for name in ProjectionName::ALL.map(ProjectionName::as_str) {
        let Some(row) = rows.iter().find(|r| r.0 == stores.group(name)) else { continue };
        for (finding, value) in
            [("missing", row.1), ("stale", row.2), ("extra", row.3), ("repaired", row.4), ("unrepaired", row.5)]
        {
            metrics::gauge!("projection_verify_streams", "projection" => name, "finding" => finding).set(value as f64);
        }
    }
    Ok(())
}

/// The write-side journal, read in position order: the source of replays and rebuilds.
pub struct Journal<'a> {
    pool: &'a PgPool,
    tenant: Option<Uuid>,
}

impl<'a> Journal<'a> {
    pub fn new(pool: &'a PgPool, tenant: Option<Uuid>) -> Self {
        Self { pool, tenant }
    }

    /// Up to `limit` events after `after`, plus any of `gaps` that have committed since
    /// (positions are taken before commit, so a lower one can appear later), in
    /// position order.
    pub async fn read(&self, after: i64, gaps: &[i64], limit: i64) -> anyhow::Result<Vec<Event>> {
        let mut events = self.read_gaps(gaps).await?;
        events.extend(self.read_range(after, limit).await?);
        Ok(events)
    }

    /// The events at these positions that exist now.
    pub async fn read_gaps(&self, gaps: &[i64]) -> anyhow::Result<Vec<Event>> {
        if gaps.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT position, envelope::text FROM eventstore.events
             WHERE position = ANY($1) AND ($2::uuid IS NULL OR tenant_id = $2) ORDER BY position",
        )
        .bind(gaps)
        .bind(self.tenant)
        .fetch_all(self.pool)
        .await?;
        decode_all(self.pool, rows).await
    }

    /// Up to `limit` events after `after`, in position order.
    pub async fn read_range(&self, after: i64, limit: i64) -> anyhow::Result<Vec<Event>> {
        // As text, parsed straight into envelopes (no intermediate JSON tree).
        let range = match self.tenant {
            Some(tenant) => sqlx::query_as(
                "SELECT position, envelope::text FROM eventstore.events
                 WHERE tenant_id = $1 AND position > $2 ORDER BY tenant_id, position LIMIT $3",
            )
            .bind(tenant),
            None => sqlx::query_as(
                "SELECT position, envelope::text FROM eventstore.events WHERE position > $1 ORDER BY position LIMIT $2",
            ),
        };
        // Walk the index in order: with statistics a bulk load left stale, the planner
        // would otherwise fetch every matching row and sort them to return the first few.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET LOCAL enable_sort = off").execute(&mut *tx).await?;
        sqlx::query("SET LOCAL enable_bitmapscan = off").execute(&mut *tx).await?;
        let rows: Vec<(i64, String)> = range.bind(after).bind(limit).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        decode_all(self.pool, rows).await
    }

    /// The events of some streams (each of its tenant) after a version, up to a
    /// position, in order.
    pub async fn streams_after(&self, streams: &[(StreamKey, i64)], upto: i64) -> anyhow::Result<Vec<Event>> {
        let tenants: Vec<Uuid> = streams.iter().map(|(s, _)| s.tenant_id).collect();
        let ids: Vec<Uuid> = streams.iter().map(|(s, _)| s.stream_id).collect();
        let versions: Vec<i64> = streams.iter().map(|(_, v)| *v).collect();
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT e.position, e.envelope::text FROM eventstore.events e
             JOIN UNNEST($1::uuid[], $2::uuid[], $3::bigint[]) AS s(tenant, id, v)
               ON e.tenant_id = s.tenant AND e.stream_id = s.id AND e.stream_version > s.v
             WHERE e.position <= $4 ORDER BY e.position",
        )
        .bind(tenants)
        .bind(ids)
        .bind(versions)
        .bind(upto)
        .fetch_all(self.pool)
        .await?;
        decode_all(self.pool, rows).await
    }

    /// The journal positions in `(after, upto]` (of any tenant) that are not there: not
    /// committed yet, or rolled back. They are read again until they appear or age out.
    pub async fn missing(&self, after: i64, upto: i64) -> anyhow::Result<Vec<i64>> {
        // Usually none: counting the range (an index-only scan) says so cheaply.
        let present: i64 =
            sqlx::query_scalar("SELECT count(*) FROM eventstore.events WHERE position > $1 AND position <= $2")
                .bind(after)
                .bind(upto)
                .fetch_one(self.pool)
                .await?;
        if present == upto - after {
            return Ok(Vec::new());
        }
        // The range is repeated inside: without it the anti-join walked the journal from
        // its first event (500 ms against 574,000 events for a window of 100,000; 96 ms
        // with it).
        Ok(sqlx::query_scalar(
            "SELECT g FROM generate_series($1 + 1, $2) AS g
             WHERE NOT EXISTS (SELECT 1 FROM eventstore.events WHERE position = g AND position > $1 AND position <= $2)",
        )
        .bind(after)
        .bind(upto)
        .fetch_all(self.pool)
        .await?)
    }

    pub async fn head(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar("SELECT COALESCE(max(position), 0) FROM eventstore.events").fetch_one(self.pool).await?)
    }

    /// The last position before the first event at or after `at`.
    pub async fn position_before(&self, at: DateTime<Utc>) -> anyhow::Result<i64> {
        let first: Option<i64> = sqlx::query_scalar(
            "SELECT min(position) FROM eventstore.events WHERE occurred_at >= $1 AND ($2::uuid IS NULL OR tenant_id = $2)",
        )
        .bind(at)
        .bind(self.tenant)
        .fetch_one(self.pool)
        .await?;
        Ok(first.map_or(i64::MAX, |p| p - 1))
    }
}

/// Every tenant with events in the journal, in id order: one descent of the
/// `(tenant_id, position)` index per tenant (a skip scan). `SELECT DISTINCT` read the
/// whole index, 280 ms against 574,000 events.
pub async fn journal_tenants(pool: &PgPool) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "WITH RECURSIVE t AS (
            (SELECT tenant_id FROM eventstore.events ORDER BY tenant_id LIMIT 1)
            UNION ALL
            SELECT (SELECT e.tenant_id FROM eventstore.events e WHERE e.tenant_id > t.tenant_id
                    ORDER BY e.tenant_id LIMIT 1)
            FROM t WHERE t.tenant_id IS NOT NULL
         )
         SELECT tenant_id FROM t WHERE tenant_id IS NOT NULL",
    )
    .fetch_all(pool)
    .await
}

/// Decodes journal rows, opening their sealed fields with the keys they need (one query).
pub async fn decode_all(pool: &PgPool, rows: Vec<(i64, String)>) -> anyhow::Result<Vec<Event>> {
    let envelopes = rows
        .into_iter()
        .map(|(position, text)| {
            let mut envelope: events::EventEnvelope = serde_json::from_str(&text)?;
            envelope.position = position;
            Ok(envelope)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let keys = crate::event::keys_for(pool, envelopes.iter(), true).await?;
    envelopes
        .into_iter()
        .map(|envelope| {
            let position = envelope.position;
            Event::from_envelope(envelope, &keys)
                .map_err(|u| anyhow::anyhow!("journal position {position}: {}", u.reason))
        })
        .collect()
}

/// Applies events through a projection, naming a poison event instead of parking it
/// (an operator is watching). Each attempt is bounded like the worker's
/// (`policy::Target::attempt`): a store that stops answering fails the command, not hangs
/// it while it holds the projection's lock.
pub async fn apply(projection: &Arc<dyn Projection>, group: &str, events: &[Event]) -> anyhow::Result<()> {
    apply_to(Target::waiting(projection.as_ref()), group, events).await
}

/// `apply` with `target`'s deadline and pace.
async fn apply_to(target: Target<'_>, group: &str, events: &[Event]) -> anyhow::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let checkpoint = Checkpoint { group: group.to_owned(), topic: String::new(), positions: BTreeMap::new() };
    // Seven retries, 100 ms to 6.4 s apart (12.7 s in all), then the error.
    let mut backoff = runtime::retry::delays(target.pace, target.pace * 100).take(7);
    loop {
        match target.attempt(events, &checkpoint).await {
            Ok(()) => return Ok(()),
            Err(ApplyError::Poison { event_id, reason }) => {
                anyhow::bail!("event {event_id} cannot be applied: {reason}")
            }
            Err(ApplyError::Transient(e) | ApplyError::Unexplained(e)) => match backoff.next() {
                Some(pause) => {
                    tracing::warn!(error = %format!("{e:#}"), retry_in = ?pause, "apply failed; retrying");
                    tokio::time::sleep(pause).await;
                }
                None => return Err(e),
            },
        }
    }
}

/// Where a replay starts: a journal position, or a time (RFC 3339).
#[derive(Debug, Clone, Copy)]
pub enum From {
    Position(i64),
    Time(DateTime<Utc>),
}

impl std::str::FromStr for From {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(position) = s.parse::<i64>() {
            return Ok(Self::Position(position));
        }
        DateTime::parse_from_rfc3339(s)
            .map(|t| Self::Time(t.with_timezone(&Utc)))
            .map_err(|_| format!("{s:?} is neither a journal position nor an RFC 3339 time"))
    }
}

/// Re-applies the journal from a position or time through a live projection. Safe to run
/// while the projector runs and to repeat: every store ignores versions it holds.
pub async fn replay(
    stores: &Stores,
    name: ProjectionName,
    tenant: Option<Uuid>,
    from: From,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> anyhow::Result<u64> {
    let projection = stores.projection(name).await?;
    let name = name.as_str();
    let journal = Journal::new(&stores.pool, tenant);
    let mut after = match from {
        From::Position(p) => p - 1,
        From::Time(at) => journal.position_before(at).await?,
    };
    let head = journal.head().await?;
    let total = (head - after).max(0) as u64;
    let mut applied = 0u64;
    // As the worker does: streams parked (or skipped) for this projection stay out, and
    // an event the store refuses is parked with its stream.
    let parking = crate::parking::ParkingLot::new(stores.pool.clone());
    let mut parked = parking.held_back(name).await?;
    let group = stores.group(name);
    let checkpoint = Checkpoint { group: group.clone(), topic: String::new(), positions: BTreeMap::new() };
    loop {
        let mut events = journal.read(after, &[], 2_000).await?;
        let Some(last) = events.last().map(|e| e.envelope.position) else { break };
        events.retain(|e| !parked.contains(&StreamKey::of(&e.envelope)));
        applied += events.len() as u64;
        crate::worker::apply_or_park(
            crate::worker::Target::waiting(&*projection),
            &crate::worker::Recorded { parking: &parking, pool: &stores.pool, group: &group },
            events,
            &checkpoint,
            &mut parked,
        )
        .await?;
        after = last;
        progress((last - (head - total as i64)).max(0) as u64, total);
    }
    Ok(applied)
}

/// Queues the journal from `from` for the relay to publish again (a broker that lost
/// its log). Idempotent: queued positions are not queued twice, and the projections
/// ignore events they hold. Returns how many positions were queued.
pub async fn republish(pool: &PgPool, from: i64) -> anyhow::Result<u64> {
    let queued = sqlx::query(
        "INSERT INTO eventstore.outbox (position)
         SELECT position FROM eventstore.events WHERE position >= $1 ON CONFLICT DO NOTHING",
    )
    .bind(from)
    .execute(pool)
    .await?;
    Ok(queued.rows_affected())
}

/// A parked stream: the poison event first, then the events waiting behind it. A stream
/// is identified by (tenant, id): two tenants' streams of one id are two entries.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ParkedStream {
    pub projection: String,
    pub stream_id: Uuid,
    pub tenant_id: Uuid,
    pub events: i64,
    pub first_version: i64,
    pub first_event_type: String,
    pub first_event_id: Uuid,
    pub error: String,
    pub parked_at: DateTime<Utc>,
}

/// Parked streams in (projection, stream id, tenant) order, `limit` at a time after the
/// `after` stream: with `after_tenant`, after that tenant's stream of that id (the next
/// page of a page that ended there), else after every stream of that id.
pub async fn parked(
    pool: &PgPool,
    projection: Option<ProjectionName>,
    after: Option<Uuid>,
    after_tenant: Option<Uuid>,
    limit: i64,
) -> anyhow::Result<Vec<ParkedStream>> {
    type Row = (String, Uuid, Uuid, i64, i64, String, Uuid, String, DateTime<Utc>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT DISTINCT ON (projection, stream_id, tenant_id) projection, stream_id, tenant_id,
                count(*) OVER (PARTITION BY projection, stream_id, tenant_id) AS events,
                stream_version AS first_version, event_type AS first_event_type, event_id AS first_event_id,
                error, parked_at
         FROM projector.parked_events
         WHERE ($1::text IS NULL OR projection = $1)
           AND ($2::uuid IS NULL OR stream_id > $2 OR (stream_id = $2 AND tenant_id > $3::uuid))
         ORDER BY projection, stream_id, tenant_id, stream_version, parked_at
         LIMIT $4",
    )
    .bind(projection)
    .bind(after)
    .bind(after_tenant)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ParkedStream {
            projection: r.0,
            stream_id: r.1,
            tenant_id: r.2,
            events: r.3,
            first_version: r.4,
            first_event_type: r.5,
            first_event_id: r.6,
            error: r.7,
            parked_at: r.8,
        })
        .collect())
}

/// Which parked stream an operator names: the id, in one tenant or (None) in every
/// tenant that has a stream of that id parked. Only platform operators reach these
/// commands, so acting across tenants reveals nothing to a tenant.
fn named(stream: Uuid, tenant: Option<Uuid>) -> String {
    match tenant {
        Some(t) => format!("stream {stream} of tenant {t}"),
        None => format!("stream {stream}"),
    }
}

/// Applies a stream's parked events again (after a fix); on success the worker takes the
/// stream back. Runs between the worker's batches. Returns how many were applied.
/// `tenant` names the tenant of the stream; without it, the streams of that id parked in
/// any tenant are retried together (each tenant's in its own order).
pub async fn retry_parked(
    stores: &Stores,
    name: ProjectionName,
    stream: Uuid,
    tenant: Option<Uuid>,
) -> anyhow::Result<usize> {
    let projection = stores.projection(name).await?;
    let name = projection.name();
    let mut hold = crate::control::exclusive(&stores.pool, name).await?;
    // Each tenant's stream in version order (streams of one id in several tenants are
    // independent of each other).
    let rows: Vec<serde_json::Value> = sqlx::query_scalar(
        "SELECT envelope FROM projector.parked_events
         WHERE projection = $1 AND stream_id = $2 AND ($3::uuid IS NULL OR tenant_id = $3)
         ORDER BY tenant_id, stream_version",
    )
    .bind(name)
    .bind(stream)
    .bind(tenant)
    .fetch_all(&mut *hold)
    .await?;
    anyhow::ensure!(!rows.is_empty(), "no events of {} are parked for {name}", named(stream, tenant));
    let envelopes = rows.into_iter().map(serde_json::from_value).collect::<Result<Vec<events::EventEnvelope>, _>>()?;
    let keys = crate::event::keys_for(&stores.pool, envelopes.iter(), true).await?;
    let mut events = Vec::with_capacity(envelopes.len());
    for envelope in envelopes {
        events.push(
            Event::from_envelope(envelope, &keys).map_err(|u| anyhow::anyhow!("still unreadable: {}", u.reason))?,
        );
    }
    apply(&projection, &stores.group(name), &events).await?;
    sqlx::query(
        "DELETE FROM projector.parked_events
         WHERE projection = $1 AND stream_id = $2 AND ($3::uuid IS NULL OR tenant_id = $3)",
    )
    .bind(name)
    .bind(stream)
    .bind(tenant)
    .execute(&mut *hold)
    .await?;
    hold.commit().await?;
    tracing::info!(projection = name, %stream, ?tenant, events = events.len(), "parked events applied");
    Ok(events.len())
}

/// Gives up on a stream's parked events for a projection: they are moved to
/// `projector.skipped_events` and the worker takes the stream back. The store keeps the
/// stream at its last good version, so later events that build on the skipped one are
/// ignored by its version guard; a rebuild (or a fixed event) brings it level again.
/// `tenant` names the tenant of the stream; without it, the streams of that id parked in
/// any tenant are skipped.
pub async fn skip_parked(
    stores: &Stores,
    name: ProjectionName,
    stream: Uuid,
    tenant: Option<Uuid>,
) -> anyhow::Result<u64> {
    let name = name.as_str();
    let mut hold = crate::control::exclusive(&stores.pool, name).await?;
    let moved = sqlx::query(
        "WITH gone AS (DELETE FROM projector.parked_events
                       WHERE projection = $1 AND stream_id = $2 AND ($3::uuid IS NULL OR tenant_id = $3) RETURNING *)
         INSERT INTO projector.skipped_events SELECT * FROM gone",
    )
    .bind(name)
    .bind(stream)
    .bind(tenant)
    .execute(&mut *hold)
    .await?
    .rows_affected();
    anyhow::ensure!(moved > 0, "no events of {} are parked for {name}", named(stream, tenant));
    hold.commit().await?;
    tracing::warn!(projection = name, %stream, ?tenant, events = moved, "parked events skipped");
    Ok(moved)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::event::test_event;
    use crate::projection::Held;
    use crate::worker::policy::OnTrouble;

    /// A store that takes every batch and never answers.
    struct Hung;

    #[async_trait::async_trait]
    impl Projection for Hung {
        fn name(&self) -> &'static str {
            "hung"
        }
        async fn apply(&self, _: &[Event], _: &Checkpoint) -> Result<(), ApplyError> {
            std::future::pending().await
        }
        async fn held(&self, _: Uuid) -> anyhow::Result<Vec<Held>> {
            Ok(Vec::new())
        }
        async fn healthy(&self) -> anyhow::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn an_operators_apply_gives_up_on_a_store_that_stops_answering() {
        let target = Target {
            projection: &Hung,
            deadline: Duration::from_millis(20),
            on_trouble: OnTrouble::Wait,
            pace: Duration::from_millis(1),
        };
        let team = serde_json::json!({ "name": "Support", "description": null, "created_at": "2026-11-20T09:00:00Z" });
        let started = std::time::Instant::now();
        let outcome = tokio::time::timeout(
            Duration::from_secs(10),
            apply_to(target, "g", &[test_event("team", 1, "TeamCreated", team)]),
        )
        .await;
        let error = outcome.expect("apply returned instead of hanging").unwrap_err();
        assert!(format!("{error:#}").contains("did not finish applying"), "{error:#}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
