//! The channel stream: how a tenant talks to its customers (email, sms, voice, chat, web,
//! social, whatsapp), with its configuration; only active channels carry interactions.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::change::Change;
use crate::contract;
use crate::error::{DomainError, Validator};

pub type Configuration = Map<String, Value>;

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
    Create { name: String, channel_type: ChannelType, configuration: Configuration },
    Update { name: Option<String>, configuration: Option<Configuration> },
    Deactivate,
    Activate,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelCreated {
    pub name: String,
    pub channel_type: ChannelType,
    pub configuration: Configuration,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelUpdated {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Change<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<Change<Configuration>>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelActivation {
    pub at: DateTime<Utc>,
}

event_enum! {
    pub enum ChannelEvent {
        Created(ChannelCreated) = "ChannelCreated" @ 1,
        Updated(ChannelUpdated) = "ChannelUpdated" @ 1,
        Deactivated(ChannelActivation) = "ChannelDeactivated" @ 1,
        Activated(ChannelActivation) = "ChannelActivated" @ 1,
    }
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
            if let Some(n) = &e.name {
                c.name = n.new.clone();
            }
            if let Some(cfg) = &e.configuration {
                c.configuration = cfg.new.clone();
            }
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
    now: DateTime<Utc>,
) -> Result<Vec<ChannelEvent>, DomainError> {
    match (state, command) {
        (Some(_), ChannelCommand::Create { .. }) => Err(DomainError::Conflict("the channel already exists".into())),
        (None, ChannelCommand::Create { name, channel_type, configuration }) => {
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
        (Some(c), ChannelCommand::Update { name, configuration }) => {
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
            Ok(if event.name.is_none() && event.configuration.is_none() {
                vec![]
            } else {
                vec![ChannelEvent::Updated(event)]
            })
        }
        (Some(c), ChannelCommand::Deactivate) => {
            Ok(if c.active { vec![ChannelEvent::Deactivated(ChannelActivation { at: now })] } else { vec![] })
        }
        (Some(c), ChannelCommand::Activate) => {
            Ok(if c.active { vec![] } else { vec![ChannelEvent::Activated(ChannelActivation { at: now })] })
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_channel_is_created_active_and_deactivates_once() {
        let cmd = ChannelCommand::Create {
            name: " Support inbox ".into(),
            channel_type: ChannelType::Email,
            configuration: Configuration::new(),
        };
        let events = decide(None, cmd, Utc::now()).unwrap();
        let state = events.iter().fold(None, evolve);
        assert_eq!(state.as_ref().unwrap().name, "Support inbox");
        let off = decide(state.as_ref(), ChannelCommand::Deactivate, Utc::now()).unwrap();
        let state = off.iter().fold(state, evolve);
        assert!(!state.as_ref().unwrap().active);
        assert_eq!(decide(state.as_ref(), ChannelCommand::Deactivate, Utc::now()).unwrap(), vec![]);
    }

    #[test]
    fn commands_on_a_missing_channel_are_not_found() {
        assert_eq!(decide(None, ChannelCommand::Activate, Utc::now()), Err(DomainError::NotFound("channel")));
    }

    #[test]
    fn updates_record_changes_and_refuse_blank_names() {
        let cmd = ChannelCommand::Create {
            name: "Inbox".into(),
            channel_type: ChannelType::Email,
            configuration: Configuration::new(),
        };
        let state = decide(None, cmd, Utc::now()).unwrap().iter().fold(None, evolve);
        let blank = ChannelCommand::Update { name: Some(" ".into()), configuration: None };
        assert!(matches!(decide(state.as_ref(), blank, Utc::now()), Err(DomainError::Invalid(_))));
        let rename = ChannelCommand::Update { name: Some("Help desk".into()), configuration: None };
        let events = decide(state.as_ref(), rename, Utc::now()).unwrap();
        let [ChannelEvent::Updated(e)] = events.as_slice() else { panic!("expected an update") };
        assert_eq!(e.name.as_ref().unwrap().new, "Help desk");
        assert_eq!(decide(state.as_ref(), ChannelCommand::Activate, Utc::now()).unwrap(), vec![]);
    }
}
