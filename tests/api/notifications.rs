//! Notifications (issue 20): mentions in notes, a reopened case, and marking read (one,
//! or all) with the unread count following.

use murima_tests::{eventually, TestApp};
use reqwest::{Method, Response, StatusCode};
use runtime::auth::Role;
use serde_json::{json, Value};

/// The user's notifications as the query API lists them, once Redis shows `position`.
async fn list(app: &TestApp, token: &str, position: Option<&str>) -> Value {
    let mut request = app.http.get(format!("{}/v1/notifications", app.query_url)).bearer_auth(token);
    if let Some(position) = position {
        request = request.header("x-murima-position", position);
    }
    let answer = request.send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    answer.json().await.unwrap()
}

/// Waits until the user's list holds `count` notifications.
async fn listed(app: &TestApp, token: &str, count: usize) -> Value {
    eventually(&format!("{count} notifications"), || async {
        let answer = list(app, token, None).await;
        (answer["items"].as_array()?.len() == count).then_some(answer)
    })
    .await
}

async fn ok_position(answer: Response) -> String {
    assert_eq!(answer.status(), StatusCode::OK);
    let body: Value = answer.json().await.unwrap();
    body["position"].as_str().unwrap().to_owned()
}

async fn add_note(app: &TestApp, case: &str, content: &str, internal: bool) {
    let body = json!({ "content": content, "is_internal": internal });
    let answer = app.command(Method::POST, &format!("/v1/cases/{case}/notes"), &app.token, Some(body)).await;
    assert_eq!(answer.status(), StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mention_notifies_only_those_who_may_read_the_note() {
    let app = TestApp::spawn().await;
    let kim = app.create_user("kim", "agent").await;
    app.create_user("sam", "supervisor").await;
    let (kim_token, sam_token) = (app.login_token("kim").await, app.login_token("sam").await);
    let case = app.open_case("Line drops at night").await["id"].as_str().unwrap().to_owned();

    add_note(&app, &case, "@Kim please call back; @nobody-here is not a user, mail kim@example.org", false).await;
    // An internal note tells no agent it exists: kim (an agent) is not notified, sam is.
    add_note(&app, &case, "Internal: @kim @sam check the contract", true).await;
    let kims = listed(&app, &kim_token, 1).await;
    let mention = &kims["items"][0];
    assert_eq!(mention["type"], "mention");
    assert_eq!(mention["subject"]["case_id"], json!(case));
    assert_eq!(mention["read"], false);
    assert_eq!(kims["unread"], 1);
    let sams = listed(&app, &sam_token, 1).await;
    assert_eq!(sams["items"][0]["type"], "mention");

    // The author mentioning themself is told nothing.
    add_note(&app, &case, "Note to self @kim", false).await;
    let own = app.keys.issue(kim, app.tenant_id, Role::Agent, chrono::Duration::hours(1));
    let by_kim = json!({ "content": "I, @kim, will call", "is_internal": false });
    let answer = app.command(Method::POST, &format!("/v1/cases/{case}/notes"), &own, Some(by_kim)).await;
    assert_eq!(answer.status(), StatusCode::CREATED);
    let kims = listed(&app, &kim_token, 2).await;
    assert!(kims["items"].as_array().unwrap().iter().all(|n| n["by"] != json!(kim)), "{kims}");
    assert_eq!(app.journal_count("note").await, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reopened_case_notifies_its_assignee() {
    let app = TestApp::spawn().await;
    let kim = app.create_user("kim", "agent").await;
    let kim_token = app.login_token("kim").await;
    let case = app.open_case("Refund missing").await["id"].as_str().unwrap().to_owned();
    let assign = json!({ "assigned_to": kim });
    let answer = app.command(Method::POST, &format!("/v1/cases/{case}/assignment"), &app.token, Some(assign)).await;
    ok_position(answer).await;
    for step in ["resolve", "reopen"] {
        let answer = app.command(Method::POST, &format!("/v1/cases/{case}/{step}"), &app.token, Some(json!({}))).await;
        ok_position(answer).await;
    }
    let kims = listed(&app, &kim_token, 2).await;
    let kinds: Vec<&str> = kims["items"].as_array().unwrap().iter().map(|n| n["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, vec!["case_reopened", "case_assigned"], "newest first: {kims}");
    assert_eq!(kims["items"][0]["subject"]["case_id"], json!(case));
}

#[tokio::test(flavor = "multi_thread")]
async fn reading_one_then_all_moves_the_unread_count_and_later_ones_stay_unread() {
    let app = TestApp::spawn().await;
    let kim = app.create_user("kim", "agent").await;
    let kim_token = app.login_token("kim").await;
    let mut cases = Vec::new();
    for title in ["First", "Second", "Third"] {
        let case = app.open_case(title).await["id"].as_str().unwrap().to_owned();
        let body = json!({ "assigned_to": kim });
        ok_position(app.command(Method::POST, &format!("/v1/cases/{case}/assignment"), &app.token, Some(body)).await)
            .await;
        cases.push(case);
    }
    let all = listed(&app, &kim_token, 3).await;
    assert_eq!(all["unread"], 3);
    let first = all["items"][2]["id"].as_str().unwrap().to_owned();

    let position = ok_position(
        app.command(Method::POST, &format!("/v1/notifications/{first}/read"), &kim_token, Some(json!({}))).await,
    )
    .await;
    let after_one = list(&app, &kim_token, Some(&position)).await;
    assert_eq!(after_one["unread"], 2, "{after_one}");
    assert_eq!(after_one["items"][2]["read"], true);
    let badge: Value = app.query("/v1/notifications/unread", &kim_token).await.json().await.unwrap();
    assert_eq!(badge["unread"], 2);

    // Someone else's marks are their own.
    app.create_user("lee", "agent").await;
    let lee_token = app.login_token("lee").await;
    let position =
        ok_position(app.command(Method::POST, "/v1/notifications/read-all", &lee_token, Some(json!({}))).await).await;
    assert_eq!(list(&app, &kim_token, Some(&position)).await["unread"], 2);

    let position =
        ok_position(app.command(Method::POST, "/v1/notifications/read-all", &kim_token, Some(json!({}))).await).await;
    assert_eq!(list(&app, &kim_token, Some(&position)).await["unread"], 0);

    // A later notification is unread again.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let body = json!({ "assigned_to": serde_json::Value::Null });
    ok_position(app.command(Method::POST, &format!("/v1/cases/{}/assignment", cases[0]), &app.token, Some(body)).await)
        .await;
    let body = json!({ "assigned_to": kim });
    ok_position(app.command(Method::POST, &format!("/v1/cases/{}/assignment", cases[0]), &app.token, Some(body)).await)
        .await;
    let later = listed(&app, &kim_token, 4).await;
    assert_eq!(later["unread"], 1, "{later}");
    assert_eq!(later["items"][0]["read"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn only_a_user_of_the_tenant_marks_their_own_notifications_read() {
    let app = TestApp::spawn().await;
    let kim = app.create_user("kim", "agent").await;
    let kim_token = app.login_token("kim").await;
    let read = |token: String, path: String| {
        let app = &app;
        async move { app.command(Method::POST, &path, &token, Some(json!({}))).await }
    };
    let some = uuid::Uuid::now_v7();
    let path = format!("/v1/notifications/{some}/read");
    assert_eq!(read(app.platform_token(), path.clone()).await.status(), StatusCode::FORBIDDEN);
    let anonymous = app.http.post(format!("{}{path}", app.command_url)).json(&json!({})).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let v4 = format!("/v1/notifications/{}/read", uuid::Uuid::new_v4());
    assert_eq!(read(kim_token.clone(), v4).await.status(), StatusCode::UNPROCESSABLE_ENTITY, "not a notification id");
    let junk = read(kim_token.clone(), "/v1/notifications/not-an-id/read".into()).await;
    assert_eq!(junk.status(), StatusCode::NOT_FOUND);
    let extra =
        app.command(Method::POST, "/v1/notifications/read-all", &kim_token, Some(json!({ "user_id": some }))).await;
    assert_eq!(extra.status(), StatusCode::UNPROCESSABLE_ENTITY, "no field names another user");

    // A locked user's old token marks nothing.
    let admin = app.token_for(app.tenant_id, Role::Admin);
    let status = format!("/v1/users/{kim}/status");
    let lock = app.command(Method::POST, &status, &admin, Some(json!({ "status": "locked" }))).await;
    assert_eq!(lock.status(), StatusCode::OK);
    let locked = read(kim_token, path).await;
    assert!(matches!(locked.status(), StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN), "{locked:?}");
    let user_events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM eventstore.events WHERE event_type = 'UserNotificationsRead'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(user_events, 0, "nothing was recorded");
}
