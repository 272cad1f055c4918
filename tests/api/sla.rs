//! SLA breaches and warnings as events (issue 20): the command APIs' scheduler records a
//! case's warning and breach when their times come, once whichever command API leads, and
//! the case screen, search, counters, notifications and audit show them.
//!
//! The due times are set in the journal by the test (a `CaseSlaSet` in the past), as a
//! case whose targets ran out would have them: SLA targets are whole minutes.

use std::time::Duration;

use chrono::Utc;
use murima_tests::{append_raw_event, eventually, ServiceProcess, TestApp};
use reqwest::{Method, StatusCode};
use runtime::auth::Role;
use serde_json::{json, Value};
use uuid::Uuid;

async fn created(app: &TestApp, token: &str, path: &str, body: Value) -> Value {
    let answer = app.command(Method::POST, path, token, Some(body)).await;
    assert_eq!(answer.status(), StatusCode::CREATED, "{path}");
    answer.json().await.unwrap()
}

/// A case type whose workflow has SLA targets for high priority, and a case of it
/// assigned to kim (opened, workflow started, SLA set: version 3).
async fn case_for_kim(app: &TestApp) -> (Uuid, String) {
    let admin = app.token_for(app.tenant_id, Role::Admin);
    let kim = app.create_user("kim", "agent").await;
    let stage = Uuid::now_v7();
    let definition = json!({
        "stages": [{ "id": stage, "name": "New" }], "initial_stage": stage, "transitions": [],
        "sla": [{ "priority": "high", "first_response_minutes": 60, "resolution_minutes": 480 }],
    });
    let workflow = created(app, &admin, "/v1/workflows", json!({ "name": "Timed", "definition": definition })).await;
    let case_type =
        created(app, &admin, "/v1/case-types", json!({ "name": "Incident", "workflow_id": workflow["id"] })).await;
    let open =
        json!({ "title": "Lift stuck", "priority": "high", "case_type_id": case_type["id"], "assigned_to": kim });
    let case = created(app, &app.token, "/v1/cases", open).await;
    assert_eq!(case["version"], 3, "{case}");
    (case["id"].as_str().unwrap().parse().unwrap(), app.login_token("kim").await)
}

/// Sets the case's SLA in the journal at `version`: started `started` minutes ago, first
/// response due in `first_response` minutes and resolution in `resolution` minutes (negative: past).
async fn sla_set(app: &TestApp, case: Uuid, version: i64, started: i64, first_response: i64, resolution: i64) {
    let minutes = |m: i64| chrono::Duration::minutes(m);
    sla_set_in(app, case, version, minutes(started), minutes(first_response), minutes(resolution)).await;
}

/// `sla_set` with any durations (seconds, say).
async fn sla_set_in(
    app: &TestApp,
    case: Uuid,
    version: i64,
    started: chrono::Duration,
    first_response: chrono::Duration,
    resolution: chrono::Duration,
) {
    let now = Utc::now();
    let payload = json!({ "priority": "high", "first_response_due": now + first_response,
                          "resolution_due": now + resolution, "set_at": now - started });
    append_raw_event(app, app.tenant_id, "case", case, version, "CaseSlaSet", 1, payload).await;
}

/// The case's events of one type in the journal.
async fn journal_events(app: &TestApp, case: Uuid, event_type: &str) -> Vec<Value> {
    sqlx::query_scalar("SELECT envelope FROM eventstore.events WHERE stream_id = $1 AND event_type = $2")
        .bind(case)
        .bind(event_type)
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

async fn case_screen(app: &TestApp, case: Uuid) -> Value {
    app.query(&format!("/v1/cases/{case}"), &app.token).await.json().await.unwrap()
}

/// The types of the notifications a user has.
async fn notified(app: &TestApp, token: &str) -> Vec<String> {
    let list: Value = app.query("/v1/notifications", token).await.json().await.unwrap_or_default();
    let items = list["items"].as_array().cloned().unwrap_or_default();
    items.iter().filter_map(|n| n["type"].as_str().map(str::to_owned)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_breach_is_recorded_once_across_two_schedulers_and_shows_in_every_read_model() {
    let mut app = TestApp::spawn_processes().await;
    // A second command API (and scheduler) against the same journal.
    let second = ServiceProcess::start("command-api", &app.settings).await;
    let (case, kim) = case_for_kim(&app).await;

    // First response due a minute ago, resolution in ten hours.
    sla_set(&app, case, 4, 120, -1, 600).await;
    let screen = eventually("the breach on the case screen", || async {
        let screen = case_screen(&app, case).await;
        screen["sla"]["first_response_breached_at"].is_string().then_some(screen)
    })
    .await;
    assert_eq!(screen["sla"]["resolution_breached_at"], Value::Null, "{screen}");
    assert_eq!(screen["sla"]["first_response_warned_at"], Value::Null, "a late look breaches without warning first");

    // The leader dies, and its successor looks at the case again (as after a crash
    // between recording and rescheduling): nothing is recorded twice.
    app.kill_command_api().await;
    sqlx::query("UPDATE eventstore.sla_timers SET due_at = now() WHERE stream_id = $1")
        .bind(case)
        .execute(&app.pool)
        .await
        .unwrap();
    eventually("the successor to look at the case", || async {
        let due: Option<chrono::DateTime<Utc>> =
            sqlx::query_scalar("SELECT due_at FROM eventstore.sla_timers WHERE stream_id = $1")
                .bind(case)
                .fetch_optional(&app.pool)
                .await
                .unwrap();
        due.is_some_and(|d| d > Utc::now() + chrono::Duration::hours(1)).then_some(())
    })
    .await;
    let breaches = journal_events(&app, case, "CaseSlaBreached").await;
    assert_eq!(breaches.len(), 1, "{breaches:?}");
    let breach = &breaches[0];
    assert_eq!(breach["payload"]["clock"], "first_response");
    assert_eq!(breach["actor"], json!({ "user_id": Uuid::nil(), "role": "system" }));

    // Counters, the assignee's notification, search and audit.
    let counters = eventually("the breach counted", || async {
        let counters: Value = app.query("/v1/counters", &app.token).await.json().await.ok()?;
        counters["sla_breaches"].get("first_response").is_some().then_some(counters)
    })
    .await;
    assert_eq!(counters["sla_breaches"], json!({ "first_response": 1 }), "{counters}");
    eventually("kim told of the breach", || async {
        notified(&app, &kim).await.contains(&"sla_breached".to_owned()).then_some(())
    })
    .await;
    eventually("the breach in the search document", || async {
        let hits: Value = app.query("/v1/search/cases?q=lift", &app.token).await.json().await.ok()?;
        (hits["items"][0]["sla_breached"] == json!(["first_response"])).then_some(())
    })
    .await;
    let supervisor = app.token_for(app.tenant_id, Role::Supervisor);
    let found = eventually("the breach in the audit search", || async {
        let found: Value = app.query("/v1/search/audit?action=sla_breach", &supervisor).await.json().await.ok()?;
        (found["items"].as_array()?.len() == 1).then_some(found)
    })
    .await;
    assert_eq!(found["items"][0]["entity_id"], json!(case), "{found}");
    second.kill().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clock_near_its_end_warns_the_assignee() {
    let app = TestApp::spawn().await;
    let (case, kim) = case_for_kim(&app).await;
    // Fifty minutes of sixty gone: past four fifths, not yet due.
    sla_set(&app, case, 4, 50, 10, 600).await;
    eventually("kim warned", || async { notified(&app, &kim).await.contains(&"sla_warning".to_owned()).then_some(()) })
        .await;
    let screen = eventually("the warning on the case screen", || async {
        let screen = case_screen(&app, case).await;
        screen["sla"]["first_response_warned_at"].is_string().then_some(screen)
    })
    .await;
    assert_eq!(screen["sla"]["first_response_breached_at"], Value::Null);
    assert_eq!(journal_events(&app, case, "CaseSlaWarned").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_case_resolved_in_time_breaches_nothing_until_it_is_reopened() {
    let app = TestApp::spawn().await;
    let (case, _) = case_for_kim(&app).await;
    // Due in two and three seconds; resolved at once, in time for both.
    let seconds = chrono::Duration::seconds;
    sla_set_in(&app, case, 4, seconds(60), seconds(2), seconds(3)).await;
    let resolve = app
        .command(Method::POST, &format!("/v1/cases/{case}/status"), &app.token, Some(json!({ "status": "resolved" })))
        .await;
    assert_eq!(resolve.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_secs(4)).await;
    eventually("the scheduler to let the resolved case go", || async {
        let held: i64 = sqlx::query_scalar("SELECT count(*) FROM eventstore.sla_timers WHERE stream_id = $1")
            .bind(case)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        (held == 0).then_some(())
    })
    .await;
    assert!(journal_events(&app, case, "CaseSlaBreached").await.is_empty());

    // Reopened past its resolution target, it breaches that clock (it had responded in time).
    let reopen = app
        .command(Method::POST, &format!("/v1/cases/{case}/status"), &app.token, Some(json!({ "status": "open" })))
        .await;
    assert_eq!(reopen.status(), StatusCode::OK);
    eventually("the resolution breach", || async {
        (journal_events(&app, case, "CaseSlaBreached").await.len() == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let breaches = journal_events(&app, case, "CaseSlaBreached").await;
    assert_eq!(breaches.len(), 1, "{breaches:?}");
    assert_eq!(breaches[0]["payload"]["clock"], "resolution");
}
