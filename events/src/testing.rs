//! Given / when / then for the aggregates' unit tests: the state a history of events
//! folds to, a command decided on it (`Aggregate::decide`), and what came of it.
//!
//! ```ignore
//! let refused = given(&[created()]).when(TeamCommand::Create { .. }).refused();
//! ```

use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

use crate::error::DomainError;
use crate::stream::{Aggregate, Context};

/// The aggregate a stream's event belongs to (written by `streams!`), so `given` knows
/// the state from the events' type.
pub trait EventOf {
    type Aggregate: Aggregate<Event = Self>;
}

/// When the tests' commands are decided, unless a test says otherwise.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 9, 0, 0).single().unwrap_or_default()
}

/// Who acts in the tests' commands, unless a test says otherwise.
pub const ACTOR: Uuid = Uuid::from_u128(7);

/// The context the tests' commands are decided in.
pub fn context() -> Context {
    Context { actor: ACTOR, now: now() }
}

/// A stream that has had these events.
pub fn given<E: EventOf>(history: &[E]) -> Given<E::Aggregate> {
    Given { state: E::Aggregate::fold(history) }
}

/// A stream that has had no events yet.
pub fn new_stream<A: Aggregate>() -> Given<A> {
    Given { state: None }
}

pub struct Given<A: Aggregate> {
    state: Option<A>,
}

impl<A: Aggregate> Given<A> {
    /// The state the history folds to.
    pub fn state(self) -> Option<A> {
        self.state
    }

    /// `command` decided in `context()`.
    pub fn when(self, command: A::Command) -> Then<A> {
        self.when_in(command, &context())
    }

    /// `command` decided in `ctx`.
    pub fn when_in(self, command: A::Command, ctx: &Context) -> Then<A> {
        let result = A::decide(self.state.as_ref(), command, ctx);
        Then { state: self.state, result }
    }
}

/// What a command came to.
pub struct Then<A: Aggregate> {
    state: Option<A>,
    result: Result<Vec<A::Event>, DomainError>,
}

impl<A: Aggregate> Then<A>
where
    A::Event: std::fmt::Debug,
{
    /// The decision as `decide` gave it.
    pub fn result(self) -> Result<Vec<A::Event>, DomainError> {
        self.result
    }

    /// The events decided; a refusal fails the test, saying why.
    pub fn events(self) -> Vec<A::Event> {
        match self.result {
            Ok(events) => events,
            Err(e) => panic!("the command was refused: {e}"), // panic-free: tests only
        }
    }

    /// Why the command was refused; an accepted one fails the test.
    pub fn refused(self) -> DomainError {
        match self.result {
            Ok(events) => panic!("the command was accepted: {events:?}"), // panic-free: tests only
            Err(e) => e,
        }
    }

    /// The state after the decided events.
    pub fn state(self) -> Option<A> {
        let Then { state, result } = self;
        match result {
            Ok(events) => events.iter().fold(state, A::evolve),
            Err(e) => panic!("the command was refused: {e}"), // panic-free: tests only
        }
    }

    /// The decided events and the state after them.
    pub fn events_and_state(self) -> (Vec<A::Event>, Option<A>) {
        let Then { state, result } = self;
        match result {
            Ok(events) => {
                let after = events.iter().fold(state, A::evolve);
                (events, after)
            }
            Err(e) => panic!("the command was refused: {e}"), // panic-free: tests only
        }
    }
}
