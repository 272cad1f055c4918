//! Events as the projections receive them: the envelope plus the decoded domain event.

use std::borrow::Cow;

use events::user::UserEvent;
use events::{DomainEvent, EventEnvelope, StreamType};
use runtime::subject_keys::Keys;
use serde_json::Value;

/// A message no decoder of this build can read, with its envelope when that much parsed.
#[derive(Debug)]
pub struct Undecodable {
    pub envelope: Option<Box<EventEnvelope>>,
    pub reason: String,
}

/// An event with its personal fields opened (`events::personal`): `envelope.payload` and
/// `data` hold them as written, or their markers once the subject is erased.
#[derive(Debug, Clone)]
pub struct Event {
    pub envelope: EventEnvelope,
    pub data: DomainEvent,
    /// The payload as stored, when some of its fields were sealed: what a parked copy
    /// keeps, so no personal data leaves the journal's ciphertext that way.
    sealed: Option<Box<Value>>,
    /// The request as stored, when its address and user agent were sealed (the same).
    sealed_request: Option<Box<events::envelope::RequestContext>>,
}

impl Event {
    /// Parses a Kafka payload into its envelope.
    pub fn envelope_of(payload: &[u8]) -> Result<EventEnvelope, Undecodable> {
        serde_json::from_slice(payload)
            .map_err(|e| Undecodable { envelope: None, reason: format!("not an event envelope: {e}") })
    }

    /// The data subject the event erases, if it is an erasure (a user's, or a customer's).
    pub fn erased_subject(&self) -> Option<uuid::Uuid> {
        match &self.data {
            DomainEvent::User(UserEvent::Erased(_)) => Some(self.envelope.stream_id),
            DomainEvent::DataSubject(events::data_subject::DataSubjectEvent::Erased(e)) => Some(e.subject_id),
            _ => None,
        }
    }

    /// Decodes a Kafka payload, opening its sealed fields with `keys`; unknown types or
    /// versions are errors, never guesses.
    pub fn from_payload(payload: &[u8], keys: &Keys) -> Result<Self, Undecodable> {
        Self::from_envelope(Self::envelope_of(payload)?, keys)
    }

    /// Decodes an envelope, opening its sealed fields with `keys` (see
    /// `runtime::subject_keys::needed_by`): a field whose subject was erased reads as its
    /// marker; one that does not open (altered) makes the event undecodable.
    pub fn from_envelope(mut envelope: EventEnvelope, keys: &Keys) -> Result<Self, Undecodable> {
        // A v1 UserCreated held a password hash: it goes before anything (even a parked
        // copy of an undecodable event) can keep it.
        if envelope.stream_type == StreamType::User && envelope.event_type == "UserCreated" {
            envelope.payload = events::user::without_password_hash(std::mem::take(&mut envelope.payload));
        }
        // An erased user's requests: whatever delivers the event again (a replay, a parked
        // retry, a republished month) finds their address gone, as the stores hold it. (A
        // tenant's users only: a platform operator's id named as a customer's and erased
        // as one takes nothing of the operator's.) A request sealed with the user's key
        // opens with it; without it (erased, or not asked for) it reads as erased.
        let (tenant, actor) = (envelope.tenant_id, envelope.actor.user_id);
        let erased = keys.of(tenant, actor) == Some(events::personal::KeyState::Erased);
        if erased && envelope.actor.is_tenant_user() {
            envelope.request.erase();
        }
        let sealed_request = envelope.request.sealed.is_some().then(|| Box::new(envelope.request.clone()));
        let sealed = envelope.data_subject.is_some().then(|| Box::new(envelope.payload.clone()));
        if sealed.is_some() {
            let (tenant, stream, event_type) = (envelope.tenant_id, envelope.stream_type, envelope.event_type.clone());
            if let Err(e) = keys.open(tenant, envelope.data_subject, stream, &event_type, &mut envelope.payload) {
                envelope.payload = sealed.map(|p| *p).unwrap_or_default();
                return Err(Undecodable { reason: e.to_string(), envelope: Some(Box::new(envelope)) });
            }
        }
        let decoded = DomainEvent::decode(
            envelope.stream_type,
            &envelope.event_type,
            envelope.schema_version,
            envelope.payload.clone(),
        );
        match decoded {
            Ok(data) => {
                // An upcast event travels on in its current shape, so no store (nor a parked
                // copy) keeps what the upcaster dropped: a v1 UserCreated's password hash.
                if let DomainEvent::User(event @ UserEvent::Created(_)) = &data {
                    if envelope.schema_version != event.schema_version() {
                        envelope.payload = event.payload();
                        envelope.schema_version = event.schema_version();
                    }
                }
                // Opened last, so an undecodable event (parked as it is) keeps it sealed.
                if envelope.actor.is_tenant_user() {
                    if let Err(e) = envelope.request.open(tenant, actor, &|subject| keys.of(tenant, subject)) {
                        envelope.payload = sealed.map(|p| *p).unwrap_or(envelope.payload);
                        return Err(Undecodable { reason: e.to_string(), envelope: Some(Box::new(envelope)) });
                    }
                }
                Ok(Self { envelope, data, sealed, sealed_request })
            }
            Err(e) => {
                if let Some(stored) = sealed {
                    envelope.payload = *stored;
                }
                Err(Undecodable { reason: e.to_string(), envelope: Some(Box::new(envelope)) })
            }
        }
    }

    pub fn version(&self) -> i64 {
        self.envelope.stream_version
    }

    /// The envelope as the journal holds it (sealed fields sealed): what may be kept
    /// outside the read models, such as a parked copy.
    pub fn as_stored(&self) -> Cow<'_, EventEnvelope> {
        if self.sealed.is_none() && self.sealed_request.is_none() {
            return Cow::Borrowed(&self.envelope);
        }
        let mut envelope = self.envelope.clone();
        if let Some(payload) = &self.sealed {
            envelope.payload = (**payload).clone();
        }
        if let Some(request) = &self.sealed_request {
            envelope.request = (**request).clone();
        }
        Cow::Owned(envelope)
    }
}

/// The key lookups of a batch (`runtime::subject_keys::needed_with_actors`): the data
/// subjects its events were sealed for and, when `actors`, who acted (their keys where
/// their requests were sealed).
pub async fn keys_for<'a>(
    pool: &sqlx::PgPool,
    envelopes: impl Iterator<Item = &'a EventEnvelope> + Clone,
    actors: bool,
) -> Result<Keys, sqlx::Error> {
    let requests = envelopes.clone().filter(|e| actors && e.request.sealed.is_some());
    let sealed = envelopes.clone().map(|e| (e.tenant_id, e.data_subject));
    let sealed = sealed.chain(requests.map(|e| (e.tenant_id, Some(e.actor.user_id))));
    let acting = envelopes.filter(|_| actors).map(|e| (e.tenant_id, e.actor.user_id));
    runtime::subject_keys::needed_with_actors(pool, sealed, acting).await
}

/// Events for unit tests: an envelope around a payload, as the relay would send it.
#[cfg(test)]
pub fn test_event(stream_type: &str, stream_version: i64, event_type: &str, payload: serde_json::Value) -> Event {
    Event::from_payload(test_envelope(stream_type, stream_version, event_type, payload).as_bytes(), &Keys::default())
        .expect("a decodable test event")
}

/// The envelope `test_event` decodes, as the relay would send it (its actor: user 7).
#[cfg(test)]
fn test_envelope(stream_type: &str, stream_version: i64, event_type: &str, payload: serde_json::Value) -> String {
    let tenant = uuid::Uuid::from_u128(0x01a2_1200_0000_7000_8000_0000_0000_0001);
    let envelope = serde_json::json!({
        "event_id": uuid::Uuid::from_u128(0x01a2_1200_0000_7000_8000_0000_0000_1000 + stream_version as u128),
        "tenant_id": tenant, "stream_type": stream_type,
        "stream_id": uuid::Uuid::from_u128(0x01a2_1200_0000_7000_8000_0000_0000_0002),
        "stream_version": stream_version, "event_type": event_type, "schema_version": 1,
        "occurred_at": "2026-11-20T09:00:00Z",
        "actor": { "user_id": uuid::Uuid::from_u128(7), "role": "agent" },
        "correlation_id": uuid::Uuid::from_u128(8), "causation_id": null,
        "request": { "ip_address": "not-an-ip", "user_agent": "tests", "session_id": null, "request_id": null },
        "position": stream_version, "payload": payload,
    });
    envelope.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v1_user_created_travels_on_without_its_password_hash() {
        let payload = serde_json::json!({
            "username": "jane", "email": "jane@example.org", "first_name": null, "last_name": null,
            "role": "agent", "created_at": "2026-11-20T09:00:00Z",
            "password_hash": "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
        });
        let event = test_event("user", 1, "UserCreated", payload);
        assert_eq!(event.envelope.schema_version, 2);
        assert!(!event.envelope.payload.to_string().contains("argon2"));
        assert!(matches!(event.data, DomainEvent::User(UserEvent::Created(_))));
    }

    #[test]
    fn an_erased_actors_request_reads_as_no_address_and_the_marker_whoever_delivers_it_again() {
        let payload = serde_json::json!({ "assigned_to": { "old": null, "new": uuid::Uuid::from_u128(9) },
                                          "assigned_at": "2026-11-20T09:00:00Z" });
        let raw = test_envelope("case", 2, "CaseAssigned", payload);
        let decoded = |keys: &Keys| Event::from_payload(raw.as_bytes(), keys).unwrap().envelope.request;
        let kept = decoded(&Keys::default());
        assert_eq!((kept.ip_address.as_deref(), kept.user_agent.as_deref()), (Some("not-an-ip"), Some("tests")));
        let tenant = uuid::Uuid::from_u128(0x01a2_1200_0000_7000_8000_0000_0000_0001);
        let actor = uuid::Uuid::from_u128(7);
        let erased: Keys = [((tenant, actor), events::personal::KeyState::Erased)].into_iter().collect();
        let gone = decoded(&erased);
        assert_eq!((gone.ip_address, gone.user_agent.as_deref()), (None, Some(events::personal::ERASED)));
        let someone_else: Keys =
            [((tenant, uuid::Uuid::from_u128(9)), events::personal::KeyState::Erased)].into_iter().collect();
        assert_eq!(decoded(&someone_else), kept, "only the actor's erasure takes their address");
    }

    #[test]
    fn a_sealed_request_opens_with_the_actors_key_and_a_parked_copy_keeps_it_sealed() {
        let (tenant, actor) =
            (uuid::Uuid::from_u128(0x01a2_1200_0000_7000_8000_0000_0000_0001), uuid::Uuid::from_u128(7));
        let key = events::personal::SubjectKey::generate();
        let payload = serde_json::json!({ "assigned_to": { "old": null, "new": uuid::Uuid::from_u128(9) },
                                          "assigned_at": "2026-11-20T09:00:00Z" });
        let mut envelope: EventEnvelope =
            serde_json::from_str(&test_envelope("case", 2, "CaseAssigned", payload)).unwrap();
        envelope.request.seal(tenant, actor, &key);
        let stored = envelope.request.clone();
        let held: Keys = [((tenant, actor), events::personal::KeyState::Held(key))].into_iter().collect();
        let event = Event::from_envelope(envelope.clone(), &held).unwrap();
        let opened = &event.envelope.request;
        assert_eq!((opened.ip_address.as_deref(), opened.user_agent.as_deref()), (Some("not-an-ip"), Some("tests")));
        assert_eq!(event.as_stored().request, stored, "what a parked copy keeps");
        let erased: Keys = [((tenant, actor), events::personal::KeyState::Erased)].into_iter().collect();
        let gone = Event::from_envelope(envelope.clone(), &erased).unwrap().envelope.request;
        assert_eq!(
            (gone.ip_address, gone.user_agent.as_deref(), gone.sealed),
            (None, Some(events::personal::ERASED), None)
        );
        // Another's key does not open it: the event is undecodable, not shown wrong.
        let wrong: Keys =
            [((tenant, actor), events::personal::KeyState::Held(events::personal::SubjectKey::generate()))]
                .into_iter()
                .collect();
        assert!(Event::from_envelope(envelope, &wrong).is_err());
    }
}
