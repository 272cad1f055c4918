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

    /// Opens the sealed fields of an event sealed for `data_subject` (its envelope's; see
    /// `events::personal::open`).
    pub fn open(
        &self,
        tenant: Uuid,
        data_subject: Option<Uuid>,
        stream: StreamType,
        event_type: &str,
        payload: &mut Value,
    ) -> Result<(), personal::OpenError> {
        personal::open(stream, event_type, payload, tenant, data_subject, |s| self.of(tenant, s))
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

/// Deletes the subject's key, keeping the row (made if none was) as the mark that they
/// were erased, so no key is ever made for them again.
pub async fn erase<'e>(executor: impl PgExecutor<'e>, tenant: Uuid, subject: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO eventstore.subject_keys (tenant_id, subject_id, key, erased_at) VALUES ($1, $2, NULL, now())
         ON CONFLICT (tenant_id, subject_id)
         DO UPDATE SET key = NULL, erased_at = coalesce(eventstore.subject_keys.erased_at, now())",
    )
    .bind(tenant)
    .bind(subject)
    .execute(executor)
    .await?;
    Ok(())
}

/// Whether the tenant holds data sealed for `subject`: None when no key was ever made
/// for them, else whether they were erased.
pub async fn known<'e>(
    executor: impl PgExecutor<'e>,
    tenant: Uuid,
    subject: Uuid,
) -> Result<Option<bool>, sqlx::Error> {
    sqlx::query_scalar("SELECT key IS NULL FROM eventstore.subject_keys WHERE tenant_id = $1 AND subject_id = $2")
        .bind(tenant)
        .bind(subject)
        .fetch_optional(executor)
        .await
}

/// The keys the events need, in one query (none when nothing is sealed). Each item: the
/// event's tenant and the data subject it was sealed for (its envelope's `data_subject`).
pub async fn needed_by<'e>(
    executor: impl PgExecutor<'e>,
    events: impl IntoIterator<Item = (Uuid, Option<Uuid>)>,
) -> Result<Keys, sqlx::Error> {
    let (mut tenants, mut subjects) = (Vec::new(), Vec::new());
    for (tenant, subject) in events {
        let Some(subject) = subject else { continue };
        if !tenants.iter().zip(&subjects).any(|(t, s)| (t, s) == (&tenant, &subject)) {
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
