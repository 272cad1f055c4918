//! Case types: forms that validate a case's custom fields; inactive types take no cases.

use murima_tests::TestApp;
use reqwest::{Method, StatusCode};
use runtime::auth::Role;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread")]
async fn cases_are_checked_against_their_types_form() {
    let app = TestApp::spawn().await;
    let form = json!({ "fields": [
        { "name": "customer_id", "type": "text", "required": true, "pattern": "C-[0-9]{4}" },
        { "name": "plan", "type": "select", "options": ["basic", "pro"], "default": "basic" },
        { "name": "amount", "type": "number", "min": 0, "max": 1000 }
    ]});
    let billing = app.create_case_type(app.tenant_id, "Billing", form).await;
    let admin = app.token_for(app.tenant_id, Role::Admin);

    // Names are unique; agents cannot manage types.
    let twin = app.command(Method::POST, "/v1/case-types", &admin, Some(json!({ "name": " billing " }))).await;
    assert_eq!(twin.status(), StatusCode::CONFLICT);
    let agent = app.command(Method::POST, "/v1/case-types", &app.token, Some(json!({ "name": "Other" }))).await;
    assert_eq!(agent.status(), StatusCode::FORBIDDEN);
    let broken = json!({ "name": "Broken", "form_definition": { "fields": [{ "name": "x", "type": "select" }] } });
    let r = app.command(Method::POST, "/v1/case-types", &admin, Some(broken)).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Missing and invalid custom fields are named; defaults are filled.
    let open = |fields: Value, case_type: Value| json!({ "title": "Refund", "case_type_id": case_type, "custom_fields": fields });
    let r =
        app.command(Method::POST, "/v1/cases", &app.token, Some(open(json!({ "amount": 5000 }), json!(billing)))).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let p: Value = r.json().await.unwrap();
    let fields: Vec<&str> = p["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, vec!["custom_fields.customer_id", "custom_fields.amount"]);
    let r =
        app.command(Method::POST, "/v1/cases", &app.token, Some(open(json!({}), json!(uuid::Uuid::now_v7())))).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["errors"][0]["field"], "case_type_id");

    let r = app
        .command(Method::POST, "/v1/cases", &app.token, Some(open(json!({ "customer_id": "C-0042" }), json!(billing))))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let opened: Value = r.json().await.unwrap();
    let case: Value = app
        .query(
            &format!("/v1/cases/{}?position={}", opened["id"].as_str().unwrap(), opened["position"].as_str().unwrap()),
            &app.token,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(case["custom_fields"], json!({ "customer_id": "C-0042", "plan": "basic" }));

    // Updates are checked too.
    let r = app
        .command(
            Method::PATCH,
            &format!("/v1/cases/{}", opened["id"].as_str().unwrap()),
            &app.token,
            Some(json!({ "custom_fields": { "customer_id": "nope" } })),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Validation rules tighten the form: amount becomes required and at most 100.
    let rules = json!({ "validation_rules": { "fields": { "amount": { "required": true, "max": 100 } } } });
    let r = app.command(Method::PATCH, &format!("/v1/case-types/{billing}"), &admin, Some(rules)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .command(
            Method::POST,
            "/v1/cases",
            &app.token,
            Some(open(json!({ "customer_id": "C-0044", "amount": 150 }), json!(billing))),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let bad_rules = json!({ "validation_rules": { "fields": { "colour": { "required": true } } } });
    let r = app.command(Method::PATCH, &format!("/v1/case-types/{billing}"), &admin, Some(bad_rules)).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // A deactivated type takes no new cases.
    let r = app.command(Method::POST, &format!("/v1/case-types/{billing}/deactivate"), &admin, Some(json!({}))).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .command(Method::POST, "/v1/cases", &app.token, Some(open(json!({ "customer_id": "C-0043" }), json!(billing))))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let (active,): (bool,) = app.row_at(&app.tenant_table("case_types"), "is_active", billing, 3).await;
    assert!(!active);
}
