//! The operator commands over HTTP, on the projector's port, for platform administrators
//! only. The same functions back the `murima-admin` command line.
//!
//! - `GET    /v1/admin/projections`                       status of every projection
//! - `POST   /v1/admin/projections/{name}/replay`         `{"from": "<position|RFC 3339>", "tenant_id"?}`
//! - `POST   /v1/admin/projections/{name}/rebuild`        `{"tenant_id"?}`: starts (or resumes), 202
//! - `DELETE /v1/admin/projections/{name}/rebuild`        abandons the unfinished rebuild
//! - `GET    /v1/admin/rebuilds`                          recent rebuilds and their progress
//! - `GET    /v1/admin/parked?projection=&after=&after_tenant=&limit=`  parked streams
//! - `POST   /v1/admin/parked/{name}/{stream}/retry?tenant_id=`  apply them again
//! - `POST   /v1/admin/parked/{name}/{stream}/skip?tenant_id=`   give up on them
//! - `POST   /v1/admin/republish`                         `{"from": <journal position>}`
//! - `POST   /v1/admin/elasticsearch/migrate`             `{"tenant_id"?, "entity"?}`: mapping migration
//! - `POST   /v1/admin/verify`                            `{"projection"?, "tenant_id"?, "repair"?, "grace_seconds"?}`
//!
//! `GET /openapi.json` documents them (built by `utoipa-axum` from the same calls that
//! register the routes, as the two APIs' documents are), and `GET /docs` shows it.
//!
//! A stream is identified by (tenant, id): a parked retry's or skip's `tenant_id` names
//! the tenant whose stream of that id is meant; without it, every tenant's stream of that
//! id is (these are platform operators' commands, which see every tenant anyway).

use std::borrow::Cow;

use axum::extract::FromRef;
use axum::http::StatusCode;
use axum::{Json, Router};
use runtime::auth::{Caller, JwtKeys};
use runtime::extract::{ApiJson, ApiPath, ApiQuery};
use runtime::openapi::{BearerAuth, Problems};
use runtime::ApiError;
use serde::{Deserialize, Serialize};
use utoipa::openapi::{ObjectBuilder, RefOr, Schema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::mappings::Migrated;
use crate::operations::{self, From, ParkedStream, ProjectionStatus};
use crate::rebuild::Rebuild;
use crate::stores::{ProjectionName, Stores};
use crate::verify::Report;

#[derive(Clone)]
struct Admin {
    stores: Stores,
    keys: JwtKeys,
}

impl FromRef<Admin> for JwtKeys {
    fn from_ref(admin: &Admin) -> JwtKeys {
        admin.keys.clone()
    }
}

impl runtime::auth::Authority for Admin {
    /// These endpoints are the platform operators': their tokens (`command-api token`)
    /// carry their role. No user's login token reaches them.
    async fn authorise(&self, token: runtime::auth::Token) -> Result<Caller, ApiError> {
        if !token.caller.operator {
            return Err(ApiError::Forbidden(
                "the projector's endpoints take a platform operator's token (command-api token)".into(),
            ));
        }
        Ok(token.caller)
    }
}

/// The admin API's OpenAPI document: info and shared components; the paths come from
/// the routes below, registered and documented by the same calls.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Murima projector admin API",
        description = "The operators' commands on the projector's port: projection status, replays, rebuilds, \
                       parked streams, republishing, index migrations and verification. Every endpoint takes a \
                       platform operator's token (`command-api token`)."
    ),
    modifiers(&BearerAuth),
    // Schemas the parameters refer to by name (`IntoParams` does not collect them).
    components(schemas(runtime::openapi::Problem, runtime::openapi::FieldProblem, Projection))
)]
struct ApiDoc;

/// Every admin route, with the OpenAPI document built from them.
fn documented() -> (Router<Admin>, utoipa::openapi::OpenApi) {
    use utoipa::OpenApi;
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(status))
        .routes(routes!(replay))
        .routes(routes!(rebuild, abandon))
        .routes(routes!(rebuilds))
        .routes(routes!(parked))
        .routes(routes!(retry))
        .routes(routes!(skip))
        .routes(routes!(republish))
        .routes(routes!(es_migrate))
        .routes(routes!(verify))
        .split_for_parts()
}

/// The admin API's OpenAPI document (served at `/openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    documented().1
}

pub fn router(stores: Stores) -> Router {
    let keys = JwtKeys::new(&stores.settings.jwt_secret);
    let (routes, api) = documented();
    routes.merge(runtime::openapi::docs_router(&api)).with_state(Admin { stores, keys })
}

/// A projection's name, as the document states it: one of `ProjectionName::ALL`.
struct Projection;

impl utoipa::PartialSchema for Projection {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("A projection (its consumer group's suffix)"))
            .enum_values(Some(ProjectionName::ALL.map(ProjectionName::as_str)))
            .into()
    }
}

impl utoipa::ToSchema for Projection {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ProjectionName")
    }
}

/// An operator's failure is their input (an unknown projection, nothing parked) far
/// more often than the server's; it is answered as a 422 that says what was wrong.
fn refused(e: anyhow::Error) -> ApiError {
    ApiError::unprocessable(format!("{e:#}"))
}

fn known(name: &str) -> Result<ProjectionName, ApiError> {
    name.parse::<ProjectionName>().map_err(|e| ApiError::NotFound(e.to_string()))
}

/// Every projection's progress and health.
#[derive(Serialize, utoipa::ToSchema)]
struct Statuses {
    projections: Vec<ProjectionStatus>,
}

/// Every projection's checkpoint, lag, throughput, parked streams, last error and restarts.
#[utoipa::path(get, path = "/v1/admin/projections", tag = "projections", operation_id = "admin_status",
    responses((status = 200, description = "Every projection", body = Statuses), Problems))]
async fn status(
    caller: Caller,
    axum::extract::State(admin): axum::extract::State<Admin>,
) -> Result<Json<Statuses>, ApiError> {
    caller.platform_admin()?;
    let projections = operations::status(&admin.stores).await.map_err(ApiError::Internal)?;
    Ok(Json(Statuses { projections }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    /// Where to start: a journal position, or an RFC 3339 time.
    #[schema(example = "2025-01-31T00:00:00Z")]
    from: String,
    /// Only this tenant's events (without it, every tenant's).
    tenant_id: Option<Uuid>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Replayed {
    #[schema(value_type = Projection)]
    projection: &'static str,
    events_applied: u64,
}

/// Re-applies the journal from a position or time through the live projection (safe to
/// repeat: every store ignores versions it holds).
#[utoipa::path(post, path = "/v1/admin/projections/{name}/replay", tag = "projections", operation_id = "admin_replay",
    params(("name" = Projection, Path, description = "The projection")),
    request_body = ReplayBody,
    responses((status = 200, description = "Replayed", body = Replayed), Problems))]
async fn replay(
    caller: Caller,
    axum::extract::State(admin): axum::extract::State<Admin>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<ReplayBody>,
) -> Result<Json<Replayed>, ApiError> {
    caller.platform_admin()?;
    let name = known(&name)?;
    let from: From = body.from.parse().map_err(ApiError::BadRequest)?;
    let applied = operations::replay(&admin.stores, name, body.tenant_id, from, &|_, _| {}).await.map_err(refused)?;
    Ok(Json(Replayed { projection: name.as_str(), events_applied: applied }))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RebuildBody {
    /// Only this tenant's read model (without it, every tenant's).
    tenant_id: Option<Uuid>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct RebuildStarted {
    #[schema(value_type = Projection)]
    projection: &'static str,
    tenant_id: Option<Uuid>,
    /// Where to follow it.
    #[schema(example = "/v1/admin/rebuilds")]
    follow: &'static str,
}

/// Starts (or resumes) a rebuild in the background; `GET /v1/admin/rebuilds` follows it.
#[utoipa::path(post, path = "/v1/admin/projections/{name}/rebuild", tag = "rebuilds", operation_id = "admin_rebuild",
    params(("name" = Projection, Path, description = "The projection")),
    request_body(content = Option<RebuildBody>, description = "Optional: without a body, every tenant's read model"),
    responses((status = 202, description = "Started (or resumed)", body = RebuildStarted), Problems))]
async fn rebuild(
    caller: Caller,
    axum::extract::State(admin): axum::extract::State<Admin>,
    ApiPath(name): ApiPath<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<RebuildStarted>), ApiError> {
    caller.platform_admin()?;
    let name = known(&name)?;
    // No body (or `null`, as the document allows) means every tenant.
    let body: RebuildBody = if body.is_empty() {
        RebuildBody::default()
    } else {
        serde_json::from_slice::<Option<RebuildBody>>(&body)
            .map_err(|e| ApiError::BadRequest(format!("the body must be {{\"tenant_id\"?: uuid}}: {e}")))?
            .unwrap_or_default()
    };
    let tenant = body.tenant_id;
    let pool = &admin.stores.pool;
    if let Some(t) = tenant {
        if !crate::rebuild::in_journal(pool, t).await.map_err(ApiError::Internal)? {
            return Err(ApiError::NotFound(format!("tenant {t} has no events in the journal")));
        }
    }
    if let Some(why) = crate::rebuild::refusal(pool, name, tenant).await.map_err(ApiError::Internal)? {
        return Err(ApiError::Conflict { detail: why, current_version: None });
    }
    let stores = admin.stores.clone();
    tokio::spawn(async move {
        match crate::rebuild::run(&stores, name, tenant, &|_, _| {}).await {
            Ok(report) => tracing::info!(?report, "rebuild finished"),
            Err(e) => tracing::error!(projection = %name, error = %format!("{e:#}"), "rebuild stopped"),
        }
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(RebuildStarted { projection: name.as_str(), tenant_id: tenant, follow: "/v1/admin/rebuilds" }),
    ))
}

#[derive(Serialize, utoipa::ToSchema)]
struct Abandoned {
    #[schema(value_type = Projection)]
    projection: &'static str,
    /// The rebuild abandoned.
    abandoned: Uuid,
    /// Why some of its copies are still there, when they are (their store did not
    /// answer); the projector drops them once it does.
    clean_up_pending: Option<String>,
}

/// Abandons the projection's unfinished rebuild (its copies are dropped, now or once their
/// store answers; the live read model is untouched).
#[utoipa::path(delete, path = "/v1/admin/projections/{name}/rebuild", tag = "rebuilds", operation_id = "admin_abandon_rebuild",
    params(("name" = Projection, Path, description = "The projection")),
    responses((status = 200, description = "Abandoned", body = Abandoned), Problems))]
async fn abandon(
    caller: Caller,
    axum::extract::State(admin): axum::extract::State<Admin>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Abandoned>, ApiError> {
    caller.platform_admin()?;
    let name = known(&name)?;
    let done = crate::rebuild::abandon(&admin.stores, name).await.map_err(refused)?;
    Ok(Json(Abandoned { projection: name.as_str(), abandoned: done.id, clean_up_pending: done.clean_up_pending }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct Page {
    /// Only this projection's parked streams.
    #[param(value_type = Option<Projection>)]
    projection: Option<String>,
    /// The next page: after this stream (`next_after` of the last page).
    after: Option<Uuid>,
    /// With `after`: the tenant of that stream (`next_after_tenant` of the last page).
    after_tenant: Option<Uuid>,
    /// How many (1 to 500, default 50).
    limit: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Rebuilds {
    /// The newest first.
    rebuilds: Vec<Rebuild>,
}

/// Recent rebuilds, the newest first, with their progress.
#[utoipa::path(get, path = "/v1/admin/rebuilds", tag = "rebuilds", operation_id = "admin_rebuilds",
    params(("limit" = Option<i64>, Query, description = "How many (1 to 100, default 20)")),
    responses((status = 200, description = "Recent rebuilds", body = Rebuilds), Problems))]
async fn rebuilds(
    caller: Caller,
    axum::extract::State(admin): axum::extract::State<Admin>,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Json<Rebuilds>, ApiError> {
    caller.platform_admin()?;
    let limit = page.limit.unwrap_or(20).clamp(1, 100);
    let rebuilds = crate::rebuild::list(&admin.stores.pool, limit).await.map_err(ApiError::Internal)?;
    Ok(Json(Rebuilds { rebuilds }))
}

/// A page of parked streams.
#[derive(Serialize, utoipa::ToSchema)]
struct ParkedPage {
    parked: Vec<ParkedStream>,
    /// Pass as `after` (with `after_tenant`) for the next page; null on the last page.
    next_after: Option<Uuid>,
    next_after_tenant: Option<Uuid>,
}

/// Parked streams in (projection, stream id, tenant) order, a page at a time.
#[utoipa::path(get, path = "/v1/admin/parked", tag = "parked", operation_id = "admin_parked",
    params(Page),
    responses((status = 200, description = "A page of parked streams", body = ParkedPage), Problems))]
async fn parked(
    caller: Caller,
    axum::extract::State(admin): axum::extract::State<Admin>,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Json<ParkedPage>, ApiError> {
    caller.platform_admin()?;
    let projection = page.projection.as_deref().map(known).transpose()?;
    let limit = page.limit.unwrap_or(50).clamp(1, 500);
    let streams = operations::parked(&admin.stores.pool, projection, page.after, page.after_tenant, limit)
        .await
        .map_err(ApiError::Internal)?;
    let last = (streams.len() as i64 == limit).then(|| streams.last()).flatten();
    let (next_after, next_after_tenant) = (last.map(|s| s.stream_id), last.map(|s| s.tenant_id));
    Ok(Json(ParkedPage { parked: streams, next_after, next_after_tenant }))
}

/// Which tenant's stream a retry or skip means (none: the stream of that id in every tenant).
#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct StreamTenant {
    /// The tenant whose stream of that id is meant (without it, every tenant's).
    tenant_id: Option<Uuid>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Retried {
    #[schema(value_type = Projection)]
    projection: &'static str,
    stream_id: Uuid,
    tenant_id: Option<Uuid>,
    events_applied: usize,
}

/// Applies a parked stream's events again, in order; the stream flows again if they apply.
#[utoipa::path(post, path = "/v1/admin/parked/{name}/{stream}/retry", tag = "parked", operation_id = "admin_retry_parked",
    params(("name" = Projection, Path, description = "The projection"), ("stream" = Uuid, Path, description = "The stream's id"), StreamTenant),
    responses((status = 200, description = "Applied", body = Retried), Problems))]
async fn retry(
    caller: Caller,
    axum::extract::State(admin): axum::extract::State<Admin>,
    ApiPath((name, stream)): ApiPath<(String, Uuid)>,
    ApiQuery(of): ApiQuery<StreamTenant>,
) -> Result<Json<Retried>, ApiError> {
    caller.platform_admin()?;
    let name = known(&name)?;
    let applied = operations::retry_parked(&admin.stores, name, stream, of.tenant_id).await.map_err(refused)?;
    Ok(Json(Retried { projection: name.as_str(), stream_id: stream, tenant_id: of.tenant_id, events_applied: applied }))
}

#[derive(Serialize, utoipa::ToSchema)]
struct Skipped {
    #[schema(value_type = Projection)]
    projection: &'static str,
    stream_id: Uuid,
    tenant_id: Option<Uuid>,
    events_skipped: u64,
}

/// Gives up on a parked stream's events (they are kept aside, not applied).
#[utoipa::path(post, path = "/v1/admin/parked/{name}/{stream}/skip", tag = "parked", operation_id = "admin_skip_parked",
    params(("name" = Projection, Path, description = "The projection"), ("stream" = Uuid, Path, description = "The stream's id"), StreamTenant),
    responses((status = 200, description = "Skipped", body = Skipped), Problems))]
async fn skip(
    caller: Caller,
    axum::extract::State(admin): axum::extract::State<Admin>,
    ApiPath((name, stream)): ApiPath<(String, Uuid)>,
    ApiQuery(of): ApiQuery<StreamTenant>,
) -> Result<Json<Skipped>, ApiError> {
    caller.platform_admin()?;
    let name = known(&name)?;
    let skipped = operations::skip_parked(&admin.stores, name, stream, of.tenant_id).await.map_err(refused)?;
    Ok(Json(Skipped { projection: name.as_str(), stream_id: stream, tenant_id: of.tenant_id, events_skipped: skipped }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RepublishBody {
    /// The journal position to publish again from (1 or more).
    #[schema(minimum = 1, example = 1)]
    from: i64,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Republished {
    /// Events queued in the outbox for the relay to publish.
    queued: u64,
}

/// Queues the journal's events from a position in the outbox, for the relay to publish
/// to the broker again.
#[utoipa::path(post, path = "/v1/admin/republish", tag = "journal", operation_id = "admin_republish",
    request_body = RepublishBody,
    responses((status = 200, description = "Queued", body = Republished), Problems))]
async fn republish(
    caller: Caller,
    axum::extract::State(admin): axum::extract::State<Admin>,
    ApiJson(body): ApiJson<RepublishBody>,
) -> Result<Json<Republished>, ApiError> {
    caller.platform_admin()?;
    if body.from < 1 {
        return Err(ApiError::BadRequest("from must be a journal position, 1 or more".into()));
    }
    let queued = operations::republish(&admin.stores.pool, body.from).await.map_err(ApiError::Internal)?;
    Ok(Json(Republished { queued }))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct MigrateBody {
    /// Only this tenant's indices (without it, every tenant's).
    tenant_id: Option<Uuid>,
    /// Only this entity's indices (`cases`, `notes`, ...: an unknown one is refused with the
    /// list of them); without it, every entity's.
    #[schema(example = "cases")]
    entity: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct MigrateAnswer {
    /// Each alias moved to an index with the current mapping.
    migrated: Vec<Migrated>,
}

/// Moves Elasticsearch indices to the current mappings (reindex, then switch the alias).
#[utoipa::path(post, path = "/v1/admin/elasticsearch/migrate", tag = "elasticsearch", operation_id = "admin_es_migrate",
    request_body = MigrateBody,
    responses((status = 200, description = "Migrated", body = MigrateAnswer), Problems))]
async fn es_migrate(
    caller: Caller,
    axum::extract::State(admin): axum::extract::State<Admin>,
    ApiJson(body): ApiJson<MigrateBody>,
) -> Result<Json<MigrateAnswer>, ApiError> {
    caller.platform_admin()?;
    let migrated =
        crate::mappings::migrate(&admin.stores, body.tenant_id, body.entity.as_deref()).await.map_err(refused)?;
    Ok(Json(MigrateAnswer { migrated }))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct VerifyBody {
    /// Only this projection (without it, every projection).
    #[schema(value_type = Option<Projection>)]
    projection: Option<String>,
    /// Only this tenant (without it, every tenant).
    tenant_id: Option<Uuid>,
    /// Re-apply the streams found missing or stale.
    #[serde(default)]
    repair: bool,
    /// Events younger than this are still on their way and not compared (default 30).
    #[schema(minimum = 0, maximum = 86_400)]
    grace_seconds: Option<u64>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Verified {
    reports: Vec<Report>,
}

/// Most a grace period may be: a day (an older event has long been delivered).
const MAX_GRACE_SECONDS: u64 = 86_400;

/// Compares read models with the journal, stream by stream, and repairs them if asked.
#[utoipa::path(post, path = "/v1/admin/verify", tag = "verification", operation_id = "admin_verify",
    request_body = VerifyBody,
    responses((status = 200, description = "One report per projection", body = Verified), Problems))]
async fn verify(
    caller: Caller,
    axum::extract::State(admin): axum::extract::State<Admin>,
    ApiJson(body): ApiJson<VerifyBody>,
) -> Result<Json<Verified>, ApiError> {
    caller.platform_admin()?;
    let projection = body.projection.as_deref().map(known).transpose()?;
    let grace = body.grace_seconds.unwrap_or(30);
    if grace > MAX_GRACE_SECONDS {
        return Err(ApiError::BadRequest(format!("grace_seconds must be at most {MAX_GRACE_SECONDS} (got {grace})")));
    }
    let reports = crate::verify::verify(
        &admin.stores,
        projection,
        body.tenant_id,
        std::time::Duration::from_secs(grace),
        body.repair,
    )
    .await
    .map_err(ApiError::Internal)?;
    Ok(Json(Verified { reports }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    /// The document names every operation once, and every schema it refers to.
    #[test]
    fn the_document_is_whole() {
        let doc = serde_json::to_value(super::openapi()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let operations: usize =
            doc["paths"].as_object().unwrap().values().map(|item| item.as_object().unwrap().len()).sum();
        assert_eq!(operations, 11, "{}", doc["paths"]);
        let text = doc.to_string();
        for name in text.split("\"#/components/schemas/").skip(1) {
            let name = name.split('"').next().unwrap();
            assert!(doc["components"]["schemas"][name].is_object(), "{name} is referred to, not defined");
        }
    }
}
