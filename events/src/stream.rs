//! The registry of streams, declared once: each aggregate's stream type, state, events
//! and fold, and `DomainEvent`, every stream's event as one type.
//!
//! The command API folds a stream through `Aggregate`; the projector decodes what the
//! log carries through `DomainEvent::decode`. Both come from the one list in `streams!`
//! below, so a new stream is a line there (and a `StreamType` variant), and every match
//! over `StreamType` or `DomainEvent` then fails to compile until it handles it.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::envelope::StreamType;
use crate::error::{DecodeError, DomainError};
use crate::{case, case_type, channel, document, field_definition, interaction, note, task, team, template, tenant};
use crate::{data_subject, user, webhook, workflow};

/// What the codec of a stream's events offers (written by `event_enum!`).
pub trait StreamEvent: Sized + Clone + Send + Sync + 'static {
    fn event_type(&self) -> &'static str;
    fn schema_version(&self) -> u16;
    fn payload(&self) -> Value;
    fn decode(event_type: &str, schema_version: u16, payload: Value) -> Result<Self, DecodeError>;
}

/// What every `decide` needs besides the state and the command: who acts and when.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    /// The acting user (the nil id for the system: the SLA scheduler, a workflow's action).
    pub actor: Uuid,
    pub now: DateTime<Utc>,
}

impl Context {
    /// The system acting at `now`.
    pub fn at(now: DateTime<Utc>) -> Self {
        Self { actor: Uuid::nil(), now }
    }
}

/// One aggregate: the state its stream folds to. `evolve` matches every (state, event)
/// pair by name, so a new event fails to compile there until it is folded.
pub trait Aggregate: Sized + Clone + Send + Sync + 'static {
    const STREAM: StreamType;
    type Event: StreamEvent + Into<DomainEvent>;
    /// What the stream is asked to do.
    type Command;
    fn evolve(state: Option<Self>, event: &Self::Event) -> Option<Self>;

    /// The events that carry out `command` on `state` (None: the stream has none yet), or
    /// why it is refused.
    fn decide(state: Option<&Self>, command: Self::Command, ctx: &Context) -> Result<Vec<Self::Event>, DomainError>;

    /// The folded state as any stream's (what a cache of states keeps).
    fn into_folded(state: Option<Self>) -> Folded;
    /// This aggregate's state, if `folded` is one (None: another stream type's).
    fn from_folded(folded: &Folded) -> Option<&Option<Self>>;

    /// The data subject whose key seals the personal fields of `events`, appended to the
    /// stream `stream_id` at `state` (see `personal`): a user's own stream is about them;
    /// a case and its notes and interactions are about the case's customer, if it names one.
    fn data_subject(stream_id: Uuid, state: Option<&Self>, events: &[Self::Event]) -> Option<Uuid>;

    /// Folds a whole history from the start.
    fn fold<'a>(events: impl IntoIterator<Item = &'a Self::Event>) -> Option<Self> {
        events.into_iter().fold(None, Self::evolve)
    }
}

/// A stream's data subject: its module's function when the registry names one, else none.
macro_rules! subject_of {
    ($subject:path; $($arg:ident),+) => {
        $subject($($arg),+)
    };
    (; $($arg:ident),+) => {{
        let _ = ($($arg),+);
        None
    }};
}

macro_rules! streams {
    ($( $variant:ident: $stream:ident => $module:ident::$state:ident($event:ident) by $command:ident $(, subject $subject:path)? );+ $(;)?) => {
        /// Any stream's event: what a projection receives, decoded.
        #[derive(Debug, Clone, PartialEq)]
        #[allow(clippy::large_enum_variant)] // short-lived, one per consumed message
        pub enum DomainEvent {
            $( $variant($module::$event), )+
        }

        impl DomainEvent {
            /// Decodes a stored event of the given stream type; unknown types or versions
            /// are errors, never guesses.
            pub fn decode(
                stream: StreamType,
                event_type: &str,
                schema_version: u16,
                payload: Value,
            ) -> Result<Self, DecodeError> {
                match stream {
                    $( StreamType::$stream => {
                        $module::$event::decode(event_type, schema_version, payload).map(DomainEvent::$variant)
                    } )+
                }
            }

            /// Every event type the log knows, of every stream.
            pub fn event_types() -> impl Iterator<Item = &'static str> {
                [$( $module::$event::EVENT_TYPES ),+].into_iter().flatten().copied()
            }

            pub fn stream_type(&self) -> StreamType {
                match self {
                    $( DomainEvent::$variant(_) => StreamType::$stream, )+
                }
            }

            pub fn event_type(&self) -> &'static str {
                match self {
                    $( DomainEvent::$variant(e) => e.event_type(), )+
                }
            }

            pub fn schema_version(&self) -> u16 {
                match self {
                    $( DomainEvent::$variant(e) => e.schema_version(), )+
                }
            }

            pub fn payload(&self) -> Value {
                match self {
                    $( DomainEvent::$variant(e) => e.payload(), )+
                }
            }
        }

        /// Any stream's folded state (None: the stream has no state, e.g. never created).
        #[derive(Debug, Clone)]
        #[allow(clippy::large_enum_variant)] // one per cached stream, behind an Arc
        pub enum Folded {
            $( $variant(Option<$module::$state>), )+
        }

        $(
            impl Aggregate for $module::$state {
                const STREAM: StreamType = StreamType::$stream;
                type Event = $module::$event;
                type Command = $module::$command;
                fn evolve(state: Option<Self>, event: &Self::Event) -> Option<Self> {
                    $module::evolve(state, event)
                }
                fn decide(
                    state: Option<&Self>,
                    command: Self::Command,
                    ctx: &Context,
                ) -> Result<Vec<Self::Event>, DomainError> {
                    $module::decide(state, command, ctx)
                }
                fn into_folded(state: Option<Self>) -> Folded {
                    Folded::$variant(state)
                }
                fn data_subject(stream_id: Uuid, state: Option<&Self>, events: &[Self::Event]) -> Option<Uuid> {
                    subject_of!($($subject)?; stream_id, state, events)
                }
                #[allow(unreachable_patterns)] // a registry of one stream would have no other
                fn from_folded(folded: &Folded) -> Option<&Option<Self>> {
                    match folded {
                        Folded::$variant(state) => Some(state),
                        _ => None,
                    }
                }
            }

            #[cfg(test)]
            impl crate::testing::EventOf for $module::$event {
                type Aggregate = $module::$state;
            }

            impl From<$module::$event> for DomainEvent {
                fn from(event: $module::$event) -> Self {
                    DomainEvent::$variant(event)
                }
            }
        )+
    };
}

streams! {
    Tenant: Tenant => tenant::Tenant(TenantEvent) by TenantCommand;
    User: User => user::User(UserEvent) by UserCommand, subject user::data_subject;
    Team: Team => team::Team(TeamEvent) by TeamCommand;
    CaseType: CaseType => case_type::CaseType(CaseTypeEvent) by CaseTypeCommand;
    Case: Case => case::Case(CaseEvent) by CaseCommand, subject case::data_subject;
    Channel: Channel => channel::Channel(ChannelEvent) by ChannelCommand;
    Interaction: Interaction => interaction::Interaction(InteractionEvent) by RecordInteraction,
        subject interaction::data_subject;
    Task: Task => task::Task(TaskEvent) by TaskCommand;
    Note: Note => note::Note(NoteEvent) by NoteCommand, subject note::data_subject;
    Document: Document => document::Document(DocumentEvent) by DocumentCommand;
    Template: MessageTemplate => template::Template(TemplateEvent) by TemplateCommand;
    Workflow: Workflow => workflow::Workflow(WorkflowEvent) by WorkflowCommand;
    FieldDefinition: CustomField => field_definition::FieldDefinition(FieldDefinitionEvent) by FieldDefinitionCommand;
    Webhook: Webhook => webhook::Webhook(WebhookEvent) by WebhookCommand;
    DataSubject: DataSubject => data_subject::DataSubject(DataSubjectEvent) by DataSubjectCommand;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stream_type_decodes_through_the_registry_and_says_what_it_is() {
        let payload = serde_json::json!({
            "name": "Support", "description": null, "created_at": "2026-11-20T09:00:00Z",
        });
        let event = DomainEvent::decode(StreamType::Team, "TeamCreated", 1, payload.clone()).ok();
        let Some(event) = event else { panic!("a TeamCreated v1 decodes") };
        assert_eq!(
            (event.stream_type(), event.event_type(), event.schema_version()),
            (StreamType::Team, "TeamCreated", 1)
        );
        assert_eq!(event.payload(), payload);
        // The same name under another stream type is not a guess.
        assert!(matches!(
            DomainEvent::decode(StreamType::Task, "TeamCreated", 1, payload),
            Err(DecodeError::Unknown { .. })
        ));
    }
}
