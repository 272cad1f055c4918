//! Message templates in MongoDB: `tenant_<id>_message_templates` with the seed's shape
//! (§2.2.2).

use events::template::TemplateEvent;
use events::DomainEvent;
use mongodb::bson::doc;

use super::mongo_documents::DocumentModel;
use crate::event::Event;
use crate::mongo::{date, to_bson, Writes, MESSAGE_TEMPLATES};
use crate::projection::ApplyError;
use crate::stores::ProjectionName;

pub struct Templates;

impl DocumentModel for Templates {
    const PROJECTION: ProjectionName = ProjectionName::MongoTemplates;
    const COLLECTION: &'static str = MESSAGE_TEMPLATES;
    const HELD: &'static str = "message_templates collection";
    const STREAM_TYPES: &'static [&'static str] = &["message_template"];

    fn mirrors(event: &Event) -> bool {
        matches!(event.data, DomainEvent::Template(_))
    }

    fn write(event: &Event, coll: &str, writes: &mut Writes) -> Result<(), ApplyError> {
        let DomainEvent::Template(template_event) = &event.data else { return Ok(()) };
        let env = &event.envelope;
        match template_event {
            TemplateEvent::Created(e) => {
                let document = doc! {
                    "_id": env.stream_id.to_string(),
                    "tenant_id": env.tenant_id.to_string(),
                    "name": &e.name,
                    "description": to_bson(event, &e.description)?,
                    "channel_type": e.channel_type.as_str(),
                    "subject": to_bson(event, &e.subject)?,
                    "content": &e.content,
                    "variables": to_bson(event, &e.variables)?,
                    "created_by": e.created_by.to_string(),
                    "created_at": date(e.created_at),
                    "updated_at": date(e.created_at),
                    "is_active": true,
                    "tags": to_bson(event, &e.tags)?,
                    "category": to_bson(event, &e.category)?,
                    "version": env.stream_version,
                };
                writes.insert_once(coll, event, document);
            }
            TemplateEvent::Updated(e) => {
                let mut set = doc! { "updated_at": date(e.updated_at), "variables": to_bson(event, &e.variables)? };
                for change in e.changes() {
                    set.insert(change.field, to_bson(event, &change.new_value)?);
                }
                writes.update_guarded(coll, event, set);
            }
            TemplateEvent::Deactivated(e) => {
                writes.update_guarded(coll, event, doc! { "is_active": false, "updated_at": date(e.at) });
            }
            TemplateEvent::Activated(e) => {
                writes.update_guarded(coll, event, doc! { "is_active": true, "updated_at": date(e.at) });
            }
        }
        Ok(())
    }
}
