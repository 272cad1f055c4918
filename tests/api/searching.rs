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
        let r = app.post_ok("/v1/cases", &app.token, body).await;
        cases.push(r["id"].as_str().unwrap().to_owned());
    }
    let channel = app.post_ok("/v1/channels", &admin, json!({ "name": "Phone", "type": "voice" })).await;
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

#[tokio::test(flavor = "multi_thread")]
async fn a_search_hit_carries_its_case_type_name_and_an_interaction_its_channel_type() {
    let app = &TestApp::spawn().await;
    let admin = app.token_for(app.tenant_id, Role::Admin);
    let leak = app.create_case_type(app.tenant_id, "Water leak", json!({ "fields": [] })).await;
    let open = |title: &str, case_type: &Value| {
        let body = json!({ "title": title, "case_type_id": case_type, "priority": "high" });
        let request = app.command(Method::POST, "/v1/cases", &app.token, Some(body));
        async move {
            let r: Value = request.await.json().await.unwrap();
            (r["id"].as_str().unwrap().to_owned(), r["position"].as_str().unwrap().to_owned())
        }
    };
    let search = |q: String| async move { app.query(&format!("/v1/search/cases?{q}"), &app.token).await };

    // A new case is found with its case type's name, as the case list shows it.
    let (dripping, _) = open("Dripping ceiling", &json!(leak)).await;
    let (_, position) = open("Dripping tap", &json!(app.case_type_id)).await;
    let names = |found: &Value| -> Vec<(String, Value)> {
        let items = found["items"].as_array().unwrap().iter();
        items.map(|i| (i["id"].as_str().unwrap().to_owned(), i["case_type_name"].clone())).collect()
    };
    let hit = |found: &Value, id: &str| names(found).into_iter().find(|(i, _)| i == id).map(|(_, n)| n);
    let general = |found: &Value| names(found).iter().filter(|(_, n)| n == "General enquiry").count();
    let found: Value = search(format!("q=dripping&position={position}")).await.json().await.unwrap();
    assert_eq!(found["total"], json!(2), "{found}");
    assert_eq!(hit(&found, &dripping), Some(json!("Water leak")), "{found}");
    assert_eq!(general(&found), 1, "{found}");
    let listed: Value = app.query(&format!("/v1/cases?position={position}"), &app.token).await.json().await.unwrap();
    let listed = listed["items"].as_array().unwrap().iter().find(|c| c["id"] == json!(dripping)).cloned();
    assert_eq!(listed.map(|c| c["case_type_name"].clone()), Some(json!("Water leak")));

    // A rename reaches the cases already indexed, and only those of that type.
    let renamed = app
        .command(Method::PATCH, &format!("/v1/case-types/{leak}"), &admin, Some(json!({ "name": "Plumbing" })))
        .await;
    assert!(renamed.status().is_success(), "{}", renamed.text().await.unwrap());
    let found: Value = eventually("the new case type name in search", || async {
        let f: Value = search("q=dripping".to_owned()).await.json().await.ok()?;
        (hit(&f, &dripping) == Some(json!("Plumbing"))).then_some(f)
    })
    .await;
    assert_eq!(general(&found), 1, "{found}");
    // A case opened after the rename carries the new name from the start.
    let (later, position) = open("Dripping pipe", &json!(leak)).await;
    let found: Value = search(format!("q=pipe&position={position}")).await.json().await.unwrap();
    assert_eq!(hit(&found, &later), Some(json!("Plumbing")), "{found}");

    // An interaction carries its channel's type, also when recorded after a rename.
    let channel = app.post_ok("/v1/channels", &admin, json!({ "name": "Phone", "type": "voice" })).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let record = |content: &str| {
        let body = json!({ "channel_id": channel, "direction": "inbound", "content": content });
        let path = format!("/v1/cases/{dripping}/interactions");
        async move {
            let r = app.command(Method::POST, &path, &app.token, Some(body)).await;
            assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        }
    };
    record("Caller hears gurgling pipes").await;
    let renamed = app
        .command(Method::PATCH, &format!("/v1/channels/{channel}"), &admin, Some(json!({ "name": "Hotline" })))
        .await;
    assert!(renamed.status().is_success());
    record("Caller hears gurgling again").await;
    let heard: Value = eventually("both interactions", || async {
        let f: Value = app.query("/v1/search/interactions?q=gurgling", &app.token).await.json().await.ok()?;
        (f["total"] == json!(2)).then_some(f)
    })
    .await;
    let types: Vec<&Value> = heard["items"].as_array().unwrap().iter().map(|i| &i["channel_type"]).collect();
    assert_eq!(types, vec![&json!("voice"), &json!("voice")], "{heard}");
}
