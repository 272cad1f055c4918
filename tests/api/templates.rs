//! Message templates: variables extracted, rendering for a case reports missing values.

use murima_tests::{eventually, TestApp};
use reqwest::{Method, StatusCode};
use runtime::auth::Role;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread")]
async fn templates_render_for_a_case_and_name_what_is_missing() {
    let app = TestApp::spawn().await;
    let supervisor = app.token_for(app.tenant_id, Role::Supervisor);
    let body = json!({
        "name": "Case resolved", "channel_type": "email",
        "subject": "Your case #{{case_number}} has been resolved",
        "content": "Dear {{customer_name}}, your case \"{{case_title}}\" is {{case_status}}. {{company_name}}",
        "tags": ["resolution"], "category": "case_status"
    });
    assert_eq!(
        app.command(Method::POST, "/v1/message-templates", &app.token, Some(body.clone())).await.status(),
        StatusCode::FORBIDDEN
    );
    let r = app.command(Method::POST, "/v1/message-templates", &supervisor, Some(body)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let template = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let bad = json!({ "name": "Bad", "channel_type": "sms", "content": "Hi {{first name}}" });
    let r = app.command(Method::POST, "/v1/message-templates", &supervisor, Some(bad)).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let case = app.open_case("Printer on fire").await["id"].as_str().unwrap().to_owned();
    let render_path = format!("/v1/message-templates/{template}/render");
    let render = |values: Value| {
        let body = json!({ "case_id": case, "values": values });
        app.command(Method::POST, &render_path, &app.token, Some(body))
    };
    let r = render(json!({})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let out: Value = r.json().await.unwrap();
    assert_eq!(out["subject"], "Your case #CASE-000001 has been resolved");
    assert_eq!(out["missing"], json!(["customer_name"]));
    assert!(out["content"].as_str().unwrap().contains("\"Printer on fire\" is open. Test tenant"), "{out}");
    let out: Value = render(json!({ "customer_name": "Amina" })).await.json().await.unwrap();
    assert_eq!(out["missing"], json!([]));
    assert!(out["content"].as_str().unwrap().starts_with("Dear Amina,"));

    let r = app
        .command(
            Method::POST,
            &format!("/v1/message-templates/{template}/render"),
            &app.token,
            Some(json!({ "case_id": uuid::Uuid::now_v7() })),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let mongo = mongodb::Client::with_uri_str(&app.settings.mongo_url).await.unwrap();
    let templates = mongo.database(&app.settings.mongo_database).collection::<mongodb::bson::Document>(
        &runtime::tenancy::Tenancy(app.tenant_id).mongo_collection("message_templates"),
    );
    let doc = eventually("the template in MongoDB", || async {
        templates.find_one(mongodb::bson::doc! { "_id": &template }).await.ok().flatten()
    })
    .await;
    let variables: Vec<&str> = doc.get_array("variables").unwrap().iter().filter_map(|v| v.as_str()).collect();
    assert_eq!(variables, vec!["case_number", "case_status", "case_title", "company_name", "customer_name"]);
}
