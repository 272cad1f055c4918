//! What the MongoDB projections share: indexes created once per collection, idempotent
//! inserts keyed by `_id`, version-guarded updates, BSON conversions.

use std::collections::HashSet;
use std::sync::Mutex;

use mongodb::bson::{self, doc, Document};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::IndexOptions;
use mongodb::{Collection, IndexModel};

use crate::event::Event;
use crate::projection::ApplyError;

const DUPLICATE_KEY: i32 = 11000;

/// Collections whose indexes this process has already created.
#[derive(Default)]
pub struct IndexedCollections(Mutex<HashSet<String>>);

impl IndexedCollections {
    pub async fn ensure(&self, coll: &Collection<Document>, indexes: &[(Document, &str)]) -> Result<(), ApplyError> {
        let name = coll.name().to_owned();
        if self.0.lock().map(|s| s.contains(&name)).unwrap_or(false) {
            return Ok(());
        }
        let models = indexes.iter().map(|(keys, index_name)| {
            IndexModel::builder()
                .keys(keys.clone())
                .options(IndexOptions::builder().name((*index_name).to_owned()).build())
                .build()
        });
        coll.create_indexes(models).await.map_err(|e| ApplyError::Transient(e.into()))?;
        if let Ok(mut s) = self.0.lock() {
            s.insert(name);
        }
        Ok(())
    }
}

/// Inserts the first version of a document; an existing `_id` means it was applied.
pub async fn insert_once(coll: &Collection<Document>, document: Document) -> Result<(), ApplyError> {
    match coll.insert_one(document).await {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.kind.as_ref(), ErrorKind::Write(WriteFailure::WriteError(w)) if w.code == DUPLICATE_KEY) => {
            Ok(())
        }
        Err(e) => Err(ApplyError::Transient(e.into())),
    }
}

/// Applies `$set` only to the version before the event's; anything else was applied
/// already (or waits for a missing event).
pub async fn update_guarded(coll: &Collection<Document>, event: &Event, mut set: Document) -> Result<(), ApplyError> {
    let v = event.envelope.stream_version;
    set.insert("version", v);
    coll.update_one(doc! { "_id": event.envelope.stream_id.to_string(), "version": v - 1 }, doc! { "$set": set })
        .await
        .map(|_| ())
        .map_err(|e| ApplyError::Transient(e.into()))
}

pub fn to_bson<T: serde::Serialize>(event: &Event, value: &T) -> Result<bson::Bson, ApplyError> {
    bson::to_bson(value).map_err(|e| ApplyError::Poison {
        event_id: event.envelope.event_id,
        reason: format!("not storable as BSON: {e}"),
    })
}

pub fn date(at: chrono::DateTime<chrono::Utc>) -> bson::DateTime {
    bson::DateTime::from_millis(at.timestamp_millis())
}
