//! Channels and interactions: references to the case and channel are checked (422).

use murima_tests::{eventually, TestApp};
use reqwest::{Method, StatusCode};
use runtime::auth::Role;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread")]
async fn interactions_are_recorded_on_open_cases_through_active_channels() {
    let app = TestApp::spawn().await;
    let admin = app.token_for(app.tenant_id, Role::Admin);
    let create =
        json!({ "name": "Support inbox", "type": "email", "configuration": { "address": "help@example.org" } });
    assert_eq!(
        app.command(Method::POST, "/v1/channels", &app.token, Some(create.clone())).await.status(),
        StatusCode::FORBIDDEN
    );
    let r = app.command(Method::POST, "/v1/channels", &admin, Some(create.clone())).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let channel = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    assert_eq!(app.command(Method::POST, "/v1/channels", &admin, Some(create)).await.status(), StatusCode::CONFLICT);
    let bad_type = json!({ "name": "Pigeon", "type": "pigeon" });
    assert_eq!(
        app.command(Method::POST, "/v1/channels", &admin, Some(bad_type)).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );

    let case = app.open_case("Refund request").await["id"].as_str().unwrap().to_owned();
    let record =
        |channel_id: &str| json!({ "channel_id": channel_id, "direction": "inbound", "content": "Customer called" });
    let r =
        app.command(Method::POST, &format!("/v1/cases/{case}/interactions"), &app.token, Some(record(&channel))).await;
    assert_eq!(r.status(), StatusCode::CREATED);

    // An interaction of a month long past (within the tenant's retention, a year by
    // default) lands in a partition made for it on demand.
    let past = chrono::Utc::now() - chrono::Duration::days(300);
    let old = json!({ "channel_id": channel, "direction": "outbound", "content": "Letter sent", "occurred_at": past });
    let r = app.command(Method::POST, &format!("/v1/cases/{case}/interactions"), &app.token, Some(old)).await;
    assert_eq!(r.status(), StatusCode::CREATED);

    // Unknown case and unknown channel are named.
    let ghost = uuid::Uuid::now_v7().to_string();
    let r =
        app.command(Method::POST, &format!("/v1/cases/{ghost}/interactions"), &app.token, Some(record(&ghost))).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let p: Value = r.json().await.unwrap();
    let fields: Vec<&str> = p["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, vec!["case_id", "channel_id"]);

    // A deactivated channel carries no interactions.
    let r = app.command(Method::POST, &format!("/v1/channels/{channel}/deactivate"), &admin, Some(json!({}))).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r =
        app.command(Method::POST, &format!("/v1/cases/{case}/interactions"), &app.token, Some(record(&channel))).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let schema = runtime::tenancy::Tenancy(app.tenant_id).pg_schema();
    let pool = app.pool.clone();
    let (kind, active): (String, bool) =
        app.row_at(&app.tenant_table("channels"), "type, is_active", channel.parse().unwrap(), 2).await;
    assert_eq!((kind.as_str(), active), ("email", false));
    let recorded: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM eventstore.events WHERE event_type = 'InteractionRecorded' AND tenant_id = $1",
    )
    .bind(app.tenant_id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(recorded, 2);
    let case_id: uuid::Uuid = case.parse().unwrap();
    let months: Vec<String> = eventually("both interactions in their month partitions", || async {
        let rows: Vec<(String,)> = sqlx::query_as(&format!(
            "SELECT tableoid::regclass::text FROM {schema}.interactions WHERE case_id = $1 ORDER BY timestamp"
        ))
        .bind(case_id)
        .fetch_all(&pool)
        .await
        .ok()?;
        (rows.len() == 2).then(|| rows.into_iter().map(|(t,)| t).collect())
    })
    .await;
    assert!(months[0].ends_with(&past.format("interactions_y%Ym%m").to_string()), "{months:?}");
    let this_month = chrono::Utc::now().format("interactions_y%Ym%m").to_string();
    assert!(months[1].ends_with(&this_month), "{months:?}");
}

/// Credentials past the limits (64 of them, a name of 256 characters) are a 422 naming
/// the configuration, on create and on update, and nothing is recorded or stored.
#[tokio::test(flavor = "multi_thread")]
async fn too_many_or_too_long_credentials_are_refused_before_anything_is_stored() {
    let app = TestApp::spawn().await;
    let admin = app.token_for(app.tenant_id, Role::Admin);
    let many: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("password_{i}"), json!("hunter2-secret"))).collect();
    let long = json!({ format!("password_{}", "x".repeat(300)): "hunter2-secret" });
    for configuration in [Value::Object(many), long] {
        let body = json!({ "name": "Inbox", "type": "email", "configuration": configuration });
        let r = app.command(Method::POST, "/v1/channels", &admin, Some(body)).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let problem: Value = r.json().await.unwrap();
        assert!(problem.to_string().contains("configuration"), "{problem}");
    }
    let r = app.command(Method::POST, "/v1/channels", &admin, Some(json!({ "name": "Inbox", "type": "email" }))).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let many: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("password_{i}"), json!("hunter2-secret"))).collect();
    let r =
        app.command(Method::PATCH, &format!("/v1/channels/{id}"), &admin, Some(json!({ "configuration": many }))).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.journal_count("channel").await, 1, "only the plain channel is recorded");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM eventstore.channel_credentials WHERE tenant_id = $1")
        .bind(app.tenant_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0, "no credential is stored");
}
