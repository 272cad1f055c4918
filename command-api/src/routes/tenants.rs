//! Tenant commands: provision, update settings (platform or the tenant's own admins),
//! suspend and reactivate (platform administrators).

use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use events::tenant::{self, Settings, TenantCommand, TenantStatus};
use runtime::auth::{Permission, Role};
use runtime::extract::ApiPath;
use runtime::ApiError;
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::AppState;
use super::CommandReply;
use crate::context::CommandContext;
use crate::journal::{fingerprint, Command, Lookup};
use crate::versioned::{CommandSchema, Versioned};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(provision))
        .routes(routes!(update_settings))
        .routes(routes!(suspend))
        .routes(routes!(reactivate))
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ProvisionTenant {
    name: String,
    slug: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    settings: Settings,
    /// Optional: lets an operator choose the id (e.g. to re-create a known tenant).
    id: Option<Uuid>,
}

impl CommandSchema for ProvisionTenant {
    const NAME: &'static str = "provision_tenant";
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateSettings {
    #[schema(value_type = Object)]
    settings: Settings,
}

impl CommandSchema for UpdateSettings {
    const NAME: &'static str = "update_tenant_settings";
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Suspend {
    reason: String,
}

impl CommandSchema for Suspend {
    const NAME: &'static str = "suspend_tenant";
}

#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Reactivate {}

impl CommandSchema for Reactivate {
    const NAME: &'static str = "reactivate_tenant";
}

#[utoipa::path(post, path = "/v1/tenants", tag = "tenants", operation_id = "tenants_provision", request_body = ProvisionTenant, responses(runtime::openapi::CommandAnswered))]
async fn provision(
    State(state): State<AppState>,
    ctx: CommandContext,
    Versioned { body, .. }: Versioned<ProvisionTenant>,
) -> Result<CommandReply, ApiError> {
    ctx.caller.platform_admin()?;
    let overrides = rate_limits(&body.settings)?;
    let tenant_id = super::chosen_id(body.id)?;
    let command = Command {
        meta: &ctx.meta,
        tenant_id,
        stream_id: tenant_id,
        request_hash: fingerprint(ProvisionTenant::NAME, None, &body),
        lookup: Lookup::TenantSlug(body.slug.clone()),
    };
    let provision = TenantCommand::Provision { name: body.name, slug: body.slug, settings: body.settings };
    let reply = super::execute::<tenant::Tenant>(&state, command, StatusCode::CREATED, |s, _| {
        tenant::decide(s, provision.clone(), &events::Context::at(Utc::now()))
    })
    .await?;
    state.sessions.publish_rate_limits(tenant_id, &overrides).await?;
    Ok(reply)
}

/// Settings only the platform operator may change.
const OPERATOR_SETTINGS: [&str; 2] = ["rate_limits", "retention_days"];

/// A settings document's rate-limit overrides (422 when malformed).
fn rate_limits(settings: &Settings) -> Result<Vec<(String, u32)>, ApiError> {
    runtime::limits::overrides_of(settings).map_err(|e| ApiError::unprocessable(format!("settings: {e}")))
}

#[utoipa::path(patch, path = "/v1/tenants/{id}/settings", tag = "tenants", operation_id = "tenants_update_settings", params(("id" = Uuid, Path)), request_body = UpdateSettings, responses(runtime::openapi::CommandAnswered))]
async fn update_settings(
    State(state): State<AppState>,
    ctx: CommandContext,
    ApiPath(id): ApiPath<Uuid>,
    Versioned { body, .. }: Versioned<UpdateSettings>,
) -> Result<CommandReply, ApiError> {
    let caller = ctx.caller.require(Permission::TenantSettings)?;
    if caller.role != Role::PlatformAdmin && caller.tenant_id != id {
        return Err(ApiError::NotFound("tenant not found".into()));
    }
    let mut settings = body.settings.clone();
    // Rate limits and retention are the platform operator's to set (a retention of a day
    // would let a tenant's administrator erase the audit trail within the hour): a
    // tenant's own update keeps them.
    if caller.role != Role::PlatformAdmin {
        let tenant = state.journal.tenant(id).await?;
        for key in OPERATOR_SETTINGS {
            let held = tenant.as_ref().and_then(|t| t.settings.get(key).cloned());
            match (settings.get(key), held) {
                (Some(asked), held) if Some(asked) != held.as_ref() => {
                    return Err(ApiError::Forbidden(format!("settings: {key} is set by the platform operator")))
                }
                (_, Some(held)) => {
                    settings.insert(key.into(), held);
                }
                _ => {}
            }
        }
    }
    let overrides = rate_limits(&settings)?;
    let hash = fingerprint(UpdateSettings::NAME, Some(id), &body);
    let reply = run(&state, &ctx, id, hash, TenantCommand::UpdateSettings { settings }).await?;
    state.sessions.publish_rate_limits(id, &overrides).await?;
    Ok(reply)
}

#[utoipa::path(post, path = "/v1/tenants/{id}/suspend", tag = "tenants", operation_id = "tenants_suspend", params(("id" = Uuid, Path)), request_body = Suspend, responses(runtime::openapi::CommandAnswered))]
async fn suspend(
    State(state): State<AppState>,
    ctx: CommandContext,
    ApiPath(id): ApiPath<Uuid>,
    Versioned { body, .. }: Versioned<Suspend>,
) -> Result<CommandReply, ApiError> {
    ctx.caller.platform_admin()?;
    let hash = fingerprint(Suspend::NAME, Some(id), &body);
    let reply = run(&state, &ctx, id, hash, TenantCommand::Suspend { reason: body.reason }).await?;
    // Its users are refused from the next request on, reads included (`Sessions::admit`).
    publish_status(&state, id).await?;
    Ok(reply)
}

#[utoipa::path(post, path = "/v1/tenants/{id}/reactivate", tag = "tenants", operation_id = "tenants_reactivate", params(("id" = Uuid, Path)), request_body = Reactivate, responses(runtime::openapi::CommandAnswered))]
async fn reactivate(
    State(state): State<AppState>,
    ctx: CommandContext,
    ApiPath(id): ApiPath<Uuid>,
    Versioned { body, .. }: Versioned<Reactivate>,
) -> Result<CommandReply, ApiError> {
    ctx.caller.platform_admin()?;
    let hash = fingerprint(Reactivate::NAME, Some(id), &body);
    let reply = run(&state, &ctx, id, hash, TenantCommand::Reactivate).await?;
    publish_status(&state, id).await?;
    Ok(reply)
}

/// The tenant's status as the journal holds it now (a concurrent suspension and
/// reactivation settle on the newer), for every instance's next request.
async fn publish_status(state: &AppState, id: Uuid) -> Result<(), ApiError> {
    if let (Some(tenant), version) = state.journal.state_at::<tenant::Tenant>(id, id).await? {
        state.sessions.publish_tenant_status(id, tenant.status == TenantStatus::Suspended, version).await?;
    }
    Ok(())
}

async fn run(
    state: &AppState,
    ctx: &CommandContext,
    id: Uuid,
    hash: String,
    cmd: TenantCommand,
) -> Result<CommandReply, ApiError> {
    let command =
        Command { meta: &ctx.meta, tenant_id: id, stream_id: id, request_hash: hash, lookup: Lookup::Nothing };
    super::execute::<tenant::Tenant>(state, command, StatusCode::OK, |s, _| {
        tenant::decide(s, cmd.clone(), &events::Context::at(Utc::now()))
    })
    .await
}
