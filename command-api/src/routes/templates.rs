//! Message template commands (supervisors and administrators) and rendering a template
//! for a case, which reports the placeholders it had no value for.

use std::collections::BTreeSet;
use utoipa_axum::{router::OpenApiRouter, routes};

use axum::extract::State;
use axum::Json;
use events::channel::ChannelType;
use events::template::{self, render, TemplateCommand};
use runtime::auth::Permission;
use runtime::extract::ApiPath;
use runtime::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::endpoint::{Endpoint, Facts, Route};
use super::AppState;
use crate::context::CommandContext;
use crate::journal::Lookup;
use events::{case, user};

const KIND: &str = "message_template";

pub fn router() -> OpenApiRouter<AppState> {
    super::endpoint::router!["templates": CreateBody, UpdateBody, Deactivate, Activate].routes(routes!(render_for_case))
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TemplateCreateBody)]
struct CreateBody {
    name: String,
    description: Option<String>,
    channel_type: ChannelType,
    subject: Option<String>,
    content: String,
    #[serde(default)]
    tags: Vec<String>,
    category: Option<String>,
}

impl Endpoint for CreateBody {
    type Stream = template::Template;
    type Path = ();
    const ROUTE: Route = Route::post("/v1/message-templates", "templates_create")
        .named("create_message_template")
        .holds(Permission::TemplatesManage);

    fn lookup(&self) -> Lookup {
        Lookup::unique_name(KIND, Some(&self.name))
    }

    async fn command(self, _: (), _: Facts<'_>) -> Result<TemplateCommand, ApiError> {
        Ok(TemplateCommand::Create {
            name: self.name,
            description: self.description,
            channel_type: self.channel_type,
            subject: self.subject,
            content: self.content,
            tags: self.tags,
            category: self.category,
        })
    }
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TemplateUpdateBody)]
struct UpdateBody {
    name: Option<String>,
    #[serde(default, deserialize_with = "crate::versioned::present")]
    description: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::versioned::present")]
    subject: Option<Option<String>>,
    content: Option<String>,
}

impl Endpoint for UpdateBody {
    type Stream = template::Template;
    type Path = Uuid;
    const ROUTE: Route = Route::patch("/v1/message-templates/{id}", "templates_update")
        .named("update_message_template")
        .holds(Permission::TemplatesManage);

    fn lookup(&self) -> Lookup {
        Lookup::unique_name(KIND, self.name.as_deref())
    }

    async fn command(self, _: Uuid, _: Facts<'_>) -> Result<TemplateCommand, ApiError> {
        Ok(TemplateCommand::Update {
            name: self.name,
            description: self.description,
            subject: self.subject,
            content: self.content,
        })
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RenderBody {
    case_id: Uuid,
    /// Values for placeholders the case does not provide (they win over the case's).
    #[serde(default)]
    #[schema(value_type = Object)]
    values: Map<String, Value>,
}

activation_endpoints!(
    template::Template,
    "message_template",
    "/v1/message-templates/{id}/deactivate",
    "/v1/message-templates/{id}/activate",
    Permission::TemplatesManage,
    TemplateCommand::Deactivate,
    TemplateCommand::Activate
);

/// Fills a template for a case: the case's fields (`case_number`, `case_title`,
/// `case_status`, `case_priority`, `case_description`), its custom fields by name,
/// `company_name` (the tenant) and `agent_name` (the assignee), then `values`.
/// Records nothing; it answers from the write side's current state.
#[utoipa::path(post, path = "/v1/message-templates/{id}/render", tag = "templates", operation_id = "templates_render_for_case", params(("id" = Uuid, Path)), request_body = RenderBody, responses(runtime::openapi::CommandAnswered))]
async fn render_for_case(
    State(state): State<AppState>,
    ctx: CommandContext,
    ApiPath(id): ApiPath<Uuid>,
    runtime::extract::ApiJson(body): runtime::extract::ApiJson<RenderBody>,
) -> Result<Json<Value>, ApiError> {
    let tenant = ctx.caller.require(Permission::CasesUpdate)?.tenant_id;
    let template = state
        .journal
        .state::<template::Template>(tenant, id)
        .await?
        .ok_or_else(|| ApiError::NotFound("message template not found".into()))?;
    if !template.active {
        return Err(ApiError::Conflict { detail: "the template is deactivated".into(), current_version: None });
    }
    let case = state
        .journal
        .state::<case::Case>(tenant, body.case_id)
        .await?
        .ok_or_else(|| ApiError::invalid("case_id", "no case with this id exists in the tenant"))?;
    let mut values: Map<String, Value> = case.custom_fields.clone();
    // Fields the caller's role may not see are not filled in (they show as missing).
    let definitions = state.journal.all::<events::field_definition::FieldDefinition>(tenant).await?;
    for hidden in
        events::field_definition::hidden_case_fields(&definitions, ctx.caller.role.as_str(), case.case_type_id)
    {
        values.remove(&hidden);
    }
    values.insert("case_number".into(), json!(case.case_number));
    values.insert("case_title".into(), json!(case.title));
    values.insert("case_status".into(), json!(case.status.as_str()));
    values.insert("case_priority".into(), json!(case.priority.as_str()));
    values.insert("case_description".into(), json!(case.description));
    if let Some(t) = state.journal.tenant(tenant).await? {
        values.insert("company_name".into(), json!(t.name));
    }
    if let Some(agent) = case.assigned_to {
        if let Some(u) = state.journal.state::<user::User>(tenant, agent).await? {
            let full = [u.first_name, u.last_name].into_iter().flatten().collect::<Vec<_>>().join(" ");
            values.insert("agent_name".into(), json!(if full.is_empty() { u.username } else { full }));
        }
    }
    values.extend(body.values);
    let mut missing = BTreeSet::new();
    let subject = template.subject.as_deref().map(|s| render(s, &values, &mut missing));
    let content = render(&template.content, &values, &mut missing);
    Ok(Json(json!({ "subject": subject, "content": content, "missing": missing, "variables": template.variables })))
}
