//! The command endpoints: one per command, each answering with the stream id, its new
//! version (also as `ETag`) and a position token for read-your-writes.

/// The `deactivate` and `activate` endpoints of a resource whose stream has both
/// commands (`$aggregate`: the stream's state type): `Deactivate` and `Activate`, each
/// with an empty body.
macro_rules! activation_endpoints {
    ($aggregate:ty, $kind:literal, $deactivate_path:literal, $activate_path:literal,
     $permission:expr, $deactivate:expr, $activate:expr) => {
        activation_endpoints!(@one Deactivate, $aggregate, concat!("deactivate_", $kind), $deactivate_path,
            concat!($kind, "_deactivate"), "Deactivates it: no new references to it are accepted; existing ones stay.",
            $permission, $deactivate);
        activation_endpoints!(@one Activate, $aggregate, concat!("activate_", $kind), $activate_path,
            concat!($kind, "_activate"), "Activates it again.", $permission, $activate);
    };
    (@one $name:ident, $aggregate:ty, $command:expr, $path:literal, $operation:expr, $summary:literal,
     $permission:expr, $decided:expr) => {
        super::endpoint::no_fields!($name);

        impl super::endpoint::Endpoint for $name {
            type Stream = $aggregate;
            type Path = uuid::Uuid;
            const ROUTE: super::endpoint::Route =
                super::endpoint::Route::post($path, $operation).summary($summary).named($command).holds($permission);
            const BODY: super::endpoint::Body = super::endpoint::Body::Empty;

            async fn command(
                self,
                _: uuid::Uuid,
                _: super::endpoint::Facts<'_>,
            ) -> Result<<$aggregate as events::Aggregate>::Command, runtime::ApiError> {
                Ok($decided)
            }
        }
    };
}

mod body_limits;
mod case_types;
mod cases;
mod channels;
mod custom_fields;
mod data_subjects;
mod documents;
mod endpoint;
mod notes;
mod notifications;
mod tasks;
mod teams;
mod templates;
mod tenants;
mod users;
mod webhooks;
mod workflows;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use events::tenant::TenantStatus;
use runtime::openapi::BearerAuth;
use runtime::ApiError;

use crate::context::CommandContext;
use crate::journal::{Command, JournalError, Lookup, Recorded};
use events::user;
use events::{Aggregate, DomainError};

/// The documented body of a command that takes no fields (`{}`): one schema, shared.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoBody {}

impl crate::versioned::CommandSchema for NoBody {
    const NAME: &'static str = "no_fields";
}

pub use crate::state::AppState;

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
        .merge(notifications::router())
        .merge(documents::router())
        .merge(templates::router())
        .merge(workflows::router())
        .merge(custom_fields::router())
        .merge(data_subjects::router())
        .merge(webhooks::router())
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

/// The answer to a command: what the journal recorded, with the route's status for it
/// (`success` when events were appended, 200 when nothing changed) and, for a creation,
/// where the new resource is. A retried Idempotency-Key gets the same answer: the status
/// follows from the stored record the same way.
#[derive(Debug, Clone)]
pub struct CommandReply {
    pub status: StatusCode,
    pub recorded: Recorded,
    pub location: Option<String>,
}

impl CommandReply {
    pub fn new(recorded: Recorded, success: StatusCode) -> Self {
        let status = if recorded.events_appended == 0 { StatusCode::OK } else { success };
        Self { status, recorded, location: None }
    }

    /// The reply, naming where the resource it created lives.
    pub fn at(mut self, location: String) -> Self {
        self.location = Some(location);
        self
    }
}

impl IntoResponse for CommandReply {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({
            "id": self.recorded.id,
            "version": self.recorded.version,
            "events_appended": self.recorded.events_appended,
            "position": self.recorded.position,
        });
        if let Some(location) = &self.location {
            body["location"] = location.as_str().into();
        }
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", self.recorded.version)) {
            response.headers_mut().insert(header::ETAG, etag);
        }
        if let Some(location) = self.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            response.headers_mut().insert(header::LOCATION, location);
        }
        response
    }
}

/// What each refusal of the journal is in HTTP.
impl From<JournalError> for ApiError {
    fn from(e: JournalError) -> Self {
        match e {
            JournalError::Conflict { detail, current } => ApiError::Conflict { detail, current_version: current },
            JournalError::Rejected { error: DomainError::Conflict(detail), current } => {
                ApiError::Conflict { detail, current_version: Some(current) }
            }
            JournalError::Rejected { error, .. } => error.into(),
            JournalError::KeyReused => ApiError::unprocessable(e.to_string()),
            JournalError::Db(e) => e.into(),
            JournalError::Unreadable(e) => ApiError::Internal(e),
        }
    }
}

/// What each refusal of the login guard is in HTTP.
impl From<crate::login_guard::GuardError> for ApiError {
    fn from(e: crate::login_guard::GuardError) -> Self {
        use crate::login_guard::GuardError;
        match e {
            GuardError::LockedOut { retry_after } => ApiError::TooManyRequests { detail: e.to_string(), retry_after },
            GuardError::Busy => ApiError::Busy { detail: e.to_string(), retry_after: 1 },
            GuardError::Unreachable(error) => {
                tracing::error!(%error, "the login guard cannot reach Redis");
                ApiError::Unavailable("logins are unavailable for a moment; try again shortly".into())
            }
            GuardError::Lost(_) => ApiError::Internal(e.into()),
        }
    }
}

/// Runs a command through the journal and answers it: `success` if it appended events.
pub(crate) async fn execute<A: Aggregate>(
    state: &AppState,
    command: Command<'_>,
    success: StatusCode,
    decide: impl FnMut(Option<&A>, crate::journal::Looked) -> Result<Vec<A::Event>, DomainError>,
) -> Result<CommandReply, ApiError> {
    Ok(CommandReply::new(state.journal.execute::<A>(command, decide).await?, success))
}

/// Runs `command` on a stream of the caller's tenant (provisioned and active), decided by
/// the stream's `Aggregate::decide` with the caller as the actor: what a resource module
/// does once it has checked the caller's right and built the command.
pub(crate) async fn decide_in_tenant<A: Aggregate>(
    state: &AppState,
    ctx: &CommandContext,
    stream_id: uuid::Uuid,
    request_hash: String,
    lookup: Lookup,
    success: StatusCode,
    command: &A::Command,
) -> Result<CommandReply, ApiError>
where
    A::Command: Clone,
{
    let (tenant, actor) = (ctx.caller.tenant_id, ctx.caller.user_id);
    ensure_active_tenant(state, tenant).await?;
    execute_for::<A>(state, ctx, tenant, stream_id, request_hash, lookup, success, |s| {
        A::decide(s, command.clone(), &events::Context { actor, now: chrono::Utc::now() })
    })
    .await
}

/// A command on a stream of `tenant`, whoever the caller is (their right to act on it is
/// checked before: `decide_in_tenant` for the caller's own, the platform operator's
/// routes for any).
#[allow(clippy::too_many_arguments)] // one command's parts, as `decide_in_tenant` takes them
pub(crate) async fn execute_for<A: Aggregate>(
    state: &AppState,
    ctx: &CommandContext,
    tenant: uuid::Uuid,
    stream_id: uuid::Uuid,
    request_hash: String,
    lookup: Lookup,
    success: StatusCode,
    mut decide: impl FnMut(Option<&A>) -> Result<Vec<A::Event>, DomainError>,
) -> Result<CommandReply, ApiError> {
    let command = Command { meta: &ctx.meta, tenant_id: tenant, stream_id, request_hash, lookup };
    execute::<A>(state, command, success, |s, _| decide(s)).await
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

/// What the write side finds for every user and team a workflow's actions name (each
/// looked up once, at most `MAX_ACTIONS` of them).
pub(crate) async fn action_targets(
    state: &AppState,
    tenant: uuid::Uuid,
    definition: &events::workflow::WorkflowDefinition,
) -> Result<events::workflow::ActionTargets, ApiError> {
    use events::reference::Reference;
    let mut found = events::workflow::ActionTargets::new();
    let named = definition.actions().into_iter().take(events::workflow::MAX_ACTIONS).filter_map(|a| a.effect.names());
    for (kind, id) in named {
        if found.contains_key(&id) {
            continue;
        }
        let reference = if kind == "user" {
            user_reference(state, tenant, Some(id)).await?
        } else if state.journal.state::<events::team::Team>(tenant, id).await?.is_some() {
            Reference::Usable
        } else {
            Reference::Missing
        };
        found.insert(id, reference);
    }
    Ok(found)
}

/// The id a client chose for a new stream, or a new one. A client may not take the nil id
/// or a version-5 UUID: those are the ids Murima derives (a data subject's stream,
/// `events::data_subject::stream_id`), and one taken first would block what they are for.
pub(crate) fn chosen_id(id: Option<uuid::Uuid>) -> Result<uuid::Uuid, ApiError> {
    match id {
        None => Ok(uuid::Uuid::now_v7()),
        Some(id) if id.is_nil() || id.get_version_num() == 5 => Err(ApiError::invalid(
            "id",
            "must not be the nil UUID or a version-5 UUID (Murima derives those); send another id, or none",
        )),
        Some(id) => Ok(id),
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
