//! Document commands: attach metadata of a stored file to an open case; soft-delete
//! (the uploader, or a role that may moderate).

use axum::extract::State;
use axum::http::StatusCode;
use events::case::Status;
use events::document::{self, DocumentCommand};
use events::reference::Reference;
use runtime::auth::Permission;
use runtime::extract::ApiPath;
use runtime::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::AppState;
use super::CommandReply;
use crate::context::CommandContext;
use crate::journal::{fingerprint, Lookup};
use crate::versioned::{CommandSchema, Versioned};
use events::case;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(attach)).routes(routes!(remove))
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

impl CommandSchema for AttachBody {
    const NAME: &'static str = "attach_document";
}

#[utoipa::path(post, path = "/v1/cases/{id}/documents", tag = "documents", operation_id = "documents_attach", params(("id" = Uuid, Path)), request_body = AttachBody, responses(runtime::openapi::CommandAnswered))]
async fn attach(
    State(state): State<AppState>,
    ctx: CommandContext,
    ApiPath(case_id): ApiPath<Uuid>,
    Versioned { body, .. }: Versioned<AttachBody>,
) -> Result<CommandReply, ApiError> {
    let caller = ctx.caller.require(Permission::CasesUpdate)?;
    super::acting_user(&state, &ctx.caller).await?;
    let hash = fingerprint(AttachBody::NAME, Some(case_id), &body);
    let case = match state.journal.state::<case::Case>(caller.tenant_id, case_id).await? {
        None => Reference::Missing,
        Some(c) if c.status == Status::Closed => Reference::Inactive,
        Some(_) => Reference::Usable,
    };
    let cmd = DocumentCommand::Attach {
        case_id,
        case,
        filename: body.filename,
        mime_type: body.mime_type,
        size: body.size,
        storage_path: body.storage_path,
        metadata: body.metadata,
    };
    let id = Uuid::now_v7();
    Ok(super::decide_in_tenant::<document::Document>(&state, &ctx, id, hash, Lookup::Nothing, StatusCode::CREATED, cmd)
        .await?
        .at(format!("/v1/documents/{id}")))
}

#[utoipa::path(delete, path = "/v1/documents/{id}", tag = "documents", operation_id = "documents_remove", params(("id" = Uuid, Path)), responses(runtime::openapi::CommandAnswered))]
async fn remove(
    State(state): State<AppState>,
    ctx: CommandContext,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<CommandReply, ApiError> {
    let caller = ctx.caller.require(Permission::CasesUpdate)?;
    if let Some(d) = state.journal.state::<document::Document>(caller.tenant_id, id).await? {
        if d.uploaded_by != caller.user_id {
            caller.require(Permission::NotesModerate)?;
        }
    }
    let hash = fingerprint("delete_document", Some(id), &());
    super::change::<document::Document>(&state, &ctx, id, hash, DocumentCommand::Delete).await
}
