//! The audit trail of any entity from MongoDB, newest first, paginated by entity version;
//! and the search of the whole tenant's audit log in Elasticsearch
//! (`tenant-<id>-audit-logs-YYYY-MM`) by actor, entity, action, changed field and time.
//!
//! Reading either needs `audit:read` (admins and supervisors hold it). What an entry
//! shows follows the reader's rights: the content of an internal note only to readers who
//! may see internal notes (or wrote it; a search, which cannot tell one note from another
//! cheaply, shows no note content to readers without `notes:view_internal`), a channel's
//! configuration only to `channels:manage` and with credentials masked, custom fields
//! only as their visibility rules allow, the IP address and user agent only to admins.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Datelike, Utc};
use elasticsearch::indices::IndicesRefreshParts;
use elasticsearch::SearchParts;
use mongodb::bson::{doc, Bson, Document};
use runtime::audit_log;
use runtime::auth::{Caller, Permission, Role};
use runtime::extract::{ApiPath, ApiQuery};
use runtime::tenancy::Tenancy;
use runtime::ApiError;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{page_size, AppState};
use crate::consistency::{wait_until, WaitFor};
use crate::cursor::Page;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(case_audit)).routes(routes!(entity_audit)).routes(routes!(search_audit))
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

/// One entry of an audit trail: who did what to which entity, and what changed. Read
/// from MongoDB as stored (`events::audit`); `openapi::every_case_read_answers_as_documented`
/// holds this type to the real answers.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documentation: the entries are served as stored
struct AuditEntry {
    /// The event's id.
    id: String,
    tenant_id: String,
    #[schema(example = "case")]
    entity_type: String,
    entity_id: String,
    /// The entity's version after the event.
    entity_version: i64,
    #[schema(example = "CaseAssigned")]
    event_type: String,
    #[schema(example = "update")]
    action: String,
    /// Who acted (the nil id for the system).
    user_id: Option<String>,
    role: Option<String>,
    changes: Vec<AuditChange>,
    /// The person the entry holds data of, for erasure and export.
    data_subject: Option<String>,
    /// Left out where the caller may not see it.
    ip_address: Option<String>,
    user_agent: Option<String>,
    /// `session_id`, `request_id`, `correlation_id`.
    #[schema(value_type = Option<Object>)]
    context: Option<Value>,
    timestamp: DateTime<Utc>,
}

/// A page of an audit trail (`Page<_, i64>`): its cursor is an entity version.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documentation, as `AuditEntry`
struct AuditPage {
    items: Vec<AuditEntry>,
    /// Pass it as `cursor` for the next page; null on the last.
    next_cursor: Option<i64>,
}

/// A field's value before and after.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documentation, as `AuditEntry`
struct AuditChange {
    field: String,
    #[schema(value_type = Option<Object>)]
    old_value: Option<Value>,
    #[schema(value_type = Option<Object>)]
    new_value: Option<Value>,
}

#[utoipa::path(get, path = "/v1/cases/{id}/audit", tag = "audit", operation_id = "audit_case_audit", params(("id" = Uuid, Path), AuditQuery),
    responses((status = 200, description = "A page of the case's audit trail, newest first", body = AuditPage, headers(("Link" = String, description = "The next page's URL as `<url>; rel=\"next\"`; absent on the last page"))), runtime::openapi::Problems))]
async fn case_audit(
    state: State<AppState>,
    caller: Caller,
    token: WaitFor,
    ApiPath(id): ApiPath<Uuid>,
    q: ApiQuery<AuditQuery>,
) -> Result<Page<Value, i64>, ApiError> {
    audit_trail(state, caller, token, "case", id, format!("/v1/cases/{id}/audit"), q).await
}

#[utoipa::path(get, path = "/v1/audit/{entity_type}/{id}", tag = "audit", operation_id = "audit_entity_audit", params(("entity_type" = String, Path, description = "tenant, user, team, case_type, workflow, custom_field_definition, case, channel, interaction, task, case_note, document or message_template"), ("id" = Uuid, Path), AuditQuery),
    responses((status = 200, description = "A page of the entity's audit trail, newest first", body = AuditPage, headers(("Link" = String, description = "The next page's URL as `<url>; rel=\"next\"`; absent on the last page"))), runtime::openapi::Problems))]
async fn entity_audit(
    state: State<AppState>,
    caller: Caller,
    token: WaitFor,
    ApiPath((entity_type, id)): ApiPath<(String, Uuid)>,
    q: ApiQuery<AuditQuery>,
) -> Result<Page<Value, i64>, ApiError> {
    let Some(entity_type) = ENTITY_TYPES.into_iter().find(|t| *t == entity_type) else {
        return Err(ApiError::BadRequest(format!(
            "unknown entity type {entity_type:?}; use one of {}",
            ENTITY_TYPES.join(", ")
        )));
    };
    audit_trail(state, caller, token, entity_type, id, format!("/v1/audit/{entity_type}/{id}"), q).await
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

pub(super) fn mongo_unavailable(e: mongodb::error::Error) -> ApiError {
    tracing::error!(error = %e, "MongoDB read failed");
    ApiError::Unavailable("the audit store is not reachable".into())
}

async fn audit_trail(
    State(state): State<AppState>,
    caller: Caller,
    WaitFor(token): WaitFor,
    entity_type: &'static str,
    id: Uuid,
    path: String,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Page<Value, i64>, ApiError> {
    let caller = caller.tenant_member()?.require(Permission::AuditRead)?;
    let tenant = caller.tenant_id;
    let limit = page_size(q.limit, 50, 200)?;
    let tenant_str = tenant.to_string();
    let newest_first = doc! { "entity_version": -1 };

    wait_until(token, state.read_wait, crate::consistency::Store::Mongo, |t| {
        let (db, tenant_str) = (state.mongo.clone(), tenant_str.clone());
        async move {
            // The entry of the token's event, found by the entries' index when the token
            // names its stream's kind.
            let mut filter = doc! { "tenant_id": tenant_str };
            if let Some(stream) = t.stream_type {
                filter.insert("entity_type", events::audit::entity_type(stream));
            }
            filter.insert("entity_id", t.stream_id.to_string());
            filter.insert("entity_version", doc! { "$gte": t.version });
            let found =
                audit_log::find(&db, Tenancy(tenant), filter, None, Some(1)).await.map_err(mongo_unavailable)?;
            Ok(if found.is_empty() { 0 } else { t.version })
        }
    })
    .await?;

    let mut filter = doc! { "tenant_id": &tenant_str, "entity_type": entity_type, "entity_id": id.to_string() };
    if let Some(before) = q.cursor {
        filter.insert("entity_version", doc! { "$lt": before });
    }
    let docs =
        audit_log::find(&state.mongo, Tenancy(tenant), filter, Some(newest_first), Some(limit.saturating_add(1)))
            .await
            .map_err(mongo_unavailable)?;
    let has_more = docs.len() as i64 > limit;
    let docs: Vec<Document> = docs.into_iter().take(limit as usize).collect();
    let note_hidden = entity_type == "case_note"
        && caller.require(Permission::NotesViewInternal).is_err()
        && note_hidden_from(&state, caller, id).await?;
    let items = shown(&state, caller, docs, note_hidden).await;
    let next_cursor = if has_more { items.last().and_then(|e| e["entity_version"].as_i64()) } else { None };
    Ok(Page::new(items, next_cursor, |cursor| format!("{path}?limit={limit}&cursor={cursor}")))
}

/// The entries as `caller` may see them (see the module's notes); `note_hidden`: the
/// content of note entries is withheld.
pub(super) async fn shown(state: &AppState, caller: Caller, mut docs: Vec<Document>, note_hidden: bool) -> Vec<Value> {
    let of = |doc: &Document, kind: &str| doc.get_str("entity_type") == Ok(kind);
    let may_read_channels = caller.require(Permission::ChannelsManage).is_ok();
    let rules = if docs.iter().any(|d| of(d, "case")) {
        Some(state.field_visibility.case_rules(&state.mongo, caller.tenant_id).await)
    } else {
        None
    };
    for doc in &mut docs {
        if note_hidden && of(doc, "case_note") {
            redact_content(doc);
        }
        if of(doc, "channel") {
            channel_configuration(doc, may_read_channels);
        }
        if let Some(rules) = rules.as_ref().filter(|_| of(doc, "case")) {
            rules.strip_audit_entry(caller, doc);
        }
        if caller.role != Role::Admin {
            doc.remove("ip_address");
            doc.remove("user_agent");
        }
    }
    docs.into_iter().map(entry_json).collect()
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AuditSearchQuery {
    /// Who made the change: a user id.
    actor: Option<Uuid>,
    /// tenant, user, team, case_type, workflow, custom_field_definition, case, channel,
    /// interaction, task, case_note, document or message_template.
    entity_type: Option<String>,
    entity_id: Option<Uuid>,
    /// What was done, e.g. `create`, `update`, `status_change`, `assign`.
    action: Option<String>,
    /// A field the entry changed, e.g. `status`, `priority` or `custom_fields`.
    field: Option<String>,
    /// Entries at or after this time (RFC 3339).
    from: Option<DateTime<Utc>>,
    /// Entries at or before this time (RFC 3339).
    to: Option<DateTime<Utc>>,
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// How many entries to skip (from `next_offset`); at most 10,000.
    offset: Option<i64>,
    #[allow(dead_code)]
    position: Option<String>,
}

/// An action or field name: 1-100 of a-z, 0-9, '_' and '.'.
fn name_filter(what: &str, value: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(value) = value else { return Ok(None) };
    let ok = (1..=100).contains(&value.len())
        && value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.');
    if !ok {
        return Err(ApiError::BadRequest(format!("{what} must be 1-100 characters of a-z, 0-9, '_' and '.'")));
    }
    Ok(Some(value.to_owned()))
}

/// Entries of the whole tenant's audit log, newest first, by who, what, which field and
/// when. A position token (of any command) waits until its entry is searchable.
#[utoipa::path(
    get,
    path = "/v1/search/audit",
    tag = "audit",
    operation_id = "audit_search_audit",
    params(AuditSearchQuery),
    responses((status = 200, description = "A page of audit entries (`facets` left out)", body = super::search::Hits), runtime::openapi::Problems)
)]
async fn search_audit(
    State(state): State<AppState>,
    caller: Caller,
    WaitFor(token): WaitFor,
    ApiQuery(q): ApiQuery<AuditSearchQuery>,
) -> Result<Json<super::search::Hits>, ApiError> {
    let caller = caller.tenant_member()?.require(Permission::AuditRead)?;
    let t = Tenancy(caller.tenant_id);
    let (limit, offset) = super::search::paging(q.limit, q.offset)?;
    let entity_type = match q.entity_type.as_deref() {
        None => None,
        Some(named) => Some(ENTITY_TYPES.into_iter().find(|t| *t == named).ok_or_else(|| {
            ApiError::BadRequest(format!("unknown entity_type {named:?}; use one of {}", ENTITY_TYPES.join(", ")))
        })?),
    };
    let action = name_filter("action", q.action.as_deref())?;
    let field = name_filter("field", q.field.as_deref())?;
    if let (Some(from), Some(to)) = (q.from, q.to) {
        if from > to {
            return Err(ApiError::BadRequest(format!("from ({from}) is after to ({to})")));
        }
    }
    // Elasticsearch reads four-digit years only.
    if let Some(at) = [q.from, q.to].into_iter().flatten().find(|at| !(1..=9999).contains(&at.year())) {
        return Err(ApiError::BadRequest(format!("from and to must lie in the years 1 to 9999, not {at}")));
    }
    if let Some(name) = field.as_deref().and_then(|f| f.strip_prefix("custom_fields.")) {
        // A field hidden from the caller's role cannot be asked about, not even whether it changed.
        let named = serde_json::Map::from_iter([(name.to_owned(), Value::Null)]);
        state.field_visibility.case_rules(&state.mongo, t.0).await.check_filter(caller, &named)?;
    }

    let alias = t.es_alias(runtime::tenancy::ES_AUDIT_LOGS);
    wait_for_entry(&state, &alias, token).await?;
    let mut filters = vec![json!({ "term": { "tenant_id": t.0.to_string() } })];
    let terms = [
        ("user_id", q.actor.map(|a| a.to_string())),
        ("entity_type", entity_type.map(str::to_owned)),
        ("entity_id", q.entity_id.map(|e| e.to_string())),
        ("action", action),
    ];
    for (name, value) in terms {
        if let Some(value) = value {
            filters.push(json!({ "term": { name: value } }));
        }
    }
    if let Some(field) = field {
        // A custom field's changes are recorded as one `custom_fields` change.
        let recorded = if field.starts_with("custom_fields.") { "custom_fields".to_owned() } else { field };
        filters.push(json!({ "nested": { "path": "changes", "query": { "term": { "changes.field": recorded } } } }));
    }
    if q.from.is_some() || q.to.is_some() {
        filters.push(json!({ "range": { "timestamp": { "gte": q.from, "lte": q.to } } }));
    }
    let body = json!({
        "from": offset,
        "size": limit,
        "track_total_hits": true,
        "query": { "bool": { "filter": filters } },
        "sort": [{ "timestamp": { "order": "desc" } }, { "entity_version": { "order": "desc" } }],
    });
    let mut found = super::search::run(&state, &alias, body, offset).await?;
    let docs: Vec<Document> =
        found.items.iter().filter_map(|hit| mongodb::bson::to_document(&structured(hit)).ok()).collect();
    // Only readers of internal notes see note content here (see the module's notes).
    let may_read_notes = caller.require(Permission::NotesViewInternal).is_ok();
    found.items = shown(&state, caller, docs, !may_read_notes).await;
    found.facets = None;
    Ok(Json(found))
}

/// A search hit as the trail shows it: the index keeps structured change values (objects,
/// lists) as their JSON text, given back as values here; no score or highlight.
fn structured(hit: &Value) -> Value {
    let mut entry = hit.clone();
    if let Some(fields) = entry.as_object_mut() {
        fields.remove("score");
        fields.remove("highlight");
    }
    for change in entry["changes"].as_array_mut().into_iter().flatten() {
        for side in ["old_value", "new_value"] {
            let parsed = change[side]
                .as_str()
                .filter(|text| text.starts_with('{') || text.starts_with('['))
                .and_then(|text| serde_json::from_str::<Value>(text).ok());
            if let Some(value) = parsed {
                change[side] = value;
            }
        }
    }
    entry
}

/// How often a waiting audit search asks Elasticsearch to refresh.
const REFRESH_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Waits until the audit entry of the token's write is searchable.
async fn wait_for_entry(
    state: &AppState,
    alias: &str,
    token: Option<crate::consistency::Wait>,
) -> Result<(), ApiError> {
    let mut refreshed: Option<std::time::Instant> = None;
    wait_until(token, state.read_wait, crate::consistency::Store::Elastic, |t| {
        let elastic = state.elastic.clone();
        let alias = alias.to_owned();
        // Entries become searchable at a refresh; a waiting read asks for one now and then.
        let refresh = refreshed.is_none_or(|at| at.elapsed() >= REFRESH_EVERY);
        if refresh {
            refreshed = Some(std::time::Instant::now());
        }
        async move {
            if refresh {
                let _ = elastic.indices().refresh(IndicesRefreshParts::Index(&[&alias])).send().await;
            }
            let body = json!({ "size": 0, "track_total_hits": true, "query": { "bool": { "filter": [
                { "term": { "entity_id": t.stream_id.to_string() } },
                { "range": { "entity_version": { "gte": t.version } } }
            ] } } });
            let response = elastic
                .search(SearchParts::Index(&[&alias]))
                .body(body)
                .send()
                .await
                .map_err(super::search::elastic_unavailable)?;
            let found: Value = response.json().await.map_err(super::search::elastic_unavailable)?;
            Ok(if found["hits"]["total"]["value"].as_i64().unwrap_or(0) > 0 { t.version } else { 0 })
        }
    })
    .await
}

/// Whether a note's content is hidden from a reader who may not see others' internal
/// notes: it is, or ever was, internal, and someone else wrote it. Decided over the
/// note's whole trail (a page alone may show an internal edit of a note made public
/// later); a note the notes store does not hold yet counts as internal.
async fn note_hidden_from(state: &AppState, caller: Caller, note: Uuid) -> Result<bool, ApiError> {
    let t = Tenancy(caller.tenant_id);
    let notes = state.mongo.collection::<Document>(&t.mongo_collection("case_notes"));
    let held = notes.find_one(doc! { "_id": note.to_string() }).await.map_err(mongo_unavailable)?;
    let filter =
        doc! { "tenant_id": caller.tenant_id.to_string(), "entity_type": "case_note", "entity_id": note.to_string() };
    // Read whole, in no order: what is asked of it (who created it, whether it was ever
    // internal) does not depend on one.
    let trail = audit_log::find(&state.mongo, t, filter, None, None).await.map_err(mongo_unavailable)?;
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
