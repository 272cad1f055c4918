//! Tenant provisioning (platform administrators only).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use chrono::Utc;
use events::tenant::{self, TenantCommand};
use runtime::extract::ApiJson;
use runtime::ApiError;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::AppState;
use crate::context::CommandContext;
use crate::journal::{fingerprint, Command, CommandReply, Lookup, TenantStream};

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/tenants", post(provision))
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProvisionTenant {
    name: String,
    slug: String,
    /// Optional: lets an operator choose the id (e.g. to re-create a known tenant).
    id: Option<Uuid>,
}

async fn provision(
    State(state): State<AppState>,
    ctx: CommandContext,
    ApiJson(body): ApiJson<ProvisionTenant>,
) -> Result<CommandReply, ApiError> {
    ctx.caller.platform_admin()?;
    let tenant_id = body.id.unwrap_or_else(Uuid::now_v7);
    let hash = fingerprint("provision_tenant", None, &body);
    let command = Command {
        ctx: &ctx,
        tenant_id,
        stream_id: tenant_id,
        request_hash: hash,
        lookup: Lookup::TenantSlug(body.slug.clone()),
        success: StatusCode::CREATED,
    };
    let provision = TenantCommand::Provision { name: body.name, slug: body.slug };
    state.journal.execute::<TenantStream>(command, |s, _| tenant::decide(s, provision, Utc::now())).await
}
