//! Events as the projections receive them: the envelope plus the decoded domain event.

use events::case::CaseEvent;
use events::tenant::TenantEvent;
use events::{DecodeError, EventEnvelope, StreamType};

#[derive(Debug, Clone)]
pub enum DomainEvent {
    Tenant(TenantEvent),
    Case(CaseEvent),
}

#[derive(Debug, Clone)]
pub struct Event {
    pub envelope: EventEnvelope,
    pub data: DomainEvent,
}

impl Event {
    /// Decodes a Kafka payload; unknown types or versions are errors, never guesses.
    pub fn from_payload(payload: &[u8]) -> Result<Self, (Option<EventEnvelope>, String)> {
        let envelope: EventEnvelope =
            serde_json::from_slice(payload).map_err(|e| (None, format!("not an event envelope: {e}")))?;
        Self::from_envelope(envelope)
    }

    pub fn from_envelope(envelope: EventEnvelope) -> Result<Self, (Option<EventEnvelope>, String)> {
        let decoded: Result<DomainEvent, DecodeError> = match envelope.stream_type {
            StreamType::Tenant => {
                TenantEvent::decode(&envelope.event_type, envelope.schema_version, envelope.payload.clone())
                    .map(DomainEvent::Tenant)
            }
            StreamType::Case => {
                CaseEvent::decode(&envelope.event_type, envelope.schema_version, envelope.payload.clone())
                    .map(DomainEvent::Case)
            }
        };
        match decoded {
            Ok(data) => Ok(Self { envelope, data }),
            Err(e) => Err((Some(envelope), e.to_string())),
        }
    }

    pub fn version(&self) -> i64 {
        self.envelope.stream_version
    }
}
