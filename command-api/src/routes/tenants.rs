//! Tenant commands: provision, update settings (platform or the tenant's own admins),
//! suspend and reactivate (platform administrators).

use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use events::tenant::{self, Settings, TenantCommand};
use runtime::auth::{Permission, Role};
use runtime::extract::ApiPath;
use runtime::ApiError;
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::AppState;
use crate::context::CommandContext;
use crate::journal::{fingerprint, Command, CommandReply, Lookup, TenantStream};
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
    let tenant_id = body.id.unwrap_or_else(Uuid::now_v7);
    let command = Command {
        ctx: &ctx,
        tenant_id,
        stream_id: tenant_id,
        request_hash: fingerprint(ProvisionTenant::NAME, None, &body),
        lookup: Lookup::TenantSlug(body.slug.clone()),
        success: StatusCode::CREATED,
    };
    let provision = TenantCommand::Provision { name: body.name, slug: body.slug, settings: body.settings };
    state.journal.execute::<TenantStream>(command, |s, _| tenant::decide(s, provision, Utc::now())).await
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
    let hash = fingerprint(UpdateSettings::NAME, Some(id), &body);
    run(&state, &ctx, id, hash, TenantCommand::UpdateSettings { settings: body.settings }).await
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
    state.sessions.publish_tenant_status(id, true).await?;
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
    state.sessions.publish_tenant_status(id, false).await?;
    Ok(reply)
}

async fn run(
    state: &AppState,
    ctx: &CommandContext,
    id: Uuid,
    hash: String,
    cmd: TenantCommand,
) -> Result<CommandReply, ApiError> {
    let command = Command {
        ctx,
        tenant_id: id,
        stream_id: id,
        request_hash: hash,
        lookup: Lookup::Nothing,
        success: StatusCode::OK,
    };
    state.journal.execute::<TenantStream>(command, |s, _| tenant::decide(s, cmd, Utc::now())).await
}
