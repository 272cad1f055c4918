//! Live counters from Redis: cases per status and open cases per assignee.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use redis::AsyncCommands;
use runtime::auth::Caller;
use runtime::tenancy::Tenancy;
use runtime::ApiError;
use serde_json::{json, Value};

use super::AppState;
use crate::consistency::{wait_until, WaitFor};

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/counters", get(counters))
}

fn redis_unavailable(e: redis::RedisError) -> ApiError {
    tracing::error!(error = %e, "Redis read failed");
    ApiError::Unavailable("the counter store is not reachable".into())
}

async fn counters(
    State(state): State<AppState>,
    caller: Caller,
    WaitFor(token): WaitFor,
) -> Result<Json<Value>, ApiError> {
    let t = Tenancy(caller.tenant_member()?.tenant_id);
    let redis = state.redis.clone();
    wait_until(token, state.read_wait, |token| {
        let mut redis = redis.clone();
        let key = t.redis_counted_cases();
        async move {
            let held: Option<String> = redis.hget(key, token.stream_id.to_string()).await.map_err(redis_unavailable)?;
            Ok(held.and_then(|h| h.split('|').next().and_then(|v| v.parse().ok())).unwrap_or(0))
        }
    })
    .await?;
    let mut redis = state.redis.clone();
    let by_status: BTreeMap<String, i64> = redis.hgetall(t.redis_cases_by_status()).await.map_err(redis_unavailable)?;
    let by_assignee: BTreeMap<String, i64> =
        redis.hgetall(t.redis_open_cases_by_assignee()).await.map_err(redis_unavailable)?;
    let nonzero = |m: BTreeMap<String, i64>| m.into_iter().filter(|(_, n)| *n != 0).collect::<BTreeMap<_, _>>();
    Ok(Json(json!({ "cases_by_status": nonzero(by_status), "open_cases_by_assignee": nonzero(by_assignee) })))
}
