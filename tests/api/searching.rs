//! Search over cases, interactions and notes: highlights, facets, filters, visibility of
//! internal notes, typeahead; and the audit trail of any entity.

use murima_tests::{eventually, TestApp};
use reqwest::{Method, StatusCode};
use runtime::auth::Role;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread")]
async fn cases_interactions_and_notes_are_searchable_with_facets_and_highlights() {
    let app = TestApp::spawn().await;
    let admin = app.token_for(app.tenant_id, Role::Admin);
    let colleague = app.create_user("colleague", "agent").await;
    let colleague_token = app.keys.issue(colleague, app.tenant_id, Role::Agent, chrono::Duration::hours(1));
    let mut cases = Vec::new();
    for (title, priority) in [("Broken boiler", "high"), ("Boiler noise", "low"), ("Lost parcel", "high")] {
        let body = json!({ "title": title, "case_type_id": app.case_type_id, "priority": priority });
        let r: Value = app.command(Method::POST, "/v1/cases", &app.token, Some(body)).await.json().await.unwrap();
        cases.push(r["id"].as_str().unwrap().to_owned());
    }
    let channel: Value = app
        .command(Method::POST, "/v1/channels", &admin, Some(json!({ "name": "Phone", "type": "voice" })))
        .await
        .json()
        .await
        .unwrap();
    let interaction = json!({ "channel_id": channel["id"], "direction": "inbound", "content": "Customer reports the boiler is leaking" });
    assert!(app
        .command(Method::POST, &format!("/v1/cases/{}/interactions", cases[0]), &app.token, Some(interaction))
        .await
        .status()
        .is_success());
    let public = json!({ "content": "Engineer booked for the boiler", "is_internal": false });
    assert!(app
        .command(Method::POST, &format!("/v1/cases/{}/notes", cases[0]), &app.token, Some(public))
        .await
        .status()
        .is_success());
    let private = json!({ "content": "Boiler warranty looks void", "is_internal": true });
    assert!(app
        .command(Method::POST, &format!("/v1/cases/{}/notes", cases[0]), &colleague_token, Some(private))
        .await
        .status()
        .is_success());

    let found: Value = eventually("boiler cases", || async {
        let f: Value = app.query("/v1/search/cases?q=boiler", &app.token).await.json().await.ok()?;
        (f["total"] == json!(2)).then_some(f)
    })
    .await;
    assert_eq!(found["facets"]["priority"], json!({ "high": 1, "low": 1 }));
    assert_eq!(found["facets"]["status"], json!({ "open": 2 }));
    assert!(found["items"][0]["highlight"]["title"][0].as_str().unwrap().contains("<em>"));
    let high: Value = app.query("/v1/search/cases?q=boiler&priority=high", &app.token).await.json().await.unwrap();
    assert_eq!(high["total"], json!(1));
    assert_eq!(high["items"][0]["id"], json!(cases[0]));

    let heard: Value = eventually("the interaction", || async {
        let f: Value = app.query("/v1/search/interactions?q=leaking", &app.token).await.json().await.ok()?;
        (f["total"] == json!(1)).then_some(f)
    })
    .await;
    assert_eq!(heard["facets"]["direction"], json!({ "inbound": 1 }));
    assert_eq!(heard["items"][0]["case_id"], json!(cases[0]));

    // Notes: an agent finds public notes and not a colleague's internal one; the colleague does.
    let notes: Value = eventually("the notes", || async {
        let f: Value = app
            .query(&format!("/v1/search/notes?q=boiler&case_id={}", cases[0]), &colleague_token)
            .await
            .json()
            .await
            .ok()?;
        (f["total"] == json!(2)).then_some(f)
    })
    .await;
    assert_eq!(notes["items"].as_array().unwrap().len(), 2);
    let mine: Value = app.query("/v1/search/notes?q=boiler", &app.token).await.json().await.unwrap();
    assert_eq!(mine["total"], json!(1));
    assert_eq!(mine["items"][0]["content"], "Engineer booked for the boiler");

    // Typeahead on titles and case numbers.
    let suggested: Value = app.query("/v1/search/suggest?prefix=boi", &app.token).await.json().await.unwrap();
    let titles: Vec<&str> = suggested["items"].as_array().unwrap().iter().filter_map(|i| i["title"].as_str()).collect();
    assert!(titles.contains(&"Boiler noise"), "{suggested}");
    let by_number: Value = app.query("/v1/search/suggest?prefix=CASE-", &app.token).await.json().await.unwrap();
    assert_eq!(by_number["items"].as_array().unwrap().len(), 3);

    // Another tenant finds nothing of this one.
    let (_, other) = app.provision_tenant().await;
    let theirs: Value = app.query("/v1/search/cases?q=boiler", &other).await.json().await.unwrap();
    assert_eq!(theirs["total"], json!(0));

    for bad in ["/v1/search/cases?q=", "/v1/search/notes?q=x&limit=0", "/v1/search/suggest?prefix="] {
        assert_eq!(app.query(bad, &app.token).await.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn any_entity_has_an_audit_trail() {
    let app = TestApp::spawn().await;
    let admin = app.token_for(app.tenant_id, Role::Admin);
    let r = app.command(Method::POST, "/v1/channels", &admin, Some(json!({ "name": "Desk", "type": "web" }))).await;
    let channel = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let r = app
        .command(Method::PATCH, &format!("/v1/channels/{channel}"), &admin, Some(json!({ "name": "Front desk" })))
        .await;
    let position = r.json::<Value>().await.unwrap()["position"].as_str().unwrap().to_owned();
    let trail: Value =
        app.query(&format!("/v1/audit/channel/{channel}?position={position}"), &admin).await.json().await.unwrap();
    let items = trail["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["entity_version"], 2, "newest first");
    let change = items[0]["changes"].as_array().unwrap().iter().find(|c| c["field"] == "name").unwrap().clone();
    assert_eq!((change["old_value"].clone(), change["new_value"].clone()), (json!("Desk"), json!("Front desk")));
    let user_trail: Value = app.query(&format!("/v1/audit/user/{}", app.user_id), &admin).await.json().await.unwrap();
    assert_eq!(user_trail["items"][0]["action"], "create");
    assert_eq!(app.query(&format!("/v1/audit/spaceship/{channel}"), &admin).await.status(), StatusCode::BAD_REQUEST);
}
