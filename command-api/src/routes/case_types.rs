//! Case type commands (tenant administrators): create with a form definition, update,
//! deactivate (no new cases of it) and activate.

use events::case_type::{self, CaseTypeCommand};
use events::form::FormDefinition;
use runtime::auth::Permission;
use runtime::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use super::endpoint::{Endpoint, Facts, Route, Target};
use super::AppState;
use crate::journal::Lookup;
use events::workflow;

const KIND: &str = "case_type";

pub fn router() -> OpenApiRouter<AppState> {
    super::endpoint::router!["case-types": CreateBody, UpdateBody, Deactivate, Activate]
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

impl Endpoint for CreateBody {
    type Stream = case_type::CaseType;
    type Path = ();
    const ROUTE: Route =
        Route::post("/v1/case-types", "case_types_create").named("create_case_type").holds(Permission::CaseTypesManage);

    fn target(&self, _: &()) -> Result<Target, ApiError> {
        Target::chosen("/v1/case-types", self.id)
    }

    fn lookup(&self) -> Lookup {
        Lookup::unique_name(KIND, Some(&self.name))
    }

    async fn command(self, _: (), facts: Facts<'_>) -> Result<CaseTypeCommand, ApiError> {
        if let Some(w) = self.workflow_id {
            if facts.stream::<workflow::Workflow>(w).await?.is_none() {
                return Err(ApiError::invalid("workflow_id", "no workflow with this id exists in the tenant"));
            }
        }
        Ok(CaseTypeCommand::Create {
            name: self.name,
            description: self.description,
            form_definition: self.form_definition,
            validation_rules: self.validation_rules.unwrap_or_else(|| Value::Object(Default::default())),
            workflow_id: self.workflow_id,
        })
    }
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

impl Endpoint for UpdateBody {
    type Stream = case_type::CaseType;
    type Path = Uuid;
    const ROUTE: Route = Route::patch("/v1/case-types/{id}", "case_types_update")
        .named("update_case_type")
        .holds(Permission::CaseTypesManage);

    fn lookup(&self) -> Lookup {
        Lookup::unique_name(KIND, self.name.as_deref())
    }

    async fn command(self, _: Uuid, _: Facts<'_>) -> Result<CaseTypeCommand, ApiError> {
        Ok(CaseTypeCommand::Update {
            name: self.name,
            description: self.description,
            form_definition: self.form_definition,
            validation_rules: self.validation_rules,
        })
    }
}

activation_endpoints!(
    case_type::CaseType,
    "case_type",
    "/v1/case-types/{id}/deactivate",
    "/v1/case-types/{id}/activate",
    Permission::CaseTypesManage,
    CaseTypeCommand::Deactivate,
    CaseTypeCommand::Activate
);
