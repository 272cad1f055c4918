//! Optimistic concurrency (If-Match, 409 with the current version) and idempotency.

use murima_tests::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread")]
async fn of_two_writers_at_the_same_version_exactly_one_wins() {
    let app = TestApp::spawn().await;
    let id = app.open_case("Contested").await["id"].as_str().unwrap().to_owned();
    let send = |title: &'static str| {
        let request = app
            .http
            .patch(format!("{}/v1/cases/{id}", app.command_url))
            .bearer_auth(&app.token)
            .header("if-match", "\"1\"")
            .json(&json!({ "title": title }));
        async move { request.send().await.unwrap() }
    };
    let (a, b) = tokio::join!(send("first writer"), send("second writer"));
    let mut statuses = [a.status(), b.status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT]);
    let loser = if a.status() == StatusCode::CONFLICT { a } else { b };
    assert_eq!(loser.headers()["content-type"], "application/problem+json");
    let problem: Value = loser.json().await.unwrap();
    assert_eq!(problem["current_version"], 2);
    assert_eq!(app.journal_count("case").await, 2);

    // A stale If-Match is refused the same way, naming the current version.
    let stale = app
        .http
        .post(format!("{}/v1/cases/{id}/status", app.command_url))
        .bearer_auth(&app.token)
        .header("if-match", "\"1\"")
        .json(&json!({ "status": "pending" }))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::CONFLICT);
    assert_eq!(stale.headers()["etag"], "\"2\"");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_command_returns_the_original_answer_and_appends_nothing() {
    let app = TestApp::spawn().await;
    let body = json!({ "title": "Once only", "case_type_id": app.case_type_id });
    let send = |key: &'static str, body: Value| {
        let request = app
            .http
            .post(format!("{}/v1/cases", app.command_url))
            .bearer_auth(&app.token)
            .header("idempotency-key", key)
            .json(&body);
        async move { request.send().await.unwrap() }
    };
    let first = send("key-1", body.clone()).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    let retry = send("key-1", body.clone()).await;
    assert_eq!(retry.status(), StatusCode::CREATED);
    let retry: Value = retry.json().await.unwrap();
    assert_eq!(retry["id"], first["id"]);
    assert_eq!(retry["position"], first["position"]);
    assert_eq!(app.journal_count("case").await, 1);

    // Concurrent twins with one key: one case between them.
    let (a, b) = tokio::join!(send("key-2", body.clone()), send("key-2", body.clone()));
    let (a, b): (Value, Value) = (a.json().await.unwrap(), b.json().await.unwrap());
    assert_eq!(a["id"], b["id"]);
    assert_eq!(app.journal_count("case").await, 2);

    // The same key with another request is a client mistake, not a replay.
    let reused = send("key-1", json!({ "title": "Something else", "case_type_id": app.case_type_id })).await;
    assert_eq!(reused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.journal_count("case").await, 2);

    // Idempotent commands on an existing stream too.
    let id = first["id"].as_str().unwrap();
    let assign = || {
        app.http
            .post(format!("{}/v1/cases/{id}/assignment", app.command_url))
            .bearer_auth(&app.token)
            .header("idempotency-key", "assign-1")
            .json(&json!({ "assigned_to": app.user_id }))
            .send()
    };
    let (a, b) = tokio::join!(assign(), assign());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.status(), StatusCode::OK);
    assert_eq!(b.status(), StatusCode::OK);
    assert_eq!(app.journal_count("case").await, 3);
}

/// A retried creation is answered with the resource its first attempt made: the id, and
/// the `Location` (header and body) where it is read, not a fresh id's.
#[tokio::test(flavor = "multi_thread")]
async fn a_retried_creation_points_at_what_the_first_attempt_made() {
    let app = TestApp::spawn().await;
    let admin = app.token_for(app.tenant_id, runtime::auth::Role::Admin);
    let send = |path: &'static str, body: Value| {
        let request = app
            .http
            .post(format!("{}{path}", app.command_url))
            .bearer_auth(&admin)
            .header("idempotency-key", path)
            .json(&body);
        async move { request.send().await.unwrap() }
    };
    for (path, body) in [
        ("/v1/teams", json!({ "name": "Retried" })),
        ("/v1/channels", json!({ "name": "Retried", "type": "email", "configuration": {} })),
        ("/v1/case-types", json!({ "name": "Retried" })),
    ] {
        let (mut ids, mut locations) = (Vec::new(), Vec::new());
        for _ in 0..2 {
            let r = send(path, body.clone()).await;
            assert_eq!(r.status(), StatusCode::CREATED, "{path}");
            locations.push(r.headers()["location"].to_str().unwrap().to_owned());
            let answer: Value = r.json().await.unwrap();
            assert_eq!(answer["location"], locations[locations.len() - 1].as_str(), "{path}");
            ids.push(answer["id"].as_str().unwrap().to_owned());
        }
        assert_eq!(ids[0], ids[1], "{path}");
        assert_eq!(locations, vec![format!("{path}/{}", ids[0]); 2], "{path}");
    }
    // A tenant provisioned twice with one key: one tenant, read where the answer says.
    let slug = format!("retried-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let operator = app.platform_token();
    let provision = || {
        app.http
            .post(format!("{}/v1/tenants", app.command_url))
            .bearer_auth(&operator)
            .header("idempotency-key", "provision-1")
            .json(&json!({ "name": "Retried", "slug": slug }))
            .send()
    };
    let (first, retry) = (provision().await.unwrap(), provision().await.unwrap());
    assert_eq!((first.status(), retry.status()), (StatusCode::CREATED, StatusCode::CREATED));
    let location = retry.headers()["location"].to_str().unwrap().to_owned();
    let (first, retry): (Value, Value) = (first.json().await.unwrap(), retry.json().await.unwrap());
    assert_eq!(retry["id"], first["id"]);
    assert_eq!(location, format!("/v1/tenants/{}", first["id"].as_str().unwrap()));
    // Its position token names that tenant too, not the id the retry drew.
    let tenant_of = |answer: &Value| -> Value {
        use base64::Engine;
        let claims = answer["position"].as_str().unwrap().split('.').nth(1).unwrap().to_owned();
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims).unwrap();
        serde_json::from_slice::<Value>(&claims).unwrap()["t"].clone()
    };
    assert_eq!(tenant_of(&retry), first["id"]);
    assert_eq!(tenant_of(&first), first["id"]);
}

/// Concurrent commands' appends go to PostgreSQL in batches (`command_api::appender`): a
/// burst mixing lost races, idempotent twins and plain opens gets each command its own
/// answer, whatever batch it shared.
#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_commands_gets_each_its_own_answer_whatever_batch_it_shared() {
    let app = TestApp::spawn().await;
    let mut contested = Vec::new();
    for i in 0..8 {
        contested.push(app.open_case(&format!("Contested {i}")).await["id"].as_str().unwrap().to_owned());
    }
    let before = app.journal_count("case").await;
    let update = |id: &str, title: String| {
        let request = app
            .http
            .patch(format!("{}/v1/cases/{id}", app.command_url))
            .bearer_auth(&app.token)
            .header("if-match", "\"1\"")
            .json(&json!({ "title": title }));
        async move { (request.send().await.unwrap().status(), None) }
    };
    let open = |key: Option<String>| {
        let mut request = app
            .http
            .post(format!("{}/v1/cases", app.command_url))
            .bearer_auth(&app.token)
            .json(&json!({ "title": "In the burst", "case_type_id": app.case_type_id }));
        if let Some(key) = &key {
            request = request.header("idempotency-key", key);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            let body: Value = response.json().await.unwrap();
            (status, body["id"].as_str().map(str::to_owned))
        }
    };
    type Answer = std::pin::Pin<Box<dyn std::future::Future<Output = (StatusCode, Option<String>)> + Send>>;
    let mut burst: Vec<Answer> = Vec::new();
    for (i, id) in contested.iter().enumerate() {
        burst.push(Box::pin(update(id, format!("first {i}"))));
        burst.push(Box::pin(update(id, format!("second {i}"))));
    }
    for twin in 0..6 {
        burst.push(Box::pin(open(Some(format!("twin-{twin}")))));
        burst.push(Box::pin(open(Some(format!("twin-{twin}")))));
    }
    for _ in 0..8 {
        burst.push(Box::pin(open(None)));
    }
    let answers = futures::future::join_all(burst).await;

    // Each contested case: exactly one of its two writers won.
    for pair in answers[..16].chunks(2) {
        let mut statuses = [pair[0].0, pair[1].0];
        statuses.sort();
        assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT], "{answers:?}");
    }
    // Each pair of twins: one case, the same answer to both.
    for pair in answers[16..28].chunks(2) {
        assert_eq!((pair[0].0, pair[1].0), (StatusCode::CREATED, StatusCode::CREATED), "{answers:?}");
        assert_eq!(pair[0].1, pair[1].1);
    }
    assert!(answers[28..].iter().all(|(status, _)| *status == StatusCode::CREATED), "{answers:?}");
    // 8 updates, 6 + 8 opens: nothing more, nothing less.
    assert_eq!(app.journal_count("case").await, before + 8 + 14);
}

/// One batch statement answers each call as `eventstore.append` alone would: a stale
/// version after another call of the batch, an idempotent twin, a call without events and
/// a new case's number, each on its own row, with each call's own slice of the events.
/// (Run in a transaction that is rolled back: nothing reaches the relay.)
#[tokio::test(flavor = "multi_thread")]
async fn one_batch_of_appends_answers_each_call_on_its_own_row() {
    use command_api::appender::{append_batch, AppendCall};
    let app = TestApp::spawn().await;
    let stream = |n: u128| uuid::Uuid::from_u128(0x0100_0000_0000_7000_8000_0000_0000_0000 + n);
    let call = |id: uuid::Uuid, events: usize, key: Option<&str>, case_number: bool| AppendCall {
        tenant: app.tenant_id,
        stream_type: "case",
        stream: id,
        expected: 0,
        event_ids: (0..events).map(|_| uuid::Uuid::now_v7()).collect(),
        event_types: (0..events).map(|i| format!("Test{i}")).collect(),
        schema_versions: vec![1; events],
        occurred_at: chrono::Utc::now(),
        envelopes: (0..events).map(|i| json!({ "payload": { "n": i } })).collect(),
        case_number,
        key_tenant: key.map(|_| app.tenant_id),
        principal: "tester".into(),
        key: key.map(str::to_owned),
        request_hash: "hash".into(),
        ttl_secs: 3600.0,
        answer: json!({ "id": id, "events_appended": events }),
        notify: false,
    };
    let calls = [
        call(stream(1), 2, None, false),
        call(stream(1), 1, None, false),
        call(stream(2), 1, Some("k"), false),
        call(stream(3), 3, Some("k"), false),
        call(stream(4), 0, None, false),
        call(stream(5), 1, None, true),
    ];
    let mut tx = app.pool.begin().await.unwrap();
    let rows = append_batch(&mut tx, &calls.iter().collect::<Vec<_>>()).await.unwrap();
    let outcomes: Vec<(&str, Option<i64>)> = rows.iter().map(|r| (r.0.as_str(), r.1)).collect();
    assert_eq!(
        outcomes,
        [
            ("appended", Some(2)),
            ("conflict", Some(2)),
            ("appended", Some(1)),
            ("replay", None),
            ("appended", Some(0)),
            ("appended", Some(1)),
        ]
    );
    assert_eq!(rows[3].4.as_deref(), Some("hash"));
    assert_eq!(rows[3].5.as_ref().unwrap()["id"], json!(stream(2)));
    assert!(rows[5].3.as_deref().is_some_and(|n| n.starts_with("CASE-")), "{:?}", rows[5]);
    // Each call wrote its own events, in its order, and nothing else.
    let written: Vec<(uuid::Uuid, i64, uuid::Uuid)> = sqlx::query_as(
        "SELECT stream_id, stream_version, event_id FROM eventstore.events
         WHERE tenant_id = $1 AND stream_id = ANY($2) ORDER BY position",
    )
    .bind(app.tenant_id)
    .bind((1..=5).map(stream).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    let expected: Vec<(uuid::Uuid, i64, uuid::Uuid)> = [(0, 1), (0, 2), (2, 1), (5, 1)]
        .into_iter()
        .map(|(c, v)| (calls[c].stream, v, calls[c].event_ids[usize::try_from(v).unwrap() - 1]))
        .collect();
    assert_eq!(written, expected);
    tx.rollback().await.unwrap();
}

/// A batch PostgreSQL refuses (here: one call's event id is another's) is split until
/// the call that raises answers alone with its own error; its batch-mates are recorded.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_batch_is_split_until_only_the_call_that_raises_fails() {
    use command_api::appender::{settle_calls, AppendCall, Batched};
    let app = TestApp::spawn().await;
    let shared = uuid::Uuid::now_v7();
    let call = |event: uuid::Uuid| {
        let id = uuid::Uuid::now_v7();
        AppendCall {
            tenant: app.tenant_id,
            stream_type: "test",
            stream: id,
            expected: 0,
            event_ids: vec![event],
            event_types: vec!["Test".into()],
            schema_versions: vec![1],
            occurred_at: chrono::Utc::now(),
            envelopes: vec![json!({ "payload": {} })],
            case_number: false,
            key_tenant: None,
            principal: "tester".into(),
            key: None,
            request_hash: "hash".into(),
            ttl_secs: 3600.0,
            answer: json!({ "id": id, "events_appended": 1 }),
            notify: false,
        }
    };
    let calls = vec![
        call(uuid::Uuid::now_v7()),
        call(shared),
        call(uuid::Uuid::now_v7()),
        call(shared),
        call(uuid::Uuid::now_v7()),
    ];
    let streams: Vec<uuid::Uuid> = calls.iter().map(|c| c.stream).collect();
    let mut conn = app.pool.acquire().await.unwrap();
    let answers = settle_calls(&mut conn, calls).await;
    let summary: Vec<String> = answers
        .iter()
        .map(|a| match a {
            Batched::Row(row) => row.0.clone(),
            Batched::Failed(sqlx::Error::Database(db)) => db.constraint().unwrap_or("?").to_owned(),
            Batched::Failed(other) => format!("{other}"),
            Batched::Alone(_) => "alone".into(),
            Batched::Busy => "busy".into(),
            Batched::Lost => "lost".into(),
        })
        .collect();
    assert_eq!(summary, ["appended", "appended", "appended", "events_event_id_key", "appended"]);
    let written: i64 =
        sqlx::query_scalar("SELECT count(*) FROM eventstore.events WHERE tenant_id = $1 AND stream_id = ANY($2)")
            .bind(app.tenant_id)
            .bind(&streams)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(written, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn case_numbers_stay_unique_and_in_order_under_concurrent_opens() {
    let app = TestApp::spawn().await;
    let opens = (0..12).map(|i| {
        let body = json!({ "title": format!("Rush {i}"), "case_type_id": app.case_type_id });
        let request = app.http.post(format!("{}/v1/cases", app.command_url)).bearer_auth(&app.token).json(&body);
        async move { request.send().await.unwrap().status() }
    });
    let statuses = futures::future::join_all(opens).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::CREATED), "{statuses:?}");
    let mut numbers: Vec<String> = sqlx::query_scalar(
        "SELECT envelope->'payload'->>'case_number' FROM eventstore.events WHERE tenant_id = $1 AND event_type = 'CaseOpened'",
    )
    .bind(app.tenant_id)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    numbers.sort();
    let expected: Vec<String> = (1..=12).map(|n| format!("CASE-{n:06}")).collect();
    assert_eq!(numbers, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenants_millionth_case_keeps_every_digit_of_its_number() {
    let app = TestApp::spawn().await;
    sqlx::query("INSERT INTO eventstore.case_numbers (tenant_id, last_number) VALUES ($1, 999999)")
        .bind(app.tenant_id)
        .execute(&app.pool)
        .await
        .unwrap();
    let id = app.open_case("The millionth").await["id"].as_str().unwrap().to_owned();
    let number: String = sqlx::query_scalar(
        "SELECT envelope->'payload'->>'case_number' FROM eventstore.events
         WHERE tenant_id = $1 AND stream_id = $2::uuid AND event_type = 'CaseOpened'",
    )
    .bind(app.tenant_id)
    .bind(&id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(number, "CASE-1000000");
}

/// Each command API keeps folded stream states between commands; a second instance writing
/// the same streams must never make the first decide on a stale state.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_command_api_on_the_same_journal_is_never_answered_from_a_stale_state() {
    let app = TestApp::spawn().await;
    let (other_url, _other) = app.another_command_api().await;
    let id = app.open_case("Two writers").await["id"].as_str().unwrap().to_owned();
    let status = |base: String, status: &'static str, if_match: Option<&'static str>| {
        let mut request = app
            .http
            .post(format!("{base}/v1/cases/{id}/status"))
            .bearer_auth(&app.token)
            .json(&json!({ "status": status }));
        if let Some(v) = if_match {
            request = request.header("if-match", v);
        }
        async move {
            let answer = request.send().await.unwrap();
            (answer.status(), answer.json::<Value>().await.unwrap())
        }
    };

    // The first API folds the case (and keeps it) while moving it to pending: version 2.
    let (code, body) = status(app.command_url.clone(), "pending", None).await;
    assert_eq!((code, body["version"].clone()), (StatusCode::OK, json!(2)));
    // The second API moves it on: version 3, which the first has not seen.
    let (code, body) = status(other_url.clone(), "in_progress", None).await;
    assert_eq!((code, body["version"].clone()), (StatusCode::OK, json!(3)));

    // A stale fold would think the case pending at version 2: it would refuse If-Match 3
    // and append a status change. The first API reads what came after its fold instead.
    let (code, body) = status(app.command_url.clone(), "in_progress", Some("\"3\"")).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["events_appended"], 0, "the case is already in progress: {body}");
    assert_eq!(body["version"], 3);
    let (code, body) = status(app.command_url.clone(), "pending", Some("\"2\"")).await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["current_version"], 3);
    assert_eq!(app.journal_count("case").await, 3);
}

/// Many users' first commands at once, none of whose keys the command API holds (their
/// requests are sealed with them): each key is fetched before the command takes its
/// connection, so waiting for a key never holds one, and a burst larger than the pool
/// does not empty it (it did: every command held a connection while waiting for a second).
#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_users_first_commands_does_not_starve_the_connection_pool() {
    const USERS: usize = 40;
    let mut app = TestApp::spawn_processes().await;
    let mut tokens = Vec::with_capacity(USERS);
    for n in 0..USERS {
        let name = format!("burst.{n}");
        app.create_user(&name, "agent").await;
        tokens.push(app.login_token(&name).await);
    }
    // A command API just started holds no user's key (their sessions live on in Redis).
    app.kill_command_api().await;
    app.start_command_api().await;

    let opened = futures::future::join_all(tokens.iter().map(|token| {
        let body = json!({ "title": "First of the day", "case_type_id": app.case_type_id });
        app.command(Method::POST, "/v1/cases", token, Some(body))
    }))
    .await;
    let statuses: Vec<StatusCode> = opened.iter().map(|r| r.status()).collect();
    assert!(statuses.iter().all(|s| *s == StatusCode::CREATED), "{statuses:?}");
}
