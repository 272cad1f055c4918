//! Sessions and live rights on both APIs (issue 14). A login opens a session; its token is
//! good only while the session lives and the user and tenant may act. Logout, an
//! administrator ending a user's sessions, a password change or reset, a lock and a
//! tenant's suspension each take effect on the very next request, reads included.

use murima_tests::TestApp;
use reqwest::{Method, StatusCode};
use runtime::auth::Role;
use serde_json::{json, Value};
use uuid::Uuid;

const PASSWORD: &str = "integration test password";

/// Every read the query API documents, with made-up ids.
async fn every_read(app: &TestApp) -> Vec<String> {
    let doc: Value =
        app.http.get(format!("{}/openapi.json", app.query_url)).send().await.unwrap().json().await.unwrap();
    let mut paths = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if item.get("get").is_some() {
            paths.push(
                path.replace("{entity_type}", "case")
                    .replace("{user_id}", &Uuid::now_v7().to_string())
                    .replace("{id}", &Uuid::now_v7().to_string()),
            );
        }
    }
    assert!(paths.len() > 20, "the query API documents its reads: {paths:?}");
    paths
}

/// Asserts that every read refuses the token with one of `refusals`, on the first try.
async fn every_read_refuses(app: &TestApp, paths: &[String], token: &str, refusals: &[StatusCode], why: &str) {
    for path in paths {
        let status = app.query(path, token).await.status();
        assert!(refusals.contains(&status), "{why}: GET {path} answered {status}");
    }
}

async fn token_of(answer: reqwest::Response) -> String {
    assert_eq!(answer.status(), StatusCode::OK);
    answer.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_read_refuses_a_locked_or_logged_out_user_at_once() {
    let app = TestApp::spawn().await;
    let operator = app.token_for(app.tenant_id, Role::Admin);
    let reads = every_read(&app).await;

    let chief = app.create_user("chief", "admin").await;
    let token = app.login_token("chief").await;
    assert_eq!(app.query("/v1/cases", &token).await.status(), StatusCode::OK);
    let locked = app
        .command(Method::POST, &format!("/v1/users/{chief}/status"), &operator, Some(json!({ "status": "locked" })))
        .await;
    assert!(locked.status().is_success());
    let started = std::time::Instant::now();
    every_read_refuses(&app, &reads, &token, &[StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN], "locked").await;
    println!("{} reads refused a locked admin within {:?} of the lock", reads.len(), started.elapsed());
    let case = json!({ "title": "Locked out", "priority": "low", "case_type_id": app.case_type_id });
    let refused = app.command(Method::POST, "/v1/cases", &token, Some(case.clone())).await.status();
    assert!([StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&refused), "{refused}");

    app.create_user("leaver", "admin").await;
    let token = app.login_token("leaver").await;
    assert_eq!(app.query("/v1/cases", &token).await.status(), StatusCode::OK);
    let logout = app.command(Method::POST, "/v1/auth/logout", &token, None).await;
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    every_read_refuses(&app, &reads, &token, &[StatusCode::UNAUTHORIZED], "logged out").await;
    assert_eq!(app.command(Method::POST, "/v1/cases", &token, Some(case)).await.status(), StatusCode::UNAUTHORIZED);
    let again = app.command(Method::POST, "/v1/auth/logout", &operator, None).await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST, "an operator's token has no session to end");
}

#[tokio::test(flavor = "multi_thread")]
async fn ending_sessions_and_changing_passwords_end_old_tokens() {
    let app = TestApp::spawn().await;
    let operator = app.token_for(app.tenant_id, Role::Admin);
    let pat = app.create_user("pat", "agent").await;
    let other = app.create_user("other.agent", "agent").await;
    let (first, second) = (app.login_token("pat").await, app.login_token("pat").await);

    // An agent may end only its own sessions, and may not reset anyone's password.
    let pats = app.login_token("pat").await;
    let ended = app.command(Method::DELETE, &format!("/v1/users/{other}/sessions"), &pats, None).await;
    assert_eq!(ended.status(), StatusCode::FORBIDDEN);
    let reset = json!({ "new_password": "a brand new password" });
    let answer = app.command(Method::POST, &format!("/v1/users/{other}/password/reset"), &pats, Some(reset)).await;
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    let change = json!({ "current_password": PASSWORD, "new_password": "a brand new password" });
    let answer = app.command(Method::POST, &format!("/v1/users/{other}/password"), &pats, Some(change)).await;
    assert_eq!(answer.status(), StatusCode::FORBIDDEN, "nobody changes another user's password");

    // An administrator ends all of pat's sessions: every token of pat stops, on both APIs.
    let ended = app.command(Method::DELETE, &format!("/v1/users/{pat}/sessions"), &operator, None).await;
    assert_eq!(ended.status(), StatusCode::OK);
    assert_eq!(ended.json::<Value>().await.unwrap()["ended"], 3);
    for token in [&first, &second, &pats] {
        assert_eq!(app.query("/v1/cases", token).await.status(), StatusCode::UNAUTHORIZED);
        let profile = json!({ "first_name": "Pat" });
        let answer = app.command(Method::PATCH, &format!("/v1/users/{pat}/profile"), token, Some(profile)).await;
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    }

    // Pat changes its password: the current one is required, and every session ends.
    let token = app.login_token("pat").await;
    let wrong = json!({ "current_password": "not the password at all", "new_password": "pat's new password" });
    let answer = app.command(Method::POST, &format!("/v1/users/{pat}/password"), &token, Some(wrong)).await;
    assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let short = json!({ "current_password": PASSWORD, "new_password": "short" });
    let answer = app.command(Method::POST, &format!("/v1/users/{pat}/password"), &token, Some(short)).await;
    assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let right = json!({ "current_password": PASSWORD, "new_password": "pat's new password" });
    let answer = app.command(Method::POST, &format!("/v1/users/{pat}/password"), &token, Some(right)).await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(app.query("/v1/cases", &token).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.login("pat", PASSWORD).await.status(), StatusCode::UNAUTHORIZED);
    let token = token_of(app.login("pat", "pat's new password").await).await;
    assert_eq!(app.query("/v1/cases", &token).await.status(), StatusCode::OK);

    // An administrator resets it: pat's sessions end, and only the new password works.
    let reset = json!({ "new_password": "set by the administrator" });
    let answer = app.command(Method::POST, &format!("/v1/users/{pat}/password/reset"), &operator, Some(reset)).await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(app.query("/v1/cases", &token).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.login("pat", "pat's new password").await.status(), StatusCode::UNAUTHORIZED);
    token_of(app.login("pat", "set by the administrator").await).await;

    // Another tenant's administrator cannot reach pat's sessions: pat is no user there.
    let token = token_of(app.login("pat", "set by the administrator").await).await;
    let (other_tenant, _) = app.provision_tenant().await;
    let foreign = app.token_for(other_tenant, Role::Admin);
    let answer = app.command(Method::DELETE, &format!("/v1/users/{pat}/sessions"), &foreign, None).await;
    assert_eq!(answer.status(), StatusCode::NOT_FOUND);
    let reset = json!({ "new_password": "hijacked by a stranger" });
    let answer = app.command(Method::POST, &format!("/v1/users/{pat}/password/reset"), &foreign, Some(reset)).await;
    assert_eq!(answer.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.query("/v1/cases", &token).await.status(), StatusCode::OK);
    // A token naming a session that does not exist is refused.
    let forged = app.keys.issue_login(pat, app.tenant_id, Role::Admin, Uuid::new_v4(), chrono::Duration::hours(1));
    assert_eq!(app.query("/v1/cases", &forged).await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_suspended_tenants_users_are_refused_reads_and_commands() {
    let app = TestApp::spawn().await;
    app.create_user("member", "admin").await;
    let token = app.login_token("member").await;
    assert_eq!(app.query("/v1/cases", &token).await.status(), StatusCode::OK);

    let platform = app.platform_token();
    let path = format!("/v1/tenants/{}/suspend", app.tenant_id);
    let suspended = app.command(Method::POST, &path, &platform, Some(json!({ "reason": "unpaid" }))).await;
    assert!(suspended.status().is_success());
    for read in ["/v1/cases", "/v1/search/cases?q=x", "/v1/users", "/v1/dashboard/daily", "/v1/notifications"] {
        assert_eq!(app.query(read, &token).await.status(), StatusCode::FORBIDDEN, "{read}");
    }
    let case = json!({ "title": "Suspended", "priority": "low", "case_type_id": app.case_type_id });
    assert_eq!(app.command(Method::POST, "/v1/cases", &token, Some(case)).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.login("member", PASSWORD).await.status(), StatusCode::FORBIDDEN);

    let path = format!("/v1/tenants/{}/reactivate", app.tenant_id);
    assert!(app.command(Method::POST, &path, &platform, Some(json!({}))).await.status().is_success());
    assert_eq!(app.query("/v1/cases", &token).await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_suspension_that_redis_forgot_still_refuses_reads() {
    let app = TestApp::spawn().await;
    // An operator token of the tenant: it has no session, so only the tenant's status
    // stands between it and the data.
    let token = app.token.clone();
    let platform = app.platform_token();
    let path = format!("/v1/tenants/{}/suspend", app.tenant_id);
    let suspended = app.command(Method::POST, &path, &platform, Some(json!({ "reason": "unpaid" }))).await;
    assert!(suspended.status().is_success());
    let mut redis =
        redis::Client::open(app.settings.redis_url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let status_key = runtime::tenancy::Tenancy(app.tenant_id).redis_key("tenant:status");
    // Wait until the projector has the suspension in PostgreSQL, then lose Redis' copy.
    murima_tests::eventually("the suspension in PostgreSQL", || async {
        let status: String = sqlx::query_scalar("SELECT status FROM public.tenants WHERE id = $1")
            .bind(app.tenant_id)
            .fetch_one(&app.pool)
            .await
            .ok()?;
        (status == "suspended").then_some(())
    })
    .await;
    let _: () = redis::cmd("DEL").arg(&status_key).query_async(&mut redis).await.unwrap();
    assert_eq!(app.query("/v1/cases", &token).await.status(), StatusCode::FORBIDDEN);
    // The look-up wrote the status back for the next request.
    let held: Option<String> = redis::cmd("GET").arg(&status_key).query_async(&mut redis).await.unwrap();
    assert_eq!(held.as_deref(), Some("suspended"));
    assert_eq!(app.query("/v1/users", &token).await.status(), StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_login_in_flight_does_not_outlive_the_end_of_the_users_sessions() {
    let app = TestApp::spawn().await;
    let user = app.create_user("racer", "agent").await;
    let redis = redis::Client::open(app.settings.redis_url.as_str()).unwrap();
    let sessions = runtime::session::Sessions::new(redis::aio::ConnectionManager::new(redis).await.unwrap());
    // A login reads the epoch before it checks the password; a password change (or a
    // reset, or a lock) ends the sessions meanwhile; the login may then open none.
    let seen = sessions.epoch(app.tenant_id, user).await.unwrap();
    let reset = json!({ "new_password": "changed while logging in" });
    let operator = app.token_for(app.tenant_id, Role::Admin);
    let answer = app.command(Method::POST, &format!("/v1/users/{user}/password/reset"), &operator, Some(reset)).await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(sessions.open(app.tenant_id, user, seen).await.unwrap(), None);
    let now = sessions.epoch(app.tenant_id, user).await.unwrap();
    assert!(sessions.open(app.tenant_id, user, now).await.unwrap().is_some());

    // Password commands take no Idempotency-Key: a replay could not tell passwords apart.
    let answer = app
        .http
        .post(format!("{}/v1/users/{user}/password/reset", app.command_url))
        .bearer_auth(&operator)
        .header("idempotency-key", "reset-1")
        .json(&json!({ "new_password": "yet another password" }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    // A NUL in a login's tenant or username is a 422 naming the field, not a server error.
    let nul = app
        .http
        .post(format!("{}/v1/auth/login", app.command_url))
        .json(&json!({ "tenant": "a\u{0}", "username": "racer\u{0}", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(nul.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(nul.json::<Value>().await.unwrap()["errors"][0]["field"], "tenant");
}
