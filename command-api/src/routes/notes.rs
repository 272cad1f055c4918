//! Case note commands: add to an open case, edit and delete (the author, or a role that
//! may moderate notes).

use axum::extract::State;
use axum::http::StatusCode;
use events::case::Status;
use events::note::{self, Attachment, NoteCommand};
use events::reference::Reference;
use events::user;
use runtime::auth::{Caller, Permission};
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
use events::case;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(add)).routes(routes!(edit, remove))
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AttachmentBody {
    filename: String,
    mime_type: String,
    size: i64,
    storage_path: String,
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AddBody {
    content: String,
    #[serde(default)]
    is_internal: bool,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    attachments: Vec<AttachmentBody>,
}

impl CommandSchema for AddBody {
    const NAME: &'static str = "add_case_note";
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct EditBody {
    content: Option<String>,
    is_internal: Option<bool>,
    tags: Option<Vec<String>>,
}

impl CommandSchema for EditBody {
    const NAME: &'static str = "edit_case_note";
}

#[utoipa::path(post, path = "/v1/cases/{id}/notes", tag = "notes", operation_id = "notes_add", params(("id" = Uuid, Path)), request_body = AddBody, responses(runtime::openapi::CommandAnswered))]
async fn add(
    State(state): State<AppState>,
    ctx: CommandContext,
    ApiPath(case_id): ApiPath<Uuid>,
    Versioned { body, .. }: Versioned<AddBody>,
) -> Result<CommandReply, ApiError> {
    let caller = ctx.caller.require(Permission::CasesUpdate)?;
    super::acting_user(&state, &ctx.caller).await?;
    let hash = fingerprint(AddBody::NAME, Some(case_id), &body);
    let found = state.journal.state::<case::Case>(caller.tenant_id, case_id).await?;
    let customer_id = found.as_ref().and_then(|c| c.customer_id);
    let case = match found {
        None => Reference::Missing,
        Some(c) if c.status == Status::Closed => Reference::Inactive,
        Some(_) => Reference::Usable,
    };
    let attachments = body
        .attachments
        .into_iter()
        .map(|a| Attachment {
            id: Uuid::now_v7(),
            filename: a.filename,
            mime_type: a.mime_type,
            size: a.size,
            storage_path: a.storage_path,
        })
        .collect();
    let mentions = mentioned(&state, caller, &body.content, body.is_internal).await?;
    let cmd = NoteCommand::Add {
        case_id,
        case,
        mentions,
        content: body.content,
        is_internal: body.is_internal,
        tags: body.tags,
        attachments,
        customer_id,
    };
    let id = Uuid::now_v7();
    Ok(super::decide_in_tenant::<note::Note>(&state, &ctx, id, hash, Lookup::Nothing, StatusCode::CREATED, cmd)
        .await?
        .at(format!("/v1/notes/{id}")))
}

/// The active users a note's `@username`s name. An internal note notifies only those
/// who may read internal notes: a mention must not tell anyone else that the note exists.
async fn mentioned(state: &AppState, caller: Caller, content: &str, internal: bool) -> Result<Vec<Uuid>, ApiError> {
    let names = note::mentioned_usernames(content);
    let mut users = Vec::new();
    for id in state.journal.users_named(caller.tenant_id, &names).await? {
        let Some(user) = state.journal.state::<user::User>(caller.tenant_id, id).await? else { continue };
        let them = crate::context::rights_of(&user, 0).caller(id, caller.tenant_id);
        let reads_it = !internal || them.require(Permission::NotesViewInternal).is_ok();
        if user.status == user::UserStatus::Active && reads_it {
            users.push(id);
        }
    }
    Ok(users)
}

/// The author may change their note; others need notes:moderate.
async fn ensure_author_or_moderator(state: &AppState, ctx: &CommandContext, id: Uuid) -> Result<(), ApiError> {
    let caller = ctx.caller.require(Permission::CasesUpdate)?;
    let note = state.journal.state::<note::Note>(caller.tenant_id, id).await?;
    match note {
        Some(n) if n.author_id != caller.user_id => caller.require(Permission::NotesModerate).map(|_| ()),
        _ => Ok(()),
    }
}

#[utoipa::path(patch, path = "/v1/notes/{id}", tag = "notes", operation_id = "notes_edit", params(("id" = Uuid, Path)), request_body = EditBody, responses(runtime::openapi::CommandAnswered))]
async fn edit(
    State(state): State<AppState>,
    ctx: CommandContext,
    ApiPath(id): ApiPath<Uuid>,
    Versioned { body, .. }: Versioned<EditBody>,
) -> Result<CommandReply, ApiError> {
    ensure_author_or_moderator(&state, &ctx, id).await?;
    let hash = fingerprint(EditBody::NAME, Some(id), &body);
    let cmd = NoteCommand::Edit { content: body.content, is_internal: body.is_internal, tags: body.tags };
    super::change::<note::Note>(&state, &ctx, id, hash, cmd).await
}

#[utoipa::path(delete, path = "/v1/notes/{id}", tag = "notes", operation_id = "notes_remove", params(("id" = Uuid, Path)), responses(runtime::openapi::CommandAnswered))]
async fn remove(
    State(state): State<AppState>,
    ctx: CommandContext,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<CommandReply, ApiError> {
    ensure_author_or_moderator(&state, &ctx, id).await?;
    let hash = fingerprint("delete_case_note", Some(id), &());
    super::change::<note::Note>(&state, &ctx, id, hash, NoteCommand::Delete).await
}
