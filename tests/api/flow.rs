//! One case through the whole system: command API -> journal -> Kafka -> four read models -> query API.

use murima_tests::{eventually, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread")]
async fn a_case_reaches_every_read_model_and_the_query_api() {
    let app = TestApp::spawn().await;
    let opened = app.open_case("Printer on fire").await;
    let id = opened["id"].as_str().unwrap().to_owned();
    assert_eq!(opened["version"], 1);
    let position = opened["position"].as_str().unwrap().to_owned();

    // Read-your-writes: with the token, the very next read sees the case.
    let response = app.query(&format!("/v1/cases/{id}?position={position}"), &app.token).await;
    assert_eq!(response.status(), StatusCode::OK);
    // The screen's ETag leads with the case version, then a digest of what it shows.
    assert!(response.headers()["etag"].to_str().unwrap().starts_with("\"1-"));
    let case: Value = response.json().await.unwrap();
    assert_eq!(case["title"], "Printer on fire");
    assert_eq!(case["case_number"], "CASE-000001");
    assert_eq!(case["status"], "open");

    // Assign, change status, update: each answers the new version as ETag.
    let agent = app.create_user("sam", "agent").await;
    let ghost = json!({ "assigned_to": uuid::Uuid::now_v7() });
    let r = app.command(Method::POST, &format!("/v1/cases/{id}/assignment"), &app.token, Some(ghost)).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "assignees must be users of the tenant");
    let r = app
        .command(Method::POST, &format!("/v1/cases/{id}/assignment"), &app.token, Some(json!({ "assigned_to": agent })))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["etag"], "\"2\"");
    let r = app
        .command(Method::POST, &format!("/v1/cases/{id}/status"), &app.token, Some(json!({ "status": "in_progress" })))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .command(
            Method::PATCH,
            &format!("/v1/cases/{id}"),
            &app.token,
            Some(json!({ "title": "Printer on fire, 3rd floor", "due_date": null })),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .command(
            Method::POST,
            &format!("/v1/cases/{id}/tags"),
            &app.token,
            Some(json!({ "add": ["VIP"], "remove": ["phone"] })),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let last: Value = r.json().await.unwrap();
    assert_eq!(last["version"], 5);
    let position = last["position"].as_str().unwrap().to_owned();

    // PostgreSQL read model.
    let case: Value = app.query(&format!("/v1/cases/{id}?position={position}"), &app.token).await.json().await.unwrap();
    assert_eq!(case["title"], "Printer on fire, 3rd floor");
    assert_eq!(case["assigned_to"], json!(agent));
    assert_eq!(case["status"], "in_progress");
    assert_eq!(case["version"], 5);
    assert_eq!(case["tags"], json!(["vip"]));

    // List with filters and a cursor.
    let list: Value = app.query("/v1/cases?status=in_progress&priority=high", &app.token).await.json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let none: Value = app.query("/v1/cases?status=closed", &app.token).await.json().await.unwrap();
    assert_eq!(none["items"].as_array().unwrap().len(), 0);

    // MongoDB audit trail: newest first, field-level changes with old and new values.
    // (Audit trails need audit:read; only admins see the user agent and IP address.)
    let admin = app.token_for(app.tenant_id, runtime::auth::Role::Admin);
    let audit: Value =
        app.query(&format!("/v1/cases/{id}/audit?position={position}"), &admin).await.json().await.unwrap();
    let items = audit["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    assert_eq!(items[0]["changes"][0], json!({ "field": "tags", "old_value": ["phone"], "new_value": ["vip"] }));
    assert_eq!(items[1]["action"], "update");
    assert_eq!(items[1]["changes"][0]["field"], "title");
    assert_eq!(items[1]["changes"][0]["old_value"], "Printer on fire");
    assert_eq!(items[2]["changes"][0], json!({ "field": "status", "old_value": "open", "new_value": "in_progress" }));
    assert_eq!(items[4]["action"], "create");
    assert_eq!(items[4]["user_agent"], "murima-tests");

    // Elasticsearch: the stemmed analyzer finds "printers" for "Printer".
    let found: Value =
        app.query(&format!("/v1/search/cases?q=printers&position={position}"), &app.token).await.json().await.unwrap();
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(found["items"][0]["id"], id.as_str());
    assert_eq!(found["items"][0]["status"], "in_progress");

    // Redis counters.
    let counters: Value =
        app.query(&format!("/v1/counters?position={position}"), &app.token).await.json().await.unwrap();
    assert_eq!(counters["cases_by_status"], json!({ "in_progress": 1 }));
    assert_eq!(counters["open_cases_by_assignee"], json!({ agent.to_string(): 1 }));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_case_list_pages_with_a_stable_cursor() {
    let app = TestApp::spawn().await;
    for i in 0..5 {
        app.open_case(&format!("Case {i}")).await;
    }
    // A token covers its own stream only; the five cases travel on different partitions.
    eventually("all five cases in the list", || async {
        let all: Value = app.query("/v1/cases?limit=100", &app.token).await.json().await.ok()?;
        (all["items"].as_array()?.len() == 5).then_some(())
    })
    .await;
    let count = |v: &Value| v["items"].as_array().map(Vec::len).unwrap_or(0);
    let first = app.query("/v1/cases?limit=2", &app.token).await;
    let link = first.headers().get("link").map(|l| l.to_str().unwrap().to_owned());
    let first: Value = first.json().await.unwrap();
    assert_eq!(count(&first), 2);
    assert!(link.unwrap().contains("rel=\"next\""));
    let mut seen: Vec<String> =
        first["items"].as_array().unwrap().iter().map(|c| c["case_number"].as_str().unwrap().to_owned()).collect();
    let mut cursor = first["next_cursor"].as_str().map(str::to_owned);
    while let Some(c) = cursor {
        let page: Value = app.query(&format!("/v1/cases?limit=2&cursor={c}"), &app.token).await.json().await.unwrap();
        seen.extend(page["items"].as_array().unwrap().iter().map(|c| c["case_number"].as_str().unwrap().to_owned()));
        cursor = page["next_cursor"].as_str().map(str::to_owned);
    }
    assert_eq!(seen, vec!["CASE-000005", "CASE-000004", "CASE-000003", "CASE-000002", "CASE-000001"]);
}
