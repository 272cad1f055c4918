//! Retention (issue 19): a tenant keeps interactions and audit entries for its
//! `retention_days`, in whole months; an expired month is archived, then removed from
//! PostgreSQL, MongoDB and Elasticsearch, while newer data and other tenants stay.

use std::io::Read;

use mongodb::bson::doc;
use murima_tests::{append_raw_event, append_raw_event_at, eventually, TestApp};
use projector::stores::Stores;
use reqwest::{Method, StatusCode};
use runtime::auth::Role;
use runtime::tenancy::Tenancy;
use serde_json::{json, Value};
use uuid::Uuid;

/// Sets a tenant's retention as the platform operator (the only one who may).
async fn set_retention(app: &TestApp, tenant: Uuid, days: Value) -> reqwest::Response {
    let body = json!({ "settings": { "retention_days": days } });
    app.command(Method::PATCH, &format!("/v1/tenants/{tenant}/settings"), &app.platform_token(), Some(body)).await
}

/// A tenant's audit entries in MongoDB dated before `before` (RFC 3339).
async fn audit_before(app: &TestApp, tenant: Uuid, before: &str) -> u64 {
    let at = mongodb::bson::DateTime::parse_rfc3339_str(before).unwrap();
    app.audit_entries(tenant, doc! { "timestamp": { "$lt": at } }).await.len() as u64
}

/// The months of a tenant's MongoDB audit collections (`YYYY-MM`).
async fn audit_months(app: &TestApp, tenant: Uuid) -> Vec<String> {
    let db =
        mongodb::Client::with_uri_str(&app.settings.mongo_url).await.unwrap().database(&app.settings.mongo_database);
    let months = runtime::audit_log::months(&db, Tenancy(tenant)).await.unwrap();
    months.into_iter().map(|(month, _)| month.format("%Y-%m").to_string()).collect()
}

/// An interaction dated `at`, put in the journal as a new interaction stream.
async fn recorded_at(app: &TestApp, case: &str, channel: &str, at: &str, content: &str) {
    let recorded = json!({ "case_id": case, "channel_id": channel, "user_id": app.user_id, "direction": "inbound",
        "content": content, "external_id": null, "tags": [], "metadata": {}, "timestamp": at });
    let stream = Uuid::now_v7();
    let now = chrono::Utc::now();
    append_raw_event_at(app, app.tenant_id, "interaction", stream, 1, "InteractionRecorded", 1, recorded, now).await;
}

async fn index_exists(app: &TestApp, name: &str) -> bool {
    let url = format!("{}/{name}", app.settings.elastic_url);
    app.http.head(url).send().await.unwrap().status() == StatusCode::OK
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retention_is_a_whole_number_of_days_up_to_ten_years() {
    let app = TestApp::spawn().await;
    for bad in [json!(0), json!(3651), json!(1.5), json!("30"), json!(null)] {
        let answer = set_retention(&app, app.tenant_id, bad.clone()).await;
        assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        let problem: Value = answer.json().await.unwrap();
        assert!(problem.to_string().contains("settings.retention_days"), "{bad}: {problem}");
    }
    assert_eq!(set_retention(&app, app.tenant_id, json!(30)).await.status(), StatusCode::OK);
    // Nor does the tenant's administrator (a day's retention would erase the audit trail
    // within the hour), nor an agent; an administrator's own update keeps it.
    let path = format!("/v1/tenants/{}/settings", app.tenant_id);
    let admin = app.token_for(app.tenant_id, Role::Admin);
    for token in [&admin, &app.token] {
        let body = json!({ "settings": { "retention_days": 1 } });
        assert_eq!(app.command(Method::PATCH, &path, token, Some(body)).await.status(), StatusCode::FORBIDDEN);
    }
    let body = json!({ "settings": { "timezone": "Africa/Nairobi" } });
    assert_eq!(app.command(Method::PATCH, &path, &admin, Some(body)).await.status(), StatusCode::OK);
    let held: Value = sqlx::query_scalar(
        "SELECT envelope #> '{payload,settings,new}' FROM eventstore.events
         WHERE tenant_id = $1 AND event_type = 'TenantSettingsUpdated' ORDER BY position DESC LIMIT 1",
    )
    .bind(app.tenant_id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(held["retention_days"], 30, "{held}");
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_months_are_archived_then_removed_from_every_store_and_newer_data_stays() {
    let app = TestApp::spawn().await;
    assert_eq!(set_retention(&app, app.tenant_id, json!(1)).await.status(), StatusCode::OK);
    let admin = app.token_for(app.tenant_id, Role::Admin);
    let channel = json!({ "name": "Phone", "type": "voice", "configuration": {} });
    let answer = app.command(Method::POST, "/v1/channels", &admin, Some(channel)).await;
    let channel = answer.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let case = app.open_case("Kept and expired").await;
    let (case, version) = (case["id"].as_str().unwrap().to_owned(), case["version"].as_i64().unwrap());
    let record = json!({ "channel_id": channel, "direction": "inbound", "content": "Customer called" });
    let path = format!("/v1/cases/{case}/interactions");
    assert_eq!(app.command(Method::POST, &path, &app.token, Some(record.clone())).await.status(), StatusCode::CREATED);
    // The API takes nothing dated before the retention (the next run would remove it) ...
    let mut old = record.clone();
    old["occurred_at"] = json!("2020-01-15T10:00:00Z");
    let refused = app.command(Method::POST, &path, &app.token, Some(old)).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.text().await.unwrap().contains("occurred_at"));
    // ... so the old interaction is put in the journal by the test, as an import would.
    recorded_at(&app, &case, &channel, "2020-01-15T10:00:00Z", "Customer called").await;
    // An audit entry of last month: the journal's time, set here (the API dates events now).
    let case_id = Uuid::parse_str(&case).unwrap();
    let update = json!({ "title": { "old": "Kept and expired", "new": "Renamed last month" },
                         "updated_at": "2026-11-20T09:00:00Z" });
    append_raw_event(&app, app.tenant_id, "case", case_id, version + 1, "CaseUpdated", 1, update.clone()).await;
    // Another tenant, keeping ten years, has an entry of last month too.
    let (other, _, _) = app.provision_tenant_with_agent().await;
    assert_eq!(set_retention(&app, other, json!(3650)).await.status(), StatusCode::OK);
    let opened = json!({ "case_number": "CASE-000001", "title": "Elsewhere", "description": null, "status": "open",
        "priority": "low", "case_type_id": Uuid::now_v7(), "assigned_to": null, "due_date": null, "tags": [],
        "custom_fields": {}, "created_by": app.user_id, "opened_at": "2026-11-20T09:00:00Z" });
    append_raw_event(&app, other, "case", Uuid::now_v7(), 1, "CaseOpened", 1, opened).await;
    app.wait_for_all_stores().await;

    let tenancy = Tenancy(app.tenant_id);
    let schema = tenancy.pg_schema();
    let partitions = || async {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = ($1 || '.interactions')::regclass ORDER BY 1",
        )
        .bind(&schema)
        .fetch_all(&app.pool)
        .await
        .unwrap();
        names
    };
    eventually("last month's entries in every store", || async {
        let projected = partitions().await.contains(&"interactions_y2020m01".to_owned())
            && audit_before(&app, app.tenant_id, "2026-12-01T00:00:00Z").await == 1
            && audit_before(&app, other, "2026-12-01T00:00:00Z").await == 1;
        projected.then_some(())
    })
    .await;
    let old_audit = tenancy.es_index("audit-logs", "2026-11-20T09:00:00Z".parse().unwrap());
    let old_interactions = tenancy.es_index("interactions", "2020-01-15T10:00:00Z".parse().unwrap());
    eventually("last month's indices", || async {
        (index_exists(&app, &old_audit).await && index_exists(&app, &old_interactions).await).then_some(())
    })
    .await;

    let stores = Stores::connect(&app.settings, 2).await.unwrap();
    // A day on: a one-day retention keeps from the first of the month a day before `now`,
    // so on the first of a month last month would still be kept. This month stays either way.
    let now = chrono::Utc::now() + chrono::Duration::days(1);
    // A dry run lists what would go and removes nothing.
    let planned = projector::retention::run(&stores, now, true).await.unwrap();
    let mine: Vec<_> = planned.iter().filter(|e| e.tenant_id == app.tenant_id).collect();
    let months: Vec<(&str, &str, u64)> = mine.iter().map(|e| (e.kind, e.month.as_str(), e.records)).collect();
    assert!(months.contains(&("interactions", "2020-01", 1)), "{planned:?}");
    assert!(months.contains(&("audit_logs", "2026-11", 1)), "{planned:?}");
    assert!(planned.iter().all(|e| e.tenant_id != other), "the other tenant keeps a year: {planned:?}");
    assert!(partitions().await.contains(&"interactions_y2020m01".to_owned()), "a dry run removes nothing");

    let done = projector::retention::run(&stores, now, false).await.unwrap();
    assert_eq!(done.len(), planned.len(), "{done:?}");
    // Archived: the month's rows as gzip JSON Lines, and a manifest line each.
    let archive = app.settings.archive_dir.clone().unwrap().join(format!("tenant-{}", app.tenant_id.simple()));
    let file = |kind: &str, month: &str| {
        let dir = archive.join(kind).join(month);
        let files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|f| f.unwrap().path()).collect();
        assert_eq!(files.len(), 1, "{files:?}");
        files[0].clone()
    };
    let read = |path: std::path::PathBuf| {
        let mut text = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap()).read_to_string(&mut text).unwrap();
        text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).collect::<Vec<_>>()
    };
    let interactions = read(file("interactions", "2020-01"));
    assert_eq!(interactions.len(), 1);
    assert_eq!(interactions[0]["case_id"], json!(case), "{interactions:?}");
    let audit = read(file("audit_logs", "2026-11"));
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["action"], "update", "{audit:?}");
    let manifest = std::fs::read_to_string(archive.join("manifest.jsonl")).unwrap();
    assert_eq!(manifest.lines().count(), 2, "{manifest}");

    // Removed from every store; this month's data stays.
    assert!(!partitions().await.contains(&"interactions_y2020m01".to_owned()));
    let kept: i64 =
        sqlx::query_scalar(&format!("SELECT count(*) FROM {schema}.interactions")).fetch_one(&app.pool).await.unwrap();
    assert_eq!(kept, 1, "this month's interaction stays");
    assert_eq!(audit_before(&app, app.tenant_id, "2026-12-01T00:00:00Z").await, 0);
    assert!(audit_before(&app, app.tenant_id, "2100-01-01T00:00:00Z").await >= 3, "this month's audit entries stay");
    // The month's audit collection went whole (seed §5.2.2); the other tenant's stays.
    let this_month = chrono::Utc::now().format("%Y-%m").to_string();
    assert_eq!(audit_months(&app, app.tenant_id).await, vec![this_month.clone()]);
    assert_eq!(audit_months(&app, other).await, vec![this_month, "2026-11".to_owned()]);
    assert!(!index_exists(&app, &old_audit).await, "{old_audit}");
    assert!(!index_exists(&app, &old_interactions).await, "{old_interactions}");
    let current = tenancy.es_index("audit-logs", chrono::Utc::now());
    assert!(index_exists(&app, &current).await, "{current}");
    // The other tenant keeps last month.
    assert_eq!(audit_before(&app, other, "2026-12-01T00:00:00Z").await, 1);

    // Verify knows what the retention removed: nothing is reported missing or behind.
    let reports =
        projector::verify::verify(&stores, None, Some(app.tenant_id), std::time::Duration::ZERO, false).await.unwrap();
    for report in &reports {
        assert_eq!((report.missing, report.stale), (0, 0), "{report:#?}");
    }

    // Again: nothing more to do.
    let again = projector::retention::run(&stores, now, false).await.unwrap();
    assert!(again.iter().all(|e| e.tenant_id != app.tenant_id), "{again:?}");

    // An interaction dated into the expired month later is archived by the next run into
    // a file of its own: what was archived before is never replaced.
    let first = file("interactions", "2020-01");
    recorded_at(&app, &case, &channel, "2020-01-20T10:00:00Z", "Late letter").await;
    eventually("the late interaction projected", || async {
        partitions().await.contains(&"interactions_y2020m01".to_owned()).then_some(())
    })
    .await;
    let late_run = projector::retention::run(&stores, now, false).await.unwrap();
    assert!(
        late_run.iter().any(|e| e.kind == "interactions" && e.month == "2020-01" && e.records == 1),
        "{late_run:?}"
    );
    assert_eq!(read(first.clone()).len(), 1, "the first archive is kept as it was");
    assert_eq!(std::fs::read_dir(first.parent().unwrap()).unwrap().count(), 2);
    // One run at a time: a second one while the lock is held is refused.
    let mut held = app.pool.acquire().await.unwrap();
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(0x6d75_7269_6d61_0004_i64)
        .fetch_one(&mut *held)
        .await
        .unwrap();
    assert!(locked);
    let refused = projector::retention::run(&stores, now, true).await;
    assert!(refused.is_err_and(|e| e.to_string().contains("another retention run")));
    sqlx::query("SELECT pg_advisory_unlock($1)").bind(0x6d75_7269_6d61_0004_i64).execute(&mut *held).await.unwrap();

    // A restore: refused while the month is past the retention (the next run would take
    // it again), and once the retention is raised, every archive file of the month is
    // put back (the first run's and the late one's).
    let restore = |kind: &'static str, month: &'static str| {
        let stores = &stores;
        let tenant = app.tenant_id;
        async move { projector::retention::restore(stores, tenant, kind, month).await }
    };
    let early = restore("interactions", "2020-01").await;
    assert!(early.is_err_and(|e| e.to_string().contains("retention_days")));
    assert_eq!(set_retention(&app, app.tenant_id, json!(3650)).await.status(), StatusCode::OK);
    app.wait_for_retention(app.tenant_id, 3650).await;
    let restored = restore("interactions", "2020-01").await.unwrap();
    assert_eq!((restored.records, restored.files.len()), (2, 2), "{restored:?}");
    let back: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {schema}.interactions WHERE timestamp < '2020-02-01' AND case_id = $1"
    ))
    .bind(case_id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(back, 2, "both archived interactions are back");
    let restored = restore("audit_logs", "2026-11").await.unwrap();
    assert_eq!(restored.records, 1, "{restored:?}");
    assert_eq!(audit_before(&app, app.tenant_id, "2026-12-01T00:00:00Z").await, 1, "the entry is back, dated");
    let again = restore("audit_logs", "2026-11").await.unwrap();
    assert_eq!(again.records, 1, "read again, and left as it is");
    assert_eq!(audit_before(&app, app.tenant_id, "2026-12-01T00:00:00Z").await, 1);
    let bad_kind = restore("cases", "2020-01").await;
    assert!(bad_kind.is_err_and(|e| e.to_string().contains("--kind")));
    let bad_month = restore("interactions", "2020-13").await;
    assert!(bad_month.is_err_and(|e| e.to_string().contains("--month")));
    let nothing = restore("audit_logs", "2019-01").await;
    assert!(nothing.is_err_and(|e| e.to_string().contains("nothing of audit_logs 2019-01")));
}
