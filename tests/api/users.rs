//! Users: administration, uniqueness, argon2 passwords and the login endpoint.

use murima_tests::{eventually, TestApp};
use reqwest::{Method, StatusCode};
use runtime::auth::Role;
use serde_json::{json, Value};

async fn login(app: &TestApp, slug: &str, username: &str, password: &str) -> reqwest::Response {
    app.http
        .post(format!("{}/v1/auth/login", app.command_url))
        .json(&json!({ "tenant": slug, "username": username, "password": password }))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn admins_create_users_who_log_in_and_act_under_their_role() {
    let app = TestApp::spawn().await;
    let admin = app.token_for(app.tenant_id, Role::Admin);
    let slug: String = sqlx::query_scalar("SELECT slug FROM eventstore.tenant_slugs WHERE tenant_id = $1")
        .bind(app.tenant_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let body = json!({ "username": "Jane.Doe", "email": "jane@example.org", "password": "correct horse battery",
                       "first_name": "Jane", "role": "agent" });

    let agent_try = app.command(Method::POST, "/v1/users", &app.token, Some(body.clone())).await;
    assert_eq!(agent_try.status(), StatusCode::FORBIDDEN);
    let p: Value = agent_try.json().await.unwrap();
    assert_eq!(p["detail"], "the role agent lacks the permission users:manage");

    let created = app.command(Method::POST, "/v1/users", &admin, Some(body.clone())).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.unwrap();
    let user_id = created["id"].as_str().unwrap().to_owned();

    // Usernames and emails are unique per tenant (case-insensitively).
    let mut twin = body.clone();
    twin["email"] = json!("other@example.org");
    twin["username"] = json!("jane.doe");
    assert_eq!(app.command(Method::POST, "/v1/users", &admin, Some(twin)).await.status(), StatusCode::CONFLICT);
    let mut same_mail = body.clone();
    same_mail["username"] = json!("jane2");
    same_mail["email"] = json!("JANE@example.org");
    assert_eq!(app.command(Method::POST, "/v1/users", &admin, Some(same_mail)).await.status(), StatusCode::CONFLICT);
    let mut short = body.clone();
    short["username"] = json!("shorty");
    short["email"] = json!("shorty@example.org");
    short["password"] = json!("short");
    let r = app.command(Method::POST, "/v1/users", &admin, Some(short)).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["errors"][0]["field"], "password");

    // Login: wrong password and unknown users look the same.
    assert_eq!(login(&app, &slug, "jane.doe", "wrong password!!").await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(login(&app, &slug, "nobody", "correct horse battery").await.status(), StatusCode::UNAUTHORIZED);
    let ok = login(&app, &slug, "JANE.DOE", "correct horse battery").await;
    assert_eq!(ok.status(), StatusCode::OK);
    let session: Value = ok.json().await.unwrap();
    assert_eq!(session["role"], "agent");
    let token = session["token"].as_str().unwrap().to_owned();
    let case = app
        .command(
            Method::POST,
            "/v1/cases",
            &token,
            Some(json!({ "title": "Logged in", "case_type_id": app.case_type_id })),
        )
        .await;
    assert_eq!(case.status(), StatusCode::CREATED);

    // Users edit their own profile; not someone else's.
    let r = app
        .command(Method::PATCH, &format!("/v1/users/{user_id}/profile"), &token, Some(json!({ "last_name": "Doe" })))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let other = app
        .command(
            Method::PATCH,
            &format!("/v1/users/{}/profile", uuid::Uuid::now_v7()),
            &token,
            Some(json!({ "last_name": "X" })),
        )
        .await;
    assert_eq!(other.status(), StatusCode::FORBIDDEN);

    // Permissions beyond the role come from the user's permission document, via login.
    let r = app.command(Method::POST, "/v1/users", &token, Some(json!({ "username": "kim", "email": "kim@example.org", "password": "another long secret", "role": "agent" }))).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // A document naming what is not a permission is refused (issue 14: it was ignored).
    let grant = json!({ "permissions": { "users": ["manage"], "cases": ["view"] } });
    let r = app.command(Method::PUT, &format!("/v1/users/{user_id}/permissions"), &admin, Some(grant)).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let grant = json!({ "permissions": { "users": ["manage"] } });
    let r = app.command(Method::PUT, &format!("/v1/users/{user_id}/permissions"), &admin, Some(grant)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let session: Value = login(&app, &slug, "jane.doe", "correct horse battery").await.json().await.unwrap();
    assert_eq!(session["grants"], json!(["users:manage"]));
    let granted = session["token"].as_str().unwrap().to_owned();
    let r = app.command(Method::POST, "/v1/users", &granted, Some(json!({ "username": "kim", "email": "kim@example.org", "password": "another long secret", "role": "agent" }))).await;
    assert_eq!(r.status(), StatusCode::CREATED);

    // A locked user cannot log in.
    let r = app
        .command(Method::POST, &format!("/v1/users/{user_id}/status"), &admin, Some(json!({ "status": "locked" })))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(login(&app, &slug, "jane.doe", "correct horse battery").await.status(), StatusCode::FORBIDDEN);

    // The relational read model and the audit trail; the hash never reaches the audit log.
    let uid: uuid::Uuid = user_id.parse().unwrap();
    let (status, last_name): (String, Option<String>) =
        app.row_at(&app.tenant_table("users"), "status, last_name", uid, 6).await;
    assert_eq!((status.as_str(), last_name.as_deref()), ("locked", Some("Doe")));
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM eventstore.credentials WHERE user_id = $1")
        .bind(uid)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(hash.starts_with("$argon2id$"), "stored as an argon2 hash, in the credentials table only");
    let created_entry = eventually("the user's creation in the audit log", || async {
        let filter = mongodb::bson::doc! { "entity_id": &user_id, "action": "create" };
        app.audit_entries(app.tenant_id, filter).await.pop()
    })
    .await;
    let text = format!("{created_entry:?}");
    assert!(!text.contains("argon2") && !text.contains("correct horse"), "{text}");
}
