//! Tasks on cases: references checked, completion recorded.

use murima_tests::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread")]
async fn tasks_are_created_on_cases_assigned_and_completed() {
    let app = TestApp::spawn().await;
    let case = app.open_case("Broken router").await["id"].as_str().unwrap().to_owned();
    let ghost_user = json!({ "title": "Visit", "assigned_to": uuid::Uuid::now_v7() });
    let r = app.command(Method::POST, &format!("/v1/cases/{case}/tasks"), &app.token, Some(ghost_user)).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["errors"][0]["field"], "assigned_to");
    let r = app
        .command(
            Method::POST,
            &format!("/v1/cases/{}/tasks", uuid::Uuid::now_v7()),
            &app.token,
            Some(json!({ "title": "x" })),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let r = app
        .command(
            Method::POST,
            &format!("/v1/cases/{case}/tasks"),
            &app.token,
            Some(json!({ "title": "Call back", "priority": "high" })),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let task = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let r = app.command(Method::POST, &format!("/v1/tasks/{task}/complete"), &app.token, Some(json!({}))).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .command(Method::POST, &format!("/v1/tasks/{task}/status"), &app.token, Some(json!({ "status": "cancelled" })))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .command(Method::POST, &format!("/v1/tasks/{task}/status"), &app.token, Some(json!({ "status": "pending" })))
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);

    let (status, completed): (String, Option<chrono::DateTime<chrono::Utc>>) =
        app.row_at(&app.tenant_table("tasks"), "status, completed_at", task.parse().unwrap(), 3).await;
    assert_eq!(status, "cancelled");
    assert_eq!(completed, None, "cancelling clears completed_at");
}
