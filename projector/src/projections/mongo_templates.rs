//! Message templates in MongoDB: `tenant_<id>_message_templates` with the seed's shape
//! (§2.2.2), version-guarded like every other store.

use events::template::TemplateEvent;
use mongodb::bson::{doc, Document};
use mongodb::Database;
use runtime::tenancy::Tenancy;

use crate::event::{DomainEvent, Event};
use crate::mongo::{date, insert_once, to_bson, update_guarded, IndexedCollections};
use crate::projection::{ApplyError, Checkpoint, Projection};

pub const MESSAGE_TEMPLATES: &str = "message_templates";

pub struct MongoTemplatesProjection {
    db: Database,
    indexed: IndexedCollections,
}

impl MongoTemplatesProjection {
    pub fn new(db: Database) -> Self {
        Self { db, indexed: IndexedCollections::default() }
    }
}

#[async_trait::async_trait]
impl Projection for MongoTemplatesProjection {
    fn name(&self) -> &'static str {
        "mongo_templates"
    }

    #[tracing::instrument(skip_all, fields(projection = "mongo_templates", events = events.len()))]
    async fn apply(&self, events: &[Event], _checkpoint: &Checkpoint) -> Result<(), ApplyError> {
        for event in events {
            let DomainEvent::Template(template_event) = &event.data else { continue };
            let env = &event.envelope;
            let coll = self.db.collection::<Document>(&Tenancy(env.tenant_id).mongo_collection(MESSAGE_TEMPLATES));
            let indexes = [
                (doc! { "tenant_id": 1, "created_at": -1 }, "tenant_created"),
                (doc! { "tenant_id": 1, "channel_type": 1, "is_active": 1 }, "tenant_channel_active"),
            ];
            self.indexed.ensure(&coll, &indexes).await?;
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
                    insert_once(&coll, document).await?;
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
                    update_guarded(&coll, event, set).await?;
                }
                TemplateEvent::Deactivated(e) => {
                    update_guarded(&coll, event, doc! { "is_active": false, "updated_at": date(e.at) }).await?;
                }
                TemplateEvent::Activated(e) => {
                    update_guarded(&coll, event, doc! { "is_active": true, "updated_at": date(e.at) }).await?;
                }
            }
        }
        Ok(())
    }
}
