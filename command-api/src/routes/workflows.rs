//! Workflow commands (tenant administrators): create with stages, transitions, actions
//! and SLA targets; update; deactivate (cases of its types cannot open) and activate.

use axum::extract::State;
use axum::http::StatusCode;
use events::workflow::{self, WorkflowCommand, WorkflowDefinition};
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

const KIND: &str = "workflow";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(update))
        .routes(routes!(deactivate))
        .routes(routes!(activate))
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WorkflowCreateBody)]
struct CreateBody {
    name: String,
    description: Option<String>,
    #[schema(value_type = Object)]
    definition: WorkflowDefinition,
    /// Optional: lets an administrator choose the id (e.g. a well-known demo workflow).
    id: Option<Uuid>,
}

impl CommandSchema for CreateBody {
    const NAME: &'static str = "create_workflow";
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WorkflowUpdateBody)]
struct UpdateBody {
    name: Option<String>,
    #[serde(default, deserialize_with = "crate::versioned::present")]
    description: Option<Option<String>>,
    #[schema(value_type = Option<Object>)]
    definition: Option<WorkflowDefinition>,
}

impl CommandSchema for UpdateBody {
    const NAME: &'static str = "update_workflow";
}

#[utoipa::path(post, path = "/v1/workflows", tag = "workflows", operation_id = "workflows_create", request_body = CreateBody, responses(runtime::openapi::CommandAnswered))]
async fn create(
    State(state): State<AppState>,
    ctx: CommandContext,
    Versioned { body, .. }: Versioned<CreateBody>,
) -> Result<CommandReply, ApiError> {
    ctx.caller.require(Permission::WorkflowsManage)?;
    let hash = fingerprint(CreateBody::NAME, None, &body);
    let id = super::chosen_id(body.id)?;
    let lookup = Lookup::UniqueName { kind: KIND, name: body.name.trim().to_lowercase() };
    let targets = super::action_targets(&state, ctx.caller.tenant_id, &body.definition).await?;
    let cmd = WorkflowCommand::Create {
        name: body.name,
        description: body.description,
        definition: body.definition,
        targets,
    };
    Ok(super::decide_in_tenant::<workflow::Workflow>(&state, &ctx, id, hash, lookup, StatusCode::CREATED, cmd)
        .await?
        .at(format!("/v1/workflows/{id}")))
}

#[utoipa::path(patch, path = "/v1/workflows/{id}", tag = "workflows", operation_id = "workflows_update", params(("id" = Uuid, Path)), request_body = UpdateBody, responses(runtime::openapi::CommandAnswered))]
async fn update(
    State(state): State<AppState>,
    ctx: CommandContext,
    ApiPath(id): ApiPath<Uuid>,
    Versioned { body, .. }: Versioned<UpdateBody>,
) -> Result<CommandReply, ApiError> {
    ctx.caller.require(Permission::WorkflowsManage)?;
    let hash = fingerprint(UpdateBody::NAME, Some(id), &body);
    let lookup = match &body.name {
        Some(name) => Lookup::UniqueName { kind: KIND, name: name.trim().to_lowercase() },
        None => Lookup::Nothing,
    };
    let targets = match &body.definition {
        Some(definition) => super::action_targets(&state, ctx.caller.tenant_id, definition).await?,
        None => Default::default(),
    };
    let cmd = WorkflowCommand::Update {
        name: body.name,
        description: body.description,
        definition: body.definition,
        targets,
    };
    super::decide_in_tenant::<workflow::Workflow>(&state, &ctx, id, hash, lookup, StatusCode::OK, cmd).await
}

activation_handlers!(
    workflow::Workflow,
    "workflow",
    "workflows",
    "/v1/workflows/{id}/deactivate",
    "/v1/workflows/{id}/activate",
    Permission::WorkflowsManage,
    WorkflowCommand::Deactivate,
    WorkflowCommand::Activate
);
