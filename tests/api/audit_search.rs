//! Audit search (issue 20): the tenant's audit log in Elasticsearch, by actor, entity,
//! action, changed field and time, with the audit permission and field visibility rules.

use murima_tests::TestApp;
use reqwest::{Method, StatusCode};
use runtime::auth::Role;
use serde_json::{json, Value};

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn search(app: &TestApp, token: &str, query: &str) -> (StatusCode, Value) {
    let answer = app.query(&format!("/v1/search/audit?{query}"), token).await;
    let status = answer.status();
    (status, answer.json().await.unwrap_or(Value::Null))
}

fn fields_of(found: &Value) -> Vec<String> {
    found["items"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["changes"].as_array().unwrap().iter().map(|c| c["field"].as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_audit_search_finds_a_change_by_field_actor_and_time() {
    let app = TestApp::spawn().await;
    let supervisor = app.token_for(app.tenant_id, Role::Supervisor);
    let opened = app.open_case("Broken meter").await;
    let case = opened["id"].as_str().unwrap().to_owned();
    let answer = app
        .command(Method::POST, &format!("/v1/cases/{case}/status"), &app.token, Some(json!({ "status": "pending" })))
        .await;
    assert_eq!(answer.status(), StatusCode::OK);
    let position = answer.json::<Value>().await.unwrap()["position"].as_str().unwrap().to_owned();

    let (status, found) =
        search(&app, &supervisor, &format!("field=status&entity_id={case}&position={position}")).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    // The opening set the status too (from nothing); the change to pending is newest.
    let items = found["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{found}");
    assert_eq!(items[0]["action"], "status_change");
    let change = items[0]["changes"].as_array().unwrap().iter().find(|c| c["field"] == "status").unwrap();
    assert_eq!((change["old_value"].as_str(), change["new_value"].as_str()), (Some("open"), Some("pending")));
    assert_eq!(items[0]["entity_type"], "case");
    assert!(items[0].get("ip_address").is_none(), "only admins see addresses: {found}");

    // By actor and entity: both of the agent's entries, newest first.
    let (_, mine) =
        search(&app, &supervisor, &format!("actor={}&entity_type=case&entity_id={case}", app.user_id)).await;
    let versions: Vec<i64> =
        mine["items"].as_array().unwrap().iter().map(|e| e["entity_version"].as_i64().unwrap()).collect();
    assert_eq!(versions, vec![2, 1], "{mine}");
    let (_, by_other) = search(&app, &supervisor, &format!("actor={}&entity_id={case}", uuid::Uuid::now_v7())).await;
    assert_eq!(by_other["total"], 0);
    let (_, by_action) = search(&app, &supervisor, &format!("action=create&entity_id={case}")).await;
    assert_eq!(by_action["items"][0]["entity_version"], 1, "{by_action}");

    // By time: nothing after now, both within the last hour.
    let now = chrono::Utc::now();
    let later = urlencode(&(now + chrono::Duration::minutes(1)).to_rfc3339());
    let (_, future) = search(&app, &supervisor, &format!("from={later}&entity_id={case}")).await;
    assert_eq!(future["total"], 0, "{future}");
    let earlier = urlencode(&(now - chrono::Duration::hours(1)).to_rfc3339());
    let (_, recent) = search(&app, &supervisor, &format!("from={earlier}&to={later}&entity_id={case}")).await;
    assert_eq!(recent["total"], 2, "{recent}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_audit_search_needs_audit_read_and_stays_in_the_tenant() {
    let app = TestApp::spawn().await;
    let case = app.open_case("Private matter").await["id"].as_str().unwrap().to_owned();
    let (status, _) = search(&app, &app.token, &format!("entity_id={case}")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "an agent holds no audit:read");
    let (status, _) = search(&app, &app.platform_token(), "").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (other, _) = app.provision_tenant().await;
    let stranger = app.token_for(other, Role::Supervisor);
    let (status, found) = search(&app, &stranger, &format!("entity_id={case}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(found["total"], 0, "another tenant's entries: {found}");

    let supervisor = app.token_for(app.tenant_id, Role::Supervisor);
    for bad in [
        "entity_type=bogus",
        "action=DROP%20TABLE",
        "field=status%00",
        &format!("field={}", "a".repeat(101)),
        "from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z",
        "from=not-a-date",
        "to=+275760-09-13T00:00:00Z",
        "from=%2B10000-01-01T00:00:00Z",
        "to=-0001-12-31T00:00:00Z",
        "offset=10001",
        "limit=0",
        "actor=not-a-user",
        "q=anything",
    ] {
        let (status, problem) = search(&app, &supervisor, bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {problem}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_audit_search_shows_no_field_the_reader_may_not_see() {
    let app = TestApp::spawn().await;
    let admin = app.token_for(app.tenant_id, Role::Admin);
    app.create_user("field.admin", "admin").await;
    let admin_login = app.login_token("field.admin").await;
    let supervisor = app.token_for(app.tenant_id, Role::Supervisor);
    let definition = json!({ "entity_type": "case", "field_name": "risk_score", "display_name": "Fraud risk",
                             "field_type": "text", "visibility_rules": { "roles": ["admin"] } });
    let defined = app.command(Method::POST, "/v1/custom-fields", &admin, Some(definition)).await;
    assert_eq!(defined.status(), StatusCode::CREATED);
    // The rules are read from the definitions' store: wait until it holds this one.
    let position = defined.json::<Value>().await.unwrap()["position"].as_str().unwrap().to_owned();
    let rules = app.query(&format!("/v1/custom-fields?position={position}"), &admin).await;
    assert_eq!(rules.status(), StatusCode::OK);
    let open = json!({ "title": "Refund", "case_type_id": app.case_type_id,
                       "custom_fields": { "risk_score": "high-risk" } });
    let answer = app.command(Method::POST, "/v1/cases", &admin_login, Some(open)).await;
    assert_eq!(answer.status(), StatusCode::CREATED);
    let opened: Value = answer.json().await.unwrap();
    let (case, position) = (opened["id"].as_str().unwrap(), opened["position"].as_str().unwrap());

    let (status, found) =
        search(&app, &supervisor, &format!("field=custom_fields&entity_id={case}&position={position}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(fields_of(&found).contains(&"custom_fields".to_owned()), "{found}");
    let text = found.to_string();
    assert!(!text.contains("high-risk"), "a supervisor's search showed the hidden field: {text}");
    let (status, problem) = search(&app, &supervisor, "field=custom_fields.risk_score").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "asking whether a hidden field changed: {problem}");
    assert!(problem["detail"].as_str().unwrap().contains("risk_score"), "{problem}");

    let (_, as_admin) = search(&app, &admin, &format!("field=custom_fields.risk_score&entity_id={case}")).await;
    let change =
        &as_admin["items"][0]["changes"].as_array().unwrap().iter().find(|c| c["field"] == "custom_fields").unwrap()
            ["new_value"];
    assert_eq!(change["risk_score"], "high-risk", "{as_admin}");
}
