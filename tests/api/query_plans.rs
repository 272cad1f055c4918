//! On a realistic data set (100,000 cases in one tenant, more in no other), every
//! documented case-list filter is served by an index: no sequential scan of the tenant's
//! cases table. The plans are those of the query API's own statement, in its own kind of
//! read transaction (reader role, tenant setting, custom plans).

use murima_tests::TestApp;
use query_api::routes::case_list::{list_sql, Sort};
use runtime::auth::{Caller, Role};
use runtime::tenancy::Tenancy;
use serde_json::{json, Value};
use uuid::Uuid;

const CASES: i64 = 100_000;

/// Names of the plan nodes that read `cases` without an index.
fn sequential_scans(plan: &Value, found: &mut Vec<String>) {
    if plan["Node Type"] == "Seq Scan" && plan["Relation Name"] == "cases" {
        found.push(plan["Node Type"].to_string());
    }
    for child in plan["Plans"].as_array().into_iter().flatten() {
        sequential_scans(child, found);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_documented_case_filter_uses_an_index_on_100k_cases() {
    let app = TestApp::spawn().await;
    // The schema exists once the projector has applied the tenant's first events.
    let schema = Tenancy(app.tenant_id).pg_schema();
    murima_tests::eventually("the tenant schema", || async {
        sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM {schema}.case_types"))
            .fetch_one(&app.pool)
            .await
            .ok()
            .filter(|n| *n > 0)
    })
    .await;
    let team = Uuid::now_v7();
    sqlx::query(&format!(
        "INSERT INTO {schema}.teams (id, tenant_id, name, created_at, updated_at, version) VALUES ($1, $2, 'Seed', now(), now(), 1)"
    ))
    .bind(team)
    .bind(app.tenant_id)
    .execute(&app.pool)
    .await
    .unwrap();
    // Seed straight into the read model: this is about plans, not about the write path.
    sqlx::query(&format!(
        "INSERT INTO {schema}.cases (id, tenant_id, case_number, title, description, status, priority, case_type_id,
            created_by, assigned_to, assigned_team_id, created_at, updated_at, due_date, custom_fields, tags, version)
         SELECT gen_random_uuid(), $1, 'SEED-' || g, 'Seeded case ' || g || CASE WHEN g % 1000 = 0 THEN ' boiler' ELSE '' END,
                'about ' || (g % 97), (ARRAY['open','in_progress','pending','resolved','closed'])[1 + g % 5],
                (ARRAY['low','medium','high','urgent'])[1 + g % 4], $2, $3,
                CASE WHEN g % 50 = 0 THEN $3 END, CASE WHEN g % 40 = 0 THEN $4::uuid END,
                now() - make_interval(mins => g), now() - make_interval(mins => g),
                CASE WHEN g % 3 = 0 THEN now() + make_interval(hours => g % 500) END,
                jsonb_build_object('customer_id', 'C-' || (g % 20000)),
                CASE WHEN g % 100 = 0 THEN ARRAY['vip'] ELSE ARRAY[]::text[] END, 1
         FROM generate_series(1, $5::int) AS g"
    ))
    .bind(app.tenant_id)
    .bind(app.case_type_id)
    .bind(app.user_id)
    .bind(team)
    .bind(CASES)
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query(&format!("ANALYZE {schema}.cases")).execute(&app.pool).await.unwrap();

    let now = chrono::Utc::now();
    // (what, filters as (parameter number, value)): the documented filters, one by one
    // and in the combinations the UI sends.
    type Filters = Vec<(usize, Value)>;
    let documented: Vec<(&str, Sort, Filters)> = vec![
        ("status", Sort::Created, vec![(2, json!("pending"))]),
        ("status and priority", Sort::Created, vec![(2, json!("open")), (3, json!("urgent"))]),
        ("case type and status", Sort::Created, vec![(4, json!(app.case_type_id)), (2, json!("open"))]),
        ("assignee", Sort::Created, vec![(5, json!(app.user_id))]),
        ("team", Sort::Created, vec![(6, json!(team))]),
        ("tag", Sort::Created, vec![(7, json!("vip"))]),
        ("created range", Sort::Created, vec![(8, json!(now - chrono::Duration::hours(2))), (9, json!(now))]),
        ("due range", Sort::Due, vec![(10, json!(now)), (11, json!(now + chrono::Duration::hours(3)))]),
        ("custom field", Sort::Created, vec![(12, json!({ "customer_id": "C-42" }))]),
        ("free text", Sort::Created, vec![(13, json!("boiler"))]),
        ("newest first, no filter", Sort::Created, vec![]),
        ("recently updated", Sort::Updated, vec![]),
        ("soonest due", Sort::Due, vec![]),
        ("most urgent first", Sort::Priority, vec![]),
        ("open, most urgent first", Sort::Priority, vec![(2, json!("open"))]),
    ];
    let caller =
        Caller { user_id: app.user_id, tenant_id: app.tenant_id, role: Role::Agent, grants: 0, operator: true };
    let mut failures = Vec::new();
    for (what, sort, filters) in documented {
        let value = |n: usize| filters.iter().find(|(i, _)| *i == n).map(|(_, v)| v.clone());
        let text = |n: usize| value(n).and_then(|v| v.as_str().map(str::to_owned));
        let uuid = |n: usize| value(n).and_then(|v| serde_json::from_value::<Uuid>(v).ok());
        let time = |n: usize| value(n).and_then(|v| serde_json::from_value::<chrono::DateTime<chrono::Utc>>(v).ok());
        let (mut tx, _) = query_api::routes::tenant_tx(&app.pool, caller).await.unwrap();
        let plan: Value = sqlx::query_scalar(&format!("EXPLAIN (FORMAT JSON) {}", list_sql(&schema, sort)))
            .bind(app.tenant_id)
            .bind(text(2))
            .bind(text(3))
            .bind(uuid(4))
            .bind(uuid(5))
            .bind(uuid(6))
            .bind(text(7))
            .bind(time(8))
            .bind(time(9))
            .bind(time(10))
            .bind(time(11))
            .bind(value(12))
            .bind(text(13))
            .bind(None::<String>)
            .bind(None::<Uuid>)
            .bind(26_i64)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        let mut scans = Vec::new();
        sequential_scans(&plan[0]["Plan"], &mut scans);
        if !scans.is_empty() {
            failures.push(format!("{what}: {}", plan[0]["Plan"]));
        }
    }
    assert!(failures.is_empty(), "sequential scans of cases:\n{}", failures.join("\n"));
}

/// Rows the plan read from `relation`, over all its loops.
fn rows_read(plan: &Value, relation: &str) -> f64 {
    let own = if plan["Relation Name"] == relation {
        plan["Actual Rows"].as_f64().unwrap_or(0.0) * plan["Actual Loops"].as_f64().unwrap_or(1.0)
    } else {
        0.0
    };
    own + plan["Plans"].as_array().into_iter().flatten().map(|child| rows_read(child, relation)).sum::<f64>()
}

/// After a refill (the whole journal queued again) the outbox's statistics say it is big
/// long after the relay drained most of it. The relay's read of its next batch must still
/// look up only that batch: written as a join, the planner walked the journal from its
/// first event and probed the outbox for each (675 ms a batch on 490,000 events), and a
/// relay slower than the commands fell further behind with every batch.
#[tokio::test(flavor = "multi_thread")]
async fn the_relays_next_batch_reads_only_that_batch_after_a_refill() {
    let app = TestApp::spawn().await;
    // All in one transaction that is rolled back: the running relay never sees these rows.
    let mut tx = app.pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO eventstore.events (event_id, tenant_id, stream_type, stream_id, stream_version, event_type,
                                        schema_version, occurred_at, envelope)
         SELECT gen_random_uuid(), $1, 'case', gen_random_uuid(), 1, 'CaseOpened', 1, now(), '{}'
         FROM generate_series(1, 200000)",
    )
    .bind(Uuid::now_v7())
    .execute(&mut *tx)
    .await
    .unwrap();
    // The refill, analysed while the whole journal was queued; then the relay drains all
    // but the last thousand before statistics are gathered again.
    sqlx::query(
        "INSERT INTO eventstore.outbox (position) SELECT position FROM eventstore.events ON CONFLICT DO NOTHING",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query("ANALYZE eventstore.events").execute(&mut *tx).await.unwrap();
    sqlx::query("ANALYZE eventstore.outbox").execute(&mut *tx).await.unwrap();
    sqlx::query("DELETE FROM eventstore.outbox WHERE position < (SELECT max(position) - 1000 FROM eventstore.outbox)")
        .execute(&mut *tx)
        .await
        .unwrap();
    let explained: Value =
        sqlx::query_scalar(&format!("EXPLAIN (ANALYZE, FORMAT JSON) {}", command_api::relay::NEXT_BATCH_SQL))
            .bind(command_api::relay::BATCH)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    tx.rollback().await.unwrap();
    let plan = &explained[0]["Plan"];
    let read = rows_read(plan, "events");
    assert!(
        read <= command_api::relay::BATCH as f64,
        "the relay's batch read {read} journal rows for a batch of {}: {plan:#}",
        command_api::relay::BATCH
    );
}

/// A receiver that is down keeps its deliveries queued, 50,000 of them here, beside 24
/// other tenants' few. Each claim (every 200 ms) must read each tenant's share only:
/// ranking every due delivery read all 54,000 twice. And it still takes every tenant's
/// first delivery before any tenant's second.
#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_claim_reads_each_tenants_share_not_the_whole_backlog() {
    let app = TestApp::spawn().await;
    // In one transaction that is rolled back: the running sender never sees these rows.
    let mut tx = app.pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO projector.webhook_deliveries (tenant_id, webhook_id, event_id, event_type, body, next_attempt_at)
         SELECT CASE WHEN g <= 50000 THEN $1 ELSE md5((g % 24)::text)::uuid END, gen_random_uuid(),
                gen_random_uuid(), 'CaseOpened', '{}', now() - interval '1 minute'
         FROM generate_series(1, 54000) AS g",
    )
    .bind(Uuid::now_v7())
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query("ANALYZE projector.webhook_deliveries").execute(&mut *tx).await.unwrap();
    let explained: Value =
        sqlx::query_scalar(&format!("EXPLAIN (ANALYZE, FORMAT JSON) {}", projector::webhooks::CLAIM_SQL))
            .bind(projector::webhooks::BATCH)
            .bind(projector::webhooks::LEASE_SECS)
            .bind(projector::webhooks::PER_TENANT)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    // The round after (the first took 20 tenants' first deliveries): the 5 tenants left
    // out first, then second deliveries, one per tenant.
    let round: Vec<(Uuid,)> = sqlx::query_as(projector::webhooks::CLAIM_SQL)
        .bind(projector::webhooks::BATCH)
        .bind(projector::webhooks::LEASE_SECS)
        .bind(projector::webhooks::PER_TENANT)
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let tenants: std::collections::HashSet<Uuid> = round.iter().map(|(t,)| *t).collect();
    assert_eq!((round.len(), tenants.len()), (20, 20), "one delivery of each of 20 tenants");
    let plan = &explained[0]["Plan"];
    let claimed = plan["Actual Rows"].as_f64().unwrap_or(0.0);
    assert_eq!(claimed, projector::webhooks::BATCH as f64, "a full round is claimed: {plan:#}");
    let read = rows_read(plan, "webhook_deliveries");
    assert!(read <= 1_000.0, "a claim read {read} deliveries: {plan:#}");
}
