//! Team commands: create, rename, add and remove members (tenant administrators and
//! supervisors). A member must be a user of the tenant: an unknown one is a 422.

use axum::extract::State;
use axum::http::StatusCode;
use events::team::{self, normalise_name, TeamCommand, TeamRole};
use events::FieldError;
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
use events::user;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(rename))
        .routes(routes!(add_member))
        .routes(routes!(remove_member))
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TeamCreateBody)]
struct CreateBody {
    name: String,
    description: Option<String>,
}

impl CommandSchema for CreateBody {
    const NAME: &'static str = "create_team";
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RenameBody {
    name: String,
}

impl CommandSchema for RenameBody {
    const NAME: &'static str = "rename_team";
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct MemberBody {
    user_id: Uuid,
    #[serde(default = "member")]
    role: TeamRole,
}

fn member() -> TeamRole {
    TeamRole::Member
}

impl CommandSchema for MemberBody {
    const NAME: &'static str = "add_team_member";
}

#[utoipa::path(post, path = "/v1/teams", tag = "teams", operation_id = "teams_create", request_body = CreateBody, responses(runtime::openapi::CommandAnswered))]
async fn create(
    State(state): State<AppState>,
    ctx: CommandContext,
    Versioned { body, .. }: Versioned<CreateBody>,
) -> Result<CommandReply, ApiError> {
    ctx.caller.require(Permission::TeamsManage)?;
    let hash = fingerprint(CreateBody::NAME, None, &body);
    let team_id = Uuid::now_v7();
    let lookup = Lookup::UniqueName { kind: "team", name: normalise_name(&body.name) };
    let cmd = TeamCommand::Create { name: body.name, description: body.description };
    Ok(super::decide_in_tenant::<team::Team>(&state, &ctx, team_id, hash, lookup, StatusCode::CREATED, cmd)
        .await?
        .at(format!("/v1/teams/{team_id}")))
}

#[utoipa::path(patch, path = "/v1/teams/{id}", tag = "teams", operation_id = "teams_rename", params(("id" = Uuid, Path)), request_body = RenameBody, responses(runtime::openapi::CommandAnswered))]
async fn rename(
    State(state): State<AppState>,
    ctx: CommandContext,
    ApiPath(id): ApiPath<Uuid>,
    Versioned { body, .. }: Versioned<RenameBody>,
) -> Result<CommandReply, ApiError> {
    ctx.caller.require(Permission::TeamsManage)?;
    let hash = fingerprint(RenameBody::NAME, Some(id), &body);
    let lookup = Lookup::UniqueName { kind: "team", name: normalise_name(&body.name) };
    super::decide_in_tenant::<team::Team>(
        &state,
        &ctx,
        id,
        hash,
        lookup,
        StatusCode::OK,
        TeamCommand::Rename { name: body.name },
    )
    .await
}

#[utoipa::path(post, path = "/v1/teams/{id}/members", tag = "teams", operation_id = "teams_add_member", params(("id" = Uuid, Path)), request_body = MemberBody, responses(runtime::openapi::CommandAnswered))]
async fn add_member(
    State(state): State<AppState>,
    ctx: CommandContext,
    ApiPath(id): ApiPath<Uuid>,
    Versioned { body, .. }: Versioned<MemberBody>,
) -> Result<CommandReply, ApiError> {
    let caller = ctx.caller.require(Permission::TeamsManage)?;
    if state.journal.state::<user::User>(caller.tenant_id, body.user_id).await?.is_none() {
        return Err(ApiError::Unprocessable {
            detail: "some fields are invalid; see errors".into(),
            errors: vec![FieldError::new("user_id", "no user with this id exists in the tenant")],
        });
    }
    let hash = fingerprint(MemberBody::NAME, Some(id), &body);
    let cmd = TeamCommand::AddMember { user_id: body.user_id, role: body.role };
    super::change::<team::Team>(&state, &ctx, id, hash, cmd).await
}

#[utoipa::path(delete, path = "/v1/teams/{id}/members/{user_id}", tag = "teams", operation_id = "teams_remove_member", params(("id" = Uuid, Path), ("user_id" = Uuid, Path)), responses(runtime::openapi::CommandAnswered))]
async fn remove_member(
    State(state): State<AppState>,
    ctx: CommandContext,
    ApiPath((id, user_id)): ApiPath<(Uuid, Uuid)>,
) -> Result<CommandReply, ApiError> {
    ctx.caller.require(Permission::TeamsManage)?;
    let hash = fingerprint("remove_team_member", Some(id), &user_id);
    super::change::<team::Team>(&state, &ctx, id, hash, TeamCommand::RemoveMember { user_id }).await
}
