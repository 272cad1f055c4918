//! Workflow commands (tenant administrators): create with stages, transitions, actions
//! and SLA targets; update; deactivate (cases of its types cannot open) and activate.

use events::workflow::{self, WorkflowCommand, WorkflowDefinition};
use runtime::auth::Permission;
use runtime::ApiError;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use super::endpoint::{Endpoint, Facts, Route, Target};
use super::AppState;
use crate::journal::Lookup;

const KIND: &str = "workflow";

pub fn router() -> OpenApiRouter<AppState> {
    super::endpoint::router!["workflows": CreateBody, UpdateBody, Deactivate, Activate]
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

impl Endpoint for CreateBody {
    type Stream = workflow::Workflow;
    type Path = ();
    const ROUTE: Route =
        Route::post("/v1/workflows", "workflows_create").named("create_workflow").holds(Permission::WorkflowsManage);

    fn target(&self, _: &()) -> Result<Target, ApiError> {
        Target::chosen("/v1/workflows", self.id)
    }

    fn lookup(&self) -> Lookup {
        Lookup::unique_name(KIND, Some(&self.name))
    }

    async fn command(self, _: (), facts: Facts<'_>) -> Result<WorkflowCommand, ApiError> {
        let targets = super::action_targets(facts.state, facts.tenant(), &self.definition).await?;
        Ok(WorkflowCommand::Create {
            name: self.name,
            description: self.description,
            definition: self.definition,
            targets,
        })
    }
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

impl Endpoint for UpdateBody {
    type Stream = workflow::Workflow;
    type Path = Uuid;
    const ROUTE: Route = Route::patch("/v1/workflows/{id}", "workflows_update")
        .named("update_workflow")
        .holds(Permission::WorkflowsManage);

    fn lookup(&self) -> Lookup {
        Lookup::unique_name(KIND, self.name.as_deref())
    }

    async fn command(self, _: Uuid, facts: Facts<'_>) -> Result<WorkflowCommand, ApiError> {
        let targets = match &self.definition {
            Some(definition) => super::action_targets(facts.state, facts.tenant(), definition).await?,
            None => Default::default(),
        };
        Ok(WorkflowCommand::Update {
            name: self.name,
            description: self.description,
            definition: self.definition,
            targets,
        })
    }
}

activation_endpoints!(
    workflow::Workflow,
    "workflow",
    "/v1/workflows/{id}/deactivate",
    "/v1/workflows/{id}/activate",
    Permission::WorkflowsManage,
    WorkflowCommand::Deactivate,
    WorkflowCommand::Activate
);
