//! Lists and single reads of the tenant's configuration and people, from the relational
//! read model (users, teams with members, case types, workflows, channels) and from
//! MongoDB (custom field definitions, message templates); tenants for platform admins.
//!
//! Every list is newest first with a keyset cursor over (created_at, id) and a `Link`
//! header; rows come out as JSON built by PostgreSQL (`to_jsonb`), minus secrets.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use events::StreamType;
use futures::TryStreamExt;
use mongodb::bson::{doc, Document};
use runtime::auth::{Caller, Permission};
use runtime::extract::{ApiPath, ApiQuery};
use runtime::openapi::Problems;
use runtime::tenancy::Tenancy;
use runtime::ApiError;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::entity_answers as answers;
use super::{missing_schema_is_empty, page_size, tenant_tx, wait_for_postgres, AppState};
use crate::consistency::{wait_until, Wait, WaitFor};
use crate::cursor::{Cursor, Page, PageBody};

/// A table of the tenant schema served as a resource.
#[derive(Clone, Copy)]
pub struct Table {
    path: &'static str,
    table: &'static str,
    /// A JSON expression over the row `t`: what a client sees of it.
    shape: &'static str,
    /// A field shown only to callers holding the permission.
    restricted: Option<(&'static str, Permission)>,
}

impl Table {
    /// What this caller sees of a row: the shape, less what their rights do not reach.
    fn shape_for(&self, caller: Caller, schema: &str) -> String {
        let shape = self.shape.replace("{schema}", schema);
        match self.restricted {
            Some((field, permission)) if caller.require(permission).is_err() => format!("({shape}) - '{field}'"),
            _ => shape,
        }
    }
}

const USERS: Table = Table { path: "users", table: "users", shape: "to_jsonb(t) - 'password_hash'", restricted: None };
const TEAMS: Table = Table {
    path: "teams",
    table: "teams",
    shape: "to_jsonb(t) || jsonb_build_object('members', COALESCE((
                    SELECT jsonb_agg(jsonb_build_object('user_id', m.user_id, 'role', m.role, 'joined_at', m.joined_at)
                                     ORDER BY m.joined_at, m.user_id)
                    FROM {schema}.team_members m WHERE m.team_id = t.id), '[]'::jsonb))",
    restricted: None,
};
const CASE_TYPES: Table = Table { path: "case-types", table: "case_types", shape: "to_jsonb(t)", restricted: None };
const WORKFLOWS: Table = Table { path: "workflows", table: "workflows", shape: "to_jsonb(t)", restricted: None };
/// A channel's configuration (endpoints, accounts; credentials only as set-or-not
/// markers) is for those who manage channels.
const CHANNELS: Table = Table {
    path: "channels",
    table: "channels",
    shape: "to_jsonb(t)",
    restricted: Some(("configuration", Permission::ChannelsManage)),
};

/// A collection of the tenant's MongoDB documents served as a resource.
#[derive(Clone, Copy)]
pub struct Collection {
    path: &'static str,
    collection: &'static str,
    /// The kind of stream whose documents these are (what a position token must name).
    kind: StreamType,
}

const CUSTOM_FIELDS: Collection =
    Collection { path: "custom-fields", collection: "custom_field_definitions", kind: StreamType::CustomField };
const TEMPLATES: Collection =
    Collection { path: "message-templates", collection: "message_templates", kind: StreamType::MessageTemplate };

impl Collection {
    /// The wait of a read of this collection: a token of its own kind of stream only.
    fn wait(&self, wait: Option<Wait>) -> Result<Option<Wait>, ApiError> {
        Wait::of_kind(wait, &[self.kind], &format!("/v1/{}", self.path))
    }
}

/// A documented list and read handler pair for a resource (`utoipa` needs literal paths).
macro_rules! resource_handlers {
    ($list:ident, $get:ident, $list_rows:ident, $get_row:ident, $resource:expr, $answer:ty, $path:literal, $item:literal, $tag:literal) => {
        #[doc = concat!("Lists ", $tag, ", newest first (keyset cursor).")]
        #[utoipa::path(get, path = $path, tag = $tag, operation_id = stringify!($list), params(PageQuery),
            responses((status = 200, description = "A page, newest first", body = PageBody<$answer, String>, headers(("Link" = String, description = "The next page's URL as `<url>; rel=\"next\"`; absent on the last page"))), Problems))]
        async fn $list(
            state: State<AppState>,
            caller: Caller,
            token: WaitFor,
            q: ApiQuery<PageQuery>,
        ) -> Result<Response, ApiError> {
            $list_rows($resource, state, caller, token, q).await
        }

        #[doc = concat!("Reads one of the ", $tag, ".")]
        #[utoipa::path(get, path = $item, tag = $tag, operation_id = stringify!($get), params(("id" = Uuid, Path)),
            responses((status = 200, description = "The one asked for", body = $answer), Problems))]
        async fn $get(
            state: State<AppState>,
            caller: Caller,
            token: WaitFor,
            id: ApiPath<Uuid>,
        ) -> Result<Json<Value>, ApiError> {
            $get_row($resource, state, caller, token, id).await
        }
    };
}

resource_handlers!(
    list_users,
    get_user,
    list_rows,
    get_row,
    USERS,
    answers::User,
    "/v1/users",
    "/v1/users/{id}",
    "users"
);
resource_handlers!(
    list_teams,
    get_team,
    list_rows,
    get_row,
    TEAMS,
    answers::Team,
    "/v1/teams",
    "/v1/teams/{id}",
    "teams"
);
resource_handlers!(
    list_case_types,
    get_case_type,
    list_rows,
    get_row,
    CASE_TYPES,
    answers::CaseType,
    "/v1/case-types",
    "/v1/case-types/{id}",
    "case-types"
);
resource_handlers!(
    list_workflows,
    get_workflow,
    list_rows,
    get_row,
    WORKFLOWS,
    answers::Workflow,
    "/v1/workflows",
    "/v1/workflows/{id}",
    "workflows"
);
resource_handlers!(
    list_channels,
    get_channel,
    list_rows,
    get_row,
    CHANNELS,
    answers::Channel,
    "/v1/channels",
    "/v1/channels/{id}",
    "channels"
);
resource_handlers!(
    list_custom_fields,
    get_custom_field,
    list_documents,
    get_document,
    CUSTOM_FIELDS,
    answers::CustomField,
    "/v1/custom-fields",
    "/v1/custom-fields/{id}",
    "custom-fields"
);
resource_handlers!(
    list_templates,
    get_template,
    list_documents,
    get_document,
    TEMPLATES,
    answers::MessageTemplate,
    "/v1/message-templates",
    "/v1/message-templates/{id}",
    "message-templates"
);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tenants))
        .routes(routes!(get_tenant))
        .routes(routes!(list_users))
        .routes(routes!(get_user))
        .routes(routes!(list_teams))
        .routes(routes!(get_team))
        .routes(routes!(list_case_types))
        .routes(routes!(get_case_type))
        .routes(routes!(list_workflows))
        .routes(routes!(get_workflow))
        .routes(routes!(list_channels))
        .routes(routes!(get_channel))
        .routes(routes!(list_custom_fields))
        .routes(routes!(get_custom_field))
        .routes(routes!(list_templates))
        .routes(routes!(get_template))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1 to 100 (default 25).
    #[param(minimum = 1, maximum = 100)]
    pub(super) limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub(super) cursor: Option<String>,
    /// A command's position token: wait until this read model holds that write.
    #[allow(dead_code)]
    position: Option<String>,
}

/// `{items, next_cursor}` and a `Link: rel="next"` header when there is more.
pub(super) fn page(path: &str, limit: i64, items: Vec<Value>, next_cursor: Option<String>) -> Response {
    // `path` may carry the list's filters (`webhooks/{id}/deliveries?status=dead`).
    let sep = if path.contains('?') { '&' } else { '?' };
    Page::new(items, next_cursor, |cursor| format!("/v1/{path}{sep}limit={limit}&cursor={cursor}")).into_response()
}

/// The keyset cursor after the last item of a full page.
fn cursor_after(items: &[Value], limit: i64, has_more: bool) -> Option<String> {
    if !has_more {
        return None;
    }
    let last = items.get((limit as usize).saturating_sub(1))?;
    let at: DateTime<Utc> = serde_json::from_value(last["created_at"].clone()).ok()?;
    let id: Uuid = serde_json::from_value(last["id"].clone()).ok()?;
    Some(Cursor::new(at, id).encode())
}

async fn list_rows(
    table: Table,
    State(state): State<AppState>,
    caller: Caller,
    WaitFor(token): WaitFor,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant_member()?.tenant_id;
    wait_for_postgres(&state, tenant, token).await?;
    let schema = Tenancy(tenant).pg_schema();
    let limit = page_size(q.limit, 25, 100)?;
    let after = q.cursor.as_deref().map(Cursor::<DateTime<Utc>>::decode).transpose()?;
    let shape = table.shape_for(caller, &schema);
    let (mut tx, _) = tenant_tx(&state.pool, caller).await?;
    let rows: Vec<Value> = sqlx::query_scalar(&format!(
        "SELECT {shape} FROM {schema}.{} t
         WHERE t.tenant_id = $1 AND ($2::timestamptz IS NULL OR (t.created_at, t.id) < ($2, $3))
         ORDER BY t.created_at DESC, t.id DESC LIMIT $4",
        table.table
    ))
    .bind(tenant)
    .bind(after.as_ref().map(|a| a.key))
    .bind(after.as_ref().map(|a| a.id))
    .bind(limit.saturating_add(1))
    .fetch_all(&mut *tx)
    .await
    .or_else(missing_schema_is_empty)?;
    let has_more = rows.len() as i64 > limit;
    let next = cursor_after(&rows, limit, has_more);
    Ok(page(table.path, limit, rows.into_iter().take(limit as usize).collect(), next))
}

async fn get_row(
    table: Table,
    State(state): State<AppState>,
    caller: Caller,
    WaitFor(token): WaitFor,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Value>, ApiError> {
    let tenant = caller.tenant_member()?.tenant_id;
    wait_for_postgres(&state, tenant, token).await?;
    let schema = Tenancy(tenant).pg_schema();
    let shape = table.shape_for(caller, &schema);
    let (mut tx, _) = tenant_tx(&state.pool, caller).await?;
    let row: Option<Value> =
        sqlx::query_scalar(&format!("SELECT {shape} FROM {schema}.{} t WHERE t.id = $1", table.table))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .or_else(missing_schema_is_empty)?;
    row.map(Json).ok_or_else(|| ApiError::NotFound(format!("{} {id} not found", table.path.trim_end_matches('s'))))
}

fn mongo_unavailable(e: mongodb::error::Error) -> ApiError {
    tracing::error!(error = %e, "MongoDB read failed");
    ApiError::Unavailable("the document store is not reachable".into())
}

/// BSON to plain JSON: `_id` becomes `id`, dates RFC 3339.
pub fn document_json(mut doc: Document) -> Value {
    let id = doc.remove("_id");
    let mut value = serde_json::to_value(mongodb::bson::Bson::Document(doc).into_relaxed_extjson()).unwrap_or_default();
    for field in ["created_at", "updated_at", "deleted_at"] {
        if let Some(date) = value.get(field).and_then(|d| d.get("$date")).cloned() {
            value[field] = date;
        }
    }
    if let Some(id) = id {
        value["id"] = json!(id.to_string().trim_matches('"'));
    }
    value
}

/// Waits until the collection holds the token's document at the token's version (the
/// token of a command on this kind of document).
pub(super) async fn wait_for_document(
    coll: &mongodb::Collection<Document>,
    token: Option<Wait>,
    limit: std::time::Duration,
) -> Result<(), ApiError> {
    wait_until(token, limit, crate::consistency::Store::Mongo, |t| async move {
        let found = coll.find_one(doc! { "_id": t.stream_id.to_string() }).await.map_err(mongo_unavailable)?;
        Ok(found.and_then(|d| d.get_i64("version").ok()).unwrap_or(0))
    })
    .await
}

async fn list_documents(
    collection: Collection,
    State(state): State<AppState>,
    caller: Caller,
    WaitFor(token): WaitFor,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant_member()?.tenant_id;
    let limit = page_size(q.limit, 25, 100)?;
    let coll = state.mongo.collection::<Document>(&Tenancy(tenant).mongo_collection(collection.collection));
    wait_for_document(&coll, collection.wait(token)?, state.read_wait).await?;
    // Ids are v7 UUIDs, so `_id` order is creation order; the cursor is the last id seen.
    let mut filter = doc! { "tenant_id": tenant.to_string() };
    if let Some(cursor) = &q.cursor {
        let before: Uuid = cursor.parse().map_err(|_| {
            ApiError::BadRequest("the cursor is malformed; pass next_cursor from the previous page".into())
        })?;
        filter.insert("_id", doc! { "$lt": before.to_string() });
    }
    let docs: Vec<Document> = coll
        .find(filter)
        .sort(doc! { "_id": -1 })
        .limit(limit.saturating_add(1))
        .await
        .map_err(mongo_unavailable)?
        .try_collect()
        .await
        .map_err(mongo_unavailable)?;
    let has_more = docs.len() as i64 > limit;
    let items: Vec<Value> = docs.into_iter().take(limit as usize).map(document_json).collect();
    let next = if has_more { items.last().and_then(|d| d["id"].as_str()).map(str::to_owned) } else { None };
    Ok(page(collection.path, limit, items, next))
}

async fn get_document(
    collection: Collection,
    State(state): State<AppState>,
    caller: Caller,
    WaitFor(token): WaitFor,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Value>, ApiError> {
    let tenant = caller.tenant_member()?.tenant_id;
    let coll = state.mongo.collection::<Document>(&Tenancy(tenant).mongo_collection(collection.collection));
    wait_for_document(&coll, collection.wait(token)?, state.read_wait).await?;
    let found = coll.find_one(doc! { "_id": id.to_string() }).await.map_err(mongo_unavailable)?;
    found
        .map(|d| Json(document_json(d)))
        .ok_or_else(|| ApiError::NotFound(format!("{} {id} not found", collection.path.trim_end_matches('s'))))
}

/// Platform administrators list every tenant.
#[utoipa::path(
    get,
    path = "/v1/tenants",
    tag = "tenants",
    operation_id = "tenants_list_tenants",
    params(PageQuery),
    responses((status = 200, description = "A page of tenants, newest first", body = PageBody<answers::Tenant, String>, headers(("Link" = String, description = "The next page's URL as `<url>; rel=\"next\"`; absent on the last page"))), Problems)
)]
async fn list_tenants(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    let mut tx = super::platform_tx(&state.pool, caller).await?;
    let limit = page_size(q.limit, 25, 100)?;
    let after = q.cursor.as_deref().map(Cursor::<DateTime<Utc>>::decode).transpose()?;
    let rows: Vec<Value> = sqlx::query_scalar(
        "SELECT to_jsonb(t) FROM public.tenants t
         WHERE $1::timestamptz IS NULL OR (t.created_at, t.id) < ($1, $2)
         ORDER BY t.created_at DESC, t.id DESC LIMIT $3",
    )
    .bind(after.as_ref().map(|a| a.key))
    .bind(after.as_ref().map(|a| a.id))
    .bind(limit.saturating_add(1))
    .fetch_all(&mut *tx)
    .await?;
    let has_more = rows.len() as i64 > limit;
    let next = cursor_after(&rows, limit, has_more);
    Ok(page("tenants", limit, rows.into_iter().take(limit as usize).collect(), next))
}

/// A tenant: platform administrators read any, a tenant's members their own.
#[utoipa::path(get, path = "/v1/tenants/{id}", tag = "tenants", operation_id = "tenants_get_tenant", params(("id" = Uuid, Path)),
    responses((status = 200, description = "The tenant", body = answers::Tenant), Problems))]
async fn get_tenant(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Value>, ApiError> {
    let mut tx = if caller.platform_admin().is_ok() {
        super::platform_tx(&state.pool, caller).await?
    } else if caller.tenant_member()?.tenant_id == id {
        super::tenant_tx(&state.pool, caller).await?.0
    } else {
        return Err(ApiError::NotFound(format!("tenant {id} not found")));
    };
    let row: Option<Value> = sqlx::query_scalar("SELECT to_jsonb(t) FROM public.tenants t WHERE t.id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    row.map(Json).ok_or_else(|| ApiError::NotFound(format!("tenant {id} not found")))
}
