//! Scale-out: two command APIs and two projectors against the same servers share the
//! work, and losing one of each (SIGKILL, mid-load) loses nothing and applies nothing
//! twice: the surviving projector takes over the dead one's projections, the surviving
//! command API's relay takes over the lead.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use murima_tests::{eventually, ServiceProcess, TestApp};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

/// Writers, and cases each opens (one in three is then updated).
const WRITERS: usize = 6;
const CASES_EACH: usize = 45;

/// A service's gauge values by their label (or "" without one), from its `/metrics`.
async fn gauges(http: &Client, url: &str, name: &str) -> Vec<(String, f64)> {
    let Ok(response) = http.get(format!("{url}/metrics")).send().await else { return Vec::new() };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with(['{', ' ']))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let label = series.split_once('"').and_then(|(_, rest)| rest.split_once('"')).map(|(l, _)| l);
            Some((label.unwrap_or("").to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The projections whose lease the projector at `url` holds.
async fn leases(http: &Client, url: &str) -> Vec<String> {
    let held = gauges(http, url, "projection_lease_held").await;
    held.into_iter().filter(|(_, v)| *v == 1.0).map(|(p, _)| p).collect()
}

async fn leads_the_relay(http: &Client, url: &str) -> bool {
    gauges(http, url, "relay_leading").await.iter().any(|(_, v)| *v == 1.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn two_of_each_service_share_the_work_and_survive_losing_one_of_each() {
    let mut app = TestApp::spawn_processes().await;
    let second_projector = ServiceProcess::start("projector", &app.settings).await;
    let second_command = ServiceProcess::start("command-api", &app.settings).await;
    let first_projector = app.projector_url.clone();

    // The projections are shared out: each projector runs some, none runs twice.
    let (a, b) = eventually("the two projectors to share the projections", || async {
        let a = leases(&app.http, &first_projector).await;
        let b = leases(&app.http, &second_projector.url).await;
        (!a.is_empty() && !b.is_empty() && a.len() + b.len() == 7).then_some((a, b))
    })
    .await;
    assert!(a.iter().all(|p| !b.contains(p)), "a projection runs on both projectors: {a:?} and {b:?}");

    // Load through both command APIs, while one projector and then the relay's leader die.
    let urls = Arc::new([app.command_url.clone(), second_command.url.clone()]);
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let (http, urls, acknowledged) = (app.http.clone(), urls.clone(), acknowledged.clone());
        let (token, case_type) = (app.token.clone(), app.case_type_id);
        writers.spawn(async move {
            let mut opened: Vec<Uuid> = Vec::new();
            for i in 0..CASES_EACH {
                let url = &urls[(writer + i) % 2];
                let body = json!({ "title": format!("Writer {writer} case {i}"), "priority": "high",
                                   "case_type_id": case_type, "tags": ["load"] });
                let Ok(response) = http.post(format!("{url}/v1/cases")).bearer_auth(&token).json(&body).send().await
                else {
                    continue; // that command API is gone: not acknowledged
                };
                let status = response.status();
                assert!(
                    !status.is_client_error(),
                    "opening a case: {status} {}",
                    response.text().await.unwrap_or_default()
                );
                if status != StatusCode::CREATED {
                    continue;
                }
                let Ok(answer) = response.json::<Value>().await else { continue };
                let id: Uuid = answer["id"].as_str().and_then(|s| s.parse().ok()).expect("a case id");
                opened.push(id);
                acknowledged.fetch_add(1, Ordering::Relaxed);
                if i % 3 == 0 {
                    let patch = json!({ "priority": "urgent" });
                    let _ = http.patch(format!("{url}/v1/cases/{id}")).bearer_auth(&token).json(&patch).send().await;
                }
            }
            opened
        });
    }
    let total = WRITERS * CASES_EACH;
    let reached = |n: usize| {
        let acknowledged = acknowledged.clone();
        async move {
            eventually(&format!("{n} acknowledged commands"), || async {
                (acknowledged.load(Ordering::Relaxed) >= n).then_some(())
            })
            .await
        }
    };
    reached(total / 4).await;
    app.kill_projector().await;
    reached(total / 2).await;
    let leader_is_first = eventually("one command API to lead the relay", || async {
        if leads_the_relay(&app.http, &app.command_url).await {
            Some(true)
        } else if leads_the_relay(&app.http, &second_command.url).await {
            Some(false)
        } else {
            None
        }
    })
    .await;
    let survivor = if leader_is_first {
        app.kill_command_api().await;
        second_command.url.clone()
    } else {
        second_command.kill().await;
        app.command_url.clone()
    };
    let mut opened = Vec::new();
    while let Some(done) = writers.join_next().await {
        opened.extend(done.expect("a writer"));
    }
    assert!(opened.len() >= total / 2, "only {} of {total} commands were acknowledged", opened.len());

    // The survivors took over: every projection runs on the second projector, the other
    // command API leads the relay.
    eventually("the surviving projector to run every projection", || async {
        (leases(&app.http, &second_projector.url).await.len() == 7).then_some(())
    })
    .await;
    eventually("the surviving command API to lead the relay", || async {
        leads_the_relay(&app.http, &survivor).await.then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Every acknowledged case reached every store, and no event was applied twice: one
    // audit entry per journal event, and per store the versions add up to the journal's.
    let counts = app.wait_for_all_stores().await;
    let all_events: i64 = sqlx::query_scalar("SELECT count(*) FROM eventstore.events WHERE tenant_id = $1")
        .bind(app.tenant_id)
        .fetch_one(&app.pool)
        .await
        .expect("count the journal");
    assert_eq!(counts.audit_entries as i64, all_events);
    let schema = runtime::tenancy::Tenancy(app.tenant_id).pg_schema();
    let projected: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {schema}.cases WHERE id = ANY($1)"))
        .bind(&opened)
        .fetch_one(&app.pool)
        .await
        .expect("count projected cases");
    assert_eq!(projected as usize, opened.len(), "an acknowledged case is missing from PostgreSQL");
    app.assert_counters_match_postgres().await;
}

/// Each command API decides on its cached copy of a stream and lets the append's version
/// check catch a stale one: a command refused or allowed on the journal's state is
/// refused or allowed the same, whichever API another change went through.
#[tokio::test(flavor = "multi_thread")]
async fn a_command_api_with_a_stale_copy_of_a_case_decides_on_the_journal() {
    let app = TestApp::spawn().await;
    let other = ServiceProcess::start("command-api", &app.settings).await;
    let id = app.open_case("Kept in two caches").await["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/cases/{id}");
    let via = |url: &str, method: reqwest::Method, path: &str, body: Value| {
        app.http.request(method, format!("{url}{path}")).bearer_auth(&app.token).json(&body).send()
    };
    // This API now holds the case at version 2.
    let r = app.command(reqwest::Method::PATCH, &path, &app.token, Some(json!({ "priority": "urgent" }))).await;
    assert_eq!(r.status(), StatusCode::OK);

    // The other API closes it: this one's copy is stale, and a change must be refused.
    let closed = via(&other.url, reqwest::Method::POST, &format!("{path}/status"), json!({ "status": "closed" }));
    assert_eq!(closed.await.unwrap().status(), StatusCode::OK);
    let r = app.command(reqwest::Method::PATCH, &path, &app.token, Some(json!({ "priority": "low" }))).await;
    assert_eq!(r.status(), StatusCode::CONFLICT, "a change to a case closed through another API");
    let problem: Value = r.json().await.unwrap();
    assert!(problem["detail"].as_str().unwrap().contains("closed"), "{problem}");

    // Reopened there, the change is allowed here, at the journal's next version.
    let reopened = via(&other.url, reqwest::Method::POST, &format!("{path}/status"), json!({ "status": "open" }));
    assert_eq!(reopened.await.unwrap().status(), StatusCode::OK);
    let r = app.command(reqwest::Method::PATCH, &path, &app.token, Some(json!({ "priority": "low" }))).await;
    assert_eq!(r.status(), StatusCode::OK);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["version"], 5, "{answer}");
    // And the next one, decided on the copy this API just kept, follows on.
    let r = app.command(reqwest::Method::PATCH, &path, &app.token, Some(json!({ "priority": "high" }))).await;
    assert_eq!(r.json::<Value>().await.unwrap()["version"], 6);
    let versions: Vec<i64> = sqlx::query_scalar(
        "SELECT stream_version FROM eventstore.events WHERE tenant_id = $1 AND stream_id = $2 ORDER BY 1",
    )
    .bind(app.tenant_id)
    .bind(id.parse::<Uuid>().unwrap())
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(versions, (1..=6).collect::<Vec<i64>>());
}

/// Projectors share the leases of their own projection instance (group prefix and
/// topic) only: another instance on the same database does not shrink their share.
#[tokio::test(flavor = "multi_thread")]
async fn another_projection_instance_on_the_same_database_leaves_this_ones_share_alone() {
    // Processes: in-process projectors of parallel tests would share one metrics recorder.
    let app = TestApp::spawn_processes().await;
    let mut other = app.settings.clone();
    other.kafka_group_prefix = format!("{}.other", app.settings.kafka_group_prefix);
    let other = ServiceProcess::start("projector", &other).await;
    eventually("the other instance to run every projection", || async {
        (leases(&app.http, &other.url).await.len() == 7).then_some(())
    })
    .await;
    // Counted a second member, this instance would hand back three of its seven.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(leases(&app.http, &app.projector_url).await.len(), 7);
    assert_eq!(leases(&app.http, &other.url).await.len(), 7);
}
