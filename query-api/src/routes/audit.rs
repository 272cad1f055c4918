//! A case's audit trail from MongoDB, newest first, paginated by entity version.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use runtime::auth::Caller;
use runtime::extract::{ApiPath, ApiQuery};
use runtime::tenancy::{Tenancy, AUDIT_LOGS};
use runtime::ApiError;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{page_size, AppState};
use crate::consistency::{wait_until, WaitFor};

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/cases/{id}/audit", get(case_audit))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    limit: Option<i64>,
    /// Return entries older than this entity version (from `next_cursor`).
    cursor: Option<i64>,
    #[allow(dead_code)]
    position: Option<String>,
}

fn mongo_unavailable(e: mongodb::error::Error) -> ApiError {
    tracing::error!(error = %e, "MongoDB read failed");
    ApiError::Unavailable("the audit store is not reachable".into())
}

async fn case_audit(
    State(state): State<AppState>,
    caller: Caller,
    WaitFor(token): WaitFor,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    let tenant = caller.tenant_member()?.tenant_id;
    let limit = page_size(q.limit, 50, 200)?;
    let coll = state.mongo.collection::<Document>(&Tenancy(tenant).mongo_collection(AUDIT_LOGS));
    let tenant_str = tenant.to_string();

    wait_until(token, state.read_wait, |t| {
        let (coll, tenant_str) = (coll.clone(), tenant_str.clone());
        async move {
            let filter = doc! { "tenant_id": tenant_str, "entity_id": t.stream_id.to_string(), "entity_version": { "$gte": t.version } };
            let found = coll.find_one(filter).await.map_err(mongo_unavailable)?;
            Ok(if found.is_some() { t.version } else { 0 })
        }
    })
    .await?;

    let mut filter = doc! { "tenant_id": &tenant_str, "entity_type": "case", "entity_id": id.to_string() };
    if let Some(before) = q.cursor {
        filter.insert("entity_version", doc! { "$lt": before });
    }
    let docs: Vec<Document> = coll
        .find(filter)
        .sort(doc! { "entity_version": -1 })
        .limit(limit + 1)
        .await
        .map_err(mongo_unavailable)?
        .try_collect()
        .await
        .map_err(mongo_unavailable)?;
    let has_more = docs.len() as i64 > limit;
    let items: Vec<Value> = docs.into_iter().take(limit as usize).map(entry_json).collect();
    let next_cursor = if has_more { items.last().and_then(|e| e["entity_version"].as_i64()) } else { None };
    Ok(Json(json!({ "items": items, "next_cursor": next_cursor })))
}

/// BSON to plain JSON, with the timestamp as RFC 3339 and `_id` as `id`.
fn entry_json(mut doc: Document) -> Value {
    if let Ok(ts) = doc.get_datetime("timestamp") {
        let text = ts.try_to_rfc3339_string().unwrap_or_default();
        doc.insert("timestamp", text);
    }
    if let Some(id) = doc.remove("_id") {
        doc.insert("id", id);
    }
    Bson::Document(doc).into_relaxed_extjson()
}
