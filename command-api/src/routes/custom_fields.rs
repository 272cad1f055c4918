//! Custom field definition commands (tenant administrators): define a field of cases,
//! interactions or users; update its spec; deactivate and activate it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{post, put};
use axum::Router;
use chrono::Utc;
use events::field_definition::{self, EntityType, FieldDefinitionCommand, FieldSpec};
use runtime::auth::Permission;
use runtime::extract::ApiPath;
use runtime::ApiError;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::AppState;
use crate::context::CommandContext;
use crate::journal::{fingerprint, CommandReply, FieldDefinitionStream, Lookup};
use crate::versioned::{CommandSchema, Versioned};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/custom-fields", post(define))
        .route("/v1/custom-fields/{id}", put(update))
        .route("/v1/custom-fields/{id}/deactivate", post(deactivate))
        .route("/v1/custom-fields/{id}/activate", post(activate))
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DefineBody {
    entity_type: EntityType,
    field_name: String,
    #[serde(flatten)]
    spec: FieldSpec,
}

impl CommandSchema for DefineBody {
    const NAME: &'static str = "define_custom_field";
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    #[serde(flatten)]
    spec: FieldSpec,
}

impl CommandSchema for UpdateBody {
    const NAME: &'static str = "update_custom_field";
}

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
    let mut reply = run(&state, &ctx, id, hash, lookup, StatusCode::CREATED, cmd).await?;
    reply.body["location"] = format!("/v1/custom-fields/{id}").into();
    Ok(reply)
}

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
    super::execute_in_tenant::<FieldDefinitionStream>(state, ctx, id, hash, lookup, success, |s| {
        field_definition::decide(s, cmd, Utc::now())
    })
    .await
}
