//! Dashboard figures: case statistics from the materialized view (seed §8.4.1) and a
//! daily series of opened and resolved cases.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use runtime::auth::Caller;
use runtime::extract::ApiQuery;
use runtime::tenancy::Tenancy;
use runtime::ApiError;
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{missing_schema_is_empty, tenant_tx, wait_for_postgres, AppState};
use crate::consistency::WaitFor;

/// The longest daily series one request may ask for.
const MAX_DAYS: i64 = 366;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(statistics)).routes(routes!(daily))
}

/// This month's cases of one type in one status.
#[derive(Serialize, utoipa::ToSchema)]
struct CaseStatistic {
    case_type_id: Uuid,
    case_type_name: String,
    #[schema(example = "open")]
    status: String,
    case_count: i64,
    /// From opening to resolution, or to now for a case not resolved (two decimals).
    #[schema(example = 12.5)]
    avg_time_hours: Option<f64>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Statistics {
    items: Vec<CaseStatistic>,
}

/// This month's cases by type and status with the average hours to resolve, as of the
/// view's last refresh (every `MURIMA_STATISTICS_REFRESH_SECS`).
#[utoipa::path(
    get,
    path = "/v1/dashboard/statistics",
    tag = "dashboard",
    operation_id = "dashboard_statistics",
    responses((status = 200, description = "This month's statistics", body = Statistics), runtime::openapi::Problems)
)]
async fn statistics(State(state): State<AppState>, caller: Caller) -> Result<Json<Statistics>, ApiError> {
    let schema = Tenancy(caller.tenant_member()?.tenant_id).pg_schema();
    // Read through the security-barrier view: row-level security does not apply to the
    // materialized view itself, so the reader may not select it directly.
    let (mut tx, _) = tenant_tx(&state.pool, caller).await?;
    let rows: Vec<(Uuid, String, String, i64, Option<f64>)> = sqlx::query_as(&format!(
        "SELECT case_type_id, case_type_name, status, case_count, avg_time_hours::float8 AS avg_time_hours
         FROM {schema}.case_statistics_of_tenant ORDER BY case_type_name, status"
    ))
    .fetch_all(&mut *tx)
    .await
    .or_else(missing_schema_is_empty)?;
    let items = rows
        .into_iter()
        .map(|(case_type_id, case_type_name, status, case_count, avg_time_hours)| CaseStatistic {
            case_type_id,
            case_type_name,
            status,
            case_count,
            avg_time_hours,
        })
        .collect();
    Ok(Json(Statistics { items }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DailyQuery {
    /// First day (UTC), default 29 days before `to`.
    from: Option<NaiveDate>,
    /// Last day (UTC), default today.
    to: Option<NaiveDate>,
    /// A command's position token: wait until the read model holds that write.
    #[allow(dead_code)]
    position: Option<String>,
}

/// Cases opened and resolved on one UTC day.
#[derive(Serialize, utoipa::ToSchema)]
struct Day {
    day: NaiveDate,
    opened: i64,
    resolved: i64,
}

#[derive(Serialize, utoipa::ToSchema)]
struct DailySeries {
    from: NaiveDate,
    to: NaiveDate,
    /// Every day from `from` to `to`, in order.
    items: Vec<Day>,
}

/// Cases opened and resolved per UTC day, every day of the range present (zeros too).
#[utoipa::path(
    get,
    path = "/v1/dashboard/daily",
    tag = "dashboard",
    operation_id = "dashboard_daily",
    params(DailyQuery),
    responses((status = 200, description = "The daily series", body = DailySeries), runtime::openapi::Problems)
)]
async fn daily(
    State(state): State<AppState>,
    caller: Caller,
    WaitFor(token): WaitFor,
    ApiQuery(q): ApiQuery<DailyQuery>,
) -> Result<Json<DailySeries>, ApiError> {
    wait_for_postgres(&state, caller.tenant_member()?.tenant_id, token).await?;
    let to = q.to.unwrap_or_else(|| Utc::now().date_naive());
    let from = match q.from {
        Some(from) => from,
        None => to.checked_sub_signed(Duration::days(29)).unwrap_or(NaiveDate::MIN),
    };
    let earliest = NaiveDate::from_ymd_opt(1900, 1, 1).unwrap_or(NaiveDate::MIN);
    let latest = NaiveDate::from_ymd_opt(9999, 12, 31).unwrap_or(NaiveDate::MAX);
    if from < earliest || to > latest {
        return Err(ApiError::BadRequest(format!("from and to must be days between {earliest} and {latest}")));
    }
    let days = to.signed_duration_since(from).num_days().saturating_add(1);
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(ApiError::BadRequest(format!(
            "from must not be after to, and the range at most {MAX_DAYS} days (got {days})"
        )));
    }
    let start: DateTime<Utc> = from.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    let end = start.checked_add_signed(Duration::days(days)).unwrap_or(start);
    let schema = Tenancy(caller.tenant_member()?.tenant_id).pg_schema();
    let (mut tx, tenant) = tenant_tx(&state.pool, caller).await?;
    let rows: Vec<(NaiveDate, i64, i64)> = sqlx::query_as(&format!(
        "WITH days AS (SELECT generate_series($2::date, $3::date, '1 day')::date AS day),
              opened AS (SELECT (created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n FROM {schema}.cases
                         WHERE tenant_id = $1 AND created_at >= $4 AND created_at < $5 GROUP BY 1),
              resolved AS (SELECT (resolved_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n FROM {schema}.cases
                           WHERE tenant_id = $1 AND resolved_at >= $4 AND resolved_at < $5 GROUP BY 1)
         SELECT d.day, COALESCE(o.n, 0), COALESCE(r.n, 0)
         FROM days d LEFT JOIN opened o USING (day) LEFT JOIN resolved r USING (day) ORDER BY d.day"
    ))
    .bind(tenant)
    .bind(from)
    .bind(to)
    .bind(start)
    .bind(end)
    .fetch_all(&mut *tx)
    .await
    .or_else(missing_schema_is_empty)?;
    let items = rows.into_iter().map(|(day, opened, resolved)| Day { day, opened, resolved }).collect();
    Ok(Json(DailySeries { from, to, items }))
}
