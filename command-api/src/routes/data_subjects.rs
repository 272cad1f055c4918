//! Data subjects (DESIGN.md guarantee 12): erasure by crypto-shredding. A data subject is
//! a user of the tenant, identified by their user id, or a customer that cases name,
//! identified by the `customer_id` they were opened with (`events::personal` lists which
//! fields are personal). Erasing one deletes their key, so every personal field of their
//! events, in the journal, in Kafka and in any later replay or rebuild, reads as a
//! marker; the `UserErased` or `DataSubjectErased` event has every projection replace
//! what it holds.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use events::data_subject::{self, DataSubject};
use events::user::{self, UserCommand};
use runtime::auth::Role;
use runtime::extract::ApiPath;
use runtime::ApiError;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{AppState, CommandReply};
use crate::context::CommandContext;
use crate::journal::{fingerprint, Lookup};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(erase)).routes(routes!(erase_as_operator))
}

/// Erases a data subject (tenant administrators only): their personal fields read as
/// `[erased]` (a user's username and email as `erased-<id>`) everywhere from now on.
/// A user's account is inactive for good, their sessions end, and their username and
/// email are free again. A customer's cases, notes and interactions stay, without their
/// data, and nothing more is recorded about them (a case naming them, or a note or an
/// interaction on such a case, is refused with 409). Cannot be undone. Erasing an erased
/// subject changes nothing (200).
#[utoipa::path(post, path = "/v1/data-subjects/{id}/erasure", tag = "data-subjects", operation_id = "data_subjects_erase", params(("id" = Uuid, Path, description = "the data subject: a user's id, or the customer_id cases were opened with")), responses(runtime::openapi::CommandAnswered))]
async fn erase(
    State(state): State<AppState>,
    ctx: CommandContext,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<CommandReply, ApiError> {
    let caller = ctx.caller.tenant_member()?;
    if caller.role != Role::Admin {
        return Err(ApiError::Forbidden(format!(
            "only a tenant administrator erases a data subject; your role is {}",
            caller.role.as_str()
        )));
    }
    if caller.user_id == id {
        return Err(ApiError::Conflict {
            detail: "you cannot erase yourself: another administrator of the tenant can".into(),
            current_version: None,
        });
    }
    super::ensure_active_tenant(&state, caller.tenant_id).await?;
    erase_in(&state, &ctx, caller.tenant_id, id, false).await
}

/// The same erasure by the platform operator (platform administrators), in any tenant,
/// suspended ones too: a data subject's right to erasure does not wait for their
/// tenant's administrators, or for the tenant to be reactivated.
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/data-subjects/{id}/erasure", tag = "data-subjects", operation_id = "data_subjects_erase_as_operator", params(("tenant_id" = Uuid, Path), ("id" = Uuid, Path, description = "the data subject: a user's id, or the customer_id cases were opened with")), responses(runtime::openapi::CommandAnswered))]
async fn erase_as_operator(
    State(state): State<AppState>,
    ctx: CommandContext,
    ApiPath((tenant, id)): ApiPath<(Uuid, Uuid)>,
) -> Result<CommandReply, ApiError> {
    ctx.caller.platform_admin()?;
    if state.journal.tenant(tenant).await?.is_none() {
        return Err(ApiError::NotFound(format!("no tenant {tenant}")));
    }
    erase_in(&state, &ctx, tenant, id, true).await
}

/// Erases the user or customer `id` of `tenant` (the caller's right to was checked).
/// The platform operator (`by_operator`) also erases an active administrator: a
/// suspended tenant's could not be deactivated first.
async fn erase_in(
    state: &AppState,
    ctx: &CommandContext,
    tenant: Uuid,
    id: Uuid,
    by_operator: bool,
) -> Result<CommandReply, ApiError> {
    let Some(subject) = state.journal.state::<user::User>(tenant, id).await? else {
        return erase_customer(state, ctx, tenant, id).await;
    };
    // Two administrators cannot erase each other at once and leave the tenant with none.
    let active_admin = subject.role == user::UserRole::Admin && subject.status == user::UserStatus::Active;
    if active_admin && !subject.erased && !by_operator {
        return Err(ApiError::Conflict {
            detail: format!("{id} is an active administrator: deactivate them first (POST /v1/users/{id}/status)"),
            current_version: None,
        });
    }
    // The tenant is in the request: a platform token's keys are not scoped to one.
    let hash = fingerprint("erase_data_subject", Some(id), &tenant);
    let marker = format!("erased-{id}");
    let reply = super::execute_for(state, ctx, tenant, id, hash, Lookup::Erasure, StatusCode::OK, |s| {
        user::decide(s, UserCommand::Erase { marker: marker.clone() }, &events::Context::at(Utc::now()))
    })
    .await?;
    super::users::publish_rights(state, tenant, id).await?;
    tracing::info!(tenant = %tenant, subject = %id, by = %ctx.caller.user_id, "erased a data subject");
    Ok(reply)
}

/// Erases a customer: a subject the tenant sealed data for (a case named them) who is
/// not one of its users.
async fn erase_customer(
    state: &AppState,
    ctx: &CommandContext,
    tenant: Uuid,
    id: Uuid,
) -> Result<CommandReply, ApiError> {
    let known = runtime::subject_keys::known(state.journal.pool(), tenant, id).await.map_err(anyhow::Error::from)?;
    if known.is_none() {
        return Err(ApiError::NotFound(format!(
            "no data subject {id} in this tenant (a data subject is a user, or the customer_id of a case)"
        )));
    }
    // The key goes first, on its own: should the event not be appended (a retry appends
    // it), nothing sealed for them opens from now on anyway.
    runtime::subject_keys::erase(state.journal.pool(), tenant, id).await.map_err(anyhow::Error::from)?;
    let hash = fingerprint("erase_data_subject", Some(id), &tenant);
    let lookup = Lookup::SubjectErasure { subject: id };
    let stream = data_subject::stream_id(id);
    let reply = super::execute_for::<DataSubject>(state, ctx, tenant, stream, hash, lookup, StatusCode::OK, |s| {
        data_subject::erase(s, id, Utc::now())
    })
    .await?;
    tracing::info!(tenant = %tenant, subject = %id, by = %ctx.caller.user_id, "erased a data subject (a customer)");
    Ok(reply)
}
