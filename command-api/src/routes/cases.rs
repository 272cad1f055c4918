//! Case commands: open, update, assign, change status.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use events::case::{
    self, AssignCase, CaseCommand, CaseTypeFacts, ChangeStatus, CustomFields, MoveStage, OpenCase, Priority, Status,
    UpdateCase, WorkflowFacts,
};
use events::reference::Reference;
use runtime::auth::Permission;
use runtime::ApiError;
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::endpoint::{self, Body, Endpoint, Facts, Route};
use super::AppState;
use super::CommandReply;
use crate::context::CommandContext;
use crate::journal::{fingerprint, Command, Lookup};
use crate::versioned::{CommandSchema, Versioned};
use events::{case_type, field_definition, team, workflow};

pub fn router() -> OpenApiRouter<AppState> {
    super::endpoint::router!["cases": UpdateCaseBody,
        AssignBody,
        StatusBody,
        TagsBody,
        StageBody,
        TeamBody,
        Resolve,
        Close,
        Reopen
    ]
    .routes(routes!(open))
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct OpenCaseBody {
    title: String,
    description: Option<String>,
    #[serde(default)]
    priority: Priority,
    case_type_id: Uuid,
    assigned_to: Option<Uuid>,
    due_date: Option<DateTime<Utc>>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    custom_fields: CustomFields,
    /// The customer the case is about: their id in the tenant's own records. Their data
    /// in the case (title, description, custom fields) and in its notes and interactions
    /// is erased with them (`POST /v1/data-subjects/{id}/erasure`). Never changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    customer_id: Option<Uuid>,
}

impl CommandSchema for OpenCaseBody {
    const NAME: &'static str = "open_case";
}

/// Absent fields stay as they are; `null` clears a nullable field.
#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateCaseBody {
    title: Option<String>,
    #[serde(default, deserialize_with = "crate::versioned::present")]
    description: Option<Option<String>>,
    priority: Option<Priority>,
    #[serde(default, deserialize_with = "crate::versioned::present")]
    due_date: Option<Option<DateTime<Utc>>>,
    tags: Option<Vec<String>>,
    #[schema(value_type = Option<Object>)]
    custom_fields: Option<CustomFields>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CaseAssignBody)]
struct AssignBody {
    assigned_to: Option<Uuid>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CaseStatusBody)]
struct StatusBody {
    status: Status,
}

/// A case's customer is a data subject of their own: not nobody, and not a user of the
/// tenant (who would share their key, and be erased or exported as the customer).
async fn check_customer(state: &AppState, tenant: Uuid, customer: Uuid) -> Result<(), ApiError> {
    let user = state.journal.state::<events::user::User>(tenant, customer).await?;
    if customer.is_nil() || user.is_some() {
        return Err(ApiError::invalid(
            "customer_id",
            "must be the customer's own id: not the nil UUID, and not the id of a user of this tenant",
        ));
    }
    Ok(())
}

#[utoipa::path(post, path = "/v1/cases", tag = "cases", operation_id = "cases_open", request_body = OpenCaseBody, responses(runtime::openapi::CommandAnswered))]
async fn open(
    State(state): State<AppState>,
    ctx: CommandContext,
    Versioned { body, .. }: Versioned<OpenCaseBody>,
) -> Result<CommandReply, ApiError> {
    let caller = ctx.caller.require(Permission::CasesCreate)?;
    super::ensure_active_tenant(&state, caller.tenant_id).await?;
    super::acting_user(&state, &ctx.caller).await?;
    let case_type = case_type_facts(&state, caller, body.case_type_id).await?;
    let assignee = super::user_reference(&state, caller.tenant_id, body.assigned_to).await?;
    if let Some(customer) = body.customer_id {
        check_customer(&state, caller.tenant_id, customer).await?;
    }
    // v7: a case's id tells the month of its search index (see runtime::tenancy).
    let case_id = Uuid::now_v7();
    let command = Command {
        meta: &ctx.meta,
        tenant_id: caller.tenant_id,
        stream_id: case_id,
        request_hash: fingerprint(OpenCaseBody::NAME, None, &body),
        lookup: Lookup::CaseNumber,
    };
    let reply = super::execute::<case::Case>(&state, command, StatusCode::CREATED, |s, looked| {
        let cmd = CaseCommand::Open(OpenCase {
            case_number: looked.case_number.unwrap_or_default(),
            case_type: case_type.clone(),
            assignee,
            title: body.title.clone(),
            description: body.description.clone(),
            priority: body.priority,
            case_type_id: body.case_type_id,
            assigned_to: body.assigned_to,
            due_date: body.due_date,
            tags: body.tags.clone(),
            custom_fields: body.custom_fields.clone(),
            customer_id: body.customer_id,
        });
        case::decide(s, cmd, &events::Context { actor: caller.user_id, now: Utc::now() })
    })
    .await?;
    let location = format!("/v1/cases/{}", reply.recorded.id);
    Ok(reply.at(location))
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct TagsBody {
    #[serde(default)]
    add: Vec<String>,
    #[serde(default)]
    remove: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct StageBody {
    stage_id: Uuid,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct TeamBody {
    team_id: Option<Uuid>,
}

impl Endpoint for UpdateCaseBody {
    type Stream = case::Case;
    type Path = Uuid;
    const ROUTE: Route =
        Route::patch("/v1/cases/{id}", "cases_update").named("update_case").holds(Permission::CasesUpdate);

    async fn command(self, id: Uuid, facts: Facts<'_>) -> Result<CaseCommand, ApiError> {
        // New custom fields are checked against the form of the case's type; those the
        // caller may not see are theirs neither to set nor to clear.
        let case = match (&self.custom_fields, &self.priority) {
            (None, None) => None,
            _ => facts.stream::<case::Case>(id).await?,
        };
        let type_facts = match (&self.custom_fields, &case) {
            (Some(_), Some(c)) => case_type_facts(facts.state, facts.caller, c.case_type_id).await?,
            _ => None,
        };
        let (form, hidden) = match type_facts {
            Some(t) => (Some(t.form), t.hidden),
            None => (None, Default::default()),
        };
        let workflow = match (&self.priority, case.and_then(|c| c.workflow_id)) {
            (Some(_), Some(w)) => workflow_facts(facts.state, facts.tenant(), w).await?,
            _ => None,
        };
        Ok(CaseCommand::Update(UpdateCase {
            form,
            hidden,
            workflow,
            title: self.title,
            description: self.description,
            priority: self.priority,
            due_date: self.due_date,
            tags: self.tags,
            custom_fields: self.custom_fields,
        }))
    }
}

impl Endpoint for AssignBody {
    type Stream = case::Case;
    type Path = Uuid;
    const ROUTE: Route =
        Route::post("/v1/cases/{id}/assignment", "cases_assign").named("assign_case").holds(Permission::CasesAssign);

    async fn command(self, _: Uuid, facts: Facts<'_>) -> Result<CaseCommand, ApiError> {
        let assignee = facts.user(self.assigned_to).await?;
        Ok(CaseCommand::Assign(AssignCase { assigned_to: self.assigned_to, assignee }))
    }
}

impl Endpoint for StatusBody {
    type Stream = case::Case;
    type Path = Uuid;
    const ROUTE: Route = Route::post("/v1/cases/{id}/status", "cases_change_status")
        .named("change_case_status")
        .holds(Permission::CasesChangeStatus);

    async fn command(self, _: Uuid, _: Facts<'_>) -> Result<CaseCommand, ApiError> {
        Ok(CaseCommand::ChangeStatus(ChangeStatus { status: self.status }))
    }
}

impl Endpoint for TagsBody {
    type Stream = case::Case;
    type Path = Uuid;
    const ROUTE: Route = Route::post("/v1/cases/{id}/tags", "cases_change_tags")
        .named("change_case_tags")
        .holds(Permission::CasesUpdate);

    async fn command(self, _: Uuid, _: Facts<'_>) -> Result<CaseCommand, ApiError> {
        Ok(CaseCommand::ChangeTags { add: self.add, remove: self.remove })
    }
}

impl Endpoint for StageBody {
    type Stream = case::Case;
    type Path = Uuid;
    const ROUTE: Route = Route::post("/v1/cases/{id}/stage", "cases_move_stage")
        .summary("Moves a case along a transition of its workflow that the caller's role may take.")
        .named("move_case_stage")
        .holds(Permission::CasesChangeStatus);

    async fn command(self, id: Uuid, facts: Facts<'_>) -> Result<CaseCommand, ApiError> {
        let case = facts.stream::<case::Case>(id).await?;
        let workflow = match case.as_ref().and_then(|c| c.workflow_id) {
            Some(w) => workflow_facts(facts.state, facts.tenant(), w).await?,
            None => None,
        };
        let customer_erased = match case.and_then(|c| c.customer_id) {
            Some(customer) => facts.state.journal.subject_erased(facts.tenant(), customer).await?,
            None => false,
        };
        // Every user and team the workflow's actions name (not only this move's): a move
        // decided on a newer stage than read here still finds its targets.
        let targets = match &workflow {
            Some(w) => super::action_targets(facts.state, facts.tenant(), &w.definition).await?,
            None => Default::default(),
        };
        let role = facts.caller.role.as_str().to_owned();
        Ok(CaseCommand::MoveStage(MoveStage { to: self.stage_id, role, workflow, targets, customer_erased }))
    }
}

impl Endpoint for TeamBody {
    type Stream = case::Case;
    type Path = Uuid;
    const ROUTE: Route = Route::post("/v1/cases/{id}/team", "cases_assign_team")
        .named("assign_case_team")
        .holds(Permission::CasesAssign);

    async fn command(self, _: Uuid, facts: Facts<'_>) -> Result<CaseCommand, ApiError> {
        let team = match self.team_id {
            None => Reference::Usable,
            Some(t) => match facts.stream::<team::Team>(t).await? {
                None => Reference::Missing,
                Some(_) => Reference::Usable,
            },
        };
        Ok(CaseCommand::AssignTeam { team_id: self.team_id, team })
    }
}

/// Resolve, close and reopen: status changes with the shared workflow's rules, each with
/// an empty body, fingerprinted as the status change they are.
macro_rules! lifecycle_endpoints {
    ($($name:ident: $path:literal, $operation:literal => $status:expr;)*) => {$(
        endpoint::no_fields!($name);

        impl Endpoint for $name {
            type Stream = case::Case;
            type Path = Uuid;
            const ROUTE: Route = Route::post($path, $operation).named("change_status").holds(Permission::CasesChangeStatus);
            const BODY: Body = Body::NoFields;

            fn fingerprint(&self, id: &Uuid) -> String {
                fingerprint(<Self as Endpoint>::NAME, Some(*id), &StatusBody { status: $status })
            }

            async fn command(self, _: Uuid, _: Facts<'_>) -> Result<CaseCommand, ApiError> {
                Ok(CaseCommand::ChangeStatus(ChangeStatus { status: $status }))
            }
        }
    )*};
}

lifecycle_endpoints! {
    Resolve: "/v1/cases/{id}/resolve", "cases_resolve" => Status::Resolved;
    Close: "/v1/cases/{id}/close", "cases_close" => Status::Closed;
    Reopen: "/v1/cases/{id}/reopen", "cases_reopen" => Status::Open;
}

/// The case type a case refers to, as `decide` needs it for this caller (None: no such
/// type here).
async fn case_type_facts(
    state: &AppState,
    caller: runtime::auth::Caller,
    id: Uuid,
) -> Result<Option<CaseTypeFacts>, ApiError> {
    let tenant = caller.tenant_id;
    let Some(t) = state.journal.state::<case_type::CaseType>(tenant, id).await? else { return Ok(None) };
    let workflow = match t.workflow_id {
        Some(w) => workflow_facts(state, tenant, w).await?,
        None => None,
    };
    // The tenant's active case field definitions visible for this type join its form.
    let all = state.journal.all::<field_definition::FieldDefinition>(tenant).await?;
    let hidden = field_definition::hidden_case_fields(&all, caller.role.as_str(), id);
    let definitions: Vec<_> = all.into_iter().filter(|d| d.applies_to_case_type(id)).collect();
    let form = field_definition::merge_into(&t.effective_form(), &definitions);
    Ok(Some(CaseTypeFacts { active: t.active, form, workflow, hidden }))
}

/// A workflow as `decide` needs it (None: no such workflow here).
async fn workflow_facts(state: &AppState, tenant: Uuid, id: Uuid) -> Result<Option<WorkflowFacts>, ApiError> {
    let found = state.journal.state::<workflow::Workflow>(tenant, id).await?;
    Ok(found.map(|w| WorkflowFacts { id, active: w.active, definition: w.definition }))
}
