//! What the services' OpenAPI documents share (the two APIs' and the projector's admin
//! API's): the problem shape (RFC 9457), bearer authentication, and the routes serving
//! `/openapi.json` and a Swagger UI page (its files embedded in the binary: the page
//! loads nothing from another host).
//!
//! The documents are built by `utoipa-axum` from the same calls that register the routes
//! (`OpenApiRouter::routes(routes!(handler))`), so a route cannot exist undocumented.

use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi;
use utoipa::{Modify, ToSchema};

/// An error answer (`application/problem+json`, RFC 9457).
#[derive(ToSchema)]
#[allow(dead_code)] // a schema only: `ApiError` writes these
pub struct Problem {
    /// A URI naming the kind of problem.
    #[schema(rename = "type", example = "https://murima.dev/problems/validation")]
    kind: String,
    #[schema(example = "Unprocessable request")]
    title: String,
    #[schema(example = 422)]
    status: u16,
    /// What to fix, in words.
    #[schema(example = "case_type_id: no such case type in this tenant")]
    detail: String,
    /// Every invalid field, for validation problems.
    errors: Option<Vec<FieldProblem>>,
}

/// One invalid field of a request.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct FieldProblem {
    #[schema(example = "title")]
    field: String,
    #[schema(example = "must not be empty")]
    message: String,
}

/// Declares the bearer token every endpoint expects.
pub struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
        openapi.security =
            Some(vec![utoipa::openapi::security::SecurityRequirement::new("bearer", Vec::<String>::new())]);
    }
}

/// Swagger UI's files, from the `swagger-ui-dist` crate: embedded in the binary, at the
/// version pinned in Cargo.toml (the crate's version is Swagger UI's). Served under
/// `/docs/assets/`, so the page loads nothing from another host: it works offline, and
/// no third party's script runs where operators paste their tokens.
const ASSETS: &str = "/docs/assets";

/// The files of the crate this page uses (it also serves an example page of its own,
/// which is not ours to serve).
const ASSET_FILES: [&str; 4] =
    ["swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui.css.map", "swagger-ui-bundle.js.map"];

/// The documentation page: no inline script, so the policy below can forbid every
/// script but this host's files.
const DOCS_PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>TITLE</title>
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui" data-url="/openapi.json"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script src="/docs/swagger-initializer.js"></script>
</body>
</html>
"##;

/// Starts Swagger UI on the page's document. `validatorUrl: null`: Swagger UI would
/// otherwise send the document's address to validator.swagger.io for a badge.
const INITIALIZER: &str = r#""use strict";
(function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({ url: root.dataset.url, domNode: root, validatorUrl: null });
})();
"#;

/// What the documentation pages may load: this host's scripts, styles, images and
/// document, nothing else. Swagger UI sets inline styles, and draws icons from `data:`
/// URLs (and responses' images from `blob:` ones).
const DOCS_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                           img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; \
                           base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// `GET /openapi.json` (the document) and `GET /docs` (Swagger UI reading it, with its
/// files under `/docs/assets/`).
pub fn docs_router<S: Clone + Send + Sync + 'static>(api: &OpenApi) -> Router<S> {
    let json = api.to_pretty_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    let page = DOCS_PAGE.replace("TITLE", &html_escape(&api.info.title));
    let assets = swagger_ui_dist::generate_routes(swagger_ui_dist::ApiDefinition {
        uri_prefix: ASSETS,
        api_definition: swagger_ui_dist::OpenApiSource::Uri("/openapi.json"),
        title: None,
    })
    .route_layer(axum::middleware::from_fn(only_asset_files))
    .with_state(());
    let docs = Router::new()
        .route("/docs", get(move || async move { Html(page) }))
        .route(
            "/docs/swagger-initializer.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], INITIALIZER) }),
        )
        .merge(assets)
        .layer(axum::middleware::map_response(|mut response: axum::response::Response| async move {
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_SECURITY_POLICY, axum::http::HeaderValue::from_static(DOCS_POLICY));
            headers.insert(header::X_CONTENT_TYPE_OPTIONS, axum::http::HeaderValue::from_static("nosniff"));
            headers.insert(header::REFERRER_POLICY, axum::http::HeaderValue::from_static("no-referrer"));
            response
        }));
    Router::new()
        .route(
            "/openapi.json",
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], json).into_response() }),
        )
        .merge(docs)
}

/// Lets through the asset files the page uses; the crate's other routes answer 404.
async fn only_asset_files(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let file = request.uri().path().strip_prefix(ASSETS).and_then(|rest| rest.strip_prefix('/'));
    if file.is_some_and(|f| ASSET_FILES.contains(&f)) {
        next.run(request).await
    } else {
        crate::ApiError::NotFound("no such endpoint".into()).into_response()
    }
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// How one property of a request body is bounded by the input contract
/// (`events::contract`), for the document to say so.
#[derive(Debug, Clone, Copy)]
pub enum Limit {
    /// A text: `maxLength` (characters).
    Text(events::contract::Text),
    /// A text of at most this many characters (usernames, slugs, passwords).
    Chars(usize),
    /// A list of texts: `maxItems`, and each item's `maxLength`.
    List { max_items: usize, each: events::contract::Text },
}

/// (schema, property, limit): one bounded property of a request body.
pub type FieldLimit = (&'static str, &'static str, Limit);

/// The document with the input contract's limits declared in its schemas, so clients
/// and fuzzers see what the API enforces. A name in `limits` that the document lacks is
/// an error (the table and the routes must not drift).
pub fn with_limits(api: OpenApi, limits: &[FieldLimit]) -> anyhow::Result<OpenApi> {
    let mut doc = serde_json::to_value(&api)?;
    for (schema, property, limit) in limits {
        let at = format!("/components/schemas/{schema}/properties/{property}");
        let node = doc.pointer_mut(&at).ok_or_else(|| anyhow::anyhow!("the document has no {schema}.{property}"))?;
        let node = node.as_object_mut().ok_or_else(|| anyhow::anyhow!("{schema}.{property} is not a schema"))?;
        match limit {
            Limit::Text(text) => {
                node.insert("maxLength".into(), text.max_chars.into());
            }
            Limit::Chars(max) => {
                node.insert("maxLength".into(), (*max).into());
            }
            Limit::List { max_items, each } => {
                node.insert("maxItems".into(), (*max_items).into());
                if let Some(items) = node.get_mut("items").and_then(serde_json::Value::as_object_mut) {
                    items.insert("maxLength".into(), each.max_chars.into());
                }
            }
        }
    }
    Ok(serde_json::from_value(doc)?)
}

fn problem_responses() -> Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::response::Response>)> {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let problem = || ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build();
    [
        ("400", "Malformed request: the detail names what to fix"),
        ("401", "Missing or invalid bearer token"),
        ("403", "The caller lacks the permission named in the detail"),
        ("404", "No such resource in the caller's tenant"),
        ("409", "Conflict: a stale If-Match version or a name already taken"),
        ("413", "Request body too large"),
        ("415", "The body is not application/json"),
        ("422", "Invalid request: every bad field is listed in errors"),
        ("429", "Over a request budget, or a login locked out for a while: Retry-After says when to come back"),
        ("503", "A store is unreachable, or a read could not reach the position token in time"),
    ]
    .into_iter()
    .map(|(status, description)| {
        (
            status.to_owned(),
            ResponseBuilder::new()
                .description(description)
                .content("application/problem+json", problem())
                .build()
                .into(),
        )
    })
    .collect()
}

/// Every problem an endpoint may answer, for endpoints that document their success
/// answers themselves: `responses((status = 200, body = Answer), runtime::openapi::Problems)`.
pub struct Problems;

impl utoipa::IntoResponses for Problems {
    fn responses() -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::response::Response>> {
        problem_responses().into_iter().collect()
    }
}

/// The answers of every command: its stream id, new version (also the `ETag`) and a
/// position token for read-your-writes; or a problem.
pub struct CommandAnswered;

/// A command's answer body.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CommandAnswer {
    /// The stream the command wrote (a new id for creations).
    id: uuid::Uuid,
    /// The stream's version after the command.
    #[schema(example = 2)]
    version: i64,
    /// Pass it as `position` (or `X-Murima-Position`) to a read to see this write.
    position: String,
}

impl utoipa::IntoResponses for CommandAnswered {
    fn responses() -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::response::Response>> {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let answer = || ContentBuilder::new().schema(Some(Ref::from_schema_name("CommandAnswer"))).build();
        let mut all: std::collections::BTreeMap<_, _> = problem_responses().into_iter().collect();
        all.insert(
            "200".to_owned(),
            ResponseBuilder::new()
                .description("Done (or the original answer to a retried Idempotency-Key)")
                .content("application/json", answer())
                .build()
                .into(),
        );
        all.insert(
            "201".to_owned(),
            ResponseBuilder::new().description("Created").content("application/json", answer()).build().into(),
        );
        all
    }
}

/// The answers of a command with no body to return (204), or a problem.
pub struct NothingAnswered;

impl utoipa::IntoResponses for NothingAnswered {
    fn responses() -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::response::Response>> {
        let mut all: std::collections::BTreeMap<_, _> = problem_responses().into_iter().collect();
        all.insert("204".to_owned(), utoipa::openapi::ResponseBuilder::new().description("Done").build().into());
        all
    }
}
