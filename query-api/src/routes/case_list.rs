//! The case list from the relational read model: filters, sorts and keyset pagination
//! that stays stable across pages.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use events::case::{Priority, Status};
use runtime::auth::Caller;
use runtime::extract::ApiQuery;
use runtime::tenancy::Tenancy;
use runtime::ApiError;
use serde::Deserialize;
use serde_json::Value;
use sqlx::Row;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::case_row::{case_json, sla_state, CaseRow, COLUMNS};
use super::{missing_schema_is_empty, page_size, tenant_tx, wait_for_postgres, AppState};
use crate::consistency::WaitFor;
use crate::cursor::{Cursor, CursorKey, Page, PageBody};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list)).routes(routes!(queue))
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    /// Newest first (the default).
    #[default]
    Created,
    /// Most recently changed first.
    Updated,
    /// Soonest due first; cases without a due date last.
    Due,
    /// Most urgent first, then newest.
    Priority,
}

impl Sort {
    /// The key expression, its SQL type, and whether it runs descending.
    fn key(self) -> (&'static str, &'static str, bool) {
        match self {
            Sort::Created => ("created_at", "timestamptz", true),
            Sort::Updated => ("updated_at", "timestamptz", true),
            Sort::Due => ("COALESCE(due_date, 'infinity'::timestamptz)", "timestamptz", false),
            Sort::Priority => {
                ("(CASE priority WHEN 'urgent' THEN 4 WHEN 'high' THEN 3 WHEN 'medium' THEN 2 ELSE 1 END)", "int", true)
            }
        }
    }

    const ALL: [Sort; 4] = [Sort::Created, Sort::Updated, Sort::Due, Sort::Priority];

    fn as_str(self) -> &'static str {
        match self {
            Sort::Created => "created",
            Sort::Updated => "updated",
            Sort::Due => "due",
            Sort::Priority => "priority",
        }
    }
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    status: Option<Status>,
    priority: Option<Priority>,
    case_type_id: Option<Uuid>,
    assigned_to: Option<Uuid>,
    team_id: Option<Uuid>,
    tag: Option<String>,
    created_from: Option<DateTime<Utc>>,
    created_to: Option<DateTime<Utc>>,
    due_from: Option<DateTime<Utc>>,
    due_to: Option<DateTime<Utc>>,
    /// Custom-field equality as a JSON object, e.g. `{"customer_id":"C-0042"}` (GIN containment).
    custom_fields: Option<String>,
    /// Free text over title (weight A) and description (weight B), web-search syntax.
    q: Option<String>,
    #[serde(default)]
    sort: Sort,
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    cursor: Option<String>,
    #[allow(dead_code)]
    position: Option<String>,
}

/// A list's cursor key: the sort it belongs to and the last row's sort key, as text
/// (it goes back into SQL as a parameter of the sort's type, so it is checked to be one).
#[derive(Debug, Clone, PartialEq)]
struct SortKey {
    sort: Sort,
    key: String,
}

impl CursorKey for SortKey {
    fn write(&self) -> String {
        format!("{}|{}", self.sort.as_str(), self.key)
    }

    fn read(text: &str) -> Option<Self> {
        let (name, key) = text.split_once('|')?;
        let sort = Sort::ALL.into_iter().find(|s| s.as_str() == name)?;
        let well_formed = match sort.key().1 {
            "int" => key.parse::<i32>().is_ok(),
            _ => key == "infinity" || DateTime::parse_from_str(key, "%Y-%m-%d %H:%M:%S%.f%#z").is_ok(),
        };
        well_formed.then(|| SortKey { sort, key: key.to_owned() })
    }
}

/// The list's cursor, which must belong to the sort of the page asked for.
fn list_cursor(raw: &str, sort: Sort) -> Result<(String, Uuid), ApiError> {
    let cursor = Cursor::<SortKey>::decode(raw)?;
    if cursor.key.sort != sort {
        return Err(ApiError::BadRequest(format!(
            "the cursor belongs to sort={}; keep the sort of the first page (sort={})",
            cursor.key.sort.as_str(),
            sort.as_str()
        )));
    }
    Ok((cursor.key.key, cursor.id))
}

/// The query string of a list without its cursor, for the `Link` header.
fn list_link(q: &ListQuery, limit: i64, cursor: &str) -> String {
    let mut pairs = url::form_urlencoded::Serializer::new(String::new());
    let text = |v: &Option<Uuid>| v.map(|u| u.to_string());
    let time = |v: &Option<DateTime<Utc>>| v.map(|t| t.to_rfc3339());
    for (name, value) in [
        ("status", q.status.map(|s| s.as_str().to_owned())),
        ("priority", q.priority.map(|p| p.as_str().to_owned())),
        ("case_type_id", text(&q.case_type_id)),
        ("assigned_to", text(&q.assigned_to)),
        ("team_id", text(&q.team_id)),
        ("tag", q.tag.clone()),
        ("created_from", time(&q.created_from)),
        ("created_to", time(&q.created_to)),
        ("due_from", time(&q.due_from)),
        ("due_to", time(&q.due_to)),
        ("custom_fields", q.custom_fields.clone()),
        ("q", q.q.clone()),
        ("sort", Some(q.sort.as_str().to_owned())),
        ("limit", Some(limit.to_string())),
        ("cursor", Some(cursor.to_owned())),
    ] {
        if let Some(v) = value {
            pairs.append_pair(name, &v);
        }
    }
    format!("/v1/cases?{}", pairs.finish())
}

/// The case list statement for a sort. Filters are nullable parameters in a fixed order:
/// $1 tenant, $2 status, $3 priority, $4 case type, $5 assignee, $6 team, $7 tag,
/// $8..$9 created range, $10..$11 due range, $12 custom fields (jsonb), $13 text,
/// $14..$15 cursor (sort key, id), $16 limit. Readers plan it per call (custom plans,
/// see `tenant_tx`), so an absent filter costs nothing and a present one uses its index.
pub fn list_sql(schema: &str, sort: Sort) -> String {
    let (key, key_type, descending) = sort.key();
    let (cmp, direction) = if descending { ("<", "DESC") } else { (">", "ASC") };
    format!(
        "SELECT {COLUMNS}, ({key})::text AS sort_key FROM {schema}.cases
         WHERE tenant_id = $1
           AND ($2::text IS NULL OR status = $2)
           AND ($3::text IS NULL OR priority = $3)
           AND ($4::uuid IS NULL OR case_type_id = $4)
           AND ($5::uuid IS NULL OR assigned_to = $5)
           AND ($6::uuid IS NULL OR assigned_team_id = $6)
           AND ($7::text IS NULL OR tags @> ARRAY[$7]::text[])
           AND ($8::timestamptz IS NULL OR created_at >= $8)
           AND ($9::timestamptz IS NULL OR created_at < $9)
           AND ($10::timestamptz IS NULL OR due_date >= $10)
           AND ($11::timestamptz IS NULL OR due_date < $11)
           AND ($12::jsonb IS NULL OR custom_fields @> $12)
           AND ($13::text IS NULL OR search_vector @@ websearch_to_tsquery('english', $13))
           AND ($14::text IS NULL OR ({key}, id) {cmp} ($14::{key_type}, $15::uuid))
         ORDER BY {key} {direction}, id {direction}
         LIMIT $16"
    )
}

#[utoipa::path(
    get,
    path = "/v1/cases",
    tag = "case-list",
    operation_id = "case_list_list",
    params(ListQuery),
    responses((status = 200, description = "A page of cases", body = PageBody<CaseRow, String>, headers(("Link" = String, description = "The next page's URL as `<url>; rel=\"next\"`; absent on the last page"))), runtime::openapi::Problems)
)]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    WaitFor(token): WaitFor,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant_member()?.tenant_id;
    let schema = Tenancy(tenant).pg_schema();
    let limit = page_size(q.limit, 25, 100)?;
    let after = q.cursor.as_deref().map(|c| list_cursor(c, q.sort)).transpose()?;
    let custom: Option<Value> = match &q.custom_fields {
        None => None,
        Some(raw) => match serde_json::from_str::<Value>(raw) {
            Ok(Value::Object(map)) => Some(Value::Object(map)),
            _ => {
                return Err(ApiError::BadRequest(
                    "custom_fields must be a JSON object of field values, e.g. {\"customer_id\":\"C-0042\"}".into(),
                ))
            }
        },
    };
    if let Some(text) = &q.q {
        if text.trim().is_empty() || text.len() > 256 {
            return Err(ApiError::BadRequest("q must be 1 to 256 characters of search text".into()));
        }
    }
    let rules = state.field_visibility.case_rules(&state.mongo, tenant).await;
    if let Some(Value::Object(filter)) = &custom {
        rules.check_filter(caller, filter)?;
    }
    wait_for_postgres(&state, tenant, token).await?;

    let (mut tx, _) = tenant_tx(&state.pool, caller).await?;
    let rows = sqlx::query(&list_sql(&schema, q.sort))
        .bind(tenant)
        .bind(q.status.map(Status::as_str))
        .bind(q.priority.map(Priority::as_str))
        .bind(q.case_type_id)
        .bind(q.assigned_to)
        .bind(q.team_id)
        .bind(&q.tag)
        .bind(q.created_from)
        .bind(q.created_to)
        .bind(q.due_from)
        .bind(q.due_to)
        .bind(custom)
        .bind(&q.q)
        .bind(after.as_ref().map(|a| a.0.clone()))
        .bind(after.as_ref().map(|a| a.1))
        .bind(limit.saturating_add(1))
        .fetch_all(&mut *tx)
        .await
        .or_else(missing_schema_is_empty)?;

    let has_more = rows.len() as i64 > limit;
    let mut items = rows.iter().take(limit as usize).map(case_json).collect::<Result<Vec<_>, _>>()?;
    items.iter_mut().for_each(|case| rules.strip_case(caller, case));
    let next_cursor = if has_more {
        rows.get((limit as usize).saturating_sub(1))
            .map(|r| -> Result<String, sqlx::Error> {
                let key = SortKey { sort: q.sort, key: r.try_get("sort_key")? };
                Ok(Cursor::new(key, r.try_get("id")?).encode())
            })
            .transpose()?
    } else {
        None
    };
    Ok(Page::new(items, next_cursor, |cursor| list_link(&q, limit, cursor)).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct QueueQuery {
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    cursor: Option<String>,
    #[allow(dead_code)]
    position: Option<String>,
}

/// The moment a case's clock runs out: its SLA resolution target, else its due date.
const URGENCY: &str =
    "COALESCE((metadata->'sla'->>'resolution_due')::timestamptz, due_date, '9999-12-31T00:00:00Z'::timestamptz)";

/// "My queue": open cases assigned to the caller or to one of their teams, the one whose
/// SLA runs out first on top (then the most urgent priority, then the oldest).
#[utoipa::path(
    get,
    path = "/v1/my/queue",
    tag = "case-list",
    operation_id = "case_list_queue",
    params(QueueQuery),
    responses((status = 200, description = "A page of the caller's queue", body = PageBody<CaseRow, String>, headers(("Link" = String, description = "The next page's URL as `<url>; rel=\"next\"`; absent on the last page"))), runtime::openapi::Problems)
)]
async fn queue(
    State(state): State<AppState>,
    caller: Caller,
    WaitFor(token): WaitFor,
    ApiQuery(q): ApiQuery<QueueQuery>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant_member()?.tenant_id;
    wait_for_postgres(&state, tenant, token).await?;
    let schema = Tenancy(tenant).pg_schema();
    let limit = page_size(q.limit, 25, 100)?;
    let after = q.cursor.as_deref().map(Cursor::<DateTime<Utc>>::decode).transpose()?;
    let rules = state.field_visibility.case_rules(&state.mongo, tenant).await;
    let (mut tx, _) = tenant_tx(&state.pool, caller).await?;
    let finished = events::case::Status::finished_sql();
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS}, {URGENCY} AS urgency FROM {schema}.cases
         WHERE tenant_id = $1
           AND status NOT IN ({finished})
           AND (assigned_to = $2 OR assigned_team_id IN
                (SELECT team_id FROM {schema}.team_members WHERE user_id = $2))
           AND ($3::timestamptz IS NULL OR ({URGENCY}, id) > ($3, $4))
         ORDER BY {URGENCY}, id
         LIMIT $5"
    ))
    .bind(tenant)
    .bind(caller.user_id)
    .bind(after.as_ref().map(|a| a.key))
    .bind(after.as_ref().map(|a| a.id))
    .bind(limit.saturating_add(1))
    .fetch_all(&mut *tx)
    .await
    .or_else(missing_schema_is_empty)?;
    let has_more = rows.len() as i64 > limit;
    let mut items = Vec::with_capacity(rows.len().min(limit as usize));
    let now = Utc::now();
    for row in rows.iter().take(limit as usize) {
        let mut case = case_json(row)?;
        rules.strip_case(caller, &mut case);
        case["sla"] = sla_state(&case, now);
        items.push(case);
    }
    let next_cursor = if has_more {
        rows.get((limit as usize).saturating_sub(1))
            .map(|r| -> Result<String, sqlx::Error> {
                Ok(Cursor::new(r.try_get::<DateTime<Utc>, _>("urgency")?, r.try_get("id")?).encode())
            })
            .transpose()?
    } else {
        None
    };
    Ok(Page::new(items, next_cursor, |cursor| format!("/v1/my/queue?limit={limit}&cursor={cursor}")).into_response())
}
