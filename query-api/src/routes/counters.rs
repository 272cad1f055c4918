//! Live counters from Redis: cases per status, open cases per priority, assignee and team,
//! and SLA breaches recorded per clock.

use std::collections::BTreeMap;
use utoipa_axum::{router::OpenApiRouter, routes};

use axum::extract::State;
use axum::Json;
use runtime::auth::Caller;
use runtime::tenancy::Tenancy;
use runtime::ApiError;
use serde::Serialize;

use super::AppState;
use crate::consistency::{wait_until, Wait, WaitFor};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(counters))
}

pub fn redis_unavailable(e: redis::RedisError) -> ApiError {
    tracing::error!(error = %e, "Redis read failed");
    ApiError::Unavailable("the counter store is not reachable".into())
}

/// Waits until Redis holds the stream of the token's command (a case, user or task: the
/// streams the Redis projection records the versions of).
pub(super) async fn wait_for_redis(
    state: &AppState,
    t: Tenancy,
    token: Option<Wait>,
    read: &str,
) -> Result<(), ApiError> {
    let kinds = [events::StreamType::Case, events::StreamType::User, events::StreamType::Task];
    let token = Wait::of_kind(token, &kinds, read)?;
    let redis = state.redis.clone();
    wait_until(token, state.read_wait, crate::consistency::Store::Redis, |token| {
        let mut redis = redis.clone();
        let (cases, streams) = (t.redis_counted_cases(), t.redis_stream_versions());
        async move {
            // A case's counted version leads its entry; other streams keep a plain version.
            let id = token.stream_id.to_string();
            let (case, other): (Option<String>, Option<i64>) = redis::pipe()
                .hget(cases, &id)
                .hget(streams, &id)
                .query_async(&mut redis)
                .await
                .map_err(redis_unavailable)?;
            let case = case.and_then(|h| h.split('|').next().and_then(|v| v.parse().ok())).unwrap_or(0);
            Ok(case.max(other.unwrap_or(0)))
        }
    })
    .await
}

/// Counts by key.
type Counts = BTreeMap<String, i64>;

/// The tenant's live counters: counts by key (a status, a priority, a user's or a
/// team's id, an SLA clock); keys counting zero are left out.
#[derive(Serialize, utoipa::ToSchema)]
struct Counters {
    #[schema(example = json!({ "open": 12, "resolved": 3 }))]
    cases_by_status: BTreeMap<String, i64>,
    open_cases_by_priority: BTreeMap<String, i64>,
    /// By the assignee's user id.
    open_cases_by_assignee: BTreeMap<String, i64>,
    /// By the team's id.
    open_cases_by_team: BTreeMap<String, i64>,
    /// Breaches recorded, by SLA clock (`first_response`, `resolution`).
    sla_breaches: BTreeMap<String, i64>,
}

#[utoipa::path(
    get,
    path = "/v1/counters",
    tag = "counters",
    operation_id = "counters_counters",
    responses((status = 200, description = "The live counters", body = Counters), runtime::openapi::Problems)
)]
async fn counters(
    State(state): State<AppState>,
    caller: Caller,
    WaitFor(token): WaitFor,
) -> Result<Json<Counters>, ApiError> {
    let t = Tenancy(caller.tenant_member()?.tenant_id);
    wait_for_redis(&state, t, token, "/v1/counters").await?;
    let mut redis = state.redis.clone();
    let (by_status, by_priority, by_assignee, by_team, breaches): (Counts, Counts, Counts, Counts, Counts) =
        redis::pipe()
            .hgetall(t.redis_cases_by_status())
            .hgetall(t.redis_open_cases_by_priority())
            .hgetall(t.redis_open_cases_by_assignee())
            .hgetall(t.redis_open_cases_by_team())
            .hgetall(t.redis_sla_breaches())
            .query_async(&mut redis)
            .await
            .map_err(redis_unavailable)?;
    let nonzero = |m: Counts| m.into_iter().filter(|(_, n)| *n != 0).collect::<Counts>();
    Ok(Json(Counters {
        cases_by_status: nonzero(by_status),
        open_cases_by_priority: nonzero(by_priority),
        open_cases_by_assignee: nonzero(by_assignee),
        open_cases_by_team: nonzero(by_team),
        sla_breaches: nonzero(breaches),
    }))
}
