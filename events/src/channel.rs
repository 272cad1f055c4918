//! The channel stream: how a tenant talks to its customers (email, sms, voice, chat, web,
//! social, whatsapp), with its configuration; only active channels carry interactions.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::change::{activation, Activation, Change};
use crate::contract;
use crate::error::{DomainError, Validator};
use crate::stream::Context;

pub type Configuration = Map<String, Value>;

/// A configuration key holds a credential when its lowercase name contains one of these
/// (`smtp_password`, `api_key`, `client_secret`, `auth_token`, ...). Credentials are
/// write-only: their values go to the write side's `eventstore.channel_credentials`,
/// never into an event, and reads show the marker `{"set": true, "set_at": ...}`.
pub const CREDENTIAL_WORDS: &[&str] =
    &["password", "passwd", "secret", "token", "api_key", "apikey", "private_key", "credential", "access_key"];

pub fn is_credential(key: &str) -> bool {
    let key = key.to_lowercase();
    CREDENTIAL_WORDS.iter().any(|word| key.contains(word))
}

/// `{"set": true}` with at most a `set_at`: what a credential's value is shown as.
pub fn is_marker(value: &Value) -> bool {
    value
        .as_object()
        .is_some_and(|m| m.get("set") == Some(&Value::Bool(true)) && m.keys().all(|k| k == "set" || k == "set_at"))
}

/// The credentials a submitted configuration carries, once taken out of it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Credentials {
    /// New values by JSON pointer (`/smtp/password`), to store off the log.
    pub set: Vec<(String, Value)>,
    /// Credentials sent back as their marker: keep what is stored.
    pub kept: Vec<String>,
}

/// Takes the credential values out of a submitted configuration: a new value becomes a
/// marker set `now` (and goes to `Credentials::set`), a marker sent back is kept as
/// stored, `null` removes the credential.
pub fn split_credentials(configuration: &mut Configuration, now: DateTime<Utc>) -> Credentials {
    fn walk_value(value: &mut Value, pointer: &str, now: DateTime<Utc>, out: &mut Credentials) {
        match value {
            Value::Object(map) => walk(map, pointer, now, out),
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    walk_value(item, &format!("{pointer}/{i}"), now, out);
                }
            }
            _ => {}
        }
    }
    fn walk(map: &mut Configuration, prefix: &str, now: DateTime<Utc>, out: &mut Credentials) {
        let keys: Vec<String> = map.keys().cloned().collect();
        for key in keys {
            let pointer = format!("{prefix}/{}", key.replace('~', "~0").replace('/', "~1"));
            let Some(value) = map.get_mut(&key) else { continue };
            if is_credential(&key) {
                if value.is_null() {
                    map.remove(&key);
                } else if is_marker(value) {
                    out.kept.push(pointer);
                } else {
                    let secret = std::mem::replace(value, serde_json::json!({ "set": true, "set_at": now }));
                    out.set.push((pointer, secret));
                }
            } else {
                walk_value(value, &pointer, now, out);
            }
        }
    }
    let mut out = Credentials::default();
    walk(configuration, "", now, &mut out);
    out
}

/// The most credentials one configuration holds, and the longest pointer to one.
pub const MAX_CREDENTIALS: usize = 64;
pub const MAX_CREDENTIAL_POINTER: usize = 256;

/// Checks the credentials taken out of a configuration before anything is stored.
pub fn check_credentials(credentials: &Credentials) -> Result<(), DomainError> {
    let mut v = Validator::default();
    let count = credentials.set.len().saturating_add(credentials.kept.len());
    v.check(count <= MAX_CREDENTIALS, "configuration", format!("at most {MAX_CREDENTIALS} credentials"));
    let pointers = credentials.set.iter().map(|(p, _)| p).chain(&credentials.kept);
    if let Some(long) = pointers.into_iter().find(|p| p.len() > MAX_CREDENTIAL_POINTER) {
        let shown: String = long.chars().take(40).collect();
        v.check(
            false,
            "configuration",
            format!("the credential at {shown}... is nested deeper than {MAX_CREDENTIAL_POINTER} characters of path"),
        );
    }
    v.finish()
}

/// Every credential value of a configuration replaced by a bare marker: how a
/// configuration recorded before credentials left the log (v1 events) is read.
pub fn mask_credentials(configuration: &mut Configuration) {
    fn mask_value(value: &mut Value) {
        match value {
            Value::Object(map) => mask_credentials(map),
            Value::Array(items) => items.iter_mut().for_each(mask_value),
            _ => {}
        }
    }
    for (key, value) in configuration.iter_mut() {
        if is_credential(key) {
            if !value.is_null() && !is_marker(value) {
                *value = serde_json::json!({ "set": true });
            }
        } else {
            mask_value(value);
        }
    }
}

/// The markers sent back (`kept`) take the stored marker of the current configuration;
/// one that names no stored credential is dropped: a marker never claims a secret that
/// is not there.
fn settle_kept(configuration: &mut Configuration, current: Option<&Configuration>, kept: &[String]) {
    let mut whole = Value::Object(std::mem::take(configuration));
    let current = current.map(|c| Value::Object(c.clone()));
    for pointer in kept {
        let stored = current.as_ref().and_then(|c| c.pointer(pointer)).filter(|v| is_marker(v)).cloned();
        match stored {
            Some(marker) => {
                if let Some(slot) = whole.pointer_mut(pointer) {
                    *slot = marker;
                }
            }
            None => {
                let (parent, key) = pointer.rsplit_once('/').unwrap_or(("", pointer));
                let key = key.replace("~1", "/").replace("~0", "~");
                if let Some(map) = whole.pointer_mut(parent).and_then(Value::as_object_mut) {
                    map.remove(&key);
                }
            }
        }
    }
    if let Value::Object(map) = whole {
        *configuration = map;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ChannelType {
    Email,
    Sms,
    Voice,
    Chat,
    Web,
    Social,
    Whatsapp,
}

impl ChannelType {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelType::Email => "email",
            ChannelType::Sms => "sms",
            ChannelType::Voice => "voice",
            ChannelType::Chat => "chat",
            ChannelType::Web => "web",
            ChannelType::Social => "social",
            ChannelType::Whatsapp => "whatsapp",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ChannelCommand {
    /// `configuration` comes through `split_credentials`; `kept` are its markers sent back.
    Create {
        name: String,
        channel_type: ChannelType,
        configuration: Configuration,
        kept: Vec<String>,
    },
    Update {
        name: Option<String>,
        configuration: Option<Configuration>,
        kept: Vec<String>,
    },
    Deactivate,
    Activate,
}

payloads! {
    pub struct ChannelCreated {
        pub name: String,
        pub channel_type: ChannelType,
        pub configuration: Configuration,
        pub created_at: DateTime<Utc>,
    }
}

field_changes! {
    pub struct ChannelUpdated changes Channel {
        name: String,
        configuration: Configuration,
    } with {
        pub updated_at: DateTime<Utc>,
    }
}

event_enum! {
    pub enum ChannelEvent {
        // v1 held credential values; v2 holds their markers (the values are off the log).
        Created(ChannelCreated) = "ChannelCreated" @ 2 [1 => created_without_credentials],
        Updated(ChannelUpdated) = "ChannelUpdated" @ 2 [1 => updated_without_credentials],
        Deactivated(Activation) = "ChannelDeactivated" @ 1,
        Activated(Activation) = "ChannelActivated" @ 1,
    }
}

fn masked_at(payload: &mut Value, pointer: &str) {
    if let Some(map) = payload.pointer_mut(pointer).and_then(Value::as_object_mut) {
        mask_credentials(map);
    }
}

/// Upcasts a v1 `ChannelCreated`: credential values become markers as they are read
/// (migration `20261206100000_channel_credentials` scrubs the journal's copies).
pub fn created_without_credentials(mut payload: Value) -> Value {
    masked_at(&mut payload, "/configuration");
    payload
}

/// Upcasts a v1 `ChannelUpdated` the same way, both sides of the change.
pub fn updated_without_credentials(mut payload: Value) -> Value {
    masked_at(&mut payload, "/configuration/old");
    masked_at(&mut payload, "/configuration/new");
    payload
}

#[derive(Debug, Clone, PartialEq)]
pub struct Channel {
    pub name: String,
    pub channel_type: ChannelType,
    pub configuration: Configuration,
    pub active: bool,
}

pub fn evolve(state: Option<Channel>, event: &ChannelEvent) -> Option<Channel> {
    match (state, event) {
        (None, ChannelEvent::Created(e)) => Some(Channel {
            name: e.name.clone(),
            channel_type: e.channel_type,
            configuration: e.configuration.clone(),
            active: true,
        }),
        (Some(mut c), ChannelEvent::Updated(e)) => {
            e.apply(&mut c);
            Some(c)
        }
        (Some(mut c), ChannelEvent::Deactivated(_)) => {
            c.active = false;
            Some(c)
        }
        (Some(mut c), ChannelEvent::Activated(_)) => {
            c.active = true;
            Some(c)
        }
        // Never in a well-formed stream: the state is kept, never invented. Every
        // (state, event) pair is named, so a new event fails to compile here until folded.
        (state @ Some(_), ChannelEvent::Created(_)) => state,
        (None, ChannelEvent::Updated(_) | ChannelEvent::Deactivated(_) | ChannelEvent::Activated(_)) => None,
    }
}

pub fn normalise_name(name: &str) -> String {
    name.trim().to_lowercase()
}

fn check_configuration(v: &mut Validator, configuration: &Configuration) {
    let size = serde_json::to_string(configuration).map(|s| s.len()).unwrap_or(0);
    v.check(size <= 16 * 1024, "configuration", "must be at most 16 KiB of JSON");
}

pub fn decide(
    state: Option<&Channel>,
    command: ChannelCommand,
    ctx: &Context,
) -> Result<Vec<ChannelEvent>, DomainError> {
    let now = ctx.now;
    match (state, command) {
        (Some(_), ChannelCommand::Create { .. }) => Err(DomainError::Conflict("the channel already exists".into())),
        (None, ChannelCommand::Create { name, channel_type, mut configuration, kept }) => {
            settle_kept(&mut configuration, None, &kept);
            let mut v = Validator::default();
            v.text("name", &name, contract::NAME);
            check_configuration(&mut v, &configuration);
            v.finish()?;
            Ok(vec![ChannelEvent::Created(ChannelCreated {
                name: name.trim().to_owned(),
                channel_type,
                configuration,
                created_at: now,
            })])
        }
        (None, _) => Err(DomainError::NotFound("channel")),
        (Some(c), ChannelCommand::Update { name, mut configuration, kept }) => {
            if let Some(cfg) = configuration.as_mut() {
                settle_kept(cfg, Some(&c.configuration), &kept);
            }
            let mut v = Validator::default();
            if let Some(n) = &name {
                v.text("name", n, contract::NAME);
            }
            if let Some(cfg) = &configuration {
                check_configuration(&mut v, cfg);
            }
            v.finish()?;
            let event = ChannelUpdated {
                name: Change::between(&c.name, name.map(|n| n.trim().to_owned())),
                configuration: Change::between(&c.configuration, configuration),
                updated_at: now,
            };
            Ok(if event.is_empty() { vec![] } else { vec![ChannelEvent::Updated(event)] })
        }
        (Some(c), ChannelCommand::Deactivate) => Ok(activation(c.active, false, now, ChannelEvent::Deactivated)),
        (Some(c), ChannelCommand::Activate) => Ok(activation(c.active, true, now, ChannelEvent::Activated)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::testing::given;

    #[test]
    fn a_channel_is_created_active_and_deactivates_once() {
        let cmd = ChannelCommand::Create {
            name: " Support inbox ".into(),
            channel_type: ChannelType::Email,
            configuration: Configuration::new(),
            kept: vec![],
        };
        let events = decide(None, cmd, &Context::at(Utc::now())).unwrap();
        let state = given(&events).state();
        assert_eq!(state.as_ref().unwrap().name, "Support inbox");
        let off = decide(state.as_ref(), ChannelCommand::Deactivate, &Context::at(Utc::now())).unwrap();
        let state = off.iter().fold(state, evolve);
        assert!(!state.as_ref().unwrap().active);
        assert_eq!(decide(state.as_ref(), ChannelCommand::Deactivate, &Context::at(Utc::now())).unwrap(), vec![]);
    }

    #[test]
    fn commands_on_a_missing_channel_are_not_found() {
        assert_eq!(
            decide(None, ChannelCommand::Activate, &Context::at(Utc::now())),
            Err(DomainError::NotFound("channel"))
        );
    }

    #[test]
    fn updates_record_changes_and_refuse_blank_names() {
        let cmd = ChannelCommand::Create {
            name: "Inbox".into(),
            channel_type: ChannelType::Email,
            configuration: Configuration::new(),
            kept: vec![],
        };
        let state = given(&decide(None, cmd, &Context::at(Utc::now())).unwrap()).state();
        let blank = ChannelCommand::Update { name: Some(" ".into()), configuration: None, kept: vec![] };
        assert!(matches!(decide(state.as_ref(), blank, &Context::at(Utc::now())), Err(DomainError::Invalid(_))));
        let rename = ChannelCommand::Update { name: Some("Help desk".into()), configuration: None, kept: vec![] };
        let events = decide(state.as_ref(), rename, &Context::at(Utc::now())).unwrap();
        let [ChannelEvent::Updated(e)] = events.as_slice() else { panic!("expected an update") };
        assert_eq!(e.name.as_ref().unwrap().new, "Help desk");
        assert_eq!(decide(state.as_ref(), ChannelCommand::Activate, &Context::at(Utc::now())).unwrap(), vec![]);
    }

    #[test]
    fn credentials_leave_the_configuration_and_markers_sent_back_keep_them() {
        let now = Utc::now();
        let mut cfg: Configuration = serde_json::from_value(serde_json::json!({
            "smtp_host": "mail.example.org",
            "SMTP_Password": "hunter2",
            "oauth": { "client_id": "abc", "client_secret": "s3cret", "refresh_token": null },
            "accounts": [{ "user": "a", "password": "in-an-array" }],
            "api_key": { "set": true },
        }))
        .unwrap();
        let creds = split_credentials(&mut cfg, now);
        assert_eq!(creds.set.len(), 3);
        assert!(creds.set.contains(&("/accounts/0/password".into(), serde_json::json!("in-an-array"))));
        assert!(creds.set.contains(&("/SMTP_Password".into(), serde_json::json!("hunter2"))));
        assert!(creds.set.contains(&("/oauth/client_secret".into(), serde_json::json!("s3cret"))));
        assert_eq!(creds.kept, vec!["/api_key".to_owned()]);
        assert!(!serde_json::to_string(&cfg).unwrap().contains("s3cret"));
        assert!(!serde_json::to_string(&cfg).unwrap().contains("in-an-array"));
        assert!(cfg["oauth"].get("refresh_token").is_none(), "null removes a credential");
        let create = ChannelCommand::Create {
            name: "Mail".into(),
            channel_type: ChannelType::Email,
            configuration: cfg,
            kept: creds.kept,
        };
        let events = decide(None, create, &Context::at(now)).unwrap();
        let [ChannelEvent::Created(e)] = events.as_slice() else { panic!("expected a creation") };
        assert!(e.configuration.get("api_key").is_none(), "a marker naming nothing stored is dropped");
        assert!(is_marker(&e.configuration["SMTP_Password"]));
        let state = given(&events).state();

        // Sent back as read, the stored marker stays; a changed host is the only change.
        let mut read_back = state.as_ref().unwrap().configuration.clone();
        read_back["smtp_host"] = serde_json::json!("smtp.example.org");
        let creds = split_credentials(&mut read_back, now);
        assert!(creds.set.is_empty());
        let update = ChannelCommand::Update { name: None, configuration: Some(read_back), kept: creds.kept };
        let events = decide(state.as_ref(), update, &Context::at(now)).unwrap();
        let [ChannelEvent::Updated(e)] = events.as_slice() else { panic!("expected an update") };
        let new = &e.configuration.as_ref().unwrap().new;
        assert_eq!(new["SMTP_Password"], state.as_ref().unwrap().configuration["SMTP_Password"]);
    }

    #[test]
    fn v1_events_are_read_with_their_credentials_masked() {
        let payload = serde_json::json!({
            "name": "Mail", "channel_type": "email", "created_at": "2026-11-20T09:00:00Z",
            "configuration": { "smtp_password": "hunter2", "nested": { "api_token": "t" }, "host": "h" },
        });
        let ChannelEvent::Created(e) = ChannelEvent::decode("ChannelCreated", 1, payload).unwrap() else {
            panic!("expected a creation")
        };
        assert_eq!(e.configuration["smtp_password"], serde_json::json!({ "set": true }));
        assert_eq!(e.configuration["nested"]["api_token"], serde_json::json!({ "set": true }));
        assert_eq!(e.configuration["host"], "h");
    }
}
