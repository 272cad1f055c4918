//! Case notes in MongoDB: `tenant_<id>_case_notes` with the seed's shape (§2.2.2) and
//! indexes (§4.2.1). Deleted notes keep their document with `deleted_at` set, so a late
//! redelivery cannot resurrect them. The content of the notes on an erased customer's
//! cases reads as the marker.

use events::note::NoteEvent;
use events::DomainEvent;
use mongodb::bson::doc;

use super::mongo_documents::DocumentModel;
use crate::event::Event;
use crate::mongo::{date, to_bson, Writes, CASE_NOTES};
use crate::projection::ApplyError;
use crate::stores::ProjectionName;

pub struct Notes;

impl DocumentModel for Notes {
    const PROJECTION: ProjectionName = ProjectionName::MongoNotes;
    const COLLECTION: &'static str = CASE_NOTES;
    const HELD: &'static str = "case_notes collection";
    const STREAM_TYPES: &'static [&'static str] = &["note"];
    const CUSTOMER_FIELDS: &'static [&'static str] = &["content"];

    fn mirrors(event: &Event) -> bool {
        matches!(event.data, DomainEvent::Note(_))
    }

    fn write(event: &Event, coll: &str, writes: &mut Writes) -> Result<(), ApplyError> {
        let DomainEvent::Note(note_event) = &event.data else { return Ok(()) };
        let env = &event.envelope;
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
                writes.insert_once(coll, event, document);
            }
            NoteEvent::Edited(e) => {
                let mut set = doc! { "updated_at": date(e.edited_at) };
                for change in e.changes() {
                    set.insert(change.field, to_bson(event, &change.new_value)?);
                }
                writes.update_guarded(coll, event, set);
            }
            NoteEvent::Deleted(e) => {
                let set = doc! { "deleted_at": date(e.deleted_at), "updated_at": date(e.deleted_at) };
                writes.update_guarded(coll, event, set);
            }
        }
        Ok(())
    }
}
