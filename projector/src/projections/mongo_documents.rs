//! The MongoDB read models that keep one document per stream (case notes, message
//! templates, custom field definitions): one projection, [`MongoDocuments`], over what
//! each model says of itself ([`DocumentModel`]). Each document keeps its stream's
//! `version`; an event applies only to the version before it (`mongo::Writes`), so a
//! redelivery changes nothing.

use std::marker::PhantomData;

use mongodb::bson::{doc, Document};
use mongodb::Database;

use crate::event::Event;
use crate::mongo::{Collections, Writes};
use crate::projection::{ApplyError, Checkpoint, Held, Placement, Projection};
use crate::stores::ProjectionName;

/// One document read model: where it lives and what each event writes.
pub trait DocumentModel: Send + Sync + 'static {
    const PROJECTION: ProjectionName;
    /// The per-tenant collection (`tenant_<id>_<COLLECTION>`).
    const COLLECTION: &'static str;
    /// What `verify` reports it read (`case_notes collection`).
    const HELD: &'static str;
    /// The stream types whose streams its documents are.
    const STREAM_TYPES: &'static [&'static str];
    /// The fields of an erased customer's documents (found by their `customer_id`) that
    /// read as the marker from then on; none by default.
    const CUSTOMER_FIELDS: &'static [&'static str] = &[];

    /// Whether `event` is of this model's streams.
    fn mirrors(event: &Event) -> bool;

    /// The writes `event` makes on the collection named `collection`.
    fn write(event: &Event, collection: &str, writes: &mut Writes) -> Result<(), ApplyError>;
}

pub struct MongoDocuments<M> {
    db: Database,
    collections: Collections,
    model: PhantomData<M>,
}

impl<M: DocumentModel> MongoDocuments<M> {
    pub fn new(db: Database) -> Self {
        Self::placed(db, Placement::live())
    }

    /// A projection writing where `placement` says (a rebuild's copy collections).
    pub fn placed(db: Database, placement: Placement) -> Self {
        Self { db, collections: Collections::placed(placement), model: PhantomData }
    }

    /// The customer's data in the tenant's documents reads as the marker.
    async fn erase_customer(&self, tenant: uuid::Uuid, customer: uuid::Uuid) -> Result<(), ApplyError> {
        let coll = self.collections.ensure(&self.db, tenant, M::COLLECTION).await?;
        let erased: Document =
            M::CUSTOMER_FIELDS.iter().map(|f| ((*f).to_owned(), events::personal::ERASED.into())).collect();
        self.db
            .collection::<Document>(&coll)
            .update_many(
                doc! { "tenant_id": tenant.to_string(), "customer_id": customer.to_string() },
                doc! { "$set": erased },
            )
            .await
            .map_err(|e| ApplyError::Transient(e.into()))?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl<M: DocumentModel> Projection for MongoDocuments<M> {
    fn name(&self) -> &'static str {
        M::PROJECTION.as_str()
    }

    async fn healthy(&self) -> anyhow::Result<()> {
        self.db.run_command(doc! { "ping": 1 }).await?;
        Ok(())
    }

    async fn held(&self, tenant: uuid::Uuid) -> anyhow::Result<Vec<Held>> {
        let name = self.collections.name(tenant, M::COLLECTION);
        let versions = crate::mongo::held_versions(&self.db, &name, None).await?;
        Ok(vec![Held { what: M::HELD, stream_types: M::STREAM_TYPES, versions }])
    }

    #[tracing::instrument(skip_all, fields(projection = M::PROJECTION.as_str(), events = events.len()))]
    async fn apply(&self, events: &[Event], _checkpoint: &Checkpoint) -> Result<(), ApplyError> {
        let mut writes = Writes::default();
        for event in events {
            if let Some(subject) = event.erased_subject().filter(|_| !M::CUSTOMER_FIELDS.is_empty()) {
                // The documents written before the erasure, this batch's too, are replaced.
                std::mem::take(&mut writes).flush(&self.db).await?;
                self.erase_customer(event.envelope.tenant_id, subject).await?;
                continue;
            }
            if !M::mirrors(event) {
                continue;
            }
            let coll = self.collections.ensure(&self.db, event.envelope.tenant_id, M::COLLECTION).await?;
            M::write(event, &coll, &mut writes)?;
        }
        writes.flush(&self.db).await
    }
}
