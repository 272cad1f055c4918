//! A user marks their notifications read (one, or all until now). What was read is an
//! event on the user's own stream, so the notification store (Redis) shows it again after
//! a rebuild; the list, its read flags and the unread count are served by the query API.

use axum::extract::State;
use axum::http::StatusCode;
use events::user::{self, UserCommand};
use runtime::extract::ApiPath;
use runtime::ApiError;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{AppState, CommandReply, NoBody};
use crate::context::CommandContext;
use crate::journal::{fingerprint, Lookup};
use crate::versioned::Versioned;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(read)).routes(routes!(read_all))
}

/// Marks one of the caller's notifications read (its id as `GET /v1/notifications` lists
/// it). Answers with the caller's user stream; pass its position to the list to see it.
#[utoipa::path(post, path = "/v1/notifications/{id}/read", tag = "notifications", operation_id = "notifications_read", params(("id" = Uuid, Path)), request_body = NoBody, responses(runtime::openapi::CommandAnswered))]
async fn read(
    State(state): State<AppState>,
    ctx: CommandContext,
    ApiPath(id): ApiPath<Uuid>,
    _: Versioned<NoBody>,
) -> Result<CommandReply, ApiError> {
    run(&state, &ctx, fingerprint("read_notification", Some(id), &()), vec![id], false).await
}

/// Marks every notification of the caller about something that happened until now read.
#[utoipa::path(post, path = "/v1/notifications/read-all", tag = "notifications", operation_id = "notifications_read_all", request_body = NoBody, responses(runtime::openapi::CommandAnswered))]
async fn read_all(
    State(state): State<AppState>,
    ctx: CommandContext,
    _: Versioned<NoBody>,
) -> Result<CommandReply, ApiError> {
    run(&state, &ctx, fingerprint("read_all_notifications", None, &()), vec![], true).await
}

/// Only a user of the tenant reads their own notifications: not a platform or operator
/// token, and not a user who may no longer act.
async fn run(
    state: &AppState,
    ctx: &CommandContext,
    hash: String,
    ids: Vec<Uuid>,
    all: bool,
) -> Result<CommandReply, ApiError> {
    let caller = ctx.caller.tenant_member()?;
    if caller.operator {
        return Err(ApiError::Forbidden("an operator token has no notifications; use a user's login token".into()));
    }
    super::acting_user(state, &caller).await?;
    let cmd = UserCommand::ReadNotifications { ids, all };
    super::decide_in_tenant::<user::User>(state, ctx, caller.user_id, hash, Lookup::Nothing, StatusCode::OK, &cmd).await
}
