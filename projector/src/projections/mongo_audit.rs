//! The audit trail in MongoDB: one entry per event with field-level old/new values, actor,
//! IP, user agent, session and request ids (seed §2.2.2), in the collection of the month
//! of the event's time, `tenant_<id>_audit_logs_YYYY_MM` (seed §5.2.2).
//!
//! The entry's `_id` is the event id, so a redelivered event is a duplicate-key no-op.

use events::audit::{
    case_changes, case_type_changes, channel_changes, document_changes, erase_changes, field_definition_changes,
    interaction_changes, note_changes, task_changes, team_changes, template_changes, tenant_changes, user_changes,
    webhook_changes, workflow_changes, FieldChange, CUSTOMER_PERSONAL_FIELDS, USER_PERSONAL_FIELDS,
};
use events::tenant::TenantEvent;
use events::user::UserEvent;
use mongodb::bson::{self, doc, Bson, Document};
use mongodb::error::ErrorKind;
use mongodb::Database;
use serde_json::{json, Value};

use crate::event::Event;
use crate::mongo::{insert_new, Collections, TENANT_COLLECTIONS};
use crate::projection::{ApplyError, Checkpoint, Held, Placement, Projection};
use events::DomainEvent;

pub struct MongoAuditProjection {
    db: Database,
    collections: Collections,
}

impl MongoAuditProjection {
    pub fn new(db: Database) -> Self {
        Self::placed(db, Placement::live())
    }

    /// A projection writing where `placement` says (a rebuild's copy collections).
    pub fn placed(db: Database, placement: Placement) -> Self {
        Self { db, collections: Collections::placed(placement) }
    }
}

/// The seed's audit entry for an event (§2.2.2), without `_id` and `timestamp`, which each
/// store writes in its own types. Elasticsearch keeps the same entries (§2.4.2).
pub fn audit_record(event: &Event) -> Value {
    let env = &event.envelope;
    let (entity_type, action, changes): (&str, &str, Vec<FieldChange>) = match &event.data {
        DomainEvent::Case(e) => {
            let (action, changes) = case_changes(e);
            ("case", action, changes)
        }
        DomainEvent::Tenant(e) => {
            let (action, changes) = tenant_changes(e);
            ("tenant", action, changes)
        }
        DomainEvent::FieldDefinition(e) => {
            let (action, changes) = field_definition_changes(e);
            ("custom_field_definition", action, changes)
        }
        DomainEvent::Workflow(e) => {
            let (action, changes) = workflow_changes(e);
            ("workflow", action, changes)
        }
        DomainEvent::Template(e) => {
            let (action, changes) = template_changes(e);
            ("message_template", action, changes)
        }
        DomainEvent::Document(e) => {
            let (action, changes) = document_changes(e);
            ("document", action, changes)
        }
        DomainEvent::Note(e) => {
            let (action, changes) = note_changes(e);
            ("case_note", action, changes)
        }
        DomainEvent::Task(e) => {
            let (action, changes) = task_changes(e);
            ("task", action, changes)
        }
        DomainEvent::Channel(e) => {
            let (action, changes) = channel_changes(e);
            ("channel", action, changes)
        }
        DomainEvent::Interaction(e) => {
            let (action, changes) = interaction_changes(e);
            ("interaction", action, changes)
        }
        DomainEvent::CaseType(e) => {
            let (action, changes) = case_type_changes(e);
            ("case_type", action, changes)
        }
        DomainEvent::Team(e) => {
            let (action, changes) = team_changes(e);
            ("team", action, changes)
        }
        DomainEvent::User(e) => {
            let (action, changes) = user_changes(e);
            ("user", action, changes)
        }
        DomainEvent::Webhook(e) => {
            let (action, changes) = webhook_changes(e);
            ("webhook", action, changes)
        }
        DomainEvent::DataSubject(_) => ("data_subject", "erase", vec![]),
    };
    json!({
        "tenant_id": env.tenant_id.to_string(),
        "entity_type": entity_type,
        "entity_id": env.stream_id.to_string(),
        "entity_version": env.stream_version,
        "event_type": env.event_type,
        "action": action,
        "user_id": env.actor.user_id.to_string(),
        "role": env.actor.role,
        "changes": changes,
        "data_subject": env.data_subject.map(|s| s.to_string()),
        "ip_address": env.request.ip_address,
        "user_agent": env.request.user_agent,
        "context": {
            "session_id": env.request.session_id,
            "request_id": env.request.request_id,
            "correlation_id": env.correlation_id.to_string(),
        },
    })
}

fn entry(event: &Event) -> Result<Document, ApplyError> {
    let env = &event.envelope;
    let mut value = audit_record(event);
    value["_id"] = json!(env.event_id.to_string());
    let mut document = bson::to_document(&value)
        .map_err(|e| ApplyError::Poison { event_id: env.event_id, reason: format!("not storable as BSON: {e}") })?;
    document.insert("timestamp", bson::DateTime::from_millis(env.occurred_at.timestamp_millis()));
    Ok(document)
}

#[async_trait::async_trait]
impl Projection for MongoAuditProjection {
    fn name(&self) -> &'static str {
        crate::stores::ProjectionName::Mongo.as_str()
    }

    fn keeps_requests(&self) -> bool {
        true
    }

    async fn healthy(&self) -> anyhow::Result<()> {
        self.db.run_command(mongodb::bson::doc! { "ping": 1 }).await?;
        Ok(())
    }

    async fn held(&self, tenant: uuid::Uuid) -> anyhow::Result<Vec<Held>> {
        let mut versions = std::collections::HashMap::new();
        for (_, name) in runtime::audit_log::months(&self.db, self.collections.tenancy(tenant)).await? {
            for (stream, entries) in crate::mongo::held_versions(&self.db, &name, Some("entity_id")).await? {
                *versions.entry(stream).or_default() += entries;
            }
        }
        Ok(vec![Held { what: "audit entries", stream_types: &[], versions }])
    }

    #[tracing::instrument(skip_all, fields(projection = "mongo", events = events.len()))]
    async fn apply(&self, events: &[Event], _checkpoint: &Checkpoint) -> Result<(), ApplyError> {
        // Group by collection, keeping event order within each tenant.
        let mut by_collection: Vec<(String, Vec<Document>)> = Vec::new();
        for event in events {
            if let DomainEvent::Tenant(TenantEvent::Provisioned(_)) = &event.data {
                // A new tenant gets every collection of the seed, validators and indexes.
                for collection in TENANT_COLLECTIONS {
                    self.collections.ensure(&self.db, event.envelope.tenant_id, collection).await?;
                }
            }
            let env = &event.envelope;
            let name = self.collections.ensure_audit(&self.db, env.tenant_id, env.occurred_at).await?;
            let doc = entry(event)?;
            match by_collection.iter_mut().find(|(n, _)| *n == name) {
                Some((_, docs)) => docs.push(doc),
                None => by_collection.push((name, vec![doc])),
            }
        }
        for (name, docs) in by_collection {
            let coll = self.db.collection::<Document>(&name);
            if let Err(e) = coll.insert_many(docs).ordered(false).await {
                if !crate::mongo::only_duplicate_keys(&e) {
                    let refused_documents =
                        matches!(e.kind.as_ref(), ErrorKind::InsertMany(f) if f.write_errors.is_some());
                    return Err(if refused_documents {
                        ApplyError::Unexplained(e.into())
                    } else {
                        ApplyError::Transient(e.into())
                    });
                }
            }
        }
        for event in events {
            let Some(subject) = event.erased_subject() else { continue };
            let erasing_a_user = matches!(&event.data, DomainEvent::User(UserEvent::Erased(_)));
            self.erase(event.envelope.tenant_id, subject, erasing_a_user)
                .await
                .map_err(|e| ApplyError::Transient(e.into()))?;
        }
        Ok(())
    }
}

impl MongoAuditProjection {
    /// Every month's entries about `subject` (and, for a user, their requests) erased.
    async fn erase(&self, tenant: uuid::Uuid, subject: uuid::Uuid, a_user: bool) -> mongodb::error::Result<()> {
        let (id, subject) = (tenant.to_string(), subject.to_string());
        for (_, name) in runtime::audit_log::months(&self.db, self.collections.tenancy(tenant)).await? {
            let coll = self.db.collection::<Document>(&name);
            if a_user {
                let theirs = doc! { "tenant_id": &id, "entity_id": &subject, "entity_type": "user" };
                erase_entries(&coll, theirs, USER_PERSONAL_FIELDS).await?;
                forget_requests_of(&coll, &id, &subject).await?;
            }
            let about = doc! { "tenant_id": &id, "data_subject": &subject };
            erase_entries(&coll, about, CUSTOMER_PERSONAL_FIELDS).await?;
        }
        Ok(())
    }
}

/// The IP address and user agent of what an erased user did, in their entries as actor:
/// gone, as `RequestContext::erase` makes them in any event delivered again.
async fn forget_requests_of(
    coll: &mongodb::Collection<Document>,
    tenant: &str,
    user: &str,
) -> mongodb::error::Result<()> {
    let theirs = doc! { "tenant_id": tenant, "user_id": user };
    let mut with_address = theirs.clone();
    with_address.insert("ip_address", doc! { "$ne": Bson::Null });
    coll.update_many(with_address, doc! { "$set": { "ip_address": Bson::Null } }).await?;
    let mut with_agent = theirs;
    with_agent.insert("user_agent", doc! { "$nin": [Bson::Null, events::personal::ERASED] });
    coll.update_many(with_agent, doc! { "$set": { "user_agent": events::personal::ERASED } }).await?;
    Ok(())
}

/// Replaces the values of `fields` in the audit entries `filter` finds with `[erased]`
/// (entries written before an erasure hold them as they were). Filters name the tenant
/// first, as the collection's indexes do.
async fn erase_entries(
    coll: &mongodb::Collection<Document>,
    filter: Document,
    fields: &[&str],
) -> mongodb::error::Result<()> {
    use futures::TryStreamExt;
    let mut entries = coll.find(filter).projection(doc! { "changes": 1 }).await?;
    while let Some(entry) = entries.try_next().await? {
        let Ok(changes) = entry.get_array("changes") else { continue };
        let mut changes = Bson::Array(changes.clone()).into_relaxed_extjson();
        if erase_changes(&mut changes, fields) {
            let changes = bson::to_bson(&changes).map_err(|e| mongodb::error::Error::custom(e.to_string()))?;
            coll.update_one(
                doc! { "_id": entry.get("_id").cloned().unwrap_or(Bson::Null) },
                doc! { "$set": { "changes": changes } },
            )
            .await?;
        }
    }
    Ok(())
}

/// Moves the entries of every audit collection of before the monthly ones (one
/// `tenant_<id>_audit_logs` per tenant) into the months of their timestamps, then drops
/// it. An entry moved already is a duplicate key, so a move cut short is finished by the
/// next; until then the entries not yet moved are missing from the audit reads.
pub async fn split_single_collections(db: &Database) -> anyhow::Result<u64> {
    use futures::TryStreamExt;
    const CHUNK: usize = 1000;
    let single = doc! { "name": { "$regex": "^tenant_[0-9a-f]{32}_audit_logs$" } };
    let mut moved: u64 = 0;
    for name in db.list_collection_names().filter(single).await? {
        let Some(tenant) = name.strip_prefix("tenant_").and_then(|n| n.get(..32)).and_then(|h| h.parse().ok()) else {
            continue;
        };
        let months = Collections::default();
        let mut chunks: Vec<(String, Vec<Document>)> = Vec::new();
        let mut entries = db.collection::<Document>(&name).find(doc! {}).await?;
        while let Some(entry) = entries.try_next().await? {
            let at = entry
                .get_datetime("timestamp")
                .ok()
                .and_then(|t| chrono::DateTime::from_timestamp_millis(t.timestamp_millis()))
                .ok_or_else(|| anyhow::anyhow!("an entry of {name} has no timestamp: {:?}", entry.get("_id")))?;
            let month = months.ensure_audit(db, tenant, at).await?;
            let chunk = match chunks.iter_mut().find(|(m, _)| *m == month) {
                Some((_, chunk)) => chunk,
                None => {
                    chunks.push((month.clone(), Vec::new()));
                    &mut chunks.last_mut().ok_or_else(|| anyhow::anyhow!("just pushed"))?.1
                }
            };
            chunk.push(entry);
            if chunk.len() >= CHUNK {
                moved = moved.saturating_add(chunk.len() as u64);
                insert_new(&db.collection(&month), std::mem::take(chunk)).await?;
            }
        }
        for (month, chunk) in chunks {
            moved = moved.saturating_add(chunk.len() as u64);
            insert_new(&db.collection(&month), chunk).await?;
        }
        db.collection::<Document>(&name).drop().await?;
        tracing::info!(collection = %name, "audit entries moved into monthly collections");
    }
    Ok(moved)
}

/// [`split_single_collections`] at start-up, retried each minute until it succeeds.
pub async fn split_single_collections_until_done(db: Database) {
    loop {
        match split_single_collections(&db).await {
            Ok(moved) => {
                if moved > 0 {
                    tracing::info!(moved, "the audit log is kept by month now");
                }
                return;
            }
            Err(e) => tracing::warn!(error = %e, "moving audit entries into monthly collections; retrying in a minute"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    }
}
