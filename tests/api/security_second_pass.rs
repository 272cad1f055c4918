//! Access control, second pass (issue 28): idempotency keys belong to their sender and
//! expire, logins lock out per (username, address), the current-password check counts
//! its failures, and managing users reaches only users with no right beyond one's own.

use murima_tests::{test_settings, TestApp};
use reqwest::{Method, StatusCode};
use runtime::auth::Role;
use serde_json::{json, Value};

const PASSWORD: &str = "integration test password";

async fn open_case(app: &TestApp, token: &str, key: &str, title: &str) -> reqwest::Response {
    app.http
        .post(format!("{}/v1/cases", app.command_url))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(&json!({ "title": title, "case_type_id": app.case_type_id }))
        .send()
        .await
        .unwrap()
}

async fn login_from(app: &TestApp, address: &str, username: &str, password: &str) -> reqwest::Response {
    app.http
        .post(format!("{}/v1/auth/login", app.command_url))
        .header("x-forwarded-for", address)
        .json(&json!({ "tenant": app.tenant_slug().await, "username": username, "password": password }))
        .send()
        .await
        .unwrap()
}

async fn logins_recorded(app: &TestApp, user: uuid::Uuid) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM eventstore.events WHERE tenant_id = $1 AND stream_id = $2 AND event_type = 'UserLoggedIn'",
    )
    .bind(app.tenant_id)
    .bind(user)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_colleague_reusing_an_idempotency_key_gets_neither_the_answer_nor_a_hint() {
    let app = TestApp::spawn().await;
    app.create_user("first.sender", "agent").await;
    app.create_user("second.sender", "agent").await;
    let first = app.login_token("first.sender").await;
    let second = app.login_token("second.sender").await;
    let cases_before = app.journal_count("case").await;

    let mine = open_case(&app, &first, "shared-key", "Same body").await;
    assert_eq!(mine.status(), StatusCode::CREATED);
    let mine: Value = mine.json().await.unwrap();
    // The colleague with the same key and body: their own case, not the first one's answer.
    let theirs = open_case(&app, &second, "shared-key", "Same body").await;
    assert_eq!(theirs.status(), StatusCode::CREATED);
    let theirs: Value = theirs.json().await.unwrap();
    assert_ne!(theirs["id"], mine["id"], "the second sender got the first one's answer");
    // With another body: no 422 telling them the key exists; their command runs.
    let other = open_case(&app, &second, "first-senders-key", "Other body").await;
    assert_eq!(other.status(), StatusCode::CREATED);
    let _ = open_case(&app, &first, "first-senders-key", "First body").await;
    let probe = open_case(&app, &second, "first-senders-key", "A third body").await;
    assert_eq!(probe.status(), StatusCode::UNPROCESSABLE_ENTITY, "the second sender's own key, reused");
    assert_eq!(app.journal_count("case").await - cases_before, 4);
    // The sender's own retry still gets the original answer.
    let retry: Value = open_case(&app, &first, "shared-key", "Same body").await.json().await.unwrap();
    assert_eq!(retry["id"], mine["id"]);
    assert_eq!(app.journal_count("case").await - cases_before, 4);

    // A record older than the retention (48 hours) answers nobody.
    sqlx::query("UPDATE eventstore.idempotency SET created_at = now() - interval '49 hours' WHERE key = 'shared-key'")
        .execute(&app.pool)
        .await
        .unwrap();
    let late = open_case(&app, &first, "shared-key", "Same body").await;
    assert_eq!(late.status(), StatusCode::CREATED);
    let late: Value = late.json().await.unwrap();
    assert_ne!(late["id"], mine["id"], "an expired record was replayed");
    assert_eq!(app.journal_count("case").await - cases_before, 5);

    // Logins never answer from a stored record: two logins, two recorded logins.
    let user = app.create_user("keyed.login", "agent").await;
    let slug = app.tenant_slug().await;
    let before = logins_recorded(&app, user).await;
    for _ in 0..2 {
        let answer = app
            .http
            .post(format!("{}/v1/auth/login", app.command_url))
            .header("idempotency-key", "login-1")
            .json(&json!({ "tenant": slug, "username": "keyed.login", "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
    }
    assert_eq!(logins_recorded(&app, user).await - before, 2, "a login was answered from a stored record");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_passwords_from_one_address_do_not_lock_the_owner_out_elsewhere() {
    let mut settings = test_settings();
    settings.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    let app = TestApp::spawn_with(settings).await;
    app.create_user("the.admin", "admin").await;

    // 12 wrong passwords from the attacker's address: that address is locked out ...
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(login_from(&app, "6.6.6.6", "the.admin", "not the password!").await.status());
    }
    assert_eq!(statuses[0], StatusCode::UNAUTHORIZED);
    assert_eq!(statuses[11], StatusCode::TOO_MANY_REQUESTS, "{statuses:?}");
    let locked = login_from(&app, "6.6.6.6", "the.admin", PASSWORD).await;
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(locked.headers().contains_key("retry-after"));
    // ... the owner, elsewhere, is not.
    assert_eq!(login_from(&app, "10.1.1.1", "the.admin", PASSWORD).await.status(), StatusCode::OK);

    // Many addresses at once slow the username down but never lock the owner out.
    for i in 0..12 {
        let answer = login_from(&app, &format!("7.7.7.{i}"), "the.admin", "not the password!").await;
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    assert_eq!(login_from(&app, "10.1.1.2", "the.admin", PASSWORD).await.status(), StatusCode::OK);

    // A success clears that address's count for the username.
    for _ in 0..4 {
        assert_eq!(
            login_from(&app, "10.1.1.3", "the.admin", "typo typo typo").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(login_from(&app, "10.1.1.3", "the.admin", PASSWORD).await.status(), StatusCode::OK);
    for _ in 0..4 {
        assert_eq!(
            login_from(&app, "10.1.1.3", "the.admin", "typo typo typo").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn guessing_the_current_password_through_a_password_change_is_locked_out() {
    let app = TestApp::spawn().await;
    let user = app.create_user("stolen.session", "agent").await;
    let token = app.login_token("stolen.session").await;
    let change = |current: &str| {
        let body = json!({ "current_password": current, "new_password": "the thief's new password" });
        let request =
            app.http.post(format!("{}/v1/users/{user}/password", app.command_url)).bearer_auth(&token).json(&body);
        async move { request.send().await.unwrap() }
    };
    let mut statuses = Vec::new();
    for i in 0..25 {
        statuses.push(change(&format!("guess number {i}")).await.status());
    }
    assert_eq!(statuses[0], StatusCode::UNPROCESSABLE_ENTITY);
    let first_lock = statuses.iter().position(|s| *s == StatusCode::TOO_MANY_REQUESTS);
    assert!(first_lock.is_some_and(|i| i <= 6), "25 wrong guesses: {statuses:?}");
    // Locked out even with the right one, with the time to wait.
    let locked = change(PASSWORD).await;
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = locked.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&wait), "{wait}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_manager_cannot_take_over_a_colleague_with_more_rights_or_reset_itself() {
    let app = TestApp::spawn().await;
    let operator = app.token_for(app.tenant_id, Role::Admin);
    let helper = app.create_user("reset.helper", "agent").await;
    let auditor = app.create_user("agent.auditor", "agent").await;
    let plain = app.create_user("plain.colleague", "agent").await;
    for (user, grant) in [
        (helper, json!({ "permissions": { "users": ["manage"] } })),
        (auditor, json!({ "permissions": { "audit": ["read"], "notes": ["view_internal"] } })),
    ] {
        let answer = app.command(Method::PUT, &format!("/v1/users/{user}/permissions"), &operator, Some(grant)).await;
        assert!(answer.status().is_success());
    }
    let token = app.login_token("reset.helper").await;
    let reset = json!({ "new_password": "now i am the auditor" });
    let attempts = [
        (format!("/v1/users/{auditor}/password/reset"), reset.clone()),
        (format!("/v1/users/{auditor}/status"), json!({ "status": "locked" })),
        (format!("/v1/users/{auditor}/permissions"), json!({ "permissions": {} })),
    ];
    for (path, body) in attempts {
        let method = if path.ends_with("permissions") { Method::PUT } else { Method::POST };
        let answer = app.command(method, &path, &token, Some(body)).await;
        assert_eq!(answer.status(), StatusCode::FORBIDDEN, "{path}");
    }
    let ended = app.command(Method::DELETE, &format!("/v1/users/{auditor}/sessions"), &token, None).await;
    assert_eq!(ended.status(), StatusCode::FORBIDDEN);

    // Its own password only through the route that checks the current one.
    let own =
        app.command(Method::POST, &format!("/v1/users/{helper}/password/reset"), &token, Some(reset.clone())).await;
    assert_eq!(own.status(), StatusCode::FORBIDDEN);
    let problem: Value = own.json().await.unwrap();
    assert!(problem["detail"].as_str().unwrap().contains(&format!("/v1/users/{helper}/password")), "{problem}");

    // A colleague with no right beyond its own stays within reach.
    let answer = app.command(Method::POST, &format!("/v1/users/{plain}/password/reset"), &token, Some(reset)).await;
    assert_eq!(answer.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_reads_no_channel_configuration_and_nobody_reads_its_credentials() {
    let app = TestApp::spawn().await;
    let admin = app.token_for(app.tenant_id, Role::Admin);
    let create = json!({ "name": "Mail", "type": "email", "configuration": {
        "smtp_host": "mail.example.org",
        "smtp_password": "hunter2-smtp",
        "oauth": { "client_id": "murima", "client_secret": "s3cret-oauth" },
    }});
    let r = app.command(Method::POST, "/v1/channels", &admin, Some(create)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.unwrap();
    let (id, position) = (created["id"].as_str().unwrap().to_owned(), created["position"].as_str().unwrap().to_owned());

    // An agent sees the channel, not its configuration, in the list and alone.
    let one: Value =
        app.query(&format!("/v1/channels/{id}?position={position}"), &app.token).await.json().await.unwrap();
    assert_eq!(one["name"], "Mail");
    assert!(one.get("configuration").is_none(), "an agent read the configuration: {one}");
    let list: Value = app.query("/v1/channels", &app.token).await.json().await.unwrap();
    assert!(list["items"][0].get("configuration").is_none(), "{list}");
    // The counters never hold a channel: its token is refused there at once, not waited on.
    let counters = app.query(&format!("/v1/counters?position={position}"), &app.token).await;
    assert_eq!(counters.status(), StatusCode::BAD_REQUEST);

    // A channel manager sees the configuration, with credentials only as set.
    let r = app.query(&format!("/v1/channels/{id}?position={position}"), &admin).await;
    let text = r.text().await.unwrap();
    assert!(!text.contains("hunter2") && !text.contains("s3cret"), "a credential was answered back: {text}");
    let seen: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(seen["configuration"]["smtp_host"], "mail.example.org");
    assert_eq!(seen["configuration"]["smtp_password"]["set"], true);
    assert_eq!(seen["configuration"]["oauth"]["client_secret"]["set"], true);

    // Sent back as read with a new host: the credentials stay stored; the audit trail and
    // the journal never held them.
    let mut configuration = seen["configuration"].clone();
    configuration["smtp_host"] = json!("smtp.example.org");
    configuration["oauth"]["client_secret"] = Value::Null;
    let r = app
        .command(Method::PATCH, &format!("/v1/channels/{id}"), &admin, Some(json!({ "configuration": configuration })))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let stored: Vec<(String, Value)> = sqlx::query_as(
        "SELECT pointer, value FROM eventstore.channel_credentials WHERE tenant_id = $1 ORDER BY pointer",
    )
    .bind(app.tenant_id)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(stored, vec![("/smtp_password".to_owned(), json!("hunter2-smtp"))]);
    let leaked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM eventstore.events WHERE tenant_id = $1
         AND (envelope::text LIKE '%hunter2%' OR envelope::text LIKE '%s3cret%')",
    )
    .bind(app.tenant_id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(leaked, 0, "a credential went into the journal");
    let position = r.json::<Value>().await.unwrap()["position"].as_str().unwrap().to_owned();
    let audit = app.query(&format!("/v1/audit/channel/{id}?position={position}"), &admin).await;
    assert_eq!(audit.status(), StatusCode::OK);
    let audit = audit.text().await.unwrap();
    assert!(audit.contains("smtp.example.org"), "{audit}");
    assert!(!audit.contains("hunter2") && !audit.contains("s3cret"), "the audit log holds a credential: {audit}");
    // A supervisor may read audit trails, not a channel's configuration.
    let supervisor = app.token_for(app.tenant_id, Role::Supervisor);
    let theirs = app.query(&format!("/v1/audit/channel/{id}"), &supervisor).await.text().await.unwrap();
    assert!(theirs.contains("\"name\"") && !theirs.contains("smtp"), "{theirs}");

    // Credentials inside arrays leave too; a path deeper than any configuration needs is refused.
    let nested = json!({ "name": "Accounts", "type": "email", "configuration": {
        "accounts": [{ "user": "a", "password": "in-an-array" }] } });
    assert_eq!(app.command(Method::POST, "/v1/channels", &admin, Some(nested)).await.status(), StatusCode::CREATED);
    let deep_key = "k".repeat(300);
    let deep = json!({ "name": "Deep", "type": "email", "configuration": { deep_key: { "password": "x" } } });
    assert_eq!(
        app.command(Method::POST, "/v1/channels", &admin, Some(deep)).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let leaked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM eventstore.events WHERE tenant_id = $1 AND envelope::text LIKE '%in-an-array%'",
    )
    .bind(app.tenant_id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(leaked, 0, "a credential in an array went into the journal");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_neither_reads_nor_filters_nor_sets_a_field_visible_to_admins_only() {
    let app = TestApp::spawn().await;
    let admin = app.token_for(app.tenant_id, Role::Admin);
    app.create_user("field.admin", "admin").await;
    let admin_login = app.login_token("field.admin").await;
    let supervisor = app.token_for(app.tenant_id, Role::Supervisor);
    let definition = json!({
        "entity_type": "case", "field_name": "risk_score", "display_name": "Fraud risk", "field_type": "text",
        "visibility_rules": { "roles": ["admin"] },
    });
    let r = app.command(Method::POST, "/v1/custom-fields", &admin, Some(definition)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let position = r.json::<Value>().await.unwrap()["position"].as_str().unwrap().to_owned();
    // A rule naming no role is refused.
    let bad = json!({ "entity_type": "case", "field_name": "odd", "display_name": "Odd", "field_type": "text",
                      "visibility_rules": { "roles": ["root"] } });
    assert_eq!(
        app.command(Method::POST, "/v1/custom-fields", &admin, Some(bad)).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(app.query(&format!("/v1/custom-fields?position={position}"), &admin).await.status(), StatusCode::OK);

    let open = json!({ "title": "Suspicious refund zebra", "case_type_id": app.case_type_id,
                       "custom_fields": { "risk_score": "high-risk" } });
    // An agent cannot set the field ...
    let r = app.command(Method::POST, "/v1/cases", &app.token, Some(open.clone())).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "{}", r.text().await.unwrap());
    // ... an admin can.
    let r = app.command(Method::POST, "/v1/cases", &admin_login, Some(open)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let opened: Value = r.json().await.unwrap();
    let (case, position) = (opened["id"].as_str().unwrap().to_owned(), opened["position"].as_str().unwrap().to_owned());

    // The case screen, the list, the queue-less list filter and search hits leave it out.
    let seen: Value =
        app.query(&format!("/v1/cases/{case}?position={position}"), &app.token).await.json().await.unwrap();
    assert_eq!(seen["title"], "Suspicious refund zebra");
    assert!(seen["custom_fields"].get("risk_score").is_none(), "the case screen showed it: {seen}");
    let as_admin: Value = app.query(&format!("/v1/cases/{case}"), &admin).await.json().await.unwrap();
    assert_eq!(as_admin["custom_fields"]["risk_score"], "high-risk");
    let list = app.query("/v1/cases", &app.token).await.text().await.unwrap();
    assert!(list.contains("Suspicious refund zebra") && !list.contains("high-risk"), "{list}");
    let filter = urlencode(r#"{"risk_score":"high-risk"}"#);
    let probe = app.query(&format!("/v1/cases?custom_fields={filter}"), &app.token).await;
    assert_eq!(probe.status(), StatusCode::FORBIDDEN, "a yes/no oracle on the hidden field");
    let admins: Value = app.query(&format!("/v1/cases?custom_fields={filter}"), &admin).await.json().await.unwrap();
    assert_eq!(admins["items"].as_array().unwrap().len(), 1);
    let hits = app.query(&format!("/v1/search/cases?q=zebra&position={position}"), &app.token).await;
    assert_eq!(hits.status(), StatusCode::OK);
    let hits = hits.text().await.unwrap();
    assert!(hits.contains("zebra") && !hits.contains("high-risk"), "a search hit showed it: {hits}");

    // The agent's update cannot set it, and replacing the fields they see keeps it.
    let update = |fields: Value| json!({ "custom_fields": fields });
    let r = app
        .command(Method::PATCH, &format!("/v1/cases/{case}"), &app.token, Some(update(json!({ "risk_score": "low" }))))
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = app.command(Method::PATCH, &format!("/v1/cases/{case}"), &app.token, Some(update(json!({})))).await;
    assert!(r.status().is_success(), "{}", r.status());
    let r = app
        .command(
            Method::PATCH,
            &format!("/v1/cases/{case}"),
            &admin_login,
            Some(update(json!({ "risk_score": "critical-risk" }))),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let position = r.json::<Value>().await.unwrap()["position"].as_str().unwrap().to_owned();
    let as_admin: Value =
        app.query(&format!("/v1/cases/{case}?position={position}"), &admin).await.json().await.unwrap();
    assert_eq!(as_admin["custom_fields"]["risk_score"], "critical-risk");

    // A template rendered by the agent does not fill it in.
    let template = json!({ "name": "Risk note", "channel_type": "email", "content": "Risk: {{risk_score}}" });
    let r = app.command(Method::POST, "/v1/message-templates", &supervisor, Some(template)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let template = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let rendered = app
        .command(
            Method::POST,
            &format!("/v1/message-templates/{template}/render"),
            &app.token,
            Some(json!({ "case_id": case })),
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(!rendered.contains("-risk"), "a rendered template showed the hidden field: {rendered}");

    // A supervisor's audit trail of the case holds neither value.
    let audit = app.query(&format!("/v1/audit/case/{case}?position={position}"), &supervisor).await;
    assert_eq!(audit.status(), StatusCode::OK);
    let audit = audit.text().await.unwrap();
    assert!(audit.contains("custom_fields"), "{audit}");
    assert!(!audit.contains("-risk"), "the audit trail showed the hidden field: {audit}");
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sixty_logins_keep_twenty_sessions_and_the_first_token_is_refused() {
    let app = TestApp::spawn().await;
    let user = app.create_user("many.logins", "agent").await;
    let mut tokens = Vec::new();
    for _ in 0..60 {
        tokens.push(app.login_token("many.logins").await);
    }
    let first = app.query("/v1/cases", &tokens[0]).await;
    assert_eq!(first.status(), StatusCode::UNAUTHORIZED, "the first of 60 logins still reads");
    assert_eq!(app.query("/v1/cases", &tokens[39]).await.status(), StatusCode::UNAUTHORIZED, "the 40th");
    for token in &tokens[40..] {
        assert_eq!(app.query("/v1/cases", token).await.status(), StatusCode::OK, "one of the newest 20");
    }
    let mut redis = redis::Client::open(test_settings().redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let key = runtime::tenancy::Tenancy(app.tenant_id).redis_key(&format!("user:{user}:sessions_by_age"));
    let held: usize = redis::cmd("ZCARD").arg(&key).query_async(&mut redis).await.unwrap();
    assert_eq!(held, 20);

    // Ending them all (in batches) ends every one, sessions from before the cap included.
    let old = runtime::tenancy::Tenancy(app.tenant_id).redis_key(&format!("user:{user}:sessions"));
    let session_prefix = runtime::tenancy::Tenancy(app.tenant_id).redis_key("session:");
    let mut before_the_cap = Vec::new();
    for _ in 0..250 {
        let id = uuid::Uuid::new_v4();
        let _: () = redis::pipe()
            .hset(format!("{session_prefix}{id}"), "user", user.to_string())
            .ignore()
            .sadd(&old, id.to_string())
            .ignore()
            .query_async(&mut redis)
            .await
            .unwrap();
        before_the_cap.push(id);
    }
    let admin = app.token_for(app.tenant_id, Role::Admin);
    let r = app.command(Method::DELETE, &format!("/v1/users/{user}/sessions"), &admin, None).await;
    assert!(r.status().is_success(), "{}", r.status());
    for token in &tokens[40..] {
        assert_eq!(app.query("/v1/cases", token).await.status(), StatusCode::UNAUTHORIZED);
    }
    let left: usize = redis::cmd("EXISTS").arg(&key).arg(&old).query_async(&mut redis).await.unwrap();
    assert_eq!(left, 0, "a session set outlived ending them all");
    let mut alive = 0usize;
    for id in before_the_cap {
        let held: bool =
            redis::cmd("EXISTS").arg(format!("{session_prefix}{id}")).query_async(&mut redis).await.unwrap();
        alive += usize::from(held);
    }
    assert_eq!(alive, 0, "sessions of the user survived");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_user_cannot_fill_the_tenants_wait_slots_with_tokens_no_read_reaches() {
    let mut settings = test_settings();
    settings.read_wait = std::time::Duration::from_secs(3);
    let mut app = TestApp::spawn_with(settings).await;
    let user = app.create_user("slot.hog", "agent").await;
    let token = app.login_token("slot.hog").await;

    // A preference write's token read with the case search: refused at once, no wait.
    let r = app
        .command(
            Method::PUT,
            &format!("/v1/users/{user}/preferences"),
            &token,
            Some(json!({ "preferences": { "theme": "dark" } })),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let preference = r.json::<Value>().await.unwrap()["position"].as_str().unwrap().to_owned();
    for path in [
        format!("/v1/search/cases?q=anything&position={preference}"),
        format!("/v1/custom-fields?position={preference}"),
        format!("/v1/message-templates?position={preference}"),
    ] {
        let started = std::time::Instant::now();
        let answer = app.query(&path, &token).await;
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST, "{path}");
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "{path} waited {:?}", started.elapsed());
        let problem: Value = answer.json().await.unwrap();
        assert!(problem["detail"].as_str().unwrap().contains("a user"), "{problem}");
    }
    // Reads that wait for their projection's position take any token of the tenant.
    assert_eq!(app.query(&format!("/v1/cases?position={preference}"), &token).await.status(), StatusCode::OK);
    let case = app.open_case("Read with someone else's write").await;
    let (id, own) = (case["id"].as_str().unwrap(), case["position"].as_str().unwrap());
    assert_eq!(app.query(&format!("/v1/cases/{id}?position={own}"), &token).await.status(), StatusCode::OK);
    let detail = app.query(&format!("/v1/cases/{id}?position={preference}"), &token).await;
    assert_eq!(detail.status(), StatusCode::OK);

    // With the projector away, one user's 8 waiting reads hold 4 slots; a colleague still waits.
    app.kill_projector().await;
    let case = app.open_case("Never projected while the projector is away").await;
    let position = case["position"].as_str().unwrap().to_owned();
    let colleague = app.keys.issue(uuid::Uuid::now_v7(), app.tenant_id, Role::Agent, chrono::Duration::hours(1));
    let read = |who: String| {
        let (app, path) = (&app, format!("/v1/cases?limit=1&position={position}"));
        async move {
            let started = std::time::Instant::now();
            let answer = app.query(&path, &who).await;
            let status = answer.status();
            let problem: Value = answer.json().await.unwrap_or_default();
            (status, started.elapsed(), problem["detail"].as_str().unwrap_or_default().to_owned())
        }
    };
    let hog = futures::future::join_all((0..8).map(|_| read(token.clone())));
    let (hogged, (status, took, detail)) = tokio::join!(hog, async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        read(colleague.clone()).await
    });
    let turned_away: Vec<_> = hogged.iter().filter(|(_, _, d)| d.contains("of your reads")).collect();
    assert_eq!(turned_away.len(), 4, "{hogged:?}");
    assert!(turned_away
        .iter()
        .all(|(s, took, _)| *s == StatusCode::SERVICE_UNAVAILABLE && *took < std::time::Duration::from_secs(2)));
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        !detail.contains("already waiting") && took >= std::time::Duration::from_secs(2),
        "{detail} after {took:?}"
    );
    app.start_projector().await;
}
