//! Lists and reads of users, teams, case types, workflows, channels, custom fields,
//! message templates and tenants: tenant-bound, newest first, with stable cursors.

use std::collections::HashSet;

use murima_tests::{eventually, TestApp};
use reqwest::{Method, StatusCode};
use runtime::auth::Role;
use serde_json::{json, Value};

/// Every item of a list, following `next_cursor` (and checking the `Link` header agrees).
async fn all_pages(app: &TestApp, path: &str, token: &str, limit: usize) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            None => format!("{path}?limit={limit}"),
            Some(c) => format!("{path}?limit={limit}&cursor={c}"),
        };
        let r = app.query(&url, token).await;
        assert_eq!(r.status(), StatusCode::OK, "{url}");
        let link = r.headers().get("link").map(|l| l.to_str().unwrap().to_owned());
        let body: Value = r.json().await.unwrap();
        let page = body["items"].as_array().unwrap().clone();
        assert!(page.len() <= limit);
        items.extend(page);
        match body["next_cursor"].as_str() {
            Some(next) => {
                assert!(link.unwrap().contains(next), "the Link header names the next page");
                cursor = Some(next.to_owned());
            }
            None => {
                assert!(link.is_none());
                return items;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_entity_lists_and_reads_within_its_tenant() {
    let app = TestApp::spawn().await;
    let admin = app.token_for(app.tenant_id, Role::Admin);
    let supervisor = app.token_for(app.tenant_id, Role::Supervisor);
    let ok = |r: reqwest::Response| {
        assert!(r.status().is_success(), "{} answered {}", r.url(), r.status());
        r
    };
    let mut channels = Vec::new();
    for name in ["Mail", "Chat", "Phone line", "Web form", "Text"] {
        let r =
            ok(app.command(Method::POST, "/v1/channels", &admin, Some(json!({ "name": name, "type": "chat" }))).await);
        channels.push(r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    let team: Value = ok(app.command(Method::POST, "/v1/teams", &supervisor, Some(json!({ "name": "Tier 1" }))).await)
        .json()
        .await
        .unwrap();
    let team = team["id"].as_str().unwrap().to_owned();
    ok(app
        .command(
            Method::POST,
            &format!("/v1/teams/{team}/members"),
            &supervisor,
            Some(json!({ "user_id": app.user_id, "role": "lead" })),
        )
        .await);
    let field =
        json!({ "entity_type": "case", "field_name": "region", "display_name": "Region", "field_type": "text" });
    ok(app.command(Method::POST, "/v1/custom-fields", &admin, Some(field)).await);
    let template = json!({ "name": "Welcome", "channel_type": "email", "subject": "Hi", "content": "Hello {{name}}" });
    ok(app.command(Method::POST, "/v1/message-templates", &admin, Some(template)).await);

    // Read-your-writes: with the command's position token the new channel is there at once.
    let r = ok(app.command(Method::POST, "/v1/channels", &admin, Some(json!({ "name": "Fax", "type": "web" }))).await);
    let fax: Value = r.json().await.unwrap();
    let position = fax["position"].as_str().unwrap();
    let read =
        app.query(&format!("/v1/channels/{}?position={position}", fax["id"].as_str().unwrap()), &app.token).await;
    assert_eq!(read.status(), StatusCode::OK);
    let listed: Value =
        app.query(&format!("/v1/channels?limit=1&position={position}"), &app.token).await.json().await.unwrap();
    assert_eq!(listed["items"][0]["name"], "Fax");
    channels.push(fax["id"].as_str().unwrap().to_owned());

    // Channels: every one exactly once across pages of two, newest first.
    let listed = eventually("six channels", || async {
        let items = all_pages(&app, "/v1/channels", &app.token, 2).await;
        (items.len() == 6).then_some(items)
    })
    .await;
    let ids: Vec<&str> = listed.iter().map(|c| c["id"].as_str().unwrap()).collect();
    let mut newest_first = channels.clone();
    newest_first.reverse();
    assert_eq!(ids, newest_first);
    let one: Value = app.query(&format!("/v1/channels/{}", channels[0]), &app.token).await.json().await.unwrap();
    assert_eq!(one["name"], "Mail");
    assert_eq!(one["type"], "chat");

    // Users never show their password hash.
    let users = all_pages(&app, "/v1/users", &app.token, 10).await;
    assert!(users.iter().any(|u| u["id"] == json!(app.user_id)));
    assert!(users.iter().all(|u| u.get("password_hash").is_none()));

    // Teams carry their members.
    let team_read: Value = eventually("the team with its member", || async {
        let t: Value = app.query(&format!("/v1/teams/{team}"), &app.token).await.json().await.ok()?;
        (t["members"].as_array()?.len() == 1).then_some(t)
    })
    .await;
    assert_eq!(team_read["members"][0]["user_id"], json!(app.user_id));
    assert_eq!(team_read["members"][0]["role"], "lead");

    let types = all_pages(&app, "/v1/case-types", &app.token, 10).await;
    assert!(types.iter().any(|t| t["id"] == json!(app.case_type_id)));
    assert!(all_pages(&app, "/v1/workflows", &app.token, 10).await.is_empty());

    // MongoDB-backed resources.
    let fields = eventually("the custom field", || async {
        let items = all_pages(&app, "/v1/custom-fields", &app.token, 10).await;
        (items.len() == 1).then_some(items)
    })
    .await;
    assert_eq!(fields[0]["field_name"], "region");
    let field_id = fields[0]["id"].as_str().unwrap();
    let read: Value = app.query(&format!("/v1/custom-fields/{field_id}"), &app.token).await.json().await.unwrap();
    assert_eq!(read["display_name"], "Region");
    let templates = eventually("the template", || async {
        let items = all_pages(&app, "/v1/message-templates", &app.token, 10).await;
        (items.len() == 1).then_some(items)
    })
    .await;
    assert_eq!(templates[0]["name"], "Welcome");

    // Another tenant sees none of it; ids of this tenant are 404 there.
    let (_, other) = app.provision_tenant().await;
    assert!(all_pages(&app, "/v1/channels", &other, 10).await.is_empty());
    assert_eq!(app.query(&format!("/v1/channels/{}", channels[0]), &other).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.query(&format!("/v1/teams/{team}"), &other).await.status(), StatusCode::NOT_FOUND);

    // Tenants: platform administrators list them; a member reads only their own.
    assert_eq!(app.query("/v1/tenants", &app.token).await.status(), StatusCode::FORBIDDEN);
    let tenants = all_pages(&app, "/v1/tenants", &app.platform_token(), 50).await;
    assert!(tenants.iter().any(|t| t["id"] == json!(app.tenant_id)));
    let own: Value = app.query(&format!("/v1/tenants/{}", app.tenant_id), &app.token).await.json().await.unwrap();
    assert_eq!(own["id"], json!(app.tenant_id));
    assert_eq!(app.query(&format!("/v1/tenants/{}", app.tenant_id), &other).await.status(), StatusCode::NOT_FOUND);

    // Bad input is a 400 that says what to fix.
    let r = app.query("/v1/channels?cursor=nonsense", &app.token).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = app.query("/v1/users?limit=1000", &app.token).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let problem: Value = r.json().await.unwrap();
    assert!(problem["detail"].as_str().unwrap().contains("limit"));
    let seen: HashSet<&str> = ids.into_iter().collect();
    assert_eq!(seen.len(), 6);
}
