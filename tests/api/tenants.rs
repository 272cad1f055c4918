//! Tenant lifecycle, permissions, versioned command bodies and the TenantProvisioned upcaster.

use murima_tests::{eventually, TestApp};
use reqwest::{Method, StatusCode};
use runtime::auth::Role;
use serde_json::{json, Value};
use uuid::Uuid;

fn case_body(app: &TestApp) -> Value {
    json!({ "title": "Anything", "case_type_id": app.case_type_id })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_suspended_tenants_commands_are_refused_until_it_is_reactivated() {
    let app = TestApp::spawn().await;
    let platform = app.platform_token();
    let tenant = app.tenant_id;

    let agent_try = app
        .command(Method::POST, &format!("/v1/tenants/{tenant}/suspend"), &app.token, Some(json!({ "reason": "x" })))
        .await;
    assert_eq!(agent_try.status(), StatusCode::FORBIDDEN);
    let p: Value = agent_try.json().await.unwrap();
    assert_eq!(p["detail"], "only platform administrators may do this", "{p}");

    let r = app
        .command(
            Method::POST,
            &format!("/v1/tenants/{tenant}/suspend"),
            &platform,
            Some(json!({ "reason": "unpaid invoice" })),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let refused = app.command(Method::POST, "/v1/cases", &app.token, Some(case_body(&app))).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let p: Value = refused.json().await.unwrap();
    assert!(p["detail"].as_str().unwrap().contains("suspended"), "{p}");

    let r = app.command(Method::POST, &format!("/v1/tenants/{tenant}/reactivate"), &platform, Some(json!({}))).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        app.command(Method::POST, "/v1/cases", &app.token, Some(case_body(&app))).await.status(),
        StatusCode::CREATED
    );

    // The relational read model follows: suspended, then active again, version 3.
    let pool = app.pool.clone();
    eventually("the tenant row to reach version 3", || async {
        let (status, version): (String, i64) =
            sqlx::query_as("SELECT status, version FROM public.tenants WHERE id = $1")
                .bind(tenant)
                .fetch_one(&pool)
                .await
                .ok()?;
        (version == 3).then_some(status)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tenant_admins_update_their_own_settings_only() {
    let app = TestApp::spawn().await;
    let admin = app.token_for(app.tenant_id, Role::Admin);
    let path = format!("/v1/tenants/{}/settings", app.tenant_id);
    let settings = json!({ "settings": { "timezone": "Africa/Nairobi", "business_hours": "08:00-17:00" } });

    let agent = app.command(Method::PATCH, &path, &app.token, Some(settings.clone())).await;
    assert_eq!(agent.status(), StatusCode::FORBIDDEN);
    let p: Value = agent.json().await.unwrap();
    assert_eq!(p["detail"], "the role agent lacks the permission tenant:settings");

    let r = app.command(Method::PATCH, &path, &admin, Some(settings.clone())).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["etag"], "\"2\"");

    let (other, _) = app.provision_tenant().await;
    let other_admin = app.token_for(other, Role::Admin);
    assert_eq!(app.command(Method::PATCH, &path, &other_admin, Some(settings)).await.status(), StatusCode::NOT_FOUND);

    let (stored,): (Value,) = app.row_at("public.tenants", "settings", app.tenant_id, 2).await;
    assert_eq!(stored["timezone"], "Africa/Nairobi");
}

#[tokio::test(flavor = "multi_thread")]
async fn command_bodies_carry_a_schema_version() {
    let app = TestApp::spawn().await;
    let mut body = case_body(&app);
    body["schema_version"] = json!(1);
    assert_eq!(
        app.command(Method::POST, "/v1/cases", &app.token, Some(body.clone())).await.status(),
        StatusCode::CREATED
    );
    body["schema_version"] = json!(7);
    let r = app.command(Method::POST, "/v1/cases", &app.token, Some(body)).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["detail"], "schema_version 7 of open_case is not supported; supported versions: [1]");
    let r = app.command(Method::POST, "/v1/cases", &app.token, Some(json!(["not", "an", "object"]))).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_old_tenant_provisioned_v1_in_the_log_still_projects() {
    let app = TestApp::spawn().await;
    // Write a v1 event (before `settings` existed) straight into the journal, as an
    // older build did, and let the relay publish it.
    let tenant = Uuid::now_v7();
    let slug = format!("legacy-{}", &tenant.simple().to_string()[24..]);
    let payload = json!({ "name": "Legacy Co", "slug": slug, "provisioned_at": "2026-11-01T09:00:00Z" });
    murima_tests::append_raw_event(&app, tenant, "tenant", tenant, 1, "TenantProvisioned", 1, payload).await;

    let (name, settings): (String, Value) = app.row_at("public.tenants", "name, settings", tenant, 1).await;
    assert_eq!(name, "Legacy Co");
    assert_eq!(settings, json!({}));
    // The write side reads it too: the tenant accepts commands.
    let legacy_type = app.create_case_type(tenant, "Legacy", json!({ "fields": [] })).await;
    let agent = app.create_user_in(tenant, "legacy.agent", "agent").await;
    let token = app.keys.issue(agent, tenant, Role::Agent, chrono::Duration::hours(1));
    let body = json!({ "title": "Still works", "case_type_id": legacy_type });
    assert_eq!(app.command(Method::POST, "/v1/cases", &token, Some(body)).await.status(), StatusCode::CREATED);
}

/// Provisioning with rate limits that are not limits is a 422 naming what to fix, and
/// nothing is provisioned.
#[tokio::test(flavor = "multi_thread")]
async fn malformed_rate_limits_are_refused_before_a_tenant_is_made() {
    let app = TestApp::spawn().await;
    let platform = app.platform_token();
    let provisioned = || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM eventstore.events WHERE stream_type = 'tenant'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
        n
    };
    let tenants_before = provisioned().await;
    for (limits, why) in [
        (json!("lots"), "rate_limits must be an object"),
        (json!({ "commands_per_second": 5 }), "is not a limit"),
        (json!({ "commands_per_minute": -5 }), "commands_per_minute"),
        (json!({ "reads_per_minute": "fast" }), "reads_per_minute"),
    ] {
        let slug = format!("limits-{}", &Uuid::now_v7().simple().to_string()[24..]);
        let body = json!({ "name": "Limits", "slug": slug, "settings": { "rate_limits": limits } });
        let r = app.command(Method::POST, "/v1/tenants", &platform, Some(body)).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{limits}");
        let problem = r.text().await.unwrap();
        assert!(problem.contains(why), "{limits}: {problem}");
    }
    assert_eq!(provisioned().await, tenants_before, "nothing was provisioned");
}
