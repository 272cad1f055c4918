//! Full-text case search in Elasticsearch through the tenant's read alias.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use elasticsearch::indices::IndicesRefreshParts;
use elasticsearch::{GetParts, SearchParts};
use events::case::Status;
use runtime::auth::Caller;
use runtime::extract::ApiQuery;
use runtime::tenancy::{Tenancy, CASES};
use runtime::ApiError;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{page_size, AppState};
use crate::consistency::{wait_until, WaitFor};

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/search/cases", get(search_cases))
}

const MAX_QUERY: usize = 200;
const MAX_OFFSET: i64 = 10_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchQuery {
    q: String,
    status: Option<Status>,
    limit: Option<i64>,
    /// How many hits to skip (from `next_offset`); at most 10,000.
    offset: Option<i64>,
    #[allow(dead_code)]
    position: Option<String>,
}

fn elastic_unavailable(e: elasticsearch::Error) -> ApiError {
    tracing::error!(error = %e, "Elasticsearch request failed");
    ApiError::Unavailable("the search store is not reachable".into())
}

async fn search_cases(
    State(state): State<AppState>,
    caller: Caller,
    WaitFor(token): WaitFor,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> Result<Json<Value>, ApiError> {
    let t = Tenancy(caller.tenant_member()?.tenant_id);
    let text = q.q.trim();
    if text.is_empty() || text.chars().count() > MAX_QUERY {
        return Err(ApiError::BadRequest(format!("q must be 1-{MAX_QUERY} characters of search text")));
    }
    let limit = page_size(q.limit, 20, 100)?;
    let offset = q.offset.unwrap_or(0);
    if !(0..=MAX_OFFSET).contains(&offset) {
        return Err(ApiError::BadRequest(format!("offset must be between 0 and {MAX_OFFSET}")));
    }
    let alias = t.es_alias(CASES);

    let elastic = state.elastic.clone();
    wait_until(token, state.read_wait, |token| {
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
    let body = json!({
        "from": offset,
        "size": limit,
        "query": { "bool": {
            "must": { "multi_match": { "query": text, "fields": ["title^2", "description", "case_number", "tags"] } },
            "filter": filters
        } },
        "highlight": { "fields": { "title": {}, "description": {} } }
    });
    let response =
        state.elastic.search(SearchParts::Index(&[&alias])).body(body).send().await.map_err(elastic_unavailable)?;
    let status = response.status_code();
    let result: Value = response.json().await.map_err(elastic_unavailable)?;
    if status.as_u16() == 404 {
        // No case indexed for this tenant yet: the alias does not exist.
        return Ok(Json(json!({ "total": 0, "items": [], "next_offset": null })));
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
            item["score"] = hit["_score"].clone();
            item["highlight"] = hit.get("highlight").cloned().unwrap_or(json!({}));
            item
        })
        .collect();
    let total = result["hits"]["total"]["value"].as_i64().unwrap_or(items.len() as i64);
    let next = offset + items.len() as i64;
    let next_offset = (next < total && next <= MAX_OFFSET).then_some(next);
    Ok(Json(json!({ "total": total, "items": items, "next_offset": next_offset })))
}
