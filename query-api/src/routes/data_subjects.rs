//! A data subject's export (DESIGN.md guarantee 12, the right of access): what the read
//! models hold about a user or a customer, as one JSON document. A data subject is a user
//! of the tenant, identified by their user id, or a customer, identified by the
//! `customer_id` cases were opened with; after an erasure the same export shows only
//! markers where their personal data was.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use mongodb::bson::{doc, Document};
use runtime::auth::{Caller, Permission, Role};
use runtime::extract::ApiPath;
use runtime::tenancy::Tenancy;
use runtime::ApiError;
use serde::Serialize;
use serde_json::Value;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::audit::{mongo_unavailable, shown};
use super::{missing_schema_is_empty, tenant_tx, wait_for_postgres, AppState};
use crate::consistency::WaitFor;

/// Most entries of each list an export holds, newest first (`truncated` says when more
/// exist; the audit routes page through all of them).
const EXPORTED: i64 = 1000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(export))
}

/// At most 1,000 entries of a list, newest first.
#[derive(Default, Serialize, utoipa::ToSchema)]
#[schema(as = ExportedList)]
struct Listed {
    /// Each as the read model or the audit route shows it.
    #[schema(value_type = Vec<Object>)]
    items: Vec<Value>,
    /// More were held than are listed (the audit routes page through all of them).
    truncated: bool,
}

/// A data subject's export: a user's or a customer's.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
enum Export {
    User(UserExport),
    Customer(CustomerExport),
}

/// What the read models hold about a user of the tenant.
#[derive(Serialize, utoipa::ToSchema)]
struct UserExport {
    subject_id: Uuid,
    /// `user`.
    #[schema(example = "user")]
    kind: String,
    exported_at: DateTime<Utc>,
    /// Their row of the users read model, without credentials.
    #[schema(value_type = Object)]
    profile: Value,
    /// The cases they created or are assigned.
    cases: Listed,
    /// The audit entries about them.
    audit_about: Listed,
    /// The audit entries of what they did.
    audit_by: Listed,
    /// The notes they wrote.
    notes: Listed,
    /// Their notifications, newest first, each with `read`.
    #[schema(value_type = Vec<Object>)]
    notifications: Vec<Value>,
}

/// What the read models hold about a customer: what the cases that name them hold.
#[derive(Serialize, utoipa::ToSchema)]
struct CustomerExport {
    subject_id: Uuid,
    /// `customer`.
    #[schema(example = "customer")]
    kind: String,
    exported_at: DateTime<Utc>,
    cases: Listed,
    /// The notes on those cases.
    notes: Listed,
    interactions: Listed,
    /// The audit entries of the events sealed for them.
    audit_about: Listed,
}

/// Exports what is held about a data subject. A user: their profile, the cases they
/// created or are assigned, the audit entries about them and those of what they did, the
/// notes they wrote and their notifications (for tenant administrators and the subject
/// themself). A customer: the cases that name them, those cases' notes and
/// interactions, and the audit entries of the events sealed for them (for tenant
/// administrators). At most 1,000 of each list, newest first.
#[utoipa::path(get, path = "/v1/data-subjects/{id}/export", tag = "data-subjects", operation_id = "data_subjects_export", params(("id" = Uuid, Path, description = "the data subject: a user's id, or the customer_id cases were opened with")), responses((status = 200, description = "What is held about the data subject", body = Export), runtime::openapi::Problems))]
async fn export(
    State(state): State<AppState>,
    caller: Caller,
    WaitFor(token): WaitFor,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Export>, ApiError> {
    let caller = caller.tenant_member()?;
    if caller.role != Role::Admin && caller.user_id != id {
        return Err(ApiError::Forbidden(
            "only a tenant administrator, or the data subject themself, exports a data subject's data".into(),
        ));
    }
    let tenant = caller.tenant_id;
    wait_for_postgres(&state, tenant, token).await?;
    let schema = Tenancy(tenant).pg_schema();
    let (mut tx, _) = tenant_tx(&state.pool, caller).await?;
    let profile: Option<Value> =
        sqlx::query_scalar(&format!("SELECT to_jsonb(t) - 'password_hash' FROM {schema}.users t WHERE t.id = $1"))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .or_else(missing_schema_is_empty)?;
    let Some(profile) = profile else {
        tx.commit().await?;
        return export_customer(&state, caller, id).await.map(|export| Json(Export::Customer(export)));
    };
    let cases: Vec<Value> = newest_rows(
        &mut tx,
        &format!(
            "SELECT jsonb_build_object('id', id, 'case_number', case_number, 'title', title, 'status', status,
                                   'created_by', created_by, 'assigned_to', assigned_to, 'created_at', created_at)
         FROM {schema}.cases WHERE assigned_to = $1 OR created_by = $1
         ORDER BY created_at DESC, id DESC LIMIT $2"
        ),
        id,
    )
    .await?;
    tx.commit().await?;

    let tenant_str = tenant.to_string();
    let about = doc! { "tenant_id": &tenant_str, "entity_type": "user", "entity_id": id.to_string() };
    let by = doc! { "tenant_id": &tenant_str, "user_id": id.to_string() };
    let mut audit = Vec::with_capacity(2);
    for (filter, order) in [(about, doc! { "entity_version": -1 }), (by, doc! { "timestamp": -1 })] {
        let docs = newest_entries(&state, tenant, filter, order).await?;
        // As the audit routes show entries to this caller: hidden case fields and
        // internal notes' content withheld from who may not read them (the subject's own
        // export lists only their own notes and their own entries).
        let internal_hidden = caller.require(Permission::NotesViewInternal).is_err() && caller.user_id != id;
        audit.push(listed(shown(&state, caller, docs, internal_hidden).await));
    }
    let audit_by = audit.pop().unwrap_or_default();
    let audit_about = audit.pop().unwrap_or_default();
    // The notes they wrote (their own, so internal ones too), and their notifications.
    let notes_coll = state.mongo.collection::<Document>(&Tenancy(tenant).mongo_collection("case_notes"));
    let notes = newest(
        &notes_coll,
        doc! { "tenant_id": &tenant_str, "user_id": id.to_string() },
        doc! { "created_at": -1, "_id": -1 },
    )
    .await?;
    let notes = listed(notes.into_iter().map(super::entities::document_json).collect());
    let notifications = super::presence::read_marked(&state, tenant, id, None, "/v1/data-subjects/{id}/export").await?;
    Ok(Json(Export::User(UserExport {
        subject_id: id,
        kind: "user".into(),
        exported_at: Utc::now(),
        profile,
        cases: listed(cases),
        audit_about,
        audit_by,
        notes,
        notifications,
    })))
}

/// A customer's export: what the cases that name them hold (administrators only; the
/// caller's role was checked, and a customer is never the caller).
async fn export_customer(state: &AppState, caller: Caller, id: Uuid) -> Result<CustomerExport, ApiError> {
    let tenant = caller.tenant_id;
    let schema = Tenancy(tenant).pg_schema();
    let (mut tx, _) = tenant_tx(&state.pool, caller).await?;
    let cases: Vec<Value> = newest_rows(
        &mut tx,
        &format!(
            "SELECT to_jsonb(c) - 'search_vector' FROM {schema}.cases c WHERE c.customer_id = $1
         ORDER BY c.created_at DESC, c.id DESC LIMIT $2"
        ),
        id,
    )
    .await?;
    if cases.is_empty() {
        return Err(ApiError::NotFound(format!(
            "no data subject {id} in this tenant (a data subject is a user, or the customer_id of a case)"
        )));
    }
    let interactions: Vec<Value> = newest_rows(
        &mut tx,
        &format!(
            "SELECT to_jsonb(i) FROM {schema}.interactions i WHERE i.customer_id = $1
         ORDER BY i.timestamp DESC, i.id DESC LIMIT $2"
        ),
        id,
    )
    .await?;
    tx.commit().await?;
    let tenant_str = tenant.to_string();
    let notes_coll = state.mongo.collection::<Document>(&Tenancy(tenant).mongo_collection("case_notes"));
    let notes = newest(
        &notes_coll,
        doc! { "tenant_id": &tenant_str, "customer_id": id.to_string() },
        doc! { "created_at": -1, "_id": -1 },
    )
    .await?;
    let about = doc! { "tenant_id": &tenant_str, "data_subject": id.to_string() };
    let audit = newest_entries(state, tenant, about, doc! { "timestamp": -1 }).await?;
    // Shown as the audit routes show them to this caller (an administrator).
    let internal_hidden = caller.require(Permission::NotesViewInternal).is_err();
    Ok(CustomerExport {
        subject_id: id,
        kind: "customer".into(),
        exported_at: Utc::now(),
        cases: listed(cases),
        notes: listed(notes.into_iter().map(super::entities::document_json).collect()),
        interactions: listed(interactions),
        audit_about: listed(shown(state, caller, audit, internal_hidden).await),
    })
}

/// The first `EXPORTED` + 1 rows `sql` selects about the subject `$1` (`$2`: the limit),
/// none where the tenant has no read models yet.
async fn newest_rows(conn: &mut sqlx::PgConnection, sql: &str, id: Uuid) -> Result<Vec<Value>, ApiError> {
    let rows = sqlx::query_scalar(sql).bind(id).bind(EXPORTED.saturating_add(1)).fetch_all(conn).await;
    Ok(rows.or_else(missing_schema_is_empty)?)
}

/// The first `EXPORTED` + 1 documents in `order` (one more, to tell whether there were more).
async fn newest(
    coll: &mongodb::Collection<Document>,
    filter: Document,
    order: Document,
) -> Result<Vec<Document>, ApiError> {
    coll.find(filter)
        .sort(order)
        .limit(EXPORTED.saturating_add(1))
        .await
        .map_err(mongo_unavailable)?
        .try_collect()
        .await
        .map_err(mongo_unavailable)
}

/// The same of the tenant's audit log, every month of it.
async fn newest_entries(
    state: &AppState,
    tenant: Uuid,
    filter: Document,
    order: Document,
) -> Result<Vec<Document>, ApiError> {
    runtime::audit_log::find(&state.mongo, Tenancy(tenant), filter, Some(order), Some(EXPORTED.saturating_add(1)))
        .await
        .map_err(mongo_unavailable)
}

/// At most `EXPORTED` items, and whether more were held.
fn listed(mut items: Vec<Value>) -> Listed {
    let truncated = items.len() as i64 > EXPORTED;
    items.truncate(EXPORTED as usize);
    Listed { items, truncated }
}
