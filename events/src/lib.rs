//! Murima's pure domain: every stream's commands, events, state, `decide` and `evolve`.
//!
//! No I/O lives here. The services load a stream's events, fold them with `evolve`,
//! call `decide` with everything it needs already looked up, and store what it returns.

#[macro_use]
mod codec;
#[macro_use]
pub mod change;

pub mod audit;
pub mod case;
pub mod case_type;
pub mod channel;
pub mod contract;
pub mod data_subject;
pub mod document;
pub mod envelope;
pub mod error;
pub mod field_definition;
pub mod form;
pub mod interaction;
pub mod note;
pub mod personal;
pub mod reference;
pub mod stream;
pub mod task;
pub mod team;
pub mod template;
pub mod tenant;
#[cfg(test)]
pub mod testing;
pub mod user;
pub mod webhook;
pub mod workflow;

pub use envelope::{Actor, EventEnvelope, RequestContext, StreamType};
pub use error::{DecodeError, DomainError, FieldError};
pub use stream::{Aggregate, Context, DomainEvent, Folded, StreamEvent};
