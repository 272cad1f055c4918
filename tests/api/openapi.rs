//! Both APIs publish an OpenAPI 3 document built from their routes, and a Swagger UI.
//! Every documented operation is routed (it answers JSON or a problem, never the
//! router's bare 404/405), and every route the README lists is documented.

use murima_tests::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// Calls every documented operation with made-up ids and no body.
async fn every_operation_is_routed(app: &TestApp, base: &str, doc: &Value) -> usize {
    let mut count = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let concrete = path
                .replace("{entity_type}", "case")
                .replace("{user_id}", &uuid::Uuid::now_v7().to_string())
                .replace("{id}", &uuid::Uuid::now_v7().to_string());
            let method: Method = method.to_uppercase().parse().unwrap();
            let r = app
                .http
                .request(method.clone(), format!("{base}{concrete}"))
                .bearer_auth(&app.token)
                .send()
                .await
                .unwrap();
            let kind = r.headers().get("content-type").map(|c| c.to_str().unwrap().to_owned()).unwrap_or_default();
            assert!(
                kind.starts_with("application/json") || kind.starts_with("application/problem+json"),
                "{method} {path} answered {} with {kind:?}: not routed?",
                r.status()
            );
            count += 1;
        }
    }
    count
}

#[tokio::test(flavor = "multi_thread")]
async fn both_apis_document_every_route() {
    let app = TestApp::spawn().await;
    for (base, expected) in [
        (
            app.command_url.clone(),
            vec![
                ("post", "/v1/cases"),
                ("patch", "/v1/cases/{id}"),
                ("post", "/v1/cases/{id}/assignment"),
                ("post", "/v1/tenants"),
                ("post", "/v1/auth/login"),
                ("delete", "/v1/teams/{id}/members/{user_id}"),
                ("post", "/v1/case-types/{id}/deactivate"),
                ("post", "/v1/message-templates/{id}/render"),
            ],
        ),
        (
            app.query_url.clone(),
            vec![
                ("get", "/v1/cases"),
                ("get", "/v1/cases/{id}"),
                ("get", "/v1/my/queue"),
                ("get", "/v1/search/cases"),
                ("get", "/v1/search/suggest"),
                ("get", "/v1/audit/{entity_type}/{id}"),
                ("get", "/v1/dashboard/daily"),
                ("get", "/v1/teams/{id}"),
                ("get", "/v1/message-templates"),
                ("get", "/v1/notifications"),
            ],
        ),
    ] {
        let r = app.http.get(format!("{base}/openapi.json")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let doc: Value = r.json().await.unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        for (method, path) in expected {
            assert!(doc["paths"][path][method].is_object(), "{method} {path} is not documented at {base}");
        }
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
        assert!(doc["components"]["schemas"]["Problem"].is_object());
        let ids: Vec<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values().filter_map(|op| op["operationId"].as_str()))
            .collect();
        let unique: std::collections::HashSet<&&str> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "operation ids repeat at {base}: {ids:?}");
        let routed = every_operation_is_routed(&app, &base, &doc).await;
        assert_eq!(routed, ids.len(), "every operation has an id");
        assert!(routed >= 20, "only {routed} operations at {base}");
        let ui = app.http.get(format!("{base}/docs")).send().await.unwrap();
        assert_eq!(ui.status(), StatusCode::OK);
        assert!(ui.text().await.unwrap().contains("/openapi.json"));
    }
    // Bodies are described by the types the handlers decode.
    let doc: Value =
        app.http.get(format!("{}/openapi.json", app.command_url)).send().await.unwrap().json().await.unwrap();
    let open = &doc["paths"]["/v1/cases"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"];
    let name = open.as_str().unwrap().rsplit('/').next().unwrap().to_owned();
    let schema = &doc["components"]["schemas"][&name];
    for field in ["title", "case_type_id", "priority", "custom_fields"] {
        assert!(schema["properties"][field].is_object(), "{name} lacks {field}: {schema}");
    }
    let priority = &doc["components"]["schemas"]["Priority"]["enum"];
    assert_eq!(priority, &serde_json::json!(["low", "medium", "high", "urgent"]));
}

/// Every `$ref` in `node`, as `#/components/schemas/Name` strings.
fn references(node: &Value, out: &mut Vec<String>) {
    match node {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r.clone());
            }
            map.values().for_each(|v| references(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| references(v, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_reference_in_both_documents_resolves() {
    let app = TestApp::spawn().await;
    for base in [&app.command_url, &app.query_url] {
        let doc: Value = app.http.get(format!("{base}/openapi.json")).send().await.unwrap().json().await.unwrap();
        let mut refs = Vec::new();
        references(&doc, &mut refs);
        assert!(!refs.is_empty(), "{base}: no references at all?");
        let unresolved: Vec<&String> = refs
            .iter()
            .filter(|r| {
                let pointer = r.trim_start_matches('#');
                doc.pointer(pointer).is_none()
            })
            .collect();
        assert!(unresolved.is_empty(), "{base}/openapi.json refers to what it does not define: {unresolved:?}");
    }
}

/// Request bodies of different commands must not share a schema name: utoipa keys its
/// components by the Rust type's name, so seven `CreateBody` structs (teams, users,
/// channels, ...) were one schema in the document, and clients and fuzzers were told the
/// wrong contract for six of them.
#[tokio::test(flavor = "multi_thread")]
async fn every_command_documents_its_own_request_body() {
    let app = TestApp::spawn().await;
    let doc: Value =
        app.http.get(format!("{}/openapi.json", app.command_url)).send().await.unwrap().json().await.unwrap();
    let mut users: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if let Some(r) = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].as_str() {
                users.entry(r.rsplit('/').next().unwrap().to_owned()).or_default().push(format!("{method} {path}"));
            }
        }
    }
    let shared: Vec<_> = users.iter().filter(|(name, ops)| ops.len() > 1 && name.as_str() != "NoBody").collect();
    assert!(shared.is_empty(), "request body schemas shared by different commands: {shared:?}");
    let teams = &doc["components"]["schemas"]["TeamCreateBody"]["properties"];
    assert!(teams["name"].is_object() && teams["username"].is_null(), "{teams}");
}

/// Every text a command takes says its limit in the document (`maxLength`, lists
/// `maxItems`): the input contract as clients and fuzzers see it. Enumerations, ids and
/// times are bounded by their format; JSON documents by their size, said in the detail of
/// their 422.
#[tokio::test(flavor = "multi_thread")]
async fn every_text_a_command_takes_declares_its_limit() {
    let app = TestApp::spawn().await;
    let doc: Value =
        app.http.get(format!("{}/openapi.json", app.command_url)).send().await.unwrap().json().await.unwrap();
    let is_text = |node: &Value| {
        let types: Vec<&str> = match &node["type"] {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        types.contains(&"string") && node["format"].is_null() && node["enum"].is_null()
    };
    let mut unbounded = Vec::new();
    let mut bodies = std::collections::BTreeSet::new();
    for item in doc["paths"].as_object().unwrap().values() {
        for operation in item.as_object().unwrap().values() {
            if let Some(r) = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].as_str() {
                bodies.insert(r.rsplit('/').next().unwrap().to_owned());
            }
        }
    }
    bodies.insert("AttachmentBody".into()); // inside AddBody
    for body in &bodies {
        let Some(properties) = doc["components"]["schemas"][body]["properties"].as_object() else { continue };
        for (name, property) in properties {
            if is_text(property) && property["maxLength"].is_null() {
                unbounded.push(format!("{body}.{name}"));
            }
            if property["items"].is_object() && is_text(&property["items"]) {
                if property["maxItems"].is_null() || property["items"]["maxLength"].is_null() {
                    unbounded.push(format!("{body}.{name}[]"));
                }
            }
        }
    }
    assert!(unbounded.is_empty(), "texts without a declared limit: {unbounded:?}");
    let title = &doc["components"]["schemas"]["OpenCaseBody"]["properties"]["title"];
    assert_eq!(title["maxLength"], 255, "{title}");
}
