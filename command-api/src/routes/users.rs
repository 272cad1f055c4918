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
use runtime::auth::{Caller, Permission, Role, Token};
use runtime::extract::ApiPath;
use runtime::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::endpoint::{Endpoint, Facts, Route};
use super::AppState;
use super::CommandReply;
use crate::context::{rights_of, CommandContext, RequestFacts};
use crate::journal::{fingerprint, Command, Lookup};
use crate::login_guard::Subject;
use crate::versioned::{CommandSchema, Versioned};

const MIN_PASSWORD: usize = 12;
pub(super) const MAX_PASSWORD: usize = 256;
const TOKEN_HOURS: i64 = 8;

pub fn router() -> OpenApiRouter<AppState> {
    super::endpoint::router!["users": ProfileBody, RoleBody, StatusBody, PermissionsBody, PreferencesBody]
        .routes(routes!(create))
        .routes(routes!(change_password))
        .routes(routes!(reset_password))
        .routes(routes!(end_sessions))
        .routes(routes!(login))
        .routes(routes!(logout))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UserCreateBody)]
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

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RoleBody {
    role: UserRole,
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UserStatusBody)]
struct StatusBody {
    status: UserStatus,
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PermissionsBody {
    #[schema(value_type = Object)]
    permissions: Document,
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PreferencesBody {
    #[schema(value_type = Object)]
    preferences: Document,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    /// The password in use now (a user changing their own).
    current_password: String,
    new_password: String,
}

impl CommandSchema for PasswordBody {
    const NAME: &'static str = "change_user_password";
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ResetBody {
    new_password: String,
}

impl CommandSchema for ResetBody {
    const NAME: &'static str = "reset_user_password";
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    /// The tenant's slug.
    tenant: String,
    username: String,
    password: String,
}

async fn hash_password(state: &AppState, password: String) -> Result<String, ApiError> {
    let len = password.chars().count();
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&len) {
        return Err(ApiError::invalid("password", format!("must be {MIN_PASSWORD}-{MAX_PASSWORD} characters")));
    }
    // Hashing is CPU-bound by design: on the hashing threads, a few at a time.
    state
        .login_guard
        .hash(move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string())
        })
        .await?
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("hashing a password: {e}")))
}

#[utoipa::path(post, path = "/v1/users", tag = "users", operation_id = "users_create", request_body = CreateBody, responses(runtime::openapi::CommandAnswered))]
async fn create(
    State(state): State<AppState>,
    ctx: CommandContext,
    Versioned { body, .. }: Versioned<CreateBody>,
) -> Result<CommandReply, ApiError> {
    let caller = ctx.caller.require(Permission::UsersManage)?;
    within_reach(caller, body.role)?;
    super::ensure_active_tenant(&state, caller.tenant_id).await?;
    for (field, value) in [("username", &body.username), ("email", &body.email)] {
        if value.chars().any(char::is_control) {
            return Err(ApiError::invalid(field, "must not contain control characters"));
        }
    }
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
    let password_hash = hash_password(&state, body.password).await?;
    let user_id = super::chosen_id(body.id)?;
    // A customer's id (a data subject cases name) is theirs alone: a user taking it would
    // share their key, and be erased or exported as them.
    if body.id.is_some()
        && runtime::subject_keys::known(state.journal.pool(), caller.tenant_id, user_id)
            .await
            .map_err(anyhow::Error::from)?
            .is_some()
    {
        return Err(ApiError::Conflict {
            detail: format!("the id {user_id} is a data subject's (a customer that cases name); choose another id"),
            current_version: None,
        });
    }
    let command = Command {
        meta: &ctx.meta,
        tenant_id: caller.tenant_id,
        stream_id: user_id,
        request_hash: hash,
        lookup: Lookup::UserIdentity {
            username: Some(username),
            email: Some(email),
            password_hash: Some(password_hash),
        },
    };
    let cmd = UserCommand::Create(CreateUser {
        username: body.username,
        email: body.email,
        first_name: body.first_name,
        last_name: body.last_name,
        role: body.role,
    });
    let reply = super::execute::<user::User>(&state, command, StatusCode::CREATED, |s, _| {
        user::decide(s, cmd.clone(), &events::Context::at(Utc::now()))
    })
    .await?;
    let location = format!("/v1/users/{}", reply.recorded.id);
    Ok(reply.at(location))
}

/// Users may change their own profile and preferences; anything else needs users:manage.
async fn self_or_manager(state: &AppState, caller: Caller, id: Uuid) -> Result<Caller, ApiError> {
    if caller.user_id == id && caller.role != Role::PlatformAdmin {
        Ok(caller)
    } else {
        manager_of(state, caller, id).await
    }
}

/// How far a role reaches: nobody manages a user who outranks them, or makes anyone
/// outrank themselves (a `users:manage` grant does not make an agent an admin's master).
fn rank(role: Role) -> u8 {
    match role {
        Role::Agent => 1,
        Role::Supervisor => 2,
        Role::Admin => 3,
        Role::PlatformAdmin => 4,
    }
}

/// Nobody gives a role above their own.
fn within_reach(caller: Caller, role: UserRole) -> Result<(), ApiError> {
    let wanted = match role {
        UserRole::Agent => Role::Agent,
        UserRole::Supervisor => Role::Supervisor,
        UserRole::Admin => Role::Admin,
    };
    if rank(wanted) > rank(caller.role) {
        return Err(ApiError::Forbidden(format!(
            "you cannot make anyone {}: it is above your role {}",
            wanted.as_str(),
            caller.role.as_str()
        )));
    }
    Ok(())
}

/// The caller, if they may manage the user `id`: `users:manage`, not outranked by them,
/// and holding every right they hold (role plus grants): a `users:manage` grant reaches
/// no colleague with a right beyond one's own.
async fn manager_of(state: &AppState, caller: Caller, id: Uuid) -> Result<Caller, ApiError> {
    let caller = caller.require(Permission::UsersManage)?;
    if let Some(user) = state.journal.state::<user::User>(caller.tenant_id, id).await? {
        let rights = rights_of(&user, 0);
        let theirs = rights.role;
        if rank(theirs) > rank(caller.role) {
            return Err(ApiError::Forbidden(format!(
                "the user {id} is {}, above your role {}: only someone of that role or higher manages them",
                theirs.as_str(),
                caller.role.as_str()
            )));
        }
        let target = rights.caller(id, caller.tenant_id);
        let beyond: Vec<&str> = Permission::ALL
            .iter()
            .filter(|p| target.require(**p).is_ok() && caller.require(**p).is_err())
            .map(|p| p.as_str())
            .collect();
        if !beyond.is_empty() {
            return Err(ApiError::Forbidden(format!(
                "the user {id} holds rights you do not ({}): only someone holding all of them manages them",
                beyond.join(", ")
            )));
        }
    }
    Ok(caller)
}

impl Endpoint for ProfileBody {
    type Stream = user::User;
    type Path = Uuid;
    const ROUTE: Route =
        Route::patch("/v1/users/{id}/profile", "users_update_profile").named("update_user_profile").by_command();

    fn lookup(&self) -> Lookup {
        let email = self.email.as_deref().map(normalise_email);
        Lookup::UserIdentity { username: None, email, password_hash: None }
    }

    async fn command(self, id: Uuid, facts: Facts<'_>) -> Result<UserCommand, ApiError> {
        self_or_manager(facts.state, facts.caller, id).await?;
        if self.email.as_deref().is_some_and(|e| e.chars().any(char::is_control)) {
            return Err(ApiError::invalid("email", "must not contain control characters"));
        }
        Ok(UserCommand::UpdateProfile { first_name: self.first_name, last_name: self.last_name, email: self.email })
    }
}

impl Endpoint for RoleBody {
    type Stream = user::User;
    type Path = Uuid;
    const ROUTE: Route = Route::post("/v1/users/{id}/role", "users_change_role").named("change_user_role").by_command();

    async fn command(self, id: Uuid, facts: Facts<'_>) -> Result<UserCommand, ApiError> {
        let caller = manager_of(facts.state, facts.caller, id).await?;
        within_reach(caller, self.role)?;
        Ok(UserCommand::ChangeRole { role: self.role })
    }

    async fn recorded(facts: Facts<'_>, id: Uuid, _: &UserCommand) -> Result<(), ApiError> {
        publish_rights(facts.state, facts.tenant(), id).await
    }
}

impl Endpoint for StatusBody {
    type Stream = user::User;
    type Path = Uuid;
    const ROUTE: Route =
        Route::post("/v1/users/{id}/status", "users_change_status").named("change_user_status").by_command();

    async fn command(self, id: Uuid, facts: Facts<'_>) -> Result<UserCommand, ApiError> {
        manager_of(facts.state, facts.caller, id).await?;
        Ok(UserCommand::ChangeStatus { status: self.status })
    }

    async fn recorded(facts: Facts<'_>, id: Uuid, _: &UserCommand) -> Result<(), ApiError> {
        publish_rights(facts.state, facts.tenant(), id).await
    }
}

impl Endpoint for PermissionsBody {
    type Stream = user::User;
    type Path = Uuid;
    const ROUTE: Route =
        Route::put("/v1/users/{id}/permissions", "users_set_permissions").named("set_user_permissions").by_command();

    async fn command(self, id: Uuid, facts: Facts<'_>) -> Result<UserCommand, ApiError> {
        manager_of(facts.state, facts.caller, id).await?;
        grantable(facts.caller, &self.permissions)?;
        Ok(UserCommand::SetPermissions { permissions: self.permissions })
    }

    async fn recorded(facts: Facts<'_>, id: Uuid, _: &UserCommand) -> Result<(), ApiError> {
        publish_rights(facts.state, facts.tenant(), id).await
    }
}

impl Endpoint for PreferencesBody {
    type Stream = user::User;
    type Path = Uuid;
    const ROUTE: Route =
        Route::put("/v1/users/{id}/preferences", "users_set_preferences").named("set_user_preferences").by_command();

    async fn command(self, id: Uuid, facts: Facts<'_>) -> Result<UserCommand, ApiError> {
        self_or_manager(facts.state, facts.caller, id).await?;
        Ok(UserCommand::SetPreferences { preferences: self.preferences })
    }
}

/// The user's rights as the journal holds them now, published to the session store in
/// the request that changed them, so the query API never serves older ones (see
/// `runtime::session`); a user who may no longer act loses every session too.
pub(super) async fn publish_rights(state: &AppState, tenant: Uuid, id: Uuid) -> Result<(), ApiError> {
    let (Some(user), version) = state.journal.state_at::<user::User>(tenant, id).await? else {
        return Ok(());
    };
    state.sessions.publish(tenant, id, &rights_of(&user, version)).await?;
    if user.status != UserStatus::Active {
        state.sessions.end_all(tenant, id).await?;
    }
    Ok(())
}

/// What the idempotency fingerprint sees of a password change: never a password.
#[derive(Serialize)]
struct PasswordFingerprint {
    reset: bool,
}

/// A user changes their own password, proving the current one; every session of theirs
/// ends (this one included): log in again with the new password.
#[utoipa::path(post, path = "/v1/users/{id}/password", tag = "users", operation_id = "users_change_password", params(("id" = Uuid, Path)), request_body = PasswordBody, responses(runtime::openapi::CommandAnswered))]
async fn change_password(
    State(state): State<AppState>,
    ctx: CommandContext,
    ApiPath(id): ApiPath<Uuid>,
    Versioned { body, .. }: Versioned<PasswordBody>,
) -> Result<CommandReply, ApiError> {
    if ctx.caller.user_id != id || ctx.caller.operator {
        return Err(ApiError::Forbidden(
            "only the user can change their own password; administrators reset it with POST /v1/users/{id}/password/reset"
                .into(),
        ));
    }
    // The current-password check is a login in disguise: its failures are counted and
    // locked out like a login's, per (user, address).
    let subject = Subject::password_of(ctx.caller.tenant_id, id);
    let ip = ctx.meta.request.ip_address.as_deref().and_then(|ip| ip.parse().ok());
    state.login_guard.check(&subject, ip).await?;
    let stored = state.journal.credential(ctx.caller.tenant_id, id).await?;
    if !verify_password(&state, stored, body.current_password).await? {
        state.login_guard.failed(&subject, ip).await?;
        return Err(ApiError::unprocessable("current_password: is not the password in use"));
    }
    state.login_guard.succeeded(&subject, ip).await?;
    set_password(&state, &ctx, id, body.new_password, false).await
}

/// An administrator sets a new password for a user; every session of that user ends.
#[utoipa::path(post, path = "/v1/users/{id}/password/reset", tag = "users", operation_id = "users_reset_password", params(("id" = Uuid, Path)), request_body = ResetBody, responses(runtime::openapi::CommandAnswered))]
async fn reset_password(
    State(state): State<AppState>,
    ctx: CommandContext,
    ApiPath(id): ApiPath<Uuid>,
    Versioned { body, .. }: Versioned<ResetBody>,
) -> Result<CommandReply, ApiError> {
    // One's own password changes only where the current one is checked.
    if ctx.caller.user_id == id && !ctx.caller.operator {
        return Err(ApiError::Forbidden(format!(
            "you cannot reset your own password; change it with POST /v1/users/{id}/password, which checks the \
             current one"
        )));
    }
    manager_of(&state, ctx.caller, id).await?;
    set_password(&state, &ctx, id, body.new_password, true).await
}

async fn set_password(
    state: &AppState,
    ctx: &CommandContext,
    id: Uuid,
    password: String,
    reset: bool,
) -> Result<CommandReply, ApiError> {
    // A retry could not tell a repeated password from another one (the fingerprint never
    // sees passwords), so these commands take no Idempotency-Key: send them again.
    if ctx.meta.idempotency_key.is_some() {
        return Err(ApiError::BadRequest(
            "password changes take no Idempotency-Key; if the answer was lost, send the change again".into(),
        ));
    }
    let name = if reset { ResetBody::NAME } else { PasswordBody::NAME };
    let hash = fingerprint(name, Some(id), &PasswordFingerprint { reset });
    let password_hash = hash_password(state, password).await?;
    let lookup = Lookup::Password { password_hash };
    let reply = super::decide_in_tenant::<user::User>(
        state,
        ctx,
        id,
        hash,
        lookup,
        StatusCode::OK,
        &UserCommand::ChangePassword { reset },
    )
    .await?;
    state.sessions.end_all(ctx.caller.tenant_id, id).await?;
    Ok(reply)
}

/// Ends every session of a user (the user themself, or an administrator): their tokens
/// stop working at once, on both APIs.
#[utoipa::path(delete, path = "/v1/users/{id}/sessions", tag = "users", operation_id = "users_end_sessions", params(("id" = Uuid, Path)), responses((status = 200, description = "The user's sessions are ended", body = SessionsEnded), runtime::openapi::Problems))]
async fn end_sessions(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<SessionsEnded>, ApiError> {
    let caller = self_or_manager(&state, caller.tenant_member()?, id).await?;
    if state.journal.state::<user::User>(caller.tenant_id, id).await?.is_none() {
        return Err(ApiError::NotFound(format!("no user {id} in this tenant")));
    }
    let ended = state.sessions.end_all(caller.tenant_id, id).await?;
    tracing::info!(user_id = %id, ended, by = %caller.user_id, "ended a user's sessions");
    Ok(Json(SessionsEnded { user_id: id, ended }))
}

/// What ending a user's sessions did.
#[derive(Serialize, utoipa::ToSchema)]
struct SessionsEnded {
    user_id: Uuid,
    /// How many sessions were live and are ended.
    ended: u64,
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
            let why = match permission {
                Permission::WebhooksManage => "comes only with the admin role (it reads every event's payload)",
                _ => "is a platform operation; no tenant can grant it",
            };
            return Err(ApiError::unprocessable(format!("permissions: {} {why}", permission.as_str())));
        }
        caller.require(permission).map_err(|_| {
            ApiError::Forbidden(format!("you cannot grant {}: you do not hold it yourself", permission.as_str()))
        })?;
    }
    Ok(())
}

/// A hash no password matches, verified when the user is unknown so that a wrong
/// username costs the same time as a wrong password.
static NO_USER: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default().hash_password(Uuid::new_v4().as_bytes(), &salt).map(|h| h.to_string()).unwrap_or_default()
});

async fn verify_password(state: &AppState, stored: Option<String>, password: String) -> Result<bool, ApiError> {
    let known = stored.is_some();
    let stored = stored.unwrap_or_else(|| NO_USER.clone());
    let matches = state
        .login_guard
        .hash(move || {
            PasswordHash::new(&stored).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
        })
        .await?;
    Ok(known && matches)
}

/// Exchanges tenant slug, username and password for a bearer token bound to a new
/// session (24 hours unused, or until logout), and records the login.
#[utoipa::path(post, path = "/v1/auth/login", tag = "users", operation_id = "users_login", request_body = LoginBody, responses(runtime::openapi::CommandAnswered))]
async fn login(
    State(state): State<AppState>,
    RequestFacts(mut parts): RequestFacts,
    runtime::extract::ApiJson(body): runtime::extract::ApiJson<LoginBody>,
) -> Result<Json<Value>, ApiError> {
    let refused = || ApiError::Unauthorized("the tenant, username or password is wrong".into());
    let username = normalise_username(&body.username);
    let slug = body.tenant.trim();
    let peer = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    let ip = runtime::http::client_ip(&parts.headers, peer, &state.trusted_proxies);
    let subject = Subject::login(slug, &username);
    state.login_guard.check(&subject, ip).await?;
    // (A NUL names nobody, and PostgreSQL refuses it in text: look nothing up.)
    let found = match slug.contains('\0') || username.contains('\0') {
        true => None,
        false => state.journal.find_user(slug, &username).await?,
    };
    // Sessions ended from here on (a password change, a reset, a lock) refuse this login.
    let epoch = match found {
        Some((tenant, user, _)) => state.sessions.epoch(tenant, user).await?,
        None => 0,
    };
    let stored = found.as_ref().and_then(|(_, _, hash)| hash.clone());
    if !verify_password(&state, stored, body.password).await? {
        state.login_guard.failed(&subject, ip).await?;
        return Err(refused());
    }
    state.login_guard.succeeded(&subject, ip).await?;
    let (tenant_id, user_id, _) = found.ok_or_else(refused)?;
    let user = state.journal.state::<user::User>(tenant_id, user_id).await?.ok_or_else(refused)?;
    if user.status != UserStatus::Active {
        return Err(ApiError::Forbidden(format!("this user is {}; ask an administrator", user.status.as_str())));
    }
    match state.journal.tenant(tenant_id).await? {
        Some(t) if t.status == TenantStatus::Active => {}
        _ => return Err(ApiError::Forbidden("the tenant is suspended".into())),
    }
    let caller = Caller { user_id, tenant_id, role: rights_of(&user, 0).role, grants: 0, operator: false };
    // Every login is its own: an Idempotency-Key is ignored, never answered from a record
    // (one recorded login must not hand out two working tokens).
    parts.headers.remove(crate::context::IDEMPOTENCY_KEY);
    let ctx = CommandContext::from_parts(caller, &parts, &state.trusted_proxies)?;
    let command = Command {
        meta: &ctx.meta,
        tenant_id,
        stream_id: user_id,
        request_hash: fingerprint("record_login", Some(user_id), &()),
        lookup: Lookup::Nothing,
    };
    super::execute::<user::User>(&state, command, StatusCode::OK, |s, _| {
        user::decide(s, UserCommand::RecordLogin, &events::Context::at(Utc::now()))
    })
    .await?;
    // The rights every request of this session is checked against, as of this login.
    let (user, version) = match state.journal.state_at::<user::User>(tenant_id, user_id).await? {
        (Some(user), version) => (user, version),
        (None, _) => return Err(refused()),
    };
    let rights = rights_of(&user, version);
    state.sessions.publish(tenant_id, user_id, &rights).await?;
    state.sessions.note_active_tenant(tenant_id).await?;
    let Some(session) = state.sessions.open(tenant_id, user_id, epoch).await? else {
        return Err(ApiError::Unauthorized(
            "the account's sessions were ended while this login ran (a password change, reset or lock); log in again"
                .into(),
        ));
    };
    let token = state.keys.issue_login(user_id, tenant_id, rights.role, session, chrono::Duration::hours(TOKEN_HOURS));
    let grants = Permission::from_document(&user.permissions);
    Ok(Json(json!({
        "token": token,
        "token_type": "Bearer",
        "expires_in": TOKEN_HOURS * 3600,
        "user_id": user_id,
        "tenant_id": tenant_id,
        "role": rights.role.as_str(),
        "grants": grants.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
    })))
}

/// Ends the session of the token it is sent with; the token stops working on both APIs.
#[utoipa::path(
    post,
    path = "/v1/auth/logout",
    tag = "users",
    operation_id = "users_logout",
    responses(runtime::openapi::NothingAnswered)
)]
async fn logout(State(state): State<AppState>, token: Token) -> Result<StatusCode, ApiError> {
    let Some(session) = token.session else {
        return Err(ApiError::BadRequest("an operator's token has no session to end; it expires on its own".into()));
    };
    state.sessions.end(token.caller.tenant_id, token.caller.user_id, session).await?;
    Ok(StatusCode::NO_CONTENT)
}
