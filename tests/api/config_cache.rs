//! The tenant configuration cache (seed §6.3.3): a tenant's settings and status, folded
//! from its stream, in Redis for an hour; read by the tenant check of a command API that
//! does not hold the tenant, and caught up with the journal, so an old copy never decides.

use murima_tests::TestApp;
use redis::aio::MultiplexedConnection;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

/// The copy's version, its state as JSON, and how long it has to live.
async fn copy(redis: &mut MultiplexedConnection, tenant: Uuid) -> Option<(i64, Value, i64)> {
    let key = command_api::config_cache::key(tenant);
    let (version, state): (Option<i64>, Option<String>) =
        redis::cmd("HMGET").arg(&key).arg("version").arg("state").query_async(redis).await.unwrap();
    let ttl: i64 = redis::cmd("TTL").arg(&key).query_async(redis).await.unwrap();
    Some((version?, serde_json::from_str(&state?).unwrap(), ttl))
}

/// Writes a copy as a command API would (format "1"), naming `event` as its last event.
async fn plant(redis: &mut MultiplexedConnection, tenant: Uuid, version: i64, event: Uuid, state: &Value) {
    let key = command_api::config_cache::key(tenant);
    let _: () = redis::pipe()
        .atomic()
        .del(&key)
        .hset_multiple(
            &key,
            &[
                ("version", version.to_string()),
                ("event", event.to_string()),
                ("state", state.to_string()),
                ("format", "1".to_owned()),
            ],
        )
        .expire(&key, 3600)
        .query_async(redis)
        .await
        .unwrap();
}

/// The id of the tenant stream's event at `version`, as the journal holds it.
async fn event_at(app: &TestApp, version: i64) -> Uuid {
    sqlx::query_scalar(
        "SELECT event_id FROM eventstore.events WHERE tenant_id = $1 AND stream_id = $1 AND stream_version = $2",
    )
    .bind(app.tenant_id)
    .bind(version)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

/// Loses the tenant's status in Redis once the projector has written `status` (every
/// command's session check reads it first): only the command API's tenant check stands.
async fn lose_the_status_in_redis(app: &TestApp, redis: &mut MultiplexedConnection, status: &str) {
    murima_tests::eventually("the status projected", || async {
        let held: String = sqlx::query_scalar("SELECT status FROM public.tenants WHERE id = $1")
            .bind(app.tenant_id)
            .fetch_one(&app.pool)
            .await
            .ok()?;
        (held == status).then_some(())
    })
    .await;
    let key = runtime::tenancy::Tenancy(app.tenant_id).redis_key("tenant:status");
    let _: () = redis::cmd("DEL").arg(key).query_async(redis).await.unwrap();
}

async fn redis(app: &TestApp) -> MultiplexedConnection {
    redis::Client::open(app.settings.redis_url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap()
}

/// How the command API's tenant check words a suspension (the session check, which
/// reads the status Redis holds, words it otherwise).
const REFUSED_BY_THE_JOURNAL: &str = "refused until it is reactivated";

/// A tenant suspended (version 2) once a tenant check left a copy of it active (version
/// 1), and that copy's state; Redis has lost the tenant's status, so only the command
/// API's tenant check stands between a command and the journal's suspension.
async fn suspended_with_its_active_copy() -> (TestApp, MultiplexedConnection, Value) {
    let app = TestApp::spawn().await;
    let mut redis = redis(&app).await;
    assert_eq!(app.open_case("Fills the copy").await["version"], 1);
    let (_, active, _) = copy(&mut redis, app.tenant_id).await.expect("a copy");
    let suspend = format!("/v1/tenants/{}/suspend", app.tenant_id);
    let r = app.command(Method::POST, &suspend, &app.platform_token(), Some(json!({ "reason": "unpaid" }))).await;
    assert_eq!(r.status(), StatusCode::OK);
    lose_the_status_in_redis(&app, &mut redis, "suspended").await;
    (app, redis, active)
}

/// A case opened through the command API at `url` is refused by its tenant check.
async fn refused_by_the_tenant_check(app: &TestApp, url: &str, why: &str) {
    let r = open_case_via(app, url, "Must be refused").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "{why}");
    let problem: Value = r.json().await.unwrap();
    assert!(problem["detail"].as_str().unwrap().contains(REFUSED_BY_THE_JOURNAL), "{problem}");
}

async fn open_case_via(app: &TestApp, url: &str, title: &str) -> reqwest::Response {
    app.http
        .post(format!("{url}/v1/cases"))
        .bearer_auth(&app.token)
        .json(&json!({ "case_type_id": app.case_type_id, "title": title }))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenants_configuration_is_cached_for_an_hour_at_its_newest_version() {
    let app = TestApp::spawn().await;
    let mut redis = redis(&app).await;
    assert_eq!(app.open_case("Checks the tenant").await["version"], 1);
    let (version, state, ttl) = copy(&mut redis, app.tenant_id).await.expect("a copy after a tenant check");
    assert_eq!(version, 1);
    assert_eq!(state["status"], "active", "{state}");
    assert!((3500..=3600).contains(&ttl), "lives an hour, not {ttl} s");

    let path = format!("/v1/tenants/{}/settings", app.tenant_id);
    let settings = json!({ "settings": { "timezone": "Africa/Nairobi" } });
    let r = app.command(Method::PATCH, &path, &app.platform_token(), Some(settings)).await;
    assert_eq!(r.status(), StatusCode::OK);
    // The change dropped the older copy; the next check keeps the new state.
    assert!(copy(&mut redis, app.tenant_id).await.is_none());
    assert_eq!(app.open_case("Checks the tenant again").await["version"], 1);
    let (version, state, _) = copy(&mut redis, app.tenant_id).await.expect("a copy after the change");
    assert_eq!(version, 2);
    assert_eq!(state["settings"]["timezone"], "Africa/Nairobi", "{state}");
}

/// The copy is what a command API without the tenant decides on, and only at the
/// journal's version: an older copy (its writer died before replacing it) is caught up.
#[tokio::test(flavor = "multi_thread")]
async fn a_command_api_without_the_tenant_decides_on_the_copy_caught_up_with_the_journal() {
    // The copy says active at version 1 (as a command API that died before dropping it
    // left it); the journal is at 2, suspended.
    let (app, mut redis, active) = suspended_with_its_active_copy().await;
    let platform = app.platform_token();
    plant(&mut redis, app.tenant_id, 1, event_at(&app, 1).await, &active).await;
    let (url, fresh) = app.another_command_api().await;
    refused_by_the_tenant_check(&app, &url, "a stale copy decided").await;
    let (version, state, _) = copy(&mut redis, app.tenant_id).await.expect("the caught-up copy");
    assert_eq!((version, state["status"].as_str()), (2, Some("suspended")));

    fresh.abort();

    // Reactivated (version 3), with a copy at that version that says otherwise (what no
    // command API writes: it shows whose word a new command API takes): the copy's.
    let reactivate = format!("/v1/tenants/{}/reactivate", app.tenant_id);
    let r = app.command(Method::POST, &reactivate, &platform, Some(json!({}))).await;
    assert_eq!(r.status(), StatusCode::OK);
    let mut claimed = active.clone();
    claimed["status"] = json!("suspended");
    plant(&mut redis, app.tenant_id, 3, event_at(&app, 3).await, &claimed).await;
    let (url, fresh) = app.another_command_api().await;
    refused_by_the_tenant_check(&app, &url, "the copy at the journal's version was not decided on").await;
    fresh.abort();
}

/// A copy whose last event is not the journal's (a database restored behind Redis, a
/// journal of another deployment) is not decided on, whatever version it claims: the
/// tenant is folded from its start and the copy replaced.
#[tokio::test(flavor = "multi_thread")]
async fn a_copy_of_another_journal_is_replaced_not_decided_on() {
    let (app, mut redis, active) = suspended_with_its_active_copy().await;
    // Active at the journal's version 2, and at a version the journal has not reached.
    for version in [2, 7] {
        plant(&mut redis, app.tenant_id, version, Uuid::now_v7(), &active).await;
        let (url, fresh) = app.another_command_api().await;
        let why = format!("a copy of version {version} of another journal decided");
        refused_by_the_tenant_check(&app, &url, &why).await;
        let (held, state, _) = copy(&mut redis, app.tenant_id).await.expect("the copy replaced");
        assert_eq!((held, state["status"].as_str()), (2, Some("suspended")));
        fresh.abort();
    }
}
