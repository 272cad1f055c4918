//! Crash safety (issue 13). The real binaries run as processes. Under concurrent load,
//! the projector is SIGKILLed and restarted several times, and the command API (with its
//! relay) twice. Afterwards every projection must catch up with no operator: no restart by
//! hand and no replay. Every acknowledged case must be in every store, `verify` must find
//! nothing missing, and every store must equal a fresh replay of the journal.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use murima_tests::TestApp;
use reqwest::Method;
use serde_json::{json, Value};

const CLIENTS: usize = 8;
/// Kill-and-restart rounds of the projector (the command API goes down in every third):
/// six in CI, more by hand with MURIMA_CRASH_ROUNDS=10.
fn rounds() -> u64 {
    std::env::var("MURIMA_CRASH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(6)
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_kills_of_the_projector_and_the_command_api_lose_nothing_and_need_no_operator() {
    let mut app = TestApp::spawn_processes().await;
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let (http, url, token, case_type) =
            (app.http.clone(), app.command_url.clone(), app.token.clone(), app.case_type_id);
        let (acknowledged, stop) = (acknowledged.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let body = json!({ "title": format!("Client {client} case {n}"), "priority": "high",
                                   "case_type_id": case_type });
                // A command API that is down refuses the connection: nothing was acknowledged.
                let answer = http.post(format!("{url}/v1/cases")).bearer_auth(&token).json(&body).send().await;
                if let Some(answer) = answer.ok().filter(|a| a.status().as_u16() == 201) {
                    let id = answer.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
                    if n % 3 == 0 {
                        let status = json!({ "status": "in_progress" });
                        let _ = http
                            .post(format!("{url}/v1/cases/{id}/status"))
                            .bearer_auth(&token)
                            .json(&status)
                            .send()
                            .await;
                    }
                    acknowledged.lock().unwrap().push(id);
                }
                tokio::time::sleep(Duration::from_millis(120)).await;
            }
        }));
    }
    for round in 0..rounds() {
        tokio::time::sleep(Duration::from_millis(2_000 + (round * 700) % 2_000)).await;
        app.kill_projector().await;
        if round % 3 == 1 {
            app.kill_command_api().await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            app.start_command_api().await;
        }
        app.start_projector().await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() > 100, "the load was too light to mean anything: {}", acknowledged.len());

    // Every projection catches up by itself.
    let counts = app.wait_for_all_stores().await;
    let schema = runtime::tenancy::Tenancy(app.tenant_id).pg_schema();
    let ids: Vec<uuid::Uuid> = acknowledged.iter().map(|id| id.parse().unwrap()).collect();
    let in_postgres: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {schema}.cases WHERE id = ANY($1)"))
        .bind(&ids)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(in_postgres, ids.len() as i64, "every acknowledged case is in PostgreSQL");
    app.assert_counters_match_postgres().await;

    // verify compares every projection with the journal: nothing missing, stale or extra.
    let verify = json!({ "tenant_id": app.tenant_id, "grace_seconds": 0 });
    let answer = app.admin(Method::POST, "/v1/admin/verify", Some(verify)).await;
    assert_eq!(answer.status(), reqwest::StatusCode::OK);
    let answer: Value = answer.json().await.unwrap();
    for report in answer["reports"].as_array().unwrap() {
        for finding in ["missing", "stale", "extra"] {
            assert_eq!(report[finding], 0, "{}: {report:#}", report["projection"]);
        }
    }
    let restarts: Value = app.admin(Method::GET, "/v1/admin/projections", None).await.json().await.unwrap();
    eprintln!(
        "crash test: {} cases acknowledged, {counts:?}, consumer restarts since the last start: {}",
        ids.len(),
        restarts["projections"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| format!("{}={}", p["projection"], p["restarts"]))
            .collect::<Vec<_>>()
            .join(" ")
    );

    let interrupted = app.store_digest().await;
    app.assert_same_as_fresh_replay(&interrupted).await;
}

/// One worker per projection runs at a time (a lease); a standby projector takes over when
/// the active one is SIGKILLed, with no operator.
#[tokio::test(flavor = "multi_thread")]
async fn a_standby_projector_takes_over_when_the_active_one_is_killed() {
    let mut app = TestApp::spawn_processes().await;
    let standby = murima_tests::ServiceProcess::start("projector", &app.settings).await;
    app.open_case("While both run").await;
    app.wait_for_all_stores().await;
    app.kill_projector().await;
    app.open_case("After the active one died").await;
    let counts = app.wait_for_all_stores().await;
    assert_eq!(counts.postgres_versions, 2);
    let status = app
        .http
        .get(format!("{}/v1/admin/projections", standby.url))
        .bearer_auth(app.platform_token())
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), reqwest::StatusCode::OK);
    standby.kill().await;
}
