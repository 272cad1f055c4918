//! Accepted means projected (issue 16): the input contract bounds every value so that
//! every store takes it, the contract and the PostgreSQL columns cannot drift, and a
//! value a store refuses anyway parks its own stream only.

use murima_tests::{eventually, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

fn named(problem: &Value, field: &str) -> bool {
    problem["errors"].as_array().is_some_and(|errors| errors.iter().any(|e| e["field"] == field))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_contract_bounds_every_bounded_column_of_the_read_models() {
    let app = TestApp::spawn().await;
    app.open_case("Provisions the schema").await;
    let schema = runtime::tenancy::Tenancy(app.tenant_id).pg_schema();
    eventually("the tenant's schema", || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM information_schema.tables WHERE table_schema = $1")
            .bind(&schema)
            .fetch_one(&app.pool)
            .await
            .ok()?;
        (n > 5).then_some(())
    })
    .await;
    let columns: Vec<(String, String, i32)> = sqlx::query_as(
        "SELECT c.table_name::text, c.column_name::text, c.character_maximum_length::int
         FROM information_schema.columns c
         JOIN information_schema.tables t ON (t.table_schema, t.table_name) = (c.table_schema, c.table_name)
         WHERE c.data_type = 'character varying' AND c.character_maximum_length IS NOT NULL
           AND t.table_type = 'BASE TABLE'
           AND (c.table_schema = $1 OR (c.table_schema = 'public' AND c.table_name = 'tenants'))
           AND c.table_name NOT LIKE 'interactions\\_%'",
    )
    .bind(&schema)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert!(columns.len() > 20, "{columns:?}");
    let mut drift = Vec::new();
    for (table, column, width) in &columns {
        match events::contract::COLUMNS.iter().find(|c| c.table == table && c.column == column) {
            None => drift.push(format!("{table}.{column} (VARCHAR({width})) is not in events::contract::COLUMNS")),
            Some(c) if c.max_chars > *width as usize => {
                drift.push(format!("{table}.{column} is VARCHAR({width}) but the contract lets {} in", c.max_chars))
            }
            Some(_) => {}
        }
    }
    for c in events::contract::COLUMNS {
        if !columns.iter().any(|(t, col, _)| t == c.table && col == c.column) {
            drift.push(format!("the contract names {}.{}, which is no bounded column", c.table, c.column));
        }
    }
    assert!(drift.is_empty(), "the input contract and the migrations disagree:\n{}", drift.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn values_no_store_could_take_are_refused_naming_the_field() {
    let app = TestApp::spawn().await;
    let admin = app.token_for(app.tenant_id, runtime::auth::Role::Admin);
    let form = json!({ "fields": [{ "name": "customer_id", "type": "text" }] });
    let case_type = app.create_case_type(app.tenant_id, "With a customer", form).await;

    // A 9,000-character customer_id was accepted and then stopped the PostgreSQL
    // projection for every tenant (its index row is at most ~2,700 bytes).
    let case = json!({ "title": "Long id", "priority": "low", "case_type_id": case_type,
                       "custom_fields": { "customer_id": "x".repeat(9000) } });
    let answer = app.command(Method::POST, "/v1/cases", &app.token, Some(case)).await;
    assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(named(&answer.json().await.unwrap(), "custom_fields.customer_id"));
    // 700 three-byte characters are few enough characters but too many bytes.
    let case = json!({ "title": "Wide id", "priority": "low", "case_type_id": case_type,
                       "custom_fields": { "customer_id": "€".repeat(700) } });
    let answer = app.command(Method::POST, "/v1/cases", &app.token, Some(case)).await;
    assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = answer.json().await.unwrap();
    assert!(problem.to_string().contains("bytes"), "{problem}");

    // A select option becomes a case's value: bounded the same way.
    let form = json!({ "fields": [{ "name": "customer_id", "type": "select", "options": ["y".repeat(9000)] }] });
    let body = json!({ "name": "Long option", "form_definition": form });
    let answer = app.command(Method::POST, "/v1/case-types", &admin, Some(body)).await;
    assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(named(&answer.json().await.unwrap(), "form_definition.fields[0].options[0]"));

    // Control characters: Elasticsearch's completion field refuses some, no store wants
    // NUL; names and titles are single lines.
    for title in ["unit\u{1f}separator", "record\u{1e}separator", "bell\u{7}", "two\nlines", "nel\u{85}"] {
        let case = json!({ "title": title, "priority": "low", "case_type_id": app.case_type_id });
        let answer = app.command(Method::POST, "/v1/cases", &app.token, Some(case)).await;
        assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY, "{title:?}");
        assert!(named(&answer.json().await.unwrap(), "title"), "{title:?}");
    }
    let body = json!({ "name": "team\u{1b}[31m" });
    let answer = app.command(Method::POST, "/v1/teams", &admin, Some(body)).await;
    assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_longest_names_the_contract_accepts_reach_every_read_model() {
    let app = TestApp::spawn().await;
    // A case type's name at the contract's limit, in four-byte characters: the cases
    // table copies it into case_type_name, which was VARCHAR(100), so the case answered
    // 201 and was parked in PostgreSQL.
    let name = format!("{}{}", "🗂".repeat(254), "x");
    let case_type = app.create_case_type(app.tenant_id, &name, json!({ "fields": [] })).await;
    let title = "ש".repeat(255);
    let case = json!({ "title": title, "description": "ok\r\n\tindented", "priority": "low",
                       "case_type_id": case_type, "tags": ["😀".repeat(64)] });
    let answer = app.command(Method::POST, "/v1/cases", &app.token, Some(case)).await;
    assert_eq!(answer.status(), StatusCode::CREATED);
    let id: Uuid = answer.json::<Value>().await.unwrap()["id"].as_str().unwrap().parse().unwrap();
    let schema = runtime::tenancy::Tenancy(app.tenant_id).pg_schema();
    let (held_title, held_type): (String, String) = eventually("the case in PostgreSQL", || async {
        sqlx::query_as(&format!("SELECT title, case_type_name FROM {schema}.cases WHERE id = $1"))
            .bind(id)
            .fetch_optional(&app.pool)
            .await
            .ok()
            .flatten()
    })
    .await;
    assert_eq!((held_title.as_str(), held_type.as_str()), (title.as_str(), name.as_str()));
    app.wait_for_all_stores().await;
    let parked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM projector.parked_events").fetch_one(&app.pool).await.unwrap();
    assert_eq!(parked, 0, "nothing accepted may be parked");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_value_over_an_index_limit_parks_its_stream_and_holds_back_no_other() {
    let app = TestApp::spawn().await;
    // A case event as an older writer without the contract could have stored it: its
    // customer_id is over the B-tree limit of idx_cases_custom_fields_customer_id
    // (SQLSTATE 54000, a program limit, which used to be retried forever).
    let template = app.open_case("A model for the raw event").await;
    let model: Value = sqlx::query_scalar(
        "SELECT envelope FROM eventstore.events WHERE tenant_id = $1 AND stream_id = $2 AND stream_version = 1",
    )
    .bind(app.tenant_id)
    .bind(template["id"].as_str().unwrap().parse::<Uuid>().unwrap())
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let stream = Uuid::now_v7();
    let mut payload = model["payload"].clone();
    // Incompressible (PostgreSQL compresses index entries): random hex, 20,000 characters.
    let long: String = (0..625).map(|_| Uuid::new_v4().simple().to_string()).collect();
    payload["custom_fields"] = json!({ "customer_id": long });
    payload["case_number"] = json!("CASE-900001");
    murima_tests::append_raw_event(
        &app,
        app.tenant_id,
        "case",
        stream,
        1,
        "CaseOpened",
        model["schema_version"].as_i64().unwrap(),
        payload,
    )
    .await;

    // Opened after it, in this tenant and in another: both reach PostgreSQL.
    let after = app.open_case("After the oversized one").await["id"].as_str().unwrap().parse::<Uuid>().unwrap();
    let (other_tenant, other_agent) = app.provision_tenant().await;
    let body = json!({ "title": "Another tenant's", "priority": "low",
                       "case_type_id": app.create_case_type(other_tenant, "General", json!({ "fields": [] })).await });
    let answer = app.command(Method::POST, "/v1/cases", &other_agent, Some(body)).await;
    assert_eq!(answer.status(), StatusCode::CREATED);
    let theirs: Uuid = answer.json::<Value>().await.unwrap()["id"].as_str().unwrap().parse().unwrap();
    for (tenant, id) in [(app.tenant_id, after), (other_tenant, theirs)] {
        let schema = runtime::tenancy::Tenancy(tenant).pg_schema();
        eventually("a later case in PostgreSQL", || async {
            let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {schema}.cases WHERE id = $1"))
                .bind(id)
                .fetch_one(&app.pool)
                .await
                .ok()?;
            (n == 1).then_some(())
        })
        .await;
    }
    let error: String = eventually("the oversized case parked in PostgreSQL", || async {
        sqlx::query_scalar("SELECT error FROM projector.parked_events WHERE projection = 'postgres' AND stream_id = $1")
            .bind(stream)
            .fetch_optional(&app.pool)
            .await
            .ok()
            .flatten()
    })
    .await;
    assert!(error.contains("54000"), "{error}");
    let status: Value = app.admin(Method::GET, "/v1/admin/projections", None).await.json().await.unwrap();
    let postgres = status["projections"].as_array().unwrap().iter().find(|p| p["projection"] == "postgres").unwrap();
    assert_eq!(postgres["last_error_class"], "deterministic", "{postgres:#}");
    assert!(postgres["parked_streams"].as_i64().unwrap() >= 1, "{postgres:#}");
    assert!(postgres["retrying_since"].is_null(), "{postgres:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_field_name_with_two_types_reaches_the_search_index() {
    let app = TestApp::spawn().await;
    // Two case types give `amount` two types; dynamically mapped, the first case fixed the
    // month index's type and the second was refused by Elasticsearch (and parked).
    let numbers = app
        .create_case_type(app.tenant_id, "Refunds", json!({ "fields": [{ "name": "amount", "type": "number" }] }))
        .await;
    let words = app
        .create_case_type(app.tenant_id, "Estimates", json!({ "fields": [{ "name": "amount", "type": "text" }] }))
        .await;
    for (case_type, amount) in [(numbers, json!(12.5)), (words, json!("about twelve"))] {
        let case = json!({ "title": "Amounts", "priority": "low", "case_type_id": case_type,
                           "custom_fields": { "amount": amount } });
        let answer = app.command(Method::POST, "/v1/cases", &app.token, Some(case)).await;
        assert_eq!(answer.status(), StatusCode::CREATED);
    }
    app.wait_for_all_stores().await;
    let parked: Vec<String> =
        sqlx::query_scalar("SELECT error FROM projector.parked_events").fetch_all(&app.pool).await.unwrap();
    assert!(parked.is_empty(), "{parked:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interaction_cannot_be_dated_into_any_month_it_likes() {
    let app = TestApp::spawn().await;
    let admin = app.token_for(app.tenant_id, runtime::auth::Role::Admin);
    let channel = app
        .command(Method::POST, "/v1/channels", &admin, Some(json!({ "name": "Phone", "type": "voice" })))
        .await
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let case = app.open_case("Interactions").await["id"].as_str().unwrap().to_owned();
    // Each month is a partition and an index: a date in 1970 (or year 1) would make one.
    for occurred_at in ["1970-01-01T00:00:00Z", "0001-01-01T00:00:00Z"] {
        let body =
            json!({ "channel_id": channel, "direction": "inbound", "content": "old", "occurred_at": occurred_at });
        let answer = app.command(Method::POST, &format!("/v1/cases/{case}/interactions"), &app.token, Some(body)).await;
        assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY, "{occurred_at}");
        assert!(named(&answer.json().await.unwrap(), "occurred_at"));
    }
    // Tags of an interaction are bounded like a case's (a GIN index holds each whole).
    let body = json!({ "channel_id": channel, "direction": "inbound", "tags": ["t".repeat(5000)] });
    let answer = app.command(Method::POST, &format!("/v1/cases/{case}/interactions"), &app.token, Some(body)).await;
    assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(named(&answer.json().await.unwrap(), "tags[0]"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_largest_and_smallest_numbers_json_takes_come_back_out_of_the_journal() {
    let app = TestApp::spawn().await;
    let admin = app.token_for(app.tenant_id, runtime::auth::Role::Admin);
    // PostgreSQL's jsonb prints 1.7976931348623157e308 as 309 digits; read back with a
    // parser that could not take that integer, the channel's stream could no longer be
    // loaded (500 on every later command) and the relay stopped at its event.
    let extremes = json!({ "largest": f64::MAX, "most_negative": f64::MIN, "smallest": 5e-324,
                           "huge_integer": i64::MAX, "negative_integer": i64::MIN });
    let create = json!({ "name": "Extremes", "type": "web", "configuration": extremes });
    let r = app.command(Method::POST, "/v1/channels", &admin, Some(create)).await;
    let answer = r.json::<Value>().await.unwrap();
    assert!(answer["id"].is_string(), "{answer}");
    let channel = answer["id"].as_str().unwrap().to_owned();
    let rename = json!({ "name": "Extremes renamed" });
    let r = app.command(Method::PATCH, &format!("/v1/channels/{channel}"), &admin, Some(rename)).await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let case = app.open_case("Written after the extremes").await["id"].as_str().unwrap().to_owned();
    app.wait_for_all_stores().await;
    let r = app.query(&format!("/v1/cases/{case}"), &app.token).await;
    assert_eq!(r.status(), StatusCode::OK, "the relay went on past the channel's events");
    let r = app.query(&format!("/v1/channels/{channel}"), &admin).await;
    assert_eq!(r.status(), StatusCode::OK);
    let held = r.json::<Value>().await.unwrap();
    assert_eq!(held["name"], "Extremes renamed");
    assert_eq!(held["configuration"]["largest"], json!(f64::MAX), "{held}");
    assert_eq!(held["configuration"]["smallest"], json!(5e-324), "{held}");
    assert_eq!(held["configuration"]["huge_integer"], json!(i64::MAX), "{held}");
}
