//! Events as the projections receive them: the envelope plus the decoded domain event.

use events::case::CaseEvent;
use events::case_type::CaseTypeEvent;
use events::channel::ChannelEvent;
use events::document::DocumentEvent;
use events::field_definition::FieldDefinitionEvent;
use events::interaction::InteractionEvent;
use events::note::NoteEvent;
use events::task::TaskEvent;
use events::team::TeamEvent;
use events::template::TemplateEvent;
use events::tenant::TenantEvent;
use events::user::UserEvent;
use events::workflow::WorkflowEvent;
use events::{DecodeError, EventEnvelope, StreamType};

#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // short-lived, one per consumed message
pub enum DomainEvent {
    Tenant(TenantEvent),
    User(UserEvent),
    Team(TeamEvent),
    CaseType(CaseTypeEvent),
    Channel(ChannelEvent),
    Interaction(InteractionEvent),
    Task(TaskEvent),
    Note(NoteEvent),
    Document(DocumentEvent),
    Template(TemplateEvent),
    Workflow(WorkflowEvent),
    FieldDefinition(FieldDefinitionEvent),
    Case(CaseEvent),
}

/// A message no decoder of this build can read, with its envelope when that much parsed.
#[derive(Debug)]
pub struct Undecodable {
    pub envelope: Option<Box<EventEnvelope>>,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct Event {
    pub envelope: EventEnvelope,
    pub data: DomainEvent,
}

impl Event {
    /// Decodes a Kafka payload; unknown types or versions are errors, never guesses.
    pub fn from_payload(payload: &[u8]) -> Result<Self, Undecodable> {
        let envelope: EventEnvelope = serde_json::from_slice(payload)
            .map_err(|e| Undecodable { envelope: None, reason: format!("not an event envelope: {e}") })?;
        Self::from_envelope(envelope)
    }

    pub fn from_envelope(envelope: EventEnvelope) -> Result<Self, Undecodable> {
        let decoded: Result<DomainEvent, DecodeError> = match envelope.stream_type {
            StreamType::Tenant => {
                TenantEvent::decode(&envelope.event_type, envelope.schema_version, envelope.payload.clone())
                    .map(DomainEvent::Tenant)
            }
            StreamType::User => {
                UserEvent::decode(&envelope.event_type, envelope.schema_version, envelope.payload.clone())
                    .map(DomainEvent::User)
            }
            StreamType::Team => {
                TeamEvent::decode(&envelope.event_type, envelope.schema_version, envelope.payload.clone())
                    .map(DomainEvent::Team)
            }
            StreamType::CaseType => {
                CaseTypeEvent::decode(&envelope.event_type, envelope.schema_version, envelope.payload.clone())
                    .map(DomainEvent::CaseType)
            }
            StreamType::Channel => {
                ChannelEvent::decode(&envelope.event_type, envelope.schema_version, envelope.payload.clone())
                    .map(DomainEvent::Channel)
            }
            StreamType::Interaction => {
                InteractionEvent::decode(&envelope.event_type, envelope.schema_version, envelope.payload.clone())
                    .map(DomainEvent::Interaction)
            }
            StreamType::Task => {
                TaskEvent::decode(&envelope.event_type, envelope.schema_version, envelope.payload.clone())
                    .map(DomainEvent::Task)
            }
            StreamType::Note => {
                NoteEvent::decode(&envelope.event_type, envelope.schema_version, envelope.payload.clone())
                    .map(DomainEvent::Note)
            }
            StreamType::Document => {
                DocumentEvent::decode(&envelope.event_type, envelope.schema_version, envelope.payload.clone())
                    .map(DomainEvent::Document)
            }
            StreamType::MessageTemplate => {
                TemplateEvent::decode(&envelope.event_type, envelope.schema_version, envelope.payload.clone())
                    .map(DomainEvent::Template)
            }
            StreamType::Workflow => {
                WorkflowEvent::decode(&envelope.event_type, envelope.schema_version, envelope.payload.clone())
                    .map(DomainEvent::Workflow)
            }
            StreamType::CustomField => {
                FieldDefinitionEvent::decode(&envelope.event_type, envelope.schema_version, envelope.payload.clone())
                    .map(DomainEvent::FieldDefinition)
            }
            StreamType::Case => {
                CaseEvent::decode(&envelope.event_type, envelope.schema_version, envelope.payload.clone())
                    .map(DomainEvent::Case)
            }
        };
        match decoded {
            Ok(data) => Ok(Self { envelope, data }),
            Err(e) => Err(Undecodable { reason: e.to_string(), envelope: Some(Box::new(envelope)) }),
        }
    }

    pub fn version(&self) -> i64 {
        self.envelope.stream_version
    }
}
