//! Bad input is a 4xx problem+json that says what to fix; never a 500.

use murima_tests::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn problem(response: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_unknown_oversized_and_invalid_bodies_are_4xx() {
    let app = TestApp::spawn().await;
    let url = format!("{}/v1/cases", app.command_url);
    let raw = |body: String| {
        app.http.post(&url).bearer_auth(&app.token).header("content-type", "application/json").body(body).send()
    };

    let p = problem(raw("{\"title\": ".into()).await.unwrap(), StatusCode::BAD_REQUEST).await;
    assert!(p["detail"].as_str().unwrap().contains("EOF"), "{p}");

    let unknown = json!({ "title": "x", "case_type_id": app.case_type_id, "colour": "red" });
    let p = problem(raw(unknown.to_string()).await.unwrap(), StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(p["detail"].as_str().unwrap().contains("unknown field `colour`"), "{p}");

    let huge = json!({ "title": "x", "case_type_id": app.case_type_id, "description": "a".repeat(64 * 1024) });
    let p = problem(raw(huge.to_string()).await.unwrap(), StatusCode::PAYLOAD_TOO_LARGE).await;
    assert!(p["detail"].as_str().unwrap().contains("smaller"), "{p}");

    let wrong_type = json!({ "title": "x", "case_type_id": "not-a-uuid" });
    problem(raw(wrong_type.to_string()).await.unwrap(), StatusCode::UNPROCESSABLE_ENTITY).await;

    let bad_enum = json!({ "title": "x", "case_type_id": app.case_type_id, "priority": "whenever" });
    let p = problem(raw(bad_enum.to_string()).await.unwrap(), StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(p["detail"].as_str().unwrap().contains("whenever"), "{p}");

    // Field-level validation: every invalid field named at once.
    let invalid =
        json!({ "title": " ", "case_type_id": app.case_type_id, "tags": [""], "due_date": "2001-01-01T00:00:00Z" });
    let p = problem(
        app.command(Method::POST, "/v1/cases", &app.token, Some(invalid)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let fields: Vec<&str> = p["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, vec!["title", "due_date", "tags[0]"]);

    let no_json = app.http.post(&url).bearer_auth(&app.token).body("title=x").send().await.unwrap();
    problem(no_json, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;

    // Bad headers, ids, statuses and query parameters.
    let id = app.open_case("Target").await["id"].as_str().unwrap().to_owned();
    let bad_if_match = app
        .http
        .patch(format!("{url}/{id}"))
        .bearer_auth(&app.token)
        .header("if-match", "yesterday")
        .json(&json!({ "title": "y" }))
        .send()
        .await
        .unwrap();
    problem(bad_if_match, StatusCode::BAD_REQUEST).await;
    let r = app
        .command(Method::POST, &format!("/v1/cases/{id}/status"), &app.token, Some(json!({ "status": "done" })))
        .await;
    problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    let r =
        app.command(Method::POST, "/v1/cases/not-a-uuid/status", &app.token, Some(json!({ "status": "closed" }))).await;
    problem(r, StatusCode::NOT_FOUND).await;
    let r = app
        .command(
            Method::POST,
            &format!("/v1/cases/{}/status", uuid::Uuid::now_v7()),
            &app.token,
            Some(json!({ "status": "closed" })),
        )
        .await;
    problem(r, StatusCode::NOT_FOUND).await;
    // Resolve, close, reopen, close again; a closed case cannot jump to pending: 409 that says why.
    for step in ["resolve", "close", "reopen", "close"] {
        let r = app.command(Method::POST, &format!("/v1/cases/{id}/{step}"), &app.token, Some(json!({}))).await;
        assert_eq!(r.status(), StatusCode::OK, "{step}");
    }
    let r = app
        .command(Method::POST, &format!("/v1/cases/{id}/status"), &app.token, Some(json!({ "status": "pending" })))
        .await;
    let p = problem(r, StatusCode::CONFLICT).await;
    assert!(p["detail"].as_str().unwrap().contains("closed case cannot become pending"), "{p}");

    // An id of another kind of record (a case type id used as a case id) is not a case.
    let type_as_case = format!("/v1/cases/{}", app.case_type_id);
    let r = app
        .command(Method::POST, &format!("{type_as_case}/status"), &app.token, Some(json!({ "status": "closed" })))
        .await;
    problem(r, StatusCode::NOT_FOUND).await;
    let r =
        app.command(Method::POST, &format!("{type_as_case}/tasks"), &app.token, Some(json!({ "title": "t" }))).await;
    problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;

    // A chosen id that another kind of record has is a 409 that says so.
    let admin = app.token_for(app.tenant_id, runtime::auth::Role::Admin);
    let clash = json!({ "id": app.user_id, "name": "Clash" });
    let p = problem(app.command(Method::POST, "/v1/case-types", &admin, Some(clash)).await, StatusCode::CONFLICT).await;
    assert!(p["detail"].as_str().unwrap().contains("already used by a user"), "{p}");

    problem(app.query("/v1/cases?limit=0", &app.token).await, StatusCode::BAD_REQUEST).await;
    problem(app.query("/v1/cases?status=sleeping", &app.token).await, StatusCode::BAD_REQUEST).await;
    problem(app.query("/v1/cases?cursor=%%%", &app.token).await, StatusCode::BAD_REQUEST).await;
    problem(app.query("/v1/cases?position=garbage", &app.token).await, StatusCode::BAD_REQUEST).await;
    problem(app.query("/v1/search/cases?q=", &app.token).await, StatusCode::BAD_REQUEST).await;
    problem(app.query("/v1/nowhere", &app.token).await, StatusCode::NOT_FOUND).await;
}

/// Dates at the ends of their range and the largest offsets answer 400 naming the limit,
/// never a dropped connection (they overflowed date and integer arithmetic).
#[tokio::test(flavor = "multi_thread")]
async fn edge_values_in_queries_are_a_400_not_a_panic() {
    let app = TestApp::spawn().await;
    for path in [
        "/v1/dashboard/daily?to=-262143-01-01",
        "/v1/dashboard/daily?from=%2B262142-12-01&to=%2B262142-12-31",
        "/v1/dashboard/daily?from=1899-12-31&to=1900-01-05",
        "/v1/notifications?offset=9223372036854775807",
        "/v1/notifications?offset=-1",
    ] {
        let answer = app.http.get(format!("{}{path}", app.query_url)).bearer_auth(&app.token).send().await;
        let answer = answer.unwrap_or_else(|e| panic!("GET {path} dropped the connection: {e}"));
        let problem = problem(answer, StatusCode::BAD_REQUEST).await;
        assert!(problem["detail"].as_str().unwrap().contains("between"), "{path}: {problem}");
    }
    let ok = app.query("/v1/dashboard/daily?from=9999-12-01&to=9999-12-31", &app.token).await;
    assert_eq!(ok.status(), StatusCode::OK, "the last days of the range are fine");
    assert_eq!(app.query("/v1/notifications?offset=1000", &app.token).await.status(), StatusCode::OK);
}

/// A control character in a query parameter (found by Schemathesis: a NUL in `tag` made
/// PostgreSQL refuse the query, a 500) is a 400 naming the parameter, on every read.
#[tokio::test(flavor = "multi_thread")]
async fn a_control_character_in_a_query_parameter_is_a_400_naming_it() {
    let app = TestApp::spawn().await;
    for path in ["/v1/cases?tag=-R%00x", "/v1/cases?q=a%1Fb", "/v1/search/cases?q=%00", "/v1/users?cursor=%07"] {
        let answer = app.query(path, &app.token).await;
        let problem = problem(answer, StatusCode::BAD_REQUEST).await;
        assert!(problem["detail"].as_str().unwrap().contains("control characters"), "{path}: {problem}");
    }
    assert_eq!(app.query("/v1/cases?tag=caf%C3%A9", &app.token).await.status(), StatusCode::OK);
}

/// A NUL character anywhere in a body (a name, a document's key, a login's tenant) is a
/// 422 naming the field: PostgreSQL refuses NUL in text, and it used to answer 500.
#[tokio::test(flavor = "multi_thread")]
async fn a_nul_character_in_any_field_is_a_422_naming_it() {
    let app = TestApp::spawn().await;
    let admin = app.token_for(app.tenant_id, runtime::auth::Role::Admin);
    let case = json!({ "title": "Printer\u{0}", "priority": "low", "case_type_id": app.case_type_id });
    let grants = json!({ "permissions": { "cases\u{0}": ["create"] } });
    let attempts = [
        ("/v1/cases", case, "title"),
        ("/v1/teams", json!({ "name": "Desk\u{0}" }), "name"),
        ("/v1/case-types", json!({ "name": "Kind\u{0}", "form_definition": { "fields": [] } }), "name"),
        ("/v1/auth/login", json!({ "tenant": "a\u{0}", "username": "x", "password": "y" }), "tenant"),
    ];
    for (path, body, field) in attempts {
        let answer = app.command(Method::POST, path, &admin, Some(body)).await;
        let problem = problem(answer, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(problem["errors"][0]["field"], field, "{path}: {problem}");
    }
    let answer =
        app.command(Method::PUT, &format!("/v1/users/{}/permissions", app.user_id), &admin, Some(grants)).await;
    let problem = problem(answer, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(problem["errors"][0]["field"].as_str().unwrap().starts_with("permissions.cases"), "{problem}");
}

/// The attack and the accident: a body far over the limit. The server used to answer 413
/// and close while the client was still writing, so the client's write failed (broken
/// pipe) and it never read the answer (the property test died of it on a fresh machine).
/// Now the answer reaches the client, whatever else would refuse the request first: no
/// token, a token of another kind, a body that is not JSON, a route that takes no body.
#[tokio::test(flavor = "multi_thread")]
async fn a_body_far_over_the_limit_gets_a_413_the_client_reads() {
    let app = TestApp::spawn().await;
    let eight_mib = "a".repeat(8 * 1024 * 1024);
    let huge = format!("{{\"title\": \"{eight_mib}\"}}");
    let cases = format!("{}/v1/cases", app.command_url);
    for (what, request) in [
        ("a command", app.http.post(&cases).bearer_auth(&app.token).header("content-type", "application/json")),
        ("no token", app.http.post(&cases).header("content-type", "application/json")),
        ("not JSON", app.http.post(&cases).bearer_auth(&app.token).header("content-type", "text/plain")),
        ("a read", app.http.get(format!("{}/v1/cases", app.query_url)).bearer_auth(&app.token)),
    ] {
        let answer = request.body(huge.clone()).send().await.unwrap_or_else(|e| panic!("{what}: {e:?}"));
        let p = problem(answer, StatusCode::PAYLOAD_TOO_LARGE).await;
        assert!(p["detail"].as_str().unwrap().contains("send a smaller body"), "{what}: {p}");
    }
    // Just over the limit, and the connection is still good for the next command.
    let over = json!({ "title": "x", "case_type_id": app.case_type_id, "description": "é".repeat(33 * 1024) });
    let request = app.http.post(&cases).bearer_auth(&app.token).header("content-type", "application/json");
    problem(request.body(over.to_string()).send().await.unwrap(), StatusCode::PAYLOAD_TOO_LARGE).await;
    let fine = json!({ "title": "fits", "case_type_id": app.case_type_id });
    let answer = app.command(Method::POST, "/v1/cases", &app.token, Some(fine)).await;
    assert_eq!(answer.status(), StatusCode::CREATED);
}

/// A whole number above `i64::MAX` is valid JSON, but MongoDB and Elasticsearch keep
/// signed 64-bit integers: accepted, it would park the case's audit entry.
#[tokio::test(flavor = "multi_thread")]
async fn a_number_no_store_keeps_is_a_422_not_a_parked_stream() {
    let app = TestApp::spawn().await;
    let form = json!({ "fields": [{ "name": "meter", "type": "number" }] });
    let metered = app.create_case_type(app.tenant_id, "Metered", form).await;
    let huge = serde_json::from_str::<Value>("18446744073709551615").unwrap();
    let open = json!({ "title": "Meter overflow", "case_type_id": metered, "custom_fields": { "meter": huge } });
    let p =
        problem(app.command(Method::POST, "/v1/cases", &app.token, Some(open)).await, StatusCode::UNPROCESSABLE_ENTITY)
            .await;
    assert!(p["detail"].as_str().unwrap().contains("18446744073709551615"), "{p}");
    let fine = json!({ "title": "Meter at the top", "case_type_id": metered, "custom_fields": { "meter": i64::MAX } });
    assert_eq!(app.command(Method::POST, "/v1/cases", &app.token, Some(fine)).await.status(), StatusCode::CREATED);
    let nested = json!({ "preferences": { "deep": [{ "n": huge }] } });
    let r = app.command(Method::PUT, &format!("/v1/users/{}/preferences", app.user_id), &app.token, Some(nested)).await;
    problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
}
