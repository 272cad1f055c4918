//! Teams: unique names, members that must be users of the tenant, the relational read model.

use murima_tests::{eventually, TestApp};
use reqwest::{Method, StatusCode};
use runtime::auth::Role;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread")]
async fn supervisors_build_teams_of_existing_users() {
    let app = TestApp::spawn().await;
    let supervisor = app.token_for(app.tenant_id, Role::Supervisor);
    let admin = app.token_for(app.tenant_id, Role::Admin);

    let agent_try = app.command(Method::POST, "/v1/teams", &app.token, Some(json!({ "name": "Tier 1" }))).await;
    assert_eq!(agent_try.status(), StatusCode::FORBIDDEN);
    let created = app.command(Method::POST, "/v1/teams", &supervisor, Some(json!({ "name": "Tier 1" }))).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let team_id = created.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let twin = app.command(Method::POST, "/v1/teams", &supervisor, Some(json!({ "name": " tier 1 " }))).await;
    assert_eq!(twin.status(), StatusCode::CONFLICT);

    // Members must exist in the tenant.
    let ghost = json!({ "user_id": uuid::Uuid::now_v7() });
    let r = app.command(Method::POST, &format!("/v1/teams/{team_id}/members"), &supervisor, Some(ghost)).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["errors"][0]["field"], "user_id");

    let user = app
        .command(
            Method::POST,
            "/v1/users",
            &admin,
            Some(json!({ "username": "sam", "email": "sam@example.org", "password": "a long enough secret", "role": "agent" })),
        )
        .await;
    assert_eq!(user.status(), StatusCode::CREATED);
    let user_id = user.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let add = json!({ "user_id": user_id, "role": "lead" });
    let r = app.command(Method::POST, &format!("/v1/teams/{team_id}/members"), &supervisor, Some(add)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .command(Method::PATCH, &format!("/v1/teams/{team_id}"), &supervisor, Some(json!({ "name": "Tier One" })))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    // The old name is free again.
    let reuse = app.command(Method::POST, "/v1/teams", &supervisor, Some(json!({ "name": "Tier 1" }))).await;
    assert_eq!(reuse.status(), StatusCode::CREATED);

    let schema = runtime::tenancy::Tenancy(app.tenant_id).pg_schema();
    let pool = app.pool.clone();
    let team: uuid::Uuid = team_id.parse().unwrap();
    let (name, role): (String, String) = eventually("the team and its lead in PostgreSQL", || async {
        sqlx::query_as(&format!(
            "SELECT t.name, m.role FROM {schema}.teams t JOIN {schema}.team_members m ON m.team_id = t.id
             WHERE t.id = $1 AND t.version = 3"
        ))
        .bind(team)
        .fetch_one(&pool)
        .await
        .ok()
    })
    .await;
    assert_eq!((name.as_str(), role.as_str()), ("Tier One", "lead"));

    // Cases are assigned to existing teams only.
    let case = app.open_case("Team work").await["id"].as_str().unwrap().to_owned();
    let r = app
        .command(
            Method::POST,
            &format!("/v1/cases/{case}/team"),
            &app.token,
            Some(json!({ "team_id": uuid::Uuid::now_v7() })),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .command(Method::POST, &format!("/v1/cases/{case}/team"), &app.token, Some(json!({ "team_id": team_id })))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let assigned: Value = r.json().await.unwrap();
    let read: Value = app
        .query(&format!("/v1/cases/{case}?position={}", assigned["position"].as_str().unwrap()), &app.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read["assigned_team_id"], json!(team_id));

    let r = app.command(Method::DELETE, &format!("/v1/teams/{team_id}/members/{user_id}"), &supervisor, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["etag"], "\"4\"");
}
