//! Presence and notifications from Redis (seed §2.3.2): who is online, who is looking at
//! a case, and the caller's notifications. Presence is ephemeral state, not events:
//! reading a case or sending a heartbeat marks the caller as viewing it and as active.
//!
//! A case's viewers are a sorted set scored by when each was last seen, so every viewer
//! expires on their own: one who closed the case drops off after the viewer window (60 s
//! by default) while the others, whose screens keep sending heartbeats, stay listed.

use axum::extract::State;
use axum::Json;
use std::collections::HashSet;

use chrono::{DateTime, Utc};
use redis::AsyncCommands;
use runtime::auth::Caller;
use runtime::extract::{ApiJson, ApiPath, ApiQuery};
use runtime::tenancy::Tenancy;
use runtime::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::counters::redis_unavailable;
use super::{page_size, AppState};
use crate::consistency::{Wait, WaitFor};

/// A user counts as online this long after their last login, read or heartbeat.
pub const ONLINE_WINDOW_SECS: i64 = 300;
/// The most viewers a case lists.
const VIEWERS_LISTED: isize = 100;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(viewers))
        .routes(routes!(heartbeat))
        .routes(routes!(online))
        .routes(routes!(notifications))
        .routes(routes!(unread))
}

/// Marks the caller as active and, with a case, as viewing it now; viewers last seen
/// before the window go. Best effort: presence never fails a read.
pub async fn record_view(state: &AppState, caller: Caller, case: Option<Uuid>) {
    if let Err(e) = mark_seen(state, caller, case).await {
        tracing::warn!(error = %e, "recording presence failed");
    }
}

async fn mark_seen(state: &AppState, caller: Caller, case: Option<Uuid>) -> redis::RedisResult<()> {
    let t = Tenancy(caller.tenant_id);
    let user = caller.user_id.to_string();
    let now = Utc::now();
    let mut pipe = redis::pipe();
    pipe.zadd(t.redis_online_users(), &user, now.timestamp()).ignore();
    if let Some(case) = case {
        let viewers = t.redis_case_viewers(case);
        let window = window_millis(state);
        pipe.zadd(&viewers, &user, now.timestamp_millis())
            .ignore()
            .zrembyscore(&viewers, "-inf", format!("({}", now.timestamp_millis().saturating_sub(window)))
            .ignore()
            .pexpire(&viewers, window)
            .ignore();
    }
    pipe.query_async(&mut state.redis.clone()).await
}

/// A case's viewers, most recent first.
#[derive(Serialize, utoipa::ToSchema)]
struct Viewers {
    case_id: Uuid,
    /// Their user ids.
    viewers: Vec<String>,
    last_seen: Vec<Viewer>,
    /// How long a viewer stays listed after their last read or heartbeat.
    window_seconds: u64,
}

/// A viewer of a case and when they last looked at it.
#[derive(Serialize, utoipa::ToSchema)]
struct Viewer {
    user_id: String,
    last_seen_at: Option<DateTime<Utc>>,
}

/// A user online and when they were last active.
#[derive(Serialize, utoipa::ToSchema)]
struct Active {
    user_id: String,
    last_active_at: Option<DateTime<Utc>>,
}

/// Who has looked at the case within the viewer window, most recent first.
#[utoipa::path(get, path = "/v1/cases/{id}/viewers", tag = "presence", operation_id = "presence_viewers", params(("id" = Uuid, Path)),
    responses((status = 200, description = "The case's viewers", body = Viewers), runtime::openapi::Problems))]
async fn viewers(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Viewers>, ApiError> {
    let t = Tenancy(caller.tenant_member()?.tenant_id);
    let since = Utc::now().timestamp_millis().saturating_sub(window_millis(&state));
    let seen: Vec<(String, i64)> = state
        .redis
        .clone()
        .zrevrangebyscore_limit_withscores(t.redis_case_viewers(id), "+inf", since, 0, VIEWERS_LISTED)
        .await
        .map_err(redis_unavailable)?;
    let viewers = seen.iter().map(|(user, _)| user.clone()).collect();
    let last_seen = seen
        .into_iter()
        .map(|(user_id, at)| Viewer { user_id, last_seen_at: DateTime::from_timestamp_millis(at) })
        .collect();
    Ok(Json(Viewers { case_id: id, viewers, last_seen, window_seconds: state.viewer_window.as_secs() }))
}

fn window_millis(state: &AppState) -> i64 {
    i64::try_from(state.viewer_window.as_millis()).unwrap_or(i64::MAX)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Heartbeat {
    /// The case on the caller's screen, if any.
    case_id: Option<Uuid>,
}

/// A heartbeat's answer: the case the caller is now a viewer of (if any), for how long.
#[derive(Serialize, utoipa::ToSchema)]
struct HeartbeatAnswer {
    case_id: Option<Uuid>,
    window_seconds: u64,
}

/// The caller's screen is still open: marks them as active and, with `case_id`, as a
/// viewer of that case (which must be one of the tenant's cases) for another window.
#[utoipa::path(
    post,
    path = "/v1/presence/heartbeat",
    tag = "presence",
    operation_id = "presence_heartbeat",
    request_body = Heartbeat,
    responses((status = 200, description = "Marked as active", body = HeartbeatAnswer), runtime::openapi::Problems)
)]
async fn heartbeat(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(beat): ApiJson<Heartbeat>,
) -> Result<Json<HeartbeatAnswer>, ApiError> {
    let caller = caller.tenant_member()?;
    if let Some(case) = beat.case_id {
        // Only a case the tenant has; another tenant's id is not found here either.
        super::case_row::exists(&state, caller, case).await?;
    }
    mark_seen(&state, caller, beat.case_id).await.map_err(redis_unavailable)?;
    Ok(Json(HeartbeatAnswer { case_id: beat.case_id, window_seconds: state.viewer_window.as_secs() }))
}

/// The tenant's users active within the window, most recent first.
#[derive(Serialize, utoipa::ToSchema)]
struct Online {
    window_seconds: i64,
    users: Vec<Active>,
}

#[utoipa::path(
    get,
    path = "/v1/presence/online",
    tag = "presence",
    operation_id = "presence_online",
    responses((status = 200, description = "Who is online", body = Online), runtime::openapi::Problems)
)]
async fn online(State(state): State<AppState>, caller: Caller) -> Result<Json<Online>, ApiError> {
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
    let users = users
        .into_iter()
        .map(|(user_id, at)| Active { user_id, last_active_at: DateTime::from_timestamp(at, 0) })
        .collect();
    Ok(Json(Online { window_seconds: ONLINE_WINDOW_SECS, users }))
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

/// A page of the caller's notifications.
#[derive(Serialize, utoipa::ToSchema)]
struct Notifications {
    /// Each as the workflow or assignment that raised it wrote it (`id`, `type`, what it
    /// is about), with `read`.
    #[schema(value_type = Vec<Object>)]
    items: Vec<Value>,
    /// How many the caller has (at most 100 are kept).
    total: usize,
    unread: usize,
    /// Pass it as `offset` for the next page; null on the last.
    next_offset: Option<usize>,
}

/// The caller's notifications, newest first, each with whether it was read, and the
/// count of unread ones; `offset` pages through the (bounded) list. A position token of
/// a read mark (or of any case, user or task command) waits until Redis shows it.
#[utoipa::path(
    get,
    path = "/v1/notifications",
    tag = "presence",
    operation_id = "presence_notifications",
    params(Page),
    responses((status = 200, description = "A page of notifications", body = Notifications), runtime::openapi::Problems)
)]
async fn notifications(
    State(state): State<AppState>,
    caller: Caller,
    WaitFor(token): WaitFor,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Json<Notifications>, ApiError> {
    let caller = caller.tenant_member()?;
    let limit = page_size(page.limit, 20, 100)?;
    let offset = page.offset.unwrap_or(0);
    // The list holds at most 100 notifications; a far offset is a mistake, not a page.
    if !(0..=MAX_OFFSET).contains(&offset) {
        return Err(ApiError::BadRequest(format!("offset must be between 0 and {MAX_OFFSET} (got {offset})")));
    }
    let items = read_marked(&state, caller.tenant_id, caller.user_id, token, "/v1/notifications").await?;
    let unread = unread_in(&items);
    let total = items.len();
    let start = usize::try_from(offset).unwrap_or(usize::MAX).min(total);
    let end = start.saturating_add(usize::try_from(limit).unwrap_or(0)).min(total);
    let next_offset = (end < total).then_some(end);
    let items = items.get(start..end).map(<[Value]>::to_vec).unwrap_or_default();
    Ok(Json(Notifications { items, total, unread, next_offset }))
}

#[derive(Serialize, utoipa::ToSchema)]
struct Unread {
    unread: usize,
}

/// How many of the caller's notifications are unread (a badge's number).
#[utoipa::path(
    get,
    path = "/v1/notifications/unread",
    tag = "presence",
    operation_id = "presence_unread_notifications",
    responses((status = 200, description = "The unread count", body = Unread), runtime::openapi::Problems)
)]
async fn unread(
    State(state): State<AppState>,
    caller: Caller,
    WaitFor(token): WaitFor,
) -> Result<Json<Unread>, ApiError> {
    let caller = caller.tenant_member()?;
    let items = read_marked(&state, caller.tenant_id, caller.user_id, token, "/v1/notifications/unread").await?;
    Ok(Json(Unread { unread: unread_in(&items) }))
}

fn unread_in(items: &[Value]) -> usize {
    items.iter().filter(|n| n["read"] == json!(false)).count()
}

/// A user's whole list (at most 100), once Redis holds the token's write, each marked
/// `read` when its id was read or the event it is about happened before the user's last
/// "read all".
pub(super) async fn read_marked(
    state: &AppState,
    tenant: Uuid,
    user: Uuid,
    token: Option<Wait>,
    read: &str,
) -> Result<Vec<Value>, ApiError> {
    let t = Tenancy(tenant);
    super::counters::wait_for_redis(state, t, token, read).await?;
    let (raw, read, before): (Vec<String>, HashSet<String>, Option<i64>) = redis::pipe()
        .lrange(t.redis_notifications(user), 0, -1)
        .smembers(t.redis_notifications_read(user))
        .get(t.redis_notifications_read_before(user))
        .query_async(&mut state.redis.clone())
        .await
        .map_err(redis_unavailable)?;
    let before = before.unwrap_or(0);
    Ok(raw
        .iter()
        .filter_map(|r| serde_json::from_str::<Value>(r).ok())
        .map(|mut item| {
            let id = item["id"].as_str().unwrap_or_default().to_owned();
            let happened = id.parse::<Uuid>().ok().and_then(|u| u.get_timestamp()).map(|ts| {
                let (secs, nanos) = ts.to_unix();
                i64::try_from(secs)
                    .unwrap_or(i64::MAX)
                    .saturating_mul(1000)
                    .saturating_add(i64::from(nanos / 1_000_000))
            });
            item["read"] = json!(read.contains(&id) || happened.is_some_and(|at| at <= before));
            item
        })
        .collect())
}
