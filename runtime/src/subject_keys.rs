//! The data subjects' keys in `eventstore.subject_keys` (see `events::personal`): made
//! when a subject's first personal field is sealed, read by everything that opens
//! events (the command API's folds, the projector, replays and rebuilds), and deleted by
//! an erasure, which leaves the row as its mark.
//!
//! With a key-encryption key (`MURIMA_SUBJECT_KEK`, installed once per process by
//! `use_kek`), each key is stored wrapped by it (XChaCha20-Poly1305, bound to its tenant
//! and subject): a copy of the table alone opens nothing. Keys stored unwrapped (32 bytes:
//! made without a KEK) are still read.

use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

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

/// Key states by (tenant, subject), as `needed_by` finds them (tests make them so too).
impl FromIterator<((Uuid, Uuid), KeyState)> for Keys {
    fn from_iter<I: IntoIterator<Item = ((Uuid, Uuid), KeyState)>>(states: I) -> Self {
        Keys(states.into_iter().collect())
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
    let made = SubjectKey::generate();
    let stored = match kek() {
        Some(kek) => kek.wrap(tenant, subject, &made),
        None => made.as_bytes().to_vec(),
    };
    let key: Option<Vec<u8>> = sqlx::query_scalar(
        "INSERT INTO eventstore.subject_keys (tenant_id, subject_id, key) VALUES ($1, $2, $3)
         ON CONFLICT (tenant_id, subject_id) DO UPDATE SET tenant_id = EXCLUDED.tenant_id
         RETURNING key",
    )
    .bind(tenant)
    .bind(subject)
    .bind(stored)
    .fetch_one(conn)
    .await?;
    key.map(|k| unwrap(tenant, subject, &k)).transpose()
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
    needed_with_actors(executor, events, std::iter::empty()).await
}

/// `needed_by`, and of the events' actors (tenant, user) only whether they were erased
/// (their requests' address and user agent are theirs). An actor's key is opened only
/// where a request was sealed with it (the caller names them among `events` then), so a
/// key that does not open fails only the events sealed with it.
pub async fn needed_with_actors<'e>(
    executor: impl PgExecutor<'e>,
    events: impl IntoIterator<Item = (Uuid, Option<Uuid>)>,
    actors: impl IntoIterator<Item = (Uuid, Uuid)>,
) -> Result<Keys, sqlx::Error> {
    // Each (tenant, subject) once, and whether its key is wanted: a rebuild's batch holds
    // thousands of events.
    let mut wanted: HashMap<(Uuid, Uuid), bool> = HashMap::new();
    for (tenant, subject) in events {
        if let Some(subject) = subject {
            wanted.insert((tenant, subject), true);
        }
    }
    for actor in actors {
        wanted.entry(actor).or_insert(false);
    }
    if wanted.is_empty() {
        return Ok(Keys::default());
    }
    let (mut tenants, mut subjects, mut sealed) = (Vec::new(), Vec::new(), Vec::new());
    for ((tenant, subject), key_wanted) in wanted {
        tenants.push(tenant);
        subjects.push(subject);
        sealed.push(key_wanted);
    }
    let rows: Vec<(Uuid, Uuid, Option<Vec<u8>>)> = sqlx::query_as(
        "SELECT k.tenant_id, k.subject_id, CASE WHEN wanted.sealed THEN k.key END
         FROM eventstore.subject_keys k
         JOIN unnest($1::uuid[], $2::uuid[], $3::bool[]) AS wanted(tenant_id, subject_id, sealed)
           ON k.tenant_id = wanted.tenant_id AND k.subject_id = wanted.subject_id
         WHERE wanted.sealed OR k.key IS NULL",
    )
    .bind(&tenants)
    .bind(&subjects)
    .bind(&sealed)
    .fetch_all(executor)
    .await?;
    let mut keys = HashMap::with_capacity(rows.len());
    for (tenant, subject, key) in rows {
        let state = match key {
            Some(key) => KeyState::Held(unwrap(tenant, subject, &key)?),
            None => KeyState::Erased,
        };
        keys.insert((tenant, subject), state);
    }
    Ok(Keys(keys))
}

/// The key-encryption key of this process (`use_kek`).
static KEK: OnceLock<Option<Kek>> = OnceLock::new();

fn kek() -> Option<&'static Kek> {
    KEK.get().and_then(Option::as_ref)
}

/// Installs the key-encryption key the settings name (`MURIMA_SUBJECT_KEK`) for this
/// process, once: every process that seals or opens events calls it at start-up (the
/// command API, `Stores::connect`). Installing another one later is an error.
pub fn use_kek(settings: &crate::config::Settings) -> anyhow::Result<()> {
    let wanted = match &settings.subject_kek {
        Some(text) => Some(Kek::from_base64(text)?),
        None => None,
    };
    let installed = KEK.get_or_init(|| {
        if wanted.is_none() {
            tracing::warn!("MURIMA_SUBJECT_KEK is not set: the data subjects' keys are stored unwrapped");
        }
        wanted.clone()
    });
    anyhow::ensure!(*installed == wanted, "another MURIMA_SUBJECT_KEK is already in use in this process");
    Ok(())
}

/// A key-encryption key: 32 bytes.
#[derive(Clone, PartialEq, Eq)]
struct Kek(SubjectKey);

impl Kek {
    fn from_base64(text: &str) -> anyhow::Result<Self> {
        let bytes = STANDARD.decode(text.trim()).map_err(|_| {
            anyhow::anyhow!("MURIMA_SUBJECT_KEK is not base64 (e.g. `head -c 32 /dev/urandom | base64`)")
        })?;
        let key = SubjectKey::from_bytes(&bytes)
            .ok_or_else(|| anyhow::anyhow!("MURIMA_SUBJECT_KEK must be 32 bytes, not {}", bytes.len()))?;
        Ok(Self(key))
    }

    /// `key` wrapped for its row: nonce, then the ciphertext of its base64 text as JSON
    /// (86 bytes, as the table's CHECK expects).
    fn wrap(&self, tenant: Uuid, subject: Uuid, key: &SubjectKey) -> Vec<u8> {
        let mut value = serde_json::Value::String(STANDARD.encode(key.as_bytes()));
        personal::seal_value(&mut value, WRAPPED, tenant, subject, &self.0);
        // The sealed form's bytes: the base64 of nonce and ciphertext, decoded again.
        let sealed = value["$sealed"].as_str().unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sealed).unwrap_or_default()
    }
}

/// Where a wrapped key's ciphertext is bound (the associated data's place).
const WRAPPED: &str = "/subject_key";

/// A stored key: wrapped (opened with the KEK) or, made without one, as it is.
fn unwrap(tenant: Uuid, subject: Uuid, stored: &[u8]) -> Result<SubjectKey, sqlx::Error> {
    let refused = |why: &str| sqlx::Error::Protocol(format!("the key of data subject {subject}: {why}"));
    if let Some(key) = SubjectKey::from_bytes(stored) {
        return Ok(key);
    }
    let Some(kek) = kek() else { return Err(refused("it is wrapped, and MURIMA_SUBJECT_KEK is not set")) };
    let mut value = serde_json::json!({
        "$sealed": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(stored),
        "subject": subject,
    });
    let held = |_| Some(KeyState::Held(kek.0.clone()));
    personal::open_value(&mut value, WRAPPED, personal::Marker::Text, tenant, subject, &held)
        .map_err(|_| refused("it does not open with MURIMA_SUBJECT_KEK (another key, or altered)"))?;
    let bytes = value.as_str().and_then(|b| STANDARD.decode(b).ok()).unwrap_or_default();
    SubjectKey::from_bytes(&bytes).ok_or_else(|| refused("it is not 32 bytes once opened"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_wrapped_key_opens_only_with_its_kek_for_its_own_row() {
        let kek = Kek::from_base64("bXVyaW1hLXRlc3Qtc3ViamVjdC1rZWstMzItYnl0ZXM=").unwrap();
        let (tenant, subject, key) = (Uuid::from_u128(1), Uuid::from_u128(2), SubjectKey::generate());
        let wrapped = kek.wrap(tenant, subject, &key);
        assert_eq!(wrapped.len(), 86, "as migration 20261207110000 lets it be stored");
        assert!(!wrapped.windows(32).any(|w| w == key.as_bytes()), "the key is not in the clear");
        let _ = KEK.set(Some(kek));
        assert_eq!(unwrap(tenant, subject, &wrapped).unwrap(), key);
        assert!(unwrap(tenant, Uuid::from_u128(3), &wrapped).is_err(), "another row's");
        assert_eq!(unwrap(tenant, subject, key.as_bytes()).unwrap(), key, "an unwrapped key is read as it is");
        assert!(Kek::from_base64("c2hvcnQ=").is_err());
    }
}
