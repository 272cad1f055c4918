//! The command endpoints: one per command, each answering with the stream id, its new
//! version (also as `ETag`) and a position token for read-your-writes.

/// The `deactivate` and `activate` handlers of a resource whose stream has both
/// commands; the calling module provides `run(state, ctx, id, hash, lookup, success, cmd)`.
macro_rules! activation_handlers {
    ($kind:literal, $tag:literal, $deactivate_path:literal, $activate_path:literal,
     $permission:expr, $deactivate:expr, $activate:expr) => {
        /// Deactivates it: no new references to it are accepted; existing ones stay.
        #[utoipa::path(post, path = $deactivate_path, tag = $tag, operation_id = concat!($kind, "_deactivate"), params(("id" = Uuid, Path)),
                       responses(runtime::openapi::CommandAnswered))]
        async fn deactivate(
            axum::extract::State(state): axum::extract::State<AppState>,
            ctx: CommandContext,
            runtime::extract::ApiPath(id): runtime::extract::ApiPath<Uuid>,
            _: Versioned<super::Empty>,
        ) -> Result<CommandReply, ApiError> {
            ctx.caller.require($permission)?;
            let hash = fingerprint(concat!("deactivate_", $kind), Some(id), &());
            run(&state, &ctx, id, hash, Lookup::Nothing, axum::http::StatusCode::OK, $deactivate).await
        }

        /// Activates it again.
        #[utoipa::path(post, path = $activate_path, tag = $tag, operation_id = concat!($kind, "_activate"), params(("id" = Uuid, Path)),
                       responses(runtime::openapi::CommandAnswered))]
        async fn activate(
            axum::extract::State(state): axum::extract::State<AppState>,
            ctx: CommandContext,
            runtime::extract::ApiPath(id): runtime::extract::ApiPath<Uuid>,
            _: Versioned<super::Empty>,
        ) -> Result<CommandReply, ApiError> {
            ctx.caller.require($permission)?;
            let hash = fingerprint(concat!("activate_", $kind), Some(id), &());
            run(&state, &ctx, id, hash, Lookup::Nothing, axum::http::StatusCode::OK, $activate).await
        }
    };
}

mod body_limits;
mod case_types;
mod cases;
mod channels;
mod custom_fields;
mod documents;
mod notes;
mod tasks;
mod teams;
mod templates;
mod tenants;
mod users;
mod workflows;

use axum::extract::FromRef;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Router;
use events::tenant::TenantStatus;
use runtime::auth::JwtKeys;
use runtime::openapi::BearerAuth;
use runtime::ApiError;

use crate::context::CommandContext;
use crate::journal::{Command, CommandReply, Journal, Lookup};
use events::user;
use events::Aggregate;

/// A command body with no fields (`{}`), still versioned like every other.
#[derive(serde::Serialize, serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct Empty {}

impl crate::versioned::CommandSchema for Empty {
    const NAME: &'static str = "empty";
}

#[derive(Clone)]
pub struct AppState {
    pub journal: Journal,
    pub keys: JwtKeys,
    pub sessions: runtime::session::Sessions,
    /// Proxies whose `X-Forwarded-For` names the client (`MURIMA_TRUSTED_PROXIES`).
    pub trusted_proxies: std::sync::Arc<Vec<std::net::IpAddr>>,
    pub login_guard: crate::login_guard::LoginGuard,
}

impl FromRef<AppState> for JwtKeys {
    fn from_ref(state: &AppState) -> Self {
        state.keys.clone()
    }
}

/// The command API's OpenAPI document: info and shared components; the paths come from
/// the routers below, registered and documented by the same calls.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Murima command API",
        description = "Versioned commands that append events. Every answer carries the stream id, its new version \
                       (also the ETag) and a position token for read-your-writes."
    ),
    modifiers(&BearerAuth),
    components(schemas(runtime::openapi::Problem, runtime::openapi::FieldProblem, runtime::openapi::CommandAnswer))
)]
pub struct ApiDoc;

/// Every command route, with the OpenAPI document built from them.
pub fn documented() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    use utoipa::OpenApi;
    utoipa_axum::router::OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(cases::router())
        .merge(tenants::router())
        .merge(users::router())
        .merge(teams::router())
        .merge(case_types::router())
        .merge(channels::router())
        .merge(tasks::router())
        .merge(notes::router())
        .merge(documents::router())
        .merge(templates::router())
        .merge(workflows::router())
        .merge(custom_fields::router())
        .split_for_parts()
}

pub fn router(state: AppState) -> Router {
    let (routes, api) = documented();
    let api = runtime::openapi::with_limits(api.clone(), body_limits::LIMITS).unwrap_or_else(|e| {
        tracing::error!(error = %e, "the input contract does not fit the OpenAPI document; serving it without limits");
        api
    });
    routes.layer(axum::middleware::from_fn(count_commands)).merge(runtime::openapi::docs_router(&api)).with_state(state)
}

/// `commands_total{outcome="accepted"|"refused", reason}`: every command request, with
/// the problem type of a refusal (validation, forbidden, conflict, ...).
async fn count_commands(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let is_command = request.method() != axum::http::Method::GET;
    let response = next.run(request).await;
    if is_command {
        let status = response.status();
        let (outcome, reason) =
            if status.is_success() { ("accepted", "none") } else { ("refused", runtime::problem::kind_of(status)) };
        metrics::counter!("commands_total", "outcome" => outcome, "reason" => reason).increment(1);
    }
    response
}

impl IntoResponse for CommandReply {
    fn into_response(self) -> Response {
        let version = self.version();
        let location = self.body["location"].as_str().map(str::to_owned);
        let mut response = (self.status, axum::Json(self.body)).into_response();
        if let Some(etag) = version.and_then(|v| HeaderValue::from_str(&format!("\"{v}\"")).ok()) {
            response.headers_mut().insert(header::ETAG, etag);
        }
        if let Some(location) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            response.headers_mut().insert(header::LOCATION, location);
        }
        response
    }
}

/// Runs a command on a stream of the caller's tenant, which must be provisioned and
/// active; what every resource module does once its command is built.
pub(crate) async fn execute_in_tenant<A: Aggregate>(
    state: &AppState,
    ctx: &CommandContext,
    stream_id: uuid::Uuid,
    request_hash: String,
    lookup: Lookup,
    success: axum::http::StatusCode,
    decide: impl FnOnce(Option<&A>) -> Result<Vec<A::Event>, events::DomainError>,
) -> Result<CommandReply, ApiError> {
    ensure_active_tenant(state, ctx.caller.tenant_id).await?;
    let command = Command { ctx, tenant_id: ctx.caller.tenant_id, stream_id, request_hash, lookup, success };
    state.journal.execute::<A>(command, |s, _| decide(s)).await
}

/// Commands inside a tenant need it provisioned and not suspended.
pub(crate) async fn ensure_active_tenant(state: &AppState, tenant: uuid::Uuid) -> Result<(), ApiError> {
    match state.journal.tenant(tenant).await? {
        None => Err(ApiError::Forbidden("the token's tenant is not provisioned".into())),
        Some(t) if t.status == TenantStatus::Suspended => {
            Err(ApiError::Forbidden("the tenant is suspended; its commands are refused until it is reactivated".into()))
        }
        Some(_) => Ok(()),
    }
}

/// Commands that record their caller as a case's creator, a task's author, a document's
/// uploader or an interaction's agent need the caller to be an active user of the
/// tenant: the read models reference users by key, and a locked account must not act.
pub(crate) async fn acting_user(state: &AppState, caller: &runtime::auth::Caller) -> Result<(), ApiError> {
    use events::reference::Reference;
    match user_reference(state, caller.tenant_id, Some(caller.user_id)).await? {
        Reference::Usable => Ok(()),
        Reference::Missing => Err(ApiError::Forbidden(format!(
            "the token's user {} is not a user of this tenant; log in as one of its users",
            caller.user_id
        ))),
        Reference::Inactive => Err(ApiError::Forbidden(format!(
            "the token's user {} is locked or inactive; an administrator can reactivate the account",
            caller.user_id
        ))),
    }
}

/// What a reference to a user is: missing, not active, or usable (None is usable: nobody).
pub(crate) async fn user_reference(
    state: &AppState,
    tenant: uuid::Uuid,
    user: Option<uuid::Uuid>,
) -> Result<events::reference::Reference, ApiError> {
    use events::reference::Reference;
    let Some(user) = user else { return Ok(Reference::Usable) };
    Ok(match state.journal.state::<user::User>(tenant, user).await? {
        None => Reference::Missing,
        Some(u) if u.status != events::user::UserStatus::Active => Reference::Inactive,
        Some(_) => Reference::Usable,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_limit_names_a_property_of_the_document() {
        let (_, api) = super::documented();
        if let Err(e) = runtime::openapi::with_limits(api, super::body_limits::LIMITS) {
            panic!("{e}");
        }
    }
}
