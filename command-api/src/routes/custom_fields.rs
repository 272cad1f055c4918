//! Custom field definition commands (tenant administrators): define a field of cases,
//! interactions or users; update its spec; deactivate and activate it.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use events::field_definition::{self, EntityType, FieldDefinitionCommand, FieldSpec};
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

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(define))
        .routes(routes!(update))
        .routes(routes!(deactivate))
        .routes(routes!(activate))
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct DefineBody {
    entity_type: EntityType,
    field_name: String,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    spec: FieldSpec,
}

impl CommandSchema for DefineBody {
    const NAME: &'static str = "define_custom_field";
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CustomFieldUpdateBody)]
struct UpdateBody {
    #[serde(flatten)]
    #[schema(value_type = Object)]
    spec: FieldSpec,
}

impl CommandSchema for UpdateBody {
    const NAME: &'static str = "update_custom_field";
}

#[utoipa::path(post, path = "/v1/custom-fields", tag = "custom-fields", operation_id = "custom_fields_define", request_body = DefineBody, responses(runtime::openapi::CommandAnswered))]
async fn define(
    State(state): State<AppState>,
    ctx: CommandContext,
    Versioned { body, .. }: Versioned<DefineBody>,
) -> Result<CommandReply, ApiError> {
    ctx.caller.require(Permission::CustomFieldsManage)?;
    let hash = fingerprint(DefineBody::NAME, None, &body);
    let id = Uuid::now_v7();
    let lookup =
        Lookup::UniqueName { kind: "custom_field", name: format!("{}.{}", body.entity_type.as_str(), body.field_name) };
    let cmd =
        FieldDefinitionCommand::Create { entity_type: body.entity_type, field_name: body.field_name, spec: body.spec };
    Ok(run(&state, &ctx, id, hash, lookup, StatusCode::CREATED, cmd).await?.at(format!("/v1/custom-fields/{id}")))
}

#[utoipa::path(put, path = "/v1/custom-fields/{id}", tag = "custom-fields", operation_id = "custom_fields_update", params(("id" = Uuid, Path)), request_body = UpdateBody, responses(runtime::openapi::CommandAnswered))]
async fn update(
    State(state): State<AppState>,
    ctx: CommandContext,
    ApiPath(id): ApiPath<Uuid>,
    Versioned { body, .. }: Versioned<UpdateBody>,
) -> Result<CommandReply, ApiError> {
    ctx.caller.require(Permission::CustomFieldsManage)?;
    let hash = fingerprint(UpdateBody::NAME, Some(id), &body);
    run(&state, &ctx, id, hash, Lookup::Nothing, StatusCode::OK, FieldDefinitionCommand::Update { spec: body.spec })
        .await
}

activation_handlers!(
    "custom_field",
    "custom-fields",
    "/v1/custom-fields/{id}/deactivate",
    "/v1/custom-fields/{id}/activate",
    Permission::CustomFieldsManage,
    FieldDefinitionCommand::Deactivate,
    FieldDefinitionCommand::Activate
);

async fn run(
    state: &AppState,
    ctx: &CommandContext,
    id: Uuid,
    hash: String,
    lookup: Lookup,
    success: StatusCode,
    cmd: FieldDefinitionCommand,
) -> Result<CommandReply, ApiError> {
    super::execute_in_tenant::<field_definition::FieldDefinition>(state, ctx, id, hash, lookup, success, |s| {
        field_definition::decide(s, cmd, Utc::now())
    })
    .await
}
