//! Rights follow live state on the command side (issue 14): a login token names its user,
//! and every command takes that user's role, grants and status from the journal. A
//! demotion, a lock or a revoked grant takes effect on the very next command, whatever
//! the user's old token says.

use murima_tests::TestApp;
use reqwest::{Method, StatusCode};
use runtime::auth::Role;
use serde_json::{json, Value};
use uuid::Uuid;

fn new_user(name: &str) -> Value {
    json!({ "username": name, "email": format!("{name}@example.org"), "password": "integration test password",
            "role": "agent" })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_demoted_and_locked_admin_cannot_act_or_restore_itself_with_its_old_token() {
    let app = TestApp::spawn().await;
    let operator = app.token_for(app.tenant_id, Role::Admin);
    let boss = app.create_user("boss", "admin").await;
    let token = app.login_token("boss").await;
    let created = app.command(Method::POST, "/v1/users", &token, Some(new_user("first.hire"))).await;
    assert_eq!(created.status(), StatusCode::CREATED, "an admin's login token works while it is an admin");

    let demoted =
        app.command(Method::POST, &format!("/v1/users/{boss}/role"), &operator, Some(json!({ "role": "agent" }))).await;
    assert!(demoted.status().is_success());
    let refused = app.command(Method::POST, "/v1/users", &token, Some(new_user("second.hire"))).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN, "demoted: the old token creates no user");
    assert_eq!(refused.json::<Value>().await.unwrap()["detail"], "the role agent lacks the permission users:manage");

    let locked = app
        .command(Method::POST, &format!("/v1/users/{boss}/status"), &operator, Some(json!({ "status": "locked" })))
        .await;
    assert!(locked.status().is_success());
    let attempts = [
        (format!("/v1/users/{boss}/status"), json!({ "status": "active" })),
        (format!("/v1/users/{boss}/role"), json!({ "role": "admin" })),
    ];
    // A lock also ends the user's sessions: the old token is no credential at all.
    for (path, body) in attempts {
        let answer = app.command(Method::POST, &path, &token, Some(body)).await;
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED, "{path}");
        let detail = answer.json::<Value>().await.unwrap()["detail"].as_str().unwrap().to_owned();
        assert!(detail.contains("session has ended"), "{detail}");
    }
    let case = json!({ "title": "Still here?", "priority": "low", "case_type_id": app.case_type_id });
    assert_eq!(app.command(Method::POST, "/v1/cases", &token, Some(case)).await.status(), StatusCode::UNAUTHORIZED);
    // And it cannot log in again either.
    let slug = app.tenant_slug().await;
    let again = app
        .http
        .post(format!("{}/v1/auth/login", app.command_url))
        .json(&json!({ "tenant": slug, "username": "boss", "password": "integration test password" }))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_grant_is_gone_from_the_next_command_and_a_token_of_no_user_is_refused() {
    let app = TestApp::spawn().await;
    let operator = app.token_for(app.tenant_id, Role::Admin);
    let helper = app.create_user("helper", "agent").await;
    let grant = json!({ "permissions": { "users": ["manage"] } });
    let answer = app.command(Method::PUT, &format!("/v1/users/{helper}/permissions"), &operator, Some(grant)).await;
    assert!(answer.status().is_success());
    let token = app.login_token("helper").await;
    let created = app.command(Method::POST, "/v1/users", &token, Some(new_user("granted.hire"))).await;
    assert_eq!(created.status(), StatusCode::CREATED);

    let revoke = json!({ "permissions": {} });
    let answer = app.command(Method::PUT, &format!("/v1/users/{helper}/permissions"), &operator, Some(revoke)).await;
    assert!(answer.status().is_success());
    let refused = app.command(Method::POST, "/v1/users", &token, Some(new_user("revoked.hire"))).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    // A login token naming a user this tenant does not have (another tenant's user id,
    // or a made-up one) is no credential, whatever role it claims.
    let (other_tenant, other_user, _) = app.provision_tenant_with_agent().await;
    for user in [other_user, Uuid::now_v7()] {
        let forged = app.keys.issue_login(user, app.tenant_id, Role::Admin, Uuid::new_v4(), chrono::Duration::hours(1));
        let answer = app.command(Method::POST, "/v1/users", &forged, Some(new_user("forged.hire"))).await;
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED, "{user} of {other_tenant}");
    }
}

/// The command API keeps users, tenants and other facts in memory and trusts them while it
/// hears the journal's notifications of their changes: a demotion made through another
/// command API takes effect on this one within a moment, and on the one that made it at
/// once.
#[tokio::test(flavor = "multi_thread")]
async fn a_demotion_through_another_command_api_takes_effect_on_this_one_within_a_moment() {
    let app = TestApp::spawn().await;
    let (other_url, _other) = app.another_command_api().await;
    let operator = app.token_for(app.tenant_id, Role::Admin);
    let boss = app.create_user("remote.boss", "admin").await;
    let token = app.login_token("remote.boss").await;
    // This API reads the admin (and keeps it) while it creates a user.
    let created = app.command(Method::POST, "/v1/users", &token, Some(new_user("before.demotion"))).await;
    assert_eq!(created.status(), StatusCode::CREATED);

    let demoted = app
        .http
        .post(format!("{other_url}/v1/users/{boss}/role"))
        .bearer_auth(&operator)
        .json(&json!({ "role": "agent" }))
        .send()
        .await
        .unwrap();
    assert!(demoted.status().is_success(), "demoted through the other command API");
    let demoted_at = std::time::Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let hire = new_user(&format!("after.demotion.{attempt}"));
        let answer = app.command(Method::POST, "/v1/users", &token, Some(hire)).await;
        if answer.status() == StatusCode::FORBIDDEN {
            break;
        }
        assert_eq!(answer.status(), StatusCode::CREATED);
        assert!(
            demoted_at.elapsed() < std::time::Duration::from_secs(1),
            "the demotion is not seen by this command API {:?} after it",
            demoted_at.elapsed()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    eprintln!("the demotion took effect here after {:?} ({attempt} attempts)", demoted_at.elapsed());
    let again = app.command(Method::POST, "/v1/users", &token, Some(new_user("still.demoted"))).await;
    assert_eq!(again.status(), StatusCode::FORBIDDEN, "and it stays");
}
