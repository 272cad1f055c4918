//! A poison event is parked, visibly, with the later events of its stream; other streams
//! keep flowing past it.

use murima_tests::{eventually, TestApp};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

/// Appends a case event straight to the journal (as a buggy or older writer could) and queues it.
async fn append_raw(app: &TestApp, stream: Uuid, version: i64, event_type: &str, payload: Value) {
    murima_tests::append_raw_event(app, app.tenant_id, "case", stream, version, event_type, 1, payload).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poison_event_is_parked_with_its_stream_and_blocks_nothing_else() {
    let app = TestApp::spawn().await;
    let poisoned = Uuid::now_v7();
    // A CaseOpened no decoder can read (no title, case number or type), then a later event.
    append_raw(&app, poisoned, 1, "CaseOpened", json!({ "priority": "high" })).await;
    append_raw(
        &app,
        poisoned,
        2,
        "CaseStatusChanged",
        json!({ "status": { "old": "open", "new": "resolved" }, "changed_at": "2026-11-20T09:00:00Z" }),
    )
    .await;

    // A case opened afterwards reaches every store.
    let healthy = app.open_case("Opened after the poison").await["id"].as_str().unwrap().to_owned();
    let r = app
        .command(
            Method::POST,
            &format!("/v1/cases/{healthy}/status"),
            &app.token,
            Some(json!({ "status": "resolved" })),
        )
        .await;
    assert!(r.status().is_success());
    let schema = runtime::tenancy::Tenancy(app.tenant_id).pg_schema();
    eventually("the healthy case to pass the parked one", || async {
        let status: Option<String> = sqlx::query_scalar(&format!("SELECT status FROM {schema}.cases WHERE id = $1"))
            .bind(healthy.parse::<Uuid>().unwrap())
            .fetch_optional(&app.pool)
            .await
            .ok()?;
        (status.as_deref() == Some("resolved")).then_some(())
    })
    .await;
    let search = format!("/v1/search/cases?q={}", "poison");
    eventually("the healthy case in search", || async {
        let found: Value = app.query(&search, &app.token).await.json().await.ok()?;
        (found["total"].as_i64()? >= 1).then_some(())
    })
    .await;

    // Both events of the poisoned stream are parked for every projection, the first with
    // its reason, the second behind it; the stream reached no store.
    let parked: Vec<(String, i64, String)> = eventually("the parked events", || async {
        let rows: Vec<(String, i64, String)> = sqlx::query_as(
            "SELECT projection, stream_version, error FROM projector.parked_events
             WHERE stream_id = $1 ORDER BY projection, stream_version",
        )
        .bind(poisoned)
        .fetch_all(&app.pool)
        .await
        .ok()?;
        (rows.len() == 2 * 7).then_some(rows)
    })
    .await;
    for pair in parked.chunks(2) {
        assert_eq!((pair[0].1, pair[1].1), (1, 2), "{pair:?}");
        assert!(pair[0].2.contains("CaseOpened"), "the reason names the problem: {}", pair[0].2);
        assert_eq!(pair[1].2, "an earlier event of this stream is parked");
    }
    let reached: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {schema}.cases WHERE id = $1"))
        .bind(poisoned)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(reached, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_of_a_tenant_no_store_has_seen_yet_is_not_lost() {
    let app = TestApp::spawn().await;
    // An event of a tenant whose provisioning no store has applied (an older journal, or a
    // provisioning event parked): the stores make room for the tenant instead of losing it.
    let tenant = Uuid::now_v7();
    let channel = Uuid::now_v7();
    let created = json!({ "name": "Early line", "channel_type": "voice", "configuration": {},
                          "created_at": "2026-11-20T09:00:00Z" });
    murima_tests::append_raw_event(&app, tenant, "channel", channel, 1, "ChannelCreated", 1, created).await;
    let t = runtime::tenancy::Tenancy(tenant);
    let schema = t.pg_schema();
    eventually("the early channel in PostgreSQL", || async {
        let name: String = sqlx::query_scalar(&format!("SELECT name FROM {schema}.channels WHERE id = $1"))
            .bind(channel)
            .fetch_one(&app.pool)
            .await
            .ok()?;
        (name == "Early line").then_some(())
    })
    .await;
    let placeholder: String = sqlx::query_scalar("SELECT name FROM public.tenants WHERE id = $1")
        .bind(tenant)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(placeholder, "(pending)");
    eventually("the early channel's audit entry", || async {
        let n = app.audit_entries(tenant, mongodb::bson::doc! { "entity_id": channel.to_string() }).await.len();
        (n == 1).then_some(())
    })
    .await;

    // The tenant's own first event fills in the placeholder.
    let provisioned = json!({ "name": "Late Ltd", "slug": format!("late-{}", &tenant.simple().to_string()[24..]),
                              "settings": {}, "provisioned_at": "2026-11-20T08:00:00Z" });
    murima_tests::append_raw_event(&app, tenant, "tenant", tenant, 1, "TenantProvisioned", 1, provisioned).await;
    eventually("the tenant row to be filled in", || async {
        let name: String = sqlx::query_scalar("SELECT name FROM public.tenants WHERE id = $1 AND version = 1")
            .bind(tenant)
            .fetch_one(&app.pool)
            .await
            .ok()?;
        (name == "Late Ltd").then_some(())
    })
    .await;
}

/// A store that answers its health probe (or not) and refuses, with an error that names
/// nothing, every batch holding one event.
struct RefusesOne {
    refused: Uuid,
    healthy: bool,
    applied: std::sync::Mutex<Vec<Uuid>>,
}

#[async_trait::async_trait]
impl projector::projection::Projection for RefusesOne {
    fn name(&self) -> &'static str {
        "test-refuses-one"
    }

    async fn apply(
        &self,
        events: &[projector::event::Event],
        _: &projector::projection::Checkpoint,
    ) -> Result<(), projector::projection::ApplyError> {
        if events.iter().any(|e| e.envelope.event_id == self.refused) {
            return Err(projector::projection::ApplyError::Unexplained(anyhow::anyhow!("something went wrong")));
        }
        self.applied.lock().unwrap().extend(events.iter().map(|e| e.envelope.event_id));
        Ok(())
    }

    async fn held(&self, _: Uuid) -> anyhow::Result<Vec<projector::projection::Held>> {
        Ok(Vec::new())
    }

    async fn healthy(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.healthy, "the store is away");
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unexplained_failure_that_repeats_while_the_store_answers_parks_its_event_alone() {
    let app = TestApp::spawn().await;
    for title in ["First", "Second", "Third"] {
        app.open_case(title).await;
    }
    let envelopes: Vec<Value> = sqlx::query_scalar(
        "SELECT envelope FROM eventstore.events WHERE tenant_id = $1 AND stream_type = 'case' ORDER BY position",
    )
    .bind(app.tenant_id)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let batch = || -> Vec<projector::event::Event> {
        envelopes
            .iter()
            .map(|e| {
                projector::event::Event::from_envelope(serde_json::from_value(e.clone()).unwrap(), &Default::default())
                    .ok()
                    .unwrap()
            })
            .collect()
    };
    let ids: Vec<Uuid> = batch().iter().map(|e| e.envelope.event_id).collect();
    let checkpoint = projector::projection::Checkpoint { group: "test-refuses-one".into(), ..Default::default() };
    let parking = projector::parking::ParkingLot::new(app.pool.clone());

    // The store answers its probe: the event behind the failures is found and parked, the
    // others applied.
    let store = RefusesOne { refused: ids[1], healthy: true, applied: Default::default() };
    let mut parked = std::collections::HashSet::new();
    let started = std::time::Instant::now();
    projector::worker::apply_or_park(
        projector::worker::Target::waiting(&store),
        &projector::worker::Recorded { parking: &parking, pool: &app.pool, group: "test-refuses-one" },
        batch(),
        &checkpoint,
        &mut parked,
    )
    .await
    .unwrap();
    println!("parked after {:?}", started.elapsed());
    let applied = store.applied.lock().unwrap().clone();
    assert!(applied.contains(&ids[0]) && applied.contains(&ids[2]) && !applied.contains(&ids[1]), "{applied:?}");
    let error: String = sqlx::query_scalar(
        "SELECT error FROM projector.parked_events WHERE projection = 'test-refuses-one' AND event_id = $1",
    )
    .bind(ids[1])
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(error.contains("health probe") && error.contains("something went wrong"), "{error}");
    let class: Option<String> =
        sqlx::query_scalar("SELECT last_error_class FROM projector.progress WHERE projection = 'test-refuses-one'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(class.as_deref(), Some("deterministic"));

    // The store does not answer: nothing is parked, however long it fails.
    let away = RefusesOne { refused: ids[1], healthy: false, applied: Default::default() };
    let group = "test-refuses-one-away";
    let mut parked = std::collections::HashSet::new();
    let retried = tokio::time::timeout(
        std::time::Duration::from_secs(25),
        projector::worker::apply_or_park(
            projector::worker::Target::waiting(&away),
            &projector::worker::Recorded { parking: &parking, pool: &app.pool, group },
            batch(),
            &checkpoint,
            &mut parked,
        ),
    )
    .await;
    assert!(retried.is_err(), "it must keep retrying while the store is away");
    assert!(parked.is_empty());
    let since: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT retrying_since FROM projector.progress WHERE projection = $1")
            .bind(group)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(since.is_some(), "status shows since when it retries");
}

/// Interactions are written set-based with the run they arrive in: one that names a case
/// the read model does not hold (a buggy writer's) is parked on its own, and a good one
/// recorded after it still reaches the table.
#[tokio::test(flavor = "multi_thread")]
async fn an_interaction_naming_no_case_is_parked_alone_and_the_next_one_is_written() {
    let app = TestApp::spawn().await;
    let admin = app.token_for(app.tenant_id, runtime::auth::Role::Admin);
    let channel = app.post_ok("/v1/channels", &admin, json!({ "name": "Chat", "type": "chat" })).await;
    let case = app.open_case("Router blinks").await["id"].as_str().unwrap().to_owned();
    let orphan = Uuid::now_v7();
    murima_tests::append_raw_event(
        &app,
        app.tenant_id,
        "interaction",
        orphan,
        1,
        "InteractionRecorded",
        2,
        json!({ "case_id": Uuid::now_v7(), "channel_id": channel["id"], "user_id": app.user_id,
                "direction": "inbound", "content": "no such case", "external_id": null, "tags": [],
                "metadata": {}, "timestamp": chrono::Utc::now() }),
    )
    .await;
    let good = json!({ "channel_id": channel["id"], "direction": "inbound", "content": "The router blinks orange" });
    let r = app.command(Method::POST, &format!("/v1/cases/{case}/interactions"), &app.token, Some(good)).await;
    assert!(r.status().is_success(), "{}", r.status());
    let schema = runtime::tenancy::Tenancy(app.tenant_id).pg_schema();
    eventually("the good interaction in PostgreSQL", || async {
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {schema}.interactions WHERE case_id = $1"))
            .bind(case.parse::<Uuid>().unwrap())
            .fetch_one(&app.pool)
            .await
            .ok()?;
        (n == 1).then_some(())
    })
    .await;
    let parked: Vec<(String, String)> = eventually("the orphan parked by the relational read model", || async {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT projection, error FROM projector.parked_events WHERE stream_id = $1 AND projection = 'postgres'",
        )
        .bind(orphan)
        .fetch_all(&app.pool)
        .await
        .ok()?;
        (!rows.is_empty()).then_some(rows)
    })
    .await;
    assert_eq!(parked.len(), 1, "{parked:?}");
    let held: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {schema}.interactions WHERE id = $1"))
        .bind(orphan)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(held, 0);
}
