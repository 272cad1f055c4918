//! Webhook subscriptions and their delivery log (`webhooks:manage`): what is queued, what
//! was delivered, and the dead letters of a receiver that kept failing, newest first.
//! Secrets are never read here (they live on the write side only).

use axum::extract::State;
use axum::response::Response;
use axum::Json;
use chrono::{DateTime, Utc};
use runtime::auth::{Caller, Permission};
use runtime::extract::{ApiPath, ApiQuery};
use runtime::openapi::Problems;
use runtime::ApiError;
use serde::Deserialize;
use serde_json::Value;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::entities::{page, PageQuery};
use super::entity_answers::{Delivery, Webhook};
use super::{page_size, tenant_tx, wait_for_postgres, AppState};
use crate::consistency::WaitFor;
use crate::cursor::{Cursor, PageBody};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list)).routes(routes!(one)).routes(routes!(deliveries))
}

const SHAPE: &str = "jsonb_build_object('id', w.id, 'url', w.url, 'event_types', to_jsonb(w.event_types),
    'description', w.description, 'active', w.active, 'created_at', w.created_at, 'updated_at', w.updated_at,
    'version', w.version)";

/// The caller, if they may manage webhooks, with their tenant.
fn manager(caller: Caller) -> Result<Caller, ApiError> {
    caller.tenant_member()?.require(Permission::WebhooksManage)
}

/// The keyset cursor after the last row of a full page (`created_at`, `key`).
fn cursor_after(rows: &[(DateTime<Utc>, Uuid, Value)], limit: i64) -> Option<String> {
    if rows.len() as i64 <= limit {
        return None;
    }
    let (at, id, _) = rows.get(usize::try_from(limit).ok()?.checked_sub(1)?)?;
    Some(Cursor::new(*at, *id).encode())
}

#[utoipa::path(
    get,
    path = "/v1/webhooks",
    tag = "webhooks",
    operation_id = "webhooks_list",
    params(PageQuery),
    responses((status = 200, description = "A page of webhooks, newest first", body = PageBody<Webhook, String>, headers(("Link" = String, description = "The next page's URL as `<url>; rel=\"next\"`; absent on the last page"))), Problems)
)]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    WaitFor(token): WaitFor,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    let caller = manager(caller)?;
    wait_for_postgres(&state, caller.tenant_id, token).await?;
    let limit = page_size(q.limit, 25, 100)?;
    let after = q.cursor.as_deref().map(Cursor::<DateTime<Utc>>::decode).transpose()?;
    let (mut tx, tenant) = tenant_tx(&state.pool, caller).await?;
    let rows: Vec<(DateTime<Utc>, Uuid, Value)> = sqlx::query_as(&format!(
        "SELECT w.created_at, w.id, {SHAPE} FROM projector.webhooks w
         WHERE w.tenant_id = $1 AND NOT w.deleted AND ($2::timestamptz IS NULL OR (w.created_at, w.id) < ($2, $3))
         ORDER BY w.created_at DESC, w.id DESC LIMIT $4"
    ))
    .bind(tenant)
    .bind(after.as_ref().map(|a| a.key))
    .bind(after.as_ref().map(|a| a.id))
    .bind(limit.saturating_add(1))
    .fetch_all(&mut *tx)
    .await?;
    let next = cursor_after(&rows, limit);
    let items = rows.into_iter().take(limit as usize).map(|(_, _, v)| v).collect();
    Ok(page("webhooks", limit, items, next))
}

#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "webhooks", operation_id = "webhooks_get", params(("id" = Uuid, Path)),
    responses((status = 200, description = "The webhook", body = Webhook), Problems))]
async fn one(
    State(state): State<AppState>,
    caller: Caller,
    WaitFor(token): WaitFor,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Value>, ApiError> {
    let caller = manager(caller)?;
    wait_for_postgres(&state, caller.tenant_id, token).await?;
    let (mut tx, tenant) = tenant_tx(&state.pool, caller).await?;
    found(&mut tx, tenant, id).await.map(Json)
}

/// The tenant's webhook, or a 404 (another tenant's is no different from none).
async fn found(tx: &mut sqlx::PgConnection, tenant: Uuid, id: Uuid) -> Result<Value, ApiError> {
    let webhook: Option<Value> = sqlx::query_scalar(&format!(
        "SELECT {SHAPE} FROM projector.webhooks w WHERE w.tenant_id = $1 AND w.id = $2 AND NOT w.deleted"
    ))
    .bind(tenant)
    .bind(id)
    .fetch_optional(tx)
    .await?;
    webhook.ok_or_else(|| ApiError::NotFound(format!("no webhook {id} in this tenant")))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DeliveryQuery {
    /// pending, delivered or dead (the dead letters).
    status: Option<DeliveryStatus>,
    /// Page size, 1 to 100 (default 25).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// A command's position token: wait until the read model holds that write.
    #[allow(dead_code)]
    position: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Dead,
}

impl DeliveryStatus {
    fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
        }
    }
}

/// The webhook's deliveries, newest event first: status, attempts, the receiver's last
/// answer or error, when it was delivered or is next tried, and the body sent.
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks", operation_id = "webhooks_deliveries", params(("id" = Uuid, Path), DeliveryQuery),
    responses((status = 200, description = "A page of deliveries, newest first", body = PageBody<Delivery, String>, headers(("Link" = String, description = "The next page's URL as `<url>; rel=\"next\"`; absent on the last page"))), Problems))]
async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    WaitFor(token): WaitFor,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<DeliveryQuery>,
) -> Result<Response, ApiError> {
    let caller = manager(caller)?;
    wait_for_postgres(&state, caller.tenant_id, token).await?;
    let limit = page_size(q.limit, 25, 100)?;
    let after = q.cursor.as_deref().map(Cursor::<DateTime<Utc>>::decode).transpose()?;
    let (mut tx, tenant) = tenant_tx(&state.pool, caller).await?;
    found(&mut tx, tenant, id).await?;
    let rows: Vec<(DateTime<Utc>, Uuid, Value)> = sqlx::query_as(
        "SELECT d.created_at, d.event_id, jsonb_build_object('event_id', d.event_id, 'event_type', d.event_type,
            'status', d.status, 'attempts', d.attempts, 'last_status', d.last_status, 'last_error', d.last_error,
            'created_at', d.created_at, 'delivered_at', d.delivered_at,
            'next_attempt_at', CASE WHEN d.status = 'pending' THEN d.next_attempt_at END, 'body', d.body)
         FROM projector.webhook_deliveries d
         WHERE d.tenant_id = $1 AND d.webhook_id = $2 AND ($3::text IS NULL OR d.status = $3)
           AND ($4::timestamptz IS NULL OR (d.created_at, d.event_id) < ($4, $5))
         ORDER BY d.created_at DESC, d.event_id DESC LIMIT $6",
    )
    .bind(tenant)
    .bind(id)
    .bind(q.status.map(DeliveryStatus::as_str))
    .bind(after.as_ref().map(|a| a.key))
    .bind(after.as_ref().map(|a| a.id))
    .bind(limit.saturating_add(1))
    .fetch_all(&mut *tx)
    .await?;
    let next = cursor_after(&rows, limit);
    let items = rows.into_iter().take(limit as usize).map(|(_, _, v)| v).collect();
    let path = match q.status {
        Some(status) => format!("webhooks/{id}/deliveries?status={}", status.as_str()),
        None => format!("webhooks/{id}/deliveries"),
    };
    Ok(page(&path, limit, items, next))
}
