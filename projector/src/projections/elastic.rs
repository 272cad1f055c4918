//! Case search in Elasticsearch: `tenant-<id>-cases-YYYY-MM` (month of the case's v7 id)
//! with the seed's mapping and analyzer (§2.4.2), read through the alias `tenant-<id>-cases`.
//!
//! Per batch: one `_mget` for the touched cases, events folded into their documents in
//! memory, one `_bulk` of index operations with external versioning (version = stream
//! version). Elasticsearch itself refuses a version at or below the stored one, which
//! makes redelivery a no-op.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use elasticsearch::http::request::JsonBody;
use elasticsearch::indices::{IndicesCreateParts, IndicesPutIndexTemplateParts};
use elasticsearch::{BulkParts, Elasticsearch, MgetParts};
use events::case::CaseEvent;
use events::case_type::CaseTypeEvent;
use events::channel::ChannelEvent;
use events::document::DocumentEvent;
use events::field_definition::FieldDefinitionEvent;
use events::interaction::InteractionEvent;
use events::note::NoteEvent;
use events::task::TaskEvent;
use events::team::TeamEvent;
use events::template::TemplateEvent;
use events::tenant::TenantEvent;
use events::user::UserEvent;
use events::workflow::WorkflowEvent;
use runtime::tenancy::{Tenancy, CASES};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::event::{DomainEvent, Event};
use crate::projection::{ApplyError, Projection};

pub struct ElasticProjection {
    client: Elasticsearch,
    indices: Mutex<HashSet<String>>,
}

/// The seed's case analyzer and mapping, applied to every monthly case index.
pub fn cases_template() -> Value {
    json!({
        "index_patterns": ["tenant-*-cases-*"],
        "template": {
            "settings": {
                "number_of_shards": 1,
                "number_of_replicas": 0,
                "analysis": {
                    "analyzer": {
                        "case_analyzer": {
                            "type": "custom",
                            "tokenizer": "standard",
                            "filter": ["lowercase", "asciifolding", "stop", "snowball"]
                        }
                    }
                }
            },
            "mappings": {
                "properties": {
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
                    "version": { "type": "long" }
                }
            }
        }
    })
}

impl ElasticProjection {
    pub async fn new(client: Elasticsearch) -> anyhow::Result<Self> {
        let response = client
            .indices()
            .put_index_template(IndicesPutIndexTemplateParts::Name("murima-tenant-cases"))
            .body(cases_template())
            .send()
            .await?;
        if !response.status_code().is_success() {
            anyhow::bail!("installing the cases index template failed: {}", response.text().await?);
        }
        Ok(Self { client, indices: Mutex::new(HashSet::new()) })
    }

    /// Creates a monthly index with the tenant's read alias on first use.
    async fn ensure_index(&self, tenant: Uuid, index: &str) -> Result<(), ApplyError> {
        if self.indices.lock().map(|s| s.contains(index)).unwrap_or(false) {
            return Ok(());
        }
        let alias = Tenancy(tenant).es_alias(CASES);
        let response = self
            .client
            .indices()
            .create(IndicesCreateParts::Index(index))
            .body(json!({ "aliases": { alias: {} } }))
            .send()
            .await
            .map_err(|e| ApplyError::Transient(e.into()))?;
        let status = response.status_code();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() && !text.contains("resource_already_exists_exception") {
            return Err(ApplyError::Transient(anyhow::anyhow!("creating index {index} failed: {status} {text}")));
        }
        if let Ok(mut s) = self.indices.lock() {
            s.insert(index.to_owned());
        }
        Ok(())
    }

    async fn current_docs(&self, keys: &[(String, Uuid)]) -> Result<HashMap<Uuid, (i64, Value)>, ApplyError> {
        let docs: Vec<Value> =
            keys.iter().map(|(index, id)| json!({ "_index": index, "_id": id.to_string() })).collect();
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
                if let (Some(id), Some(version)) =
                    (doc["_id"].as_str().and_then(|s| s.parse().ok()), doc["_version"].as_i64())
                {
                    found.insert(id, (version, doc["_source"].clone()));
                }
            }
        }
        Ok(found)
    }
}

fn case_index(tenant: Uuid, case: Uuid) -> String {
    Tenancy(tenant).case_index(case)
}

/// Folds one case event into its search document.
fn fold(doc: Option<Value>, event: &Event, case_event: &CaseEvent) -> Option<Value> {
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
            "case_type_name": null,
            "created_by": e.created_by,
            "assigned_to": e.assigned_to,
            "created_at": e.opened_at,
            "updated_at": e.opened_at,
            "due_date": e.due_date,
            "custom_fields": e.custom_fields,
            "tags": e.tags,
            "version": env.stream_version,
        })),
        (Some(mut doc), CaseEvent::Updated(e)) => {
            let mut set = |field: &str, value: Value| doc[field] = value;
            if let Some(c) = &e.title {
                set("title", json!(c.new));
            }
            if let Some(c) = &e.description {
                set("description", json!(c.new));
            }
            if let Some(c) = &e.priority {
                set("priority", json!(c.new));
            }
            if let Some(c) = &e.due_date {
                set("due_date", json!(c.new));
            }
            if let Some(c) = &e.tags {
                set("tags", json!(c.new));
            }
            if let Some(c) = &e.custom_fields {
                set("custom_fields", json!(c.new));
            }
            set("updated_at", json!(e.updated_at));
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
            doc["version"] = json!(env.stream_version);
            Some(doc)
        }
        // A case event before its CaseOpened: nothing to fold into (a gap; it is skipped).
        (None, _) => None,
        // A second CaseOpened for a stream cannot be recorded by the write side.
        (Some(doc), CaseEvent::Opened(_)) => Some(doc),
    }
}

#[async_trait::async_trait]
impl Projection for ElasticProjection {
    fn name(&self) -> &'static str {
        "elasticsearch"
    }

    #[tracing::instrument(skip_all, fields(projection = "elasticsearch", events = events.len()))]
    async fn apply(&self, events: &[Event]) -> Result<(), ApplyError> {
        let mut keys: Vec<(String, Uuid)> = Vec::new();
        for event in events {
            match &event.data {
                DomainEvent::Case(_) => {
                    let key =
                        (case_index(event.envelope.tenant_id, event.envelope.stream_id), event.envelope.stream_id);
                    if !keys.contains(&key) {
                        self.ensure_index(event.envelope.tenant_id, &key.0).await?;
                        keys.push(key);
                    }
                }
                // Tenants have no search index of their own.
                DomainEvent::Tenant(
                    TenantEvent::Provisioned(_)
                    | TenantEvent::SettingsUpdated(_)
                    | TenantEvent::Suspended(_)
                    | TenantEvent::Reactivated(_),
                )
                // User search and presence arrive with the read-model issue.
                | DomainEvent::User(
                    UserEvent::Created(_)
                    | UserEvent::ProfileUpdated(_)
                    | UserEvent::RoleChanged(_)
                    | UserEvent::StatusChanged(_)
                    | UserEvent::PermissionsSet(_)
                    | UserEvent::PreferencesSet(_)
                    | UserEvent::LoggedIn(_),
                )
                | DomainEvent::Team(
                    TeamEvent::Created(_)
                    | TeamEvent::Renamed(_)
                    | TeamEvent::MemberAdded(_)
                    | TeamEvent::MemberRemoved(_),
                )
                | DomainEvent::CaseType(
                    CaseTypeEvent::Created(_)
                    | CaseTypeEvent::Updated(_)
                    | CaseTypeEvent::Deactivated(_)
                    | CaseTypeEvent::Activated(_),
                )
                | DomainEvent::Channel(
                    ChannelEvent::Created(_)
                    | ChannelEvent::Updated(_)
                    | ChannelEvent::Deactivated(_)
                    | ChannelEvent::Activated(_),
                )
                // The interactions index arrives with the read-model issue.
                | DomainEvent::Interaction(InteractionEvent::Recorded(_))
                | DomainEvent::Task(TaskEvent::Created(_) | TaskEvent::Assigned(_) | TaskEvent::StatusChanged(_))
                // Note search arrives with the read-model issue.
                | DomainEvent::Note(NoteEvent::Added(_) | NoteEvent::Edited(_) | NoteEvent::Deleted(_))
                | DomainEvent::Document(DocumentEvent::Attached(_) | DocumentEvent::Deleted(_))
                | DomainEvent::Template(
                    TemplateEvent::Created(_)
                    | TemplateEvent::Updated(_)
                    | TemplateEvent::Deactivated(_)
                    | TemplateEvent::Activated(_),
                )
                | DomainEvent::Workflow(
                    WorkflowEvent::Created(_)
                    | WorkflowEvent::Updated(_)
                    | WorkflowEvent::Deactivated(_)
                    | WorkflowEvent::Activated(_),
                )
                | DomainEvent::FieldDefinition(
                    FieldDefinitionEvent::Created(_)
                    | FieldDefinitionEvent::Updated(_)
                    | FieldDefinitionEvent::Deactivated(_)
                    | FieldDefinitionEvent::Activated(_),
                ) => {}
            }
        }
        if keys.is_empty() {
            return Ok(());
        }
        let mut docs = self.current_docs(&keys).await?;
        let mut touched: Vec<Uuid> = Vec::new();
        for event in events {
            let DomainEvent::Case(case_event) = &event.data else {
                continue;
            };
            let id = event.envelope.stream_id;
            let (held, doc) = docs.remove(&id).map_or((0, None), |(v, d)| (v, Some(d)));
            let v = event.version();
            if v == held + 1 {
                let folded = fold(doc, event, case_event);
                if let Some(d) = folded {
                    docs.insert(id, (v, d));
                    if !touched.contains(&id) {
                        touched.push(id);
                    }
                }
            } else {
                if v > held + 1 {
                    tracing::warn!(stream_id = %id, version = v, held, "version gap; waiting for the missing event");
                }
                if let Some(d) = doc {
                    docs.insert(id, (held, d));
                }
            }
        }
        if touched.is_empty() {
            return Ok(());
        }
        let mut body: Vec<JsonBody<Value>> = Vec::with_capacity(touched.len() * 2);
        let mut owners: Vec<Uuid> = Vec::with_capacity(touched.len());
        for id in &touched {
            let Some((version, doc)) = docs.get(id) else {
                continue;
            };
            let tenant = doc["tenant_id"].as_str().and_then(|t| t.parse().ok()).unwrap_or_default();
            body.push(
                json!({ "index": { "_index": case_index(tenant, *id), "_id": id.to_string(),
                                         "version": version, "version_type": "external" } })
                .into(),
            );
            body.push(doc.clone().into());
            owners.push(*id);
        }
        let response =
            self.client.bulk(BulkParts::None).body(body).send().await.map_err(|e| ApplyError::Transient(e.into()))?;
        let result: Value = response.json().await.map_err(|e| ApplyError::Transient(e.into()))?;
        for (item, id) in result["items"].as_array().into_iter().flatten().zip(&owners) {
            let status = item["index"]["status"].as_u64().unwrap_or(0);
            match status {
                200..=299 | 409 => {} // 409: a newer version is already indexed.
                400..=499 => {
                    let event_id = events
                        .iter()
                        .rev()
                        .find(|e| e.envelope.stream_id == *id)
                        .map(|e| e.envelope.event_id)
                        .unwrap_or_default();
                    return Err(ApplyError::Poison {
                        event_id,
                        reason: format!("Elasticsearch refused it: {}", item["index"]["error"]),
                    });
                }
                _ => return Err(ApplyError::Transient(anyhow::anyhow!("bulk item failed: {item}"))),
            }
        }
        Ok(())
    }
}
