//! Case notes in MongoDB: `tenant_<id>_case_notes` with the seed's shape (§2.2.2) and
//! indexes (§4.2.1). Each document keeps the note stream's `version`; an event applies
//! only to the version before it, so redelivery changes nothing. Deleted notes keep
//! their document with `deleted_at` set, so a late redelivery cannot resurrect them.

use events::note::NoteEvent;
use mongodb::bson::{doc, Document};
use mongodb::Database;
use runtime::tenancy::Tenancy;

use crate::event::{DomainEvent, Event};
use crate::mongo::{date, insert_once, to_bson, update_guarded, IndexedCollections};
use crate::projection::{ApplyError, Checkpoint, Projection};

pub const CASE_NOTES: &str = "case_notes";

pub struct MongoNotesProjection {
    db: Database,
    indexed: IndexedCollections,
}

impl MongoNotesProjection {
    pub fn new(db: Database) -> Self {
        Self { db, indexed: IndexedCollections::default() }
    }
}

#[async_trait::async_trait]
impl Projection for MongoNotesProjection {
    fn name(&self) -> &'static str {
        "mongo_notes"
    }

    #[tracing::instrument(skip_all, fields(projection = "mongo_notes", events = events.len()))]
    async fn apply(&self, events: &[Event], _checkpoint: &Checkpoint) -> Result<(), ApplyError> {
        for event in events {
            let DomainEvent::Note(note_event) = &event.data else { continue };
            let env = &event.envelope;
            let coll = self.db.collection::<Document>(&Tenancy(env.tenant_id).mongo_collection(CASE_NOTES));
            let indexes = [
                (doc! { "tenant_id": 1, "created_at": -1 }, "tenant_created"),
                (doc! { "tenant_id": 1, "case_id": 1 }, "tenant_case"),
            ];
            self.indexed.ensure(&coll, &indexes).await?;
            match note_event {
                NoteEvent::Added(e) => {
                    let document = doc! {
                        "_id": env.stream_id.to_string(),
                        "tenant_id": env.tenant_id.to_string(),
                        "case_id": e.case_id.to_string(),
                        "user_id": e.author_id.to_string(),
                        "content": &e.content,
                        "created_at": date(e.created_at),
                        "updated_at": date(e.created_at),
                        "is_internal": e.is_internal,
                        "tags": to_bson(event, &e.tags)?,
                        "attachments": to_bson(event, &e.attachments)?,
                        "version": env.stream_version,
                    };
                    insert_once(&coll, document).await?;
                }
                NoteEvent::Edited(e) => {
                    let mut set = doc! { "updated_at": date(e.edited_at) };
                    if let Some(c) = &e.content {
                        set.insert("content", &c.new);
                    }
                    if let Some(c) = &e.is_internal {
                        set.insert("is_internal", c.new);
                    }
                    if let Some(c) = &e.tags {
                        set.insert("tags", to_bson(event, &c.new)?);
                    }
                    update_guarded(&coll, event, set).await?;
                }
                NoteEvent::Deleted(e) => {
                    let set = doc! { "deleted_at": date(e.deleted_at), "updated_at": date(e.deleted_at) };
                    update_guarded(&coll, event, set).await?;
                }
            }
        }
        Ok(())
    }
}
