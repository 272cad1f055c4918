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
use projector::stores::Stores;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::client::Tenant;

/// The stores the case events of this scenario land in.
const BENCHED: &[&str] = &["postgres", "redis", "elasticsearch", "mongo"];

/// Appends `events` events (`events / 4` cases) to the tenant's journal in one statement.
async fn seed(pool: &sqlx::PgPool, tenant: &Tenant, events: u64) -> anyhow::Result<()> {
    let cases = (events / 4).max(1) as i64;
    sqlx::query(
        r#"
        WITH c AS (
            SELECT n, gen_random_uuid() AS id, now() - make_interval(secs => $4 - n) AS at
            FROM generate_series(1, $4) AS n
        ), e AS (
            SELECT c.n, c.id, c.at, v.version, v.event_type, v.payload, gen_random_uuid() AS event_id FROM c
            CROSS JOIN LATERAL (VALUES
                (1, 'CaseOpened', jsonb_build_object(
                    'case_number', 'BENCH-' || c.n, 'title', 'Printer on floor ' || (c.n % 40) || ' is jammed',
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
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn rebuild(stores: &Stores, tenant: &Tenant, events: u64, naive_events: u64) -> anyhow::Result<Value> {
    let started = Instant::now();
    seed(&stores.pool, tenant, events).await?;
    println!("\nrebuild: seeded {events} events into the journal in {:.1} s", started.elapsed().as_secs_f64());

    let mut rows = Vec::new();
    for name in BENCHED {
        let report = projector::rebuild::run(stores, name, Some(tenant.id), &|_, _| {}).await?;
        rows.push(json!({ "store": name, "mode": "rebuild (batched)", "events": report.events,
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
        rows.push(json!({ "store": name, "mode": "naive (1 event/transaction)", "events": events.len(),
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
        if let Some(x) = speedup(store) {
            println!("{store}: rebuild is {x:.1}x the naive replay");
        }
    }
    Ok(json!({ "events": events.len(), "runs": rows,
               "speedup": BENCHED.iter().map(|s| (s.to_string(), json!(speedup(s)))).collect::<serde_json::Map<_, _>>() }))
}
