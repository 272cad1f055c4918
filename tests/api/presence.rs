//! Presence (issue 20): heartbeats keep a case's viewer listed, and each viewer expires
//! on their own after the viewer window.

use std::time::Duration;

use murima_tests::{eventually, test_settings, TestApp};
use reqwest::{Response, StatusCode};
use runtime::auth::Role;
use serde_json::{json, Value};

async fn heartbeat(app: &TestApp, token: &str, body: Value) -> Response {
    app.http
        .post(format!("{}/v1/presence/heartbeat", app.query_url))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn viewers(app: &TestApp, case: &str) -> Vec<String> {
    let answer: Value = app.query(&format!("/v1/cases/{case}/viewers"), &app.token).await.json().await.unwrap();
    answer["viewers"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
}

/// Opens a case and waits until the query API has it.
async fn visible_case(app: &TestApp) -> String {
    let case = app.open_case("Who is looking").await["id"].as_str().unwrap().to_owned();
    eventually("the case in the query API", || async {
        (app.query(&format!("/v1/cases/{case}"), &app.token).await.status() == StatusCode::OK).then_some(())
    })
    .await;
    case
}

#[tokio::test(flavor = "multi_thread")]
async fn a_viewer_who_left_drops_off_while_another_keeps_viewing() {
    let mut settings = test_settings();
    settings.viewer_window = Duration::from_secs(2);
    let app = TestApp::spawn_with(settings).await;
    let case = visible_case(&app).await;
    let kim = app.create_user("kim", "agent").await.to_string();
    let kim_token = app.login_token("kim").await;
    assert_eq!(heartbeat(&app, &kim_token, json!({ "case_id": case })).await.status(), StatusCode::OK);
    let both = viewers(&app, &case).await;
    assert!(both.contains(&app.user_id.to_string()) && both.contains(&kim), "both view the case: {both:?}");

    // The test's agent closes the case; kim's screen keeps beating for three seconds.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(heartbeat(&app, &kim_token, json!({ "case_id": case })).await.status(), StatusCode::OK);
    }
    assert_eq!(viewers(&app, &case).await, vec![kim.clone()], "only the viewer still beating is listed");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert!(viewers(&app, &case).await.is_empty(), "nobody has looked within the window");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_heartbeat_names_only_a_case_of_the_callers_own_tenant() {
    let app = TestApp::spawn().await;
    let case = visible_case(&app).await;
    let (_, _, stranger) = app.provision_tenant_with_agent().await;

    let refused = heartbeat(&app, &stranger, json!({ "case_id": case })).await;
    assert_eq!(refused.status(), StatusCode::NOT_FOUND, "another tenant's case is not found");
    assert!(viewers(&app, &case).await.iter().all(|v| v == &app.user_id.to_string()));
    let unknown = heartbeat(&app, &app.token, json!({ "case_id": uuid::Uuid::now_v7() })).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    for body in [json!({ "case_id": "not-a-case" }), json!({ "case_id": case, "user_id": case }), json!([1])] {
        let answer = heartbeat(&app, &app.token, body.clone()).await;
        assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
    let platform = heartbeat(&app, &app.platform_token(), json!({})).await;
    assert_eq!(platform.status(), StatusCode::FORBIDDEN);
    let anonymous = app.http.post(format!("{}/v1/presence/heartbeat", app.query_url)).json(&json!({})).send().await;
    assert_eq!(anonymous.unwrap().status(), StatusCode::UNAUTHORIZED);
    let supervisor = app.keys.issue(app.user_id, app.tenant_id, Role::Supervisor, chrono::Duration::hours(1));
    let without_case = heartbeat(&app, &supervisor, json!({})).await;
    assert_eq!(without_case.status(), StatusCode::OK, "a heartbeat without a case only marks the caller active");
}
