//! Presence and notifications from Redis (seed §2.3.2): who is online, who is looking at
//! a case, and the caller's notifications. Presence is ephemeral state, not events:
//! reading a case marks the caller as viewing it (5 minutes) and as active.

use axum::extract::State;
use axum::Json;
use chrono::Utc;
use redis::AsyncCommands;
use runtime::auth::Caller;
use runtime::extract::{ApiPath, ApiQuery};
use runtime::tenancy::Tenancy;
use runtime::ApiError;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::counters::redis_unavailable;
use super::{page_size, AppState};

/// How long a case viewer stays listed without reading the case again (seed: 5 minutes).
pub const VIEWER_TTL_SECS: i64 = 300;
/// A user counts as online this long after their last login or read.
pub const ONLINE_WINDOW_SECS: i64 = 300;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(viewers)).routes(routes!(online)).routes(routes!(notifications))
}

/// Marks the caller as viewing a case and as active. Best effort: presence never fails a read.
pub async fn record_view(state: &AppState, caller: Caller, case: Uuid) {
    let t = Tenancy(caller.tenant_id);
    let mut redis = state.redis.clone();
    let user = caller.user_id.to_string();
    let viewers = t.redis_case_viewers(case);
    let outcome: redis::RedisResult<()> = redis::pipe()
        .sadd(&viewers, &user)
        .ignore()
        .expire(&viewers, VIEWER_TTL_SECS)
        .ignore()
        .zadd(t.redis_online_users(), &user, Utc::now().timestamp())
        .ignore()
        .query_async(&mut redis)
        .await;
    if let Err(e) = outcome {
        tracing::warn!(error = %e, "recording a case viewer failed");
    }
}

#[utoipa::path(get, path = "/v1/cases/{id}/viewers", tag = "presence", operation_id = "presence_viewers", params(("id" = Uuid, Path)), responses(runtime::openapi::ReadAnswered))]
async fn viewers(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Value>, ApiError> {
    let t = Tenancy(caller.tenant_member()?.tenant_id);
    let mut redis = state.redis.clone();
    let mut users: Vec<String> = redis.smembers(t.redis_case_viewers(id)).await.map_err(redis_unavailable)?;
    users.sort();
    Ok(Json(json!({ "case_id": id, "viewers": users })))
}

#[utoipa::path(
    get,
    path = "/v1/presence/online",
    tag = "presence",
    operation_id = "presence_online",
    responses(runtime::openapi::ReadAnswered)
)]
async fn online(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let t = Tenancy(caller.tenant_member()?.tenant_id);
    let mut redis = state.redis.clone();
    let key = t.redis_online_users();
    let since = Utc::now().timestamp().saturating_sub(ONLINE_WINDOW_SECS);
    // Drop users inactive for longer than the window (seed §2.3.3), then list the rest.
    let (users,): (Vec<(String, i64)>,) = redis::pipe()
        .zrembyscore(&key, "-inf", format!("({since}"))
        .ignore()
        .zrevrange_withscores(&key, 0, 999)
        .query_async(&mut redis)
        .await
        .map_err(redis_unavailable)?;
    let users: Vec<Value> = users
        .into_iter()
        .map(|(user, at)| json!({ "user_id": user, "last_active_at": chrono::DateTime::from_timestamp(at, 0) }))
        .collect();
    Ok(Json(json!({ "window_seconds": ONLINE_WINDOW_SECS, "users": users })))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct Page {
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    #[param(minimum = 0, maximum = 1000)]
    offset: Option<i64>,
}

const MAX_OFFSET: i64 = 1_000;

/// The caller's notifications, newest first; `offset` pages through the (bounded) list.
#[utoipa::path(
    get,
    path = "/v1/notifications",
    tag = "presence",
    operation_id = "presence_notifications",
    params(Page),
    responses(runtime::openapi::ReadAnswered)
)]
async fn notifications(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Json<Value>, ApiError> {
    let caller = caller.tenant_member()?;
    let limit = page_size(page.limit, 20, 100)?;
    let offset = page.offset.unwrap_or(0);
    // The list holds at most 100 notifications; a far offset is a mistake, not a page.
    if !(0..=MAX_OFFSET).contains(&offset) {
        return Err(ApiError::BadRequest(format!("offset must be between 0 and {MAX_OFFSET} (got {offset})")));
    }
    let key = Tenancy(caller.tenant_id).redis_notifications(caller.user_id);
    let mut redis = state.redis.clone();
    let (raw, total): (Vec<String>, i64) = redis::pipe()
        .lrange(&key, offset as isize, offset.saturating_add(limit).saturating_sub(1) as isize)
        .llen(&key)
        .query_async(&mut redis)
        .await
        .map_err(redis_unavailable)?;
    let items: Vec<Value> = raw.iter().filter_map(|r| serde_json::from_str(r).ok()).collect();
    let next = offset.saturating_add(limit);
    let next_offset = (next < total).then_some(next);
    Ok(Json(json!({ "items": items, "total": total, "next_offset": next_offset })))
}
