//! Document commands: attach metadata of a stored file to an open case; soft-delete
//! (the uploader, or a role that may moderate).

use events::document::{self, DocumentCommand};
use runtime::auth::Permission;
use runtime::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use super::endpoint::{self, Body, Endpoint, Facts, Route, Target};
use super::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    super::endpoint::router!["documents": AttachBody, RemoveBody]
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AttachBody {
    filename: String,
    mime_type: String,
    size: i64,
    storage_path: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    metadata: Map<String, Value>,
}

endpoint::no_fields!(RemoveBody);

impl Endpoint for AttachBody {
    type Stream = document::Document;
    type Path = Uuid;
    const ROUTE: Route = Route::post("/v1/cases/{id}/documents", "documents_attach")
        .named("attach_document")
        .holds(Permission::CasesUpdate);

    fn target(&self, _: &Uuid) -> Result<Target, ApiError> {
        Ok(Target::new("/v1/documents"))
    }

    async fn command(self, case_id: Uuid, facts: Facts<'_>) -> Result<DocumentCommand, ApiError> {
        facts.acting_user().await?;
        Ok(DocumentCommand::Attach {
            case_id,
            case: facts.case(case_id).await?.0,
            filename: self.filename,
            mime_type: self.mime_type,
            size: self.size,
            storage_path: self.storage_path,
            metadata: self.metadata,
        })
    }
}

/// The uploader may delete a document; others need notes:moderate.
impl Endpoint for RemoveBody {
    type Stream = document::Document;
    type Path = Uuid;
    const ROUTE: Route =
        Route::delete("/v1/documents/{id}", "documents_remove").named("delete_document").holds(Permission::CasesUpdate);
    const BODY: Body = Body::Ignored;

    async fn command(self, id: Uuid, facts: Facts<'_>) -> Result<DocumentCommand, ApiError> {
        if let Some(d) = facts.stream::<document::Document>(id).await? {
            facts.owner_or(d.uploaded_by, Permission::NotesModerate)?;
        }
        Ok(DocumentCommand::Delete)
    }
}
