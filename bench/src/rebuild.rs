//! Scenario 4, rebuild: how fast a projection is rebuilt from the journal, against a
//! naive replay of the same events (one event per transaction) in the same run.
//!
//! The events are written straight into the journal (not the outbox: the live projector
//! never sees them, as after a broker that lost its log), as a realistic case life:
//! opened, assigned, re-prioritised, resolved. Each case is one stream of 4 events.

use std::collections::HashMap;
use std::time::Instant;

use projector::operations::Journal;
use projector::projection::Placement;
use projector::stores::{ProjectionName, Stores};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::client::Tenant;

/// The stores the case events of this scenario land in.
const BENCHED: [ProjectionName; 4] =
    [ProjectionName::Postgres, ProjectionName::Redis, ProjectionName::Elasticsearch, ProjectionName::Mongo];

/// Appends `events` events (`events / 4` cases) to the tenant's journal in one statement.
async fn seed(pool: &sqlx::PgPool, tenant: &Tenant, events: u64) -> anyhow::Result<()> {
    seed_cases(pool, tenant, (events / 4).max(1), false).await
}

/// Appends `cases` cases to the tenant's journal in one statement: opened, assigned,
/// re-prioritised, resolved. With `varied`, titles cycle through eight subjects and only
/// every third case is resolved (so lists by status and full text find something).
pub async fn seed_cases(pool: &sqlx::PgPool, tenant: &Tenant, cases: u64, varied: bool) -> anyhow::Result<()> {
    let cases = cases as i64;
    sqlx::query(
        r#"
        WITH c AS (
            SELECT n, gen_random_uuid() AS id, now() - make_interval(secs => $4 - n) AS at
            FROM generate_series(1, $4) AS n
        ), e AS (
            SELECT c.n, c.id, c.at, v.version, v.event_type, v.payload, gen_random_uuid() AS event_id FROM c
            CROSS JOIN LATERAL (VALUES
                (1, 'CaseOpened', jsonb_build_object(
                    'case_number', 'BENCH-' || c.n,
                    'title', CASE WHEN $5 THEN (ARRAY['printer', 'router', 'invoice', 'refund', 'password',
                        'delivery', 'boiler', 'contract'])[1 + c.n % 8] || ' issue ' || c.n
                        ELSE 'Printer on floor ' || (c.n % 40) || ' is jammed' END,
                    'description', 'Reported by phone', 'status', 'open', 'priority', 'medium',
                    'case_type_id', $2::uuid, 'created_by', $3::uuid, 'assigned_to', NULL, 'due_date', NULL,
                    'tags', jsonb_build_array('bench'), 'custom_fields', '{}'::jsonb, 'opened_at', c.at)),
                (2, 'CaseAssigned', jsonb_build_object(
                    'assigned_to', jsonb_build_object('old', NULL, 'new', $3::uuid), 'assigned_at', c.at)),
                (3, 'CaseUpdated', jsonb_build_object(
                    'priority', jsonb_build_object('old', 'medium', 'new', 'high'), 'updated_at', c.at)),
                (4, 'CaseStatusChanged', jsonb_build_object(
                    'status', jsonb_build_object('old', 'open', 'new', 'resolved'), 'changed_at', c.at))
            ) AS v(version, event_type, payload)
            WHERE NOT ($5 AND v.version = 4 AND c.n % 3 <> 0)
        )
        INSERT INTO eventstore.events
            (event_id, tenant_id, stream_type, stream_id, stream_version, event_type, schema_version, occurred_at, envelope)
        SELECT e.event_id, $1, 'case', e.id, e.version, e.event_type, 1, e.at,
               jsonb_build_object('event_id', e.event_id, 'tenant_id', $1::uuid, 'stream_type', 'case',
                   'stream_id', e.id, 'stream_version', e.version, 'event_type', e.event_type,
                   'schema_version', 1, 'occurred_at', e.at,
                   'actor', jsonb_build_object('user_id', $3::uuid, 'role', 'agent'),
                   'correlation_id', gen_random_uuid(), 'causation_id', NULL, 'payload', e.payload)
        FROM e
        ORDER BY e.n, e.version
        "#,
    )
    .bind(tenant.id)
    .bind(tenant.case_type)
    .bind(tenant.agent)
    .bind(cases)
    .bind(varied)
    .execute(pool)
    .await?;
    Ok(())
}

/// Rebuilds a projection for the scenario's tenant. An earlier run that was killed (or
/// whose store failed) leaves its rebuild unfinished, which would refuse this one: the
/// scenario abandons it first and says so. A rebuild that is running is left alone.
async fn rebuild_fresh(
    stores: &Stores,
    name: ProjectionName,
    tenant: uuid::Uuid,
) -> anyhow::Result<projector::rebuild::Report> {
    if projector::rebuild::unfinished_for_another(&stores.pool, name, Some(tenant)).await? {
        let abandoned = projector::rebuild::abandon(stores, name).await?;
        println!("rebuild: abandoned an unfinished rebuild of {name} ({}) that an earlier run left", abandoned.id);
        if let Some(why) = abandoned.clean_up_pending {
            println!("rebuild: its copies are dropped later: {why}");
        }
    }
    projector::rebuild::run(stores, name, Some(tenant), &|_, _| {}).await
}

pub async fn rebuild(stores: &Stores, tenant: &Tenant, events: u64, naive_events: u64) -> anyhow::Result<Value> {
    let started = Instant::now();
    seed(&stores.pool, tenant, events).await?;
    println!("\nrebuild: seeded {events} events into the journal in {:.1} s", started.elapsed().as_secs_f64());

    let mut rows = Vec::new();
    for name in BENCHED {
        let report = rebuild_fresh(stores, name, tenant.id).await?;
        rows.push(json!({ "store": name.as_str(), "mode": "rebuild (batched)", "events": report.events,
                          "seconds": report.seconds, "events_per_sec": report.events_per_sec,
                          "switch_ms": report.switch_ms }));
    }

    // The same events, one per transaction, into a scratch copy that is dropped after.
    let journal = Journal::new(&stores.pool, Some(tenant.id));
    let events = journal.read(0, &[], naive_events as i64).await?;
    for name in BENCHED {
        let scratch = Uuid::new_v4();
        let copy = stores.placed(name, Placement::copies(HashMap::from([(tenant.id, scratch)]))).await?;
        let started = Instant::now();
        for event in &events {
            projector::operations::apply(&copy, "bench.naive", std::slice::from_ref(event)).await?;
        }
        let seconds = started.elapsed().as_secs_f64();
        rows.push(json!({ "store": name.as_str(), "mode": "naive (1 event/transaction)", "events": events.len(),
                          "seconds": seconds, "events_per_sec": events.len() as f64 / seconds }));
        projector::rebuild::drop_copy(stores, name, scratch).await?;
    }

    println!("{:<14} {:<30} {:>9} {:>9} {:>12} {:>10}", "store", "mode", "events", "seconds", "events/s", "switch ms");
    for r in &rows {
        println!(
            "{:<14} {:<30} {:>9} {:>9.2} {:>12.0} {:>10}",
            r["store"].as_str().unwrap_or_default(),
            r["mode"].as_str().unwrap_or_default(),
            r["events"],
            r["seconds"].as_f64().unwrap_or(0.0),
            r["events_per_sec"].as_f64().unwrap_or(0.0),
            r["switch_ms"].as_f64().map_or("-".to_owned(), |m| format!("{m:.0}")),
        );
    }
    let speedup = |store: &str| {
        let rate = |mode: &str| {
            rows.iter()
                .find(|r| r["store"] == store && r["mode"].as_str().is_some_and(|m| m.starts_with(mode)))
                .and_then(|r| r["events_per_sec"].as_f64())
        };
        Some(rate("rebuild")? / rate("naive")?)
    };
    for store in BENCHED {
        if let Some(x) = speedup(store.as_str()) {
            println!("{store}: rebuild is {x:.1}x the naive replay");
        }
    }
    Ok(json!({ "events": events.len(), "runs": rows,
               "speedup": BENCHED.iter().map(|s| (s.to_string(), json!(speedup(s.as_str())))).collect::<serde_json::Map<_, _>>() }))
}

/// Seeds the query scenario's cases straight into the journal (spread over the tenants)
/// and builds the PostgreSQL and Redis read models with per-tenant rebuilds. Answers as
/// the command-API seeding does (counts, times, a sample of case ids per tenant).
pub async fn seed_through_journal(stores: &Stores, tenants: &[Tenant], cases: u64) -> anyhow::Result<Value> {
    let started = Instant::now();
    let per_tenant = (cases / tenants.len().max(1) as u64).max(1);
    for tenant in tenants {
        seed_cases(&stores.pool, tenant, per_tenant, true).await?;
    }
    let written = started.elapsed().as_secs_f64();
    for tenant in tenants {
        for name in [ProjectionName::Postgres, ProjectionName::Redis] {
            rebuild_fresh(stores, name, tenant.id).await?;
        }
    }
    let built = started.elapsed().as_secs_f64();
    let mut sample = Vec::new();
    for (t, tenant) in tenants.iter().enumerate() {
        sample.extend(sample_cases(&stores.pool, tenant.id).await?.into_iter().map(|id| json!([t, id])));
    }
    println!(
        "\nSeeded {} cases over {} tenants into the journal in {written:.1} s; PostgreSQL and Redis rebuilt by {built:.1} s",
        per_tenant * tenants.len() as u64,
        tenants.len()
    );
    Ok(json!({ "cases": per_tenant * tenants.len() as u64, "write_seconds": written, "projected_seconds": built,
               "sample_ids": sample, "mode": "journal + rebuild (search covers only what Elasticsearch held)" }))
}

/// The ids of a tenant's 50 newest cases, from the journal: the case detail reads these.
pub async fn sample_cases(pool: &sqlx::PgPool, tenant: Uuid) -> anyhow::Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar(
        "SELECT stream_id FROM eventstore.events WHERE tenant_id = $1 AND event_type = 'CaseOpened'
         ORDER BY position DESC LIMIT 50",
    )
    .bind(tenant)
    .fetch_all(pool)
    .await?)
}
