//! The envelope every event travels in: stored in the journal, published to Kafka as JSON.
//!
//! Invariants: `event_type` names never change and a published `schema_version` of a
//! type is never edited; a new shape is a new version plus an upcaster. `stream_version`
//! starts at 1 and has no gaps within a stream.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The kinds of stream; the string form is stored and published and never changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamType {
    Tenant,
    User,
    Team,
    CaseType,
    Case,
    Channel,
    Interaction,
    Task,
    Note,
    Document,
    MessageTemplate,
    Workflow,
    CustomField,
    Webhook,
    /// A data subject who is not a user (a customer that cases name): only their erasure.
    DataSubject,
}

impl StreamType {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamType::Tenant => "tenant",
            StreamType::User => "user",
            StreamType::Team => "team",
            StreamType::CaseType => "case_type",
            StreamType::Case => "case",
            StreamType::Channel => "channel",
            StreamType::Interaction => "interaction",
            StreamType::Task => "task",
            StreamType::Note => "note",
            StreamType::Document => "document",
            StreamType::MessageTemplate => "message_template",
            StreamType::Workflow => "workflow",
            StreamType::CustomField => "custom_field",
            StreamType::Webhook => "webhook",
            StreamType::DataSubject => "data_subject",
        }
    }
}

/// Who issued the command that produced an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub user_id: Uuid,
    pub role: String,
}

impl Actor {
    /// Whether the actor is one of a tenant's users (not a platform operator or the
    /// system): a data subject of the tenant, whose requests are theirs.
    pub fn is_tenant_user(&self) -> bool {
        crate::workflow::ROLES.contains(&self.role.as_str())
    }
}

/// Where the command came from; kept for the audit log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestContext {
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub session_id: Option<String>,
    pub request_id: Option<String>,
    /// The IP address and user agent of a tenant user's request, sealed with the user's
    /// key (`seal`): the journal and Kafka hold them only so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<serde_json::Value>,
}

/// Where in an event a request's sealed address and user agent are bound.
const SEALED_REQUEST: &str = "/request";

impl RequestContext {
    /// Seals the IP address and user agent with the acting user's key (bound to the
    /// tenant, the user and the request's place), leaving neither in clear.
    pub fn seal(&mut self, tenant: Uuid, actor: Uuid, key: &crate::personal::SubjectKey) {
        if self.ip_address.is_none() && self.user_agent.is_none() {
            return;
        }
        let mut held =
            serde_json::json!({ "ip_address": self.ip_address.take(), "user_agent": self.user_agent.take() });
        crate::personal::seal_value(&mut held, SEALED_REQUEST, tenant, actor, key);
        self.sealed = Some(held);
    }

    /// Opens what `seal` sealed for `actor`: as it was with their key, as `erase` leaves
    /// it without (erased). One that does not open (altered, another's) is an error.
    pub fn open(
        &mut self,
        tenant: Uuid,
        actor: Uuid,
        key_of: &impl Fn(Uuid) -> Option<crate::personal::KeyState>,
    ) -> Result<(), crate::personal::OpenError> {
        let Some(mut held) = self.sealed.clone() else { return Ok(()) };
        let nothing = crate::personal::Marker::Nothing;
        crate::personal::open_value(&mut held, SEALED_REQUEST, nothing, tenant, actor, key_of)?;
        if held.is_null() {
            self.user_agent = Some(crate::personal::ERASED.to_owned());
        } else {
            let text = |field: &str| held.get(field).and_then(serde_json::Value::as_str).map(str::to_owned);
            (self.ip_address, self.user_agent) = (text("ip_address"), text("user_agent"));
        }
        self.sealed = None;
        Ok(())
    }

    /// What an erased actor's request reads as: the IP address and user agent are their
    /// personal data (no address; the user agent, if there was one, as the marker).
    pub fn erase(&mut self) {
        self.ip_address = None;
        if self.user_agent.is_some() || self.sealed.take().is_some() {
            self.user_agent = Some(crate::personal::ERASED.to_owned());
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventEnvelope {
    pub event_id: Uuid,
    pub tenant_id: Uuid,
    pub stream_type: StreamType,
    pub stream_id: Uuid,
    pub stream_version: i64,
    pub event_type: String,
    pub schema_version: u16,
    pub occurred_at: DateTime<Utc>,
    pub actor: Actor,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    #[serde(default)]
    pub request: RequestContext,
    /// The data subject whose key sealed the payload's personal fields (`personal`);
    /// None when nothing in it is sealed. Set by the journal, never by a client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_subject: Option<Uuid>,
    /// Position in the write-side journal; filled in when the event is stored.
    #[serde(default)]
    pub position: i64,
    pub payload: serde_json::Value,
}

/// The Kafka header names carried beside the JSON body (the key is the stream id).
pub mod headers {
    pub const TENANT_ID: &str = "tenant-id";
    pub const EVENT_TYPE: &str = "event-type";
    pub const SCHEMA_VERSION: &str = "schema-version";
    /// How many times the relay refilled the broker before publishing this message.
    pub const LOG_EPOCH: &str = "log-epoch";
}
