//! Message templates in MongoDB: `tenant_<id>_message_templates` with the seed's shape
//! (§2.2.2), version-guarded like every other store.

use events::template::TemplateEvent;
use mongodb::bson::doc;
use mongodb::Database;

use crate::event::Event;
use crate::mongo::{date, to_bson, Collections, Writes, MESSAGE_TEMPLATES};
use crate::projection::{ApplyError, Checkpoint, Held, Placement, Projection};
use events::DomainEvent;

pub struct MongoTemplatesProjection {
    db: Database,
    collections: Collections,
}

impl MongoTemplatesProjection {
    pub fn new(db: Database) -> Self {
        Self::placed(db, Placement::live())
    }

    /// A projection writing where `placement` says (a rebuild's copy collections).
    pub fn placed(db: Database, placement: Placement) -> Self {
        Self { db, collections: Collections::placed(placement) }
    }
}

#[async_trait::async_trait]
impl Projection for MongoTemplatesProjection {
    fn name(&self) -> &'static str {
        crate::stores::ProjectionName::MongoTemplates.as_str()
    }

    async fn healthy(&self) -> anyhow::Result<()> {
        self.db.run_command(mongodb::bson::doc! { "ping": 1 }).await?;
        Ok(())
    }

    async fn held(&self, tenant: uuid::Uuid) -> anyhow::Result<Vec<Held>> {
        let name = self.collections.name(tenant, MESSAGE_TEMPLATES);
        let versions = crate::mongo::held_versions(&self.db, &name, None).await?;
        Ok(vec![Held { what: "message_templates collection", stream_types: &["message_template"], versions }])
    }

    #[tracing::instrument(skip_all, fields(projection = "mongo_templates", events = events.len()))]
    async fn apply(&self, events: &[Event], _checkpoint: &Checkpoint) -> Result<(), ApplyError> {
        let mut writes = Writes::default();
        for event in events {
            let DomainEvent::Template(template_event) = &event.data else { continue };
            let env = &event.envelope;
            let coll = self.collections.ensure(&self.db, env.tenant_id, MESSAGE_TEMPLATES).await?;
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
                    writes.insert_once(&coll, event, document);
                }
                TemplateEvent::Updated(e) => {
                    let mut set = doc! { "updated_at": date(e.updated_at), "variables": to_bson(event, &e.variables)? };
                    if let Some(c) = &e.name {
                        set.insert("name", &c.new);
                    }
                    if let Some(c) = &e.description {
                        set.insert("description", to_bson(event, &c.new)?);
                    }
                    if let Some(c) = &e.subject {
                        set.insert("subject", to_bson(event, &c.new)?);
                    }
                    if let Some(c) = &e.content {
                        set.insert("content", &c.new);
                    }
                    writes.update_guarded(&coll, event, set);
                }
                TemplateEvent::Deactivated(e) => {
                    writes.update_guarded(&coll, event, doc! { "is_active": false, "updated_at": date(e.at) });
                }
                TemplateEvent::Activated(e) => {
                    writes.update_guarded(&coll, event, doc! { "is_active": true, "updated_at": date(e.at) });
                }
            }
        }
        writes.flush(&self.db).await
    }
}
