//! Abuse resistance (issue 15): request budgets, login lock-outs, strict secrets and
//! tokens, bounded client headers, and read-your-writes waits that cannot be forged.

use murima_tests::{binary, test_settings, TestApp};
use reqwest::{Method, StatusCode};
use runtime::auth::Role;
use runtime::limits::{Budget, Limits};
use serde_json::{json, Value};
use uuid::Uuid;

fn limits(reads_per_user: u32) -> Limits {
    let plenty = Budget { per_minute: 1_000_000 };
    Limits {
        reads_per_ip: plenty,
        reads_per_tenant: plenty,
        reads_per_user: Budget { per_minute: reads_per_user },
        commands_per_ip: plenty,
        commands_per_tenant: plenty,
        commands_per_user: plenty,
        failed_logins_per_ip: 1_000,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_reads_is_cut_to_the_budget_and_commands_keep_theirs() {
    let mut settings = test_settings();
    settings.rate_limits = Some(limits(60)); // a burst of 10, then one a second
    let app = TestApp::spawn_with(settings).await;
    let (mut allowed, mut refused) = (0, 0);
    for _ in 0..200 {
        let answer = app.query("/v1/cases?limit=1", &app.token).await;
        let headers = answer.headers().clone();
        assert!(headers.contains_key("ratelimit-limit") && headers.contains_key("ratelimit-reset"), "{headers:?}");
        match answer.status() {
            StatusCode::OK => allowed += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                refused += 1;
                assert!(headers["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
                assert_eq!(headers["ratelimit-remaining"], "0");
                let problem: Value = answer.json().await.unwrap();
                assert_eq!(problem["status"], 429);
                assert!(problem["detail"].as_str().unwrap().contains("retry in"), "{problem}");
            }
            other => panic!("a read answered {other}"),
        }
    }
    println!("200 reads in a burst: {allowed} allowed, {refused} refused");
    assert!((10..=20).contains(&allowed), "a burst of about 10 (the budget's sixth), then one a second: {allowed}");
    // Commands have their own budget.
    let case = json!({ "title": "Still writable", "priority": "low", "case_type_id": app.case_type_id });
    assert_eq!(app.command(Method::POST, "/v1/cases", &app.token, Some(case)).await.status(), StatusCode::CREATED);
    // Another user of the tenant has a budget of their own.
    let other = app.keys.issue(Uuid::now_v7(), app.tenant_id, Role::Agent, chrono::Duration::hours(1));
    assert_eq!(app.query("/v1/cases?limit=1", &other).await.status(), StatusCode::OK);

    // Overrides are the platform operator's: a tenant admin cannot raise its own budget.
    let admin = app.token_for(app.tenant_id, Role::Admin);
    let raise = json!({ "settings": { "rate_limits": { "reads_per_minute": 1000000 } } });
    let path = format!("/v1/tenants/{}/settings", app.tenant_id);
    assert_eq!(app.command(Method::PATCH, &path, &admin, Some(raise.clone())).await.status(), StatusCode::FORBIDDEN);
    let bad = json!({ "settings": { "rate_limits": { "reads_per_minute": -1 } } });
    let answer = app.command(Method::PATCH, &path, &app.platform_token(), Some(bad)).await;
    assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let lower = json!({ "settings": { "rate_limits": { "reads_per_minute": 6 } } });
    assert!(app.command(Method::PATCH, &path, &app.platform_token(), Some(lower)).await.status().is_success());
    // The tenant's budget is now one read in ten seconds: a fresh user runs into it at once.
    let fresh = app.keys.issue(Uuid::now_v7(), app.tenant_id, Role::Agent, chrono::Duration::hours(1));
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(app.query("/v1/cases?limit=1", &fresh).await.status());
    }
    assert!(statuses.contains(&StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    // A tenant admin's settings update keeps the platform's override.
    let own = json!({ "settings": { "timezone": "UTC" } });
    assert!(app.command(Method::PATCH, &path, &admin, Some(own)).await.status().is_success());
    let held: Option<String> = redis::Client::open(app.settings.redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .map(|mut c| async move {
            redis::cmd("HGET")
                .arg(runtime::tenancy::Tenancy(app.tenant_id).redis_key("rate_limit:overrides"))
                .arg("reads")
                .query_async(&mut c)
                .await
                .unwrap()
        })
        .unwrap()
        .await;
    assert_eq!(held.as_deref(), Some("6"));
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_failed_logins_lock_the_username_out() {
    let app = TestApp::spawn().await;
    app.create_user("target", "agent").await;
    let mut wrong = Vec::new();
    for _ in 0..4 {
        let started = std::time::Instant::now();
        assert_eq!(app.login("target", "not the password!").await.status(), StatusCode::UNAUTHORIZED);
        wrong.push(started.elapsed());
    }
    let mut unknown = Vec::new();
    for i in 0..4 {
        let started = std::time::Instant::now();
        assert_eq!(app.login(&format!("nobody.{i}"), "not the password!").await.status(), StatusCode::UNAUTHORIZED);
        unknown.push(started.elapsed());
    }
    wrong.sort();
    unknown.sort();
    // An unknown user is checked against a dummy hash, so it costs what a wrong password
    // costs (2 ms against 25-38 ms in the issue). The fastest of each is compared: a hash
    // is the floor of both, whatever else the machine is doing meanwhile.
    println!("median login: wrong password {:?}, unknown user {:?}", wrong[2], unknown[2]);
    assert!(
        unknown[0] * 3 >= wrong[0],
        "an unknown user answers faster than a wrong password: {:?} against {:?}",
        unknown[0],
        wrong[0]
    );

    // The fifth failure is still a plain 401; from the sixth the username is locked out,
    // even for the right password, with the time to wait.
    assert_eq!(app.login("target", "not the password!").await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.login("target", "not the password!").await.status(), StatusCode::UNAUTHORIZED);
    let locked = app.login("target", "integration test password").await;
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = locked.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&wait), "{wait}");
    // Another user of the tenant is not affected.
    app.create_user("bystander", "agent").await;
    assert_eq!(app.login("bystander", "integration test password").await.status(), StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_secs(wait + 1)).await;
    assert_eq!(app.login("target", "integration test password").await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn weak_secrets_foreign_tokens_long_headers_and_forged_positions_are_refused() {
    let app = TestApp::spawn().await;
    // A secret under 32 bytes: nothing starts, not even the token minting.
    for secret in ["", "abc", "thirty-one bytes are not enough"] {
        let out = std::process::Command::new(binary("command-api"))
            .args(["token", "--role", "platform_admin"])
            .env("MURIMA_JWT_SECRET", secret)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{secret:?} was accepted");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(said.contains("at least 32"), "{said}");
    }
    // A token signed with the right secret but not issued for this API (no iss/aud).
    #[derive(serde::Serialize)]
    struct Bare {
        sub: Uuid,
        tenant_id: Uuid,
        role: Role,
        exp: i64,
        op: bool,
    }
    let bare = app.keys.sign_claims(&Bare {
        sub: app.user_id,
        tenant_id: app.tenant_id,
        role: Role::Admin,
        exp: chrono::Utc::now().timestamp() + 3600,
        op: true,
    });
    assert_eq!(app.query("/v1/cases", &bare).await.status(), StatusCode::UNAUTHORIZED);

    // Client headers are cut before they enter events; X-Forwarded-For from a peer that
    // is not a trusted proxy is ignored.
    let case = json!({ "title": "Long headers", "priority": "low", "case_type_id": app.case_type_id });
    let answer = app
        .http
        .post(format!("{}/v1/cases", app.command_url))
        .bearer_auth(&app.token)
        .header("user-agent", "u".repeat(5000))
        .header("x-session-id", "s".repeat(5000))
        .header("x-forwarded-for", "6.6.6.6")
        .json(&case)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::CREATED);
    let body: Value = answer.json().await.unwrap();
    let request: Value =
        sqlx::query_scalar("SELECT envelope->'request' FROM eventstore.events WHERE tenant_id = $1 AND stream_id = $2")
            .bind(app.tenant_id)
            .bind(body["id"].as_str().unwrap().parse::<Uuid>().unwrap())
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(request["user_agent"].as_str().unwrap().len(), 512);
    assert_eq!(request["session_id"].as_str().unwrap().len(), 512);
    assert_eq!(request["ip_address"], "127.0.0.1", "{request}");

    // Position tokens are signed: a forged far-future one, or another tenant's, is a 400
    // at once instead of a read held for the whole wait.
    use base64::Engine;
    let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("v1:{}:999999:999999999", body["id"].as_str().unwrap()));
    let started = std::time::Instant::now();
    let answer = app.query(&format!("/v1/cases?position={forged}"), &app.token).await;
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    let position = body["position"].as_str().unwrap();
    assert_eq!(app.query(&format!("/v1/cases?position={position}"), &app.token).await.status(), StatusCode::OK);
    let (_, other) = app.provision_tenant().await;
    let answer = app.query(&format!("/v1/cases?position={position}"), &other).await;
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST, "another tenant's position token");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_service_role_reaches_only_its_own_data() {
    let app = TestApp::spawn().await;
    app.open_case("Behind row-level security").await;
    let schema = runtime::tenancy::Tenancy(app.tenant_id).pg_schema();
    murima_tests::eventually("the case in PostgreSQL", || async {
        let n: i64 =
            sqlx::query_scalar(&format!("SELECT count(*) FROM {schema}.cases")).fetch_one(&app.pool).await.ok()?;
        (n == 1).then_some(())
    })
    .await;
    let connect = |role: &'static str| {
        let url = runtime::db::as_role(&app.settings.database_url, role);
        async move { sqlx::PgPool::connect(&url).await.unwrap() }
    };
    let roles: Vec<(String, bool, bool)> = sqlx::query_as(
        "SELECT rolname::text, rolsuper, rolbypassrls FROM pg_roles
         WHERE rolname IN ('murima_command', 'murima_projector', 'murima_query') ORDER BY rolname",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(roles.len(), 3);
    assert!(roles.iter().all(|(_, superuser, bypass)| !superuser && !bypass), "{roles:?}");

    // The query API's role reads under row-level security: another tenant's setting, or
    // none, reads nothing; the right one reads the case. Credentials are out of reach.
    let query = connect("murima_query").await;
    for (tenant, expected) in [(Some(Uuid::now_v7()), 0), (None, 0), (Some(app.tenant_id), 1)] {
        let mut tx = query.begin().await.unwrap();
        sqlx::query("SET LOCAL ROLE murima_reader").execute(&mut *tx).await.unwrap();
        if let Some(tenant) = tenant {
            sqlx::query("SELECT set_config('app.current_tenant_id', $1, true)")
                .bind(tenant.to_string())
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        let n: i64 =
            sqlx::query_scalar(&format!("SELECT count(*) FROM {schema}.cases")).fetch_one(&mut *tx).await.unwrap();
        assert_eq!(n, expected, "as tenant {tenant:?}");
        // The tenants table shows a reader its own tenant's row only.
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM public.tenants").fetch_one(&mut *tx).await.unwrap();
        assert_eq!(n, expected, "tenants as tenant {tenant:?}");
        // Statistics only through the view that keeps the bound tenant's rows (row-level
        // security does not apply to the materialized view itself).
        sqlx::query(&format!("SELECT count(*) FROM {schema}.case_statistics_of_tenant"))
            .execute(&mut *tx)
            .await
            .unwrap();
        sqlx::query("SAVEPOINT direct").execute(&mut *tx).await.unwrap();
        let direct = sqlx::query(&format!("SELECT * FROM {schema}.case_statistics")).execute(&mut *tx).await;
        assert!(direct.is_err(), "the reader selected the materialized view directly");
        sqlx::query("ROLLBACK TO SAVEPOINT direct").execute(&mut *tx).await.unwrap();
    }
    let credentials = sqlx::query("SELECT * FROM eventstore.credentials").fetch_all(&query).await;
    assert!(credentials.is_err(), "the query role reads no credentials");

    // The command API's role touches no read model, and the projector's no credential.
    let command = connect("murima_command").await;
    for statement in [
        format!("DELETE FROM {schema}.cases"),
        format!("UPDATE {schema}.users SET role = 'admin'"),
        "UPDATE public.tenants SET status = 'active'".to_owned(),
    ] {
        let refused = sqlx::query(&statement).execute(&command).await;
        assert!(refused.is_err(), "the command role ran {statement}");
    }
    let projector = connect("murima_projector").await;
    assert!(sqlx::query("SELECT * FROM eventstore.credentials").fetch_all(&projector).await.is_err());
    assert!(sqlx::query("DELETE FROM eventstore.events").execute(&projector).await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_and_client_addresses_have_budgets_of_their_own() {
    let plenty = Budget { per_minute: 1_000_000 };
    let mut settings = test_settings();
    settings.rate_limits = Some(Limits {
        // Reads: one address may make a burst of 10, whichever users it carries.
        reads_per_ip: Budget { per_minute: 60 },
        // Commands: one user may make a burst of 10 (the harness' set-up makes 3).
        commands_per_user: Budget { per_minute: 60 },
        ..limits(1_000_000)
    });
    let app = TestApp::spawn_with(settings).await;
    assert_eq!(plenty, limits(1_000_000).reads_per_tenant);
    // (Made before the burst: the harness' admin and agent tokens name the same user.)
    let someone = app.create_user("someone.else", "agent").await;

    let mut answered = Vec::new();
    for i in 0..30 {
        let case = json!({ "title": format!("Budgeted {i}"), "priority": "low", "case_type_id": app.case_type_id });
        let answer = app.command(Method::POST, "/v1/cases", &app.token, Some(case)).await;
        let headers = answer.headers().clone();
        for name in ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"] {
            assert!(headers.contains_key(name), "a command's answer lacks {name}: {headers:?}");
        }
        if answer.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(headers["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
            let problem: Value = answer.json().await.unwrap();
            assert!(problem["detail"].as_str().unwrap().contains("commands"), "{problem}");
        } else {
            assert_eq!(answer.status(), StatusCode::CREATED);
        }
        answered.push(headers.contains_key("retry-after"));
    }
    let created = answered.iter().filter(|refused| !**refused).count();
    assert!((6..=14).contains(&created), "about a burst of 10 commands, then one a second: {created}");
    // Another user's commands are untouched by this user's spent budget.
    let other = app.keys.issue(someone, app.tenant_id, Role::Agent, chrono::Duration::hours(1));
    let case = json!({ "title": "Someone else", "priority": "low", "case_type_id": app.case_type_id });
    assert_eq!(app.command(Method::POST, "/v1/cases", &other, Some(case)).await.status(), StatusCode::CREATED);

    // Reads from one address: fresh users each time, and still the address runs dry.
    let mut refused = 0;
    for _ in 0..30 {
        let user = app.keys.issue(Uuid::now_v7(), app.tenant_id, Role::Agent, chrono::Duration::hours(1));
        if app.query("/v1/cases?limit=1", &user).await.status() == StatusCode::TOO_MANY_REQUESTS {
            refused += 1;
        }
    }
    assert!(refused >= 15, "30 reads of 30 users from one address: {refused} refused");
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_logins_from_one_address_lock_the_address_out() {
    let mut settings = test_settings();
    settings.rate_limits = Some(Limits { failed_logins_per_ip: 3, ..limits(1_000_000) });
    let app = TestApp::spawn_with(settings).await;
    app.create_user("honest", "agent").await;
    // Address counts are the deployment's, not a tenant's: start from none (this is the
    // suite's only test that counts them; an earlier run's would still be there).
    let mut redis =
        redis::Client::open(app.settings.redis_url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("DEL")
        .arg("login:failures:ip:127.0.0.1")
        .arg("login:locked:ip:127.0.0.1")
        .query_async(&mut redis)
        .await
        .unwrap();
    // Three free failures, each for another username (no username reaches its own limit).
    for i in 0..4 {
        let answer = app.login(&format!("guess.{i}"), "not the password!").await;
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED, "failure {i}");
    }
    // The address is locked out now, even for a right password of a real user.
    let locked = app.login("honest", "integration test password").await;
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = locked.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&wait), "{wait}");
    let problem: Value = locked.json().await.unwrap();
    assert!(problem["detail"].as_str().unwrap().contains("address"), "{problem}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_login_flood_is_answered_503_past_the_hashing_slots() {
    let app = TestApp::spawn().await;
    let slug = app.tenant_slug().await;
    // 400 wrong logins at once, each for another (unknown) username, so no lock-out
    // answers first: every one costs a hash, and only so many fit in the wait.
    let flood = (0..400).map(|i| {
        let http = app.http.clone();
        let url = format!("{}/v1/auth/login", app.command_url);
        let body = json!({ "tenant": slug, "username": format!("flood.{i}"), "password": "not the password!" });
        async move {
            let answer = http.post(url).json(&body).send().await.unwrap();
            let retry = answer.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
            (answer.status(), retry)
        }
    });
    let answers = futures::future::join_all(flood).await;
    let busy = answers.iter().filter(|(s, _)| *s == StatusCode::SERVICE_UNAVAILABLE).count();
    let refused = answers.iter().filter(|(s, _)| *s == StatusCode::UNAUTHORIZED).count();
    println!("400 concurrent wrong logins: {refused} × 401, {busy} × 503");
    assert_eq!(busy + refused, 400, "only 401 and 503: {:?}", answers.iter().map(|a| a.0).collect::<Vec<_>>());
    assert!(busy > 0, "the hashing slots never ran out");
    assert!(answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::SERVICE_UNAVAILABLE)
        .all(|(_, r)| r.as_deref() == Some("1")));
    // The service is still there for the next honest login.
    app.create_user("after.flood", "agent").await;
    assert_eq!(app.login("after.flood", "integration test password").await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_more_than_32_reads_of_a_tenant_wait_at_once() {
    let mut settings = test_settings();
    settings.read_wait = std::time::Duration::from_secs(3);
    let mut app = TestApp::spawn_with(settings).await;
    app.kill_projector().await;
    let case = app.open_case("Never projected while the projector is away").await;
    let position = case["position"].as_str().unwrap().to_owned();
    // 12 users, 4 reads each (one user may hold 4 waits): 48 waits of one tenant.
    let users: Vec<String> = (0..12)
        .map(|_| app.keys.issue(uuid::Uuid::now_v7(), app.tenant_id, Role::Agent, chrono::Duration::hours(1)))
        .collect();
    let reads = (0..48).map(|i| {
        let (app, token) = (&app, users[i % 12].clone());
        let path = format!("/v1/cases?limit=1&position={position}");
        async move {
            let started = std::time::Instant::now();
            let answer = app.query(&path, &token).await;
            let status = answer.status();
            let problem: Value = answer.json().await.unwrap_or_default();
            (status, started.elapsed(), problem["detail"].as_str().unwrap_or_default().to_owned())
        }
    });
    let answers = futures::future::join_all(reads).await;
    assert!(answers.iter().all(|(s, _, _)| *s == StatusCode::SERVICE_UNAVAILABLE), "{answers:?}");
    let turned_away: Vec<_> =
        answers.iter().filter(|(_, _, detail)| detail.contains("of this tenant are already waiting")).collect();
    assert!(turned_away.len() >= 16, "48 waits, at most 32 at once: {} turned away", turned_away.len());
    assert!(turned_away.iter().all(|(_, took, _)| *took < std::time::Duration::from_secs(2)), "{turned_away:?}");
    app.start_projector().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rate_limiter_lets_requests_through_when_redis_is_away() {
    // A Redis of this test's own, so it can be stopped under a running service.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut redis = tokio::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server runs (scripts/stack.sh installs it)");
    murima_tests::eventually("the private Redis to listen", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok().map(drop)
    })
    .await;
    let mut settings = test_settings();
    settings.redis_url = format!("redis://127.0.0.1:{port}");
    settings.rate_limits = Some(limits(1_000_000));
    let app = TestApp::spawn_with(settings).await;
    assert_eq!(app.query("/v1/cases?limit=1", &app.token).await.status(), StatusCode::OK);
    redis.kill().await.unwrap();

    // No budget can be read: the request goes on to its handler (here the token check,
    // which needs no Redis), rather than a 5xx or a 429; the miss is counted.
    let anonymous = app.http.get(format!("{}/v1/cases", app.query_url)).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(!anonymous.headers().contains_key("ratelimit-limit"));
    let metrics = app.http.get(format!("{}/metrics", app.query_url)).send().await.unwrap().text().await.unwrap();
    let counted = metrics
        .lines()
        .find(|l| l.starts_with("rate_limiter_unavailable_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<f64>().ok());
    assert!(counted.is_some_and(|n| n >= 1.0), "rate_limiter_unavailable_total: {counted:?}");
    // Sessions fail closed: a caller's rights cannot be checked without Redis.
    assert_eq!(app.query("/v1/cases?limit=1", &app.token).await.status(), StatusCode::SERVICE_UNAVAILABLE);
}
