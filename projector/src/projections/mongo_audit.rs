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
    let (action, changes): (&str, Vec<FieldChange>) = match &event.data {
        DomainEvent::Case(e) => case_changes(e),
        DomainEvent::Tenant(e) => tenant_changes(e),
        DomainEvent::FieldDefinition(e) => field_definition_changes(e),
        DomainEvent::Workflow(e) => workflow_changes(e),
        DomainEvent::Template(e) => template_changes(e),
        DomainEvent::Document(e) => document_changes(e),
        DomainEvent::Note(e) => note_changes(e),
        DomainEvent::Task(e) => task_changes(e),
        DomainEvent::Channel(e) => channel_changes(e),
        DomainEvent::Interaction(e) => interaction_changes(e),
        DomainEvent::CaseType(e) => case_type_changes(e),
        DomainEvent::Team(e) => team_changes(e),
        DomainEvent::User(e) => user_changes(e),
        DomainEvent::Webhook(e) => webhook_changes(e),
        DomainEvent::DataSubject(_) => ("erase", vec![]),
    };
    json!({
        "tenant_id": env.tenant_id.to_string(),
        "entity_type": events::audit::entity_type(env.stream_type),
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
/// it; how many entries it moved. The audit projection's lock is held exclusively while
/// it does (`crate::control`), so no batch of any projector (an erasure, say) runs in
/// between. An entry moved already is a duplicate key, so a move cut short is finished
/// by the next; until then the entries not yet moved are missing from the audit reads.
pub async fn split_single_collections(db: &Database, pool: &sqlx::PgPool) -> anyhow::Result<u64> {
    use futures::TryStreamExt;
    const CHUNK: usize = 1000;
    let single = doc! { "name": { "$regex": "^tenant_[0-9a-f]{32}_audit_logs$" } };
    if db.list_collection_names().filter(single.clone()).await?.is_empty() {
        return Ok(0);
    }
    let hold = crate::control::exclusive(pool, crate::stores::ProjectionName::Mongo.as_str()).await?;
    let mut moved: u64 = 0;
    for name in db.list_collection_names().filter(single).await? {
        let Some(tenant) = name.strip_prefix("tenant_").and_then(|n| n.get(..32)).and_then(|h| h.parse().ok()) else {
            continue;
        };
        let months = Collections::default();
        // Entries come in about the order they were written, so mostly of one month at a
        // time: a chunk is written when it is full or the month changes.
        let mut chunk: (String, Vec<Document>) = (String::new(), Vec::new());
        let mut entries = db.collection::<Document>(&name).find(doc! {}).await?;
        while let Some(entry) = entries.try_next().await? {
            let month = months.ensure_audit(db, tenant, entry_time(&entry)).await?;
            if month != chunk.0 || chunk.1.len() >= CHUNK {
                let (full, entries) = std::mem::replace(&mut chunk, (month, Vec::new()));
                moved = moved.saturating_add(entries.len() as u64);
                insert_new(&db.collection(&full), entries).await?;
            }
            chunk.1.push(entry);
        }
        moved = moved.saturating_add(chunk.1.len() as u64);
        insert_new(&db.collection(&chunk.0), chunk.1).await?;
        db.collection::<Document>(&name).drop().await?;
        tracing::info!(collection = %name, "audit entries moved into monthly collections");
    }
    hold.commit().await?;
    Ok(moved)
}

/// When an entry was written: its timestamp or else its event's (the `_id` is the event
/// id, a v7 UUID).
fn entry_time(entry: &Document) -> chrono::DateTime<chrono::Utc> {
    let stamped = entry
        .get_datetime("timestamp")
        .ok()
        .and_then(|t| chrono::DateTime::from_timestamp_millis(t.timestamp_millis()));
    let minted = || entry.get_str("_id").ok()?.parse().ok().and_then(runtime::tenancy::uuid_time);
    stamped.or_else(minted).unwrap_or(chrono::DateTime::UNIX_EPOCH)
}

/// [`split_single_collections`] at start-up and then every hour (a projector of an older
/// version, still running during an upgrade, may have written one again), retried each
/// minute after a failure.
pub async fn keep_audit_logs_by_month(db: Database, pool: sqlx::PgPool) {
    loop {
        let wait = match split_single_collections(&db, &pool).await {
            Ok(moved) => {
                if moved > 0 {
                    tracing::info!(moved, "the audit log is kept by month now");
                }
                3600
            }
            Err(e) => {
                tracing::warn!(error = %e, "moving audit entries into monthly collections; retrying in a minute");
                60
            }
        };
        tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
    }
}
