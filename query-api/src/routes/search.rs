//! Search in Elasticsearch through the tenant's read aliases: cases, interactions and
//! notes, with highlights, facets (counts by status, priority and case type; by direction
//! and channel) and filters in filter context (no effect on scores, cacheable), plus
//! typeahead suggestions on case titles and numbers.

use axum::extract::State;
use axum::Json;
use elasticsearch::indices::IndicesRefreshParts;
use elasticsearch::{GetParts, SearchParts};
use events::case::{Priority, Status};
use runtime::auth::{Caller, Permission};
use runtime::extract::ApiQuery;
use runtime::tenancy::{Tenancy, CASES, INTERACTIONS, NOTES};
use runtime::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{page_size, AppState};
use crate::consistency::{wait_until, WaitFor};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(search_cases))
        .routes(routes!(search_interactions))
        .routes(routes!(search_notes))
        .routes(routes!(suggest))
}

const MAX_QUERY: usize = 200;
pub(super) const MAX_OFFSET: i64 = 10_000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct SearchQuery {
    q: String,
    status: Option<Status>,
    priority: Option<Priority>,
    case_type_id: Option<Uuid>,
    assigned_to: Option<Uuid>,
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// How many hits to skip (from `next_offset`); at most 10,000.
    offset: Option<i64>,
    #[allow(dead_code)]
    position: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct RelatedSearchQuery {
    q: String,
    case_id: Option<Uuid>,
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    offset: Option<i64>,
}

pub(super) fn elastic_unavailable(e: elasticsearch::Error) -> ApiError {
    // The client's own message names only the URL; its causes say whether the server
    // timed out, refused the connection or closed it.
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    tracing::error!(error = %e, cause = causes.join(": "), timeout = e.is_timeout(), "Elasticsearch request failed");
    ApiError::Unavailable("the search store is not reachable".into())
}

fn search_text(q: &str) -> Result<&str, ApiError> {
    let text = q.trim();
    if text.is_empty() || text.chars().count() > MAX_QUERY {
        return Err(ApiError::BadRequest(format!("q must be 1-{MAX_QUERY} characters of search text")));
    }
    Ok(text)
}

pub(super) fn paging(limit: Option<i64>, offset: Option<i64>) -> Result<(i64, i64), ApiError> {
    let limit = page_size(limit, 20, 100)?;
    let offset = offset.unwrap_or(0);
    window(offset, limit)?;
    Ok((limit, offset))
}

/// Elasticsearch answers at most `MAX_OFFSET` hits deep: offset plus limit stays within.
pub(super) fn window(offset: i64, limit: i64) -> Result<(), ApiError> {
    if !(0..=MAX_OFFSET).contains(&offset) || offset.saturating_add(limit) > MAX_OFFSET {
        return Err(ApiError::BadRequest(format!(
            "offset must be between 0 and {MAX_OFFSET}, and offset plus limit at most {MAX_OFFSET} (narrow the search instead)"
        )));
    }
    Ok(())
}

/// A page of search hits.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Hits {
    /// How many match, on every page.
    pub total: i64,
    /// The matching documents as indexed, each with its `score` and `highlight`.
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<Value>,
    /// Per faceted field (`status`, `priority`, ...), how many matches have each value.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub facets: Option<serde_json::Map<String, Value>>,
    /// Pass it as `offset` for the next page; null on the last.
    pub next_offset: Option<i64>,
}

/// Runs a search on an alias: each hit's source with its score and highlight, and the
/// facets. A tenant with nothing indexed yet has no alias: no hits.
pub(super) async fn run(state: &AppState, alias: &str, body: Value, offset: i64) -> Result<Hits, ApiError> {
    let response =
        state.elastic.search(SearchParts::Index(&[alias])).body(body).send().await.map_err(elastic_unavailable)?;
    let status = response.status_code();
    let result: Value = response.json().await.map_err(elastic_unavailable)?;
    if status.as_u16() == 404 {
        return Ok(Hits { total: 0, items: Vec::new(), facets: Some(Default::default()), next_offset: None });
    }
    if !status.is_success() {
        return Err(ApiError::Internal(anyhow::anyhow!("search failed: {status} {result}")));
    }
    let items: Vec<Value> = result["hits"]["hits"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|hit| {
            let mut item = hit["_source"].clone();
            if let Some(source) = item.as_object_mut() {
                source.remove("suggest");
                // An audit entry's id is its document's (the event's id).
                source.entry("id").or_insert_with(|| hit["_id"].clone());
            }
            item["score"] = hit["_score"].clone();
            item["highlight"] = hit.get("highlight").cloned().unwrap_or(json!({}));
            item
        })
        .collect();
    let mut facets = serde_json::Map::new();
    for (name, agg) in result["aggregations"].as_object().into_iter().flatten() {
        let buckets: serde_json::Map<String, Value> = agg["buckets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|b| {
                let key = match &b["key"] {
                    Value::String(s) => s.clone(),
                    other => b["key_as_string"].as_str().map(str::to_owned).unwrap_or_else(|| other.to_string()),
                };
                (key, b["doc_count"].clone())
            })
            .collect();
        facets.insert(name.clone(), Value::Object(buckets));
    }
    let total = result["hits"]["total"]["value"].as_i64().unwrap_or(items.len() as i64);
    let next = offset.saturating_add(items.len() as i64);
    let next_offset = (next < total && next <= MAX_OFFSET).then_some(next);
    Ok(Hits { total, items, facets: Some(facets), next_offset })
}

fn terms(field: &str) -> Value {
    json!({ "terms": { "field": field, "size": 20 } })
}

#[utoipa::path(
    get,
    path = "/v1/search/cases",
    tag = "search",
    operation_id = "search_search_cases",
    params(SearchQuery),
    responses((status = 200, description = "A page of hits", body = Hits), runtime::openapi::Problems)
)]
async fn search_cases(
    State(state): State<AppState>,
    caller: Caller,
    WaitFor(token): WaitFor,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> Result<Json<Hits>, ApiError> {
    let t = Tenancy(caller.tenant_member()?.tenant_id);
    let text = search_text(&q.q)?;
    let (limit, offset) = paging(q.limit, q.offset)?;
    let alias = t.es_alias(CASES);
    // The search index is looked up by the token's case: no other stream is ever there.
    let token = crate::consistency::Wait::of_kind(token, &[events::StreamType::Case], "/v1/search/cases")?;

    let elastic = state.elastic.clone();
    wait_until(token, state.read_wait, crate::consistency::Store::Elastic, |token| {
        let elastic = elastic.clone();
        let index = t.case_index(token.stream_id);
        async move {
            let id = token.stream_id.to_string();
            let response = elastic.get(GetParts::IndexId(&index, &id)).send().await.map_err(elastic_unavailable)?;
            let body: Value = response.json().await.map_err(elastic_unavailable)?;
            Ok(body["_version"].as_i64().unwrap_or(0))
        }
    })
    .await?;
    if token.is_some() {
        // The document is stored; make it searchable now rather than at the next refresh.
        let _ = state.elastic.indices().refresh(IndicesRefreshParts::Index(&[&alias])).send().await;
    }

    let mut filters = vec![json!({ "term": { "tenant_id": t.0.to_string() } })];
    if let Some(status) = q.status {
        filters.push(json!({ "term": { "status": status.as_str() } }));
    }
    if let Some(priority) = q.priority {
        filters.push(json!({ "term": { "priority": priority.as_str() } }));
    }
    if let Some(case_type) = q.case_type_id {
        filters.push(json!({ "term": { "case_type_id": case_type.to_string() } }));
    }
    if let Some(assignee) = q.assigned_to {
        filters.push(json!({ "term": { "assigned_to": assignee.to_string() } }));
    }
    let body = json!({
        "from": offset,
        "size": limit,
        "query": { "bool": {
            "must": { "multi_match": { "query": text, "fields": ["title^2", "description", "case_number", "tags"] } },
            "filter": filters
        } },
        "highlight": { "fields": { "title": {}, "description": {} } },
        "aggs": { "status": terms("status"), "priority": terms("priority"), "case_type_id": terms("case_type_id") }
    });
    let rules = state.field_visibility.case_rules(&state.mongo, t.0).await;
    let mut found = run(&state, &alias, body, offset).await?;
    found.items.iter_mut().for_each(|case| rules.strip_case(caller, case));
    Ok(Json(found))
}

/// Interactions of the tenant (optionally of one case) matching the text.
#[utoipa::path(
    get,
    path = "/v1/search/interactions",
    tag = "search",
    operation_id = "search_search_interactions",
    params(RelatedSearchQuery),
    responses((status = 200, description = "A page of hits", body = Hits), runtime::openapi::Problems)
)]
async fn search_interactions(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<RelatedSearchQuery>,
) -> Result<Json<Hits>, ApiError> {
    let t = Tenancy(caller.tenant_member()?.tenant_id);
    let text = search_text(&q.q)?;
    let (limit, offset) = paging(q.limit, q.offset)?;
    let mut filters = vec![json!({ "term": { "tenant_id": t.0.to_string() } })];
    if let Some(case) = q.case_id {
        filters.push(json!({ "term": { "case_id": case.to_string() } }));
    }
    let body = json!({
        "from": offset,
        "size": limit,
        "query": { "bool": { "must": { "match": { "content": text } }, "filter": filters } },
        "highlight": { "fields": { "content": {} } },
        "aggs": { "direction": terms("direction"), "channel_id": terms("channel_id") }
    });
    Ok(Json(run(&state, &t.es_alias(INTERACTIONS), body, offset).await?))
}

/// Notes of the tenant (optionally of one case) matching the text; deleted notes never,
/// internal notes of others only for holders of `notes:view_internal`.
#[utoipa::path(
    get,
    path = "/v1/search/notes",
    tag = "search",
    operation_id = "search_search_notes",
    params(RelatedSearchQuery),
    responses((status = 200, description = "A page of hits", body = Hits), runtime::openapi::Problems)
)]
async fn search_notes(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<RelatedSearchQuery>,
) -> Result<Json<Hits>, ApiError> {
    let caller = caller.tenant_member()?;
    let t = Tenancy(caller.tenant_id);
    let text = search_text(&q.q)?;
    let (limit, offset) = paging(q.limit, q.offset)?;
    let mut filters =
        vec![json!({ "term": { "tenant_id": t.0.to_string() } }), json!({ "term": { "deleted": false } })];
    if let Some(case) = q.case_id {
        filters.push(json!({ "term": { "case_id": case.to_string() } }));
    }
    if caller.require(Permission::NotesViewInternal).is_err() {
        filters.push(json!({ "bool": { "should": [
            { "term": { "is_internal": false } },
            { "term": { "user_id": caller.user_id.to_string() } }
        ], "minimum_should_match": 1 } }));
    }
    let body = json!({
        "from": offset,
        "size": limit,
        "query": { "bool": { "must": { "match": { "content": text } }, "filter": filters } },
        "highlight": { "fields": { "content": {} } },
        "aggs": { "is_internal": terms("is_internal") }
    });
    Ok(Json(run(&state, &t.es_alias(NOTES), body, offset).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct SuggestQuery {
    prefix: String,
    #[param(minimum = 1, maximum = 25)]
    limit: Option<i64>,
}

/// Typeahead: cases whose title or case number starts with the prefix.
#[utoipa::path(
    get,
    path = "/v1/search/suggest",
    tag = "search",
    operation_id = "search_suggest",
    params(SuggestQuery),
    responses((status = 200, description = "Suggestions", body = Suggestions), runtime::openapi::Problems)
)]
async fn suggest(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<SuggestQuery>,
) -> Result<Json<Suggestions>, ApiError> {
    let t = Tenancy(caller.tenant_member()?.tenant_id);
    let prefix = q.prefix.trim();
    if prefix.is_empty() || prefix.chars().count() > 100 {
        return Err(ApiError::BadRequest("prefix must be 1-100 characters".into()));
    }
    let limit = page_size(q.limit, 10, 25)?;
    let body = json!({
        "_source": ["id", "case_number", "title", "status"],
        "suggest": { "cases": { "prefix": prefix, "completion": { "field": "suggest", "size": limit, "skip_duplicates": true } } }
    });
    let result = {
        let response = state
            .elastic
            .search(SearchParts::Index(&[&t.es_alias(CASES)]))
            .body(body)
            .send()
            .await
            .map_err(elastic_unavailable)?;
        if response.status_code().as_u16() == 404 {
            return Ok(Json(Suggestions { items: Vec::new() }));
        }
        response.json::<Value>().await.map_err(elastic_unavailable)?
    };
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let items = result["suggest"]["cases"][0]["options"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| {
            let s = &o["_source"];
            Suggestion {
                id: text(&s["id"]),
                case_number: text(&s["case_number"]),
                title: text(&s["title"]),
                status: text(&s["status"]),
                text: text(&o["text"]),
            }
        })
        .collect();
    Ok(Json(Suggestions { items }))
}

#[derive(Serialize, utoipa::ToSchema)]
struct Suggestions {
    items: Vec<Suggestion>,
}

/// A case whose title or number starts with the prefix.
#[derive(Serialize, utoipa::ToSchema)]
struct Suggestion {
    id: Option<String>,
    case_number: Option<String>,
    title: Option<String>,
    status: Option<String>,
    /// What matched the prefix.
    text: Option<String>,
}
