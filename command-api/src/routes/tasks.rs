//! Task commands: create on a case, assign, change status, complete. The case must exist
//! and not be closed; an assignee must be an active user of the tenant (422 otherwise).

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use events::case::{Priority, Status};
use events::reference::Reference;
use events::task::{self, TaskCommand, TaskStatus};
use runtime::auth::Permission;
use runtime::extract::ApiPath;
use runtime::ApiError;
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::AppState;
use super::CommandReply;
use crate::context::CommandContext;
use crate::journal::{fingerprint, Lookup};
use crate::versioned::{CommandSchema, Versioned};
use events::case;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(assign))
        .routes(routes!(change_status))
        .routes(routes!(complete))
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TaskCreateBody)]
struct CreateBody {
    title: String,
    description: Option<String>,
    #[serde(default)]
    priority: Priority,
    assigned_to: Option<Uuid>,
    due_date: Option<DateTime<Utc>>,
}

impl CommandSchema for CreateBody {
    const NAME: &'static str = "create_task";
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TaskAssignBody)]
struct AssignBody {
    assigned_to: Option<Uuid>,
}

impl CommandSchema for AssignBody {
    const NAME: &'static str = "assign_task";
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TaskStatusBody)]
struct StatusBody {
    status: TaskStatus,
}

impl CommandSchema for StatusBody {
    const NAME: &'static str = "change_task_status";
}

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Empty {}

impl CommandSchema for Empty {
    const NAME: &'static str = "complete_task";
}

#[utoipa::path(post, path = "/v1/cases/{id}/tasks", tag = "tasks", operation_id = "tasks_create", params(("id" = Uuid, Path)), request_body = CreateBody, responses(runtime::openapi::CommandAnswered))]
async fn create(
    State(state): State<AppState>,
    ctx: CommandContext,
    ApiPath(case_id): ApiPath<Uuid>,
    Versioned { body, .. }: Versioned<CreateBody>,
) -> Result<CommandReply, ApiError> {
    let tenant = ctx.caller.require(Permission::CasesUpdate)?.tenant_id;
    super::acting_user(&state, &ctx.caller).await?;
    let hash = fingerprint(CreateBody::NAME, Some(case_id), &body);
    let case = match state.journal.state::<case::Case>(tenant, case_id).await? {
        None => Reference::Missing,
        Some(c) if c.status == Status::Closed => Reference::Inactive,
        Some(_) => Reference::Usable,
    };
    let cmd = TaskCommand::Create {
        case_id,
        case,
        title: body.title,
        description: body.description,
        priority: body.priority,
        assigned_to: body.assigned_to,
        assignee: super::user_reference(&state, tenant, body.assigned_to).await?,
        due_date: body.due_date,
    };
    let id = Uuid::now_v7();
    Ok(super::decide_in_tenant::<task::Task>(&state, &ctx, id, hash, Lookup::Nothing, StatusCode::CREATED, cmd)
        .await?
        .at(format!("/v1/tasks/{id}")))
}

#[utoipa::path(post, path = "/v1/tasks/{id}/assignment", tag = "tasks", operation_id = "tasks_assign", params(("id" = Uuid, Path)), request_body = AssignBody, responses(runtime::openapi::CommandAnswered))]
async fn assign(
    State(state): State<AppState>,
    ctx: CommandContext,
    ApiPath(id): ApiPath<Uuid>,
    Versioned { body, .. }: Versioned<AssignBody>,
) -> Result<CommandReply, ApiError> {
    let tenant = ctx.caller.require(Permission::CasesAssign)?.tenant_id;
    let hash = fingerprint(AssignBody::NAME, Some(id), &body);
    let cmd = TaskCommand::Assign {
        assigned_to: body.assigned_to,
        assignee: super::user_reference(&state, tenant, body.assigned_to).await?,
    };
    super::change::<task::Task>(&state, &ctx, id, hash, cmd).await
}

#[utoipa::path(post, path = "/v1/tasks/{id}/status", tag = "tasks", operation_id = "tasks_change_status", params(("id" = Uuid, Path)), request_body = StatusBody, responses(runtime::openapi::CommandAnswered))]
async fn change_status(
    State(state): State<AppState>,
    ctx: CommandContext,
    ApiPath(id): ApiPath<Uuid>,
    Versioned { body, .. }: Versioned<StatusBody>,
) -> Result<CommandReply, ApiError> {
    ctx.caller.require(Permission::CasesUpdate)?;
    let hash = fingerprint(StatusBody::NAME, Some(id), &body);
    super::change::<task::Task>(&state, &ctx, id, hash, TaskCommand::ChangeStatus { status: body.status }).await
}

#[utoipa::path(post, path = "/v1/tasks/{id}/complete", tag = "tasks", operation_id = "tasks_complete", params(("id" = Uuid, Path)), responses(runtime::openapi::CommandAnswered))]
async fn complete(
    State(state): State<AppState>,
    ctx: CommandContext,
    ApiPath(id): ApiPath<Uuid>,
    Versioned { body, .. }: Versioned<Empty>,
) -> Result<CommandReply, ApiError> {
    ctx.caller.require(Permission::CasesUpdate)?;
    let hash = fingerprint(Empty::NAME, Some(id), &body);
    super::change::<task::Task>(&state, &ctx, id, hash, TaskCommand::ChangeStatus { status: TaskStatus::Done }).await
}
