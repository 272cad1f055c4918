//! A command endpoint declared once: its route, the permission it needs, the stream it
//! writes, what it reserves and the domain command its body becomes (`Endpoint`). One
//! generic handler serves every declaration, and the same declaration yields its
//! OpenAPI entry (`route`), so the two cannot disagree.
//!
//! What every endpoint then does the same way: the caller's right first, then the
//! request's fingerprint for its Idempotency-Key (the command's name, the path's first
//! id and the body), then the facts the command needs, then the journal, deciding with
//! the stream's `Aggregate::decide` in the caller's tenant (provisioned and active), or,
//! for a tenant's own stream, in that tenant whatever its status.

use std::future::Future;

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use events::reference::Reference;
use events::{Aggregate, StreamType};
use runtime::auth::{Caller, Permission};
use runtime::extract::ApiPath;
use runtime::ApiError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, Paths};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::{ContentBuilder, Ref, Required, ResponsesBuilder};
use utoipa_axum::router::UtoipaMethodRouter;
use utoipa_axum::PathItemExt;
use uuid::Uuid;

use super::{AppState, CommandReply};
use crate::context::CommandContext;
use crate::journal::{fingerprint, Lookup};
use crate::versioned::{CommandSchema, Versioned};

/// Where an endpoint is, how the OpenAPI document names it (its tag is its module's:
/// `router!`), the command it takes and who may send it:
/// `Route::post(path, operation).named(command).holds(permission)`. A route without its
/// command's name or its access does not compile (`route`).
pub(crate) struct Route {
    pub method: HttpMethod,
    /// With `{name}` for each path parameter (all of them UUIDs).
    pub path: &'static str,
    pub operation: &'static str,
    /// One line for the document, where the path and the body do not say it all.
    pub summary: Option<&'static str>,
    /// The command's name: its body's in the versioned contract (`CommandSchema`) and in
    /// its fingerprint. Never rename one: stored idempotency answers are keyed by it.
    pub name: &'static str,
    pub access: Option<Access>,
}

impl Route {
    pub const fn post(path: &'static str, operation: &'static str) -> Self {
        Self { method: HttpMethod::Post, path, operation, summary: None, name: "", access: None }
    }

    pub const fn patch(path: &'static str, operation: &'static str) -> Self {
        Self { method: HttpMethod::Patch, ..Self::post(path, operation) }
    }

    pub const fn put(path: &'static str, operation: &'static str) -> Self {
        Self { method: HttpMethod::Put, ..Self::post(path, operation) }
    }

    pub const fn delete(path: &'static str, operation: &'static str) -> Self {
        Self { method: HttpMethod::Delete, ..Self::post(path, operation) }
    }

    pub const fn summary(self, summary: &'static str) -> Self {
        Self { summary: Some(summary), ..self }
    }

    pub const fn named(self, name: &'static str) -> Self {
        Self { name, ..self }
    }

    /// Whoever holds `permission` may send it.
    pub const fn holds(self, permission: Permission) -> Self {
        Self { access: Some(Access::Holds(permission)), ..self }
    }

    /// Any user of the tenant may send it; its `command` decides the rest.
    pub const fn by_command(self) -> Self {
        Self { access: Some(Access::Command), ..self }
    }

    /// Only a platform administrator may send it.
    pub const fn by_platform(self) -> Self {
        Self { access: Some(Access::Platform), ..self }
    }
}

/// Who may call an endpoint.
#[derive(Clone, Copy)]
pub(crate) enum Access {
    /// Whoever holds the permission, by role or grant, in their tenant.
    Holds(Permission),
    /// Any user of the caller's tenant (not a platform token): the endpoint's `command`
    /// decides the rest (a user acting on themself, or a manager of theirs).
    Command,
    /// A platform administrator (a tenant's own lifecycle).
    Platform,
}

/// The stream a command writes.
pub(crate) enum Target {
    /// An existing stream: 200 OK.
    Existing(Uuid),
    /// A new stream: 201 Created, with the collection where a read finds it by its id
    /// (if one does). A retried request is answered with the stream its first attempt
    /// made, not this id: the location names the answer's.
    New { id: Uuid, collection: Option<&'static str> },
}

impl Target {
    /// A new stream, found in `collection` by its id.
    pub fn new(collection: &'static str) -> Self {
        Self::New { id: Uuid::now_v7(), collection: Some(collection) }
    }

    /// A new stream with the id the client chose, if any (`routes::chosen_id`).
    pub fn chosen(collection: &'static str, id: Option<Uuid>) -> Result<Self, ApiError> {
        Ok(Self::New { id: super::chosen_id(id)?, collection: Some(collection) })
    }

    /// A new stream that no read answers by its id (an interaction: read with its case).
    pub fn unlisted() -> Self {
        Self::New { id: Uuid::now_v7(), collection: None }
    }
}

/// What an endpoint reads from the request's body.
pub(crate) enum Body {
    /// The endpoint's type, versioned (`Versioned`) and documented.
    Documented,
    /// An empty object `{}`, versioned and not documented.
    Empty,
    /// An empty object `{}`, versioned and documented as the shared `NoBody`.
    NoFields,
    /// Nothing: the body is not read (a `DELETE`). The type must read from `{}`
    /// (`no_fields!`): any other is a 500 on every request.
    Ignored,
}

/// What a command may look up before it is decided: the journal's folded state of the
/// caller's tenant.
#[derive(Clone, Copy)]
pub(crate) struct Facts<'a> {
    pub state: &'a AppState,
    pub caller: Caller,
}

impl Facts<'_> {
    pub fn tenant(&self) -> Uuid {
        self.caller.tenant_id
    }

    /// The stream's state in the caller's tenant, if it exists.
    pub async fn stream<A: Aggregate>(&self, id: Uuid) -> Result<Option<A>, ApiError> {
        Ok(self.state.journal.state::<A>(self.tenant(), id).await?)
    }

    /// What a reference to a user of the tenant is (nobody is usable).
    pub async fn user(&self, user: Option<Uuid>) -> Result<Reference, ApiError> {
        super::user_reference(self.state, self.tenant(), user).await
    }

    /// What a reference to a case is (a closed case takes nothing new), with the case's
    /// customer.
    pub async fn case(&self, id: Uuid) -> Result<(Reference, Option<Uuid>), ApiError> {
        Ok(match self.stream::<events::case::Case>(id).await? {
            None => (Reference::Missing, None),
            Some(c) if c.status == events::case::Status::Closed => (Reference::Inactive, c.customer_id),
            Some(c) => (Reference::Usable, c.customer_id),
        })
    }

    /// The caller must be an active user of the tenant (`routes::acting_user`).
    pub async fn acting_user(&self) -> Result<(), ApiError> {
        super::acting_user(self.state, &self.caller).await
    }

    /// Someone other than `owner` needs `permission` too (a moderator's right).
    pub fn owner_or(&self, owner: Uuid, permission: Permission) -> Result<(), ApiError> {
        if owner != self.caller.user_id {
            self.caller.require(permission)?;
        }
        Ok(())
    }
}

/// A command endpoint: its body type, declared once. See the module.
pub(crate) trait Endpoint: utoipa::ToSchema + Serialize + DeserializeOwned + Send + 'static {
    /// The stream the command writes.
    type Stream: Aggregate<Command: Clone + Send + Sync> + Send + Sync;
    /// The path's parameters: `()` or `Uuid` (the path's `{id}`).
    type Path: PathArgs;
    const ROUTE: Route;
    /// The command's name (`Route::name`).
    const NAME: &'static str = Self::ROUTE.name;
    const BODY: Body = Body::Documented;

    /// Checks of the body alone, before anything is looked up or fingerprinted.
    fn check(&self) -> Result<(), ApiError> {
        Ok(())
    }

    /// The request's fingerprint: the command's name, the path's id and the body. A body
    /// holding a secret fingerprints a digest of it instead.
    fn fingerprint(&self, path: &Self::Path) -> String {
        fingerprint(<Self as Endpoint>::NAME, path.named(), self)
    }

    /// The stream the command writes: the path's id, or a new stream for a path without
    /// one (found at the path followed by its id).
    fn target(&self, path: &Self::Path) -> Result<Target, ApiError> {
        Ok(match path.named() {
            Some(id) => Target::Existing(id),
            None => Target::new(Self::ROUTE.path),
        })
    }

    /// What the command reserves in its transaction (a unique name, a case number).
    fn lookup(&self) -> Lookup {
        Lookup::Nothing
    }

    /// The domain command, with the facts it needs looked up.
    fn command(
        self,
        path: Self::Path,
        facts: Facts<'_>,
    ) -> impl Future<Output = Result<<Self::Stream as Aggregate>::Command, ApiError>> + Send;

    /// What follows the recorded `command` in the same request, on the stream `id` (also
    /// on a retry answered from its first attempt).
    fn recorded(
        _facts: Facts<'_>,
        _id: Uuid,
        _command: &<Self::Stream as Aggregate>::Command,
    ) -> impl Future<Output = Result<(), ApiError>> + Send {
        async { Ok(()) }
    }
}

/// An endpoint's body is versioned under its command's name.
impl<E: Endpoint> CommandSchema for E {
    const NAME: &'static str = <E as Endpoint>::NAME;
}

/// The path parameters an endpoint takes.
pub(crate) trait PathArgs: Sized + Send + 'static {
    fn extract(parts: &mut Parts) -> impl Future<Output = Result<Self, ApiError>> + Send;
    /// The id the path names, fingerprinted with the body.
    fn named(&self) -> Option<Uuid>;
}

impl PathArgs for () {
    async fn extract(_: &mut Parts) -> Result<Self, ApiError> {
        Ok(())
    }

    fn named(&self) -> Option<Uuid> {
        None
    }
}

impl PathArgs for Uuid {
    async fn extract(parts: &mut Parts) -> Result<Self, ApiError> {
        Ok(ApiPath::<Uuid>::from_request_parts(parts, &()).await?.0)
    }

    fn named(&self) -> Option<Uuid> {
        Some(*self)
    }
}

/// A path naming a stream and one of its parts (a team and a member).
impl PathArgs for (Uuid, Uuid) {
    async fn extract(parts: &mut Parts) -> Result<Self, ApiError> {
        Ok(ApiPath::<(Uuid, Uuid)>::from_request_parts(parts, &()).await?.0)
    }

    fn named(&self) -> Option<Uuid> {
        Some(self.0)
    }
}

/// An endpoint's path parameters, as an extractor.
pub(crate) struct Args<P>(P);

impl<P: PathArgs, S: Send + Sync> FromRequestParts<S> for Args<P> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(P::extract(parts).await?))
    }
}

/// An endpoint's body, as an extractor (see `Body`).
pub(crate) struct Payload<E>(E);

impl<E: Endpoint, S: Send + Sync> FromRequest<S> for Payload<E> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match E::BODY {
            Body::Documented | Body::Empty | Body::NoFields => {
                Ok(Self(Versioned::<E>::from_request(request, state).await?.body))
            }
            Body::Ignored => serde_json::from_value(serde_json::json!({}))
                .map(Self)
                .map_err(|e| ApiError::Internal(anyhow::anyhow!("{} takes a body: {e}", <E as Endpoint>::NAME))),
        }
    }
}

/// The one handler of every declared endpoint.
async fn serve<E: Endpoint>(
    State(state): State<AppState>,
    ctx: CommandContext,
    Args(path): Args<E::Path>,
    Payload(body): Payload<E>,
) -> Result<CommandReply, ApiError> {
    let caller = match E::ROUTE.access {
        Some(Access::Holds(permission)) => ctx.caller.require(permission)?,
        Some(Access::Command) => ctx.caller.tenant_member()?,
        Some(Access::Platform) => ctx.caller.platform_admin()?,
        // `route` does not compile for such a route.
        None => return Err(ApiError::Forbidden(format!("{} names no access", <E as Endpoint>::NAME))),
    };
    body.check()?;
    let hash = Endpoint::fingerprint(&body, &path);
    let target = body.target(&path)?;
    let lookup = body.lookup();
    let facts = Facts { state: &state, caller };
    let command = body.command(path, facts).await?;
    let (id, success, collection) = match target {
        Target::Existing(id) => (id, StatusCode::OK, None),
        Target::New { id, collection } => (id, StatusCode::CREATED, collection),
    };
    let reply = if <E::Stream as Aggregate>::STREAM == StreamType::Tenant {
        // A tenant's stream is in its own journal, whatever its status: a suspended tenant
        // is reactivated through it, and no caller's tenant is involved (each endpoint's
        // access and `command` decide whose tenant the caller may name).
        super::execute_for::<E::Stream>(&state, &ctx, id, id, hash, lookup, success, |s| {
            let context = events::Context { actor: caller.user_id, now: chrono::Utc::now() };
            E::Stream::decide(s, command.clone(), &context)
        })
        .await?
    } else {
        super::decide_in_tenant::<E::Stream>(&state, &ctx, id, hash, lookup, success, &command).await?
    };
    // A retry is answered with the stream its first attempt made.
    let id = reply.recorded.id;
    E::recorded(facts, id, &command).await?;
    Ok(match collection {
        Some(collection) => reply.at(format!("{collection}/{id}")),
        None => reply,
    })
}

/// The endpoint's route, served by `serve` and documented from its declaration under
/// its module's `tag`.
pub(crate) fn route<E: Endpoint>(tag: &str) -> UtoipaMethodRouter<AppState> {
    const {
        assert!(!E::ROUTE.name.is_empty(), "a route names its command: `.named(...)`");
        assert!(
            E::ROUTE.access.is_some(),
            "a route says who may send it: `.holds(..)`, `.by_command()` or `.by_platform()`"
        );
    }
    let route = E::ROUTE;
    let mut schemas = Vec::new();
    let mut operation = OperationBuilder::new()
        .operation_id(Some(route.operation))
        .tag(tag)
        .summary(route.summary)
        .responses(ResponsesBuilder::new().responses_from_into_responses::<runtime::openapi::CommandAnswered>());
    for name in parameters(route.path) {
        let uuid = utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Uuid)));
        operation = operation.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(uuid)),
        );
    }
    let documented = match E::BODY {
        Body::Documented => {
            <E as utoipa::ToSchema>::schemas(&mut schemas);
            schemas.push((E::name().into_owned(), <E as utoipa::PartialSchema>::schema()));
            Some(E::name())
        }
        Body::NoFields => {
            let name = <super::NoBody as utoipa::ToSchema>::name();
            schemas.push((name.clone().into_owned(), <super::NoBody as utoipa::PartialSchema>::schema()));
            Some(name)
        }
        Body::Empty | Body::Ignored => None,
    };
    if let Some(name) = documented {
        let content = ContentBuilder::new().schema(Some(Ref::from_schema_name(name))).build();
        operation = operation.request_body(Some(
            RequestBodyBuilder::new().content("application/json", content).required(Some(Required::True)).build(),
        ));
    }
    let mut paths = Paths::new();
    let filter = route.method.to_method_filter();
    paths.add_path_operation(route.path, vec![route.method], operation.build());
    (schemas, paths, axum::routing::on(filter, serve::<E>))
}

/// The names of a path's `{parameters}`, in order.
fn parameters(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
}

/// A command body with no fields: read from `{}` (or not read at all, `Body::Ignored`)
/// and fingerprinted as no body.
macro_rules! no_fields {
    ($name:ident) => {
        #[derive(serde::Deserialize, utoipa::ToSchema)]
        #[serde(deny_unknown_fields)]
        pub(super) struct $name {}

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_unit()
            }
        }
    };
}
pub(crate) use no_fields;

/// The router of a module's declared endpoints (`route` for each), all under the
/// module's OpenAPI tag.
macro_rules! router {
    ($tag:literal: $($endpoint:ty),+ $(,)?) => {
        utoipa_axum::router::OpenApiRouter::new()$(.routes(super::endpoint::route::<$endpoint>($tag)))+
    };
}
pub(crate) use router;
