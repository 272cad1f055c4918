//! The data-subject stream: a person the tenant's records are about who is not one of
//! its users (a customer that cases name, see `personal`). Its only event is their
//! erasure; the journal deletes their key in the same transaction.
//!
//! The stream's id is derived from the subject's (`stream_id`), so a customer id a client
//! chose can never collide with a stream of another kind.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::DomainError;
use crate::stream::Context;

/// The namespace of data-subject stream ids (UUID v5 of the subject's id).
const NAMESPACE: Uuid = Uuid::from_u128(0x6d75_7269_6d61_4000_8000_6461_7461_7375);

/// The id of the stream of the data subject `subject`.
pub fn stream_id(subject: Uuid) -> Uuid {
    Uuid::new_v5(&NAMESPACE, subject.as_bytes())
}

payloads! {
    pub struct DataSubjectErased {
        pub subject_id: Uuid,
        pub erased_at: DateTime<Utc>,
    }
}

event_enum! {
    pub enum DataSubjectEvent {
        Erased(DataSubjectErased) = "DataSubjectErased" @ 1,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DataSubject {
    pub subject_id: Uuid,
}

pub fn evolve(state: Option<DataSubject>, event: &DataSubjectEvent) -> Option<DataSubject> {
    match event {
        DataSubjectEvent::Erased(e) => state.or(Some(DataSubject { subject_id: e.subject_id })),
    }
}

/// What the stream is asked to do.
#[derive(Debug, Clone, PartialEq)]
pub enum DataSubjectCommand {
    Erase { subject: Uuid },
}

pub fn decide(
    state: Option<&DataSubject>,
    command: DataSubjectCommand,
    ctx: &Context,
) -> Result<Vec<DataSubjectEvent>, DomainError> {
    match command {
        DataSubjectCommand::Erase { subject } => erase(state, subject, ctx.now),
    }
}

/// Erases `subject`: an erasure event the first time, nothing after (an erasure is
/// done once; asking again is answered as done).
pub fn erase(
    state: Option<&DataSubject>,
    subject: Uuid,
    now: DateTime<Utc>,
) -> Result<Vec<DataSubjectEvent>, DomainError> {
    Ok(match state {
        Some(_) => vec![],
        None => vec![DataSubjectEvent::Erased(DataSubjectErased { subject_id: subject, erased_at: now })],
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::testing::{given, new_stream};

    #[test]
    fn a_subject_is_erased_once_on_a_stream_of_its_own() {
        let subject = Uuid::now_v7();
        assert_ne!(stream_id(subject), subject);
        assert_eq!(stream_id(subject), stream_id(subject));
        let erase = DataSubjectCommand::Erase { subject };
        let (events, state) = new_stream::<DataSubject>().when(erase.clone()).events_and_state();
        assert_eq!(events.len(), 1);
        assert_eq!(state, Some(DataSubject { subject_id: subject }));
        assert!(given(&events).when(erase).events().is_empty(), "asked again, it is done");
    }
}
