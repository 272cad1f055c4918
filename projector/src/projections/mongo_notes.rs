//! Case notes in MongoDB: `tenant_<id>_case_notes` with the seed's shape (§2.2.2) and
//! indexes (§4.2.1). Each document keeps the note stream's `version`; an event applies
//! only to the version before it, so redelivery changes nothing. Deleted notes keep
//! their document with `deleted_at` set, so a late redelivery cannot resurrect them.

use std::collections::HashSet;
use std::sync::Mutex;

use mongodb::bson::{self, doc, Document};
use mongodb::error::ErrorKind;
use mongodb::options::IndexOptions;
use mongodb::{Database, IndexModel};
use runtime::tenancy::Tenancy;

use crate::event::{DomainEvent, Event};
use crate::projection::{ApplyError, Projection};
use events::note::NoteEvent;

pub const CASE_NOTES: &str = "case_notes";
const DUPLICATE_KEY: i32 = 11000;

pub struct MongoNotesProjection {
    db: Database,
    indexed: Mutex<HashSet<String>>,
}

impl MongoNotesProjection {
    pub fn new(db: Database) -> Self {
        Self { db, indexed: Mutex::new(HashSet::new()) }
    }

    async fn ensure_indexes(&self, collection: &str) -> Result<(), ApplyError> {
        if self.indexed.lock().map(|s| s.contains(collection)).unwrap_or(false) {
            return Ok(());
        }
        let models = [
            (doc! { "tenant_id": 1, "created_at": -1 }, "tenant_created"),
            (doc! { "tenant_id": 1, "case_id": 1 }, "tenant_case"),
        ]
        .map(|(keys, name)| {
            IndexModel::builder().keys(keys).options(IndexOptions::builder().name(name.to_owned()).build()).build()
        });
        self.db
            .collection::<Document>(collection)
            .create_indexes(models)
            .await
            .map_err(|e| ApplyError::Transient(e.into()))?;
        if let Ok(mut s) = self.indexed.lock() {
            s.insert(collection.to_owned());
        }
        Ok(())
    }
}

fn bson_value<T: serde::Serialize>(event: &Event, value: &T) -> Result<bson::Bson, ApplyError> {
    bson::to_bson(value).map_err(|e| ApplyError::Poison {
        event_id: event.envelope.event_id,
        reason: format!("not storable as BSON: {e}"),
    })
}

fn date(at: chrono::DateTime<chrono::Utc>) -> bson::DateTime {
    bson::DateTime::from_millis(at.timestamp_millis())
}

#[async_trait::async_trait]
impl Projection for MongoNotesProjection {
    fn name(&self) -> &'static str {
        "mongo_notes"
    }

    #[tracing::instrument(skip_all, fields(projection = "mongo_notes", events = events.len()))]
    async fn apply(&self, events: &[Event]) -> Result<(), ApplyError> {
        for event in events {
            let DomainEvent::Note(note_event) = &event.data else { continue };
            let env = &event.envelope;
            let name = Tenancy(env.tenant_id).mongo_collection(CASE_NOTES);
            self.ensure_indexes(&name).await?;
            let coll = self.db.collection::<Document>(&name);
            let id = env.stream_id.to_string();
            let v = env.stream_version;
            let outcome = match note_event {
                NoteEvent::Added(e) => {
                    let document = doc! {
                        "_id": &id,
                        "tenant_id": env.tenant_id.to_string(),
                        "case_id": e.case_id.to_string(),
                        "user_id": e.author_id.to_string(),
                        "content": &e.content,
                        "created_at": date(e.created_at),
                        "updated_at": date(e.created_at),
                        "is_internal": e.is_internal,
                        "tags": bson_value(event, &e.tags)?,
                        "attachments": bson_value(event, &e.attachments)?,
                        "version": v,
                    };
                    match coll.insert_one(document).await {
                        Err(err) if matches!(err.kind.as_ref(), ErrorKind::Write(mongodb::error::WriteFailure::WriteError(w)) if w.code == DUPLICATE_KEY) => Ok(()),
                        other => other.map(|_| ()),
                    }
                }
                NoteEvent::Edited(e) => {
                    let mut set = doc! { "updated_at": date(e.edited_at), "version": v };
                    if let Some(c) = &e.content {
                        set.insert("content", &c.new);
                    }
                    if let Some(c) = &e.is_internal {
                        set.insert("is_internal", c.new);
                    }
                    if let Some(c) = &e.tags {
                        set.insert("tags", bson_value(event, &c.new)?);
                    }
                    coll.update_one(doc! { "_id": &id, "version": v - 1 }, doc! { "$set": set }).await.map(|_| ())
                }
                NoteEvent::Deleted(e) => coll
                    .update_one(
                        doc! { "_id": &id, "version": v - 1 },
                        doc! { "$set": { "deleted_at": date(e.deleted_at), "updated_at": date(e.deleted_at), "version": v } },
                    )
                    .await
                    .map(|_| ()),
            };
            outcome.map_err(|e| ApplyError::Transient(e.into()))?;
        }
        Ok(())
    }
}
