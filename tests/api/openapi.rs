//! Both APIs and the projector's admin API publish an OpenAPI 3 document built from
//! their routes, and a Swagger UI page served with its files from the binary. Every
//! documented operation is routed (it answers JSON or a problem, never the router's bare
//! 404/405), and every route the README lists is documented.

use murima_tests::{eventually, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// Calls every documented operation with made-up ids and no body.
async fn every_operation_is_routed(app: &TestApp, base: &str, doc: &Value) -> usize {
    let mut count = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let concrete = path
                .replace("{entity_type}", "case")
                .replace("{name}", "postgres")
                .replace("{stream}", &uuid::Uuid::now_v7().to_string())
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
async fn every_reference_in_every_document_resolves() {
    let app = TestApp::spawn().await;
    for base in [&app.command_url, &app.query_url, &app.projector_url] {
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

    // And every schema a body refers to (a custom field's options, say), at any depth.
    let mut pending: Vec<String> = bodies.iter().cloned().collect();
    while let Some(name) = pending.pop() {
        let mut refs = Vec::new();
        references(&doc["components"]["schemas"][&name], &mut refs);
        for r in refs {
            let inner = r.rsplit('/').next().unwrap().to_owned();
            if bodies.insert(inner.clone()) {
                pending.push(inner);
            }
        }
    }
    for body in &bodies {
        let Some(properties) = doc["components"]["schemas"][body]["properties"].as_object() else { continue };
        for (name, property) in properties {
            if is_text(property) && property["maxLength"].is_null() {
                unbounded.push(format!("{body}.{name}"));
            }
            if property["items"].is_object()
                && is_text(&property["items"])
                && (property["maxItems"].is_null() || property["items"]["maxLength"].is_null())
            {
                unbounded.push(format!("{body}.{name}[]"));
            }
        }
    }
    assert!(unbounded.is_empty(), "texts without a declared limit: {unbounded:?}");
    let title = &doc["components"]["schemas"]["OpenCaseBody"]["properties"]["title"];
    assert_eq!(title["maxLength"], 255, "{title}");
    assert!(bodies.contains("FieldOption") && bodies.contains("VisibilityRules"), "{bodies:?}");
}

/// A custom field's definition is documented field by field (it was a bare `object`,
/// its spec flattened out of sight), and so is its update.
#[tokio::test(flavor = "multi_thread")]
async fn a_custom_field_definition_documents_its_fields() {
    let app = TestApp::spawn().await;
    let doc: Value =
        app.http.get(format!("{}/openapi.json", app.command_url)).send().await.unwrap().json().await.unwrap();
    let schemas = &doc["components"]["schemas"];
    for (method, path, fields) in [
        ("post", "/v1/custom-fields", &["entity_type", "field_name", "display_name", "field_type", "options"][..]),
        ("put", "/v1/custom-fields/{id}", &["display_name", "field_type", "options", "visibility_rules"][..]),
    ] {
        let body = &doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]["$ref"];
        let name = body.as_str().unwrap().rsplit('/').next().unwrap();
        let schema = &schemas[name];
        assert_eq!(schema["type"], "object", "{name}: {schema}");
        for field in fields {
            assert!(schema["properties"][field].is_object(), "{name} lacks {field}: {schema}");
        }
        assert!(schema["required"].as_array().unwrap().contains(&"display_name".into()), "{schema}");
    }
    assert_eq!(schemas["CustomFieldDefineBody"]["properties"]["field_name"]["maxLength"], 64);
    assert_eq!(schemas["FieldOption"]["properties"]["label"]["maxLength"], 255);
    let types = &schemas["FieldType"]["enum"];
    assert_eq!(types, &serde_json::json!(["text", "number", "date", "boolean", "select", "multiselect"]));
}

/// The projector's admin API has its own document: OpenAPI 3, bearer authentication,
/// and exactly the routes it serves (each answers a problem to a tenant agent's token,
/// which these platform operators' endpoints refuse), with the shapes they answer.
#[tokio::test(flavor = "multi_thread")]
async fn the_projector_documents_its_admin_api() {
    let app = TestApp::spawn().await;
    let base = &app.projector_url;
    let r = app.http.get(format!("{base}/openapi.json")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let doc: Value = r.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert_eq!(doc["security"][0]["bearer"], serde_json::json!([]));
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    let served = [
        ("get", "/v1/admin/projections"),
        ("post", "/v1/admin/projections/{name}/replay"),
        ("post", "/v1/admin/projections/{name}/rebuild"),
        ("delete", "/v1/admin/projections/{name}/rebuild"),
        ("get", "/v1/admin/rebuilds"),
        ("get", "/v1/admin/parked"),
        ("post", "/v1/admin/parked/{name}/{stream}/retry"),
        ("post", "/v1/admin/parked/{name}/{stream}/skip"),
        ("post", "/v1/admin/republish"),
        ("post", "/v1/admin/elasticsearch/migrate"),
        ("post", "/v1/admin/verify"),
    ];
    let documented: std::collections::BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| item.as_object().unwrap().keys().map(move |m| (m.clone(), path.clone())))
        .collect();
    let expected: std::collections::BTreeSet<(String, String)> =
        served.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    assert_eq!(documented, expected);
    for (method, path) in served {
        let operation = &doc["paths"][path][method];
        assert!(operation["operationId"].as_str().unwrap().starts_with("admin_"), "{method} {path}");
        let success = ["200", "202"].iter().find_map(|s| operation["responses"][*s].as_object()).unwrap();
        assert!(success["content"]["application/json"]["schema"]["$ref"].is_string(), "{method} {path}: {success:?}");
        assert!(operation["responses"]["403"].is_object(), "{method} {path}");
    }
    // Every one of them is routed: a tenant's agent is refused, with a problem.
    for (method, path) in served {
        let concrete = path.replace("{name}", "postgres").replace("{stream}", &uuid::Uuid::now_v7().to_string());
        let mut request = app
            .http
            .request(method.to_uppercase().parse().unwrap(), format!("{base}{concrete}"))
            .bearer_auth(&app.token);
        if method == "post" {
            request = request.json(&serde_json::json!({}));
        }
        let r = request.send().await.unwrap();
        // Refused (403), or its empty body found wanting first (422): routed either way.
        let status = r.status();
        assert!(
            matches!(status, StatusCode::FORBIDDEN | StatusCode::UNPROCESSABLE_ENTITY),
            "{method} {path}: {status}"
        );
        let kind = r.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(kind.starts_with("application/problem+json"), "{method} {path}: {kind}");
    }
    // The answers have the documented shape.
    for (path, schema) in
        [("/v1/admin/projections", "Statuses"), ("/v1/admin/rebuilds", "Rebuilds"), ("/v1/admin/parked", "ParkedPage")]
    {
        let answer: Value = app.admin(Method::GET, path, None).await.json().await.unwrap();
        let schema = &doc["components"]["schemas"][schema];
        let properties = schema["properties"].as_object().unwrap();
        for key in answer.as_object().unwrap().keys() {
            assert!(properties.contains_key(key), "{path} answers {key}, which {schema} does not document");
        }
        for key in schema["required"].as_array().unwrap() {
            assert!(answer.get(key.as_str().unwrap()).is_some(), "{path} lacks {key}: {answer}");
        }
    }
    let status: Value = app.admin(Method::GET, "/v1/admin/projections", None).await.json().await.unwrap();
    let documented = doc["components"]["schemas"]["ProjectionStatus"]["properties"].as_object().unwrap();
    for key in status["projections"][0].as_object().unwrap().keys() {
        assert!(documented.contains_key(key), "a projection's status has {key}, which ProjectionStatus lacks");
    }
}

/// The `src` and `href` attributes of an HTML page.
fn links(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attribute in [" src=\"", " href=\""] {
        for (at, _) in html.match_indices(attribute) {
            let rest = &html[at + attribute.len()..];
            out.push(rest[..rest.find('"').unwrap()].to_owned());
        }
    }
    out
}

/// `/docs` on every service loads only its own host's files (Swagger UI, embedded in the
/// binary): no other host's script runs on a page where tokens are pasted, and the page
/// works offline. Its policy forbids any other script, inline ones included.
#[tokio::test(flavor = "multi_thread")]
async fn docs_pages_load_nothing_from_another_host() {
    let app = TestApp::spawn().await;
    for base in [&app.command_url, &app.query_url, &app.projector_url] {
        let r = app.http.get(format!("{base}/docs")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{base}/docs");
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        let policy = r.headers()["content-security-policy"].to_str().unwrap().to_owned();
        assert!(policy.contains("script-src 'self';") && policy.contains("default-src 'none'"), "{policy}");
        assert!(!policy.contains("http") && !policy.contains("unsafe-eval"), "{policy}");
        let html = r.text().await.unwrap();
        assert!(!html.contains("http://") && !html.contains("https://"), "{base}/docs names another host:\n{html}");
        assert!(!html.contains("<script>"), "{base}/docs has an inline script (the policy would refuse it)");
        assert!(html.contains("data-url=\"/openapi.json\""), "{html}");
        let links = links(&html);
        assert!(links.len() >= 3, "{links:?}");
        for link in &links {
            assert!(link.starts_with('/') && !link.starts_with("//"), "{base}/docs loads {link} from elsewhere");
            let r = app.http.get(format!("{base}{link}")).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{base}{link}");
            let kind = r.headers()["content-type"].to_str().unwrap().to_owned();
            let expected = if link.ends_with(".css") { "text/css" } else { "text/javascript" };
            assert!(kind.starts_with(expected), "{base}{link} is {kind}");
            let text = r.text().await.unwrap();
            if link.ends_with(".css") {
                assert!(!text.contains("url(http") && !text.contains("@import"), "{link} loads from elsewhere");
            }
            if link == "/docs/swagger-initializer.js" {
                assert!(!text.contains("://") && text.contains("validatorUrl: null"), "{text}");
            }
        }
        // The bundled crate's own example page is not served.
        for page in ["/docs/assets", "/docs/assets/", "/docs/assets/oauth2-redirect.html"] {
            let r = app.http.get(format!("{base}{page}")).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{base}{page}");
        }
    }
}

/// The fields a schema documents (following `$ref` and `allOf`), and those it requires.
fn documented_fields(doc: &Value, schema: &Value) -> (Vec<String>, Vec<String>) {
    let schema = match schema["$ref"].as_str() {
        Some(r) => doc.pointer(r.trim_start_matches('#')).unwrap_or_else(|| panic!("{r} is not defined")),
        None => schema,
    };
    let (mut fields, mut required) = (Vec::new(), Vec::new());
    for part in schema["allOf"].as_array().into_iter().flatten() {
        let (f, r) = documented_fields(doc, part);
        fields.extend(f);
        required.extend(r);
    }
    fields.extend(schema["properties"].as_object().into_iter().flatten().map(|(name, _)| name.clone()));
    required.extend(schema["required"].as_array().into_iter().flatten().filter_map(|n| n.as_str().map(str::to_owned)));
    (fields, required)
}

/// An answer holds every field its schema requires and none it does not document.
fn assert_answers_as_documented(doc: &Value, schema: &Value, answer: &Value, what: &str) {
    let (fields, required) = documented_fields(doc, schema);
    let answered: Vec<&String> = answer.as_object().unwrap_or_else(|| panic!("{what}: not an object")).keys().collect();
    let undocumented: Vec<&&String> = answered.iter().filter(|k| !fields.contains(k)).collect();
    assert!(undocumented.is_empty(), "{what} answers fields its schema does not document: {undocumented:?}");
    let missing: Vec<&String> = required.iter().filter(|f| !answered.contains(f)).collect();
    assert!(missing.is_empty(), "{what} lacks fields its schema requires: {missing:?}");
}

/// The case reads document their own answers (not a bare object): the list and the
/// queue a page of cases, the detail the case with its related items, each field named.
#[tokio::test(flavor = "multi_thread")]
async fn every_case_read_answers_as_documented() {
    let app = TestApp::spawn().await;
    let case = app.open_case("Documented").await["id"].as_str().unwrap().to_owned();
    let r = app
        .command(
            Method::POST,
            &format!("/v1/cases/{case}/assignment"),
            &app.token,
            Some(serde_json::json!({ "assigned_to": app.user_id })),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let position = r.json::<Value>().await.unwrap()["position"].as_str().unwrap().to_owned();
    let doc: Value =
        app.http.get(format!("{}/openapi.json", app.query_url)).send().await.unwrap().json().await.unwrap();
    let answer =
        |path: &str| doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"].clone();

    let detail: Value =
        app.query(&format!("/v1/cases/{case}?position={position}"), &app.token).await.json().await.unwrap();
    assert_answers_as_documented(&doc, &answer("/v1/cases/{id}"), &detail, "GET /v1/cases/{id}");
    for (path, url) in [
        ("/v1/cases", format!("/v1/cases?position={position}")),
        ("/v1/my/queue", format!("/v1/my/queue?position={position}")),
    ] {
        let page: Value = app.query(&url, &app.token).await.json().await.unwrap();
        let schema = answer(path);
        assert_answers_as_documented(&doc, &schema, &page, &format!("GET {path}"));
        let page_schema = match schema["$ref"].as_str() {
            Some(r) => doc.pointer(r.trim_start_matches('#')).unwrap().clone(),
            None => schema,
        };
        let item = &page["items"][0];
        assert_eq!(item["id"], case.as_str(), "GET {path}: {page}");
        assert_answers_as_documented(
            &doc,
            &page_schema["properties"]["items"]["items"],
            item,
            &format!("an item of GET {path}"),
        );
    }

    // Its audit trail, and the searches, once the search projection has it.
    let admin = app.token_for(app.tenant_id, runtime::auth::Role::Admin);
    for (path, url) in [
        ("/v1/cases/{id}/audit", format!("/v1/cases/{case}/audit?position={position}")),
        ("/v1/audit/{entity_type}/{id}", format!("/v1/audit/case/{case}?position={position}")),
        ("/v1/search/cases", "/v1/search/cases?q=Documented".to_owned()),
        ("/v1/search/audit", format!("/v1/search/audit?entity_id={case}")),
        ("/v1/search/suggest", "/v1/search/suggest?prefix=Docu".to_owned()),
        ("/v1/search/interactions", "/v1/search/interactions?q=anything".to_owned()),
        ("/v1/search/notes", "/v1/search/notes?q=anything".to_owned()),
    ] {
        let wants_items = !path.ends_with("interactions") && !path.ends_with("notes");
        let got: Value = eventually(&format!("GET {path}"), || async {
            let r = app.query(&url, &admin).await;
            let got: Value = r.status().is_success().then_some(r)?.json().await.ok()?;
            (!wants_items || got["items"].as_array().is_some_and(|i| !i.is_empty())).then_some(got)
        })
        .await;
        let schema = answer(path);
        assert_answers_as_documented(&doc, &schema, &got, &format!("GET {path}"));
        let page_schema = match schema["$ref"].as_str() {
            Some(r) => doc.pointer(r.trim_start_matches('#')).unwrap().clone(),
            None => schema,
        };
        let items = &page_schema["properties"]["items"]["items"];
        if let (Some(first), Some(_)) = (got["items"].as_array().and_then(|i| i.first()), items["$ref"].as_str()) {
            assert_answers_as_documented(&doc, items, first, &format!("an item of GET {path}"));
        }
    }
}

/// The counters and the dashboard document their own answers, each field named.
#[tokio::test(flavor = "multi_thread")]
async fn the_counters_and_the_dashboard_answer_as_documented() {
    let app = TestApp::spawn().await;
    let position = app.open_case("Counted").await["position"].as_str().unwrap().to_owned();
    let doc: Value =
        app.http.get(format!("{}/openapi.json", app.query_url)).send().await.unwrap().json().await.unwrap();
    let resolved = |schema: &Value| match schema["$ref"].as_str() {
        Some(r) => doc.pointer(r.trim_start_matches('#')).unwrap().clone(),
        None => schema.clone(),
    };
    for (path, url) in [
        ("/v1/counters", format!("/v1/counters?position={position}")),
        ("/v1/dashboard/statistics", "/v1/dashboard/statistics".to_owned()),
        ("/v1/dashboard/daily", format!("/v1/dashboard/daily?position={position}")),
    ] {
        let r = app.query(&url, &app.token).await;
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
        let answer: Value = r.json().await.unwrap();
        let schema = resolved(&doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]);
        assert_answers_as_documented(&doc, &schema, &answer, &format!("GET {path}"));
        if let Some(item) = answer["items"].as_array().and_then(|items| items.first()) {
            let item_schema = &schema["properties"]["items"]["items"];
            assert_answers_as_documented(&doc, item_schema, item, &format!("an item of GET {path}"));
        }
    }
}

/// The reads of the tenant's configuration and people (and of tenants) document their
/// own answers: each list a page of its kind, each single read one of them.
#[tokio::test(flavor = "multi_thread")]
async fn every_entity_read_answers_as_documented() {
    let app = TestApp::spawn().await;
    let admin = app.token_for(app.tenant_id, runtime::auth::Role::Admin);
    let stage = uuid::Uuid::now_v7();
    let made = [
        ("/v1/teams", serde_json::json!({ "name": "Documented" })),
        (
            "/v1/workflows",
            serde_json::json!({ "name": "Documented", "definition": {
                "stages": [{ "id": stage, "name": "New" }], "initial_stage": stage, "transitions": [] } }),
        ),
        (
            "/v1/channels",
            serde_json::json!({ "name": "Documented", "type": "email", "configuration": { "from": "a@example.com" } }),
        ),
        (
            "/v1/custom-fields",
            serde_json::json!({ "entity_type": "case", "field_name": "documented", "display_name": "Documented", "field_type": "text" }),
        ),
        (
            "/v1/message-templates",
            serde_json::json!({ "name": "Documented", "channel_type": "email", "subject": "Case {{case_number}}", "content": "Hello" }),
        ),
    ];
    for (path, body) in &made {
        let r = app.command(Method::POST, path, &admin, Some(body.clone())).await;
        assert_eq!(r.status(), StatusCode::CREATED, "{path}: {}", r.text().await.unwrap());
    }
    // A webhook nobody answers: its delivery of the case opened next is pending, retried.
    let hook = serde_json::json!({ "url": "http://127.0.0.1:9/hook", "event_types": ["CaseOpened"], "secret": "documented-secret-0123456789" });
    let r = app.command(Method::POST, "/v1/webhooks", &admin, Some(hook)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let webhook = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    app.open_case("Delivered").await;
    let deliveries = format!("/v1/webhooks/{webhook}/deliveries");
    let team = app.http.get(format!("{}/v1/teams?limit=1", app.query_url)).bearer_auth(&admin);
    let team: Value = eventually("the team", || async {
        let page: Value = team.try_clone().unwrap().send().await.ok()?.json().await.ok()?;
        page["items"].as_array()?.first().cloned()
    })
    .await;
    let r = app
        .command(
            Method::POST,
            &format!("/v1/teams/{}/members", team["id"].as_str().unwrap()),
            &admin,
            Some(serde_json::json!({ "user_id": app.user_id })),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);

    let doc: Value =
        app.http.get(format!("{}/openapi.json", app.query_url)).send().await.unwrap().json().await.unwrap();
    let resolved = |schema: &Value| match schema["$ref"].as_str() {
        Some(r) => doc.pointer(r.trim_start_matches('#')).unwrap().clone(),
        None => schema.clone(),
    };
    let answer =
        |path: &str| resolved(&doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]);
    let tenant = format!("/v1/tenants/{}", app.tenant_id);
    for (list, token) in [
        ("/v1/users", &admin),
        ("/v1/teams", &admin),
        ("/v1/case-types", &admin),
        ("/v1/workflows", &admin),
        ("/v1/channels", &admin),
        ("/v1/channels", &app.token),
        ("/v1/custom-fields", &admin),
        ("/v1/message-templates", &admin),
        ("/v1/tenants", &app.platform_token()),
        ("/v1/webhooks", &admin),
        (deliveries.as_str(), &admin),
    ] {
        // Each made thing in its list (the team with its member), then read alone.
        let item: Value = eventually(&format!("an item of {list}"), || async {
            let page: Value = app.query(&format!("{list}?limit=1"), token).await.json().await.ok()?;
            let item = page["items"].as_array()?.first()?.clone();
            (list != "/v1/teams" || item["members"].as_array().is_some_and(|m| !m.is_empty())).then_some(item)
        })
        .await;
        let documented = if list == deliveries { "/v1/webhooks/{id}/deliveries" } else { list };
        let schema = answer(documented);
        let what = format!("an item of GET {documented}");
        assert_answers_as_documented(&doc, &schema["properties"]["items"]["items"], &item, &what);
        if list == deliveries {
            continue;
        }
        let id = item["id"].as_str().unwrap();
        let single = if list == "/v1/tenants" { tenant.clone() } else { format!("{list}/{id}") };
        let one: Value = app.query(&single, token).await.json().await.unwrap();
        let item_path = if list == "/v1/tenants" { "/v1/tenants/{id}".to_owned() } else { format!("{list}/{{id}}") };
        assert_answers_as_documented(&doc, &answer(&item_path), &one, &format!("GET {item_path}"));
    }
}

/// Presence and notifications document their own answers.
#[tokio::test(flavor = "multi_thread")]
async fn presence_and_notifications_answer_as_documented() {
    let app = TestApp::spawn().await;
    let opened = app.open_case("Watched").await;
    let (case, position) = (opened["id"].as_str().unwrap(), opened["position"].as_str().unwrap());
    let read = app.query(&format!("/v1/cases/{case}?position={position}"), &app.token).await;
    assert_eq!(read.status(), StatusCode::OK);
    let doc: Value =
        app.http.get(format!("{}/openapi.json", app.query_url)).send().await.unwrap().json().await.unwrap();
    let beat = app
        .http
        .post(format!("{}/v1/presence/heartbeat", app.query_url))
        .bearer_auth(&app.token)
        .json(&serde_json::json!({ "case_id": case }))
        .send()
        .await
        .unwrap();
    assert_eq!(beat.status(), StatusCode::OK);
    let beat: Value = beat.json().await.unwrap();
    let schema =
        &doc["paths"]["/v1/presence/heartbeat"]["post"]["responses"]["200"]["content"]["application/json"]["schema"];
    assert_answers_as_documented(&doc, schema, &beat, "POST /v1/presence/heartbeat");
    for (path, url) in [
        ("/v1/cases/{id}/viewers", format!("/v1/cases/{case}/viewers")),
        ("/v1/presence/online", "/v1/presence/online".to_owned()),
        ("/v1/notifications", "/v1/notifications".to_owned()),
        ("/v1/notifications/unread", "/v1/notifications/unread".to_owned()),
    ] {
        let r = app.query(&url, &app.token).await;
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
        let answer: Value = r.json().await.unwrap();
        let schema = &doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"];
        assert_answers_as_documented(&doc, schema, &answer, &format!("GET {path}"));
        for (list, item) in [("last_seen", "Viewer"), ("users", "Active")] {
            if let Some(first) = answer[list].as_array().and_then(|l| l.first()) {
                let item_schema = serde_json::json!({ "$ref": format!("#/components/schemas/{item}") });
                assert_answers_as_documented(&doc, &item_schema, first, &format!("a {item} of GET {path}"));
            }
        }
    }
}

/// Every paged list answers a `Link` header to its next page; the document says so on
/// each of them (a page is a 200 whose body has a `next_cursor`).
#[tokio::test(flavor = "multi_thread")]
async fn every_paged_list_documents_its_link_header() {
    let app = TestApp::spawn().await;
    let doc: Value =
        app.http.get(format!("{}/openapi.json", app.query_url)).send().await.unwrap().json().await.unwrap();
    let (mut pages, mut undeclared) = (0, Vec::new());
    for (path, item) in doc["paths"].as_object().unwrap() {
        let ok = &item["get"]["responses"]["200"];
        let schema = &ok["content"]["application/json"]["schema"];
        if schema.is_null() || !documented_fields(&doc, schema).0.contains(&"next_cursor".to_owned()) {
            continue;
        }
        pages += 1;
        if ok["headers"]["Link"].is_null() {
            undeclared.push(path.clone());
        }
    }
    assert!(pages >= 10, "only {pages} paged lists found: is the page schema still named as it was?");
    assert!(undeclared.is_empty(), "paged lists that do not document their Link header: {undeclared:?}");
}

/// A data subject's export documents its answer, a user's or a customer's (it was the
/// last read documented as a bare object).
#[tokio::test(flavor = "multi_thread")]
async fn a_data_subject_export_answers_as_documented() {
    let app = TestApp::spawn().await;
    let admin = app.token_for(app.tenant_id, runtime::auth::Role::Admin);
    let user = app.create_user("exported.user", "agent").await;
    let customer = uuid::Uuid::now_v7();
    let open = serde_json::json!({ "title": "Exported", "case_type_id": app.case_type_id, "customer_id": customer });
    assert_eq!(app.command(Method::POST, "/v1/cases", &app.token, Some(open)).await.status(), StatusCode::CREATED);
    let doc: Value =
        app.http.get(format!("{}/openapi.json", app.query_url)).send().await.unwrap().json().await.unwrap();
    let schema = &doc["paths"]["/v1/data-subjects/{id}/export"]["get"]["responses"]["200"]["content"]
        ["application/json"]["schema"];
    let export = doc.pointer(schema["$ref"].as_str().expect("a named schema").trim_start_matches('#')).unwrap();
    let kinds = export["oneOf"].as_array().expect("a user's export or a customer's");
    for (subject, kind) in [(user, "user"), (customer, "customer")] {
        let answer = eventually(&format!("the {kind}'s export"), || async {
            let r = app.query(&format!("/v1/data-subjects/{subject}/export"), &admin).await;
            if r.status() == StatusCode::OK {
                r.json::<Value>().await.ok()
            } else {
                None
            }
        })
        .await;
        assert_eq!(answer["kind"], kind, "{answer}");
        let documented = kinds.iter().filter(|k| {
            let (fields, required) = documented_fields(&doc, k);
            let keys: Vec<&String> = answer.as_object().unwrap().keys().collect();
            required.iter().all(|f| keys.contains(&f)) && keys.iter().all(|k| fields.contains(k))
        });
        assert_eq!(documented.count(), 1, "the {kind}'s export answers as exactly one documented kind: {answer}");
        for list in ["cases", "audit_about", "notes"] {
            assert_answers_as_documented(&doc, &doc["components"]["schemas"]["ExportedList"], &answer[list], list);
        }
    }
}

/// Ending a user's sessions documents its answer (it was the last route of either API
/// documented as a bare object).
#[tokio::test(flavor = "multi_thread")]
async fn ending_a_users_sessions_answers_as_documented() {
    let app = TestApp::spawn().await;
    let admin = app.token_for(app.tenant_id, runtime::auth::Role::Admin);
    let user = app.create_user("sessions.ended", "agent").await;
    let doc: Value =
        app.http.get(format!("{}/openapi.json", app.command_url)).send().await.unwrap().json().await.unwrap();
    let schema =
        &doc["paths"]["/v1/users/{id}/sessions"]["delete"]["responses"]["200"]["content"]["application/json"]["schema"];
    let answer = eventually("the user to be known to the command API", || async {
        let r = app.command(Method::DELETE, &format!("/v1/users/{user}/sessions"), &admin, None).await;
        if r.status() == StatusCode::OK {
            r.json::<Value>().await.ok()
        } else {
            None
        }
    })
    .await;
    assert_answers_as_documented(&doc, schema, &answer, "DELETE /v1/users/{id}/sessions");
}
