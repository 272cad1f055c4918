//! The data subjects' keys in `eventstore.subject_keys` (see `events::personal`): made
//! when a subject's first personal field is sealed, read by everything that opens
//! events (the command API's folds, the projector, replays and rebuilds), and deleted by
//! an erasure, which leaves the row as its mark.

use std::collections::HashMap;

use events::personal::{self, KeyState, SubjectKey};
use events::StreamType;
use serde_json::Value;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

/// Keys by (tenant, subject), as `events::personal::open` takes them.
#[derive(Debug, Default)]
pub struct Keys(HashMap<(Uuid, Uuid), KeyState>);

impl Keys {
    /// The subject's key state; `None` when no key was ever made (reads as erased).
    pub fn of(&self, tenant: Uuid, subject: Uuid) -> Option<KeyState> {
        self.0.get(&(tenant, subject)).cloned()
    }

    /// Opens the sealed fields of an event of the stream `stream_id` (see
    /// `events::personal::open`).
    pub fn open(
        &self,
        tenant: Uuid,
        stream: StreamType,
        stream_id: Uuid,
        event_type: &str,
        payload: &mut Value,
    ) -> Result<(), personal::OpenError> {
        let subject = personal::subject(stream, stream_id);
        personal::open(stream, event_type, payload, tenant, subject, |s| self.of(tenant, s))
    }
}

/// The key to seal the subject's fields with, made if they have none yet (one round
/// trip either way); `None` when the subject was erased.
pub async fn for_sealing(
    conn: &mut PgConnection,
    tenant: Uuid,
    subject: Uuid,
) -> Result<Option<SubjectKey>, sqlx::Error> {
    // The no-op update makes the statement return the row that won, new or old.
    let key: Option<Vec<u8>> = sqlx::query_scalar(
        "INSERT INTO eventstore.subject_keys (tenant_id, subject_id, key) VALUES ($1, $2, $3)
         ON CONFLICT (tenant_id, subject_id) DO UPDATE SET tenant_id = EXCLUDED.tenant_id
         RETURNING key",
    )
    .bind(tenant)
    .bind(subject)
    .bind(SubjectKey::generate().as_bytes())
    .fetch_one(conn)
    .await?;
    Ok(key.as_deref().and_then(SubjectKey::from_bytes))
}

/// The keys the events' sealed fields need, in one query (none when nothing is sealed).
/// Each item: tenant, stream type, event type, payload.
pub async fn needed_by<'a, 'e>(
    executor: impl PgExecutor<'e>,
    events: impl IntoIterator<Item = (Uuid, StreamType, &'a str, &'a Value)>,
) -> Result<Keys, sqlx::Error> {
    let (mut tenants, mut subjects) = (Vec::new(), Vec::new());
    for (tenant, stream, event_type, payload) in events {
        for subject in personal::sealed_subjects(stream, event_type, payload) {
            tenants.push(tenant);
            subjects.push(subject);
        }
    }
    if subjects.is_empty() {
        return Ok(Keys::default());
    }
    let rows: Vec<(Uuid, Uuid, Option<Vec<u8>>)> = sqlx::query_as(
        "SELECT k.tenant_id, k.subject_id, k.key
         FROM eventstore.subject_keys k
         JOIN unnest($1::uuid[], $2::uuid[]) AS wanted(tenant_id, subject_id)
           ON k.tenant_id = wanted.tenant_id AND k.subject_id = wanted.subject_id",
    )
    .bind(&tenants)
    .bind(&subjects)
    .fetch_all(executor)
    .await?;
    let keys = rows
        .into_iter()
        .map(|(tenant, subject, key)| {
            let state = key.as_deref().and_then(SubjectKey::from_bytes).map_or(KeyState::Erased, KeyState::Held);
            ((tenant, subject), state)
        })
        .collect();
    Ok(Keys(keys))
}
