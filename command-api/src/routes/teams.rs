//! Team commands: create, rename, add and remove members (tenant administrators and
//! supervisors). A member must be a user of the tenant: an unknown one is a 422.

use events::team::{self, TeamCommand, TeamRole};
use runtime::auth::Permission;
use runtime::ApiError;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use super::endpoint::{self, Body, Endpoint, Facts, Route};
use super::AppState;
use crate::journal::{fingerprint, Lookup};
use events::user;

pub fn router() -> OpenApiRouter<AppState> {
    super::endpoint::router!["teams": CreateBody, RenameBody, MemberBody, RemoveMember]
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TeamCreateBody)]
struct CreateBody {
    name: String,
    description: Option<String>,
}

impl Endpoint for CreateBody {
    type Stream = team::Team;
    type Path = ();
    const ROUTE: Route = Route::post("/v1/teams", "teams_create").named("create_team").holds(Permission::TeamsManage);

    fn lookup(&self) -> Lookup {
        Lookup::unique_name("team", Some(&self.name))
    }

    async fn command(self, _: (), _: Facts<'_>) -> Result<TeamCommand, ApiError> {
        Ok(TeamCommand::Create { name: self.name, description: self.description })
    }
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RenameBody {
    name: String,
}

impl Endpoint for RenameBody {
    type Stream = team::Team;
    type Path = Uuid;
    const ROUTE: Route =
        Route::patch("/v1/teams/{id}", "teams_rename").named("rename_team").holds(Permission::TeamsManage);

    fn lookup(&self) -> Lookup {
        Lookup::unique_name("team", Some(&self.name))
    }

    async fn command(self, _: Uuid, _: Facts<'_>) -> Result<TeamCommand, ApiError> {
        Ok(TeamCommand::Rename { name: self.name })
    }
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

impl Endpoint for MemberBody {
    type Stream = team::Team;
    type Path = Uuid;
    const ROUTE: Route = Route::post("/v1/teams/{id}/members", "teams_add_member")
        .named("add_team_member")
        .holds(Permission::TeamsManage);

    async fn command(self, _: Uuid, facts: Facts<'_>) -> Result<TeamCommand, ApiError> {
        if facts.stream::<user::User>(self.user_id).await?.is_none() {
            return Err(ApiError::invalid("user_id", "no user with this id exists in the tenant"));
        }
        Ok(TeamCommand::AddMember { user_id: self.user_id, role: self.role })
    }
}

endpoint::no_fields!(RemoveMember);

impl Endpoint for RemoveMember {
    type Stream = team::Team;
    type Path = (Uuid, Uuid);
    const ROUTE: Route = Route::delete("/v1/teams/{id}/members/{user_id}", "teams_remove_member")
        .named("remove_team_member")
        .holds(Permission::TeamsManage);
    const BODY: Body = Body::Ignored;

    fn fingerprint(&self, (id, user_id): &(Uuid, Uuid)) -> String {
        fingerprint(<Self as Endpoint>::NAME, Some(*id), user_id)
    }

    async fn command(self, (_, user_id): (Uuid, Uuid), _: Facts<'_>) -> Result<TeamCommand, ApiError> {
        Ok(TeamCommand::RemoveMember { user_id })
    }
}
