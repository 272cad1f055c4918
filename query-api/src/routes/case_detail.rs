//! One case with everything an agent needs on one screen: the case (cached in Redis,
//! `case_row::cached`), its interactions, tasks, documents and notes, and its SLA state.
//! Internal notes are shown to holders of `notes:view_internal` and to their authors only.

use std::hash::{Hash, Hasher};
use utoipa_axum::{router::OpenApiRouter, routes};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use events::StreamType;
use futures::TryStreamExt;
use mongodb::bson::{doc, Document};
use runtime::auth::{Caller, Permission};
use runtime::extract::ApiPath;
use runtime::tenancy::Tenancy;
use runtime::ApiError;
use serde_json::Value;
use uuid::Uuid;

use super::case_row::{self, sla_state, CaseRow};
use super::{missing_schema_is_empty, tenant_tx, AppState};
use crate::consistency::{wait_until, WaitFor};

/// Related items shown with a case, newest first.
const RELATED: i64 = 50;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(detail))
}

/// One case with its related items, as `GET /v1/cases/{id}` answers it.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)] // `detail` builds it as JSON; `openapi::every_case_read_answers_as_documented` holds the two together
struct CaseDetail {
    #[serde(flatten)]
    case: CaseRow,
    interactions: RelatedItems,
    tasks: RelatedItems,
    documents: RelatedItems,
    notes: RelatedItems,
}

/// The newest related items of one kind (at most 50), newest first.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct RelatedItems {
    #[schema(value_type = Vec<Object>)]
    items: Vec<Value>,
    /// There are more than these.
    has_more: bool,
}

#[utoipa::path(get, path = "/v1/cases/{id}", tag = "case-detail", operation_id = "case_detail_detail", params(("id" = Uuid, Path)),
    responses((status = 200, description = "The case with its related items, and an ETag", body = CaseDetail), (status = 304, description = "Not modified since the If-None-Match ETag"), runtime::openapi::Problems))]
async fn detail(
    State(state): State<AppState>,
    caller: Caller,
    WaitFor(token): WaitFor,
    ApiPath(id): ApiPath<Uuid>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = caller.tenant_member()?;
    let tenant = caller.tenant_id;
    let schema = Tenancy(tenant).pg_schema();
    // A case's token waits for that case's row; another write's for the relational read
    // model's position (interactions, tasks, documents), a note's for the notes store.
    let kind = token.as_ref().and_then(|w| w.token.stream_type);
    let wanted = match &token {
        Some(w) if kind == Some(StreamType::Case) && w.token.stream_id == id => w.token.version,
        _ => 0,
    };
    match kind {
        Some(StreamType::Case) => {
            wait_until(token, state.read_wait, crate::consistency::Store::Postgres, |t| {
                held_version(state.pool.clone(), caller, schema.clone(), t.stream_id)
            })
            .await?
        }
        Some(StreamType::Note) => {
            let notes = state.mongo.collection::<Document>(&Tenancy(tenant).mongo_collection("case_notes"));
            super::entities::wait_for_document(&notes, token, state.read_wait).await?
        }
        _ => super::wait_for_postgres(&state, tenant, token).await?,
    }
    let mut case = case_row::cached(&state, caller, id, wanted).await?;
    state.field_visibility.case_rules(&state.mongo, tenant).await.strip_case(caller, &mut case);
    let related = Related::load(&state, caller, id).await?;
    super::presence::record_view(&state, caller, Some(id)).await;

    case["interactions"] = related.interactions;
    case["tasks"] = related.tasks;
    case["documents"] = related.documents;
    case["notes"] = related.notes;
    // The case's version and a digest of everything shown with it, taken before the SLA
    // clock is read: a screen that did not change revalidates (304) however late.
    let mut digest = std::collections::hash_map::DefaultHasher::new();
    case.to_string().hash(&mut digest);
    let etag = format!("\"{}-{:016x}\"", case["version"], digest.finish());
    let sla = sla_state(&case, Utc::now());
    case["sla"] = sla;
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    Ok(([(header::ETAG, etag)], Json(case)).into_response())
}

/// The version of a case the relational read model holds (0: not there yet).
pub async fn held_version(pool: sqlx::PgPool, caller: Caller, schema: String, case: Uuid) -> Result<i64, ApiError> {
    let (mut tx, _) = tenant_tx(&pool, caller).await?;
    let v: Option<i64> = sqlx::query_scalar(&format!("SELECT version FROM {schema}.cases WHERE id = $1"))
        .bind(case)
        .fetch_optional(&mut *tx)
        .await
        .or_else(missing_schema_is_empty)?;
    Ok(v.unwrap_or(0))
}

/// The newest related items of a case, each list with `has_more`.
struct Related {
    interactions: Value,
    tasks: Value,
    documents: Value,
    notes: Value,
}

fn bounded(mut items: Vec<Value>) -> Value {
    let has_more = items.len() as i64 > RELATED;
    items.truncate(RELATED as usize);
    serde_json::to_value(RelatedItems { items, has_more }).unwrap_or_default()
}

impl Related {
    async fn load(state: &AppState, caller: Caller, case: Uuid) -> Result<Self, ApiError> {
        let schema = Tenancy(caller.tenant_id).pg_schema();
        let (mut tx, tenant) = tenant_tx(&state.pool, caller).await?;
        let mut lists = Vec::with_capacity(3);
        for sql in [
            format!(
                "SELECT to_jsonb(i) FROM {schema}.interactions i WHERE tenant_id = $1 AND case_id = $2
                 ORDER BY timestamp DESC, id DESC LIMIT $3"
            ),
            format!(
                "SELECT to_jsonb(t) FROM {schema}.tasks t WHERE tenant_id = $1 AND case_id = $2
                 ORDER BY created_at DESC, id DESC LIMIT $3"
            ),
            format!(
                "SELECT to_jsonb(d) FROM {schema}.documents d WHERE tenant_id = $1 AND case_id = $2 AND NOT is_deleted
                 ORDER BY uploaded_at DESC, id DESC LIMIT $3"
            ),
        ] {
            let rows: Vec<Value> = sqlx::query_scalar(&sql)
                .bind(tenant)
                .bind(case)
                .bind(RELATED + 1)
                .fetch_all(&mut *tx)
                .await
                .or_else(missing_schema_is_empty)?;
            lists.push(bounded(rows));
        }
        let notes = bounded(visible_notes(state, caller, case).await?);
        let mut lists = lists.into_iter();
        Ok(Self {
            interactions: lists.next().unwrap_or_default(),
            tasks: lists.next().unwrap_or_default(),
            documents: lists.next().unwrap_or_default(),
            notes,
        })
    }
}

/// The case's notes, not deleted, newest first; internal ones only for those allowed.
async fn visible_notes(state: &AppState, caller: Caller, case: Uuid) -> Result<Vec<Value>, ApiError> {
    let coll = state.mongo.collection::<Document>(&Tenancy(caller.tenant_id).mongo_collection("case_notes"));
    let mut filter = doc! {
        "tenant_id": caller.tenant_id.to_string(),
        "case_id": case.to_string(),
        "deleted_at": { "$exists": false },
    };
    if caller.require(Permission::NotesViewInternal).is_err() {
        filter.insert("$or", vec![doc! { "is_internal": false }, doc! { "user_id": caller.user_id.to_string() }]);
    }
    let unavailable = |e: mongodb::error::Error| {
        tracing::error!(error = %e, "MongoDB read failed");
        ApiError::Unavailable("the notes store is not reachable".into())
    };
    let docs: Vec<Document> = coll
        .find(filter)
        .sort(doc! { "created_at": -1, "_id": -1 })
        .limit(RELATED + 1)
        .await
        .map_err(unavailable)?
        .try_collect()
        .await
        .map_err(unavailable)?;
    Ok(docs.into_iter().map(super::entities::document_json).collect())
}
