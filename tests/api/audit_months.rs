//! The MongoDB audit log kept by month (seed §5.2.2): `tenant_<id>_audit_logs_YYYY_MM`,
//! read as one log, and a log of before the months moved into them.

use chrono::{DateTime, Utc};
use mongodb::bson::{doc, Document};
use murima_tests::{append_raw_event_at, eventually, TestApp};
use reqwest::StatusCode;
use runtime::auth::Role;
use runtime::tenancy::Tenancy;
use serde_json::{json, Value};
use uuid::Uuid;

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

async fn audit_db(app: &TestApp) -> mongodb::Database {
    mongodb::Client::with_uri_str(&app.settings.mongo_url).await.unwrap().database(&app.settings.mongo_database)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_entitys_audit_trail_is_read_across_the_months_of_its_entries() {
    let app = TestApp::spawn().await;
    let case = app.open_case("Spanning months").await;
    let id = Uuid::parse_str(case["id"].as_str().unwrap()).unwrap();
    let version = case["version"].as_i64().unwrap();
    // Two later versions dated in other months, the last in the oldest: an entity's trail
    // is in version order whatever the months say.
    for (v, title, when) in
        [(version + 1, "Second", "2026-10-15T09:00:00Z"), (version + 2, "Third", "2025-06-01T09:00:00Z")]
    {
        let update = json!({ "title": { "old": "x", "new": title }, "updated_at": when });
        append_raw_event_at(&app, app.tenant_id, "case", id, v, "CaseUpdated", 1, update, at(when)).await;
    }
    eventually("three months of the case's audit entries", || async {
        (app.audit_entries(app.tenant_id, doc! { "entity_id": id.to_string() }).await.len() == 3).then_some(())
    })
    .await;
    let months = runtime::audit_log::months(&audit_db(&app).await, Tenancy(app.tenant_id)).await.unwrap();
    let names: Vec<String> = months.iter().map(|(m, _)| m.format("%Y-%m").to_string()).collect();
    assert!(names.contains(&"2026-10".to_owned()) && names.contains(&"2025-06".to_owned()), "{names:?}");

    let admin = app.token_for(app.tenant_id, Role::Admin);
    let page = |cursor: Option<i64>| {
        let (app, admin) = (&app, &admin);
        async move {
            let after = cursor.map(|c| format!("&cursor={c}")).unwrap_or_default();
            let answer = app.query(&format!("/v1/cases/{id}/audit?limit=2{after}"), admin).await;
            assert_eq!(answer.status(), StatusCode::OK);
            let link = answer.headers().get("link").map(|l| l.to_str().unwrap().to_owned());
            let body: Value = answer.json().await.unwrap();
            let versions: Vec<i64> =
                body["items"].as_array().unwrap().iter().map(|e| e["entity_version"].as_i64().unwrap()).collect();
            // The next page is linked as every other list's is.
            let next = body["next_cursor"].as_i64();
            let expected = next.map(|c| format!("</v1/cases/{id}/audit?limit=2&cursor={c}>; rel=\"next\""));
            assert_eq!(link, expected);
            (versions, next)
        }
    };
    assert_eq!(page(None).await, (vec![version + 2, version + 1], Some(version + 1)));
    assert_eq!(page(Some(version + 1)).await, (vec![version], None));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_audit_log_kept_in_one_collection_moves_into_its_months_once() {
    let app = TestApp::spawn().await;
    let db = audit_db(&app).await;
    // A tenant's log as an older projector kept it: one collection, entries of two months.
    let tenant = Uuid::now_v7();
    let t = Tenancy(tenant);
    let single = db.collection::<Document>(&t.mongo_collection("audit_logs"));
    let entry = |id: &str, when: &str| {
        doc! { "_id": id, "tenant_id": tenant.to_string(), "entity_type": "case", "entity_id": Uuid::nil().to_string(),
        "entity_version": 1_i64, "action": "create", "changes": [],
        "timestamp": mongodb::bson::DateTime::parse_rfc3339_str(when).unwrap() }
    };
    let entries =
        [entry("a", "2026-09-30T23:59:59Z"), entry("b", "2026-10-01T00:00:00Z"), entry("c", "2026-10-20T12:00:00Z")];
    single.insert_many(entries).await.unwrap();
    // One of them was moved already, by a move cut short.
    let october = db.collection::<Document>(&t.mongo_audit_collection(at("2026-10-01T00:00:00Z")));
    october.insert_one(entry("b", "2026-10-01T00:00:00Z")).await.unwrap();

    // (Another test's projector may be moving it at start-up too: the same end either way.)
    projector::projections::mongo_audit::split_single_collections(&db, &app.pool).await.unwrap();
    let names = db.list_collection_names().await.unwrap();
    assert!(!names.contains(&t.mongo_collection("audit_logs")), "the single collection is gone");
    let months = runtime::audit_log::months(&db, t).await.unwrap();
    let held: Vec<(String, Vec<String>)> = futures::future::join_all(months.iter().map(|(m, name)| {
        let db = db.clone();
        async move {
            let ids = db.collection::<Document>(name).distinct("_id", doc! {}).await.unwrap();
            (m.format("%Y-%m").to_string(), ids.iter().map(|i| i.as_str().unwrap().to_owned()).collect())
        }
    }))
    .await;
    let sorted = |mut ids: Vec<String>| {
        ids.sort();
        ids
    };
    let held: Vec<(String, Vec<String>)> = held.into_iter().map(|(m, ids)| (m, sorted(ids))).collect();
    assert_eq!(held, vec![("2026-10".into(), vec!["b".into(), "c".into()]), ("2026-09".into(), vec!["a".into()])]);
    // The moved entries have the months' validator and indexes, as the projection makes them.
    let indexes = october.list_index_names().await.unwrap();
    assert!(indexes.contains(&"tenant_entity_version".to_owned()), "{indexes:?}");
    assert!(october.insert_one(doc! { "tenant_id": tenant.to_string() }).await.is_err(), "the validator");
    // A second move finds nothing of this tenant.
    projector::projections::mongo_audit::split_single_collections(&db, &app.pool).await.unwrap();
    assert_eq!(runtime::audit_log::find(&db, t, doc! {}, None, None).await.unwrap().len(), 3);
}
