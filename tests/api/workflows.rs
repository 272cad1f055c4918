//! Workflows: cases start at the initial stage with SLA due times and move only along
//! transitions their role allows, once required fields are filled.

use murima_tests::TestApp;
use reqwest::{Method, StatusCode};
use runtime::auth::Role;
use serde_json::{json, Value};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread")]
async fn cases_move_along_their_workflow() {
    let app = TestApp::spawn().await;
    let admin = app.token_for(app.tenant_id, Role::Admin);
    let supervisor = app.token_for(app.tenant_id, Role::Supervisor);
    let (new, triage, done) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let definition = json!({
        "stages": [{ "id": new, "name": "New" }, { "id": triage, "name": "Triage" }, { "id": done, "name": "Done" }],
        "initial_stage": new,
        "transitions": [
            { "from": new, "to": triage },
            { "from": triage, "to": done, "allowed_roles": ["supervisor", "admin"], "required_fields": ["root_cause"] }
        ],
        "sla": [{ "priority": "high", "first_response_minutes": 60, "resolution_minutes": 480 }]
    });
    let r = app
        .command(
            Method::POST,
            "/v1/workflows",
            &app.token,
            Some(json!({ "name": "Support", "definition": definition })),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let broken = json!({ "name": "Broken", "definition": { "stages": [], "initial_stage": new } });
    assert_eq!(
        app.command(Method::POST, "/v1/workflows", &admin, Some(broken)).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let r = app
        .command(Method::POST, "/v1/workflows", &admin, Some(json!({ "name": "Support", "definition": definition })))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let workflow = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();

    let ghost = json!({ "name": "Ghost", "workflow_id": Uuid::now_v7() });
    let r = app.command(Method::POST, "/v1/case-types", &admin, Some(ghost)).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let typed = json!({ "name": "Incident", "workflow_id": workflow,
                        "form_definition": { "fields": [{ "name": "root_cause", "type": "text" }] } });
    let r = app.command(Method::POST, "/v1/case-types", &admin, Some(typed)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let case_type = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();

    let r = app
        .command(
            Method::POST,
            "/v1/cases",
            &app.token,
            Some(json!({ "title": "Outage", "priority": "high", "case_type_id": case_type })),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let opened: Value = r.json().await.unwrap();
    assert_eq!(opened["version"], 3, "opened, workflow started, SLA set");
    let case = opened["id"].as_str().unwrap().to_owned();
    let read: Value = app
        .query(&format!("/v1/cases/{case}?position={}", opened["position"].as_str().unwrap()), &app.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read["current_stage_id"], json!(new));
    assert!(read["sla"]["resolution_due"].is_string(), "{read}");

    let stage = |to: Uuid| json!({ "stage_id": to });
    let path = format!("/v1/cases/{case}/stage");
    assert_eq!(app.command(Method::POST, &path, &app.token, Some(stage(done))).await.status(), StatusCode::CONFLICT);
    assert_eq!(app.command(Method::POST, &path, &app.token, Some(stage(triage))).await.status(), StatusCode::OK);
    assert_eq!(app.command(Method::POST, &path, &app.token, Some(stage(done))).await.status(), StatusCode::FORBIDDEN);
    let r = app.command(Method::POST, &path, &supervisor, Some(stage(done))).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["errors"][0]["field"], "custom_fields.root_cause");
    let r = app
        .command(
            Method::PATCH,
            &format!("/v1/cases/{case}"),
            &app.token,
            Some(json!({ "custom_fields": { "root_cause": "fibre cut" } })),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app.command(Method::POST, &path, &supervisor, Some(stage(done))).await;
    assert_eq!(r.status(), StatusCode::OK);
    let moved: Value = r.json().await.unwrap();
    let read: Value = app
        .query(&format!("/v1/cases/{case}?position={}", moved["position"].as_str().unwrap()), &app.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read["current_stage_id"], json!(done));

    // Every store followed the extra case events (versions without gaps).
    app.wait_for_all_stores().await;

    // A deactivated workflow takes no new cases.
    let r = app.command(Method::POST, &format!("/v1/workflows/{workflow}/deactivate"), &admin, Some(json!({}))).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .command(Method::POST, "/v1/cases", &app.token, Some(json!({ "title": "Another", "case_type_id": case_type })))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let (active,): (bool,) = app.row_at(&app.tenant_table("workflows"), "active", workflow.parse().unwrap(), 2).await;
    assert!(!active);
}
