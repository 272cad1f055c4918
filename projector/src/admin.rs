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
//! A stream is identified by (tenant, id): a parked retry's or skip's `tenant_id` names
//! the tenant whose stream of that id is meant; without it, every tenant's stream of that
//! id is (these are platform operators' commands, which see every tenant anyway).

use axum::extract::FromRef;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use runtime::auth::{Caller, JwtKeys};
use runtime::extract::{ApiJson, ApiPath, ApiQuery};
use runtime::ApiError;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::operations::{self, From};
use crate::stores::Stores;

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

pub fn router(stores: Stores) -> Router {
    let keys = JwtKeys::new(&stores.settings.jwt_secret);
    Router::new()
        .route("/v1/admin/projections", get(status))
        .route("/v1/admin/projections/{name}/replay", post(replay))
        .route("/v1/admin/projections/{name}/rebuild", post(rebuild).delete(abandon))
        .route("/v1/admin/rebuilds", get(rebuilds))
        .route("/v1/admin/parked", get(parked))
        .route("/v1/admin/parked/{name}/{stream}/retry", post(retry))
        .route("/v1/admin/parked/{name}/{stream}/skip", post(skip))
        .route("/v1/admin/republish", post(republish))
        .route("/v1/admin/elasticsearch/migrate", post(es_migrate))
        .route("/v1/admin/verify", post(verify))
        .with_state(Admin { stores, keys })
}

/// An operator's failure is their input (an unknown projection, nothing parked) far
/// more often than the server's; it is answered as a 422 that says what was wrong.
fn refused(e: anyhow::Error) -> ApiError {
    ApiError::unprocessable(format!("{e:#}"))
}

fn known(name: &str) -> Result<&'static str, ApiError> {
    name.parse::<crate::stores::ProjectionName>()
        .map(crate::stores::ProjectionName::as_str)
        .map_err(|e| ApiError::NotFound(e.to_string()))
}

async fn status(
    caller: Caller,
    axum::extract::State(admin): axum::extract::State<Admin>,
) -> Result<Json<Value>, ApiError> {
    caller.platform_admin()?;
    let statuses = operations::status(&admin.stores).await.map_err(ApiError::Internal)?;
    Ok(Json(json!({ "projections": statuses })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    from: String,
    tenant_id: Option<Uuid>,
}

async fn replay(
    caller: Caller,
    axum::extract::State(admin): axum::extract::State<Admin>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<ReplayBody>,
) -> Result<Json<Value>, ApiError> {
    caller.platform_admin()?;
    let name = known(&name)?;
    let from: From = body.from.parse().map_err(ApiError::BadRequest)?;
    let applied = operations::replay(&admin.stores, name, body.tenant_id, from, &|_, _| {}).await.map_err(refused)?;
    Ok(Json(json!({ "projection": name, "events_applied": applied })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RebuildBody {
    tenant_id: Option<Uuid>,
}

/// Starts (or resumes) a rebuild in the background; `GET /v1/admin/rebuilds` follows it.
async fn rebuild(
    caller: Caller,
    axum::extract::State(admin): axum::extract::State<Admin>,
    ApiPath(name): ApiPath<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.platform_admin()?;
    let name = known(&name)?;
    let body: RebuildBody = if body.is_empty() {
        RebuildBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("the body must be {{\"tenant_id\"?: uuid}}: {e}")))?
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
            Err(e) => tracing::error!(projection = name, error = %format!("{e:#}"), "rebuild stopped"),
        }
    });
    Ok((StatusCode::ACCEPTED, Json(json!({ "projection": name, "tenant_id": tenant, "follow": "/v1/admin/rebuilds" }))))
}

async fn abandon(
    caller: Caller,
    axum::extract::State(admin): axum::extract::State<Admin>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    caller.platform_admin()?;
    let name = known(&name)?;
    let id = crate::rebuild::abandon(&admin.stores, name).await.map_err(refused)?;
    Ok(Json(json!({ "projection": name, "abandoned": id })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    projection: Option<String>,
    after: Option<Uuid>,
    /// With `after`: the tenant of that stream (`next_after_tenant` of the last page).
    after_tenant: Option<Uuid>,
    limit: Option<i64>,
}

async fn rebuilds(
    caller: Caller,
    axum::extract::State(admin): axum::extract::State<Admin>,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Json<Value>, ApiError> {
    caller.platform_admin()?;
    let limit = page.limit.unwrap_or(20).clamp(1, 100);
    let rebuilds = crate::rebuild::list(&admin.stores.pool, limit).await.map_err(ApiError::Internal)?;
    Ok(Json(json!({ "rebuilds": rebuilds })))
}

async fn parked(
    caller: Caller,
    axum::extract::State(admin): axum::extract::State<Admin>,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Json<Value>, ApiError> {
    caller.platform_admin()?;
    let projection = page.projection.as_deref().map(known).transpose()?;
    let limit = page.limit.unwrap_or(50).clamp(1, 500);
    let streams = operations::parked(&admin.stores.pool, projection, page.after, page.after_tenant, limit)
        .await
        .map_err(ApiError::Internal)?;
    let last = (streams.len() as i64 == limit).then(|| streams.last()).flatten();
    Ok(Json(json!({
        "parked": streams,
        "next_after": last.map(|s| s.stream_id),
        "next_after_tenant": last.map(|s| s.tenant_id),
    })))
}

/// Which tenant's stream a retry or skip means (none: the stream of that id in every tenant).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StreamTenant {
    tenant_id: Option<Uuid>,
}

async fn retry(
    caller: Caller,
    axum::extract::State(admin): axum::extract::State<Admin>,
    ApiPath((name, stream)): ApiPath<(String, Uuid)>,
    ApiQuery(of): ApiQuery<StreamTenant>,
) -> Result<Json<Value>, ApiError> {
    caller.platform_admin()?;
    let name = known(&name)?;
    let applied = operations::retry_parked(&admin.stores, name, stream, of.tenant_id).await.map_err(refused)?;
    Ok(Json(json!({ "projection": name, "stream_id": stream, "tenant_id": of.tenant_id, "events_applied": applied })))
}

async fn skip(
    caller: Caller,
    axum::extract::State(admin): axum::extract::State<Admin>,
    ApiPath((name, stream)): ApiPath<(String, Uuid)>,
    ApiQuery(of): ApiQuery<StreamTenant>,
) -> Result<Json<Value>, ApiError> {
    caller.platform_admin()?;
    let name = known(&name)?;
    let skipped = operations::skip_parked(&admin.stores, name, stream, of.tenant_id).await.map_err(refused)?;
    Ok(Json(json!({ "projection": name, "stream_id": stream, "tenant_id": of.tenant_id, "events_skipped": skipped })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RepublishBody {
    from: i64,
}

async fn republish(
    caller: Caller,
    axum::extract::State(admin): axum::extract::State<Admin>,
    ApiJson(body): ApiJson<RepublishBody>,
) -> Result<Json<Value>, ApiError> {
    caller.platform_admin()?;
    if body.from < 1 {
        return Err(ApiError::BadRequest("from must be a journal position, 1 or more".into()));
    }
    let queued = operations::republish(&admin.stores.pool, body.from).await.map_err(ApiError::Internal)?;
    Ok(Json(json!({ "queued": queued })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct MigrateBody {
    tenant_id: Option<Uuid>,
    entity: Option<String>,
}

async fn es_migrate(
    caller: Caller,
    axum::extract::State(admin): axum::extract::State<Admin>,
    ApiJson(body): ApiJson<MigrateBody>,
) -> Result<Json<Value>, ApiError> {
    caller.platform_admin()?;
    let migrated =
        crate::mappings::migrate(&admin.stores, body.tenant_id, body.entity.as_deref()).await.map_err(refused)?;
    Ok(Json(json!({ "migrated": migrated })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct VerifyBody {
    projection: Option<String>,
    tenant_id: Option<Uuid>,
    #[serde(default)]
    repair: bool,
    /// Events younger than this are still on their way and not compared (default 30).
    grace_seconds: Option<u64>,
}

/// Most a grace period may be: a day (an older event has long been delivered).
const MAX_GRACE_SECONDS: u64 = 86_400;

async fn verify(
    caller: Caller,
    axum::extract::State(admin): axum::extract::State<Admin>,
    ApiJson(body): ApiJson<VerifyBody>,
) -> Result<Json<Value>, ApiError> {
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
    Ok(Json(json!({ "reports": reports })))
}
