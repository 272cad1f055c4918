//! Search in Elasticsearch (seed §2.4, §4.3, §5.3). Per tenant and month:
//! `tenant-<id>-cases-YYYY-MM` (month of the case's v7 id), `-notes-YYYY-MM` (month of the
//! note's id), `-interactions-YYYY-MM` (month of the interaction) and `-audit-logs-YYYY-MM`
//! (month of the event), each with the seed's mapping and analyzer from an index template,
//! read through the per-tenant aliases `tenant-<id>-cases`, `-notes`, `-interactions` and
//! `-audit-logs`. Case documents carry a completion field for typeahead on titles and
//! case numbers.
//!
//! Per batch: one `_mget` for the touched cases and notes, events folded into their
//! documents in memory, then one `_bulk` for everything. A batch may hold several
//! tenants' events, and a stream is identified by (tenant, id): documents are kept apart
//! by both, never by the id alone. Cases, notes and interactions
//! use external versioning (version = stream version), so Elasticsearch itself refuses a
//! version at or below the stored one; audit entries are created under the event id. A
//! redelivered event is therefore a no-op (409), never a duplicate.
//!
//! Denormalised fields: a case document carries its case type's name (`case_type_name`)
//! and an interaction its channel's type (`channel_type`). The projection reads no other
//! store for them: it keeps them in Elasticsearch itself, in the per-tenant lookup
//! documents of `tenant-<id>-lookups-YYYY-MM` (month of the case type's or channel's id),
//! folded from the CaseType* and Channel* events like any other document (version =
//! stream version). A case (interaction) takes the value from the lookup when it is
//! opened (recorded). When a lookup's value is set or changes (a case type created or
//! renamed; a channel created, its type never changes), the value is copied into the
//! tenant's documents that name it: in memory for the cases of the batch, and by search
//! and bulk for those already indexed (`propagate_to_indexed`), each rewritten at its own
//! version (`external_gte`), so versions still equal stream versions. Those are rewritten
//! before the lookup document is written: a batch that fails between the two is applied
//! again, copy included. A tenant's events arrive in journal order, so a case type's
//! (channel's) lookup is there before the first case (interaction) that names it, live,
//! in a replay and in a rebuild's copies alike; and re-applying a lookup stream that was
//! missing (`verify --repair`) fills the documents indexed without it.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use elasticsearch::http::request::JsonBody;
use elasticsearch::http::StatusCode;
use elasticsearch::ilm::IlmPutLifecycleParts;
use elasticsearch::indices::{IndicesCreateParts, IndicesPutIndexTemplateParts, IndicesRefreshParts};
use elasticsearch::{BulkParts, Elasticsearch, MgetParts, SearchParts};
use events::audit::{erase_changes, CUSTOMER_PERSONAL_FIELDS, USER_PERSONAL_FIELDS};
use events::case::CaseEvent;
use events::case_type::CaseTypeEvent;
use events::channel::ChannelEvent;
use events::interaction::{InteractionEvent, InteractionRecorded};
use events::note::NoteEvent;
use events::user::UserEvent;
use runtime::tenancy::{uuid_time, Tenancy, CASES, ES_AUDIT_LOGS, INTERACTIONS, NOTES};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::event::Event;
use crate::parking::StreamKey;
use crate::projection::{ApplyError, Checkpoint, Held, Placement, Projection};
use crate::projections::mongo_audit::audit_record;
use events::DomainEvent;

/// The entity of the per-tenant lookup documents: one per case type and per channel,
/// what cases and interactions take their denormalised names from.
pub const LOOKUPS: &str = "lookups";

pub struct ElasticProjection {
    client: Elasticsearch,
    indices: Mutex<HashSet<String>>,
    placement: Placement,
}

/// The seed's analyzer (§2.4.2) under a given name.
fn analysis(analyzer: &str) -> Value {
    json!({
        "analyzer": {
            analyzer: {
                "type": "custom",
                "tokenizer": "standard",
                "filter": ["lowercase", "asciifolding", "stop", "snowball"]
            }
        }
    })
}

/// One shard and no replica: a single-node cluster (§5.3 sizes are for production
/// clusters; the template is the one place to change them).
fn template(entity: &str, settings: Value, properties: Value) -> Value {
    let mut index_settings = json!({ "number_of_shards": 1, "number_of_replicas": 0 });
    if let (Some(target), Value::Object(extra)) = (index_settings.as_object_mut(), settings) {
        target.extend(extra);
    }
    json!({
        "index_patterns": [format!("tenant-*-{entity}-*")],
        "template": {
            "settings": index_settings,
            "mappings": { "dynamic_templates": CUSTOM_FIELDS_AS_KEYWORDS.clone(), "properties": properties }
        }
    })
}

/// A case's custom fields are typed by its case type's form, and two case types may give
/// one field name two types: mapped dynamically, the first value of a field fixed its type
/// for the month's index, and a case whose value did not parse as that type was refused
/// (a `mapper_parsing_exception`, so parked in search while the command had answered
/// 201). Every custom field is a keyword instead (numbers and booleans are indexed as
/// their text), filterable by exact value whatever its type.
static CUSTOM_FIELDS_AS_KEYWORDS: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| {
    json!([{ "custom_fields_as_keywords": {
        "path_match": "custom_fields.*",
        "mapping": { "type": "keyword", "ignore_above": 256 }
    } }])
});

/// The index templates (§4.3.1): name and body, one per searchable entity.
///
/// Each has a priority of its own: Elasticsearch refuses two templates of one priority
/// whose patterns could both match some name, and `tenant-*-cases-*` and
/// `tenant-*-interactions-*` both match `tenant-a-interactions-b-cases-c`. (The local
/// stand-in accepted them; Elasticsearch 8 and noida-db refuse the second one.) A real
/// index name matches one pattern only, so the order of the priorities changes nothing.
pub fn templates() -> Vec<(&'static str, Value)> {
    templates_with(None)
}

/// The templates, their indices managed by the lifecycle policy named (where the server
/// has index lifecycle management).
fn templates_with(lifecycle: Option<&str>) -> Vec<(&'static str, Value)> {
    let mut templates = entity_templates();
    for (priority, (_, body)) in (100u64..).zip(templates.iter_mut()) {
        body["priority"] = json!(priority);
        if let Some(policy) = lifecycle {
            body["template"]["settings"]["index.lifecycle.name"] = json!(policy);
        }
    }
    templates
}

/// The index lifecycle policy the templates name where the server has ILM (seed §5.3.2,
/// adapted): the seed's tiers by age, without what does not fit indices named by month.
/// No rollover (an index per month is made by name), no shrink (one shard), no freeze
/// (gone from Elasticsearch 8), no read-only step (a late interaction, an erasure or a
/// rebuild still writes to an old month). Deletion by age is left to the retention job,
/// which knows each tenant's `retention_days` (1 to 3650): the policy deletes only past
/// the longest retention a tenant can set, as a backstop.
pub const LIFECYCLE_POLICY: &str = "murima-monthly";

pub fn lifecycle_policy() -> Value {
    json!({ "policy": { "phases": {
        "hot": { "actions": { "set_priority": { "priority": 100 } } },
        "warm": { "min_age": "30d", "actions": {
            "set_priority": { "priority": 50 }, "forcemerge": { "max_num_segments": 1 } } },
        "cold": { "min_age": "90d", "actions": { "set_priority": { "priority": 0 } } },
        "delete": { "min_age": format!("{}d", events::tenant::MAX_RETENTION_DAYS + 31), "actions": { "delete": {} } }
    } } })
}

/// What a new index of `entity` is made with: its template's settings and mappings (so
/// a search server that lost its templates, as an in-memory one does when restarted
/// under a running projector, still gets typed fields, not dynamic text that sorts and
/// filters refuse) and the tenant's read alias.
fn index_body(entity: &str, alias: &str) -> Value {
    let mut body = index_template(entity);
    body["aliases"] = json!({ alias: {} });
    body
}

/// The settings and mappings of `entity`'s index template, as an index-create body.
pub(crate) fn index_template(entity: &str) -> Value {
    let pattern = json!([format!("tenant-*-{entity}-*")]);
    entity_templates()
        .into_iter()
        .find(|(_, t)| t["index_patterns"] == pattern)
        .map(|(_, t)| t["template"].clone())
        .unwrap_or_else(|| json!({}))
}

fn entity_templates() -> Vec<(&'static str, Value)> {
    vec![
        (
            "murima-tenant-cases",
            template(
                CASES,
                json!({ "analysis": analysis("case_analyzer") }),
                json!({
                    "tenant_id": { "type": "keyword" },
                    "id": { "type": "keyword" },
                    "case_number": { "type": "keyword" },
                    "title": {
                        "type": "text",
                        "analyzer": "case_analyzer",
                        "fields": { "keyword": { "type": "keyword", "ignore_above": 256 } }
                    },
                    "description": { "type": "text", "analyzer": "case_analyzer" },
                    "status": { "type": "keyword" },
                    "priority": { "type": "keyword" },
                    "case_type_id": { "type": "keyword" },
                    "case_type_name": { "type": "keyword" },
                    "created_by": { "type": "keyword" },
                    "assigned_to": { "type": "keyword" },
                    "created_at": { "type": "date" },
                    "updated_at": { "type": "date" },
                    "due_date": { "type": "date" },
                    "custom_fields": { "type": "object", "dynamic": true },
                    "tags": { "type": "keyword" },
                    "workflow_id": { "type": "keyword" },
                    "team_id": { "type": "keyword" },
                    "current_stage_id": { "type": "keyword" },
                    "sla_first_response_due": { "type": "date" },
                    "sla_resolution_due": { "type": "date" },
                    "sla_breached": { "type": "keyword" },
                    "suggest": { "type": "completion" },
                    "customer_id": { "type": "keyword" },
                    "version": { "type": "long" }
                }),
            ),
        ),
        (
            "murima-tenant-interactions",
            template(
                INTERACTIONS,
                json!({ "analysis": analysis("interaction_analyzer") }),
                json!({
                    "tenant_id": { "type": "keyword" },
                    "id": { "type": "keyword" },
                    "case_id": { "type": "keyword" },
                    "channel_id": { "type": "keyword" },
                    "channel_type": { "type": "keyword" },
                    "user_id": { "type": "keyword" },
                    "direction": { "type": "keyword" },
                    "content": { "type": "text", "analyzer": "interaction_analyzer" },
                    "sentiment_score": { "type": "float" },
                    "timestamp": { "type": "date" },
                    "tags": { "type": "keyword" },
                    "external_id": { "type": "keyword" },
                    "customer_id": { "type": "keyword" }
                }),
            ),
        ),
        (
            "murima-tenant-audit-logs",
            template(
                ES_AUDIT_LOGS,
                json!({}),
                json!({
                    "tenant_id": { "type": "keyword" },
                    "entity_type": { "type": "keyword" },
                    "entity_id": { "type": "keyword" },
                    "entity_version": { "type": "long" },
                    "event_type": { "type": "keyword" },
                    "action": { "type": "keyword" },
                    "user_id": { "type": "keyword" },
                    "role": { "type": "keyword" },
                    "timestamp": { "type": "date" },
                    "changes": {
                        "type": "nested",
                        "properties": {
                            "field": { "type": "keyword" },
                            "old_value": { "type": "text", "fields": { "keyword": { "type": "keyword", "ignore_above": 256 } } },
                            "new_value": { "type": "text", "fields": { "keyword": { "type": "keyword", "ignore_above": 256 } } }
                        }
                    },
                    "data_subject": { "type": "keyword" },
                    "ip_address": { "type": "ip" },
                    "user_agent": { "type": "text" },
                    "context": { "type": "object", "dynamic": true }
                }),
            ),
        ),
        (
            "murima-tenant-lookups",
            template(
                LOOKUPS,
                json!({}),
                json!({
                    "tenant_id": { "type": "keyword" },
                    "id": { "type": "keyword" },
                    "kind": { "type": "keyword" },
                    "name": { "type": "keyword" },
                    "channel_type": { "type": "keyword" },
                    "active": { "type": "boolean" },
                    "version": { "type": "long" }
                }),
            ),
        ),
        (
            "murima-tenant-notes",
            template(
                NOTES,
                json!({ "analysis": analysis("note_analyzer") }),
                json!({
                    "tenant_id": { "type": "keyword" },
                    "id": { "type": "keyword" },
                    "case_id": { "type": "keyword" },
                    "user_id": { "type": "keyword" },
                    "content": { "type": "text", "analyzer": "note_analyzer" },
                    "is_internal": { "type": "boolean" },
                    "tags": { "type": "keyword" },
                    "deleted": { "type": "boolean" },
                    "created_at": { "type": "date" },
                    "updated_at": { "type": "date" },
                    "customer_id": { "type": "keyword" },
                    "version": { "type": "long" }
                }),
            ),
        ),
    ]
}

impl ElasticProjection {
    pub async fn new(client: Elasticsearch) -> anyhow::Result<Self> {
        Self::placed(client, Placement::live()).await
    }

    /// A projection writing where `placement` says (a rebuild's copy indices and aliases).
    pub async fn placed(client: Elasticsearch, placement: Placement) -> anyhow::Result<Self> {
        // The policy where the server has ILM (a cluster); a stand-in without it answers
        // 4xx, and the retention job deletes the indices itself either way.
        let ilm = client
            .ilm()
            .put_lifecycle(IlmPutLifecycleParts::Policy(LIFECYCLE_POLICY))
            .body(lifecycle_policy())
            .send()
            .await
            .is_ok_and(|r| r.status_code().is_success());
        if !ilm {
            tracing::debug!("no index lifecycle management here: indices are managed by the retention job only");
        }
        for (name, body) in templates_with(ilm.then_some(LIFECYCLE_POLICY)) {
            let response =
                client.indices().put_index_template(IndicesPutIndexTemplateParts::Name(name)).body(body).send().await?;
            if !response.status_code().is_success() {
                anyhow::bail!("installing the index template {name} failed: {}", response.text().await?);
            }
        }
        Ok(Self { client, indices: Mutex::new(HashSet::new()), placement })
    }

    /// The names a tenant's documents go under (its own, or a rebuild's copy).
    fn tenancy(&self, tenant: Uuid) -> Tenancy {
        self.placement.of(tenant).unwrap_or(Tenancy(tenant))
    }

    /// For `verify`: every document behind a tenant alias, paged in `id` order, as stream
    /// id -> external version; or, for the audit log (one document per event), as stream
    /// id -> number of documents.
    async fn held_in(&self, alias: &str, audit: bool) -> anyhow::Result<HashMap<Uuid, i64>> {
        const PAGE: usize = 2_000;
        let (field, sort) = if audit {
            ("entity_id", json!([{ "entity_id": "asc" }, { "entity_version": "asc" }]))
        } else {
            ("id", json!([{ "id": "asc" }]))
        };
        let mut held: HashMap<Uuid, i64> = HashMap::new();
        let mut after: Option<Value> = None;
        loop {
            let mut body = json!({ "size": PAGE, "version": true, "_source": [field], "sort": sort,
                                   "query": { "match_all": {} } });
            if let Some(after) = after.take() {
                body["search_after"] = after;
            }
            let response = self.client.search(SearchParts::Index(&[alias])).body(body).send().await?;
            if response.status_code().as_u16() == 404 {
                return Ok(held); // no index yet: nothing held
            }
            let status = response.status_code();
            let body: Value = response.json().await?;
            anyhow::ensure!(status.is_success(), "searching {alias} failed: {status} {body}");
            let hits = body["hits"]["hits"].as_array().cloned().unwrap_or_default();
            for hit in &hits {
                let Some(id) = hit["_source"][field].as_str().and_then(|s| s.parse::<Uuid>().ok()) else { continue };
                if audit {
                    *held.entry(id).or_default() += 1;
                } else {
                    held.insert(id, hit["_version"].as_i64().unwrap_or(0));
                }
            }
            match hits.last() {
                Some(last) if hits.len() == PAGE => after = Some(last["sort"].clone()),
                _ => return Ok(held),
            }
        }
    }

    /// Creates a monthly index with the tenant's read alias on first use.
    async fn ensure_index(&self, index: &Index) -> Result<(), ApplyError> {
        if self.indices.lock().map(|s| s.contains(&index.name)).unwrap_or(false) {
            return Ok(());
        }
        let response = self
            .client
            .indices()
            .create(IndicesCreateParts::Index(&index.name))
            .body(index_body(index.entity, &index.alias))
            .send()
            .await
            .map_err(|e| ApplyError::Transient(e.into()))?;
        let status = response.status_code();
        let text = response.text().await.unwrap_or_default();
        // After a mapping migration the month's name is an alias of its newest version.
        let exists = text.contains("resource_already_exists_exception") || text.contains("already exists as alias");
        if !status.is_success() && !exists {
            return Err(ApplyError::Transient(anyhow::anyhow!(
                "creating index {} failed: {status} {text}",
                index.name
            )));
        }
        if let Ok(mut s) = self.indices.lock() {
            s.insert(index.name.clone());
        }
        Ok(())
    }

    /// The stored documents (and their versions) of these streams, each in its index.
    async fn current_docs(&self, keys: &[(String, StreamKey)]) -> Result<HashMap<StreamKey, (i64, Value)>, ApplyError> {
        let mut found = HashMap::new();
        for round in distinct_id_rounds(keys) {
            found.extend(self.mget(&round).await?);
        }
        Ok(found)
    }

    /// One `_mget` of documents whose ids are all different.
    async fn mget(&self, keys: &[&(String, StreamKey)]) -> Result<HashMap<StreamKey, (i64, Value)>, ApplyError> {
        let by_id: HashMap<Uuid, StreamKey> = keys.iter().map(|(_, k)| (k.stream_id, *k)).collect();
        let docs: Vec<Value> =
            keys.iter().map(|(index, k)| json!({ "_index": index, "_id": k.stream_id.to_string() })).collect();
        let response = self
            .client
            .mget(MgetParts::None)
            .body(json!({ "docs": docs }))
            .send()
            .await
            .map_err(|e| ApplyError::Transient(e.into()))?;
        let body: Value = response.json().await.map_err(|e| ApplyError::Transient(e.into()))?;
        let mut found = HashMap::new();
        for doc in body["docs"].as_array().into_iter().flatten() {
            if doc["found"] == json!(true) {
                let id: Option<Uuid> = doc["_id"].as_str().and_then(|s| s.parse().ok());
                if let (Some(key), Some(version)) = (id.and_then(|id| by_id.get(&id)), doc["_version"].as_i64()) {
                    found.insert(*key, (version, doc["_source"].clone()));
                }
            }
        }
        Ok(found)
    }
}

/// Splits documents to fetch into requests that each name an id once, so the answers of a
/// request are told apart by id alone, even when two tenants of a batch each have a stream
/// of that id (rare: the second one waits for a second request).
fn distinct_id_rounds(keys: &[(String, StreamKey)]) -> Vec<Vec<&(String, StreamKey)>> {
    let mut rounds = Vec::new();
    let mut rest: Vec<&(String, StreamKey)> = keys.iter().collect();
    while !rest.is_empty() {
        let mut named = HashSet::new();
        let (round, later): (Vec<_>, Vec<_>) = rest.into_iter().partition(|(_, k)| named.insert(k.stream_id));
        rounds.push(round);
        rest = later;
    }
    rounds
}

/// A monthly index and the tenant alias it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Index {
    name: String,
    alias: String,
    entity: &'static str,
}

impl Index {
    fn of(t: Tenancy, entity: &'static str, month: DateTime<Utc>) -> Self {
        Self { name: t.es_index(entity, month), alias: t.es_alias(entity), entity }
    }

    /// Cases, notes and lookups live in the month their id was minted, so every event of
    /// the stream (and every reader) finds the same index without a lookup.
    fn by_id(t: Tenancy, entity: &'static str, id: Uuid) -> Self {
        Self::of(t, entity, uuid_time(id).unwrap_or(DateTime::UNIX_EPOCH))
    }
}

/// One bulk action and its document, with the event answerable for it.
struct Action {
    meta: Value,
    doc: Value,
    event_id: Uuid,
}

/// A term query on a keyword field, or on its `.keyword` subfield where an index made
/// before the field was in its template mapped it as text.
fn keyword_term(field: &str, value: &str) -> Value {
    json!({ "bool": { "minimum_should_match": 1, "should": [
        { "term": { field: value } },
        { "term": { (format!("{field}.keyword")): value } }
    ] } })
}

/// Replaces the document's texts named (those that hold one) with the marker; whether
/// any changed.
fn erase_texts(doc: &mut Value, fields: &[&str]) -> bool {
    let mut changed = false;
    for field in fields {
        let value = &mut doc[*field];
        if !value.is_null() && value.as_str() != Some(events::personal::ERASED) {
            *value = json!(events::personal::ERASED);
            changed = true;
        }
    }
    changed
}

fn case_suggest(doc: &Value) -> Value {
    let inputs: Vec<&str> = [doc["title"].as_str(), doc["case_number"].as_str()].into_iter().flatten().collect();
    json!({ "input": inputs })
}

/// Folds one case event into its search document; `case_type` is the lookup document of
/// the case type a CaseOpened names (None: not indexed, the name stays null).
fn fold(doc: Option<Value>, event: &Event, case_event: &CaseEvent, case_type: Option<&Value>) -> Option<Value> {
    let env = &event.envelope;
    match (doc, case_event) {
        (None, CaseEvent::Opened(e)) => Some(json!({
            "tenant_id": env.tenant_id,
            "id": env.stream_id,
            "case_number": e.case_number,
            "title": e.title,
            "description": e.description,
            "status": e.status,
            "priority": e.priority,
            "case_type_id": e.case_type_id,
            "case_type_name": case_type.map_or(Value::Null, |t| t["name"].clone()),
            "created_by": e.created_by,
            "assigned_to": e.assigned_to,
            "created_at": e.opened_at,
            "updated_at": e.opened_at,
            "due_date": e.due_date,
            "custom_fields": e.custom_fields,
            "tags": e.tags,
            "customer_id": e.customer_id,
            "version": env.stream_version,
        })),
        (Some(mut doc), CaseEvent::Updated(e)) => {
            // The document's fields are named as the event's.
            for change in e.changes() {
                doc[change.field] = change.new_value;
            }
            doc["updated_at"] = json!(e.updated_at);
            doc["version"] = json!(env.stream_version);
            Some(doc)
        }
        (Some(mut doc), CaseEvent::Assigned(e)) => {
            doc["assigned_to"] = json!(e.assigned_to.new);
            doc["updated_at"] = json!(e.assigned_at);
            doc["version"] = json!(env.stream_version);
            Some(doc)
        }
        (Some(mut doc), CaseEvent::StatusChanged(e)) => {
            doc["status"] = json!(e.status.new);
            doc["updated_at"] = json!(e.changed_at);
            doc["version"] = json!(env.stream_version);
            Some(doc)
        }
        (Some(mut doc), CaseEvent::WorkflowStarted(e)) => {
            doc["workflow_id"] = json!(e.workflow_id);
            doc["current_stage_id"] = json!(e.stage_id);
            doc["version"] = json!(env.stream_version);
            Some(doc)
        }
        (Some(mut doc), CaseEvent::StageMoved(e)) => {
            doc["current_stage_id"] = json!(e.stage_id.new);
            doc["updated_at"] = json!(e.moved_at);
            doc["version"] = json!(env.stream_version);
            Some(doc)
        }
        (Some(mut doc), CaseEvent::TeamAssigned(e)) => {
            doc["team_id"] = json!(e.team_id.new);
            doc["updated_at"] = json!(e.assigned_at);
            doc["version"] = json!(env.stream_version);
            Some(doc)
        }
        (Some(mut doc), CaseEvent::SlaSet(e)) => {
            doc["sla_first_response_due"] = json!(e.first_response_due);
            doc["sla_resolution_due"] = json!(e.resolution_due);
            // New targets, new clocks: nothing of them is breached yet.
            doc["sla_breached"] = json!([]);
            doc["version"] = json!(env.stream_version);
            Some(doc)
        }
        (Some(mut doc), CaseEvent::SlaBreached(e)) => {
            // The clocks breached, filterable (`sla_breached: resolution`).
            let mut breached: Vec<Value> = doc["sla_breached"].as_array().cloned().unwrap_or_default();
            breached.push(json!(e.clock));
            doc["sla_breached"] = json!(breached);
            doc["version"] = json!(env.stream_version);
            Some(doc)
        }
        (Some(mut doc), CaseEvent::SlaStopped(_)) => {
            doc["sla_first_response_due"] = Value::Null;
            doc["sla_resolution_due"] = Value::Null;
            doc["sla_breached"] = json!([]);
            doc["version"] = json!(env.stream_version);
            Some(doc)
        }
        (Some(mut doc), CaseEvent::SlaWarned(_) | CaseEvent::Notified(_) | CaseEvent::TaskRequested(_)) => {
            doc["version"] = json!(env.stream_version);
            Some(doc)
        }
        // A case event before its CaseOpened: nothing to fold into (a gap; it is skipped).
        (None, _) => None,
        // A second CaseOpened for a stream cannot be recorded by the write side.
        (Some(doc), CaseEvent::Opened(_)) => Some(doc),
    }
}

/// Folds one note event into its search document.
fn fold_note(doc: Option<Value>, event: &Event, note_event: &NoteEvent) -> Option<Value> {
    let env = &event.envelope;
    match (doc, note_event) {
        (None, NoteEvent::Added(e)) => Some(json!({
            "tenant_id": env.tenant_id,
            "id": env.stream_id,
            "case_id": e.case_id,
            "user_id": e.author_id,
            "content": e.content,
            "is_internal": e.is_internal,
            "tags": e.tags,
            "deleted": false,
            "created_at": e.created_at,
            "updated_at": e.created_at,
            "customer_id": e.customer_id,
            "version": env.stream_version,
        })),
        (Some(mut doc), NoteEvent::Edited(e)) => {
            for change in e.changes() {
                doc[change.field] = change.new_value;
            }
            doc["updated_at"] = json!(e.edited_at);
            doc["version"] = json!(env.stream_version);
            Some(doc)
        }
        (Some(mut doc), NoteEvent::Deleted(e)) => {
            doc["deleted"] = json!(true);
            doc["updated_at"] = json!(e.deleted_at);
            doc["version"] = json!(env.stream_version);
            Some(doc)
        }
        (None, _) => None,
        (Some(doc), NoteEvent::Added(_)) => Some(doc),
    }
}

/// Folds one case type event into its lookup document (what cases take their name from).
fn fold_case_type(doc: Option<Value>, event: &Event, case_type_event: &CaseTypeEvent) -> Option<Value> {
    let env = &event.envelope;
    match (doc, case_type_event) {
        (None, CaseTypeEvent::Created(e)) => Some(json!({
            "tenant_id": env.tenant_id,
            "id": env.stream_id,
            "kind": "case_type",
            "name": e.name,
            "active": true,
            "version": env.stream_version,
        })),
        (Some(mut doc), CaseTypeEvent::Updated(e)) => {
            if let Some(c) = &e.name {
                doc["name"] = json!(c.new);
            }
            doc["version"] = json!(env.stream_version);
            Some(doc)
        }
        (Some(mut doc), CaseTypeEvent::Deactivated(_)) => {
            doc["active"] = json!(false);
            doc["version"] = json!(env.stream_version);
            Some(doc)
        }
        (Some(mut doc), CaseTypeEvent::Activated(_)) => {
            doc["active"] = json!(true);
            doc["version"] = json!(env.stream_version);
            Some(doc)
        }
        (None, CaseTypeEvent::Updated(_) | CaseTypeEvent::Deactivated(_) | CaseTypeEvent::Activated(_)) => None,
        (Some(doc), CaseTypeEvent::Created(_)) => Some(doc),
    }
}

/// Folds one channel event into its lookup document (what interactions take their type
/// from; the type is set when the channel is created and no event changes it).
fn fold_channel(doc: Option<Value>, event: &Event, channel_event: &ChannelEvent) -> Option<Value> {
    let env = &event.envelope;
    match (doc, channel_event) {
        (None, ChannelEvent::Created(e)) => Some(json!({
            "tenant_id": env.tenant_id,
            "id": env.stream_id,
            "kind": "channel",
            "name": e.name,
            "channel_type": e.channel_type.as_str(),
            "active": true,
            "version": env.stream_version,
        })),
        (Some(mut doc), ChannelEvent::Updated(e)) => {
            if let Some(c) = &e.name {
                doc["name"] = json!(c.new);
            }
            doc["version"] = json!(env.stream_version);
            Some(doc)
        }
        (Some(mut doc), ChannelEvent::Deactivated(_)) => {
            doc["active"] = json!(false);
            doc["version"] = json!(env.stream_version);
            Some(doc)
        }
        (Some(mut doc), ChannelEvent::Activated(_)) => {
            doc["active"] = json!(true);
            doc["version"] = json!(env.stream_version);
            Some(doc)
        }
        (None, ChannelEvent::Updated(_) | ChannelEvent::Deactivated(_) | ChannelEvent::Activated(_)) => None,
        (Some(doc), ChannelEvent::Created(_)) => Some(doc),
    }
}

/// An interaction's search document, with its channel's lookup document (None: not
/// indexed, the type stays null).
fn interaction_document(event: &Event, e: &InteractionRecorded, channel: Option<&Value>) -> Value {
    let env = &event.envelope;
    json!({
        "tenant_id": env.tenant_id,
        "id": env.stream_id,
        "case_id": e.case_id,
        "channel_id": e.channel_id,
        "channel_type": channel.map_or(Value::Null, |c| c["channel_type"].clone()),
        "user_id": e.user_id,
        "direction": e.direction,
        "content": e.content,
        "timestamp": e.timestamp,
        "tags": e.tags,
        "external_id": e.external_id,
        "customer_id": e.customer_id,
    })
}

/// The audit entry as Elasticsearch stores it: an `ip` field takes only addresses, and the
/// mapping's text `old_value` / `new_value` take structured values as their JSON text.
fn audit_document(event: &Event) -> Value {
    let mut doc = audit_record(event);
    for change in doc["changes"].as_array_mut().into_iter().flatten() {
        for side in ["old_value", "new_value"] {
            let text = match &change[side] {
                Value::Null => Value::Null,
                Value::String(s) => Value::String(s.clone()),
                other => Value::String(other.to_string()),
            };
            change[side] = text;
        }
    }
    doc["timestamp"] = json!(event.envelope.occurred_at);
    let ip = doc["ip_address"].as_str().and_then(|ip| ip.parse::<std::net::IpAddr>().ok());
    doc["ip_address"] = json!(ip.map(|ip| ip.to_string()));
    doc
}

/// Gives the batch's documents (in memory) that name a lookup its new value.
fn propagate_in_batch(
    docs: &mut HashMap<StreamKey, (i64, Value)>,
    homes: &HashMap<StreamKey, Index>,
    copy: &Propagation,
) {
    let source = copy.source_id.to_string();
    for (key, (_, doc)) in docs.iter_mut() {
        let carries = homes.get(key).is_some_and(|index| index.entity == copy.into.entity);
        if carries && key.tenant_id == copy.tenant_id && doc[copy.into.by].as_str() == Some(source.as_str()) {
            doc[copy.into.field] = copy.value.clone();
        }
    }
}

/// A request Elasticsearch refused as a whole. Busy (408, 429), failing (5xx) or blocking
/// writes (403 `cluster_block_exception`) pass once the cluster recovers; any other
/// refusal names no event, so it is unexplained: retried, and if it repeats while the
/// cluster answers, the worker finds the event behind it and parks that.
fn refused(what: &str, status: StatusCode, text: String) -> ApplyError {
    let blocked = status == StatusCode::FORBIDDEN && text.contains("block");
    let error = anyhow::anyhow!("{what} failed: {status} {text}");
    match status.as_u16() {
        408 | 429 | 500..=599 => ApplyError::Transient(error),
        403 if blocked => ApplyError::Transient(error),
        _ => ApplyError::Unexplained(error),
    }
}

/// What search makes of an event besides its audit entry; every stream is named.
enum Indexed<'a> {
    /// A document folded from its stream's events, in an index by the stream's id.
    Folded(Folded<'a>),
    /// An interaction, indexed whole when recorded (the stream's only event).
    Interaction(&'a InteractionRecorded),
    /// Not searched (only in the audit index).
    Nothing,
}

impl Indexed<'_> {
    fn of(event: &Event) -> Indexed<'_> {
        match &event.data {
            DomainEvent::Case(e) => Indexed::Folded(Folded::Case(e)),
            DomainEvent::Note(e) => Indexed::Folded(Folded::Note(e)),
            DomainEvent::CaseType(e) => Indexed::Folded(Folded::CaseType(e)),
            DomainEvent::Channel(e) => Indexed::Folded(Folded::Channel(e)),
            DomainEvent::Interaction(InteractionEvent::Recorded(e)) => Indexed::Interaction(e),
            DomainEvent::Tenant(_)
            | DomainEvent::User(_)
            | DomainEvent::Team(_)
            | DomainEvent::Task(_)
            | DomainEvent::Document(_)
            | DomainEvent::Template(_)
            | DomainEvent::Workflow(_)
            | DomainEvent::FieldDefinition(_)
            | DomainEvent::Webhook(_)
            | DomainEvent::DataSubject(_) => Indexed::Nothing,
        }
    }

    /// The lookup document the event reads: a new case its case type's, an interaction
    /// its channel's.
    fn looks_up(&self) -> Option<Uuid> {
        match self {
            Indexed::Folded(Folded::Case(CaseEvent::Opened(e))) => Some(e.case_type_id),
            Indexed::Interaction(e) => Some(e.channel_id),
            Indexed::Folded(Folded::Case(
                CaseEvent::Updated(_)
                | CaseEvent::Assigned(_)
                | CaseEvent::StatusChanged(_)
                | CaseEvent::WorkflowStarted(_)
                | CaseEvent::StageMoved(_)
                | CaseEvent::TeamAssigned(_)
                | CaseEvent::SlaSet(_)
                | CaseEvent::SlaWarned(_)
                | CaseEvent::SlaBreached(_)
                | CaseEvent::SlaStopped(_)
                | CaseEvent::Notified(_)
                | CaseEvent::TaskRequested(_),
            ))
            | Indexed::Folded(Folded::Note(_) | Folded::CaseType(_) | Folded::Channel(_))
            | Indexed::Nothing => None,
        }
    }
}

/// A stream whose search document is folded from its events.
enum Folded<'a> {
    Case(&'a CaseEvent),
    Note(&'a NoteEvent),
    CaseType(&'a CaseTypeEvent),
    Channel(&'a ChannelEvent),
}

impl Folded<'_> {
    fn of(event: &Event) -> Option<(Folded<'_>, &'static str)> {
        match Indexed::of(event) {
            Indexed::Folded(folded) => {
                let entity = folded.entity();
                Some((folded, entity))
            }
            Indexed::Interaction(_) | Indexed::Nothing => None,
        }
    }

    fn entity(&self) -> &'static str {
        match self {
            Folded::Case(_) => CASES,
            Folded::Note(_) => NOTES,
            Folded::CaseType(_) | Folded::Channel(_) => LOOKUPS,
        }
    }

    /// For a lookup document, the field other documents copy and where it goes.
    fn copied(&self) -> Option<Denormalised> {
        match self {
            Folded::CaseType(_) => {
                Some(Denormalised { from: "name", entity: CASES, by: "case_type_id", field: "case_type_name" })
            }
            Folded::Channel(_) => Some(Denormalised {
                from: "channel_type",
                entity: INTERACTIONS,
                by: "channel_id",
                field: "channel_type",
            }),
            Folded::Case(_) | Folded::Note(_) => None,
        }
    }

    /// Folds the event into the document; `looked_up` is the lookup document the event
    /// reads (`Indexed::looks_up`), when there is one.
    fn fold(&self, doc: Option<Value>, event: &Event, looked_up: Option<&Value>) -> Option<Value> {
        match self {
            Folded::Case(e) => fold(doc, event, e, looked_up).map(|mut d| {
                d["suggest"] = case_suggest(&d);
                d
            }),
            Folded::Note(e) => fold_note(doc, event, e),
            Folded::CaseType(e) => fold_case_type(doc, event, e),
            Folded::Channel(e) => fold_channel(doc, event, e),
        }
    }
}

/// A lookup field other documents carry: `from` of the lookup goes to `field` of the
/// tenant's `entity` documents whose `by` names the lookup.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Denormalised {
    from: &'static str,
    entity: &'static str,
    by: &'static str,
    field: &'static str,
}

/// A lookup value set or changed in a batch (a case type named or renamed, a channel
/// created), to copy into the documents that name the lookup.
#[derive(Debug, Clone, PartialEq)]
struct Propagation {
    tenant_id: Uuid,
    source_id: Uuid,
    into: Denormalised,
    value: Value,
    /// The event answerable for the rewrites (the batch's last change of the value).
    event_id: Uuid,
}

/// What folding a batch makes: the documents to write, and the values to copy into the
/// documents indexed before the batch (all but `written`, which carry them already).
struct FoldedBatch {
    actions: Vec<Action>,
    propagations: Vec<Propagation>,
    written: HashSet<StreamKey>,
}

#[async_trait::async_trait]
impl Projection for ElasticProjection {
    fn name(&self) -> &'static str {
        crate::stores::ProjectionName::Elasticsearch.as_str()
    }

    fn keeps_requests(&self) -> bool {
        true
    }

    async fn healthy(&self) -> anyhow::Result<()> {
        let response = self.client.ping().send().await?;
        anyhow::ensure!(response.status_code().is_success(), "Elasticsearch answered {}", response.status_code());
        Ok(())
    }

    async fn held(&self, tenant: Uuid) -> anyhow::Result<Vec<Held>> {
        let tenancy = self.tenancy(tenant);
        Ok(vec![
            Held {
                what: "cases index",
                stream_types: &["case"],
                versions: self.held_in(&tenancy.es_alias(CASES), false).await?,
            },
            Held {
                what: "notes index",
                stream_types: &["note"],
                versions: self.held_in(&tenancy.es_alias(NOTES), false).await?,
            },
            Held {
                what: "interactions index",
                stream_types: &["interaction"],
                versions: self.held_in(&tenancy.es_alias(INTERACTIONS), false).await?,
            },
            Held {
                what: "lookups index",
                stream_types: &["case_type", "channel"],
                versions: self.held_in(&tenancy.es_alias(LOOKUPS), false).await?,
            },
            Held {
                what: "audit-logs index",
                stream_types: &[],
                versions: self.held_in(&tenancy.es_alias(ES_AUDIT_LOGS), true).await?,
            },
        ])
    }

    #[tracing::instrument(skip_all, fields(projection = "elasticsearch", events = events.len()))]
    async fn apply(&self, events: &[Event], _checkpoint: &Checkpoint) -> Result<(), ApplyError> {
        let mut actions: Vec<Action> = Vec::new();
        let mut keys: Vec<(String, StreamKey)> = Vec::new();
        let mut homes: HashMap<StreamKey, Index> = HashMap::new();
        for event in events {
            let env = &event.envelope;
            let tenancy = self.tenancy(env.tenant_id);
            let audit = Index::of(tenancy, ES_AUDIT_LOGS, env.occurred_at);
            self.ensure_index(&audit).await?;
            actions.push(Action {
                meta: json!({ "create": { "_index": audit.name, "_id": env.event_id.to_string() } }),
                doc: audit_document(event),
                event_id: env.event_id,
            });
            let indexed = Indexed::of(event);
            if let Indexed::Interaction(e) = &indexed {
                self.ensure_index(&Index::of(tenancy, INTERACTIONS, e.timestamp)).await?;
            }
            // The documents the batch folds, and the lookup documents it reads.
            let folded = Folded::of(event).map(|(_, entity)| (entity, env.stream_id));
            let read = indexed.looks_up().map(|id| (LOOKUPS, id));
            for (entity, id) in folded.into_iter().chain(read) {
                let stream = StreamKey::new(env.tenant_id, id);
                if let std::collections::hash_map::Entry::Vacant(home) = homes.entry(stream) {
                    let index = Index::by_id(tenancy, entity, id);
                    self.ensure_index(&index).await?;
                    keys.push((index.name.clone(), stream));
                    home.insert(index);
                }
            }
        }
        let folded = self.fold_all(events, &keys, &homes).await?;
        // The indexed documents take a new value before the lookup document holding it is
        // written: should anything fail in between, the batch (and the copy) is applied
        // again, while a lookup already at the change's version would skip it.
        for propagation in &folded.propagations {
            self.propagate_to_indexed(propagation, &folded.written).await?;
        }
        actions.extend(folded.actions);
        self.bulk(actions).await?;
        for event in events {
            if let Some(subject) = event.erased_subject() {
                self.erase_subject(event, subject).await?;
            }
        }
        Ok(())
    }
}

impl ElasticProjection {
    /// Folds the batch's case, note, case type and channel events into their current
    /// documents, in journal order, and makes the interactions' documents; returns an
    /// index action per document that changed, and the lookup values set or changed.
    async fn fold_all(
        &self,
        events: &[Event],
        keys: &[(String, StreamKey)],
        homes: &HashMap<StreamKey, Index>,
    ) -> Result<FoldedBatch, ApplyError> {
        let mut docs = self.current_docs(keys).await?;
        let mut touched: Vec<(StreamKey, Uuid)> = Vec::new();
        let mut interactions: Vec<Action> = Vec::new();
        let mut propagations: Vec<Propagation> = Vec::new();
        for event in events {
            let env = &event.envelope;
            let indexed = Indexed::of(event);
            let looked_up = indexed.looks_up().and_then(|id| docs.get(&StreamKey::new(env.tenant_id, id)));
            let looked_up = looked_up.map(|(_, doc)| doc.clone());
            if let Indexed::Interaction(e) = &indexed {
                let index = Index::of(self.tenancy(env.tenant_id), INTERACTIONS, e.timestamp);
                interactions.push(Action {
                    meta: json!({ "index": { "_index": index.name, "_id": env.stream_id.to_string(),
                                             "version": env.stream_version, "version_type": "external" } }),
                    doc: interaction_document(event, e, looked_up.as_ref()),
                    event_id: env.event_id,
                });
            }
            let Some((folded, _)) = Folded::of(event) else { continue };
            let id = StreamKey::of(env);
            let (held, doc) = docs.remove(&id).map_or((0, None), |(v, d)| (v, Some(d)));
            let v = event.version();
            if v == held + 1 {
                let copied = folded.copied();
                // What the documents naming this lookup carry until now (None: a new lookup).
                let before = copied.and_then(|c| doc.as_ref().map(|d| d[c.from].clone()));
                if let Some(d) = folded.fold(doc, event, looked_up.as_ref()) {
                    if let Some(into) = copied.filter(|c| before.as_ref() != Some(&d[c.from])) {
                        let propagation = Propagation {
                            tenant_id: id.tenant_id,
                            source_id: id.stream_id,
                            into,
                            value: d[into.from].clone(),
                            event_id: env.event_id,
                        };
                        propagate_in_batch(&mut docs, homes, &propagation);
                        propagations.retain(|p| (p.tenant_id, p.source_id) != (id.tenant_id, id.stream_id));
                        propagations.push(propagation);
                    }
                    docs.insert(id, (v, d));
                    touched.retain(|(stream, _)| *stream != id);
                    touched.push((id, env.event_id));
                }
            } else {
                if v > held + 1 {
                    tracing::warn!(tenant_id = %id.tenant_id, stream_id = %id.stream_id, version = v, held,
                        "version gap; waiting for the missing event");
                }
                if let Some(d) = doc {
                    docs.insert(id, (held, d));
                }
            }
        }
        let mut actions = Vec::with_capacity(touched.len() + interactions.len());
        let mut written = HashSet::with_capacity(touched.len());
        for (id, event_id) in touched {
            let (Some((version, doc)), Some(index)) = (docs.remove(&id), homes.get(&id)) else { continue };
            actions.push(Action {
                meta: json!({ "index": { "_index": index.name, "_id": id.stream_id.to_string(),
                                         "version": version, "version_type": "external" } }),
                doc,
                event_id,
            });
            written.insert(id);
        }
        actions.extend(interactions);
        Ok(FoldedBatch { actions, propagations, written })
    }

    /// Copies a lookup's value into the tenant's indexed documents that name the lookup
    /// and still hold another value: a search (after a refresh, so the documents written
    /// by earlier batches are seen) paged in `id` order, and a `_bulk` rewriting each
    /// found document at its own version (`external_gte`: the version stays the stream
    /// version, and a newer version written meanwhile wins). Documents in `written` are
    /// left alone: the batch writes them, newer and with the value already.
    async fn propagate_to_indexed(&self, copy: &Propagation, written: &HashSet<StreamKey>) -> Result<(), ApplyError> {
        const PAGE: usize = 500;
        if copy.value.is_null() {
            return Ok(()); // nothing to copy (and no term query takes a null)
        }
        let Denormalised { entity, by, field, .. } = copy.into;
        let alias = self.tenancy(copy.tenant_id).es_alias(entity);
        if !self.refresh(&alias).await? {
            return Ok(()); // nothing of this entity indexed yet for this tenant
        }
        let mut after: Option<Value> = None;
        loop {
            let mut body = json!({
                "size": PAGE,
                "version": true,
                "sort": [{ "id": "asc" }],
                "query": { "bool": {
                    "filter": [
                        { "term": { "tenant_id": copy.tenant_id.to_string() } },
                        { "term": { by: copy.source_id.to_string() } }
                    ],
                    "must_not": [{ "term": { field: copy.value } }]
                } }
            });
            if let Some(after) = after.take() {
                body["search_after"] = after;
            }
            let what = format!("searching {alias} for what names {}", copy.source_id);
            let Some(hits) = self.search_page(&alias, body, &what).await? else { return Ok(()) };
            let mut actions = Vec::with_capacity(hits.len());
            for hit in &hits {
                let id = hit["_id"].as_str().and_then(|s| s.parse::<Uuid>().ok());
                if id.is_some_and(|id| written.contains(&StreamKey::new(copy.tenant_id, id))) {
                    continue;
                }
                let (Some(index), Some(version)) = (hit["_index"].as_str(), hit["_version"].as_i64()) else {
                    continue;
                };
                let mut doc = hit["_source"].clone();
                doc[field] = copy.value.clone();
                actions.push(Action {
                    meta: json!({ "index": { "_index": index, "_id": hit["_id"], "version": version,
                                             "version_type": "external_gte" } }),
                    doc,
                    event_id: copy.event_id,
                });
            }
            self.bulk(actions).await?;
            match hits.last() {
                Some(last) if hits.len() == PAGE => after = Some(last["sort"].clone()),
                _ => return Ok(()),
            }
        }
    }

    /// Refreshes an index or alias so a search sees every document written; false when
    /// there is no such index.
    async fn refresh(&self, alias: &str) -> Result<bool, ApplyError> {
        let response = self
            .client
            .indices()
            .refresh(IndicesRefreshParts::Index(&[alias]))
            .send()
            .await
            .map_err(|e| ApplyError::Transient(e.into()))?;
        let status = response.status_code();
        if status == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        if !status.is_success() {
            return Err(refused(&format!("refreshing {alias}"), status, response.text().await.unwrap_or_default()));
        }
        Ok(true)
    }

    /// One page of a search's hits; None when there is no such index.
    async fn search_page(&self, alias: &str, body: Value, what: &str) -> Result<Option<Vec<Value>>, ApplyError> {
        let response = self
            .client
            .search(SearchParts::Index(&[alias]))
            .body(body)
            .send()
            .await
            .map_err(|e| ApplyError::Transient(e.into()))?;
        let status = response.status_code();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(refused(what, status, response.text().await.unwrap_or_default()));
        }
        let found: Value = response.json().await.map_err(|e| ApplyError::Transient(e.into()))?;
        Ok(Some(found["hits"]["hits"].as_array().cloned().unwrap_or_default()))
    }

    /// Replaces an erased subject's data: a user's personal values in their own audit
    /// entries; a customer's (a user may be one too) in the cases that name them, those
    /// cases' notes and interactions, and the audit entries of events sealed for them.
    async fn erase_subject(&self, event: &Event, subject: Uuid) -> Result<(), ApplyError> {
        let (tenancy, owner) = (self.tenancy(event.envelope.tenant_id), event.envelope.event_id);
        let audit = tenancy.es_alias(ES_AUDIT_LOGS);
        let subject = subject.to_string();
        if let DomainEvent::User(UserEvent::Erased(_)) = &event.data {
            let theirs =
                vec![json!({ "term": { "entity_type": "user" } }), json!({ "term": { "entity_id": subject } })];
            self.rewrite(owner, &audit, theirs, json!(["entity_id", "entity_version"]), &|doc| {
                erase_changes(&mut doc["changes"], USER_PERSONAL_FIELDS)
            })
            .await?;
            // What they did: their requests' address and user agent (`RequestContext::erase`).
            let acted = vec![keyword_term("user_id", &subject)];
            self.rewrite(owner, &audit, acted, json!(["entity_id", "entity_version"]), &|doc| {
                let had_address = !doc["ip_address"].is_null();
                doc["ip_address"] = Value::Null;
                erase_texts(doc, &["user_agent"]) | had_address
            })
            .await?;
        }
        let about = vec![keyword_term("data_subject", &subject)];
        self.rewrite(owner, &audit, about, json!(["entity_id", "entity_version"]), &|doc| {
            erase_changes(&mut doc["changes"], CUSTOMER_PERSONAL_FIELDS)
        })
        .await?;
        let customers = || vec![keyword_term("customer_id", &subject)];
        self.rewrite(owner, &tenancy.es_alias(CASES), customers(), json!(["id"]), &|doc| {
            let changed = erase_texts(doc, &["title", "description"]) | (doc["custom_fields"] != json!({}));
            doc["custom_fields"] = json!({});
            doc["suggest"] = case_suggest(doc);
            changed
        })
        .await?;
        self.rewrite(owner, &tenancy.es_alias(NOTES), customers(), json!(["id"]), &|doc| {
            erase_texts(doc, &["content"])
        })
        .await?;
        self.rewrite(owner, &tenancy.es_alias(INTERACTIONS), customers(), json!(["id"]), &|doc| {
            erase_texts(doc, &["content", "external_id"])
        })
        .await
    }

    /// Rewrites, with `edit`, every document of `alias` that the `filter` clauses find,
    /// a page at a time in the order of `sort` (fields that tell documents apart);
    /// `edit` says whether it changed the document. A refused document parks `owner`.
    async fn rewrite(
        &self,
        owner: Uuid,
        alias: &str,
        filter: Vec<Value>,
        sort: Value,
        edit: &(dyn Fn(&mut Value) -> bool + Sync),
    ) -> Result<(), ApplyError> {
        const PAGE: usize = 500;
        if !self.refresh(alias).await? {
            return Ok(());
        }
        let mut after: Option<Value> = None;
        loop {
            let mut body =
                json!({ "size": PAGE, "version": true, "sort": sort, "query": { "bool": { "filter": filter } } });
            if let Some(after) = after.take() {
                body["search_after"] = after;
            }
            let what = format!("searching {alias} for an erased subject's documents");
            let Some(hits) = self.search_page(alias, body, &what).await? else { return Ok(()) };
            let mut actions = Vec::new();
            for hit in &hits {
                let mut doc = hit["_source"].clone();
                let Some(version) = hit["_version"].as_i64() else { continue };
                if edit(&mut doc) {
                    // At its own version (`external_gte`): a case's, note's or interaction's
                    // stays its stream version, and one written meanwhile wins.
                    actions.push(Action {
                        meta: json!({ "index": { "_index": hit["_index"], "_id": hit["_id"], "version": version,
                                                 "version_type": "external_gte" } }),
                        doc,
                        event_id: owner,
                    });
                }
            }
            self.bulk(actions).await?;
            match hits.last() {
                Some(last) if hits.len() == PAGE => after = Some(last["sort"].clone()),
                _ => return Ok(()),
            }
        }
    }

    /// One `_bulk` request. A conflict means the document is already there at this
    /// version or later; any other refusal of a document parks the event behind it.
    async fn bulk(&self, actions: Vec<Action>) -> Result<(), ApplyError> {
        if actions.is_empty() {
            return Ok(());
        }
        let mut body: Vec<JsonBody<Value>> = Vec::with_capacity(actions.len() * 2);
        let mut owners: Vec<Uuid> = Vec::with_capacity(actions.len());
        for action in actions {
            body.push(action.meta.into());
            body.push(action.doc.into());
            owners.push(action.event_id);
        }
        let response =
            self.client.bulk(BulkParts::None).body(body).send().await.map_err(|e| ApplyError::Transient(e.into()))?;
        if !response.status_code().is_success() {
            let status = response.status_code();
            let text = response.text().await.unwrap_or_default();
            return Err(ApplyError::Transient(anyhow::anyhow!("bulk request failed: {status} {text}")));
        }
        let result: Value = response.json().await.map_err(|e| ApplyError::Transient(e.into()))?;
        for (item, event_id) in result["items"].as_array().into_iter().flatten().zip(owners) {
            let outcome = item.as_object().and_then(|o| o.values().next()).cloned().unwrap_or_default();
            let status = outcome["status"].as_u64().unwrap_or(0);
            // Back-pressure (429), a timeout (408) and a cluster's write block (403
            // `cluster_block_exception`, e.g. a full disk) pass once the cluster recovers.
            let blocked = status == 403 && outcome["error"]["type"].as_str().is_some_and(|t| t.contains("block"));
            match status {
                200..=299 | 409 => {}
                408 | 429 => return Err(ApplyError::Transient(anyhow::anyhow!("Elasticsearch is busy: {item}"))),
                403 if blocked => {
                    return Err(ApplyError::Transient(anyhow::anyhow!("Elasticsearch blocks writes: {item}")))
                }
                400..=499 => {
                    return Err(ApplyError::Poison {
                        event_id,
                        reason: format!("Elasticsearch refused it: {}", outcome["error"]),
                    })
                }
                500..=599 => return Err(ApplyError::Transient(anyhow::anyhow!("bulk item failed: {item}"))),
                _ => return Err(ApplyError::Unexplained(anyhow::anyhow!("bulk item failed: {item}"))),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::event::test_event;

    /// Elasticsearch refuses overlapping patterns of one priority (see `templates`).
    #[test]
    fn with_a_lifecycle_every_template_names_it_and_the_policy_deletes_nothing_a_tenant_keeps() {
        for (name, body) in templates_with(Some(LIFECYCLE_POLICY)) {
            assert_eq!(body["template"]["settings"]["index.lifecycle.name"], LIFECYCLE_POLICY, "{name}");
            assert_eq!(body["template"]["settings"]["number_of_shards"], 1, "{name}");
        }
        assert!(templates().iter().all(|(_, b)| b["template"]["settings"].get("index.lifecycle.name").is_none()));
        let policy = lifecycle_policy();
        let delete_after: i64 =
            policy["policy"]["phases"]["delete"]["min_age"].as_str().unwrap().trim_end_matches('d').parse().unwrap();
        assert!(delete_after > events::tenant::MAX_RETENTION_DAYS + 30, "{policy}");
        for phase in ["warm", "cold"] {
            assert!(policy["policy"]["phases"][phase]["actions"].get("readonly").is_none(), "writes go on: {phase}");
        }
    }

    #[test]
    fn a_new_index_carries_its_templates_mappings_whether_or_not_the_server_kept_them() {
        for entity in [CASES, INTERACTIONS, ES_AUDIT_LOGS, LOOKUPS, NOTES] {
            let body = index_body(entity, "the-alias");
            assert_eq!(body["aliases"], json!({ "the-alias": {} }), "{entity}");
            let (_, template) = entity_templates()
                .into_iter()
                .find(|(_, t)| t["index_patterns"][0] == format!("tenant-*-{entity}-*"))
                .expect("every entity has a template");
            assert_eq!(body["mappings"], template["template"]["mappings"], "{entity}");
            assert_eq!(body["settings"], template["template"]["settings"], "{entity}");
        }
        // What a search server without the template got before: case types sorted and
        // filtered as text (a 400 from the server, a 500 from the query API).
        assert_eq!(index_body(CASES, "a")["mappings"]["properties"]["case_type_id"]["type"], "keyword");
    }

    #[test]
    fn every_index_template_has_a_priority_of_its_own() {
        let priorities: Vec<u64> = templates().iter().map(|(_, body)| body["priority"].as_u64().unwrap()).collect();
        let distinct: HashSet<u64> = priorities.iter().copied().collect();
        assert_eq!(distinct.len(), priorities.len(), "{priorities:?}");
    }

    #[test]
    fn a_note_is_folded_from_its_events_and_kept_when_deleted() {
        let added = test_event(
            "note",
            1,
            "CaseNoteAdded",
            json!({ "case_id": Uuid::from_u128(3), "author_id": Uuid::from_u128(7), "content": "Rang twice",
                    "is_internal": true, "tags": ["call"], "attachments": [], "created_at": "2026-11-20T09:00:00Z" }),
        );
        let edited = test_event(
            "note",
            2,
            "CaseNoteEdited",
            json!({ "content": { "old": "Rang twice", "new": "Rang three times" }, "edited_at": "2026-11-20T10:00:00Z" }),
        );
        let deleted = test_event(
            "note",
            3,
            "CaseNoteDeleted",
            json!({ "case_id": Uuid::from_u128(3), "deleted_at": "2026-11-20T11:00:00Z" }),
        );
        let mut doc = None;
        for event in [&added, &edited, &deleted] {
            let (folded, entity) = Folded::of(event).unwrap();
            assert_eq!(entity, NOTES);
            doc = folded.fold(doc, event, None);
        }
        let doc = doc.unwrap();
        assert_eq!(doc["content"], "Rang three times");
        assert_eq!(doc["is_internal"], true);
        assert_eq!(doc["deleted"], true);
        assert_eq!(doc["version"], 3);
        assert_eq!(doc["created_at"], "2026-11-20T09:00:00Z");
        // An edit of a note this store never saw added folds into nothing (a gap).
        let (folded, _) = Folded::of(&edited).unwrap();
        assert_eq!(folded.fold(None, &edited, None), None);
    }

    #[test]
    fn audit_documents_fit_the_seed_mapping() {
        let event = test_event(
            "case",
            2,
            "CaseUpdated",
            json!({ "title": { "old": "A", "new": "B" }, "tags": { "old": [], "new": ["vip"] },
                    "updated_at": "2026-11-20T09:00:00Z" }),
        );
        let doc = audit_document(&event);
        assert_eq!(doc["entity_type"], "case");
        assert_eq!(doc["timestamp"], "2026-11-20T09:00:00Z");
        // `ip` fields take addresses only; structured values become their JSON text.
        assert_eq!(doc["ip_address"], Value::Null);
        let changes = doc["changes"].as_array().unwrap();
        let tags = changes.iter().find(|c| c["field"] == "tags").unwrap();
        assert_eq!(tags["new_value"], "[\"vip\"]");
        let title = changes.iter().find(|c| c["field"] == "title").unwrap();
        assert_eq!((title["old_value"].as_str(), title["new_value"].as_str()), (Some("A"), Some("B")));
    }

    #[test]
    fn one_id_in_two_tenants_is_fetched_in_two_requests_and_other_ids_in_one() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let (shared, other) = (Uuid::from_u128(10), Uuid::from_u128(11));
        let keys = vec![
            ("tenant-a-cases".to_owned(), StreamKey::new(a, shared)),
            ("tenant-b-cases".to_owned(), StreamKey::new(b, shared)),
            ("tenant-a-notes".to_owned(), StreamKey::new(a, other)),
        ];
        let rounds: Vec<Vec<StreamKey>> =
            distinct_id_rounds(&keys).into_iter().map(|r| r.into_iter().map(|(_, k)| *k).collect()).collect();
        assert_eq!(
            rounds,
            vec![vec![StreamKey::new(a, shared), StreamKey::new(a, other)], vec![StreamKey::new(b, shared)]]
        );
        assert!(distinct_id_rounds(&[]).is_empty());
    }

    /// Folds events of one stream in order, as `fold_all` does, from nothing.
    fn fold_stream(events: &[&Event], looked_up: Option<&Value>) -> Option<Value> {
        events.iter().fold(None, |doc, event| Folded::of(event).unwrap().0.fold(doc, event, looked_up))
    }

    fn case_opened(case_type: Uuid) -> Event {
        test_event(
            "case",
            1,
            "CaseOpened",
            json!({ "case_number": "CASE-000001", "title": "Leak", "description": null, "status": "open",
                    "priority": "low", "case_type_id": case_type, "created_by": Uuid::from_u128(7),
                    "assigned_to": null, "due_date": null, "tags": [], "custom_fields": {},
                    "opened_at": "2026-11-20T09:00:00Z" }),
        )
    }

    fn case_type_created() -> Event {
        test_event(
            "case_type",
            1,
            "CaseTypeCreated",
            json!({ "name": "Water leak", "description": null, "form_definition": { "fields": [] },
                    "validation_rules": {}, "workflow_id": null, "created_at": "2026-11-20T09:00:00Z" }),
        )
    }

    #[test]
    fn a_case_type_is_a_lookup_document_a_new_case_takes_its_name_from() {
        let created = case_type_created();
        let renamed = test_event(
            "case_type",
            2,
            "CaseTypeUpdated",
            json!({ "name": { "old": "Water leak", "new": "Plumbing" }, "updated_at": "2026-11-20T10:00:00Z" }),
        );
        let deactivated = test_event("case_type", 3, "CaseTypeDeactivated", json!({ "at": "2026-11-20T11:00:00Z" }));
        assert_eq!(Folded::of(&created).map(|(_, entity)| entity), Some(LOOKUPS));
        let lookup = fold_stream(&[&created, &renamed, &deactivated], None).unwrap();
        assert_eq!((&lookup["kind"], &lookup["name"]), (&json!("case_type"), &json!("Plumbing")));
        assert_eq!((&lookup["active"], &lookup["version"]), (&json!(false), &json!(3)));

        let opened = case_opened(created.envelope.stream_id);
        assert_eq!(Indexed::of(&opened).looks_up(), Some(created.envelope.stream_id));
        let case = fold_stream(&[&opened], Some(&lookup)).unwrap();
        assert_eq!(case["case_type_name"], "Plumbing");
        // A case type this store never saw: the name stays null rather than invented.
        assert_eq!(fold_stream(&[&opened], None).unwrap()["case_type_name"], Value::Null);
        // Only a new case reads the lookup; its later events keep what the document holds.
        let updated = test_event("case", 2, "CaseUpdated", json!({ "updated_at": "2026-11-20T12:00:00Z" }));
        assert_eq!(Indexed::of(&updated).looks_up(), None);
    }

    #[test]
    fn a_rename_reaches_the_batch_s_cases_of_that_type_only() {
        let (tenant, other_tenant) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let (renamed_type, other_type) = (Uuid::from_u128(30), Uuid::from_u128(31));
        let case = |tenant: Uuid, n: u128, case_type: Uuid| {
            let doc = json!({ "case_type_id": case_type, "case_type_name": "Old" });
            (StreamKey::new(tenant, Uuid::from_u128(n)), (1, doc))
        };
        let mut docs: HashMap<StreamKey, (i64, Value)> = HashMap::from([
            case(tenant, 100, renamed_type),
            case(tenant, 101, other_type),
            case(other_tenant, 102, renamed_type),
            // A lookup document is not a case, whatever it holds.
            case(tenant, 103, renamed_type),
        ]);
        let t = Tenancy(tenant);
        let homes: HashMap<StreamKey, Index> = docs
            .keys()
            .map(|k| {
                let entity = if k.stream_id == Uuid::from_u128(103) { LOOKUPS } else { CASES };
                (*k, Index::by_id(t, entity, k.stream_id))
            })
            .collect();
        let into = Folded::of(&case_type_created()).and_then(|(folded, _)| folded.copied()).unwrap();
        assert_eq!((into.entity, into.by, into.field), (CASES, "case_type_id", "case_type_name"));
        let copy = Propagation {
            tenant_id: tenant,
            source_id: renamed_type,
            into,
            value: json!("New"),
            event_id: Uuid::nil(),
        };
        propagate_in_batch(&mut docs, &homes, &copy);
        let name =
            |tenant: Uuid, n: u128| docs[&StreamKey::new(tenant, Uuid::from_u128(n))].1["case_type_name"].clone();
        assert_eq!(name(tenant, 100), "New");
        assert_eq!(name(tenant, 101), "Old");
        assert_eq!(name(other_tenant, 102), "Old");
        assert_eq!(name(tenant, 103), "Old");
    }

    #[test]
    fn an_interaction_carries_its_channel_s_type_through_a_rename() {
        let created = test_event(
            "channel",
            1,
            "ChannelCreated",
            json!({ "name": "Phone", "channel_type": "voice", "configuration": {}, "created_at": "2026-11-20T09:00:00Z" }),
        );
        let renamed = test_event(
            "channel",
            2,
            "ChannelUpdated",
            json!({ "name": { "old": "Phone", "new": "Hotline" }, "updated_at": "2026-11-20T10:00:00Z" }),
        );
        let lookup = fold_stream(&[&created, &renamed], None).unwrap();
        assert_eq!((&lookup["name"], &lookup["channel_type"]), (&json!("Hotline"), &json!("voice")));
        let recorded = test_event(
            "interaction",
            1,
            "InteractionRecorded",
            json!({ "case_id": Uuid::from_u128(3), "channel_id": created.envelope.stream_id,
                    "user_id": Uuid::from_u128(7), "direction": "inbound", "content": "Rang", "external_id": null,
                    "tags": [], "metadata": {}, "timestamp": "2026-11-20T11:00:00Z" }),
        );
        let indexed = Indexed::of(&recorded);
        assert_eq!(indexed.looks_up(), Some(created.envelope.stream_id));
        let Indexed::Interaction(e) = indexed else { panic!("an interaction is indexed whole") };
        assert_eq!(interaction_document(&recorded, e, Some(&lookup))["channel_type"], "voice");
        assert_eq!(interaction_document(&recorded, e, None)["channel_type"], Value::Null);
    }

    #[test]
    fn refusals_of_a_whole_request_are_classified() {
        let transient = |status: u16, text: &str| {
            matches!(refused("x", StatusCode::from_u16(status).unwrap(), text.into()), ApplyError::Transient(_))
        };
        assert!(transient(429, "") && transient(503, "") && transient(408, ""));
        assert!(transient(403, r#"{"error":{"type":"cluster_block_exception"}}"#));
        assert!(!transient(403, "security_exception") && !transient(400, "parsing_exception"));
    }

    #[test]
    fn cases_suggest_their_title_and_number() {
        let doc = json!({ "title": "Router down", "case_number": "CASE-000042" });
        assert_eq!(case_suggest(&doc), json!({ "input": ["Router down", "CASE-000042"] }));
    }
}
