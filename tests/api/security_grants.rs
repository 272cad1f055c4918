//! Scoped grants (issue 14): a permission document holds only tenant-scoped permissions
//! that the granting caller holds itself, and nothing a tenant grants reaches the
//! platform's operations (provisioning, suspending and reactivating tenants).

use murima_tests::TestApp;
use reqwest::{Method, StatusCode};
use runtime::auth::Role;
use serde_json::{json, Value};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_admin_cannot_grant_itself_the_platform_and_take_over_other_tenants() {
    let app = TestApp::spawn().await;
    let (other, _, _) = app.provision_tenant_with_agent().await;
    let admin = app.create_user("tenant.admin", "admin").await;
    let token = app.login_token("tenant.admin").await;

    let grant = json!({ "permissions": { "tenants": ["manage"] } });
    let answer = app.command(Method::PUT, &format!("/v1/users/{admin}/permissions"), &token, Some(grant)).await;
    assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = answer.json().await.unwrap();
    assert!(problem["detail"].as_str().unwrap().contains("tenants:manage is a platform operation"), "{problem}");

    for token in [app.login_token("tenant.admin").await, app.token_for(app.tenant_id, Role::Admin)] {
        let suspend = app
            .command(Method::POST, &format!("/v1/tenants/{other}/suspend"), &token, Some(json!({ "reason": "mine" })))
            .await;
        assert_eq!(suspend.status(), StatusCode::FORBIDDEN);
        let provision = json!({ "name": "Hostile", "slug": format!("h{}", Uuid::now_v7().simple()) });
        let created = app.command(Method::POST, "/v1/tenants", &token, Some(provision)).await;
        assert_eq!(created.status(), StatusCode::FORBIDDEN);
        let reactivate =
            app.command(Method::POST, &format!("/v1/tenants/{other}/reactivate"), &token, Some(json!({}))).await;
        assert_eq!(reactivate.status(), StatusCode::FORBIDDEN);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_permission_document_names_only_permissions_the_granter_holds() {
    let app = TestApp::spawn().await;
    let admin = app.token_for(app.tenant_id, Role::Admin);
    let lead = app.create_user("team.lead", "supervisor").await;
    let agent = app.create_user("plain.agent", "agent").await;

    // Unknown names and malformed entries are a 422 naming each. (A NUL in a name is refused
    // before, by field: bad_input::a_nul_character_in_any_field_is_a_422_naming_it.)
    let odd = json!({ "permissions": { "cases": ["fly"], "users": "manage" } });
    let answer = app.command(Method::PUT, &format!("/v1/users/{agent}/permissions"), &admin, Some(odd)).await;
    assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let detail = answer.json::<Value>().await.unwrap()["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains("cases:fly") && detail.contains("users (must be a list"), "{detail}");

    // The admin lets the supervisor manage users; the supervisor may pass on only what it holds.
    let users = json!({ "permissions": { "users": ["manage"] } });
    let answer = app.command(Method::PUT, &format!("/v1/users/{lead}/permissions"), &admin, Some(users)).await;
    assert_eq!(answer.status(), StatusCode::OK);
    let lead_token = app.login_token("team.lead").await;
    let more = json!({ "permissions": { "custom_fields": ["manage"] } });
    let answer = app.command(Method::PUT, &format!("/v1/users/{agent}/permissions"), &lead_token, Some(more)).await;
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    let detail = answer.json::<Value>().await.unwrap()["detail"].as_str().unwrap().to_owned();
    assert_eq!(detail, "you cannot grant custom_fields:manage: you do not hold it yourself");
    let held = json!({ "permissions": { "cases": ["create"], "notes": ["view_internal"] } });
    let answer = app.command(Method::PUT, &format!("/v1/users/{agent}/permissions"), &lead_token, Some(held)).await;
    assert_eq!(answer.status(), StatusCode::OK);
}

/// A `users:manage` grant does not lift an agent above the admins: it manages only users
/// of its own rank or below, and gives nobody a role above its own.
#[tokio::test(flavor = "multi_thread")]
async fn a_user_manager_cannot_reach_above_its_own_role() {
    let app = TestApp::spawn().await;
    let operator = app.token_for(app.tenant_id, Role::Admin);
    let helper = app.create_user("desk.helper", "agent").await;
    let boss = app.create_user("the.boss", "admin").await;
    let peer = app.create_user("peer.agent", "agent").await;
    let grant = json!({ "permissions": { "users": ["manage"] } });
    let answer = app.command(Method::PUT, &format!("/v1/users/{helper}/permissions"), &operator, Some(grant)).await;
    assert!(answer.status().is_success());
    let token = app.login_token("desk.helper").await;

    let reset = json!({ "new_password": "now i own the boss" });
    let attempts = [
        (Method::POST, format!("/v1/users/{boss}/password/reset"), Some(reset.clone())),
        (Method::POST, format!("/v1/users/{boss}/status"), Some(json!({ "status": "locked" }))),
        (Method::POST, format!("/v1/users/{boss}/role"), Some(json!({ "role": "agent" }))),
        (Method::DELETE, format!("/v1/users/{boss}/sessions"), None),
        (Method::POST, format!("/v1/users/{helper}/role"), Some(json!({ "role": "admin" }))),
        (Method::POST, format!("/v1/users/{peer}/role"), Some(json!({ "role": "supervisor" }))),
        (
            Method::POST,
            "/v1/users".to_owned(),
            Some(json!({ "username": "new.admin", "email": "new.admin@example.org",
                         "password": "integration test password", "role": "admin" })),
        ),
    ];
    for (method, path, body) in attempts {
        let answer = app.command(method.clone(), &path, &token, body).await;
        assert_eq!(answer.status(), StatusCode::FORBIDDEN, "{method} {path}");
    }
    // Within its reach it works.
    let answer = app.command(Method::POST, &format!("/v1/users/{peer}/password/reset"), &token, Some(reset)).await;
    assert_eq!(answer.status(), StatusCode::OK);
}
