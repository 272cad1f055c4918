//! Custom field definitions in MongoDB: `tenant_<id>_custom_field_definitions` with the
//! seed's shape (§2.2.2).

use events::field_definition::FieldDefinitionEvent;
use events::DomainEvent;
use mongodb::bson::{doc, Document};

use super::mongo_documents::DocumentModel;
use crate::event::Event;
use crate::mongo::{date, to_bson, Writes, CUSTOM_FIELD_DEFINITIONS};
use crate::projection::ApplyError;
use crate::stores::ProjectionName;

pub struct FieldDefinitions;

/// The seed's document fields that come from a definition's spec.
fn spec_fields(event: &Event, spec: &events::field_definition::FieldSpec) -> Result<Document, ApplyError> {
    Ok(doc! {
        "display_name": &spec.display_name,
        "field_type": to_bson(event, &spec.field_type)?,
        "required": spec.required,
        "default_value": to_bson(event, &spec.default_value)?,
        "options": to_bson(event, &spec.options)?,
        "validation": to_bson(event, &spec.validation)?,
        "visibility_rules": to_bson(event, &spec.visibility_rules)?,
        "order": spec.order,
        "section": to_bson(event, &spec.section)?,
        "description": to_bson(event, &spec.description)?,
    })
}

impl DocumentModel for FieldDefinitions {
    const PROJECTION: ProjectionName = ProjectionName::MongoFieldDefinitions;
    const COLLECTION: &'static str = CUSTOM_FIELD_DEFINITIONS;
    const HELD: &'static str = "custom_field_definitions collection";
    const STREAM_TYPES: &'static [&'static str] = &["custom_field"];

    fn mirrors(event: &Event) -> bool {
        matches!(event.data, DomainEvent::FieldDefinition(_))
    }

    fn write(event: &Event, coll: &str, writes: &mut Writes) -> Result<(), ApplyError> {
        let DomainEvent::FieldDefinition(definition_event) = &event.data else { return Ok(()) };
        let env = &event.envelope;
        match definition_event {
            FieldDefinitionEvent::Created(e) => {
                let mut document = doc! {
                    "_id": env.stream_id.to_string(),
                    "tenant_id": env.tenant_id.to_string(),
                    "entity_type": e.entity_type.as_str(),
                    "field_name": &e.field_name,
                    "created_at": date(e.created_at),
                    "updated_at": date(e.created_at),
                    "is_active": true,
                    "version": env.stream_version,
                };
                document.extend(spec_fields(event, &e.spec)?);
                writes.insert_once(coll, event, document);
            }
            FieldDefinitionEvent::Updated(e) => {
                let mut set = spec_fields(event, &e.spec.new)?;
                set.insert("updated_at", date(e.updated_at));
                writes.update_guarded(coll, event, set);
            }
            FieldDefinitionEvent::Deactivated(e) => {
                writes.update_guarded(coll, event, doc! { "is_active": false, "updated_at": date(e.at) });
            }
            FieldDefinitionEvent::Activated(e) => {
                writes.update_guarded(coll, event, doc! { "is_active": true, "updated_at": date(e.at) });
            }
        }
        Ok(())
    }
}
