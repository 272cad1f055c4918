//! The audit trail of any entity from MongoDB, newest first, paginated by entity version.
//!
//! Reading it needs `audit:read` (admins and supervisors hold it). What an entry shows
//! follows the reader's rights: the content of an internal note only to readers who may
//! see internal notes (or wrote it), the IP address and user agent only to admins.

use axum::extract::State;
use axum::Json;
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use runtime::auth::{Caller, Permission, Role};
use runtime::extract::{ApiPath, ApiQuery};
use runtime::tenancy::{Tenancy, AUDIT_LOGS};
use runtime::ApiError;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{page_size, AppState};
use crate::consistency::{wait_until, WaitFor};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(case_audit)).routes(routes!(entity_audit))
}

/// The entity types the audit log records (the projector's names for the streams).
const ENTITY_TYPES: [&str; 13] = [
    "tenant",
    "user",
    "team",
    "case_type",
    "workflow",
    "custom_field_definition",
    "case",
    "channel",
    "interaction",
    "task",
    "case_note",
    "document",
    "message_template",
];

#[utoipa::path(get, path = "/v1/cases/{id}/audit", tag = "audit", operation_id = "audit_case_audit", params(("id" = Uuid, Path), AuditQuery), responses(runtime::openapi::ReadAnswered))]
async fn case_audit(
    state: State<AppState>,
    caller: Caller,
    token: WaitFor,
    ApiPath(id): ApiPath<Uuid>,
    q: ApiQuery<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    audit_trail(state, caller, token, "case", id, q).await
}

#[utoipa::path(get, path = "/v1/audit/{entity_type}/{id}", tag = "audit", operation_id = "audit_entity_audit", params(("entity_type" = String, Path, description = "tenant, user, team, case_type, workflow, custom_field_definition, case, channel, interaction, task, case_note, document or message_template"), ("id" = Uuid, Path), AuditQuery), responses(runtime::openapi::ReadAnswered))]
async fn entity_audit(
    state: State<AppState>,
    caller: Caller,
    token: WaitFor,
    ApiPath((entity_type, id)): ApiPath<(String, Uuid)>,
    q: ApiQuery<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    let Some(entity_type) = ENTITY_TYPES.into_iter().find(|t| *t == entity_type) else {
        return Err(ApiError::BadRequest(format!(
            "unknown entity type {entity_type:?}; use one of {}",
            ENTITY_TYPES.join(", ")
        )));
    };
    audit_trail(state, caller, token, entity_type, id, q).await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
    /// Return entries older than this entity version (from `next_cursor`).
    cursor: Option<i64>,
    #[allow(dead_code)]
    position: Option<String>,
}

fn mongo_unavailable(e: mongodb::error::Error) -> ApiError {
    tracing::error!(error = %e, "MongoDB read failed");
    ApiError::Unavailable("the audit store is not reachable".into())
}

async fn audit_trail(
    State(state): State<AppState>,
    caller: Caller,
    WaitFor(token): WaitFor,
    entity_type: &'static str,
    id: Uuid,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    let caller = caller.tenant_member()?.require(Permission::AuditRead)?;
    let tenant = caller.tenant_id;
    let limit = page_size(q.limit, 50, 200)?;
    let coll = state.mongo.collection::<Document>(&Tenancy(tenant).mongo_collection(AUDIT_LOGS));
    let tenant_str = tenant.to_string();

    wait_until(token, state.read_wait, crate::consistency::Store::Mongo, |t| {
        let (coll, tenant_str) = (coll.clone(), tenant_str.clone());
        async move {
            let filter = doc! { "tenant_id": tenant_str, "entity_id": t.stream_id.to_string(), "entity_version": { "$gte": t.version } };
            let found = coll.find_one(filter).await.map_err(mongo_unavailable)?;
            Ok(if found.is_some() { t.version } else { 0 })
        }
    })
    .await?;

    let mut filter = doc! { "tenant_id": &tenant_str, "entity_type": entity_type, "entity_id": id.to_string() };
    if let Some(before) = q.cursor {
        filter.insert("entity_version", doc! { "$lt": before });
    }
    let docs: Vec<Document> = coll
        .find(filter)
        .sort(doc! { "entity_version": -1 })
        .limit(limit.saturating_add(1))
        .await
        .map_err(mongo_unavailable)?
        .try_collect()
        .await
        .map_err(mongo_unavailable)?;
    let has_more = docs.len() as i64 > limit;
    let mut docs: Vec<Document> = docs.into_iter().take(limit as usize).collect();
    if entity_type == "case_note" && caller.require(Permission::NotesViewInternal).is_err() {
        let hidden = note_hidden_from(&state, caller, id).await?;
        if hidden {
            docs.iter_mut().for_each(redact_content);
        }
    }
    if entity_type == "channel" {
        let may_read = caller.require(Permission::ChannelsManage).is_ok();
        docs.iter_mut().for_each(|entry| channel_configuration(entry, may_read));
    }
    if entity_type == "case" {
        let rules = state.field_visibility.case_rules(&state.mongo, tenant).await;
        docs.iter_mut().for_each(|entry| rules.strip_audit_entry(caller, entry));
    }
    if caller.role != Role::Admin {
        for doc in &mut docs {
            doc.remove("ip_address");
            doc.remove("user_agent");
        }
    }
    let items: Vec<Value> = docs.into_iter().map(entry_json).collect();
    let next_cursor = if has_more { items.last().and_then(|e| e["entity_version"].as_i64()) } else { None };
    Ok(Json(json!({ "items": items, "next_cursor": next_cursor })))
}

/// Whether a note's content is hidden from a reader who may not see others' internal
/// notes: it is, or ever was, internal, and someone else wrote it. Decided over the
/// note's whole trail (a page alone may show an internal edit of a note made public
/// later); a note the notes store does not hold yet counts as internal.
async fn note_hidden_from(state: &AppState, caller: Caller, note: Uuid) -> Result<bool, ApiError> {
    let t = Tenancy(caller.tenant_id);
    let notes = state.mongo.collection::<Document>(&t.mongo_collection("case_notes"));
    let held = notes.find_one(doc! { "_id": note.to_string() }).await.map_err(mongo_unavailable)?;
    let trail: Vec<Document> = state
        .mongo
        .collection::<Document>(&t.mongo_collection(AUDIT_LOGS))
        .find(doc! { "tenant_id": caller.tenant_id.to_string(), "entity_type": "case_note", "entity_id": note.to_string() })
        .projection(doc! { "changes": 1, "action": 1, "user_id": 1 })
        .await
        .map_err(mongo_unavailable)?
        .try_collect()
        .await
        .map_err(mongo_unavailable)?;
    let created_by = trail
        .iter()
        .find(|e| e.get_str("action") == Ok("create"))
        .and_then(|e| e.get_str("user_id").ok().map(str::to_owned));
    let (internal_now, author) = match held {
        Some(n) => (n.get_bool("is_internal").unwrap_or(true), n.get_str("user_id").ok().map(str::to_owned)),
        None => (true, created_by),
    };
    let ever_internal = trail.iter().any(|e| {
        e.get_array("changes").is_ok_and(|changes| {
            changes.iter().filter_map(Bson::as_document).any(|c| {
                c.get_str("field") == Ok("is_internal")
                    && (c.get_bool("old_value") == Ok(true) || c.get_bool("new_value") == Ok(true))
            })
        })
    });
    Ok((internal_now || ever_internal) && author.as_deref() != Some(caller.user_id.to_string().as_str()))
}

/// A channel entry's configuration changes: left out for readers without
/// `channels:manage`, and for the others shown with credentials as markers only (entries
/// recorded before credentials left the log may still hold values).
fn channel_configuration(entry: &mut Document, may_read: bool) {
    let Ok(changes) = entry.get_array_mut("changes") else { return };
    if !may_read {
        changes.retain(|c| !matches!(c, Bson::Document(d) if d.get_str("field") == Ok("configuration")));
        return;
    }
    for change in changes.iter_mut().filter_map(|c| match c {
        Bson::Document(d) if d.get_str("field") == Ok("configuration") => Some(d),
        _ => None,
    }) {
        for side in ["old_value", "new_value"] {
            let Some(value) = change.get(side).cloned() else { continue };
            let Ok(serde_json::Value::Object(mut configuration)) = mongodb::bson::from_bson(value) else { continue };
            events::channel::mask_credentials(&mut configuration);
            if let Ok(masked) = mongodb::bson::to_bson(&configuration) {
                change.insert(side, masked);
            }
        }
    }
}

/// Replaces the content values of a note entry's changes.
fn redact_content(entry: &mut Document) {
    let Ok(changes) = entry.get_array_mut("changes") else { return };
    for change in changes.iter_mut().filter_map(|c| match c {
        Bson::Document(d) => Some(d),
        _ => None,
    }) {
        if change.get_str("field") == Ok("content") {
            for side in ["old_value", "new_value"] {
                if change.contains_key(side) && change.get(side) != Some(&Bson::Null) {
                    change.insert(side, "[internal note: redacted]");
                }
            }
        }
    }
}

/// BSON to plain JSON, with the timestamp as RFC 3339 and `_id` as `id`.
fn entry_json(mut doc: Document) -> Value {
    if let Ok(ts) = doc.get_datetime("timestamp") {
        let text = ts.try_to_rfc3339_string().unwrap_or_default();
        doc.insert("timestamp", text);
    }
    if let Some(id) = doc.remove("_id") {
        doc.insert("id", id);
    }
    Bson::Document(doc).into_relaxed_extjson()
}
