//! Custom field definitions in MongoDB: `tenant_<id>_custom_field_definitions` with the
//! seed's shape (§2.2.2), version-guarded like every other store.

use events::field_definition::FieldDefinitionEvent;
use mongodb::bson::{doc, Document};
use mongodb::Database;

use crate::event::Event;
use crate::mongo::{date, to_bson, Collections, Writes, CUSTOM_FIELD_DEFINITIONS};
use crate::projection::{ApplyError, Checkpoint, Held, Placement, Projection};
use events::DomainEvent;

pub struct MongoFieldDefinitionsProjection {
    db: Database,
    collections: Collections,
}

impl MongoFieldDefinitionsProjection {
    pub fn new(db: Database) -> Self {
        Self::placed(db, Placement::live())
    }

    /// A projection writing where `placement` says (a rebuild's copy collections).
    pub fn placed(db: Database, placement: Placement) -> Self {
        Self { db, collections: Collections::placed(placement) }
    }
}

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

#[async_trait::async_trait]
impl Projection for MongoFieldDefinitionsProjection {
    fn name(&self) -> &'static str {
        crate::stores::ProjectionName::MongoFieldDefinitions.as_str()
    }

    async fn healthy(&self) -> anyhow::Result<()> {
        self.db.run_command(mongodb::bson::doc! { "ping": 1 }).await?;
        Ok(())
    }

    async fn held(&self, tenant: uuid::Uuid) -> anyhow::Result<Vec<Held>> {
        let name = self.collections.name(tenant, CUSTOM_FIELD_DEFINITIONS);
        let versions = crate::mongo::held_versions(&self.db, &name, None).await?;
        Ok(vec![Held { what: "custom_field_definitions collection", stream_types: &["custom_field"], versions }])
    }

    #[tracing::instrument(skip_all, fields(projection = "mongo_field_definitions", events = events.len()))]
    async fn apply(&self, events: &[Event], _checkpoint: &Checkpoint) -> Result<(), ApplyError> {
        let mut writes = Writes::default();
        for event in events {
            let DomainEvent::FieldDefinition(definition_event) = &event.data else { continue };
            let env = &event.envelope;
            let coll = self.collections.ensure(&self.db, env.tenant_id, CUSTOM_FIELD_DEFINITIONS).await?;
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
                    writes.insert_once(&coll, event, document);
                }
                FieldDefinitionEvent::Updated(e) => {
                    let mut set = spec_fields(event, &e.spec.new)?;
                    set.insert("updated_at", date(e.updated_at));
                    writes.update_guarded(&coll, event, set);
                }
                FieldDefinitionEvent::Deactivated(e) => {
                    writes.update_guarded(&coll, event, doc! { "is_active": false, "updated_at": date(e.at) });
                }
                FieldDefinitionEvent::Activated(e) => {
                    writes.update_guarded(&coll, event, doc! { "is_active": true, "updated_at": date(e.at) });
                }
            }
        }
        writes.flush(&self.db).await
    }
}
