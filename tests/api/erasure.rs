//! Erasure by crypto-shredding (issue 19): a user's personal fields are sealed with a key
//! of theirs before they reach the journal; erasing them deletes the key, every read
//! model replaces what it holds with a marker, and a rebuild from the log brings nothing
//! back. Another user is untouched.

use murima_tests::{eventually, holding, TestApp};
use projector::stores::Stores;
use reqwest::{Method, StatusCode};
use runtime::auth::Role;
use serde_json::{json, Value};
use uuid::Uuid;

/// What the test puts in Zoë's fields: none of it may be left anywhere once she is erased.
const ZOE: [&str; 6] = ["zoe.erasable", "Zoë", "Zoëlle", "Erasable-Ünïque", "zoe.second", "555-0101"];

async fn create_zoe(app: &TestApp, admin: &str) -> Uuid {
    let body = json!({ "username": "zoe.erasable", "email": "zoe.erasable@example.org", "first_name": "Zoë",
                       "last_name": "Erasable-Ünïque", "password": "integration test password", "role": "agent" });
    let answer = app.command(Method::POST, "/v1/users", admin, Some(body)).await;
    assert_eq!(answer.status(), StatusCode::CREATED);
    let id: Uuid = answer.json::<Value>().await.unwrap()["id"].as_str().unwrap().parse().unwrap();
    let profile = json!({ "first_name": "Zoëlle", "email": "zoe.second@example.org" });
    let answer = app.command(Method::PATCH, &format!("/v1/users/{id}/profile"), admin, Some(profile)).await;
    assert_eq!(answer.status(), StatusCode::OK);
    let preferences = json!({ "preferences": { "signature": "Zoëlle Erasable-Ünïque, tel 555-0101" } });
    let answer = app.command(Method::PUT, &format!("/v1/users/{id}/preferences"), admin, Some(preferences)).await;
    assert_eq!(answer.status(), StatusCode::OK);
    id
}

/// A second tenant (the same one for every call of a test).
async fn other_tenant(app: &TestApp) -> Uuid {
    static OTHER: tokio::sync::OnceCell<Uuid> = tokio::sync::OnceCell::const_new();
    *OTHER.get_or_init(|| async { app.provision_tenant().await.0 }).await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_erased_user_reads_as_a_marker_in_every_store_and_after_a_rebuild_of_every_projection() {
    let app = TestApp::spawn().await;
    let admin = app.token_for(app.tenant_id, Role::Admin);
    let zoe = create_zoe(&app, &admin).await;
    let kim = app.create_user("kim.kept", "agent").await;
    let case = app.open_case("Printer jammed").await;
    let case_id = case["id"].as_str().unwrap().to_owned();
    let assign = json!({ "assigned_to": zoe });
    let answer = app.command(Method::POST, &format!("/v1/cases/{case_id}/assignment"), &admin, Some(assign)).await;
    assert_eq!(answer.status(), StatusCode::OK);
    app.wait_for_all_stores().await;
    // The query API caches the case, her username with it.
    let cached: Value = app.query(&format!("/v1/cases/{case_id}"), &admin).await.json().await.unwrap();
    assert_eq!(cached["assigned_to_username"], "zoe.erasable", "{cached}");

    // Sealed from the start: the journal and the log never held her data in clear.
    let journal: Vec<String> = sqlx::query_scalar("SELECT envelope::text FROM eventstore.events WHERE tenant_id = $1")
        .bind(app.tenant_id)
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert!(journal.iter().any(|e| e.contains(&zoe.to_string()) && e.contains("$sealed")));
    assert_eq!(holding(&journal, &ZOE), Vec::<&String>::new(), "the journal");
    let log = app.event_log();
    assert!(log.iter().any(|m| m.contains(&zoe.to_string())), "her events are in the log");
    assert_eq!(holding(&log, &ZOE), Vec::<&String>::new(), "the Kafka log");
    // ... while the read models show it to those who may see it.
    let read: Value = app.query(&format!("/v1/users/{zoe}"), &admin).await.json().await.unwrap();
    assert_eq!((read["first_name"].as_str(), read["email"].as_str()), (Some("Zoëlle"), Some("zoe.second@example.org")));
    assert!(!app.stores_holding(app.tenant_id, &ZOE).await.is_empty());

    // Her export holds it all, for an administrator or herself, and nobody else.
    let export = format!("/v1/data-subjects/{zoe}/export");
    let exported: Value = app.query(&export, &admin).await.json().await.unwrap();
    assert_eq!(exported["profile"]["first_name"], "Zoëlle", "{exported}");
    assert_eq!(exported["profile"]["preferences"]["signature"], "Zoëlle Erasable-Ünïque, tel 555-0101");
    assert_eq!(exported["cases"]["items"][0]["id"], case_id.as_str());
    let about = exported["audit_about"]["items"].as_array().unwrap();
    assert!(about.iter().any(|e| e["action"] == "create"), "{about:?}");
    let zoe_token = app.login_token("zoe.erasable").await;
    let note = json!({ "content": "Called the printer vendor" });
    let answer = app.command(Method::POST, &format!("/v1/cases/{case_id}/notes"), &zoe_token, Some(note)).await;
    assert_eq!(answer.status(), StatusCode::CREATED);
    let position = answer.json::<Value>().await.unwrap()["position"].as_str().unwrap().to_owned();
    let own: Value = eventually("her note in her own export", || async {
        let own = app.query(&format!("{export}?position={position}"), &zoe_token).await;
        assert_eq!(own.status(), StatusCode::OK, "her own export");
        let own: Value = own.json().await.ok()?;
        (own["notes"]["items"][0]["content"] == "Called the printer vendor").then_some(own)
    })
    .await;
    let notified = own["notifications"].as_array().unwrap();
    assert!(notified.iter().any(|n| n.to_string().contains(&case_id)), "assigned to her: {notified:?}");
    let kim_token = app.login_token("kim.kept").await;
    assert_eq!(app.query(&export, &kim_token).await.status(), StatusCode::FORBIDDEN, "a colleague's");
    let answer = app.query(&export, &app.token_for(other_tenant(&app).await, Role::Admin)).await;
    assert_eq!(answer.status(), StatusCode::NOT_FOUND, "another tenant's administrator");

    // A forged sealed value in what a client sends is sealed like anything else: it reads
    // back as sent, and breaks nothing.
    let forged = json!({ "preferences": { "x": { "$sealed": "AAAA", "subject": kim } } });
    let answer = app.command(Method::PUT, &format!("/v1/users/{kim}/preferences"), &kim_token, Some(forged)).await;
    assert_eq!(answer.status(), StatusCode::OK);
    let position = answer.json::<Value>().await.unwrap()["position"].as_str().unwrap().to_owned();
    let read: Value = app.query(&format!("/v1/users/{kim}?position={position}"), &admin).await.json().await.unwrap();
    assert_eq!(read["preferences"]["x"]["$sealed"], "AAAA", "{read}");
    let again = json!({ "preferences": {} });
    let answer = app.command(Method::PUT, &format!("/v1/users/{kim}/preferences"), &kim_token, Some(again)).await;
    assert_eq!(answer.status(), StatusCode::OK, "her stream still loads");

    // An active administrator is deactivated before being erased.
    let other_admin = app.create_user("second.admin", "admin").await;
    let answer = app.command(Method::POST, &format!("/v1/data-subjects/{other_admin}/erasure"), &admin, None).await;
    assert_eq!(answer.status(), StatusCode::CONFLICT);

    // Who may not erase her.
    let erase = format!("/v1/data-subjects/{zoe}/erasure");
    for role in [Role::Agent, Role::Supervisor] {
        let answer = app.command(Method::POST, &erase, &app.token_for(app.tenant_id, role), None).await;
        assert_eq!(answer.status(), StatusCode::FORBIDDEN, "{role:?}");
    }
    let answer = app.command(Method::POST, &erase, &app.token_for(other_tenant(&app).await, Role::Admin), None).await;
    assert_eq!(answer.status(), StatusCode::NOT_FOUND, "another tenant's administrator");
    let answer = app.command(Method::POST, &erase, &app.platform_token(), None).await;
    assert_eq!(answer.status(), StatusCode::FORBIDDEN, "a platform token");
    let answer = app.command(Method::POST, &erase, &zoe_token, None).await;
    assert_eq!(answer.status(), StatusCode::FORBIDDEN, "the subject herself, an agent");
    let answer = app.command(Method::POST, "/v1/data-subjects/not-a-uuid/erasure", &admin, None).await;
    assert_eq!(answer.status(), StatusCode::NOT_FOUND, "no such id (as everywhere)");
    let answer =
        app.command(Method::POST, &format!("/v1/data-subjects/{}/erasure", Uuid::now_v7()), &admin, None).await;
    assert_eq!(answer.status(), StatusCode::NOT_FOUND);

    let answer = app.command(Method::POST, &erase, &admin, None).await;
    assert_eq!(answer.status(), StatusCode::OK);
    let erased: Value = answer.json().await.unwrap();
    assert_eq!(erased["events_appended"], 1);
    let position = erased["position"].as_str().unwrap().to_owned();

    // Her key is gone (the row stays as the mark), and so are her login and claims.
    let key: (Option<Vec<u8>>, bool) = sqlx::query_as(
        "SELECT key, erased_at IS NOT NULL FROM eventstore.subject_keys WHERE tenant_id = $1 AND subject_id = $2",
    )
    .bind(app.tenant_id)
    .bind(zoe)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(key, (None, true));
    let answer = app.query("/v1/notifications", &zoe_token).await;
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED, "her sessions ended");
    assert_eq!(
        app.query(&export, &zoe_token).await.status(),
        StatusCode::UNAUTHORIZED,
        "her old token exports nothing"
    );
    let answer = app.command(Method::POST, &format!("/v1/data-subjects/{kim}/erasure"), &zoe_token, None).await;
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED, "her old token erases nobody");
    let login = json!({ "tenant": app.tenant_slug().await, "username": "zoe.erasable",
                        "password": "integration test password" });
    let answer = app.http.post(format!("{}/v1/auth/login", app.command_url)).json(&login).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED, "she cannot log in");
    // Nothing more is recorded about her; erasing again changes nothing.
    let profile = json!({ "first_name": "Back" });
    let answer = app.command(Method::PATCH, &format!("/v1/users/{zoe}/profile"), &admin, Some(profile)).await;
    assert_eq!(answer.status(), StatusCode::CONFLICT);
    let again: Value = app.command(Method::POST, &erase, &admin, None).await.json().await.unwrap();
    assert_eq!(again["events_appended"], 0, "{again}");

    let read: Value = app.query(&format!("/v1/users/{zoe}?position={position}"), &admin).await.json().await.unwrap();
    let marker = format!("erased-{zoe}");
    assert_eq!(read["username"], marker.as_str(), "{read}");
    assert_eq!(read["email"], marker.as_str());
    assert_eq!((read["first_name"].as_str(), read["last_name"].as_str()), (Some("[erased]"), Some("[erased]")));
    assert_eq!(read["status"], "inactive");
    app.wait_for_all_stores().await;
    eventually("every store to hold nothing of hers", || async {
        app.stores_holding(app.tenant_id, &ZOE).await.is_empty().then_some(())
    })
    .await;
    let exported = app.query(&format!("{export}?position={position}"), &admin).await.text().await.unwrap();
    assert!(exported.contains(&marker), "{exported}");
    assert_eq!(holding(std::slice::from_ref(&exported), &ZOE), Vec::<&String>::new(), "her export after the erasure");
    let trail: Value = app.query(&format!("/v1/audit/user/{zoe}"), &admin).await.json().await.unwrap();
    let actions: Vec<&str> = trail["items"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    assert!(actions.contains(&"erase") && actions.contains(&"create"), "{actions:?}");
    let kim_read: Value = app.query(&format!("/v1/users/{kim}"), &admin).await.json().await.unwrap();
    assert_eq!(kim_read["username"], "kim.kept", "another user is untouched");

    // A rebuild of every projection from the log brings nothing back.
    let stores = Stores::connect(&app.settings, 4).await.unwrap();
    for name in projector::stores::ProjectionName::ALL {
        projector::rebuild::run(&stores, name, Some(app.tenant_id), &|_, _| {}).await.unwrap();
    }
    assert_eq!(app.stores_holding(app.tenant_id, &ZOE).await, Vec::<String>::new(), "after the rebuilds");
    let read: Value = app.query(&format!("/v1/users/{zoe}"), &admin).await.json().await.unwrap();
    assert_eq!(read["username"], marker.as_str(), "{read}");
    assert_eq!(read["first_name"], "[erased]");
    let kim_read: Value = app.query(&format!("/v1/users/{kim}"), &admin).await.json().await.unwrap();
    assert_eq!(kim_read["email"], "kim.kept@example.org", "another user is untouched by the rebuild");
    let case_row: Value = app.query(&format!("/v1/cases/{case_id}"), &admin).await.json().await.unwrap();
    assert_eq!(case_row["assigned_to_username"], marker.as_str(), "{case_row}");
}

/// The IP address and user agent of an erased user's requests are theirs too: the audit
/// entries of what she did keep neither, in MongoDB and Elasticsearch, after a rebuild of
/// both, while another user's stay.
#[tokio::test(flavor = "multi_thread")]
async fn an_erased_users_requests_keep_no_address_or_user_agent_in_the_audit_trail() {
    const HER_AGENT: &str = "AdaBrowser/9.9 (X11; Linux)";
    let app = TestApp::spawn().await;
    let admin = app.token_for(app.tenant_id, Role::Admin);
    let ada = app.create_user("ada.actor", "agent").await;
    let token = app.login_token("ada.actor").await;
    let body = json!({ "title": "Opened from her browser", "case_type_id": app.case_type_id });
    let request = app.http.post(format!("{}/v1/cases", app.command_url)).bearer_auth(&token);
    let answer = request.header("user-agent", HER_AGENT).json(&body).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::CREATED);
    let case_id = answer.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    app.open_case("Opened by someone else").await;
    app.wait_for_all_stores().await;

    // Her audit entries, as text, in the stores that keep requests.
    let hers = || async {
        let contents = app.store_contents_of(app.tenant_id, false).await;
        let her_id = format!("\"user_id\":\"{ada}\"");
        contents
            .into_iter()
            .filter(|(store, _)| store.starts_with("mongo") || store.starts_with("elasticsearch"))
            .flat_map(|(store, rows)| rows.into_iter().map(move |row| format!("{store}: {row}")))
            .filter(|row| row.replace(": ", ":").contains(&her_id))
            .collect::<Vec<String>>()
    };
    let before = hers().await;
    assert!(
        before.iter().any(|r| r.starts_with("mongo") && r.contains(HER_AGENT) && r.contains("127.0.0.1")),
        "{before:#?}"
    );
    assert!(before.iter().any(|r| r.starts_with("elasticsearch") && r.contains(HER_AGENT)), "{before:#?}");
    let trail: Value = app.query(&format!("/v1/cases/{case_id}/audit"), &admin).await.json().await.unwrap();
    assert_eq!(trail["items"][0]["user_agent"], HER_AGENT, "{trail}");
    // ... while the journal and the Kafka log hold her address and user agent only sealed
    // with her key (a request of another user, in clear where no key seals it: the
    // platform operator's).
    let journal: Vec<String> = sqlx::query_scalar(
        "SELECT envelope::text FROM eventstore.events WHERE tenant_id = $1 AND envelope->'actor'->>'user_id' = $2",
    )
    .bind(app.tenant_id)
    .bind(ada.to_string())
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert!(!journal.is_empty() && journal.iter().all(|e| e.contains("\"sealed\"")), "{journal:#?}");
    let in_clear = |texts: &[String]| -> Vec<String> {
        texts.iter().filter(|t| t.contains(HER_AGENT) || t.contains("127.0.0.1")).cloned().collect()
    };
    assert_eq!(in_clear(&journal), Vec::<String>::new(), "the journal");
    let log = app.event_log();
    let acted_by_her =
        |m: &String| serde_json::from_str::<Value>(m).is_ok_and(|e| e["actor"]["user_id"] == json!(ada.to_string()));
    let hers_in_log: Vec<String> = log.into_iter().filter(acted_by_her).collect();
    assert!(hers_in_log.iter().any(|m| m.contains(&case_id)), "her case is in the log");
    assert_eq!(in_clear(&hers_in_log), Vec::<String>::new(), "the Kafka log");
    // A parked copy of her event (under a name no worker reads) keeps her request too.
    sqlx::query(
        "INSERT INTO projector.parked_events
            (projection, event_id, tenant_id, stream_id, stream_version, event_type, envelope, error)
         SELECT 'a-test-copy', event_id, tenant_id, stream_id, stream_version, event_type, envelope, 'a copy'
         FROM eventstore.events WHERE tenant_id = $1 AND stream_id = $2::uuid AND stream_version = 1",
    )
    .bind(app.tenant_id)
    .bind(&case_id)
    .execute(&app.pool)
    .await
    .unwrap();
    let parked_request = || async {
        sqlx::query_scalar::<_, Value>(
            "SELECT envelope->'request' FROM projector.parked_events WHERE projection = 'a-test-copy'",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap()
    };
    let parked = parked_request().await;
    assert!(parked["sealed"]["$sealed"].is_string() && !parked.to_string().contains(HER_AGENT), "{parked}");

    let answer = app.command(Method::POST, &format!("/v1/data-subjects/{ada}/erasure"), &admin, None).await;
    assert_eq!(answer.status(), StatusCode::OK);
    app.wait_for_all_stores().await;
    let kept = |rows: &[String]| -> Vec<String> {
        rows.iter().filter(|r| r.contains(HER_AGENT) || r.contains("127.0.0.1")).cloned().collect()
    };
    let after: Vec<String> = eventually("her requests to be gone from the audit trail", || async {
        let rows = hers().await;
        kept(&rows).is_empty().then_some(rows)
    })
    .await;
    assert!(after.iter().any(|r| r.contains(events::personal::ERASED)), "{after:#?}");
    let parked = parked_request().await;
    assert_eq!((&parked["ip_address"], &parked["user_agent"]), (&Value::Null, &json!("[erased]")), "{parked}");
    let trail: Value = app.query(&format!("/v1/cases/{case_id}/audit"), &admin).await.json().await.unwrap();
    assert_eq!(
        (&trail["items"][0]["ip_address"], &trail["items"][0]["user_agent"]),
        (&Value::Null, &json!("[erased]"))
    );
    let others: Value = app.query("/v1/search/audit?action=create", &admin).await.json().await.unwrap();
    assert!(others.to_string().contains("murima-tests"), "another user's requests stay: {others}");

    let stores = Stores::connect(&app.settings, 4).await.unwrap();
    for name in [projector::stores::ProjectionName::Mongo, projector::stores::ProjectionName::Elasticsearch] {
        projector::rebuild::run(&stores, name, Some(app.tenant_id), &|_, _| {}).await.unwrap();
    }
    assert_eq!(kept(&hers().await), Vec::<String>::new(), "after rebuilding both");
}
