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
use runtime::extract::ApiPath;
use runtime::ApiError;
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::CommandReply;
use super::{AppState, NoBody};
use crate::context::CommandContext;
use crate::journal::{fingerprint, Command, Lookup};
use crate::versioned::{CommandSchema, Versioned};
use events::{case_type, field_definition, team, workflow};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(open))
        .routes(routes!(update))
        .routes(routes!(assign))
        .routes(routes!(change_status))
        .routes(routes!(change_tags))
        .routes(routes!(move_stage))
        .routes(routes!(assign_team))
        .routes(routes!(resolve))
        .routes(routes!(close))
        .routes(routes!(reopen))
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

impl CommandSchema for UpdateCaseBody {
    const NAME: &'static str = "update_case";
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CaseAssignBody)]
struct AssignBody {
    assigned_to: Option<Uuid>,
}

impl CommandSchema for AssignBody {
    const NAME: &'static str = "assign_case";
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CaseStatusBody)]
struct StatusBody {
    status: Status,
}

impl CommandSchema for StatusBody {
    const NAME: &'static str = "change_case_status";
}

/// A case's customer is a data subject of their own: not nobody, and not a user of the
/// tenant (who would share their key, and be erased or exported as the customer).
async fn check_customer(state: &AppState, tenant: Uuid, customer: Uuid) -> Result<(), ApiError> {
    let user = state.journal.state::<events::user::User>(tenant, customer).await?;
    if customer.is_nil() || user.is_some() {
        return Err(ApiError::Unprocessable {
            detail: "some fields are invalid; see errors".into(),
            errors: vec![events::FieldError::new(
                "customer_id",
                "must be the customer's own id: not the nil UUID, and not the id of a user of this tenant",
            )],
        });
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
        ctx: &ctx,
        tenant_id: caller.tenant_id,
        stream_id: case_id,
        request_hash: fingerprint(OpenCaseBody::NAME, None, &body),
        lookup: Lookup::CaseNumber,
    };
    let reply = super::execute::<case::Case>(&state, command, StatusCode::CREATED, |s, looked| {
        let cmd = CaseCommand::Open(OpenCase {
            case_number: looked.case_number.unwrap_or_default(),
            case_type: case_type.clone(),
            assignee: assignee.clone(),
            title: body.title.clone(),
            description: body.description.clone(),
            priority: body.priority.clone(),
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

#[utoipa::path(patch, path = "/v1/cases/{id}", tag = "cases", operation_id = "cases_update", params(("id" = Uuid, Path)), request_body = UpdateCaseBody, responses(runtime::openapi::CommandAnswered))]
async fn update(
    State(state): State<AppState>,
    ctx: CommandContext,
    ApiPath(id): ApiPath<Uuid>,
    Versioned { body, .. }: Versioned<UpdateCaseBody>,
) -> Result<CommandReply, ApiError> {
    let hash = fingerprint(UpdateCaseBody::NAME, Some(id), &body);
    // New custom fields are checked against the form of the case's type; those the
    // caller may not see are theirs neither to set nor to clear.
    let facts = match &body.custom_fields {
        None => None,
        Some(_) => match state.journal.state::<case::Case>(ctx.caller.tenant_id, id).await? {
            None => None,
            Some(c) => case_type_facts(&state, ctx.caller, c.case_type_id).await?,
        },
    };
    let (form, hidden) = match facts {
        Some(t) => (Some(t.form), t.hidden),
        None => (None, Default::default()),
    };
    let workflow = match body.priority {
        None => None,
        Some(_) => match state.journal.state::<case::Case>(ctx.caller.tenant_id, id).await?.and_then(|c| c.workflow_id)
        {
            Some(w) => workflow_facts(&state, ctx.caller.tenant_id, w).await?,
            None => None,
        },
    };
    let cmd = CaseCommand::Update(UpdateCase {
        form,
        hidden,
        workflow,
        title: body.title,
        description: body.description,
        priority: body.priority,
        due_date: body.due_date,
        tags: body.tags,
        custom_fields: body.custom_fields,
    });
    run(&state, &ctx, id, hash, Permission::CasesUpdate, cmd).await
}

#[utoipa::path(post, path = "/v1/cases/{id}/assignment", tag = "cases", operation_id = "cases_assign", params(("id" = Uuid, Path)), request_body = AssignBody, responses(runtime::openapi::CommandAnswered))]
async fn assign(
    State(state): State<AppState>,
    ctx: CommandContext,
    ApiPath(id): ApiPath<Uuid>,
    Versioned { body, .. }: Versioned<AssignBody>,
) -> Result<CommandReply, ApiError> {
    let hash = fingerprint(AssignBody::NAME, Some(id), &body);
    let assignee = super::user_reference(&state, ctx.caller.tenant_id, body.assigned_to).await?;
    run(
        &state,
        &ctx,
        id,
        hash,
        Permission::CasesAssign,
        CaseCommand::Assign(AssignCase { assigned_to: body.assigned_to, assignee }),
    )
    .await
}

#[utoipa::path(post, path = "/v1/cases/{id}/status", tag = "cases", operation_id = "cases_change_status", params(("id" = Uuid, Path)), request_body = StatusBody, responses(runtime::openapi::CommandAnswered))]
async fn change_status(
    State(state): State<AppState>,
    ctx: CommandContext,
    ApiPath(id): ApiPath<Uuid>,
    Versioned { body, .. }: Versioned<StatusBody>,
) -> Result<CommandReply, ApiError> {
    let hash = fingerprint(StatusBody::NAME, Some(id), &body);
    run(
        &state,
        &ctx,
        id,
        hash,
        Permission::CasesChangeStatus,
        CaseCommand::ChangeStatus(ChangeStatus { status: body.status }),
    )
    .await
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct TagsBody {
    #[serde(default)]
    add: Vec<String>,
    #[serde(default)]
    remove: Vec<String>,
}

impl CommandSchema for TagsBody {
    const NAME: &'static str = "change_case_tags";
}

#[utoipa::path(post, path = "/v1/cases/{id}/tags", tag = "cases", operation_id = "cases_change_tags", params(("id" = Uuid, Path)), request_body = TagsBody, responses(runtime::openapi::CommandAnswered))]
async fn change_tags(
    State(state): State<AppState>,
    ctx: CommandContext,
    ApiPath(id): ApiPath<Uuid>,
    Versioned { body, .. }: Versioned<TagsBody>,
) -> Result<CommandReply, ApiError> {
    let hash = fingerprint(TagsBody::NAME, Some(id), &body);
    run(&state, &ctx, id, hash, Permission::CasesUpdate, CaseCommand::ChangeTags { add: body.add, remove: body.remove })
        .await
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct StageBody {
    stage_id: Uuid,
}

impl CommandSchema for StageBody {
    const NAME: &'static str = "move_case_stage";
}

/// Moves a case along a transition of its workflow that the caller's role may take.
#[utoipa::path(post, path = "/v1/cases/{id}/stage", tag = "cases", operation_id = "cases_move_stage", params(("id" = Uuid, Path)), request_body = StageBody, responses(runtime::openapi::CommandAnswered))]
async fn move_stage(
    State(state): State<AppState>,
    ctx: CommandContext,
    ApiPath(id): ApiPath<Uuid>,
    Versioned { body, .. }: Versioned<StageBody>,
) -> Result<CommandReply, ApiError> {
    let hash = fingerprint(StageBody::NAME, Some(id), &body);
    let tenant = ctx.caller.tenant_id;
    let case = state.journal.state::<case::Case>(tenant, id).await?;
    let workflow = match case.as_ref().and_then(|c| c.workflow_id) {
        Some(w) => workflow_facts(&state, tenant, w).await?,
        None => None,
    };
    let customer_erased = match case.and_then(|c| c.customer_id) {
        Some(customer) => state.journal.subject_erased(tenant, customer).await?,
        None => false,
    };
    // Every user and team the workflow's actions name (not only this move's): a move
    // decided on a newer stage than read here still finds its targets.
    let targets = match &workflow {
        Some(w) => super::action_targets(&state, tenant, &w.definition).await?,
        None => Default::default(),
    };
    let role = ctx.caller.role.as_str().to_owned();
    let cmd = CaseCommand::MoveStage(MoveStage { to: body.stage_id, role, workflow, targets, customer_erased });
    run(&state, &ctx, id, hash, Permission::CasesChangeStatus, cmd).await
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct TeamBody {
    team_id: Option<Uuid>,
}

impl CommandSchema for TeamBody {
    const NAME: &'static str = "assign_case_team";
}

#[utoipa::path(post, path = "/v1/cases/{id}/team", tag = "cases", operation_id = "cases_assign_team", params(("id" = Uuid, Path)), request_body = TeamBody, responses(runtime::openapi::CommandAnswered))]
async fn assign_team(
    State(state): State<AppState>,
    ctx: CommandContext,
    ApiPath(id): ApiPath<Uuid>,
    Versioned { body, .. }: Versioned<TeamBody>,
) -> Result<CommandReply, ApiError> {
    let hash = fingerprint(TeamBody::NAME, Some(id), &body);
    let team = match body.team_id {
        None => Reference::Usable,
        Some(t) => match state.journal.state::<team::Team>(ctx.caller.tenant_id, t).await? {
            None => Reference::Missing,
            Some(_) => Reference::Usable,
        },
    };
    run(&state, &ctx, id, hash, Permission::CasesAssign, CaseCommand::AssignTeam { team_id: body.team_id, team }).await
}

/// Resolve, close and reopen are status changes with the shared workflow's rules.
async fn lifecycle(state: AppState, ctx: CommandContext, id: Uuid, to: Status) -> Result<CommandReply, ApiError> {
    let hash = fingerprint("change_status", Some(id), &StatusBody { status: to });
    run(&state, &ctx, id, hash, Permission::CasesChangeStatus, CaseCommand::ChangeStatus(ChangeStatus { status: to }))
        .await
}

#[utoipa::path(post, path = "/v1/cases/{id}/resolve", tag = "cases", operation_id = "cases_resolve", params(("id" = Uuid, Path)), request_body = NoBody, responses(runtime::openapi::CommandAnswered))]
async fn resolve(
    State(state): State<AppState>,
    ctx: CommandContext,
    ApiPath(id): ApiPath<Uuid>,
    _: Versioned<NoBody>,
) -> Result<CommandReply, ApiError> {
    lifecycle(state, ctx, id, Status::Resolved).await
}

#[utoipa::path(post, path = "/v1/cases/{id}/close", tag = "cases", operation_id = "cases_close", params(("id" = Uuid, Path)), request_body = NoBody, responses(runtime::openapi::CommandAnswered))]
async fn close(
    State(state): State<AppState>,
    ctx: CommandContext,
    ApiPath(id): ApiPath<Uuid>,
    _: Versioned<NoBody>,
) -> Result<CommandReply, ApiError> {
    lifecycle(state, ctx, id, Status::Closed).await
}

#[utoipa::path(post, path = "/v1/cases/{id}/reopen", tag = "cases", operation_id = "cases_reopen", params(("id" = Uuid, Path)), request_body = NoBody, responses(runtime::openapi::CommandAnswered))]
async fn reopen(
    State(state): State<AppState>,
    ctx: CommandContext,
    ApiPath(id): ApiPath<Uuid>,
    _: Versioned<NoBody>,
) -> Result<CommandReply, ApiError> {
    lifecycle(state, ctx, id, Status::Open).await
}

/// Runs a command against an existing case.
async fn run(
    state: &AppState,
    ctx: &CommandContext,
    id: Uuid,
    hash: String,
    permission: Permission,
    cmd: CaseCommand,
) -> Result<CommandReply, ApiError> {
    let caller = ctx.caller.require(permission)?;
    super::ensure_active_tenant(state, caller.tenant_id).await?;
    let command =
        Command { ctx, tenant_id: caller.tenant_id, stream_id: id, request_hash: hash, lookup: Lookup::Nothing };
    super::execute::<case::Case>(&state, command, StatusCode::OK, |s, _| {
        case::decide(s, cmd.clone(), &events::Context { actor: caller.user_id, now: Utc::now() })
    })
    .await
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
