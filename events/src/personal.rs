//! Personal data in events, and its erasure by crypto-shredding (DESIGN.md guarantee 12).
//!
//! The journal and Kafka keep every event for ever, so a person's data in them cannot be
//! deleted. Instead each personal field is sealed (XChaCha20-Poly1305) with a key of the
//! data subject it is about, kept off the log in `eventstore.subject_keys`. Whoever reads
//! an event opens its fields with the keys that still exist; erasing a subject deletes
//! their key, and from then on every read of every copy of those events, a replay and a
//! rebuild included, finds a marker where the data was.
//!
//! This module is pure: which fields are personal (`fields`), whose they are
//! (`subject`), and sealing and opening a payload with keys the caller looked up.
//!
//! A sealed field is `{"$sealed": "<base64url: 24-byte nonce, then ciphertext>",
//! "subject": "<uuid>"}`. The ciphertext is the field's JSON, bound (as associated data)
//! to the tenant, the subject and the field's place in the payload, so a sealed value
//! copied elsewhere does not open.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::envelope::StreamType;

/// What an erased text field reads as.
pub const ERASED: &str = "[erased]";

/// What stands in for a personal field once its subject is erased.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// `[erased]`.
    Text,
    /// `erased-<subject id>`: for a field the read models keep unique (a username), so
    /// two erased subjects do not collide.
    Unique,
    /// `{}`: for a free-form document.
    Document,
    /// `null`: for a value nothing can stand in for (an IP address, which search indexes
    /// as an address).
    Nothing,
}

impl Marker {
    pub fn value(self, subject: Uuid) -> Value {
        match self {
            Marker::Text => json!(ERASED),
            Marker::Unique => json!(format!("erased-{subject}")),
            Marker::Document => json!({}),
            Marker::Nothing => Value::Null,
        }
    }
}

/// A personal field: where it is in the payload (a JSON pointer) and its marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PersonalField {
    pub pointer: &'static str,
    pub marker: Marker,
}

const fn text(pointer: &'static str) -> PersonalField {
    PersonalField { pointer, marker: Marker::Text }
}

const fn unique(pointer: &'static str) -> PersonalField {
    PersonalField { pointer, marker: Marker::Unique }
}

const fn document(pointer: &'static str) -> PersonalField {
    PersonalField { pointer, marker: Marker::Document }
}

const USER_CREATED: &[PersonalField] =
    &[unique("/username"), unique("/email"), text("/first_name"), text("/last_name")];
const USER_PROFILE_UPDATED: &[PersonalField] = &[
    text("/first_name/old"),
    text("/first_name/new"),
    text("/last_name/old"),
    text("/last_name/new"),
    unique("/email/old"),
    unique("/email/new"),
];
const USER_PREFERENCES_SET: &[PersonalField] = &[document("/preferences/old"), document("/preferences/new")];
const CASE_OPENED: &[PersonalField] = &[text("/title"), text("/description"), document("/custom_fields")];
const CASE_UPDATED: &[PersonalField] = &[
    text("/title/old"),
    text("/title/new"),
    text("/description/old"),
    text("/description/new"),
    document("/custom_fields/old"),
    document("/custom_fields/new"),
];
const NOTE_ADDED: &[PersonalField] = &[text("/content")];
const NOTE_EDITED: &[PersonalField] = &[text("/content/old"), text("/content/new")];
const INTERACTION_RECORDED: &[PersonalField] = &[text("/content"), text("/external_id"), document("/metadata")];

/// The personal fields of an event type (none for most).
pub fn fields(stream: StreamType, event_type: &str) -> &'static [PersonalField] {
    match (stream, event_type) {
        (StreamType::User, "UserCreated") => USER_CREATED,
        (StreamType::User, "UserProfileUpdated") => USER_PROFILE_UPDATED,
        (StreamType::User, "UserPreferencesSet") => USER_PREFERENCES_SET,
        (StreamType::Case, "CaseOpened") => CASE_OPENED,
        (StreamType::Case, "CaseUpdated") => CASE_UPDATED,
        (StreamType::Note, "CaseNoteAdded") => NOTE_ADDED,
        (StreamType::Note, "CaseNoteEdited") => NOTE_EDITED,
        (StreamType::Interaction, "InteractionRecorded") => INTERACTION_RECORDED,
        _ => &[],
    }
}

/// Whether the payload holds a value in one of the event's personal fields (a null or an
/// absent field holds none): only then does appending it need the subject's key.
pub fn holds_personal(stream: StreamType, event_type: &str, payload: &Value) -> bool {
    fields(stream, event_type).iter().any(|f| payload.pointer(f.pointer).is_some_and(|v| !v.is_null()))
}

/// A data subject's key: 32 random bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SubjectKey([u8; 32]);

impl std::fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubjectKey(..)") // never printed
    }
}

impl SubjectKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Self {
        Self(XChaCha20Poly1305::generate_key(&mut OsRng).into())
    }

    /// A stored key; `None` unless exactly 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&self.0.into())
    }
}

/// What a reader holds for a subject: the key, or the fact that it was erased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyState {
    Held(SubjectKey),
    Erased,
}

/// A sealed field that does not open with its subject's key: altered, or moved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the personal field {pointer} does not open: {reason}")]
pub struct OpenError {
    pub pointer: String,
    pub reason: &'static str,
}

fn associated(tenant: Uuid, subject: Uuid, pointer: &str) -> String {
    format!("{tenant}/{subject}{pointer}")
}

fn sealed(value: &Value) -> Option<(&str, &Value)> {
    let object = value.as_object()?;
    let data = object.get("$sealed")?.as_str()?;
    let subject = object.get("subject")?;
    (object.len() == 2).then_some((data, subject))
}

/// Seals the event's personal fields that hold a value (a null stays null) with the
/// subject's key.
pub fn seal(stream: StreamType, event_type: &str, payload: &mut Value, tenant: Uuid, subject: Uuid, key: &SubjectKey) {
    for field in fields(stream, event_type) {
        if let Some(value) = payload.pointer_mut(field.pointer) {
            seal_value(value, field.pointer, tenant, subject, key);
        }
    }
}

/// Seals one value found at `pointer` of a document (an event's payload, or an archived
/// record's): bound to that place. A null stays null.
pub fn seal_value(value: &mut Value, pointer: &str, tenant: Uuid, subject: Uuid, key: &SubjectKey) {
    // Whatever is there is sealed, even a value that looks sealed: a client's
    // `{"$sealed": ...}` is their data like any other.
    if value.is_null() {
        return;
    }
    let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
    let plain = value.to_string();
    let aad = associated(tenant, subject, pointer);
    let sealing = key.cipher().encrypt(&nonce, Payload { msg: plain.as_bytes(), aad: aad.as_bytes() });
    // panic-free: XChaCha20-Poly1305 refuses only messages past 256 GiB
    let ciphertext = sealing.expect("an event's field is far below the cipher's limit");
    let mut data = nonce.to_vec();
    data.extend_from_slice(&ciphertext);
    *value = json!({ "$sealed": URL_SAFE_NO_PAD.encode(data), "subject": subject });
}

/// The subjects whose keys the event's sealed fields need.
pub fn sealed_subjects(stream: StreamType, event_type: &str, payload: &Value) -> Vec<Uuid> {
    let mut subjects = Vec::new();
    for field in fields(stream, event_type) {
        let found = payload.pointer(field.pointer).and_then(sealed);
        if let Some(subject) = found.and_then(|(_, s)| s.as_str()).and_then(|s| s.parse::<Uuid>().ok()) {
            if !subjects.contains(&subject) {
                subjects.push(subject);
            }
        }
    }
    subjects
}

/// Opens the event's sealed fields: with the subject's key the field is as it was written;
/// with the subject erased (or no key known) it is the field's marker. `subject` is the
/// one the journal sealed the event for (`EventEnvelope::data_subject`); every sealed field
/// must name it. An event sealed for nobody is left as it is: whatever looks sealed in it
/// is what a client wrote (nothing is sealed for them, so nothing can be forged).
pub fn open(
    stream: StreamType,
    event_type: &str,
    payload: &mut Value,
    tenant: Uuid,
    subject: Option<Uuid>,
    key_of: impl Fn(Uuid) -> Option<KeyState>,
) -> Result<(), OpenError> {
    let Some(expected) = subject else { return Ok(()) };
    for field in fields(stream, event_type) {
        if let Some(value) = payload.pointer_mut(field.pointer) {
            open_value(value, field.pointer, field.marker, tenant, expected, &key_of)?;
        }
    }
    Ok(())
}

/// Opens one value sealed for `expected` at `pointer` (see `open`); a value not sealed is
/// left as it is.
pub fn open_value(
    value: &mut Value,
    pointer: &str,
    marker: Marker,
    tenant: Uuid,
    expected: Uuid,
    key_of: &impl Fn(Uuid) -> Option<KeyState>,
) -> Result<(), OpenError> {
    let Some((data, subject)) = sealed(value) else { return Ok(()) };
    let fail = |reason| OpenError { pointer: pointer.to_owned(), reason };
    let subject = subject.as_str().and_then(|s| s.parse::<Uuid>().ok()).ok_or_else(|| fail("no subject"))?;
    if expected != subject {
        return Err(fail("sealed for another subject than the event's"));
    }
    let opened = match key_of(subject) {
        Some(KeyState::Held(key)) => {
            let data = URL_SAFE_NO_PAD.decode(data).map_err(|_| fail("not base64"))?;
            if data.len() < 24 {
                return Err(fail("too short"));
            }
            let (nonce, ciphertext) = data.split_at(24);
            let aad = associated(tenant, subject, pointer);
            let plain = key
                .cipher()
                .decrypt(XNonce::from_slice(nonce), Payload { msg: ciphertext, aad: aad.as_bytes() })
                .map_err(|_| fail("altered, moved or sealed with another key"))?;
            serde_json::from_slice(&plain).map_err(|_| fail("not JSON inside"))?
        }
        Some(KeyState::Erased) | None => marker.value(subject),
    };
    *value = opened;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant() -> Uuid {
        Uuid::from_u128(1)
    }

    fn created() -> Value {
        json!({ "username": "zoe", "email": "zoe@example.org", "first_name": "Zoë", "last_name": null,
                "role": "agent", "created_at": "2026-12-07T00:00:00Z" })
    }

    #[test]
    fn a_tenant_users_request_is_sealed_with_their_key_and_reads_as_erased_without_it() {
        use crate::envelope::RequestContext;
        let (user, key) = (Uuid::from_u128(2), SubjectKey::generate());
        let written = RequestContext {
            ip_address: Some("203.0.113.7".into()),
            user_agent: Some("Zoë's browser".into()),
            session_id: Some("s1".into()),
            request_id: Some("r1".into()),
            sealed: None,
        };
        let mut stored = written.clone();
        stored.seal(tenant(), user, &key);
        let text = serde_json::to_string(&stored).unwrap();
        assert!(!text.contains("203.0.113.7") && !text.contains("Zoë"), "{text}");
        assert!(text.contains("\"s1\"") && text.contains("\"r1\""), "ids are not personal: {text}");

        let mut opened = serde_json::from_str::<RequestContext>(&text).unwrap();
        opened.open(tenant(), user, &|s| (s == user).then(|| KeyState::Held(key.clone()))).unwrap();
        assert_eq!(opened, written);

        let mut erased = stored.clone();
        erased.open(tenant(), user, &|_| Some(KeyState::Erased)).unwrap();
        assert_eq!((erased.ip_address, erased.user_agent.as_deref(), erased.sealed), (None, Some(ERASED), None));
        // Bound to its tenant and user: moved to another's event, it does not open.
        let other = SubjectKey::generate();
        let mut moved = stored.clone();
        assert!(moved.open(tenant(), user, &|_| Some(KeyState::Held(other.clone()))).is_err());
        assert!(stored.clone().open(Uuid::from_u128(9), user, &|_| Some(KeyState::Held(key.clone()))).is_err());
        // Nothing to seal, nothing sealed.
        let mut bare = RequestContext { session_id: Some("s".into()), ..RequestContext::default() };
        bare.seal(tenant(), user, &key);
        assert_eq!(bare.sealed, None);
    }

    #[test]
    fn a_sealed_event_holds_no_personal_text_and_opens_with_its_key() {
        let (subject, key) = (Uuid::from_u128(2), SubjectKey::generate());
        let mut payload = created();
        seal(StreamType::User, "UserCreated", &mut payload, tenant(), subject, &key);
        let text = payload.to_string();
        for personal in ["zoe@example.org", "Zoë", "\"zoe\""] {
            assert!(!text.contains(personal), "{text}");
        }
        assert_eq!(payload["last_name"], Value::Null, "nothing to seal");
        assert_eq!(payload["role"], "agent", "not personal");
        assert_eq!(sealed_subjects(StreamType::User, "UserCreated", &payload), vec![subject]);
        open(StreamType::User, "UserCreated", &mut payload, tenant(), Some(subject), |_| {
            Some(KeyState::Held(key.clone()))
        })
        .unwrap();
        assert_eq!(payload, created());
    }

    #[test]
    fn an_erased_subject_s_fields_read_as_markers() {
        let (subject, key) = (Uuid::from_u128(2), SubjectKey::generate());
        let mut payload = created();
        seal(StreamType::User, "UserCreated", &mut payload, tenant(), subject, &key);
        open(StreamType::User, "UserCreated", &mut payload, tenant(), Some(subject), |_| Some(KeyState::Erased))
            .unwrap();
        assert_eq!(payload["username"], format!("erased-{subject}"));
        assert_eq!(payload["email"], format!("erased-{subject}"));
        assert_eq!(payload["first_name"], ERASED);
        assert_eq!(payload["last_name"], Value::Null);
    }

    #[test]
    fn a_sealed_field_does_not_open_elsewhere_or_altered() {
        let (subject, key) = (Uuid::from_u128(2), SubjectKey::generate());
        let mut payload = created();
        seal(StreamType::User, "UserCreated", &mut payload, tenant(), subject, &key);
        let held = |_| Some(KeyState::Held(key.clone()));

        let mut moved = payload.clone();
        moved["email"] = payload["username"].clone();
        assert_eq!(
            open(StreamType::User, "UserCreated", &mut moved, tenant(), Some(subject), held).unwrap_err().pointer,
            "/email"
        );

        let mut other_tenant = payload.clone();
        assert!(
            open(StreamType::User, "UserCreated", &mut other_tenant, Uuid::from_u128(9), Some(subject), held).is_err()
        );

        let mut other_key = payload.clone();
        let stranger = SubjectKey::generate();
        assert!(open(StreamType::User, "UserCreated", &mut other_key, tenant(), Some(subject), |_| Some(
            KeyState::Held(stranger.clone())
        ))
        .is_err());

        let mut altered = payload.clone();
        let mut data: Vec<char> = altered["first_name"]["$sealed"].as_str().unwrap().chars().collect();
        data[40] = if data[40] == 'A' { 'B' } else { 'A' }; // a ciphertext byte, past the nonce
        altered["first_name"]["$sealed"] = json!(data.into_iter().collect::<String>());
        assert!(open(StreamType::User, "UserCreated", &mut altered, tenant(), Some(subject), held).is_err());
    }

    #[test]
    fn fields_written_before_sealing_read_as_written() {
        let mut payload = created();
        open(StreamType::User, "UserCreated", &mut payload, tenant(), Some(Uuid::from_u128(2)), |_| {
            Some(KeyState::Erased)
        })
        .unwrap();
        assert_eq!(payload, created());
        assert!(sealed_subjects(StreamType::User, "UserCreated", &payload).is_empty());
    }

    #[test]
    fn what_a_client_sends_looking_sealed_is_sealed_like_anything_else() {
        let (subject, key) = (Uuid::from_u128(2), SubjectKey::generate());
        let forged = json!({ "$sealed": "AAAA", "subject": Uuid::from_u128(3) });
        let mut payload =
            json!({ "preferences": { "old": {}, "new": forged.clone() }, "set_at": "2026-12-07T00:00:00Z" });
        seal(StreamType::User, "UserPreferencesSet", &mut payload, tenant(), subject, &key);
        assert_ne!(payload["preferences"]["new"], forged);
        open(StreamType::User, "UserPreferencesSet", &mut payload, tenant(), Some(subject), |_| {
            Some(KeyState::Held(key.clone()))
        })
        .unwrap();
        assert_eq!(payload["preferences"]["new"], forged, "it reads back as sent");
        // Sealed for one subject, it does not open in another's stream.
        let mut sealed = json!({ "preferences": { "old": {}, "new": { "a": 1 } }, "set_at": "2026-12-07T00:00:00Z" });
        seal(StreamType::User, "UserPreferencesSet", &mut sealed, tenant(), subject, &key);
        let elsewhere =
            open(StreamType::User, "UserPreferencesSet", &mut sealed, tenant(), Some(Uuid::from_u128(4)), |_| {
                Some(KeyState::Held(key.clone()))
            });
        assert!(elsewhere.is_err());
    }

    #[test]
    fn a_profile_change_seals_both_sides() {
        let (subject, key) = (Uuid::from_u128(2), SubjectKey::generate());
        let mut payload = json!({ "first_name": { "old": "Zoë", "new": "Zoe Ng" }, "email": null,
                                   "updated_at": "2026-12-07T00:00:00Z" });
        seal(StreamType::User, "UserProfileUpdated", &mut payload, tenant(), subject, &key);
        // Neither name can be spelled by base64url, so finding one would mean it was left in the clear.
        let text = payload.to_string();
        assert!(!text.contains("Zoë") && !text.contains("Zoe Ng"), "{text}");
        assert!(
            payload["first_name"]["old"]["$sealed"].is_string() && payload["first_name"]["new"]["$sealed"].is_string()
        );
        open(StreamType::User, "UserProfileUpdated", &mut payload, tenant(), Some(subject), |_| Some(KeyState::Erased))
            .unwrap();
        assert_eq!(payload["first_name"], json!({ "old": ERASED, "new": ERASED }));
    }

    #[test]
    fn a_case_note_or_interaction_about_a_customer_is_theirs_and_one_about_nobody_is_nobodys() {
        use crate::stream::Aggregate;
        let customer = Uuid::from_u128(5);
        let opened: crate::case::CaseEvent = crate::case::CaseEvent::decode(
            "CaseOpened",
            2,
            json!({ "case_number": "CASE-000001", "title": "Refund", "description": null, "status": "open",
                    "priority": "high", "case_type_id": Uuid::from_u128(1), "created_by": Uuid::from_u128(7),
                    "assigned_to": null, "due_date": null, "tags": [], "custom_fields": {},
                    "opened_at": "2026-12-07T00:00:00Z", "customer_id": customer }),
        )
        .unwrap();
        let case_id = Uuid::from_u128(9);
        assert_eq!(crate::case::Case::data_subject(case_id, None, std::slice::from_ref(&opened)), Some(customer));
        let state = crate::case::Case::fold([&opened]);
        let updated = crate::case::CaseEvent::decode(
            "CaseUpdated",
            1,
            json!({ "title": { "old": "Refund", "new": "Refund now" }, "updated_at": "2026-12-07T00:00:00Z" }),
        )
        .unwrap();
        assert_eq!(crate::case::Case::data_subject(case_id, state.as_ref(), &[updated]), Some(customer));
        // A v1 case (before customers) names none, and neither does its stream.
        let mut v1 = opened.payload();
        v1.as_object_mut().unwrap().remove("customer_id");
        let old = crate::case::CaseEvent::decode("CaseOpened", 1, v1).unwrap();
        assert_eq!(crate::case::Case::data_subject(case_id, None, &[old]), None);
        // Only a value in a personal field needs the key: a priority change does not.
        assert!(!holds_personal(
            StreamType::Case,
            "CaseUpdated",
            &json!({ "priority": { "old": "low", "new": "high" } })
        ));
        assert!(holds_personal(StreamType::Case, "CaseUpdated", &json!({ "title": { "old": "a", "new": "b" } })));
        assert!(!holds_personal(StreamType::Interaction, "InteractionRecorded", &json!({ "content": null })));
    }

    #[test]
    fn what_looks_sealed_in_an_event_sealed_for_nobody_is_left_as_written() {
        let forged = json!({ "content": { "$sealed": "AAAA", "subject": Uuid::from_u128(3) } });
        let mut payload = forged.clone();
        open(StreamType::Note, "CaseNoteAdded", &mut payload, tenant(), None, |_| Some(KeyState::Erased)).unwrap();
        assert_eq!(payload, forged);
        // Sealed for a customer, a note's content opens only for that customer.
        let (customer, key) = (Uuid::from_u128(5), SubjectKey::generate());
        let mut note = json!({ "content": "Rang twice" });
        seal(StreamType::Note, "CaseNoteAdded", &mut note, tenant(), customer, &key);
        let mut elsewhere = note.clone();
        let held = |_| Some(KeyState::Held(key.clone()));
        assert!(
            open(StreamType::Note, "CaseNoteAdded", &mut elsewhere, tenant(), Some(Uuid::from_u128(6)), held).is_err()
        );
        open(StreamType::Note, "CaseNoteAdded", &mut note, tenant(), Some(customer), held).unwrap();
        assert_eq!(note["content"], "Rang twice");
    }
}
