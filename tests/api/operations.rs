//! The operator's tools: rebuilds that switch in without failing a read, that resume or
//! are abandoned cleanly and that touch only their tenant; parked retry and skip;
//! status, metrics, health and readiness.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use murima_tests::{eventually, TestApp};
use projector::stores::Stores;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

/// Cases of the test's tenant with the usual life: assignment, notes, tasks, status.
async fn workload(app: &TestApp, cases: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..cases {
        let id = app.open_case(&format!("Printer jam {i}")).await["id"].as_str().unwrap().to_owned();
        let assign = json!({ "assigned_to": app.user_id });
        let r = app.command(Method::POST, &format!("/v1/cases/{id}/assignment"), &app.token, Some(assign)).await;
        assert!(r.status().is_success());
        if i % 3 == 0 {
            let note = json!({ "content": format!("Called back {i}"), "is_internal": false });
            let r = app.command(Method::POST, &format!("/v1/cases/{id}/notes"), &app.token, Some(note)).await;
            assert!(r.status().is_success());
            let task = json!({ "title": "Follow up", "priority": "high", "assigned_to": app.user_id });
            let r = app.command(Method::POST, &format!("/v1/cases/{id}/tasks"), &app.token, Some(task)).await;
            assert!(r.status().is_success());
        }
        if i % 4 == 1 {
            let status = json!({ "status": "resolved" });
            let r = app.command(Method::POST, &format!("/v1/cases/{id}/status"), &app.token, Some(status)).await;
            assert!(r.status().is_success());
        }
        ids.push(id);
    }
    ids
}

/// The indices the tenant's cases alias points at.
async fn cases_indices(app: &TestApp) -> Vec<String> {
    let alias = runtime::tenancy::Tenancy(app.tenant_id).es_alias("cases");
    let aliases: Value = app
        .http
        .get(format!("{}/_alias/{alias}", app.settings.elastic_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    aliases.as_object().unwrap().keys().cloned().collect()
}

async fn schema_oid(app: &TestApp, tenant: Uuid) -> Option<u32> {
    let oid: Option<sqlx::postgres::types::Oid> = sqlx::query_scalar("SELECT oid FROM pg_namespace WHERE nspname = $1")
        .bind(runtime::tenancy::Tenancy(tenant).pg_schema())
        .fetch_optional(&app.pool)
        .await
        .unwrap();
    oid.map(|o| o.0)
}

/// The names of a tenant schema's indexes and constraints, with their definitions.
async fn schema_shape(app: &TestApp, tenant: Uuid) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT indexname || ' ' || replace(indexdef, schemaname, 'S') FROM pg_indexes WHERE schemaname = $1
         UNION ALL
         SELECT c.conname || ' ' || pg_get_constraintdef(c.oid) FROM pg_constraint c
         JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = $1
         ORDER BY 1",
    )
    .bind(runtime::tenancy::Tenancy(tenant).pg_schema())
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

/// Writes through the command API until told to stop; returns how many commands it sent.
fn keep_writing(app: &TestApp, ids: Vec<String>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<usize> {
    let (http, url, token, case_type) =
        (app.http.clone(), app.command_url.clone(), app.token.clone(), app.case_type_id);
    tokio::spawn(async move {
        let mut sent = 0;
        while !stop.load(Ordering::Relaxed) {
            let r = if sent % 2 == 0 {
                let body = json!({ "title": format!("Live {sent}"), "description": "during the rebuild",
                                   "priority": "low", "case_type_id": case_type });
                http.post(format!("{url}/v1/cases")).bearer_auth(&token).json(&body).send().await
            } else {
                let id = &ids[sent % ids.len()];
                let body = json!({ "priority": if sent % 4 == 1 { "urgent" } else { "medium" } });
                http.patch(format!("{url}/v1/cases/{id}")).bearer_auth(&token).json(&body).send().await
            };
            assert!(r.unwrap().status().is_success(), "a live write failed");
            sent += 1;
        }
        sent
    })
}

/// Reads the case list, a case and the counters until told to stop; returns the
/// failures (anything but 200) and the number of reads.
fn keep_reading(app: &TestApp, case: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<(Vec<String>, usize)> {
    // A supervisor: the audit trail needs audit:read.
    let token = app.token_for(app.tenant_id, runtime::auth::Role::Supervisor);
    let (http, url) = (app.http.clone(), app.query_url.clone());
    tokio::spawn(async move {
        let mut failures = Vec::new();
        let mut reads = 0;
        while !stop.load(Ordering::Relaxed) {
            let paths = [
                "/v1/cases?limit=20".to_owned(),
                format!("/v1/cases/{case}"),
                format!("/v1/cases/{case}/audit"),
                "/v1/counters".to_owned(),
                "/v1/search/cases?q=printer".to_owned(),
            ];
            for path in paths {
                let sent = std::time::Instant::now();
                let r = http.get(format!("{url}{path}")).bearer_auth(&token).send().await.unwrap();
                if r.status() != StatusCode::OK {
                    let took = sent.elapsed();
                    failures.push(format!(
                        "{path}: {} after {took:?} {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    ));
                }
                reads += 1;
            }
        }
        (failures, reads)
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn rebuilds_of_every_projection_under_live_writes_switch_in_without_a_failed_read_and_match_a_fresh_replay() {
    let mut app = TestApp::spawn().await;
    // Another tenant, which a rebuild of this one must not touch.
    let (other, _, other_token) = app.provision_tenant_with_agent().await;
    let other_type = app.create_case_type(other, "Other", json!({ "fields": [] })).await;
    let body =
        json!({ "title": "Elsewhere", "description": "other tenant", "priority": "low", "case_type_id": other_type });
    assert!(app.command(Method::POST, "/v1/cases", &other_token, Some(body)).await.status().is_success());
    let ids = workload(&app, 12).await;
    app.wait_for_all_stores().await;
    let other_schema = runtime::tenancy::Tenancy(other).pg_schema();
    eventually("the other tenant's case in PostgreSQL", || async {
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {other_schema}.cases"))
            .fetch_one(&app.pool)
            .await
            .ok()?;
        (n == 1).then_some(())
    })
    .await;
    let other_digest = app.store_digest_of(other).await;
    let (other_oid, live_oid) = (schema_oid(&app, other).await, schema_oid(&app, app.tenant_id).await);
    let shape_before = schema_shape(&app, app.tenant_id).await;

    let stop = Arc::new(AtomicBool::new(false));
    let writer = keep_writing(&app, ids.clone(), stop.clone());
    let reader = keep_reading(&app, ids[0].clone(), stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;

    let stores = Stores::connect(&app.settings, 4).await.unwrap();
    let batches = AtomicUsize::new(0);
    let progress = |_: u64, _: u64| {
        batches.fetch_add(1, Ordering::Relaxed);
    };
    let mut reports = Vec::new();
    for name in projector::stores::ProjectionName::ALL {
        reports.push(projector::rebuild::run(&stores, name, Some(app.tenant_id), &progress).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let written = writer.await.unwrap();
    let (failures, reads) = reader.await.unwrap();

    assert!(reports.iter().all(|r| r.events > 0), "{reports:#?}");
    assert!(written > 0 && reads > 0, "the rebuild ran with writes ({written}) and reads ({reads}) going on");
    assert!(failures.is_empty(), "reads failed during the rebuild: {failures:#?}");
    assert_ne!(schema_oid(&app, app.tenant_id).await, live_oid, "the tenant's schema is a new one");
    // The switched-in schema's statistics still refresh (a refresh function written into
    // the copy named the copy's schema, which the switch renames away).
    let mut redis = stores.redis().await.unwrap();
    projector::maintenance::refresh_one(&app.pool, &mut redis, app.tenant_id)
        .await
        .expect("case_statistics of a rebuilt schema refresh");
    let leftovers: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'tenant\\_%\\_retired'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(leftovers, 0, "the replaced schema is dropped");

    // The copy was loaded without its indexes and foreign keys; all are back.
    assert_eq!(schema_shape(&app, app.tenant_id).await, shape_before);

    // Search reads the rebuilt indices (named after the rebuild's scratch id).
    let cases_alias = runtime::tenancy::Tenancy(app.tenant_id).es_alias("cases");
    let indices = cases_indices(&app).await;
    assert!(!indices.is_empty() && indices.iter().all(|i| !i.starts_with(&cases_alias)), "{indices:?}");

    // The other tenant: same schema, same contents.
    assert_eq!(schema_oid(&app, other).await, other_oid);
    assert_eq!(app.store_digest_of(other).await, other_digest, "a per-tenant rebuild left another tenant alone");

    // The live worker kept following after the switch; then everything equals a replay.
    let after = app.open_case("After the switch").await["id"].as_str().unwrap().to_owned();
    app.wait_for_all_stores().await;
    app.assert_counters_match_postgres().await;
    let rebuilt = app.store_digest().await;
    let schema = runtime::tenancy::Tenancy(app.tenant_id).pg_schema();
    let found: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {schema}.cases WHERE id = $1::uuid"))
        .bind(&after)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(found, 1, "a case opened after the switch reached the rebuilt schema");
    app.assert_same_as_fresh_replay(&rebuilt).await;
}

/// Starts a PostgreSQL rebuild of `tenant` and kills it after its first batch, as a crash
/// would: the task dies, nothing is switched.
async fn interrupt_a_rebuild(stores: &Stores, tenant: Uuid) {
    let stores = stores.clone();
    let interrupted = tokio::spawn(async move {
        projector::rebuild::run(&stores, projector::stores::ProjectionName::Postgres, Some(tenant), &|_, _| {
            panic!("interrupted")
        })
        .await
    });
    assert!(interrupted.await.is_err(), "the rebuild was interrupted");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_rebuild_resumes_or_is_abandoned_and_two_cannot_run_at_once() {
    let app = TestApp::spawn().await;
    workload(&app, 6).await;
    app.wait_for_all_stores().await;
    let live_oid = schema_oid(&app, app.tenant_id).await;
    let stores = Stores::connect(&app.settings, 8).await.unwrap();
    let tenant = app.tenant_id;

    // Interrupted after its first batch (as a crash would: the task dies, nothing switched).
    interrupt_a_rebuild(&stores, tenant).await;
    assert_eq!(schema_oid(&app, tenant).await, live_oid, "nothing switched");
    let running = projector::rebuild::list(&app.pool, 5).await.unwrap();
    assert_eq!(running[0].state, "running");
    assert!(running[0].events_applied > 0);

    // Resumed: it picks up where it stopped and switches in.
    let report =
        projector::rebuild::run(&stores, projector::stores::ProjectionName::Postgres, Some(tenant), &|_, _| {})
            .await
            .unwrap();
    assert!(report.resumed);
    assert_eq!(report.id, running[0].id);
    assert_ne!(schema_oid(&app, tenant).await, live_oid);
    let resumed_oid = schema_oid(&app, tenant).await;

    // Interrupted again, then abandoned: its copy goes, the live copy stays.
    interrupt_a_rebuild(&stores, tenant).await;
    let unfinished = projector::rebuild::list(&app.pool, 1).await.unwrap().remove(0);
    let scratch = unfinished.copies.0[&tenant];
    assert!(schema_oid(&app, scratch).await.is_some(), "the copy exists while unfinished");
    // While one runs (or is unfinished for another target), a second is refused.
    let other_target = projector::rebuild::run(&stores, projector::stores::ProjectionName::Postgres, None, &|_, _| {})
        .await
        .unwrap_err();
    assert!(other_target.to_string().contains("resume it with the same target or abandon it"), "{other_target}");
    {
        // A rebuild held inside its progress report until the test lets it go.
        let (running, release) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let slow = {
            let (stores, running, release) = (stores.clone(), running.clone(), release.clone());
            tokio::spawn(async move {
                projector::rebuild::run(&stores, projector::stores::ProjectionName::Postgres, Some(tenant), &|_, _| {
                    running.store(true, Ordering::Relaxed);
                    // Blocking here holds a runtime thread: hand its queued tasks to
                    // another first (a task parked in its slot would wait for this one).
                    tokio::task::block_in_place(|| {
                        while !release.load(Ordering::Relaxed) {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    })
                })
                .await
            })
        };
        eventually("the slow rebuild to be running", || async { running.load(Ordering::Relaxed).then_some(()) }).await;
        let why = projector::rebuild::refusal(&app.pool, projector::stores::ProjectionName::Postgres, Some(tenant))
            .await
            .unwrap();
        assert!(why.is_some_and(|w| w.contains("is running")), "the HTTP API answers 409 while one runs");
        let second =
            projector::rebuild::abandon(&stores, projector::stores::ProjectionName::Postgres).await.unwrap_err();
        assert!(second.to_string().contains("is running in another process"), "{second}");
        release.store(true, Ordering::Relaxed);
        slow.await.unwrap().unwrap();
    }
    // The slow one finished it; start another, interrupt it and abandon it.
    interrupt_a_rebuild(&stores, tenant).await;
    let unfinished = projector::rebuild::list(&app.pool, 1).await.unwrap().remove(0);
    let before_abandon = schema_oid(&app, tenant).await;
    assert_ne!(before_abandon, resumed_oid, "the slow rebuild switched in too");
    projector::rebuild::abandon(&stores, projector::stores::ProjectionName::Postgres).await.unwrap();
    assert_eq!(schema_oid(&app, unfinished.copies.0[&tenant]).await, None, "the copy is dropped");
    assert_eq!(schema_oid(&app, tenant).await, before_abandon, "the live copy is untouched");
    assert_eq!(projector::rebuild::list(&app.pool, 1).await.unwrap()[0].state, "abandoned");
    let cases = app.query("/v1/cases", &app.token).await;
    assert_eq!(cases.status(), StatusCode::OK);
}

/// A case opened with a case type the read model does not have: PostgreSQL refuses it
/// (a foreign key) and parks it; the other stores take it.
async fn poison(app: &TestApp, case_type: Uuid) -> Uuid {
    let stream = Uuid::now_v7();
    let payload = json!({
        "case_number": format!("CASE-X{}", &stream.simple().to_string()[24..]), "title": "Orphan",
        "description": null, "status": "open", "priority": "low", "case_type_id": case_type,
        "created_by": app.user_id, "assigned_to": null, "due_date": null, "tags": [],
        "custom_fields": {}, "opened_at": "2026-11-20T09:00:00Z",
    });
    murima_tests::append_raw_event(app, app.tenant_id, "case", stream, 1, "CaseOpened", 1, payload).await;
    stream
}

async fn parked_by_postgres(app: &TestApp, stream: Uuid) {
    eventually("the event to be parked by postgres", || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM projector.parked_events WHERE stream_id = $1 AND projection = 'postgres'",
        )
        .bind(stream)
        .fetch_one(&app.pool)
        .await
        .unwrap();
        (n == 1).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_see_status_and_retry_or_skip_parked_streams_over_http() {
    let app = TestApp::spawn().await;
    let admin = app.platform_token();
    let admin_url = |path: &str| format!("{}/v1/admin{path}", app.projector_url);

    // Only platform administrators.
    let r = app.http.get(admin_url("/projections")).bearer_auth(&app.token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    workload(&app, 3).await;
    app.wait_for_all_stores().await;
    let status: Value = eventually("status to show every projection applying", || async {
        let s: Value =
            app.http.get(admin_url("/projections")).bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
        let all = s["projections"].as_array()?;
        (all.len() == 7 && all.iter().all(|p| p["events_applied"].as_i64() > Some(0) && p["lag_events"] == 0))
            .then_some(s)
    })
    .await;
    assert!(status["projections"][0]["checkpoint"].as_object().is_some_and(|c| !c.is_empty()), "{status}");

    // A case of a type PostgreSQL does not know: parked there, listed over HTTP.
    let missing_type = Uuid::now_v7();
    let stream = poison(&app, missing_type).await;
    parked_by_postgres(&app, stream).await;
    let parked: Value = app
        .http
        .get(admin_url("/parked?projection=postgres"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(parked["parked"][0]["stream_id"], json!(stream), "{parked}");
    assert_eq!(parked["parked"][0]["first_version"], 1);

    // Retrying while the cause is still there keeps it parked and says why.
    let retry = admin_url(&format!("/parked/postgres/{stream}/retry"));
    let r = app.http.post(&retry).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("cannot be applied"));

    // After the fix (the missing case type restored by hand), a retry applies it.
    let schema = runtime::tenancy::Tenancy(app.tenant_id).pg_schema();
    sqlx::query(&format!(
        "INSERT INTO {schema}.case_types
         SELECT (jsonb_populate_record(NULL::{schema}.case_types,
                 to_jsonb(c) || jsonb_build_object('id', $1::uuid, 'name', 'Restored'))).*
         FROM {schema}.case_types c LIMIT 1"
    ))
    .bind(missing_type)
    .execute(&app.pool)
    .await
    .unwrap();
    let r = app.http.post(&retry).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let title: String = sqlx::query_scalar(&format!("SELECT title FROM {schema}.cases WHERE id = $1"))
        .bind(stream)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(title, "Orphan", "the retried event applied");
    // The worker took the stream back: its next event flows without parking.
    let r = app
        .command(Method::POST, &format!("/v1/cases/{stream}/status"), &app.token, Some(json!({ "status": "resolved" })))
        .await;
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    eventually("the next event of the retried stream to apply", || async {
        let status: String = sqlx::query_scalar(&format!("SELECT status FROM {schema}.cases WHERE id = $1"))
            .bind(stream)
            .fetch_one(&app.pool)
            .await
            .ok()?;
        (status == "resolved").then_some(())
    })
    .await;

    // Skipping gives up on a stream: it leaves the parking lot for the record.
    let other = poison(&app, Uuid::now_v7()).await;
    parked_by_postgres(&app, other).await;
    let skip = admin_url(&format!("/parked/postgres/{other}/skip"));
    let r = app.http.post(&skip).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let skipped: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM projector.skipped_events WHERE stream_id = $1 AND projection = 'postgres'",
    )
    .bind(other)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(skipped, 1);
    let r = app.http.post(&skip).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "nothing left to skip");

    // Everything is re-delivered and ignored: the stores end where they were. (Taken once
    // every projection has caught up: the other stores take the skipped case.)
    let caught_up = || async {
        let s: Value =
            app.http.get(admin_url("/projections")).bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
        s["projections"].as_array()?.iter().all(|p| p["lag_events"] == 0).then_some(())
    };
    eventually("every projection to catch up", caught_up).await;
    let before = app.store_digest().await;
    // Republish is idempotent: queued positions are not queued twice.
    let r =
        app.http.post(admin_url("/republish")).bearer_auth(&admin).json(&json!({ "from": 0 })).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r =
        app.http.post(admin_url("/republish")).bearer_auth(&admin).json(&json!({ "from": 1 })).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    eventually("the outbox to drain", || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM eventstore.outbox").fetch_one(&app.pool).await.unwrap();
        (n == 0).then_some(())
    })
    .await;
    // (Not wait_for_all_stores: the skipped case never reaches PostgreSQL, by design.)
    eventually("every projection to consume the republished log", caught_up).await;
    assert_eq!(app.store_digest().await, before, "republished events change nothing");

    // Replaying a range through a live projection is as harmless, by position or time.
    for from in ["1", "2026-01-01T00:00:00Z"] {
        let r = app
            .http
            .post(admin_url("/projections/postgres/replay"))
            .bearer_auth(&admin)
            .json(&json!({ "from": from, "tenant_id": app.tenant_id }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.json::<Value>().await.unwrap()["events_applied"].as_i64() > Some(0));
    }
    assert_eq!(app.store_digest().await, before, "a replay changes nothing");
    let r = app
        .http
        .post(admin_url("/projections/postgres/replay"))
        .bearer_auth(&admin)
        .json(&json!({ "from": "yesterday" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let r = app.http.post(admin_url("/projections/nope/rebuild")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // A rebuild over HTTP, of a tenant with poison in its history: parked and skipped
    // streams stay out of the copy as they stay out of the live one, and it switches in.
    let r = app
        .http
        .post(admin_url("/projections/postgres/rebuild"))
        .bearer_auth(&admin)
        .json(&json!({ "tenant_id": app.tenant_id }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = app
        .http
        .post(admin_url("/projections/postgres/rebuild"))
        .bearer_auth(&admin)
        .json(&json!({ "tenant_id": Uuid::now_v7() }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "no such tenant");
    eventually("the rebuild to switch in", || async {
        let r: Value =
            app.http.get(admin_url("/rebuilds")).bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
        (r["rebuilds"][0]["state"] == "switched").then_some(())
    })
    .await;
    let cases = app.query("/v1/cases", &app.token).await;
    assert_eq!(cases.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_service_has_metrics_health_and_readiness() {
    let app = TestApp::spawn().await;
    app.open_case("Counted").await;
    let r = app.command(Method::POST, "/v1/cases", &app.token, Some(json!({ "title": "" }))).await;
    assert!(r.status().is_client_error());
    app.wait_for_all_stores().await;
    for base in [&app.command_url, &app.query_url, &app.projector_url] {
        let health = app.http.get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(health.status(), StatusCode::OK, "{base}/healthz");
        let ready = app.http.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), StatusCode::OK, "{base}/readyz");
        let ready: Value = ready.json().await.unwrap();
        assert!(ready["dependencies"]["postgres"]["status"] == "up", "{ready}");
    }
    // One recorder per process (the tests run all three services in one).
    let metrics = eventually("lag gauges to be exported", || async {
        let text = app.http.get(format!("{}/metrics", app.projector_url)).send().await.unwrap().text().await.unwrap();
        text.contains("projection_lag_events").then_some(text)
    })
    .await;
    for expected in [
        "http_requests_total{",
        "route=\"/v1/cases\"",
        "http_request_duration_seconds_bucket{",
        "commands_total{outcome=\"accepted\"",
        "commands_total{outcome=\"refused\",reason=\"",
        "events_appended_total",
        "projection_batch_events_bucket{",
        "projection_lag_seconds{",
        "projection_parked_events{",
    ] {
        assert!(metrics.contains(expected), "/metrics lacks {expected}:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_elasticsearch_mapping_migration_swaps_indices_without_losing_a_document_or_a_search() {
    let app = TestApp::spawn().await;
    let ids = workload(&app, 4).await;
    app.wait_for_all_stores().await;
    let admin = app.platform_token();
    let search = |q: &'static str| {
        let (http, url, token) = (app.http.clone(), app.query_url.clone(), app.token.clone());
        async move {
            let r = http.get(format!("{url}/v1/search/cases?q={q}")).bearer_auth(&token).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            r.json::<Value>().await.unwrap()["total"].as_i64().unwrap()
        }
    };
    let before = app.store_digest().await;
    assert_eq!(search("printer").await, 4);

    for round in 2..=3 {
        let r = app
            .http
            .post(format!("{}/v1/admin/elasticsearch/migrate", app.projector_url))
            .bearer_auth(&admin)
            .json(&json!({ "tenant_id": app.tenant_id, "entity": "cases" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let migrated: Value = r.json().await.unwrap();
        let moved = migrated["migrated"].as_array().unwrap();
        assert!(!moved.is_empty(), "{migrated}");
        assert!(moved.iter().all(|m| m["to"].as_str().unwrap().ends_with(&format!("-v{round}"))), "{migrated}");
        // Same documents, same versions, same answers.
        assert_eq!(app.store_digest().await, before, "round {round}");
        assert_eq!(search("printer").await, 4);
    }

    // The projector keeps writing, now into the newest index, through the month's name.
    let r = app
        .command(
            Method::PATCH,
            &format!("/v1/cases/{}", ids[0]),
            &app.token,
            Some(json!({ "title": "Scanner on fire" })),
        )
        .await;
    assert!(r.status().is_success());
    eventually("the renamed case in search", || async { (search("scanner").await == 1).then_some(()) }).await;
    let indices = cases_indices(&app).await;
    assert!(indices.iter().all(|i| i.ends_with("-v3")), "only the newest indices serve: {indices:?}");

    let r = app
        .http
        .post(format!("{}/v1/admin/elasticsearch/migrate", app.projector_url))
        .bearer_auth(&admin)
        .json(&json!({ "entity": "tickets" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

/// The relay vacuums its queue tables as the command API's role. PostgreSQL skips a
/// vacuum by a role that does not own the table, with only a notice: every one of the
/// relay's vacuums was skipped so, and dead outbox rows piled up until autovacuum.
#[tokio::test(flavor = "multi_thread")]
async fn the_relays_vacuums_of_its_queue_tables_are_not_skipped() {
    use sqlx::Connection;
    let app = TestApp::spawn().await;
    let as_command = runtime::db::as_role(&app.settings.database_url, "murima_command");
    let mut command = sqlx::PgConnection::connect(&as_command).await.expect("connect as the command API's role");
    for table in command_api::relay::QUEUE_TABLES {
        let (schema, name) = table.split_once('.').unwrap();
        let vacuums = || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT vacuum_count FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = $2",
            )
            .bind(schema)
            .bind(name)
            .fetch_one(&app.pool)
            .await
            .unwrap()
        };
        let before = vacuums().await;
        sqlx::query(&format!("VACUUM {table}")).execute(&mut command).await.unwrap();
        eventually(&format!("a vacuum of {table} by the command API's role to count"), || async {
            (vacuums().await > before).then_some(())
        })
        .await;
    }
}
