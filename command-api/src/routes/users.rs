//! User commands (tenant administrators manage users; users edit their own profile and
//! preferences) and the login that exchanges username and password for a bearer token.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use events::tenant::TenantStatus;
use events::user::{
    self, normalise_email, normalise_username, CreateUser, Document, UserCommand, UserRole, UserStatus,
};
use events::FieldError;
use runtime::auth::{Caller, Permission, Role};
use runtime::extract::ApiPath;
use runtime::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::AppState;
use crate::context::{CommandContext, RequestFacts};
use crate::journal::{fingerprint, Command, CommandReply, Lookup, UserStream};
use crate::versioned::{CommandSchema, Versioned};

const MIN_PASSWORD: usize = 12;
const MAX_PASSWORD: usize = 256;
const TOKEN_HOURS: i64 = 8;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(update_profile))
        .routes(routes!(change_role))
        .routes(routes!(change_status))
        .routes(routes!(set_permissions))
        .routes(routes!(set_preferences))
        .routes(routes!(login))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    username: String,
    email: String,
    password: String,
    first_name: Option<String>,
    last_name: Option<String>,
    role: UserRole,
    /// Optional: lets an administrator choose the id (e.g. a well-known demo user).
    id: Option<Uuid>,
}

impl CommandSchema for CreateBody {
    const NAME: &'static str = "create_user";
}

/// What the idempotency fingerprint sees of a create: never the password itself.
#[derive(Serialize)]
struct CreateFingerprint<'a> {
    username: &'a str,
    email: &'a str,
    first_name: &'a Option<String>,
    last_name: &'a Option<String>,
    role: UserRole,
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ProfileBody {
    #[serde(default, deserialize_with = "crate::versioned::present")]
    first_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::versioned::present")]
    last_name: Option<Option<String>>,
    email: Option<String>,
}

impl CommandSchema for ProfileBody {
    const NAME: &'static str = "update_user_profile";
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RoleBody {
    role: UserRole,
}

impl CommandSchema for RoleBody {
    const NAME: &'static str = "change_user_role";
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct StatusBody {
    status: UserStatus,
}

impl CommandSchema for StatusBody {
    const NAME: &'static str = "change_user_status";
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PermissionsBody {
    #[schema(value_type = Object)]
    permissions: Document,
}

impl CommandSchema for PermissionsBody {
    const NAME: &'static str = "set_user_permissions";
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PreferencesBody {
    #[schema(value_type = Object)]
    preferences: Document,
}

impl CommandSchema for PreferencesBody {
    const NAME: &'static str = "set_user_preferences";
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    /// The tenant's slug.
    tenant: String,
    username: String,
    password: String,
}

async fn hash_password(password: String) -> Result<String, ApiError> {
    let len = password.chars().count();
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&len) {
        return Err(ApiError::Unprocessable {
            detail: "some fields are invalid; see errors".into(),
            errors: vec![FieldError::new("password", format!("must be {MIN_PASSWORD}-{MAX_PASSWORD} characters"))],
        });
    }
    // Hashing is CPU-bound by design; keep it off the async workers.
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string())
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))?
    .map_err(|e| ApiError::Internal(anyhow::anyhow!("hashing a password: {e}")))
}

#[utoipa::path(post, path = "/v1/users", tag = "users", operation_id = "users_create", request_body = CreateBody, responses(runtime::openapi::CommandAnswered))]
async fn create(
    State(state): State<AppState>,
    ctx: CommandContext,
    Versioned { body, .. }: Versioned<CreateBody>,
) -> Result<CommandReply, ApiError> {
    let caller = ctx.caller.require(Permission::UsersManage)?;
    super::ensure_active_tenant(&state, caller.tenant_id).await?;
    let username = normalise_username(&body.username);
    let email = normalise_email(&body.email);
    let hash = fingerprint(
        CreateBody::NAME,
        None,
        &CreateFingerprint {
            username: &username,
            email: &email,
            first_name: &body.first_name,
            last_name: &body.last_name,
            role: body.role,
        },
    );
    let password_hash = hash_password(body.password).await?;
    let user_id = body.id.unwrap_or_else(Uuid::now_v7);
    let command = Command {
        ctx: &ctx,
        tenant_id: caller.tenant_id,
        stream_id: user_id,
        request_hash: hash,
        lookup: Lookup::UserIdentity { username: Some(username), email: Some(email) },
        success: StatusCode::CREATED,
    };
    let cmd = UserCommand::Create(CreateUser {
        username: body.username,
        email: body.email,
        password_hash,
        first_name: body.first_name,
        last_name: body.last_name,
        role: body.role,
    });
    let mut reply = state.journal.execute::<UserStream>(command, |s, _| user::decide(s, cmd, Utc::now())).await?;
    if let Some(id) = reply.body["id"].as_str().map(str::to_owned) {
        reply.body["location"] = format!("/v1/users/{id}").into();
    }
    Ok(reply)
}

/// Users may change their own profile and preferences; anything else needs users:manage.
fn self_or_manager(caller: Caller, id: Uuid) -> Result<Caller, ApiError> {
    if caller.user_id == id && caller.role != Role::PlatformAdmin {
        Ok(caller)
    } else {
        caller.require(Permission::UsersManage)
    }
}

#[utoipa::path(patch, path = "/v1/users/{id}/profile", tag = "users", operation_id = "users_update_profile", params(("id" = Uuid, Path)), request_body = ProfileBody, responses(runtime::openapi::CommandAnswered))]
async fn update_profile(
    State(state): State<AppState>,
    ctx: CommandContext,
    ApiPath(id): ApiPath<Uuid>,
    Versioned { body, .. }: Versioned<ProfileBody>,
) -> Result<CommandReply, ApiError> {
    self_or_manager(ctx.caller, id)?;
    let hash = fingerprint(ProfileBody::NAME, Some(id), &body);
    let email = body.email.as_deref().map(normalise_email);
    let lookup = Lookup::UserIdentity { username: None, email };
    let cmd = UserCommand::UpdateProfile { first_name: body.first_name, last_name: body.last_name, email: body.email };
    run(&state, &ctx, id, hash, lookup, cmd).await
}

#[utoipa::path(post, path = "/v1/users/{id}/role", tag = "users", operation_id = "users_change_role", params(("id" = Uuid, Path)), request_body = RoleBody, responses(runtime::openapi::CommandAnswered))]
async fn change_role(
    State(state): State<AppState>,
    ctx: CommandContext,
    ApiPath(id): ApiPath<Uuid>,
    Versioned { body, .. }: Versioned<RoleBody>,
) -> Result<CommandReply, ApiError> {
    ctx.caller.require(Permission::UsersManage)?;
    let hash = fingerprint(RoleBody::NAME, Some(id), &body);
    run(&state, &ctx, id, hash, Lookup::Nothing, UserCommand::ChangeRole { role: body.role }).await
}

#[utoipa::path(post, path = "/v1/users/{id}/status", tag = "users", operation_id = "users_change_status", params(("id" = Uuid, Path)), request_body = StatusBody, responses(runtime::openapi::CommandAnswered))]
async fn change_status(
    State(state): State<AppState>,
    ctx: CommandContext,
    ApiPath(id): ApiPath<Uuid>,
    Versioned { body, .. }: Versioned<StatusBody>,
) -> Result<CommandReply, ApiError> {
    ctx.caller.require(Permission::UsersManage)?;
    let hash = fingerprint(StatusBody::NAME, Some(id), &body);
    run(&state, &ctx, id, hash, Lookup::Nothing, UserCommand::ChangeStatus { status: body.status }).await
}

#[utoipa::path(put, path = "/v1/users/{id}/permissions", tag = "users", operation_id = "users_set_permissions", params(("id" = Uuid, Path)), request_body = PermissionsBody, responses(runtime::openapi::CommandAnswered))]
async fn set_permissions(
    State(state): State<AppState>,
    ctx: CommandContext,
    ApiPath(id): ApiPath<Uuid>,
    Versioned { body, .. }: Versioned<PermissionsBody>,
) -> Result<CommandReply, ApiError> {
    ctx.caller.require(Permission::UsersManage)?;
    grantable(ctx.caller, &body.permissions)?;
    let hash = fingerprint(PermissionsBody::NAME, Some(id), &body);
    run(&state, &ctx, id, hash, Lookup::Nothing, UserCommand::SetPermissions { permissions: body.permissions }).await
}

#[utoipa::path(put, path = "/v1/users/{id}/preferences", tag = "users", operation_id = "users_set_preferences", params(("id" = Uuid, Path)), request_body = PreferencesBody, responses(runtime::openapi::CommandAnswered))]
async fn set_preferences(
    State(state): State<AppState>,
    ctx: CommandContext,
    ApiPath(id): ApiPath<Uuid>,
    Versioned { body, .. }: Versioned<PreferencesBody>,
) -> Result<CommandReply, ApiError> {
    self_or_manager(ctx.caller, id)?;
    let hash = fingerprint(PreferencesBody::NAME, Some(id), &body);
    run(&state, &ctx, id, hash, Lookup::Nothing, UserCommand::SetPreferences { preferences: body.preferences }).await
}

/// A permission document may name only permissions, only tenant-scoped ones, and only
/// ones the granting caller holds itself: nobody hands out more than they have, and
/// nothing a tenant grants reaches the platform's operations.
fn grantable(caller: Caller, document: &Document) -> Result<(), ApiError> {
    let permissions = Permission::parse_document(document).map_err(|unknown| {
        let known: Vec<&str> = Permission::ALL.iter().map(|p| p.as_str()).collect();
        ApiError::unprocessable(format!(
            "permissions: not a permission: {}; a document maps a resource to actions, e.g. {{\"users\": [\"manage\"]}}, \
             from: {}",
            unknown.join(", "),
            known.join(", ")
        ))
    })?;
    for permission in permissions {
        if !permission.tenant_scoped() {
            return Err(ApiError::unprocessable(format!(
                "permissions: {} is a platform operation; no tenant can grant it",
                permission.as_str()
            )));
        }
        caller.require(permission).map_err(|_| {
            ApiError::Forbidden(format!("you cannot grant {}: you do not hold it yourself", permission.as_str()))
        })?;
    }
    Ok(())
}

async fn run(
    state: &AppState,
    ctx: &CommandContext,
    id: Uuid,
    hash: String,
    lookup: Lookup,
    cmd: UserCommand,
) -> Result<CommandReply, ApiError> {
    super::execute_in_tenant::<UserStream>(state, ctx, id, hash, lookup, StatusCode::OK, |s| {
        user::decide(s, cmd, Utc::now())
    })
    .await
}

/// Exchanges tenant slug, username and password for a bearer token, and records the login.
#[utoipa::path(post, path = "/v1/auth/login", tag = "users", operation_id = "users_login", request_body = LoginBody, responses(runtime::openapi::CommandAnswered))]
async fn login(
    State(state): State<AppState>,
    RequestFacts(parts): RequestFacts,
    runtime::extract::ApiJson(body): runtime::extract::ApiJson<LoginBody>,
) -> Result<Json<Value>, ApiError> {
    let refused = || ApiError::Unauthorized("the tenant, username or password is wrong".into());
    let username = normalise_username(&body.username);
    let (tenant_id, user_id) = state.journal.find_user(body.tenant.trim(), &username).await?.ok_or_else(refused)?;
    let user = state.journal.state::<UserStream>(tenant_id, user_id).await?.ok_or_else(refused)?;
    let stored = user.password_hash.clone();
    let password = body.password;
    let matches = tokio::task::spawn_blocking(move || {
        PasswordHash::new(&stored).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))?;
    if !matches {
        return Err(refused());
    }
    if user.status != UserStatus::Active {
        return Err(ApiError::Forbidden(format!("this user is {}; ask an administrator", user.status.as_str())));
    }
    match state.journal.tenant(tenant_id).await? {
        Some(t) if t.status == TenantStatus::Active => {}
        _ => return Err(ApiError::Forbidden("the tenant is suspended".into())),
    }
    let caller =
        crate::context::live(&state, Caller { user_id, tenant_id, role: Role::Agent, grants: 0, operator: false })
            .await?;
    let (role, grants) = (caller.role, Permission::from_document(&user.permissions));
    let ctx = CommandContext::from_parts(caller, &parts)?;
    let command = Command {
        ctx: &ctx,
        tenant_id,
        stream_id: user_id,
        request_hash: fingerprint("record_login", Some(user_id), &()),
        lookup: Lookup::Nothing,
        success: StatusCode::OK,
    };
    state.journal.execute::<UserStream>(command, |s, _| user::decide(s, UserCommand::RecordLogin, Utc::now())).await?;
    let token = state.keys.issue_login(user_id, tenant_id, role, &grants, chrono::Duration::hours(TOKEN_HOURS));
    Ok(Json(json!({
        "token": token,
        "token_type": "Bearer",
        "expires_in": TOKEN_HOURS * 3600,
        "user_id": user_id,
        "tenant_id": tenant_id,
        "role": role.as_str(),
        "grants": grants.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
    })))
}
