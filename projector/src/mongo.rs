//! What the MongoDB projections share: the tenant collections with the seed's indexes and
//! validators (§2.2.2, §4.2, §7.1.2), and a batched, version-guarded writer.
//!
//! Writes of one batch go to each collection as one `update` command holding every
//! statement in event order (one round trip per collection per batch): an insert is an
//! upsert with `$setOnInsert` (a redelivered first event changes nothing), and a later
//! event updates only the document at the version before its own.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

use mongodb::bson::{self, doc, Bson, Document};
use mongodb::options::IndexOptions;
use mongodb::{Database, IndexModel};
use runtime::tenancy::{Tenancy, AUDIT_LOGS};

use crate::projection::Placement;
use uuid::Uuid;

use crate::event::Event;
use crate::projection::ApplyError;

pub const CASE_NOTES: &str = "case_notes";
pub const MESSAGE_TEMPLATES: &str = "message_templates";
pub const CUSTOM_FIELD_DEFINITIONS: &str = "custom_field_definitions";
pub const AI_RESULTS_CACHE: &str = "ai_results_cache";

/// Every per-tenant collection but the audit log's months, made when the tenant is
/// provisioned (each month's audit collection is made with its first entry).
pub const TENANT_COLLECTIONS: [&str; 4] = [CASE_NOTES, MESSAGE_TEMPLATES, CUSTOM_FIELD_DEFINITIONS, AI_RESULTS_CACHE];

const DOCUMENT_FAILED_VALIDATION: i32 = 121;
/// Write errors about the document itself, which the same document meets every time:
/// a validator, a bad value or type, a field name the server refuses, a document or an
/// index key over the server's size limit.
const REFUSES_THE_DOCUMENT: [i32; 8] = [DOCUMENT_FAILED_VALIDATION, 2, 14, 52, 56, 57, 10334, 17280];
const NAMESPACE_EXISTS: i32 = 48;

fn index(keys: Document, name: &str) -> IndexModel {
    IndexModel::builder().keys(keys).options(IndexOptions::builder().name(name.to_owned()).build()).build()
}

/// The seed's indexes for a collection (§4.2.1, §4.2.3). The seed's text index on notes
/// is left out: note search is Elasticsearch's (the local Mongo-wire server has none).
/// Unique only where the key is natural to the store: read models hold no cross-stream
/// uniqueness (events of different streams arrive in any order).
fn indexes(collection: &str) -> Vec<IndexModel> {
    match collection {
        AUDIT_LOGS => vec![
            index(doc! { "tenant_id": 1, "timestamp": -1 }, "tenant_timestamp"),
            index(
                doc! { "tenant_id": 1, "entity_type": 1, "entity_id": 1, "entity_version": -1 },
                "tenant_entity_version",
            ),
            // An erasure finds the entries of events sealed for the subject, and those of
            // what an erased user did.
            index(doc! { "tenant_id": 1, "data_subject": 1 }, "tenant_data_subject"),
            index(doc! { "tenant_id": 1, "user_id": 1 }, "tenant_user"),
        ],
        CASE_NOTES => vec![
            index(doc! { "tenant_id": 1, "created_at": -1 }, "tenant_created"),
            index(doc! { "tenant_id": 1, "case_id": 1 }, "tenant_case"),
            index(doc! { "tenant_id": 1, "customer_id": 1 }, "tenant_customer"),
        ],
        MESSAGE_TEMPLATES => vec![
            index(doc! { "tenant_id": 1, "created_at": -1 }, "tenant_created"),
            index(doc! { "tenant_id": 1, "channel_type": 1, "is_active": 1 }, "tenant_channel_active"),
        ],
        CUSTOM_FIELD_DEFINITIONS => vec![
            index(doc! { "tenant_id": 1, "entity_type": 1, "field_name": 1 }, "tenant_entity_field"),
            index(doc! { "tenant_id": 1, "entity_type": 1, "order": 1 }, "tenant_entity_order"),
        ],
        AI_RESULTS_CACHE => vec![
            index(doc! { "tenant_id": 1, "created_at": -1 }, "tenant_created"),
            IndexModel::builder()
                .keys(doc! { "tenant_id": 1, "service_type": 1, "input_hash": 1 })
                .options(IndexOptions::builder().name("tenant_service_input".to_owned()).unique(true).build())
                .build(),
            IndexModel::builder()
                .keys(doc! { "expires_at": 1 })
                .options(IndexOptions::builder().name("expires_at_ttl".to_owned()).expire_after(Duration::ZERO).build())
                .build(),
        ],
        _ => Vec::new(),
    }
}

/// The `$jsonSchema` validator of a collection (§7.1.2): the fields every document has.
pub fn validator(collection: &str) -> Document {
    let (required, properties) = match collection {
        AUDIT_LOGS => (
            vec!["tenant_id", "entity_type", "entity_id", "action", "timestamp"],
            doc! {
                "tenant_id": { "bsonType": "string" }, "entity_type": { "bsonType": "string" },
                "entity_id": { "bsonType": "string" }, "action": { "bsonType": "string" },
                "timestamp": { "bsonType": "date" }, "changes": { "bsonType": "array" },
            },
        ),
        CASE_NOTES => (
            vec!["tenant_id", "case_id", "content", "created_at"],
            doc! {
                "tenant_id": { "bsonType": "string" }, "case_id": { "bsonType": "string" },
                "content": { "bsonType": "string" }, "created_at": { "bsonType": "date" },
                "is_internal": { "bsonType": "bool", "description": "Flag indicating if the note is internal" },
            },
        ),
        MESSAGE_TEMPLATES => (
            vec!["tenant_id", "name", "channel_type", "content", "created_at"],
            doc! {
                "tenant_id": { "bsonType": "string" }, "name": { "bsonType": "string" },
                "channel_type": { "bsonType": "string" }, "content": { "bsonType": "string" },
                "created_at": { "bsonType": "date" }, "is_active": { "bsonType": "bool" },
            },
        ),
        CUSTOM_FIELD_DEFINITIONS => (
            vec!["tenant_id", "entity_type", "field_name", "field_type", "created_at"],
            doc! {
                "tenant_id": { "bsonType": "string" }, "entity_type": { "bsonType": "string" },
                "field_name": { "bsonType": "string" }, "field_type": { "bsonType": "string" },
                "created_at": { "bsonType": "date" }, "is_active": { "bsonType": "bool" },
            },
        ),
        AI_RESULTS_CACHE => (
            vec!["tenant_id", "service_type", "input_hash", "result", "created_at", "expires_at"],
            doc! {
                "tenant_id": { "bsonType": "string" }, "service_type": { "bsonType": "string" },
                "input_hash": { "bsonType": "string" }, "result": { "bsonType": "object" },
                "created_at": { "bsonType": "date" }, "expires_at": { "bsonType": "date" },
            },
        ),
        _ => return doc! {},
    };
    doc! { "$jsonSchema": { "bsonType": "object", "required": required, "properties": properties } }
}

/// Tenant collections this process has already set up (validator and indexes), named
/// where the projection's placement says (live names, or a rebuild's copy names).
#[derive(Default)]
pub struct Collections(Mutex<HashSet<String>>, Placement);

impl Collections {
    pub fn placed(placement: Placement) -> Self {
        Self(Mutex::default(), placement)
    }

    /// Creates `tenant_<id>_<collection>` with its validator (or brings the validator of
    /// an existing one up to date) and its indexes, once per process.
    pub async fn ensure(&self, db: &Database, tenant: Uuid, collection: &str) -> Result<String, ApplyError> {
        self.ensure_named(db, self.name(tenant, collection), collection).await
    }

    /// The same for the audit collection of the month of `at`.
    pub async fn ensure_audit(&self, db: &Database, tenant: Uuid, at: DateTime<Utc>) -> Result<String, ApplyError> {
        self.ensure_named(db, self.tenancy(tenant).mongo_audit_collection(at), AUDIT_LOGS).await
    }

    /// `name`, a collection of kind `collection`, with its validator and indexes.
    async fn ensure_named(&self, db: &Database, name: String, collection: &str) -> Result<String, ApplyError> {
        if self.0.lock().map(|s| s.contains(&name)).unwrap_or(false) {
            return Ok(name);
        }
        let transient = |e: mongodb::error::Error| ApplyError::Transient(e.into());
        let created = db
            .run_command(doc! { "create": &name, "validator": validator(collection), "validationLevel": "moderate" })
            .await;
        match created {
            Ok(_) => {}
            Err(e) if command_code(&e) == Some(NAMESPACE_EXISTS) => {
                db.run_command(
                    doc! { "collMod": &name, "validator": validator(collection), "validationLevel": "moderate" },
                )
                .await
                .map_err(transient)?;
            }
            Err(e) => return Err(transient(e)),
        }
        db.collection::<Document>(&name).create_indexes(indexes(collection)).await.map_err(transient)?;
        if let Ok(mut s) = self.0.lock() {
            s.insert(name.clone());
        }
        Ok(name)
    }
}

impl Collections {
    /// The name a tenant's collection has under this placement.
    pub fn name(&self, tenant: Uuid, collection: &str) -> String {
        self.tenancy(tenant).mongo_collection(collection)
    }

    /// The names a tenant's collections take under this placement.
    pub fn tenancy(&self, tenant: Uuid) -> Tenancy {
        self.1.of(tenant).unwrap_or(Tenancy(tenant))
    }
}

/// For `verify`: per stream, the `version` of its document in collection `name` or, when
/// `per_event` names the field holding the stream id, the number of documents of that
/// stream (a log with one document per event). A missing collection holds nothing.
pub async fn held_versions(db: &Database, name: &str, per_event: Option<&str>) -> anyhow::Result<HashMap<Uuid, i64>> {
    use futures::TryStreamExt;
    let coll = db.collection::<Document>(name);
    let mut held: HashMap<Uuid, i64> = HashMap::new();
    let projection = match per_event {
        Some(field) => doc! { "_id": 0, field: 1 },
        None => doc! { "_id": 1, "version": 1 },
    };
    let mut cursor = coll.find(doc! {}).projection(projection).await?;
    while let Some(document) = cursor.try_next().await? {
        let id = document.get_str(per_event.unwrap_or("_id")).ok().and_then(|s| s.parse::<Uuid>().ok());
        let Some(id) = id else { continue };
        match per_event {
            Some(_) => *held.entry(id).or_default() += 1,
            None => {
                let version = document.get_i64("version").or_else(|_| document.get_i32("version").map(i64::from));
                held.insert(id, version.unwrap_or(0));
            }
        }
    }
    Ok(held)
}

fn command_code(error: &mongodb::error::Error) -> Option<i32> {
    match error.kind.as_ref() {
        mongodb::error::ErrorKind::Command(c) => Some(c.code),
        _ => None,
    }
}

/// The writes of one batch, per collection in event order.
#[derive(Default)]
pub struct Writes {
    order: Vec<String>,
    statements: HashMap<String, Vec<(Document, Uuid)>>,
}

impl Writes {
    fn push(&mut self, collection: &str, statement: Document, event_id: Uuid) {
        if !self.statements.contains_key(collection) {
            self.order.push(collection.to_owned());
        }
        self.statements.entry(collection.to_owned()).or_default().push((statement, event_id));
    }

    /// The first version of a document; an existing `_id` means it was applied.
    pub fn insert_once(&mut self, collection: &str, event: &Event, mut document: Document) {
        let id = document.remove("_id").unwrap_or(Bson::String(event.envelope.stream_id.to_string()));
        self.push(
            collection,
            doc! { "q": { "_id": id }, "u": { "$setOnInsert": document }, "upsert": true },
            event.envelope.event_id,
        );
    }

    /// `$set` on the version before the event's; anything else was applied already (or
    /// waits for a missing event).
    pub fn update_guarded(&mut self, collection: &str, event: &Event, mut set: Document) {
        let v = event.envelope.stream_version;
        set.insert("version", v);
        self.push(
            collection,
            doc! { "q": { "_id": event.envelope.stream_id.to_string(), "version": v - 1 }, "u": { "$set": set } },
            event.envelope.event_id,
        );
    }

    /// One `update` command per collection. A document the validator refuses parks its
    /// event; anything else is retried.
    pub async fn flush(self, db: &Database) -> Result<(), ApplyError> {
        let Writes { order, mut statements } = self;
        for collection in order {
            let Some(batch) = statements.remove(&collection) else { continue };
            let updates: Vec<Document> = batch.iter().map(|(s, _)| s.clone()).collect();
            let reply = db
                .run_command(doc! { "update": &collection, "updates": updates, "ordered": true })
                .await
                .map_err(|e| ApplyError::Transient(e.into()))?;
            if let Ok(errors) = reply.get_array("writeErrors") {
                let Some(first) = errors.iter().find_map(Bson::as_document) else { continue };
                let at = first.get_i32("index").unwrap_or(0).max(0) as usize;
                let code = first.get_i32("code").unwrap_or(0);
                let message = first.get_str("errmsg").unwrap_or("write refused");
                let event_id = batch.get(at).map(|(_, id)| *id).unwrap_or_default();
                if REFUSES_THE_DOCUMENT.contains(&code) {
                    return Err(ApplyError::Poison {
                        event_id,
                        reason: format!("MongoDB refused it ({code}): {message}"),
                    });
                }
                // A write error names no store trouble (those fail the whole command).
                return Err(ApplyError::Unexplained(anyhow::anyhow!("{collection}: {message} ({code})")));
            }
        }
        Ok(())
    }
}

pub fn to_bson<T: serde::Serialize>(event: &Event, value: &T) -> Result<bson::Bson, ApplyError> {
    bson::to_bson(value).map_err(|e| ApplyError::Poison {
        event_id: event.envelope.event_id,
        reason: format!("not storable as BSON: {e}"),
    })
}

pub fn date(at: chrono::DateTime<chrono::Utc>) -> bson::DateTime {
    bson::DateTime::from_millis(at.timestamp_millis())
}

/// Inserts `documents`; those already there (same `_id`) stay as they are.
pub async fn insert_new(
    collection: &mongodb::Collection<Document>,
    documents: Vec<Document>,
) -> mongodb::error::Result<()> {
    if documents.is_empty() {
        return Ok(());
    }
    match collection.insert_many(documents).ordered(false).await {
        Err(e) if !only_duplicate_keys(&e) => Err(e),
        _ => Ok(()),
    }
}

/// An `insert_many` (unordered) refused only documents already there (same `_id`):
/// what a redelivered batch or a second restore meets, and not a failure.
pub fn only_duplicate_keys(error: &mongodb::error::Error) -> bool {
    const DUPLICATE_KEY: i32 = 11000;
    matches!(error.kind.as_ref(), mongodb::error::ErrorKind::InsertMany(failure)
        if failure.write_concern_error.is_none()
            && failure.write_errors.as_ref().is_some_and(|errors| errors.iter().all(|w| w.code == DUPLICATE_KEY)))
}
