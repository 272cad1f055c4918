//! Custom field definitions: checked with the case type's form where visible, stored in MongoDB.

use murima_tests::{eventually, TestApp};
use reqwest::{Method, StatusCode};
use runtime::auth::Role;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread")]
async fn field_definitions_validate_cases_of_the_types_they_are_visible_for() {
    let app = TestApp::spawn().await;
    let admin = app.token_for(app.tenant_id, Role::Admin);
    let other_type = app.create_case_type(app.tenant_id, "Other", json!({ "fields": [] })).await;
    let definition = json!({
        "entity_type": "case", "field_name": "satisfaction", "display_name": "Customer satisfaction",
        "field_type": "select", "required": true,
        "options": [{ "label": "Happy", "value": "happy" }, { "label": "Unhappy", "value": "unhappy" }],
        "visibility_rules": { "case_type_ids": [app.case_type_id], "roles": ["agent", "supervisor"] },
        "order": 1, "section": "feedback"
    });
    assert_eq!(
        app.command(Method::POST, "/v1/custom-fields", &app.token, Some(definition.clone())).await.status(),
        StatusCode::FORBIDDEN
    );
    let r = app.command(Method::POST, "/v1/custom-fields", &admin, Some(definition.clone())).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.command(Method::POST, "/v1/custom-fields", &admin, Some(definition)).await.status(),
        StatusCode::CONFLICT
    );

    // Required for the type it is visible for, not for another.
    let open = |case_type: Value, fields: Value| json!({ "title": "Feedback", "case_type_id": case_type, "custom_fields": fields });
    let r = app.command(Method::POST, "/v1/cases", &app.token, Some(open(json!(app.case_type_id), json!({})))).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["errors"][0]["field"], "custom_fields.satisfaction");
    let r = app
        .command(
            Method::POST,
            "/v1/cases",
            &app.token,
            Some(open(json!(app.case_type_id), json!({ "satisfaction": "meh" }))),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .command(
            Method::POST,
            "/v1/cases",
            &app.token,
            Some(open(json!(app.case_type_id), json!({ "satisfaction": "happy" }))),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app.command(Method::POST, "/v1/cases", &app.token, Some(open(json!(other_type), json!({})))).await;
    assert_eq!(r.status(), StatusCode::CREATED);

    // Deactivated definitions no longer apply.
    let r = app.command(Method::POST, &format!("/v1/custom-fields/{id}/deactivate"), &admin, Some(json!({}))).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app.command(Method::POST, "/v1/cases", &app.token, Some(open(json!(app.case_type_id), json!({})))).await;
    assert_eq!(r.status(), StatusCode::CREATED);

    let mongo = mongodb::Client::with_uri_str(&app.settings.mongo_url).await.unwrap();
    let definitions = mongo.database(&app.settings.mongo_database).collection::<mongodb::bson::Document>(
        &runtime::tenancy::Tenancy(app.tenant_id).mongo_collection("custom_field_definitions"),
    );
    let doc = eventually("the deactivated definition in MongoDB", || async {
        definitions.find_one(mongodb::bson::doc! { "_id": &id, "version": 2_i64 }).await.ok().flatten()
    })
    .await;
    assert_eq!(doc.get_str("field_name").unwrap(), "satisfaction");
    assert!(!doc.get_bool("is_active").unwrap());
}

/// A command API keeps the list of its tenants' field definitions while it follows the
/// journal's notifications: a definition added through another command API applies to
/// its next cases as soon as the notification comes, not when the list idles out.
#[tokio::test(flavor = "multi_thread")]
async fn a_definition_added_through_another_command_api_applies_to_the_next_case() {
    let app = TestApp::spawn().await;
    let (other_url, _other) = app.another_command_api().await;
    let admin = app.token_for(app.tenant_id, Role::Admin);
    let open = || json!({ "title": "Feedback", "case_type_id": app.case_type_id, "custom_fields": {} });
    // This API reads (and keeps) the tenant's definitions: none yet.
    let r = app.command(Method::POST, "/v1/cases", &app.token, Some(open())).await;
    assert_eq!(r.status(), StatusCode::CREATED);

    let definition = json!({
        "entity_type": "case", "field_name": "channel_quality", "display_name": "Channel quality",
        "field_type": "text", "required": true, "order": 1
    });
    let r = app
        .http
        .post(format!("{other_url}/v1/custom-fields"))
        .bearer_auth(&admin)
        .json(&definition)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    // The required field is asked for here too, once the notification came in.
    let refused = eventually("the other API's definition applies here", || async {
        let r = app.command(Method::POST, "/v1/cases", &app.token, Some(open())).await;
        (r.status() == StatusCode::UNPROCESSABLE_ENTITY).then_some(r.json::<Value>().await.unwrap())
    })
    .await;
    assert_eq!(refused["errors"][0]["field"], "custom_fields.channel_quality");
}
