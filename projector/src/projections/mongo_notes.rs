//! Case notes in MongoDB: `tenant_<id>_case_notes` with the seed's shape (§2.2.2) and
//! indexes (§4.2.1). Each document keeps the note stream's `version`; an event applies
//! only to the version before it, so redelivery changes nothing. Deleted notes keep
//! their document with `deleted_at` set, so a late redelivery cannot resurrect them.

use events::note::NoteEvent;
use mongodb::bson::doc;
use mongodb::Database;

use crate::event::Event;
use crate::mongo::{date, to_bson, Collections, Writes, CASE_NOTES};
use crate::projection::{ApplyError, Checkpoint, Held, Placement, Projection};
use events::DomainEvent;

pub struct MongoNotesProjection {
    db: Database,
    collections: Collections,
}

impl MongoNotesProjection {
    pub fn new(db: Database) -> Self {
        Self::placed(db, Placement::live())
    }

    /// The content of the notes on an erased customer's cases reads as the marker.
    async fn erase_customer(&self, tenant: uuid::Uuid, customer: uuid::Uuid) -> Result<(), ApplyError> {
        let coll = self.collections.ensure(&self.db, tenant, CASE_NOTES).await?;
        self.db
            .collection::<mongodb::bson::Document>(&coll)
            .update_many(
                doc! { "tenant_id": tenant.to_string(), "customer_id": customer.to_string() },
                doc! { "$set": { "content": events::personal::ERASED } },
            )
            .await
            .map_err(|e| ApplyError::Transient(e.into()))?;
        Ok(())
    }

    /// A projection writing where `placement` says (a rebuild's copy collections).
    pub fn placed(db: Database, placement: Placement) -> Self {
        Self { db, collections: Collections::placed(placement) }
    }
}

#[async_trait::async_trait]
impl Projection for MongoNotesProjection {
    fn name(&self) -> &'static str {
        crate::stores::ProjectionName::MongoNotes.as_str()
    }

    async fn healthy(&self) -> anyhow::Result<()> {
        self.db.run_command(mongodb::bson::doc! { "ping": 1 }).await?;
        Ok(())
    }

    async fn held(&self, tenant: uuid::Uuid) -> anyhow::Result<Vec<Held>> {
        let name = self.collections.name(tenant, CASE_NOTES);
        let versions = crate::mongo::held_versions(&self.db, &name, None).await?;
        Ok(vec![Held { what: "case_notes collection", stream_types: &["note"], versions }])
    }

    #[tracing::instrument(skip_all, fields(projection = "mongo_notes", events = events.len()))]
    async fn apply(&self, events: &[Event], _checkpoint: &Checkpoint) -> Result<(), ApplyError> {
        let mut writes = Writes::default();
        for event in events {
            if let Some(subject) = event.erased_subject() {
                // The notes written before the erasure, this batch's too, are replaced.
                std::mem::take(&mut writes).flush(&self.db).await?;
                self.erase_customer(event.envelope.tenant_id, subject).await?;
                continue;
            }
            let DomainEvent::Note(note_event) = &event.data else { continue };
            let env = &event.envelope;
            let coll = self.collections.ensure(&self.db, env.tenant_id, CASE_NOTES).await?;
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
                        "customer_id": e.customer_id.map(|c| c.to_string()),
                    };
                    writes.insert_once(&coll, event, document);
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
                    writes.update_guarded(&coll, event, set);
                }
                NoteEvent::Deleted(e) => {
                    let set = doc! { "deleted_at": date(e.deleted_at), "updated_at": date(e.deleted_at) };
                    writes.update_guarded(&coll, event, set);
                }
            }
        }
        writes.flush(&self.db).await
    }
}
