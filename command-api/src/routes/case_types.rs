//! Case type commands (tenant administrators): create with a form definition, update,
//! deactivate (no new cases of it) and activate.

use axum::extract::State;
use axum::http::StatusCode;
use events::case_type::{self, normalise_name, CaseTypeCommand};
use events::form::FormDefinition;
use runtime::auth::Permission;
use runtime::extract::ApiPath;
use runtime::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::AppState;
use super::CommandReply;
use crate::context::CommandContext;
use crate::journal::{fingerprint, Lookup};
use crate::versioned::{CommandSchema, Versioned};
use events::workflow;

const KIND: &str = "case_type";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(update))
        .routes(routes!(deactivate))
        .routes(routes!(activate))
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CaseTypeCreateBody)]
struct CreateBody {
    name: String,
    description: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    form_definition: FormDefinition,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    validation_rules: Option<Value>,
    workflow_id: Option<Uuid>,
    /// Optional: lets an operator choose the id (e.g. a well-known demo type).
    id: Option<Uuid>,
}

impl CommandSchema for CreateBody {
    const NAME: &'static str = "create_case_type";
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CaseTypeUpdateBody)]
struct UpdateBody {
    name: Option<String>,
    #[serde(default, deserialize_with = "crate::versioned::present")]
    description: Option<Option<String>>,
    #[schema(value_type = Option<Object>)]
    form_definition: Option<FormDefinition>,
    #[schema(value_type = Option<Object>)]
    validation_rules: Option<Value>,
}

impl CommandSchema for UpdateBody {
    const NAME: &'static str = "update_case_type";
}

#[utoipa::path(post, path = "/v1/case-types", tag = "case-types", operation_id = "case_types_create", request_body = CreateBody, responses(runtime::openapi::CommandAnswered))]
async fn create(
    State(state): State<AppState>,
    ctx: CommandContext,
    Versioned { body, .. }: Versioned<CreateBody>,
) -> Result<CommandReply, ApiError> {
    let tenant = ctx.caller.require(Permission::CaseTypesManage)?.tenant_id;
    if let Some(w) = body.workflow_id {
        if state.journal.state::<workflow::Workflow>(tenant, w).await?.is_none() {
            return Err(ApiError::Unprocessable {
                detail: "some fields are invalid; see errors".into(),
                errors: vec![events::FieldError::new("workflow_id", "no workflow with this id exists in the tenant")],
            });
        }
    }
    let hash = fingerprint(CreateBody::NAME, None, &body);
    let id = super::chosen_id(body.id)?;
    let lookup = Lookup::UniqueName { kind: KIND, name: normalise_name(&body.name) };
    let cmd = CaseTypeCommand::Create {
        name: body.name,
        description: body.description,
        form_definition: body.form_definition,
        validation_rules: body.validation_rules.unwrap_or_else(|| Value::Object(Default::default())),
        workflow_id: body.workflow_id,
    };
    Ok(super::decide_in_tenant::<case_type::CaseType>(&state, &ctx, id, hash, lookup, StatusCode::CREATED, cmd)
        .await?
        .at(format!("/v1/case-types/{id}")))
}

#[utoipa::path(patch, path = "/v1/case-types/{id}", tag = "case-types", operation_id = "case_types_update", params(("id" = Uuid, Path)), request_body = UpdateBody, responses(runtime::openapi::CommandAnswered))]
async fn update(
    State(state): State<AppState>,
    ctx: CommandContext,
    ApiPath(id): ApiPath<Uuid>,
    Versioned { body, .. }: Versioned<UpdateBody>,
) -> Result<CommandReply, ApiError> {
    ctx.caller.require(Permission::CaseTypesManage)?;
    let hash = fingerprint(UpdateBody::NAME, Some(id), &body);
    let lookup = match &body.name {
        Some(name) => Lookup::UniqueName { kind: KIND, name: normalise_name(name) },
        None => Lookup::Nothing,
    };
    let cmd = CaseTypeCommand::Update {
        name: body.name,
        description: body.description,
        form_definition: body.form_definition,
        validation_rules: body.validation_rules,
    };
    super::decide_in_tenant::<case_type::CaseType>(&state, &ctx, id, hash, lookup, StatusCode::OK, cmd).await
}

activation_handlers!(
    case_type::CaseType,
    "case_type",
    "case-types",
    "/v1/case-types/{id}/deactivate",
    "/v1/case-types/{id}/activate",
    Permission::CaseTypesManage,
    CaseTypeCommand::Deactivate,
    CaseTypeCommand::Activate
);
