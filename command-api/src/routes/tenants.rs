//! Tenant commands: provision, update settings (platform or the tenant's own admins),
//! suspend and reactivate (platform administrators).

use events::tenant::{self, Settings, TenantCommand, TenantStatus};
use runtime::auth::{Permission, Role};
use runtime::ApiError;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use super::endpoint::{Endpoint, Facts, Route, Target};
use super::AppState;
use crate::journal::Lookup;

pub fn router() -> OpenApiRouter<AppState> {
    super::endpoint::router!["tenants": ProvisionTenant, UpdateSettings, Suspend, Reactivate]
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

impl Endpoint for ProvisionTenant {
    type Stream = tenant::Tenant;
    type Path = ();
    const ROUTE: Route = Route::post("/v1/tenants", "tenants_provision").named("provision_tenant").by_platform();

    fn check(&self) -> Result<(), ApiError> {
        rate_limits(&self.settings).map(drop)
    }

    fn target(&self, _: &()) -> Result<Target, ApiError> {
        Target::chosen("/v1/tenants", self.id)
    }

    fn lookup(&self) -> Lookup {
        Lookup::TenantSlug(self.slug.clone())
    }

    async fn command(self, _: (), _: Facts<'_>) -> Result<TenantCommand, ApiError> {
        Ok(TenantCommand::Provision { name: self.name, slug: self.slug, settings: self.settings })
    }

    async fn recorded(facts: Facts<'_>, id: Uuid, command: &TenantCommand) -> Result<(), ApiError> {
        publish_rate_limits(facts.state, id, command).await
    }
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateSettings {
    #[schema(value_type = Object)]
    settings: Settings,
}

/// Settings only the platform operator may change.
const OPERATOR_SETTINGS: [&str; 2] = ["rate_limits", "retention_days"];

/// A settings document's rate-limit overrides (422 when malformed).
fn rate_limits(settings: &Settings) -> Result<Vec<(String, u32)>, ApiError> {
    runtime::limits::overrides_of(settings).map_err(|e| ApiError::unprocessable(format!("settings: {e}")))
}

impl Endpoint for UpdateSettings {
    type Stream = tenant::Tenant;
    type Path = Uuid;
    const ROUTE: Route = Route::patch("/v1/tenants/{id}/settings", "tenants_update_settings")
        .named("update_tenant_settings")
        .holds(Permission::TenantSettings);

    async fn command(self, id: Uuid, facts: Facts<'_>) -> Result<TenantCommand, ApiError> {
        let operator = facts.caller.role == Role::PlatformAdmin;
        if !operator && facts.tenant() != id {
            return Err(ApiError::NotFound("tenant not found".into()));
        }
        let mut settings = self.settings;
        // Rate limits and retention are the platform operator's to set (a retention of a day
        // would let a tenant's administrator erase the audit trail within the hour): a
        // tenant's own update keeps them.
        if !operator {
            let tenant = facts.state.journal.tenant(id).await?;
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
        rate_limits(&settings)?;
        Ok(TenantCommand::UpdateSettings { settings })
    }

    async fn recorded(facts: Facts<'_>, id: Uuid, command: &TenantCommand) -> Result<(), ApiError> {
        publish_rate_limits(facts.state, id, command).await
    }
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Suspend {
    reason: String,
}

impl Endpoint for Suspend {
    type Stream = tenant::Tenant;
    type Path = Uuid;
    const ROUTE: Route =
        Route::post("/v1/tenants/{id}/suspend", "tenants_suspend").named("suspend_tenant").by_platform();

    async fn command(self, _: Uuid, _: Facts<'_>) -> Result<TenantCommand, ApiError> {
        Ok(TenantCommand::Suspend { reason: self.reason })
    }

    /// Its users are refused from the next request on, reads included (`Sessions::admit`).
    async fn recorded(facts: Facts<'_>, id: Uuid, _: &TenantCommand) -> Result<(), ApiError> {
        publish_status(facts.state, id).await
    }
}

#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Reactivate {}

impl Endpoint for Reactivate {
    type Stream = tenant::Tenant;
    type Path = Uuid;
    const ROUTE: Route =
        Route::post("/v1/tenants/{id}/reactivate", "tenants_reactivate").named("reactivate_tenant").by_platform();

    async fn command(self, _: Uuid, _: Facts<'_>) -> Result<TenantCommand, ApiError> {
        Ok(TenantCommand::Reactivate)
    }

    async fn recorded(facts: Facts<'_>, id: Uuid, _: &TenantCommand) -> Result<(), ApiError> {
        publish_status(facts.state, id).await
    }
}

/// The rate-limit overrides a command sets, for every instance's next request.
async fn publish_rate_limits(state: &AppState, id: Uuid, command: &TenantCommand) -> Result<(), ApiError> {
    if let TenantCommand::Provision { settings, .. } | TenantCommand::UpdateSettings { settings } = command {
        state.sessions.publish_rate_limits(id, &rate_limits(settings)?).await?;
    }
    Ok(())
}

/// The tenant's status as the journal holds it now (a concurrent suspension and
/// reactivation settle on the newer), for every instance's next request.
async fn publish_status(state: &AppState, id: Uuid) -> Result<(), ApiError> {
    if let (Some(tenant), version) = state.journal.state_at::<tenant::Tenant>(id, id).await? {
        state.sessions.publish_tenant_status(id, tenant.status == TenantStatus::Suspended, version).await?;
    }
    Ok(())
}
