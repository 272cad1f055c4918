//! Customers as data subjects (issue 19): a case may name the customer it is about
//! (`customer_id`). The case's title, description and custom fields, and its notes' and
//! interactions' content, are sealed with that customer's key before they reach the
//! journal; erasing the customer deletes the key, every read model replaces what it holds
//! with a marker, a rebuild from the log brings nothing back, and the cases themselves
//! (numbers, statuses, assignees) stay for the tenant's work and figures.

use murima_tests::{append_raw_event_at, eventually, holding, TestApp};
use projector::stores::Stores;
use reqwest::{Method, StatusCode};
use runtime::auth::Role;
use serde_json::{json, Value};
use uuid::Uuid;

/// What the test writes about Ingrid: none of it may be left anywhere once she is erased.
const INGRID: [&str; 7] = [
    "Ingrid Ünïque-Kunde",
    "12 Erasable Street",
    "555-0199",
    "ingrid.mail@example.net",
    "ingrid-msg-1",
    "Ingrid rang twice",
    "Ingrid's refund",
];

async fn position_of(answer: reqwest::Response) -> String {
    answer.json::<Value>().await.unwrap()["position"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_erased_customer_reads_as_a_marker_in_every_store_and_after_a_rebuild_of_every_projection() {
    let app = TestApp::spawn().await;
    let admin = app.token_for(app.tenant_id, Role::Admin);
    let form = json!({ "fields": [{ "name": "phone", "type": "text" }] });
    let case_type = app.create_case_type(app.tenant_id, "Refunds", form).await;
    let channel = app.command(Method::POST, "/v1/channels", &admin, Some(json!({ "name": "Chat", "type": "chat" })));
    let channel = channel.await.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let (ingrid, olaf) = (Uuid::now_v7(), Uuid::now_v7());
    let open = |customer: Uuid, title: &str, street: &str, phone: &str| {
        json!({ "title": title, "description": format!("Lives at {street}"), "case_type_id": case_type,
                "custom_fields": { "phone": phone }, "customer_id": customer })
    };
    let hers = open(ingrid, "Ingrid Ünïque-Kunde wants money", "12 Erasable Street", "555-0199");
    let answer = app.command(Method::POST, "/v1/cases", &admin, Some(hers)).await;
    assert_eq!(answer.status(), StatusCode::CREATED);
    let case = answer.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let update = json!({ "title": "Ingrid's refund" });
    let answer = app.command(Method::PATCH, &format!("/v1/cases/{case}"), &admin, Some(update)).await;
    assert_eq!(answer.status(), StatusCode::OK);
    let note = json!({ "content": "Ingrid rang twice about it" });
    let answer = app.command(Method::POST, &format!("/v1/cases/{case}/notes"), &admin, Some(note)).await;
    assert_eq!(answer.status(), StatusCode::CREATED);
    let contact = json!({ "channel_id": channel, "direction": "inbound", "content": "Ingrid rang twice, angry",
                          "external_id": "ingrid-msg-1", "metadata": { "from": "ingrid.mail@example.net" } });
    let answer = app.command(Method::POST, &format!("/v1/cases/{case}/interactions"), &admin, Some(contact)).await;
    assert_eq!(answer.status(), StatusCode::CREATED);
    // Another customer's case, and a case about nobody in particular.
    let his = open(olaf, "Olaf Kept wants a call", "7 Kept Road", "555-0177");
    let answer = app.command(Method::POST, "/v1/cases", &admin, Some(his)).await;
    let olaf_case = answer.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let plain = app.open_case("Printer jammed").await["id"].as_str().unwrap().to_owned();
    let template = json!({ "name": "Reply", "channel_type": "email", "content": "About {{case_title}}" });
    let answer = app.command(Method::POST, "/v1/message-templates", &admin, Some(template)).await;
    let template = answer.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let render = || async {
        let (body, path) =
            (json!({ "case_id": case, "values": {} }), format!("/v1/message-templates/{template}/render"));
        let answer = app.command(Method::POST, &path, &admin, Some(body)).await;
        answer.json::<Value>().await.unwrap()["content"].as_str().unwrap_or_default().to_owned()
    };
    // The command API has her case's state cached from here on.
    assert_eq!(render().await, "About Ingrid's refund");
    app.wait_for_all_stores().await;

    // Sealed from the start: the journal and the log never held her data in clear.
    let journal: Vec<String> = sqlx::query_scalar("SELECT envelope::text FROM eventstore.events WHERE tenant_id = $1")
        .bind(app.tenant_id)
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert!(journal.iter().any(|e| e.contains(&ingrid.to_string()) && e.contains("$sealed")));
    assert_eq!(holding(&journal, &INGRID), Vec::<&String>::new(), "the journal");
    assert!(journal.iter().any(|e| e.contains("Printer jammed")), "a case about nobody is not sealed");
    // Her key itself is kept wrapped by the key-encryption key (MURIMA_SUBJECT_KEK).
    let stored: Vec<u8> = sqlx::query_scalar("SELECT key FROM eventstore.subject_keys WHERE subject_id = $1")
        .bind(ingrid)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(stored.len() > 32, "a wrapped key: {} bytes", stored.len());
    let log = app.event_log();
    assert!(log.iter().any(|m| m.contains(&ingrid.to_string())), "her events are in the log");
    assert_eq!(holding(&log, &INGRID), Vec::<&String>::new(), "the Kafka log");
    // ... while the read models show it to those who may see it.
    let read: Value = app.query(&format!("/v1/cases/{case}"), &app.token).await.json().await.unwrap();
    assert_eq!(read["title"], "Ingrid's refund", "{read}");
    assert_eq!(read["custom_fields"]["phone"], "555-0199");
    let found = eventually("her case in search", || async {
        let found: Value = app.query("/v1/search/cases?q=refund", &app.token).await.json().await.ok()?;
        (found["total"].as_u64()? > 0).then_some(found)
    })
    .await;
    assert!(found.to_string().contains(&case), "{found}");
    assert!(!app.stores_holding(app.tenant_id, &INGRID).await.is_empty());

    // Her export, for administrators only.
    let export = format!("/v1/data-subjects/{ingrid}/export");
    let exported: Value = app.query(&export, &admin).await.json().await.unwrap();
    assert_eq!(exported["kind"], "customer", "{exported}");
    assert_eq!(exported["cases"]["items"][0]["title"], "Ingrid's refund", "{exported}");
    assert_eq!(exported["notes"]["items"][0]["content"], "Ingrid rang twice about it");
    assert_eq!(exported["interactions"]["items"][0]["external_id"], "ingrid-msg-1");
    assert!(!exported["audit_about"]["items"].as_array().unwrap().is_empty());
    assert!(!exported.to_string().contains("Olaf"), "another customer's case is not hers");
    assert_eq!(app.query(&export, &app.token).await.status(), StatusCode::FORBIDDEN, "an agent");
    let stranger = app.provision_tenant().await.0;
    let stranger_admin = app.token_for(stranger, Role::Admin);
    assert_eq!(app.query(&export, &stranger_admin).await.status(), StatusCode::NOT_FOUND, "another tenant");
    let nobody = format!("/v1/data-subjects/{}/export", Uuid::now_v7());
    assert_eq!(app.query(&nobody, &admin).await.status(), StatusCode::NOT_FOUND, "a customer no case names");

    // Who may not erase her.
    let erase = format!("/v1/data-subjects/{ingrid}/erasure");
    for role in [Role::Agent, Role::Supervisor] {
        let answer = app.command(Method::POST, &erase, &app.token_for(app.tenant_id, role), None).await;
        assert_eq!(answer.status(), StatusCode::FORBIDDEN, "{role:?}");
    }
    let answer = app.command(Method::POST, &erase, &stranger_admin, None).await;
    assert_eq!(answer.status(), StatusCode::NOT_FOUND, "another tenant's administrator");
    let answer = app.command(Method::POST, &erase, &app.platform_token(), None).await;
    assert_eq!(answer.status(), StatusCode::FORBIDDEN, "a platform token");
    let answer =
        app.command(Method::POST, &format!("/v1/data-subjects/{}/erasure", Uuid::now_v7()), &admin, None).await;
    assert_eq!(answer.status(), StatusCode::NOT_FOUND, "a customer no case names");

    let answer = app.command(Method::POST, &erase, &admin, None).await;
    assert_eq!(answer.status(), StatusCode::OK);
    let erased: Value = answer.json().await.unwrap();
    assert_eq!(erased["events_appended"], 1, "{erased}");
    let position = erased["position"].as_str().unwrap().to_owned();
    let again: Value = app.command(Method::POST, &erase, &admin, None).await.json().await.unwrap();
    assert_eq!(again["events_appended"], 0, "erasing again changes nothing: {again}");
    let key: (Option<Vec<u8>>, bool) = sqlx::query_as(
        "SELECT key, erased_at IS NOT NULL FROM eventstore.subject_keys WHERE tenant_id = $1 AND subject_id = $2",
    )
    .bind(app.tenant_id)
    .bind(ingrid)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(key, (None, true), "her key is gone; the row stays as the mark");

    // Nothing more is recorded about her, but the work on her case goes on.
    let again = open(ingrid, "Back again", "1 Other Way", "555-0100");
    let answer = app.command(Method::POST, "/v1/cases", &admin, Some(again)).await;
    assert_eq!(answer.status(), StatusCode::CONFLICT, "a new case naming her");
    let note = json!({ "content": "More about her" });
    let answer = app.command(Method::POST, &format!("/v1/cases/{case}/notes"), &admin, Some(note)).await;
    assert_eq!(answer.status(), StatusCode::CONFLICT, "a note about her");
    let priority = json!({ "priority": "low" });
    let answer = app.command(Method::PATCH, &format!("/v1/cases/{case}"), &admin, Some(priority)).await;
    assert_eq!(answer.status(), StatusCode::OK, "a change that records nothing about her");
    let status = json!({ "status": "in_progress" });
    let answer = app.command(Method::POST, &format!("/v1/cases/{case}/status"), &admin, Some(status)).await;
    assert_eq!(answer.status(), StatusCode::OK, "her case is still worked");
    let position_after = position_of(answer).await;
    assert_eq!(render().await, "About [erased]", "no command API keeps what it had cached of her");
    let worked = eventually("search to follow her case after the erasure", || async {
        let found: Value =
            app.query("/v1/search/cases?q=erased&status=in_progress&priority=low", &admin).await.json().await.ok()?;
        found.to_string().contains(&case).then_some(found)
    })
    .await;
    assert!(!worked.to_string().contains("Ingrid"), "{worked}");

    let read: Value =
        app.query(&format!("/v1/cases/{case}?position={position_after}"), &admin).await.json().await.unwrap();
    assert_eq!((read["title"].as_str(), read["description"].as_str()), (Some("[erased]"), Some("[erased]")), "{read}");
    assert_eq!(read["custom_fields"], json!({}));
    assert_eq!((read["status"].as_str(), read["priority"].as_str()), (Some("in_progress"), Some("low")));
    app.wait_for_all_stores().await;
    eventually("every store to hold nothing of hers", || async {
        app.stores_holding(app.tenant_id, &INGRID).await.is_empty().then_some(())
    })
    .await;
    let exported = app.query(&format!("{export}?position={position}"), &admin).await.text().await.unwrap();
    assert!(exported.contains("[erased]"), "{exported}");
    assert_eq!(
        holding(std::slice::from_ref(&exported), &INGRID),
        Vec::<&String>::new(),
        "her export after the erasure"
    );
    let olaf_read: Value = app.query(&format!("/v1/cases/{olaf_case}"), &admin).await.json().await.unwrap();
    assert_eq!(olaf_read["title"], "Olaf Kept wants a call", "another customer is untouched");
    let plain_read: Value = app.query(&format!("/v1/cases/{plain}"), &admin).await.json().await.unwrap();
    assert_eq!(plain_read["title"], "Printer jammed");

    // A rebuild of every projection from the log brings nothing back.
    let stores = Stores::connect(&app.settings, 4).await.unwrap();
    for name in projector::stores::ProjectionName::ALL {
        projector::rebuild::run(&stores, name, Some(app.tenant_id), &|_, _| {}).await.unwrap();
    }
    assert_eq!(app.stores_holding(app.tenant_id, &INGRID).await, Vec::<String>::new(), "after the rebuilds");
    let read: Value = app.query(&format!("/v1/cases/{case}"), &admin).await.json().await.unwrap();
    assert_eq!((read["title"].as_str(), read["status"].as_str()), (Some("[erased]"), Some("in_progress")), "{read}");
    let olaf_read: Value = app.query(&format!("/v1/cases/{olaf_case}"), &admin).await.json().await.unwrap();
    assert_eq!(olaf_read["custom_fields"]["phone"], "555-0177", "another customer is untouched by the rebuild");
}

/// A customer's id is theirs alone: not a user's (who would share their key and be erased
/// or exported as them), not nil; and the ids Murima derives (a data subject's stream)
/// are not for clients to take, which would leave the subject unerasable.
#[tokio::test(flavor = "multi_thread")]
async fn a_customer_id_is_the_customers_alone_and_derived_ids_are_not_for_clients() {
    let app = TestApp::spawn().await;
    let admin = app.token_for(app.tenant_id, Role::Admin);
    let colleague = app.create_user("colleague.kept", "agent").await;
    let open = |customer: Value| json!({ "title": "A customer's case", "case_type_id": app.case_type_id, "customer_id": customer });
    for customer in [json!(colleague), json!(Uuid::nil()), json!("not-a-uuid"), json!("Ingrid\u{0}")] {
        let answer = app.command(Method::POST, "/v1/cases", &admin, Some(open(customer.clone()))).await;
        assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY, "{customer}");
        let problem: Value = answer.json().await.unwrap();
        assert_eq!(problem["errors"][0]["field"], "customer_id", "{problem}");
    }
    let customer = Uuid::now_v7();
    let answer = app.command(Method::POST, "/v1/cases", &admin, Some(open(json!(customer)))).await;
    assert_eq!(answer.status(), StatusCode::CREATED);
    // A user cannot take the customer's id.
    let user = json!({ "id": customer, "username": "taker", "email": "taker@example.org",
                       "password": "integration test password", "role": "agent" });
    let answer = app.command(Method::POST, "/v1/users", &admin, Some(user)).await;
    assert_eq!(answer.status(), StatusCode::CONFLICT, "a user taking a customer's id");
    // Nor can anything take the id of the customer's erasure stream (UUID v5).
    let derived = events::data_subject::stream_id(customer);
    let case_type = json!({ "id": derived, "name": "Squatter", "form_definition": { "fields": [] } });
    let answer = app.command(Method::POST, "/v1/case-types", &admin, Some(case_type)).await;
    assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY, "a case type on a derived id");
    let problem: Value = answer.json().await.unwrap();
    assert_eq!(problem["errors"][0]["field"], "id", "{problem}");
    let answer = app.command(Method::POST, &format!("/v1/data-subjects/{customer}/erasure"), &admin, None).await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.json::<Value>().await.unwrap()["events_appended"], 1);
    app.wait_for_all_stores().await;
    let read: Value = app.query(&format!("/v1/users/{colleague}"), &admin).await.json().await.unwrap();
    assert_eq!(read["username"], "colleague.kept", "the colleague is untouched");
}

/// An archive holds a customer's data as the journal does, sealed with their key: erasing
/// them after the archive was written reaches it, and a restore puts back markers.
#[tokio::test(flavor = "multi_thread")]
async fn an_archive_holds_a_customers_data_sealed_and_their_later_erasure_reaches_it() {
    use std::io::Read;
    let app = TestApp::spawn().await;
    let admin = app.token_for(app.tenant_id, Role::Admin);
    let settings = format!("/v1/tenants/{}/settings", app.tenant_id);
    let retention = |days: i64| Some(json!({ "settings": { "retention_days": days } }));
    let answer = app.command(Method::PATCH, &settings, &app.platform_token(), retention(1)).await;
    assert_eq!(answer.status(), StatusCode::OK);
    let channel = app.command(Method::POST, "/v1/channels", &admin, Some(json!({ "name": "Chat", "type": "chat" })));
    let channel = channel.await.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let ingrid = Uuid::now_v7();
    let open = json!({ "title": "Ingrid Ünïque-Kunde wants money", "case_type_id": app.case_type_id,
                       "customer_id": ingrid });
    let answer = app.command(Method::POST, "/v1/cases", &admin, Some(open)).await;
    let case = answer.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    // A contact of 2020 about her, put in the journal as an import would.
    let recorded = json!({ "case_id": case, "channel_id": channel, "user_id": app.user_id, "direction": "inbound",
        "content": "Ingrid rang twice in 2020", "external_id": "ingrid-msg-1", "tags": [],
        "metadata": { "from": "ingrid.mail@example.net" }, "timestamp": "2020-01-15T10:00:00Z",
        "customer_id": ingrid });
    let now = chrono::Utc::now();
    append_raw_event_at(&app, app.tenant_id, "interaction", Uuid::now_v7(), 1, "InteractionRecorded", 2, recorded, now)
        .await;
    app.wait_for_all_stores().await;
    let schema = runtime::tenancy::Tenancy(app.tenant_id).pg_schema();
    let hers = format!(
        "SELECT content, external_id, metadata FROM {schema}.interactions WHERE customer_id = $1 AND timestamp < '2020-02-01'"
    );
    let row = || async {
        let row: Option<(Option<String>, Option<String>, Value)> =
            sqlx::query_as(&hers).bind(ingrid).fetch_optional(&app.pool).await.unwrap();
        row
    };
    eventually("her 2020 contact in PostgreSQL", || async { row().await.map(|_| ()) }).await;

    let stores = Stores::connect(&app.settings, 2).await.unwrap();
    projector::retention::run(&stores, now, false).await.unwrap();
    assert_eq!(row().await, None, "archived, then removed");
    let dir = app.settings.archive_dir.clone().unwrap().join(format!("tenant-{}", app.tenant_id.simple()));
    let files: Vec<_> = std::fs::read_dir(dir.join("interactions").join("2020-01")).unwrap().collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let mut archived = String::new();
    let file = std::fs::File::open(files[0].as_ref().unwrap().path()).unwrap();
    flate2::read::GzDecoder::new(file).read_to_string(&mut archived).unwrap();
    assert!(archived.contains("$sealed") && archived.contains(&ingrid.to_string()), "{archived}");
    assert_eq!(holding(std::slice::from_ref(&archived), &INGRID), Vec::<&String>::new(), "the archive");

    let answer = app.command(Method::POST, &format!("/v1/data-subjects/{ingrid}/erasure"), &admin, None).await;
    assert_eq!(answer.status(), StatusCode::OK);
    let answer = app.command(Method::PATCH, &settings, &app.platform_token(), retention(3650)).await;
    assert_eq!(answer.status(), StatusCode::OK);
    app.wait_for_retention(app.tenant_id, 3650).await;
    let restored = projector::retention::restore(&stores, app.tenant_id, "interactions", "2020-01").await.unwrap();
    assert_eq!(restored.records, 1, "{restored:?}");
    let back = row().await;
    assert_eq!(back, Some((Some("[erased]".into()), Some("[erased]".into()), json!({}))), "restored after her erasure");
}

/// The platform operator erases a data subject in any tenant, a suspended one too (its
/// own administrators are refused every command until it is reactivated).
#[tokio::test(flavor = "multi_thread")]
async fn the_platform_operator_erases_a_data_subject_in_a_suspended_tenant() {
    let app = TestApp::spawn().await;
    let (admin, platform) = (app.token_for(app.tenant_id, Role::Admin), app.platform_token());
    let customer = Uuid::now_v7();
    let open = json!({ "title": "Ingrid Ünïque-Kunde wants money", "case_type_id": app.case_type_id,
                       "customer_id": customer });
    assert_eq!(app.command(Method::POST, "/v1/cases", &admin, Some(open)).await.status(), StatusCode::CREATED);
    let zoe = app.create_user("zoe.erasable", "agent").await;
    let suspend = json!({ "reason": "unpaid invoice" });
    let path = format!("/v1/tenants/{}/suspend", app.tenant_id);
    let answer = app.command(Method::POST, &path, &platform, Some(suspend)).await;
    assert_eq!(answer.status(), StatusCode::OK);
    let answer = app.command(Method::POST, &format!("/v1/data-subjects/{customer}/erasure"), &admin, None).await;
    assert_eq!(answer.status(), StatusCode::FORBIDDEN, "the suspended tenant's administrator");

    let operator = |tenant: Uuid, id: Uuid| format!("/v1/tenants/{tenant}/data-subjects/{id}/erasure");
    let answer = app.command(Method::POST, &operator(app.tenant_id, customer), &admin, None).await;
    assert_eq!(answer.status(), StatusCode::FORBIDDEN, "a tenant's administrator on the operator's route");
    let answer = app.command(Method::POST, &operator(Uuid::now_v7(), customer), &platform, None).await;
    assert_eq!(answer.status(), StatusCode::NOT_FOUND, "no such tenant");
    let answer = app.command(Method::POST, &operator(app.tenant_id, Uuid::now_v7()), &platform, None).await;
    assert_eq!(answer.status(), StatusCode::NOT_FOUND, "no such subject");
    for subject in [customer, zoe] {
        let answer = app.command(Method::POST, &operator(app.tenant_id, subject), &platform, None).await;
        assert_eq!(answer.status(), StatusCode::OK, "{subject}");
        assert_eq!(answer.json::<Value>().await.unwrap()["events_appended"], 1);
    }
    let erased: Vec<Uuid> =
        sqlx::query_scalar("SELECT subject_id FROM eventstore.subject_keys WHERE tenant_id = $1 AND key IS NULL")
            .bind(app.tenant_id)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert!(erased.contains(&customer) && erased.contains(&zoe), "{erased:?}");
    app.wait_for_all_stores().await;
    eventually("every store to hold nothing of theirs", || async {
        app.stores_holding(app.tenant_id, &["Ingrid", "zoe.erasable"]).await.is_empty().then_some(())
    })
    .await;
}

/// The custom fields a workflow transition requires go with an erased customer's data:
/// their case still moves on, where it would otherwise be stuck forever (nothing more
/// about the customer may be recorded, so the fields can never be filled again). A
/// case whose customer is not erased still needs them.
#[tokio::test(flavor = "multi_thread")]
async fn an_erased_customers_case_still_takes_a_transition_that_requires_custom_fields() {
    let app = TestApp::spawn().await;
    let admin = app.token_for(app.tenant_id, Role::Admin);
    let (new, done) = (Uuid::now_v7(), Uuid::now_v7());
    let definition = json!({
        "stages": [{ "id": new, "name": "New" }, { "id": done, "name": "Done" }],
        "initial_stage": new,
        "transitions": [{ "from": new, "to": done, "required_fields": ["root_cause"] }],
    });
    let answer = app
        .command(Method::POST, "/v1/workflows", &admin, Some(json!({ "name": "Support", "definition": definition })))
        .await;
    assert_eq!(answer.status(), StatusCode::CREATED);
    let workflow = answer.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let typed = json!({ "name": "Incident", "workflow_id": workflow,
                        "form_definition": { "fields": [{ "name": "root_cause", "type": "text" }] } });
    let answer = app.command(Method::POST, "/v1/case-types", &admin, Some(typed)).await;
    assert_eq!(answer.status(), StatusCode::CREATED);
    let case_type = answer.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let open = |customer: Uuid| {
        json!({ "title": "Ingrid's refund", "case_type_id": case_type, "customer_id": customer,
                "custom_fields": { "root_cause": "Ingrid rang twice" } })
    };
    let (ingrid, kept) = (Uuid::now_v7(), Uuid::now_v7());
    let mut cases = Vec::new();
    for customer in [ingrid, kept] {
        let answer = app.command(Method::POST, "/v1/cases", &admin, Some(open(customer))).await;
        assert_eq!(answer.status(), StatusCode::CREATED);
        cases.push(answer.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    let answer = app.command(Method::POST, &format!("/v1/data-subjects/{ingrid}/erasure"), &admin, None).await;
    assert_eq!(answer.status(), StatusCode::OK);

    let moved = app
        .command(Method::POST, &format!("/v1/cases/{}/stage", cases[0]), &admin, Some(json!({ "stage_id": done })))
        .await;
    assert_eq!(moved.status(), StatusCode::OK, "{}", moved.text().await.unwrap());
    // Her case's fields are gone, so nothing can be recorded of them ...
    let refill = json!({ "custom_fields": { "root_cause": "again" } });
    let answer = app.command(Method::PATCH, &format!("/v1/cases/{}", cases[0]), &admin, Some(refill)).await;
    assert_eq!(answer.status(), StatusCode::CONFLICT);
    // ... while a case of a customer not erased, its field cleared, still needs it.
    let cleared = json!({ "custom_fields": { "root_cause": null } });
    let answer = app.command(Method::PATCH, &format!("/v1/cases/{}", cases[1]), &admin, Some(cleared)).await;
    assert_eq!(answer.status(), StatusCode::OK, "{}", answer.text().await.unwrap());
    let refused = app
        .command(Method::POST, &format!("/v1/cases/{}/stage", cases[1]), &admin, Some(json!({ "stage_id": done })))
        .await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
}
