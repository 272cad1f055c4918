//! Customers as data subjects (issue 19): a case may name the customer it is about
//! (`customer_id`). The case's title, description and custom fields, and its notes' and
//! interactions' content, are sealed with that customer's key before they reach the
//! journal; erasing the customer deletes the key, every read model replaces what it holds
//! with a marker, a rebuild from the log brings nothing back, and the cases themselves
//! (numbers, statuses, assignees) stay for the tenant's work and figures.

use murima_tests::{eventually, holding, TestApp};
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
    for name in projector::stores::ProjectionName::ALL.map(|p| p.as_str()) {
        projector::rebuild::run(&stores, name, Some(app.tenant_id), &|_, _| {}).await.unwrap();
    }
    assert_eq!(app.stores_holding(app.tenant_id, &INGRID).await, Vec::<String>::new(), "after the rebuilds");
    let read: Value = app.query(&format!("/v1/cases/{case}"), &admin).await.json().await.unwrap();
    assert_eq!((read["title"].as_str(), read["status"].as_str()), (Some("[erased]"), Some("in_progress")), "{read}");
    let olaf_read: Value = app.query(&format!("/v1/cases/{olaf_case}"), &admin).await.json().await.unwrap();
    assert_eq!(olaf_read["custom_fields"]["phone"], "555-0177", "another customer is untouched by the rebuild");
}
