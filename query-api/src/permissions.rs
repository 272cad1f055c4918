//! The caller as the read model knows them now, not as their token said at login: the
//! current role, the grants of their current permission document, and whether the account
//! is still active. Cached in Redis under the seed's key `user:{id}:permissions` for an
//! hour (seed §6.3.2); the projector drops the key when the role, the permissions or the
//! status change, so a demoted or locked user loses access at once, not at token expiry.

use redis::AsyncCommands;
use runtime::auth::{Caller, Permission, Role};
use runtime::tenancy::Tenancy;
use runtime::ApiError;
use serde_json::Value;

use crate::routes::{missing_schema_is_empty, tenant_tx, AppState};

const PERMISSIONS_TTL_SECS: i64 = 3600;

/// What is cached per user.
struct Current {
    role: String,
    status: String,
    grants: u32,
}

pub async fn current(state: &AppState, caller: Caller) -> Result<Caller, ApiError> {
    let caller = caller.tenant_member()?;
    let key = Tenancy(caller.tenant_id).redis_user_permissions(caller.user_id);
    let mut redis = state.redis.clone();
    let cached: redis::RedisResult<(Option<String>, Option<String>, Option<u32>)> =
        redis::pipe().hget(&key, "role").hget(&key, "status").hget(&key, "grants").query_async(&mut redis).await;
    let current = match cached {
        Ok((Some(role), Some(status), Some(grants))) => Some(Current { role, status, grants }),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, "reading the permission cache failed; reading PostgreSQL");
            None
        }
    };
    let current = match current {
        Some(c) => Some(c),
        None => {
            let loaded = load(state, caller).await?;
            if let Some(c) = &loaded {
                let stored: redis::RedisResult<()> = redis
                    .hset_multiple(
                        &key,
                        &[("role", c.role.clone()), ("status", c.status.clone()), ("grants", c.grants.to_string())],
                    )
                    .await;
                let expired: redis::RedisResult<()> = redis.expire(&key, PERMISSIONS_TTL_SECS).await;
                if let Err(e) = stored.and(expired) {
                    tracing::warn!(error = %e, "writing the permission cache failed");
                }
            }
            loaded
        }
    };
    // A token of no known user (a service token, or a user not projected yet) keeps its own rights.
    let Some(current) = current else { return Ok(caller) };
    if current.status != "active" {
        return Err(ApiError::Forbidden(format!(
            "the account {} is {}; an administrator can reactivate it",
            caller.user_id, current.status
        )));
    }
    let role: Role = serde_json::from_value(Value::String(current.role)).unwrap_or(caller.role);
    Ok(Caller { role, grants: current.grants, ..caller })
}

async fn load(state: &AppState, caller: Caller) -> Result<Option<Current>, ApiError> {
    let schema = Tenancy(caller.tenant_id).pg_schema();
    let (mut tx, _) = tenant_tx(&state.pool, caller).await?;
    let row: Option<(String, String, Option<Value>)> =
        sqlx::query_as(&format!("SELECT role, status, permissions FROM {schema}.users WHERE id = $1"))
            .bind(caller.user_id)
            .fetch_optional(&mut *tx)
            .await
            .or_else(missing_schema_is_empty)?;
    Ok(row.map(|(role, status, permissions)| {
        let granted = match permissions {
            Some(Value::Object(document)) => Permission::from_document(&document),
            _ => Vec::new(),
        };
        Current { role, status, grants: Permission::bits(&granted) }
    }))
}
