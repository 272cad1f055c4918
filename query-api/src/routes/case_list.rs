//! Cases from the relational read model: one case by id, and the filtered case list with
//! keyset pagination (newest first, stable across pages).

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use events::case::{Priority, Status};
use runtime::auth::Caller;
use runtime::extract::{ApiPath, ApiQuery};
use runtime::tenancy::Tenancy;
use runtime::ApiError;
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::Row;
use uuid::Uuid;

use super::{decode_cursor, encode_cursor, missing_schema_is_empty, page_size, tenant_tx, AppState};
use crate::consistency::{wait_until, WaitFor};

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/cases", get(list)).route("/v1/cases/{id}", get(detail))
}

const COLUMNS: &str = "id, tenant_id, case_number, title, description, status, priority, case_type_id, workflow_id,
    current_stage_id, created_by, assigned_to, created_at, updated_at, due_date, custom_fields, tags, metadata, assigned_team_id, version,
    case_type_name, assigned_to_username, resolved_at";

fn case_json(row: &sqlx::postgres::PgRow) -> Result<Value, sqlx::Error> {
    Ok(json!({
        "id": row.try_get::<Uuid, _>("id")?,
        "tenant_id": row.try_get::<Uuid, _>("tenant_id")?,
        "case_number": row.try_get::<String, _>("case_number")?,
        "title": row.try_get::<String, _>("title")?,
        "description": row.try_get::<Option<String>, _>("description")?,
        "status": row.try_get::<String, _>("status")?,
        "priority": row.try_get::<String, _>("priority")?,
        "case_type_id": row.try_get::<Uuid, _>("case_type_id")?,
        "case_type_name": row.try_get::<Option<String>, _>("case_type_name")?,
        "workflow_id": row.try_get::<Option<Uuid>, _>("workflow_id")?,
        "current_stage_id": row.try_get::<Option<Uuid>, _>("current_stage_id")?,
        "created_by": row.try_get::<Uuid, _>("created_by")?,
        "assigned_to": row.try_get::<Option<Uuid>, _>("assigned_to")?,
        "assigned_to_username": row.try_get::<Option<String>, _>("assigned_to_username")?,
        "assigned_team_id": row.try_get::<Option<Uuid>, _>("assigned_team_id")?,
        "created_at": row.try_get::<DateTime<Utc>, _>("created_at")?,
        "updated_at": row.try_get::<DateTime<Utc>, _>("updated_at")?,
        "due_date": row.try_get::<Option<DateTime<Utc>>, _>("due_date")?,
        "resolved_at": row.try_get::<Option<DateTime<Utc>>, _>("resolved_at")?,
        "custom_fields": row.try_get::<Option<Value>, _>("custom_fields")?,
        "tags": row.try_get::<Option<Vec<String>>, _>("tags")?.unwrap_or_default(),
        "sla": row.try_get::<Option<Value>, _>("metadata")?.and_then(|m| m.get("sla").cloned()),
        "version": row.try_get::<i64, _>("version")?,
    }))
}

async fn detail(
    State(state): State<AppState>,
    caller: Caller,
    WaitFor(token): WaitFor,
    ApiPath(id): ApiPath<Uuid>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant_member()?.tenant_id;
    let schema = Tenancy(tenant).pg_schema();
    wait_until(token, state.read_wait, |t| held_version(state.pool.clone(), caller, schema.clone(), t.stream_id))
        .await?;
    let (mut tx, _) = tenant_tx(&state.pool, caller).await?;
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM {schema}.cases WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .or_else(missing_schema_is_empty)?
        .ok_or_else(|| ApiError::NotFound(format!("case {id} not found")))?;
    let case = case_json(&row)?;
    super::presence::record_view(&state, caller, id).await;
    let etag = format!("\"{}\"", case["version"]);
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    Ok(([(header::ETAG, etag)], Json(case)).into_response())
}

/// The version of a case the relational read model holds (0: not there yet).
async fn held_version(pool: sqlx::PgPool, caller: Caller, schema: String, case: Uuid) -> Result<i64, ApiError> {
    let (mut tx, _) = tenant_tx(&pool, caller).await?;
    let v: Option<i64> = sqlx::query_scalar(&format!("SELECT version FROM {schema}.cases WHERE id = $1"))
        .bind(case)
        .fetch_optional(&mut *tx)
        .await
        .or_else(missing_schema_is_empty)?;
    Ok(v.unwrap_or(0))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<Status>,
    priority: Option<Priority>,
    assigned_to: Option<Uuid>,
    limit: Option<i64>,
    cursor: Option<String>,
    #[allow(dead_code)]
    position: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    WaitFor(token): WaitFor,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant_member()?.tenant_id;
    let schema = Tenancy(tenant).pg_schema();
    let limit = page_size(q.limit, 25, 100)?;
    let after = q.cursor.as_deref().map(decode_cursor).transpose()?;
    wait_until(token, state.read_wait, |t| held_version(state.pool.clone(), caller, schema.clone(), t.stream_id))
        .await?;

    let (mut tx, _) = tenant_tx(&state.pool, caller).await?;
    // Filters are bound as nullable parameters: one plan shape, no string building from input.
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM {schema}.cases
         WHERE tenant_id = $1
           AND ($2::text IS NULL OR status = $2)
           AND ($3::text IS NULL OR priority = $3)
           AND ($4::uuid IS NULL OR assigned_to = $4)
           AND ($5::timestamptz IS NULL OR (created_at, id) < ($5, $6))
         ORDER BY created_at DESC, id DESC
         LIMIT $7"
    ))
    .bind(tenant)
    .bind(q.status.map(Status::as_str))
    .bind(q.priority.map(Priority::as_str))
    .bind(q.assigned_to)
    .bind(after.map(|a| a.0))
    .bind(after.map(|a| a.1))
    .bind(limit + 1)
    .fetch_all(&mut *tx)
    .await
    .or_else(missing_schema_is_empty)?;

    let has_more = rows.len() as i64 > limit;
    let items = rows.iter().take(limit as usize).map(case_json).collect::<Result<Vec<_>, _>>()?;
    let next_cursor = if has_more {
        rows.get(limit as usize - 1)
            .map(|r| -> Result<String, sqlx::Error> { Ok(encode_cursor(r.try_get("created_at")?, r.try_get("id")?)) })
            .transpose()?
    } else {
        None
    };
    let mut response = Json(json!({ "items": items, "next_cursor": next_cursor })).into_response();
    if let Some(cursor) = &next_cursor {
        let mut link = format!("/v1/cases?limit={limit}&cursor={cursor}");
        for (name, value) in [
            ("status", q.status.map(|s| s.as_str().to_owned())),
            ("priority", q.priority.map(|p| p.as_str().to_owned())),
            ("assigned_to", q.assigned_to.map(|a| a.to_string())),
        ] {
            if let Some(v) = value {
                link.push_str(&format!("&{name}={v}"));
            }
        }
        if let Ok(v) = HeaderValue::from_str(&format!("<{link}>; rel=\"next\"")) {
            response.headers_mut().insert(header::LINK, v);
        }
    }
    Ok(response)
}
