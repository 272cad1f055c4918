//! The read models beyond the case row: denormalised names, resolution time and the
//! statistics view in PostgreSQL; interactions, notes, audit entries and typeahead in
//! Elasticsearch; counters by priority and team, notifications, presence and permission
//! cache invalidation in Redis; and the projector's checkpoints.

use murima_tests::{eventually, TestApp};
use redis::AsyncCommands;
use reqwest::{Method, StatusCode};
use runtime::auth::Role;
use runtime::tenancy::{Tenancy, CASES, ES_AUDIT_LOGS, INTERACTIONS, NOTES};
use serde_json::{json, Value};
use uuid::Uuid;

async fn search(app: &TestApp, alias: &str, body: Value) -> Value {
    let _ = app.http.post(format!("{}/_refresh", app.settings.elastic_url)).send().await;
    app.http
        .post(format!("{}/{alias}/_search", app.settings.elastic_url))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap_or(Value::Null)
}

fn hits(result: &Value) -> Vec<Value> {
    result["hits"]["hits"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_store_holds_what_the_seed_puts_there() {
    let app = TestApp::spawn().await;
    let t = Tenancy(app.tenant_id);
    let admin = app.token_for(app.tenant_id, Role::Admin);
    let supervisor = app.token_for(app.tenant_id, Role::Supervisor);
    let dana = app.create_user("dana", "agent").await;
    let dana_token = app.keys.issue(dana, app.tenant_id, Role::Agent, chrono::Duration::hours(1));

    let case = app.open_case("Router keeps rebooting").await["id"].as_str().unwrap().to_owned();
    let second = app.open_case("Second line").await["id"].as_str().unwrap().to_owned();
    let ok = |r: reqwest::Response| {
        assert!(r.status().is_success(), "{} failed", r.url());
        r
    };
    ok(app
        .command(
            Method::POST,
            &format!("/v1/cases/{case}/assignment"),
            &app.token,
            Some(json!({ "assigned_to": dana })),
        )
        .await);
    let team: Value = ok(app.command(Method::POST, "/v1/teams", &supervisor, Some(json!({ "name": "Tier 2" }))).await)
        .json()
        .await
        .unwrap();
    let team = team["id"].as_str().unwrap().to_owned();
    ok(app
        .command(Method::POST, &format!("/v1/cases/{case}/team"), &supervisor, Some(json!({ "team_id": team })))
        .await);
    let channel: Value =
        ok(app.command(Method::POST, "/v1/channels", &admin, Some(json!({ "name": "Chat", "type": "chat" }))).await)
            .json()
            .await
            .unwrap();
    let interaction =
        json!({ "channel_id": channel["id"], "direction": "inbound", "content": "The router blinks orange" });
    ok(app.command(Method::POST, &format!("/v1/cases/{case}/interactions"), &app.token, Some(interaction)).await);
    let note = json!({ "content": "Firmware rollback scheduled", "is_internal": true });
    ok(app.command(Method::POST, &format!("/v1/cases/{case}/notes"), &app.token, Some(note)).await);

    // Counters by priority and team while the case is open.
    eventually("counters by priority and team", || async {
        let counters: Value = app.query("/v1/counters", &app.token).await.json().await.ok()?;
        (counters["open_cases_by_team"][&team] == json!(1) && counters["open_cases_by_priority"]["high"] == json!(2))
            .then_some(())
    })
    .await;

    // The assignee is notified; the author of the assignment is not.
    let notifications: Value = eventually("dana's notification", || async {
        let n: Value = app.query("/v1/notifications", &dana_token).await.json().await.ok()?;
        (n["total"] == json!(1)).then_some(n)
    })
    .await;
    assert_eq!(notifications["items"][0]["type"], "case_assigned");
    assert_eq!(notifications["items"][0]["subject"]["case_id"], json!(case));
    let own: Value = app.query("/v1/notifications", &app.token).await.json().await.unwrap();
    assert_eq!(own["total"], json!(0));

    // Renaming the case type renames it on its cases; resolving records when.
    ok(app
        .command(
            Method::PATCH,
            &format!("/v1/case-types/{}", app.case_type_id),
            &admin,
            Some(json!({ "name": "Connectivity" })),
        )
        .await);
    ok(app
        .command(Method::POST, &format!("/v1/cases/{case}/status"), &app.token, Some(json!({ "status": "resolved" })))
        .await);
    let schema = t.pg_schema();
    let case_id: Uuid = case.parse().unwrap();
    let row: (Option<String>, Option<String>, bool) = eventually("the denormalised case row", || async {
        let row: (Option<String>, Option<String>, bool) = sqlx::query_as(&format!(
            "SELECT case_type_name, assigned_to_username, resolved_at IS NOT NULL FROM {schema}.cases WHERE id = $1"
        ))
        .bind(case_id)
        .fetch_one(&app.pool)
        .await
        .ok()?;
        (row.0.as_deref() == Some("Connectivity") && row.2).then_some(row)
    })
    .await;
    assert_eq!(row.1.as_deref(), Some("dana"));
    let detail: Value = app.query(&format!("/v1/cases/{case}"), &app.token).await.json().await.unwrap();
    assert_eq!(detail["case_type_name"], "Connectivity");
    assert_eq!(detail["assigned_to_username"], "dana");
    assert!(detail["resolved_at"].is_string());

    // The statistics view is refreshed on its schedule (2 s in tests).
    let stats: Vec<(String, String, i64)> = eventually("case_statistics to be refreshed", || async {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(&format!(
            "SELECT case_type_name, status, case_count FROM {schema}.case_statistics ORDER BY status"
        ))
        .fetch_all(&app.pool)
        .await
        .ok()?;
        (rows.len() == 2 && rows[0].0 == "Connectivity").then_some(rows)
    })
    .await;
    assert_eq!(stats, [("Connectivity".into(), "open".into(), 1), ("Connectivity".into(), "resolved".into(), 1)]);

    // The seed's foreign keys and tenant-scoped unique names hold in the tenant schema.
    let constraints: Vec<String> = sqlx::query_scalar(
        "SELECT conname::text FROM pg_constraint WHERE connamespace = $1::regnamespace AND contype IN ('f', 'u')",
    )
    .bind(&schema)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    for expected in [
        "cases_case_type_id_fkey",
        "cases_created_by_fkey",
        "cases_assigned_to_fkey",
        "tasks_case_id_fkey",
        "documents_case_id_fkey",
        "interactions_case_id_fkey",
        "interactions_channel_id_fkey",
        "team_members_user_id_fkey",
        "users_email_tenant_unique",
        "teams_name_tenant_unique",
        "case_types_name_tenant_unique",
        "channels_name_tenant_unique",
        "workflows_name_tenant_unique",
    ] {
        assert!(constraints.iter().any(|c| c == expected), "{expected} missing from {constraints:?}");
    }

    // The PostgreSQL projection commits its checkpoint with its rows.
    let group = format!("{}.postgres", app.settings.kafka_group_prefix);
    let checkpoints: i64 = sqlx::query_scalar("SELECT count(*) FROM projector.checkpoints WHERE projection = $1")
        .bind(&group)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(checkpoints > 0, "no checkpoint for {group}");

    // Elasticsearch: interactions and notes are searchable, every event is in the audit index.
    app.wait_for_all_stores().await;
    let found =
        search(&app, &t.es_alias(INTERACTIONS), json!({ "query": { "match": { "content": "blinking" } } })).await;
    assert_eq!(hits(&found).len(), 1, "interaction search: {found}");
    assert_eq!(hits(&found)[0]["_source"]["case_id"], json!(case));
    let found = search(&app, &t.es_alias(NOTES), json!({ "query": { "match": { "content": "rollbacks" } } })).await;
    assert_eq!(hits(&found).len(), 1, "note search: {found}");
    assert_eq!(hits(&found)[0]["_source"]["is_internal"], json!(true));
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM eventstore.events WHERE tenant_id = $1")
        .bind(app.tenant_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let audit = search(&app, &t.es_alias(ES_AUDIT_LOGS), json!({ "size": 1000, "query": { "match_all": {} } })).await;
    assert_eq!(hits(&audit).len() as i64, events, "one audit entry per event");
    let status_changes = search(
        &app,
        &t.es_alias(ES_AUDIT_LOGS),
        json!({ "query": { "nested": { "path": "changes", "query": { "term": { "changes.field": "status" } } } } }),
    )
    .await;
    assert!(!hits(&status_changes).is_empty(), "nested search on audit changes: {status_changes}");

    // Typeahead on case titles and numbers.
    let second: Value = app.query(&format!("/v1/cases/{second}"), &app.token).await.json().await.unwrap();
    let case_number = second["case_number"].as_str().unwrap().to_owned();
    for (prefix, expected) in [("rout", "Router keeps rebooting"), (&case_number[..7], "Second line")] {
        let suggested = search(
            &app,
            &t.es_alias(CASES),
            json!({ "suggest": { "cases": { "prefix": prefix, "completion": { "field": "suggest" } } } }),
        )
        .await;
        let titles: Vec<&str> = suggested["suggest"]["cases"][0]["options"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| o["_source"]["title"].as_str())
            .collect();
        assert!(titles.contains(&expected), "suggestions for {prefix:?}: {suggested}");
    }

    // MongoDB: the tenant has every collection of the seed, each with its validator; the
    // AI results cache expires documents by `expires_at`; a note has the seed's shape.
    let mongo = mongodb::Client::with_uri_str(&app.settings.mongo_url).await.unwrap();
    let db = mongo.database(&app.settings.mongo_database);
    let audit = t.mongo_audit_collection(chrono::Utc::now());
    for name in ["case_notes", "message_templates", "custom_field_definitions", "ai_results_cache"]
        .map(|c| t.mongo_collection(c))
        .into_iter()
        .chain([audit])
    {
        let listed =
            db.run_command(mongodb::bson::doc! { "listCollections": 1, "filter": { "name": &name } }).await.unwrap();
        let found = listed.get_document("cursor").unwrap().get_array("firstBatch").unwrap();
        assert_eq!(found.len(), 1, "{name} exists");
        let options = found[0].as_document().unwrap().get_document("options").unwrap();
        assert!(options.get_document("validator").is_ok(), "{name} has a validator: {options}");
    }
    let notes = db.collection::<mongodb::bson::Document>(&t.mongo_collection("case_notes"));
    let refused = notes.insert_one(mongodb::bson::doc! { "tenant_id": app.tenant_id.to_string() }).await;
    assert!(refused.is_err(), "the validator refuses a note without case, content and time");
    let note = notes.find_one(mongodb::bson::doc! { "case_id": &case }).await.unwrap().expect("the note document");
    assert_eq!(note.get_str("content").unwrap(), "Firmware rollback scheduled");
    assert!(note.get_bool("is_internal").unwrap());
    assert!(note.get_datetime("created_at").is_ok());
    let cache = db.collection::<mongodb::bson::Document>(&t.mongo_collection("ai_results_cache"));
    let indexes = cache.list_index_names().await.unwrap();
    assert!(indexes.contains(&"expires_at_ttl".to_owned()), "TTL index: {indexes:?}");

    // Redis: reading a case marks a viewer; a login puts the user online; a role change
    // replaces the permission cache.
    let viewers: Value = app.query(&format!("/v1/cases/{case}/viewers"), &app.token).await.json().await.unwrap();
    assert_eq!(viewers["viewers"], json!([app.user_id.to_string()]));
    let slug: String = sqlx::query_scalar("SELECT slug FROM public.tenants WHERE id = $1")
        .bind(app.tenant_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let login = app
        .http
        .post(format!("{}/v1/auth/login", app.command_url))
        .json(&json!({ "tenant": slug, "username": "dana", "password": "integration test password" }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    eventually("dana to show as online", || async {
        let online: Value = app.query("/v1/presence/online", &app.token).await.json().await.ok()?;
        online["users"].as_array()?.iter().any(|u| u["user_id"] == json!(dana.to_string())).then_some(())
    })
    .await;
    let mut redis =
        redis::Client::open(app.settings.redis_url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let cache = t.redis_user_permissions(dana);
    // A cache entry of the old shape (no version) is replaced by the command API in the
    // request that changes the role, and the projector does not drop the newer entry.
    let _: () = redis.del(&cache).await.unwrap();
    let _: () = redis.hset(&cache, "role", "agent").await.unwrap();
    ok(app
        .command(Method::POST, &format!("/v1/users/{dana}/role"), &admin, Some(json!({ "role": "supervisor" })))
        .await);
    let role: Option<String> = redis.hget(&cache, "role").await.unwrap();
    assert_eq!(role.as_deref(), Some("supervisor"));
    let version: Option<i64> = redis.hget(&cache, "version").await.unwrap();
    eventually("the role change in the Redis projection", || async {
        let applied: Option<i64> = redis.clone().hget(t.redis_stream_versions(), dana.to_string()).await.ok()?;
        (applied.is_some() && applied == version).then_some(())
    })
    .await;
    let held: Option<i64> = redis.hget(&cache, "version").await.unwrap();
    assert_eq!(held, version, "the projector left the newest entry in place");
}
