//! Every request is bound to one tenant by its token; other tenants' data is a 404.

use murima_tests::TestApp;
use reqwest::{Method, StatusCode};
use runtime::auth::Role;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_never_sees_another_tenants_cases() {
    let app = TestApp::spawn().await;
    let opened = app.open_case("Private matter").await;
    let id = opened["id"].as_str().unwrap();
    let position = opened["position"].as_str().unwrap();
    // The owner sees it (and the projection has it) ...
    let own = app.query(&format!("/v1/cases/{id}?position={position}"), &app.token).await;
    assert_eq!(own.status(), StatusCode::OK);

    // ... another tenant gets 404 everywhere, and cannot change it either.
    let (other_tenant, other) = app.provision_tenant().await;
    let other_admin = app.token_for(other_tenant, runtime::auth::Role::Admin);
    assert_eq!(app.query(&format!("/v1/cases/{id}"), &other).await.status(), StatusCode::NOT_FOUND);
    let list: Value = app.query("/v1/cases", &other).await.json().await.unwrap();
    assert_eq!(list["items"], json!([]));
    let audit: Value = app.query(&format!("/v1/cases/{id}/audit"), &other_admin).await.json().await.unwrap();
    assert_eq!(audit["items"], json!([]));
    let found: Value = app.query("/v1/search/cases?q=private", &other).await.json().await.unwrap();
    assert_eq!(found["total"], 0);
    let write =
        app.command(Method::POST, &format!("/v1/cases/{id}/status"), &other, Some(json!({ "status": "closed" }))).await;
    assert_eq!(write.status(), StatusCode::NOT_FOUND);

    // Row-level security: a reader session with another tenant's setting reads nothing.
    let schema = runtime::tenancy::Tenancy(app.tenant_id).pg_schema();
    let mut tx = app.pool.begin().await.unwrap();
    sqlx::query("SET LOCAL ROLE murima_reader").execute(&mut *tx).await.unwrap();
    sqlx::query("SELECT set_config('app.current_tenant_id', $1, true)")
        .bind(uuid::Uuid::now_v7().to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    let seen: i64 =
        sqlx::query_scalar(&format!("SELECT count(*) FROM {schema}.cases")).fetch_one(&mut *tx).await.unwrap();
    assert_eq!(seen, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_without_a_valid_token_are_refused() {
    let app = TestApp::spawn().await;
    let none = app.http.get(format!("{}/v1/cases", app.query_url)).send().await.unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.query("/v1/cases", "not-a-jwt").await.status(), StatusCode::UNAUTHORIZED);
    let forged = runtime::auth::JwtKeys::new("another secret").issue(
        app.user_id,
        app.tenant_id,
        Role::Agent,
        chrono::Duration::hours(1),
    );
    assert_eq!(app.query("/v1/cases", &forged).await.status(), StatusCode::UNAUTHORIZED);
    let open = app.command(Method::POST, "/v1/cases", &forged, Some(json!({ "title": "x" }))).await;
    assert_eq!(open.status(), StatusCode::UNAUTHORIZED);
    // Agents cannot provision tenants; platform tokens cannot touch tenant data.
    let provision =
        app.command(Method::POST, "/v1/tenants", &app.token, Some(json!({ "name": "x", "slug": "xyz" }))).await;
    assert_eq!(provision.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.query("/v1/cases", &app.platform_token()).await.status(), StatusCode::FORBIDDEN);
    // A token for a tenant that was never provisioned cannot open cases.
    let ghost = app.token_for(uuid::Uuid::now_v7(), Role::Agent);
    let body = json!({ "title": "x", "case_type_id": app.case_type_id });
    assert_eq!(app.command(Method::POST, "/v1/cases", &ghost, Some(body)).await.status(), StatusCode::FORBIDDEN);
}
