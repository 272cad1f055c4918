//! Case note commands: add to an open case, edit and delete (the author, or a role that
//! may moderate notes).

use events::note::{self, Attachment, NoteCommand};
use events::user;
use runtime::auth::{Caller, Permission};
use runtime::ApiError;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use super::endpoint::{self, Body, Endpoint, Facts, Route, Target};
use super::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    super::endpoint::router!["notes": AddBody, EditBody, RemoveBody]
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

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct EditBody {
    content: Option<String>,
    is_internal: Option<bool>,
    tags: Option<Vec<String>>,
}

endpoint::no_fields!(RemoveBody);

impl Endpoint for AddBody {
    type Stream = note::Note;
    type Path = Uuid;
    const ROUTE: Route =
        Route::post("/v1/cases/{id}/notes", "notes_add").named("add_case_note").holds(Permission::CasesUpdate);

    fn target(&self, _: &Uuid) -> Result<Target, ApiError> {
        Ok(Target::new("/v1/notes"))
    }

    async fn command(self, case_id: Uuid, facts: Facts<'_>) -> Result<NoteCommand, ApiError> {
        facts.acting_user().await?;
        let (case, customer_id) = facts.case(case_id).await?;
        let attachments = self
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
        let mentions = mentioned(facts.state, facts.caller, &self.content, self.is_internal).await?;
        Ok(NoteCommand::Add {
            case_id,
            case,
            mentions,
            content: self.content,
            is_internal: self.is_internal,
            tags: self.tags,
            attachments,
            customer_id,
        })
    }
}

/// The author may change their note; others need notes:moderate.
async fn author_or_moderator(facts: Facts<'_>, id: Uuid) -> Result<(), ApiError> {
    match facts.stream::<note::Note>(id).await? {
        Some(note) => facts.owner_or(note.author_id, Permission::NotesModerate),
        None => Ok(()),
    }
}

impl Endpoint for EditBody {
    type Stream = note::Note;
    type Path = Uuid;
    const ROUTE: Route =
        Route::patch("/v1/notes/{id}", "notes_edit").named("edit_case_note").holds(Permission::CasesUpdate);

    async fn command(self, id: Uuid, facts: Facts<'_>) -> Result<NoteCommand, ApiError> {
        author_or_moderator(facts, id).await?;
        Ok(NoteCommand::Edit { content: self.content, is_internal: self.is_internal, tags: self.tags })
    }
}

impl Endpoint for RemoveBody {
    type Stream = note::Note;
    type Path = Uuid;
    const ROUTE: Route =
        Route::delete("/v1/notes/{id}", "notes_remove").named("delete_case_note").holds(Permission::CasesUpdate);
    const BODY: Body = Body::Ignored;

    async fn command(self, id: Uuid, facts: Facts<'_>) -> Result<NoteCommand, ApiError> {
        author_or_moderator(facts, id).await?;
        Ok(NoteCommand::Delete)
    }
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
