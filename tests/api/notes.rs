//! Case notes: authors and moderators, the MongoDB case_notes collection.

use murima_tests::{eventually, TestApp};
use reqwest::{Method, StatusCode};
use runtime::auth::Role;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread")]
async fn notes_are_added_edited_by_their_author_or_a_moderator_and_deleted() {
    let app = TestApp::spawn().await;
    let case = app.open_case("Noisy line").await["id"].as_str().unwrap().to_owned();
    let body = json!({ "content": "Customer says the line crackles", "is_internal": true, "tags": ["follow-up"],
                       "attachments": [{ "filename": "call.mp3", "mime_type": "audio/mpeg", "size": 2048, "storage_path": "t/c/call.mp3" }] });
    let r = app.command(Method::POST, &format!("/v1/cases/{case}/notes"), &app.token, Some(body)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let note = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();

    let r = app
        .command(
            Method::PATCH,
            &format!("/v1/notes/{note}"),
            &app.token,
            Some(json!({ "content": "Line crackles at night" })),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let other_agent = app.keys.issue(uuid::Uuid::now_v7(), app.tenant_id, Role::Agent, chrono::Duration::hours(1));
    let r = app
        .command(Method::PATCH, &format!("/v1/notes/{note}"), &other_agent, Some(json!({ "is_internal": false })))
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let p: Value = r.json().await.unwrap();
    assert!(p["detail"].as_str().unwrap().contains("notes:moderate"));
    let supervisor = app.keys.issue(uuid::Uuid::now_v7(), app.tenant_id, Role::Supervisor, chrono::Duration::hours(1));
    let r = app
        .command(Method::PATCH, &format!("/v1/notes/{note}"), &supervisor, Some(json!({ "tags": ["escalated"] })))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app.command(Method::DELETE, &format!("/v1/notes/{note}"), &app.token, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r =
        app.command(Method::PATCH, &format!("/v1/notes/{note}"), &app.token, Some(json!({ "content": "again" }))).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let mongo = mongodb::Client::with_uri_str(&app.settings.mongo_url).await.unwrap();
    let notes = mongo.database(&app.settings.mongo_database).collection::<mongodb::bson::Document>(
        &runtime::tenancy::Tenancy(app.tenant_id).mongo_collection("case_notes"),
    );
    let doc = eventually("the note at version 4 in MongoDB", || async {
        notes.find_one(mongodb::bson::doc! { "_id": &note, "version": 4_i64 }).await.ok().flatten()
    })
    .await;
    assert_eq!(doc.get_str("content").unwrap(), "Line crackles at night");
    assert_eq!(doc.get_array("tags").unwrap().len(), 1);
    assert!(doc.get_datetime("deleted_at").is_ok());
    assert_eq!(doc.get_array("attachments").unwrap().len(), 1);
}
