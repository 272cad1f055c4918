//! The case as the list and the detail both answer it: the columns read, their JSON,
//! and the SLA state computed from them; and one case read through its Redis cache
//! (under the seed's key, seed §6.3.1).
//!
//! The cache holds the case row as JSON with its version. The Redis projection records
//! the latest version of every case it has seen (`projection:counted_cases`), so a cached
//! copy older than that, or older than the request's position token, is never served:
//! the row is read again and the cache refreshed (version-based invalidation, seed
//! §6.2.3, on top of the projector dropping the key on every case event).

use chrono::{DateTime, Utc};
use runtime::auth::Caller;
use runtime::tenancy::Tenancy;
use runtime::ApiError;
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::postgres::PgRow;
use sqlx::{FromRow, Row};
use uuid::Uuid;

use super::{missing_schema_is_empty, tenant_tx, AppState};

/// How long a cached case lives (seed §2.3.2: 30 minutes).
const CASE_CACHE_TTL_SECS: i64 = 1800;

pub const COLUMNS: &str = "id, tenant_id, case_number, title, description, status, priority, case_type_id, workflow_id,
    current_stage_id, created_by, assigned_to, created_at, updated_at, due_date, custom_fields, tags, metadata, assigned_team_id, version,
    case_type_name, assigned_to_username, resolved_at, customer_id";

/// A case as the list, the queue and the detail answer it (the detail adds its related
/// items: `case_detail::CaseDetail`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CaseRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    #[schema(example = "CASE-000042")]
    pub case_number: String,
    pub title: String,
    pub description: Option<String>,
    #[schema(example = "open")]
    pub status: String,
    #[schema(example = "medium")]
    pub priority: String,
    pub case_type_id: Uuid,
    pub case_type_name: Option<String>,
    pub workflow_id: Option<Uuid>,
    pub current_stage_id: Option<Uuid>,
    pub created_by: Uuid,
    pub assigned_to: Option<Uuid>,
    pub assigned_to_username: Option<String>,
    pub assigned_team_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub due_date: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// The values of the tenant's custom fields the caller may see, by field name.
    #[schema(value_type = Option<Object>)]
    pub custom_fields: Option<Value>,
    pub tags: Vec<String>,
    /// The list: the SLA record the workflow's targets and the scheduler wrote (due times,
    /// `<clock>_warned_at`, `<clock>_breached_at`); the queue and the detail: the state
    /// computed from it (`sla_state`: due times, `running`, `breached`, seconds left).
    #[schema(value_type = Option<Object>)]
    pub sla: Option<Value>,
    pub customer_id: Option<Uuid>,
    #[schema(example = 3)]
    pub version: i64,
    /// `true` when the custom field rules could not be read: every custom field is
    /// withheld (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_fields_withheld: Option<bool>,
}

impl FromRow<'_, PgRow> for CaseRow {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            tenant_id: row.try_get("tenant_id")?,
            case_number: row.try_get("case_number")?,
            title: row.try_get("title")?,
            description: row.try_get("description")?,
            status: row.try_get("status")?,
            priority: row.try_get("priority")?,
            case_type_id: row.try_get("case_type_id")?,
            case_type_name: row.try_get("case_type_name")?,
            workflow_id: row.try_get("workflow_id")?,
            current_stage_id: row.try_get("current_stage_id")?,
            created_by: row.try_get("created_by")?,
            assigned_to: row.try_get("assigned_to")?,
            assigned_to_username: row.try_get("assigned_to_username")?,
            assigned_team_id: row.try_get("assigned_team_id")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            due_date: row.try_get("due_date")?,
            resolved_at: row.try_get("resolved_at")?,
            custom_fields: row.try_get("custom_fields")?,
            tags: row.try_get::<Option<Vec<String>>, _>("tags")?.unwrap_or_default(),
            sla: row.try_get::<Option<Value>, _>("metadata")?.and_then(|m| m.get("sla").cloned()),
            customer_id: row.try_get("customer_id")?,
            version: row.try_get("version")?,
            custom_fields_withheld: None,
        })
    }
}

/// The case of a row of `COLUMNS`, as JSON (for the field rules, which also strip search
/// hits, and the SLA state).
pub fn case_json(row: &PgRow) -> Result<Value, sqlx::Error> {
    serde_json::to_value(CaseRow::from_row(row)?).map_err(|e| sqlx::Error::Decode(e.into()))
}

/// Due times, whether the case is past them, and the time left, from the case's SLA
/// (its workflow's targets) or else its due date. Resolved and closed cases run no clock.
/// The warnings and breaches the SLA scheduler recorded (`<clock>_warned_at`,
/// `<clock>_breached_at`) are shown as recorded, null when none.
pub fn sla_state(case: &Value, now: DateTime<Utc>) -> Value {
    let at = |v: &Value| serde_json::from_value::<DateTime<Utc>>(v.clone()).ok();
    let sla = &case["sla"];
    let first_response_due = at(&sla["first_response_due"]);
    let resolution_due = at(&sla["resolution_due"]).or_else(|| at(&case["due_date"]));
    let running = case["status"].as_str().is_none_or(events::case::Status::is_active_name);
    let left = |due: Option<DateTime<Utc>>| due.filter(|_| running).map(|d| d.signed_duration_since(now).num_seconds());
    let mut state = json!({
        "first_response_due": first_response_due,
        "resolution_due": resolution_due,
        "running": running,
        "breached": left(resolution_due).is_some_and(|s| s < 0),
        "seconds_left": left(resolution_due),
        "first_response_seconds_left": left(first_response_due),
    });
    for clock in events::case::SlaClock::ALL {
        for recorded in ["warned_at", "breached_at"] {
            let key = format!("{}_{recorded}", clock.as_str());
            state[&key] = sla.get(&key).cloned().unwrap_or(Value::Null);
        }
    }
    state
}

/// Whether the caller's tenant has case `id` (404 if not).
pub async fn exists(state: &AppState, caller: Caller, id: Uuid) -> Result<(), ApiError> {
    cached(state, caller, id, 0).await.map(drop)
}

/// The case row, from the cache when it is at least as new as anything seen, else from
/// PostgreSQL (refreshing the cache). Redis trouble only costs the cache, never the read.
pub async fn cached(state: &AppState, caller: Caller, id: Uuid, wanted: i64) -> Result<Value, ApiError> {
    let t = Tenancy(caller.tenant_id);
    let key = t.redis_case_cache(id);
    let mut redis = state.redis.clone();
    let cached: redis::RedisResult<(Option<String>, Option<i64>, Option<String>)> = redis::pipe()
        .hget(&key, "body")
        .hget(&key, "version")
        .hget(t.redis_counted_cases(), id.to_string())
        .query_async(&mut redis)
        .await;
    match cached {
        Ok((Some(body), Some(version), counted)) => {
            let latest = counted.and_then(|c| c.split('|').next()?.parse::<i64>().ok()).unwrap_or(0);
            if version >= latest.max(wanted) {
                if let Ok(case) = serde_json::from_str::<Value>(&body) {
                    return Ok(case);
                }
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "reading the case cache failed; reading PostgreSQL"),
    }
    let schema = t.pg_schema();
    let (mut tx, _) = tenant_tx(&state.pool, caller).await?;
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM {schema}.cases WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .or_else(missing_schema_is_empty)?
        .ok_or_else(|| ApiError::NotFound(format!("case {id} not found")))?;
    let case = case_json(&row)?;
    // A customer's data stays out of Redis, so that erasing them leaves nothing there.
    if !case["customer_id"].is_null() {
        return Ok(case);
    }
    let stored: redis::RedisResult<()> = redis::pipe()
        .hset(&key, "body", case.to_string())
        .ignore()
        .hset(&key, "version", case["version"].as_i64().unwrap_or(0))
        .ignore()
        .expire(&key, CASE_CACHE_TTL_SECS)
        .ignore()
        .query_async(&mut redis)
        .await;
    if let Err(e) = stored {
        tracing::warn!(error = %e, "writing the case cache failed");
    }
    Ok(case)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn sla_state_counts_down_and_stops_when_resolved() {
        let now: DateTime<Utc> = "2026-11-20T10:00:00Z".parse().unwrap();
        let mut case = json!({
            "status": "open",
            "due_date": null,
            "sla": { "first_response_due": "2026-11-20T09:30:00Z", "resolution_due": "2026-11-20T12:00:00Z" },
        });
        let sla = sla_state(&case, now);
        assert_eq!(sla["seconds_left"], 7200);
        assert_eq!(sla["first_response_seconds_left"], -1800);
        assert_eq!(sla["breached"], false);
        case["sla"]["resolution_due"] = json!("2026-11-20T09:00:00Z");
        assert_eq!(sla_state(&case, now)["breached"], true);
        case["status"] = json!("resolved");
        let stopped = sla_state(&case, now);
        assert_eq!((stopped["running"].clone(), stopped["breached"].clone()), (json!(false), json!(false)));
        // Without a workflow SLA the case's due date is the resolution target.
        let plain = json!({ "status": "open", "due_date": "2026-11-21T10:00:00Z", "sla": null });
        assert_eq!(sla_state(&plain, now)["seconds_left"], 86400);
    }
}
