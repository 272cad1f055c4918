//! Task commands: create on a case, assign, change status, complete. The case must exist
//! and not be closed; an assignee must be an active user of the tenant (422 otherwise).

use chrono::{DateTime, Utc};
use events::case::Priority;
use events::task::{self, TaskCommand, TaskStatus};
use runtime::auth::Permission;
use runtime::ApiError;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use super::endpoint::{Body, Endpoint, Facts, Route, Target};
use super::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    super::endpoint::router!["tasks": CreateBody, AssignBody, StatusBody, CompleteBody]
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TaskCreateBody)]
struct CreateBody {
    title: String,
    description: Option<String>,
    #[serde(default)]
    priority: Priority,
    assigned_to: Option<Uuid>,
    due_date: Option<DateTime<Utc>>,
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TaskAssignBody)]
struct AssignBody {
    assigned_to: Option<Uuid>,
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TaskStatusBody)]
struct StatusBody {
    status: TaskStatus,
}

#[derive(Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TaskCompleteBody)]
struct CompleteBody {}

impl Endpoint for CreateBody {
    type Stream = task::Task;
    type Path = Uuid;
    const ROUTE: Route =
        Route::post("/v1/cases/{id}/tasks", "tasks_create").named("create_task").holds(Permission::CasesUpdate);

    fn target(&self, _: &Uuid) -> Result<Target, ApiError> {
        Ok(Target::new("/v1/tasks"))
    }

    async fn command(self, case_id: Uuid, facts: Facts<'_>) -> Result<TaskCommand, ApiError> {
        facts.acting_user().await?;
        Ok(TaskCommand::Create {
            case_id,
            case: facts.case(case_id).await?.0,
            title: self.title,
            description: self.description,
            priority: self.priority,
            assigned_to: self.assigned_to,
            assignee: facts.user(self.assigned_to).await?,
            due_date: self.due_date,
        })
    }
}

impl Endpoint for AssignBody {
    type Stream = task::Task;
    type Path = Uuid;
    const ROUTE: Route =
        Route::post("/v1/tasks/{id}/assignment", "tasks_assign").named("assign_task").holds(Permission::CasesAssign);

    async fn command(self, _: Uuid, facts: Facts<'_>) -> Result<TaskCommand, ApiError> {
        Ok(TaskCommand::Assign { assigned_to: self.assigned_to, assignee: facts.user(self.assigned_to).await? })
    }
}

impl Endpoint for StatusBody {
    type Stream = task::Task;
    type Path = Uuid;
    const ROUTE: Route = Route::post("/v1/tasks/{id}/status", "tasks_change_status")
        .named("change_task_status")
        .holds(Permission::CasesUpdate);

    async fn command(self, _: Uuid, _: Facts<'_>) -> Result<TaskCommand, ApiError> {
        Ok(TaskCommand::ChangeStatus { status: self.status })
    }
}

impl Endpoint for CompleteBody {
    type Stream = task::Task;
    type Path = Uuid;
    const ROUTE: Route =
        Route::post("/v1/tasks/{id}/complete", "tasks_complete").named("complete_task").holds(Permission::CasesUpdate);
    const BODY: Body = Body::Empty;

    async fn command(self, _: Uuid, _: Facts<'_>) -> Result<TaskCommand, ApiError> {
        Ok(TaskCommand::ChangeStatus { status: TaskStatus::Done })
    }
}
