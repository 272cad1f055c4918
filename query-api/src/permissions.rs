//! The caller as live state knows them now, not as their token said at login: every read
//! needs the token's session alive and the tenant active (`Sessions::admit`), and takes
//! the user's role, grants and status from the rights cache in Redis (seed §6.3.2,
//! `user:{id}:permissions`), else from the `users` read model.
//!
//! The command API writes the cache in the same request that changes a user, with the
//! user's stream version, and raises the user's revision; a copy older than the revision
//! is never served. On a miss the read model is used only when it holds that revision
//! too; otherwise the read answers 503 (retry in a moment) rather than serve a lock or a
//! demotion that the read model does not show yet.

use runtime::auth::{Authority, Caller, Permission, Token};
use runtime::session::Rights;
use runtime::tenancy::Tenancy;
use runtime::ApiError;
use serde_json::Value;

use crate::routes::{missing_schema_is_empty, tenant_tx, AppState};

impl Authority for AppState {
    async fn authorise(&self, token: Token) -> Result<Caller, ApiError> {
        let Some(seen) = self.sessions.admit(&token).await? else { return Ok(token.caller) };
        let caller = token.caller;
        if !seen.tenant_status_known {
            ensure_active_tenant(self, caller).await?;
        }
        if caller.operator {
            return Ok(caller);
        }
        let rights =
            match seen.fresh_rights() {
                Some(rights) => rights.clone(),
                None => match load(self, caller).await? {
                    Some(rights) if rights.version >= seen.revision => {
                        if let Err(e) = self.sessions.remember(caller.tenant_id, caller.user_id, &rights).await {
                            tracing::warn!(error = %e, "writing the rights cache failed");
                        }
                        rights
                    }
                    _ => return Err(ApiError::Unavailable(
                        "your account changed a moment ago and the read models do not show it yet; retry in a second"
                            .into(),
                    )),
                },
            };
        if rights.status != "active" {
            return Err(ApiError::Forbidden(format!(
                "the account {} is {}; an administrator can reactivate it",
                caller.user_id, rights.status
            )));
        }
        Ok(Caller { role: rights.role, grants: rights.grants, ..caller })
    }
}

async fn load(state: &AppState, caller: Caller) -> Result<Option<Rights>, ApiError> {
    let schema = Tenancy(caller.tenant_id).pg_schema();
    let (mut tx, _) = tenant_tx(&state.pool, caller).await?;
    let row: Option<(String, String, Option<Value>, i64)> =
        sqlx::query_as(&format!("SELECT role, status, permissions, version FROM {schema}.users WHERE id = $1"))
            .bind(caller.user_id)
            .fetch_optional(&mut *tx)
            .await
            .or_else(missing_schema_is_empty)?;
    Ok(row.and_then(|(role, status, permissions, version)| {
        let granted = match permissions {
            Some(Value::Object(document)) => Permission::from_document(&document),
            _ => Vec::new(),
        };
        let role = serde_json::from_value(Value::String(role)).ok()?;
        Some(Rights { version, role, status, grants: Permission::bits(&granted) })
    }))
}

/// The tenant's status from the read model when Redis does not hold it, written back so
/// the next request finds it there: a suspension is never forgotten with Redis' data.
async fn ensure_active_tenant(state: &AppState, caller: Caller) -> Result<(), ApiError> {
    let (mut tx, tenant) = tenant_tx(&state.pool, caller).await?;
    let row: Option<(String, i64)> = sqlx::query_as("SELECT status, version FROM public.tenants WHERE id = $1")
        .bind(tenant)
        .fetch_optional(&mut *tx)
        .await?;
    match row {
        Some((status, version)) if status == "suspended" => {
            if let Err(e) = state.sessions.publish_tenant_status(tenant, true, version).await {
                tracing::warn!(error = %e, "writing the tenant's status to Redis failed");
            }
            Err(ApiError::Forbidden("the tenant is suspended; ask the platform operator".into()))
        }
        Some(_) => {
            if let Err(e) = state.sessions.note_active_tenant(tenant).await {
                tracing::warn!(error = %e, "writing the tenant's status to Redis failed");
            }
            Ok(())
        }
        // Not projected yet: nothing of it can be read either.
        None => Ok(()),
    }
}
