//! Read endpoints, one module per read model family.

mod audit;
mod case_detail;
pub mod case_list;
mod case_row;
mod counters;
mod dashboard;
mod data_subjects;
mod entities;
mod entity_answers;
mod presence;
mod search;
mod webhooks;

use axum::extract::FromRef;
use axum::Router;
use elasticsearch::Elasticsearch;
use runtime::auth::{Caller, JwtKeys};
use runtime::openapi::BearerAuth;
use runtime::ApiError;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub mongo: mongodb::Database,
    pub elastic: Elasticsearch,
    pub redis: redis::aio::ConnectionManager,
    /// Sessions and the callers' live rights (`crate::permissions`).
    pub sessions: runtime::session::Sessions,
    pub keys: JwtKeys,
    pub read_wait: std::time::Duration,
    /// How long a case viewer stays listed after their last read or heartbeat.
    pub viewer_window: std::time::Duration,
    /// The consumer group of the PostgreSQL projection this API reads.
    pub postgres_projection: String,
    /// Which custom fields each role may see (`crate::field_visibility`).
    pub field_visibility: crate::field_visibility::FieldVisibility,
}

impl FromRef<AppState> for JwtKeys {
    fn from_ref(state: &AppState) -> Self {
        state.keys.clone()
    }
}

/// The query API's OpenAPI document: info and shared components; the paths come from
/// the routers below, registered and documented by the same calls.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Murima query API",
        description = "Reads from the projections, bound to the caller's tenant. Every read accepts a command's \
                       position token (`position` or `X-Murima-Position`) and waits until its read model holds that \
                       write, or answers 503 not-yet-consistent."
    ),
    modifiers(&BearerAuth),
    // Schemas the query parameters refer to by name (`IntoParams` does not collect them).
    components(schemas(
        runtime::openapi::Problem,
        runtime::openapi::FieldProblem,
        events::case::Priority,
        events::case::Status,
        case_list::Sort,
        webhooks::DeliveryStatus
    ))
)]
pub struct ApiDoc;

/// Every read route, with the OpenAPI document built from them.
pub fn documented() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    use utoipa::OpenApi;
    utoipa_axum::router::OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(case_list::router())
        .merge(case_detail::router())
        .merge(audit::router())
        .merge(search::router())
        .merge(counters::router())
        .merge(presence::router())
        .merge(entities::router())
        .merge(dashboard::router())
        .merge(webhooks::router())
        .merge(data_subjects::router())
        .split_for_parts()
}

pub fn router(state: AppState) -> Router {
    let (routes, api) = documented();
    routes.merge(runtime::openapi::docs_router(&api)).with_state(state)
}

/// A read transaction bound to the caller's tenant: it runs as `murima_reader`, so the
/// row-level security policies apply, with `app.current_tenant_id` set for this
/// transaction only.
pub async fn tenant_tx(pool: &PgPool, caller: Caller) -> Result<(Transaction<'static, Postgres>, Uuid), ApiError> {
    let caller = caller.tenant_member()?;
    let mut tx = reader_tx(pool).await?;
    // Reads bind optional filters as `($n IS NULL OR col = $n)`; a generic plan could not
    // use an index for them, so every read is planned with its actual values.
    sqlx::query("SET LOCAL plan_cache_mode = force_custom_plan").execute(&mut *tx).await?;
    sqlx::query("SELECT set_config('app.current_tenant_id', $1, true)")
        .bind(caller.tenant_id.to_string())
        .execute(&mut *tx)
        .await?;
    Ok((tx, caller.tenant_id))
}

/// A read transaction as `murima_reader` bound to no tenant: it sees no tenant's rows.
pub async fn reader_tx(pool: &PgPool) -> Result<Transaction<'static, Postgres>, ApiError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL ROLE murima_reader").execute(&mut *tx).await?;
    Ok(tx)
}

/// A read transaction as `murima_reader` for a platform operator: it sees every row of
/// `public.tenants` (its policy, `migrations/*_reader_isolation.sql`) and still no
/// tenant's data.
pub async fn platform_tx(pool: &PgPool, caller: Caller) -> Result<Transaction<'static, Postgres>, ApiError> {
    caller.platform_admin()?;
    let mut tx = reader_tx(pool).await?;
    sqlx::query("SELECT set_config('app.platform_reader', 'on', true)").execute(&mut *tx).await?;
    Ok(tx)
}

/// Page size: `limit` in 1..=max, `default` when absent.
pub fn page_size(limit: Option<i64>, default: i64, max: i64) -> Result<i64, ApiError> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::BadRequest(format!("limit must be between 1 and {max} (got {n})"))),
    }
}

/// A tenant whose schema the projector has not created yet simply has no cases.
pub fn missing_schema_is_empty<T: Default>(e: sqlx::Error) -> Result<T, sqlx::Error> {
    match &e {
        sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("42P01") | Some("3F000")) => Ok(T::default()),
        _ => Err(e),
    }
}

/// Waits until the relational read model has applied the tenant's log up to the token's
/// journal position (every write of the tenant before it is then visible).
pub async fn wait_for_postgres(
    state: &AppState,
    tenant: Uuid,
    token: Option<crate::consistency::Wait>,
) -> Result<(), ApiError> {
    crate::consistency::wait_until(token, state.read_wait, crate::consistency::Store::Postgres, |t| {
        let pool = state.pool.clone();
        let projection = state.postgres_projection.clone();
        async move {
            let applied: Option<i64> = sqlx::query_scalar(
                "SELECT position FROM projector.tenant_positions WHERE projection = $1 AND tenant_id = $2",
            )
            .bind(projection)
            .bind(tenant)
            .fetch_optional(&pool)
            .await?;
            Ok(if applied.unwrap_or(0) >= t.position { t.version } else { 0 })
        }
    })
    .await
}
