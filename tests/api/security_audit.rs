//! Audit rights (issue 14): reading an audit trail needs `audit:read`; the content of an
//! internal note shows only to readers who may see internal notes (or wrote it); IP
//! address and user agent only to administrators. Rights are the reader's live ones.

use murima_tests::{eventually, TestApp};
use reqwest::{Method, StatusCode};
use runtime::auth::Role;
use serde_json::{json, Value};

const SECRET_NOTE: &str = "The caller's account number is 4417";

async fn trail(app: &TestApp, path: &str, token: &str) -> (StatusCode, Value) {
    let answer = app.query(path, token).await;
    let status = answer.status();
    (status, answer.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_trails_follow_the_readers_rights() {
    let app = TestApp::spawn().await;
    let operator = app.token_for(app.tenant_id, Role::Admin);
    let case = app.open_case("A sensitive call").await["id"].as_str().unwrap().to_owned();
    let author = app.create_user("note.author", "supervisor").await;
    let reader = app.create_user("agent.reader", "agent").await;
    let sup_id = app.create_user("sup.reader", "supervisor").await;
    app.create_user("audit.admin", "admin").await;
    let author_token = app.login_token("note.author").await;
    let body = json!({ "content": SECRET_NOTE, "is_internal": true });
    let added = app.command(Method::POST, &format!("/v1/cases/{case}/notes"), &author_token, Some(body)).await;
    assert_eq!(added.status(), StatusCode::CREATED);
    let note = added.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let note_trail = format!("/v1/audit/case_note/{note}");
    let admin = app.login_token("audit.admin").await;
    let entries = eventually("the note's audit entry", || async {
        let (status, body) = trail(&app, &note_trail, &admin).await;
        (status == StatusCode::OK && !body["items"].as_array()?.is_empty()).then_some(body)
    })
    .await;
    assert!(entries.to_string().contains(SECRET_NOTE), "an administrator reads it all: {entries}");
    assert!(entries["items"][0].get("ip_address").is_some(), "an administrator sees the IP address: {entries}");

    // An agent holds no audit:read.
    let agent = app.login_token("agent.reader").await;
    for path in [note_trail.clone(), format!("/v1/cases/{case}/audit"), format!("/v1/audit/user/{author}")] {
        let (status, body) = trail(&app, &path, &agent).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        assert!(body["detail"].as_str().unwrap().contains("audit:read"), "{body}");
    }

    // Granted audit:read (but not notes:view_internal), the same token reads the trail
    // with the internal note's content redacted, and no IP address or user agent.
    let grant = json!({ "permissions": { "audit": ["read"] } });
    let granted = app.command(Method::PUT, &format!("/v1/users/{reader}/permissions"), &operator, Some(grant)).await;
    assert!(granted.status().is_success());
    let (status, body) = trail(&app, &note_trail, &agent).await;
    assert_eq!(status, StatusCode::OK);
    let text = body.to_string();
    assert!(!text.contains(SECRET_NOTE) && text.contains("redacted"), "{text}");
    assert!(text.contains("is_internal"), "what happened stays visible: {text}");
    let (status, users) = trail(&app, &format!("/v1/audit/user/{author}"), &agent).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!users["items"].as_array().unwrap().is_empty());
    for entry in users["items"].as_array().unwrap().iter().chain(body["items"].as_array().unwrap()) {
        assert!(entry.get("ip_address").is_none() && entry.get("user_agent").is_none(), "{entry}");
    }

    // A supervisor may see internal notes; the author always sees their own.
    let supervisor = app.login_token("sup.reader").await;
    let (status, body) = trail(&app, &note_trail, &supervisor).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.to_string().contains(SECRET_NOTE));
    assert!(body["items"][0].get("ip_address").is_none(), "IP addresses are for administrators");
    let (_, body) = trail(&app, &note_trail, &author_token).await;
    assert!(body.to_string().contains(SECRET_NOTE));

    // Demoted, the supervisor's next read is refused: the query API reads live rights.
    let demoted = app
        .command(Method::POST, &format!("/v1/users/{sup_id}/role"), &operator, Some(json!({ "role": "agent" })))
        .await;
    assert!(demoted.status().is_success());
    let (status, _) = trail(&app, &note_trail, &supervisor).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "demoted a moment ago, and refused at once");
}
