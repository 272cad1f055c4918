//! Webhooks (issue 20): a tenant subscribes a URL to event types; each matching event is
//! delivered once, signed with the subscription's secret, retried after a failure, and
//! dead-lettered when the receiver keeps failing; administrators read the delivery log.
//! The receivers here listen on loopback, which the test settings allow (production
//! refuses private addresses, tested below with the default policy).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use murima_tests::{eventually, test_settings, TestApp};
use reqwest::{Method, StatusCode};
use runtime::auth::Role;
use runtime::webhook::{verify, EVENT_ID_HEADER, SIGNATURE_HEADER};
use serde_json::{json, Value};
use uuid::Uuid;

const SECRET: &str = "webhook-test-secret-0123456789";

/// One request a receiver got: the event id, whether its signature held, the body, and
/// what the receiver answered.
#[derive(Debug, Clone)]
struct Received {
    event_id: String,
    signed: bool,
    body: Value,
    answered: u16,
}

/// A local receiver that fails its first `failures` requests with a 500.
struct Receiver {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start(failures: usize) -> Receiver {
        let received = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::new(AtomicUsize::new(0));
        let log = received.clone();
        let hook = move |headers: HeaderMap, body: Bytes| {
            let (log, seen) = (log.clone(), seen.clone());
            async move {
                let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                let answered = if seen.fetch_add(1, Ordering::SeqCst) < failures { 500 } else { 204 };
                log.lock().unwrap().push(Received {
                    event_id: text(EVENT_ID_HEADER),
                    signed: verify(SECRET, &text(SIGNATURE_HEADER), &body),
                    body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                    answered,
                });
                AxumStatus::from_u16(answered).unwrap()
            }
        };
        let app = axum::Router::new().route("/hook", axum::routing::post(hook));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, received }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

async fn subscribe(app: &TestApp, url: &str, event_types: Value) -> (String, String) {
    let admin = app.token_for(app.tenant_id, Role::Admin);
    let body = json!({ "url": url, "event_types": event_types, "secret": SECRET, "description": "CRM sync" });
    let answer = app.command(Method::POST, "/v1/webhooks", &admin, Some(body)).await;
    assert_eq!(answer.status(), StatusCode::CREATED);
    let answer: Value = answer.json().await.unwrap();
    (answer["id"].as_str().unwrap().to_owned(), answer["position"].as_str().unwrap().to_owned())
}

async fn deliveries(app: &TestApp, webhook: &str, status: &str) -> Vec<Value> {
    let admin = app.token_for(app.tenant_id, Role::Admin);
    let log: Value = app
        .query(&format!("/v1/webhooks/{webhook}/deliveries?status={status}"), &admin)
        .await
        .json()
        .await
        .unwrap_or_default();
    log["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_event_reaches_the_receiver_once_signed_even_when_it_fails_twice() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start(2).await;
    let (webhook, _) = subscribe(&app, &receiver.url, json!(["CaseOpened", "CaseStatusChanged"])).await;

    let mut expected = Vec::new();
    for title in ["Printer jam", "Broken chair", "No VPN"] {
        expected.push(app.open_case(title).await["id"].as_str().unwrap().to_owned());
    }
    let status = json!({ "status": "in_progress" });
    let moved = app.command(Method::POST, &format!("/v1/cases/{}/status", expected[0]), &app.token, Some(status)).await;
    assert_eq!(moved.status(), StatusCode::OK);

    let delivered = eventually("four events delivered", || async {
        let ok: Vec<Received> = receiver.received().into_iter().filter(|r| r.answered == 204).collect();
        (ok.len() >= 4).then_some(ok)
    })
    .await;
    // Nothing comes after: each event once.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let all = receiver.received();
    let mut per_event: BTreeMap<String, usize> = BTreeMap::new();
    for r in all.iter().filter(|r| r.answered == 204) {
        *per_event.entry(r.event_id.clone()).or_default() += 1;
    }
    assert_eq!(per_event.len(), 4, "{all:?}");
    assert!(per_event.values().all(|n| *n == 1), "an event delivered twice: {per_event:?}");
    assert_eq!(all.len(), 6, "two failures, then four deliveries: {all:?}");
    assert!(all.iter().all(|r| r.signed), "every request signed with the secret: {all:?}");

    // The body is the event: its type, stream and payload.
    let types: Vec<&str> = delivered.iter().map(|r| r.body["type"].as_str().unwrap()).collect();
    assert_eq!(types.iter().filter(|t| **t == "CaseOpened").count(), 3, "{types:?}");
    assert_eq!(types.iter().filter(|t| **t == "CaseStatusChanged").count(), 1);
    let opened = delivered.iter().find(|r| r.body["type"] == "CaseOpened").unwrap();
    assert_eq!(opened.body["tenant_id"], json!(app.tenant_id));
    assert!(expected.contains(&opened.body["stream_id"].as_str().unwrap().to_owned()));
    assert!(opened.body["data"]["case_number"].as_str().unwrap().starts_with("CASE-"));

    // The delivery log: four delivered, the retried ones with their attempts.
    let log = eventually("the log to show four deliveries", || async {
        let log = deliveries(&app, &webhook, "delivered").await;
        (log.len() == 4).then_some(log)
    })
    .await;
    let attempts: usize = log.iter().map(|d| d["attempts"].as_u64().unwrap() as usize).sum();
    assert_eq!(attempts, 6, "{log:?}");
    assert!(log.iter().all(|d| d["last_status"] == 204 && d["delivered_at"].is_string()), "{log:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_that_always_fails_is_dead_lettered_after_the_last_attempt() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start(usize::MAX).await;
    let (webhook, _) = subscribe(&app, &receiver.url, json!(["CaseOpened"])).await;
    app.open_case("Leaking tap").await;

    let dead = eventually("the delivery dead-lettered", || async {
        let dead = deliveries(&app, &webhook, "dead").await;
        (!dead.is_empty()).then_some(dead)
    })
    .await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let letter = &dead[0];
    assert_eq!((letter["attempts"].as_u64(), letter["last_status"].as_u64()), (Some(3), Some(500)), "{letter}");
    assert!(letter["last_error"].as_str().unwrap().contains("500"));
    assert_eq!(letter["event_type"], "CaseOpened");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(receiver.received().len(), 3, "three attempts (the test settings' maximum), then no more");
    assert!(deliveries(&app, &webhook, "pending").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_webhook_gets_nothing_more_and_its_secret_is_gone() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start(0).await;
    let admin = app.token_for(app.tenant_id, Role::Admin);
    let (webhook, _) = subscribe(&app, &receiver.url, json!(["CaseOpened"])).await;
    app.open_case("Before").await;
    eventually("the first delivery", || async { (receiver.received().len() == 1).then_some(()) }).await;

    let deleted = app.command(Method::DELETE, &format!("/v1/webhooks/{webhook}"), &admin, None).await;
    assert_eq!(deleted.status(), StatusCode::OK);
    let position = deleted.json::<Value>().await.unwrap()["position"].as_str().unwrap().to_owned();
    let gone = app.query(&format!("/v1/webhooks/{webhook}?position={position}"), &admin).await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    let opened = app.open_case("After").await;
    // Once the case is in the read model, its batch queued whatever it would have.
    let id = opened["id"].as_str().unwrap();
    let seen =
        app.query(&format!("/v1/cases/{id}?position={}", opened["position"].as_str().unwrap()), &app.token).await;
    assert_eq!(seen.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(receiver.received().len(), 1, "nothing after the deletion");
    let secrets: i64 =
        sqlx::query_scalar("SELECT count(*) FROM eventstore.webhook_secrets").fetch_one(&app.pool).await.unwrap();
    assert_eq!(secrets, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_secret_is_in_no_event_and_no_answer() {
    let app = TestApp::spawn().await;
    let admin = app.token_for(app.tenant_id, Role::Admin);
    let (webhook, position) = subscribe(&app, "http://127.0.0.1:9/hook", json!(["CaseOpened"])).await;
    let journal: Vec<String> =
        sqlx::query_scalar("SELECT envelope::text FROM eventstore.events").fetch_all(&app.pool).await.unwrap();
    assert!(journal.iter().all(|e| !e.contains(SECRET)), "the secret is in the journal");
    let one = app.query(&format!("/v1/webhooks/{webhook}?position={position}"), &admin).await.text().await.unwrap();
    let list = app.query("/v1/webhooks", &admin).await.text().await.unwrap();
    assert!(one.contains("CRM sync") && list.contains(&webhook), "{one} {list}");
    assert!(!one.contains(SECRET) && !list.contains(SECRET));
}

#[tokio::test(flavor = "multi_thread")]
async fn only_administrators_manage_webhooks_and_only_their_tenants() {
    let app = TestApp::spawn().await;
    let (webhook, position) = subscribe(&app, "http://127.0.0.1:9/hook", json!(["*"])).await;
    let body = json!({ "url": "https://example.com/hook", "event_types": ["*"], "secret": SECRET });
    for role in [Role::Agent, Role::Supervisor] {
        let token = app.token_for(app.tenant_id, role);
        let created = app.command(Method::POST, "/v1/webhooks", &token, Some(body.clone())).await;
        assert_eq!(created.status(), StatusCode::FORBIDDEN, "{role:?} creating");
        let read = app.query(&format!("/v1/webhooks/{webhook}/deliveries?position={position}"), &token).await;
        assert_eq!(read.status(), StatusCode::FORBIDDEN, "{role:?} reading the log");
        let listed = app.query("/v1/webhooks", &token).await;
        assert_eq!(listed.status(), StatusCode::FORBIDDEN, "{role:?} listing");
    }
    // Another tenant's administrator: the webhook is not theirs to see or change.
    let (other, _) = app.provision_tenant().await;
    let intruder = app.token_for(other, Role::Admin);
    for path in [format!("/v1/webhooks/{webhook}"), format!("/v1/webhooks/{webhook}/deliveries")] {
        assert_eq!(app.query(&path, &intruder).await.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let listed: Value = app.query("/v1/webhooks", &intruder).await.json().await.unwrap();
    assert_eq!(listed["items"], json!([]));
    let patched = app
        .command(Method::PATCH, &format!("/v1/webhooks/{webhook}"), &intruder, Some(json!({ "active": false })))
        .await;
    assert_eq!(patched.status(), StatusCode::NOT_FOUND);
    let deleted = app.command(Method::DELETE, &format!("/v1/webhooks/{webhook}"), &intruder, None).await;
    assert_eq!(deleted.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_subscriptions_are_a_422_naming_the_field() {
    let app = TestApp::spawn().await;
    let admin = app.token_for(app.tenant_id, Role::Admin);
    let good = json!({ "url": "https://example.com/hook", "event_types": ["CaseOpened"], "secret": SECRET });
    let with = |field: &str, value: Value| {
        let mut body = good.clone();
        body[field] = value;
        body
    };
    let long_url = format!("https://example.com/{}", "a".repeat(3000));
    let many: Vec<String> = (0..101).map(|_| "CaseOpened".to_owned()).collect();
    let cases = [
        (with("url", json!("ftp://example.com/hook")), "url"),
        (with("url", json!("https://user:pw@example.com/hook")), "url"),
        (with("url", json!("https://exa\u{0}mple.com/hook")), "url"),
        (with("url", json!(long_url)), "url"),
        (with("url", json!("https://")), "url"),
        (with("event_types", json!(["CaseExploded"])), "event_types[0]"),
        (with("event_types", json!([])), "event_types"),
        (with("event_types", json!(many)), "event_types"),
        (with("secret", json!("short")), "secret"),
        (with("secret", json!("a secret with a\u{7}bell in it")), "secret"),
        (with("secret", json!("é".repeat(257))), "secret"),
        (with("description", json!("x\u{0}y")), "description"),
    ];
    for (body, field) in cases {
        let answer = app.command(Method::POST, "/v1/webhooks", &admin, Some(body.clone())).await;
        assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let problem: Value = answer.json().await.unwrap();
        let fields: Vec<&str> =
            problem["errors"].as_array().unwrap().iter().filter_map(|e| e["field"].as_str()).collect();
        assert!(fields.contains(&field), "{field} not named for {body}: {problem}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn private_and_loopback_addresses_are_refused_unless_the_operator_allows_them() {
    let mut settings = test_settings();
    settings.webhooks.allow_private = false;
    let app = TestApp::spawn_with(settings).await;
    let admin = app.token_for(app.tenant_id, Role::Admin);
    for url in [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://[::1]/hook",
        "http://10.0.0.7/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://0.0.0.0/hook",
        "http://[::ffff:127.0.0.1]/hook",
    ] {
        let body = json!({ "url": url, "event_types": ["*"], "secret": SECRET });
        let answer = app.command(Method::POST, "/v1/webhooks", &admin, Some(body)).await;
        assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY, "{url}");
        let problem: Value = answer.json().await.unwrap();
        assert_eq!(problem["errors"][0]["field"], "url", "{url}: {problem}");
    }
    // A name that does not resolve is refused too.
    let body = json!({ "url": "https://no-such-host.invalid/hook", "event_types": ["*"], "secret": SECRET });
    let answer = app.command(Method::POST, "/v1/webhooks", &admin, Some(body)).await;
    assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Moving an allowed webhook to a private address is refused the same way.
    let unused = Uuid::now_v7();
    let moved = app
        .command(Method::PATCH, &format!("/v1/webhooks/{unused}"), &admin, Some(json!({ "url": "http://10.1.1.1/" })))
        .await;
    assert!(matches!(moved.status(), StatusCode::UNPROCESSABLE_ENTITY | StatusCode::NOT_FOUND));
}

#[tokio::test(flavor = "multi_thread")]
async fn cloud_metadata_addresses_are_refused_even_where_private_ones_are_allowed() {
    let app = TestApp::spawn().await;
    assert!(app.settings.webhooks.allow_private);
    let admin = app.token_for(app.tenant_id, Role::Admin);
    for url in [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[fd00:ec2::254]/latest",
        "http://100.100.100.200/latest/meta-data",
        "http://[::ffff:169.254.169.254]/",
        "http://[fe80::1]/hook",
    ] {
        let body = json!({ "url": url, "event_types": ["*"], "secret": SECRET });
        let answer = app.command(Method::POST, "/v1/webhooks", &admin, Some(body)).await;
        assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY, "{url}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_manage_cannot_be_granted_to_a_lower_role() {
    let app = TestApp::spawn().await;
    let admin = app.token_for(app.tenant_id, Role::Admin);
    let agent = app.create_user("ana", "agent").await;
    let grant = json!({ "permissions": { "webhooks": ["manage"] } });
    let answer = app.command(Method::PUT, &format!("/v1/users/{agent}/permissions"), &admin, Some(grant)).await;
    assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = answer.json().await.unwrap();
    assert!(problem["detail"].as_str().unwrap().contains("webhooks:manage"), "{problem}");
    let token = app.login_token("ana").await;
    let body = json!({ "url": "https://example.com/hook", "event_types": ["*"], "secret": SECRET });
    let created = app.command(Method::POST, "/v1/webhooks", &token, Some(body)).await;
    assert_eq!(created.status(), StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_has_at_most_25_webhooks() {
    let app = TestApp::spawn().await;
    let admin = app.token_for(app.tenant_id, Role::Admin);
    let mut first = String::new();
    for i in 0..25 {
        let (id, _) = subscribe(&app, &format!("http://127.0.0.1:9/hook/{i}"), json!(["CaseOpened"])).await;
        if i == 0 {
            first = id;
        }
    }
    let body = json!({ "url": "http://127.0.0.1:9/hook/26", "event_types": ["*"], "secret": SECRET });
    let refused = app.command(Method::POST, "/v1/webhooks", &admin, Some(body.clone())).await;
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    let deleted = app.command(Method::DELETE, &format!("/v1/webhooks/{first}"), &admin, None).await;
    assert_eq!(deleted.status(), StatusCode::OK);
    let created = app.command(Method::POST, "/v1/webhooks", &admin, Some(body)).await;
    assert_eq!(created.status(), StatusCode::CREATED, "a deleted webhook frees its place");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_locked_administrators_old_token_manages_no_webhook() {
    let app = TestApp::spawn().await;
    let operator = app.token_for(app.tenant_id, Role::Admin);
    let (webhook, position) = subscribe(&app, "http://127.0.0.1:9/hook", json!(["*"])).await;
    let boss = app.create_user("boss", "admin").await;
    let token = app.login_token("boss").await;
    let listed = app.query(&format!("/v1/webhooks?position={position}"), &token).await;
    assert_eq!(listed.status(), StatusCode::OK, "an active administrator reads them");

    let locked = app
        .command(Method::POST, &format!("/v1/users/{boss}/status"), &operator, Some(json!({ "status": "locked" })))
        .await;
    assert_eq!(locked.status(), StatusCode::OK);
    let body = json!({ "url": "https://example.com/hook", "event_types": ["*"], "secret": SECRET });
    let created = app.command(Method::POST, "/v1/webhooks", &token, Some(body)).await;
    assert!(matches!(created.status(), StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED), "{}", created.status());
    let deleted = app.command(Method::DELETE, &format!("/v1/webhooks/{webhook}"), &token, None).await;
    assert!(matches!(deleted.status(), StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED), "{}", deleted.status());
    for path in ["/v1/webhooks".to_owned(), format!("/v1/webhooks/{webhook}/deliveries")] {
        let read = app.query(&path, &token).await;
        assert!(matches!(read.status(), StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED), "{path}: {}", read.status());
    }
}

/// A receiver that answers 204 after `delay`; counts what it got.
async fn slow_receiver(delay: Duration) -> (String, Arc<AtomicUsize>) {
    let got = Arc::new(AtomicUsize::new(0));
    let counter = got.clone();
    let hook = move || {
        let counter = counter.clone();
        async move {
            tokio::time::sleep(delay).await;
            counter.fetch_add(1, Ordering::SeqCst);
            AxumStatus::NO_CONTENT
        }
    };
    let app = axum::Router::new().route("/hook", axum::routing::post(hook));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_with_a_backlog_to_a_slow_receiver_does_not_hold_back_another_tenants_deliveries() {
    let app = TestApp::spawn().await;
    // Tenant A: a receiver that takes a second per request, and 400 deliveries due.
    let (slow, slow_got) = slow_receiver(Duration::from_secs(1)).await;
    let (hook, position) = subscribe(&app, &slow, json!(["CaseOpened"])).await;
    app.query(&format!("/v1/webhooks/{hook}?position={position}"), &app.token_for(app.tenant_id, Role::Admin)).await;
    sqlx::query(
        "INSERT INTO projector.webhook_deliveries (tenant_id, webhook_id, event_id, event_type, body)
         SELECT $1, $2, gen_random_uuid(), 'CaseOpened', '{}'::jsonb FROM generate_series(1, 400)",
    )
    .bind(app.tenant_id)
    .bind(Uuid::parse_str(&hook).unwrap())
    .execute(&app.pool)
    .await
    .unwrap();
    eventually("the slow receiver busy", || async { (slow_got.load(Ordering::SeqCst) > 0).then_some(()) }).await;

    // Tenant B: one event, to a receiver of its own.
    let (other, _, other_token) = app.provision_tenant_with_agent().await;
    let fast = Receiver::start(0).await;
    let admin = app.token_for(other, Role::Admin);
    let body = json!({ "url": fast.url, "event_types": ["CaseOpened"], "secret": SECRET });
    assert_eq!(app.command(Method::POST, "/v1/webhooks", &admin, Some(body)).await.status(), StatusCode::CREATED);
    let case_type = app.create_case_type(other, "Other", json!({ "fields": [] })).await;
    let sent = std::time::Instant::now();
    let open = json!({ "title": "Elsewhere", "priority": "low", "case_type_id": case_type });
    assert_eq!(app.command(Method::POST, "/v1/cases", &other_token, Some(open)).await.status(), StatusCode::CREATED);
    eventually("tenant B's delivery", || async { (!fast.received().is_empty()).then_some(()) }).await;
    let waited = sent.elapsed();
    // The backlog takes 400 s at one request a second per batch of 20; B waits a round or two.
    assert!(waited < Duration::from_secs(6), "tenant B waited {waited:?} behind tenant A's backlog");
    assert!(slow_got.load(Ordering::SeqCst) < 400, "the backlog was not simply drained first");
}
