//! Tenant-scoped identity (issue 14 point 5): a stream is identified by (tenant, id). An
//! id another tenant uses is simply free in yours, so no answer tells a tenant which ids
//! exist elsewhere, and each tenant's stream of a shared id lives in its own read models.

use murima_tests::{eventually, TestApp};
use reqwest::{Method, StatusCode};
use runtime::auth::Role;
use serde_json::{json, Value};
use uuid::Uuid;

const PASSWORD: &str = "integration test password";

fn new_user(id: Uuid, username: &str) -> Value {
    json!({ "id": id, "username": username, "email": format!("{username}@example.org"),
            "password": PASSWORD, "role": "agent" })
}

async fn slug_of(app: &TestApp, tenant: Uuid) -> String {
    sqlx::query_scalar("SELECT slug FROM eventstore.tenant_slugs WHERE tenant_id = $1")
        .bind(tenant)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

async fn journal_rows(app: &TestApp, tenant: Uuid, stream: Uuid) -> Vec<(String, i64)> {
    sqlx::query_as(
        "SELECT event_type, stream_version FROM eventstore.events
         WHERE tenant_id = $1 AND stream_id = $2 ORDER BY stream_version",
    )
    .bind(tenant)
    .bind(stream)
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_id_used_by_another_tenant_is_free_and_reveals_nothing() {
    let app = TestApp::spawn().await;
    let opened = app.open_case("A private matter of tenant A").await;
    let case: Uuid = opened["id"].as_str().unwrap().parse().unwrap();
    let case_position = opened["position"].as_str().unwrap().to_owned();
    let case_events = journal_rows(&app, app.tenant_id, case).await;

    // In its own tenant the id is taken by the case: that much the tenant may know.
    let own_admin = app.token_for(app.tenant_id, Role::Admin);
    let taken = app.command(Method::POST, "/v1/users", &own_admin, Some(new_user(case, "own.clash"))).await;
    assert_eq!(taken.status(), StatusCode::CONFLICT);
    let problem: Value = taken.json().await.unwrap();
    assert!(problem["detail"].as_str().unwrap().contains("already used by a case"), "{problem}");

    // A fresh tenant's admin creates a user under the case's id (before: 409 "the id ... is
    // already used by a case", an oracle for other tenants' ids), and under the id of
    // tenant A's agent: both are simply new streams of tenant B.
    let (b, _, b_agent) = app.provision_tenant_with_agent().await;
    let b_admin = app.token_for(b, Role::Admin);
    let created = app.command(Method::POST, "/v1/users", &b_admin, Some(new_user(case, "borrowed.id"))).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["id"], json!(case));
    assert_eq!(created["version"], 1, "a new stream of tenant B, not a continuation of A's case");
    let twin = app.command(Method::POST, "/v1/users", &b_admin, Some(new_user(app.user_id, "borrowed.agent"))).await;
    assert_eq!(twin.status(), StatusCode::CREATED);

    // B's user logs in and reads itself, as B's.
    let login = app
        .http
        .post(format!("{}/v1/auth/login", app.command_url))
        .json(&json!({ "tenant": slug_of(&app, b).await, "username": "borrowed.id", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    let token = login.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    let position = created["position"].as_str().unwrap();
    // (A fresh login may read 503 until the read model shows the user: retried.)
    let me: Value = eventually("B's user reading itself", || async {
        let r = app.query(&format!("/v1/users/{case}?position={position}"), &token).await;
        if r.status() != StatusCode::OK {
            return None;
        }
        r.json().await.ok()
    })
    .await;
    assert_eq!(
        (me["username"].as_str(), me["tenant_id"].as_str()),
        (Some("borrowed.id"), Some(b.to_string().as_str()))
    );
    // B still sees no case of that id, and cannot act on one.
    assert_eq!(app.query(&format!("/v1/cases/{case}"), &b_agent).await.status(), StatusCode::NOT_FOUND);
    let close = json!({ "status": "closed" });
    let write = app.command(Method::POST, &format!("/v1/cases/{case}/status"), &b_agent, Some(close)).await;
    assert_eq!(write.status(), StatusCode::NOT_FOUND);

    // A's case is untouched: the same events in the journal, the same case in the read model.
    assert_eq!(journal_rows(&app, app.tenant_id, case).await, case_events);
    let read = app.query(&format!("/v1/cases/{case}?position={case_position}"), &app.token).await;
    assert_eq!(read.status(), StatusCode::OK);
    let read: Value = read.json().await.unwrap();
    assert_eq!(read["title"], "A private matter of tenant A");
    assert_eq!(read["version"].as_i64(), case_events.last().map(|(_, v)| *v));
    // And A's users are A's: the user of tenant B under that id is nowhere in A.
    assert_eq!(app.query(&format!("/v1/users/{case}"), &app.token).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_tenants_each_have_their_own_user_of_one_id_in_their_read_models() {
    let app = TestApp::spawn().await;
    let (b, _, b_agent) = app.provision_tenant_with_agent().await;
    let id = Uuid::now_v7();
    let tenants = [(app.tenant_id, "same.id.in.a", app.token.clone()), (b, "same.id.in.b", b_agent)];
    for (tenant, username, _) in &tenants {
        let admin = app.token_for(*tenant, Role::Admin);
        let created = app.command(Method::POST, "/v1/users", &admin, Some(new_user(id, username))).await;
        assert_eq!(created.status(), StatusCode::CREATED, "creating {username}");
        assert_eq!(created.json::<Value>().await.unwrap()["version"], 1);
    }
    // Only B's user changes: a second event of B's stream, none of A's.
    let b_admin = app.token_for(b, Role::Admin);
    let role = json!({ "role": "supervisor" });
    let promoted = app.command(Method::POST, &format!("/v1/users/{id}/role"), &b_admin, Some(role)).await;
    assert_eq!(promoted.status(), StatusCode::OK);

    // Each tenant's read models hold its own user under the id: PostgreSQL (the users
    // table) and MongoDB (the audit trail), each at its own stream's version.
    for ((tenant, username, token), (role, version)) in tenants.iter().zip([("agent", 1), ("supervisor", 2)]) {
        // (The audit trail is for readers holding audit:read: the tenant's admin.)
        let auditor = app.token_for(*tenant, Role::Admin);
        let user: Value = eventually(&format!("{username} in its tenant's users"), || async {
            let r = app.query(&format!("/v1/users/{id}"), token).await;
            let user: Value = r.json().await.ok()?;
            (user["version"] == version).then_some(user)
        })
        .await;
        assert_eq!(user["username"], *username);
        assert_eq!(user["tenant_id"], json!(tenant));
        assert_eq!(user["role"], role);
        let audit: Value = eventually(&format!("{username}'s audit trail"), || async {
            let r = app.query(&format!("/v1/audit/user/{id}"), &auditor).await;
            let audit: Value = r.json().await.ok()?;
            (audit["items"].as_array()?.len() == version as usize).then_some(audit)
        })
        .await;
        let events: Vec<&str> =
            audit["items"].as_array().unwrap().iter().map(|e| e["event_type"].as_str().unwrap()).collect();
        let expected: &[&str] = if version == 2 { &["UserRoleChanged", "UserCreated"] } else { &["UserCreated"] };
        assert_eq!(events, expected, "{audit}");
        assert!(audit["items"].as_array().unwrap().iter().all(|e| e["tenant_id"] == json!(tenant.to_string())));
    }
    // Nothing was parked: neither tenant's stream held the other's back.
    let parked: i64 = sqlx::query_scalar("SELECT count(*) FROM projector.parked_events WHERE stream_id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(parked, 0);
}

async fn parked_rows(app: &TestApp, tenant: Uuid, stream: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM projector.parked_events WHERE tenant_id = $1 AND stream_id = $2")
        .bind(tenant)
        .bind(stream)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_parked_stream_of_one_tenant_holds_back_no_other_tenants_stream_of_that_id() {
    let app = TestApp::spawn().await;
    // Tenant A's stream X starts with an event no decoder reads: every projection parks it
    // (and would park the rest of A's stream X behind it).
    let x = Uuid::now_v7();
    murima_tests::append_raw_event(&app, app.tenant_id, "case", x, 1, "CaseOpened", 1, json!({ "priority": "high" }))
        .await;
    eventually("A's stream to be parked by every projection", || async {
        (parked_rows(&app, app.tenant_id, x).await == 7).then_some(())
    })
    .await;

    // Tenant B's stream of the same id is another stream: it is projected, not parked.
    let (b, _, b_agent) = app.provision_tenant_with_agent().await;
    let b_admin = app.token_for(b, Role::Admin);
    let created = app.command(Method::POST, "/v1/users", &b_admin, Some(new_user(x, "not.parked"))).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let user: Value = eventually("B's user in B's users", || async {
        let r = app.query(&format!("/v1/users/{x}"), &b_agent).await;
        if r.status() != StatusCode::OK {
            return None;
        }
        r.json().await.ok()
    })
    .await;
    assert_eq!(user["username"], "not.parked");
    eventually("B's user in B's audit trail", || async {
        let audit: Value = app.query(&format!("/v1/audit/user/{x}"), &b_admin).await.json().await.ok()?;
        (audit["items"].as_array()?.len() == 1).then_some(())
    })
    .await;
    assert_eq!(parked_rows(&app, b, x).await, 0);

    // Operators name the tenant of a parked stream: B has nothing parked under X, A has.
    let skip = |tenant: Uuid| format!("{}/v1/admin/parked/postgres/{x}/skip?tenant_id={tenant}", app.projector_url);
    let admin = app.platform_token();
    let r = app.http.post(skip(b)).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = app.http.post(skip(app.tenant_id)).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["events_skipped"], 1);
    assert_eq!(parked_rows(&app, app.tenant_id, x).await, 6, "the other projections keep theirs");
}
