//! Errors a decision or a decode can end in; the HTTP layers map them to 4xx answers.

use serde::Serialize;

/// One field that failed validation, named by its JSON path in the request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// Why a command was refused. Never a technical failure: those belong to the adapters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The command's own fields are wrong (422 with one entry per field).
    #[error("the command has invalid fields")]
    Invalid(Vec<FieldError>),
    /// The command is well formed but the stream's current state forbids it (409).
    #[error("{0}")]
    Conflict(String),
    /// The actor's role may not do this here (403), e.g. take a workflow transition.
    #[error("{0}")]
    Forbidden(String),
    /// The stream the command addresses does not exist (404).
    #[error("{0} not found")]
    NotFound(&'static str),
}

/// A stored event that this build cannot read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event {event_type} v{schema_version}: no decoder or upcaster for it")]
    Unknown { event_type: String, schema_version: u16 },
    #[error("event {event_type} v{schema_version} has a malformed payload: {source}")]
    Malformed { event_type: String, schema_version: u16, source: serde_json::Error },
}

/// Collects field errors so a command reports all of them at once, not just the first.
#[derive(Debug, Default)]
pub struct Validator(Vec<FieldError>);

impl Validator {
    pub fn check(&mut self, ok: bool, field: &str, message: impl Into<String>) {
        if !ok {
            self.0.push(FieldError::new(field, message));
        }
    }

    /// `value` within its limit of the input contract (`crate::contract`).
    pub fn text(&mut self, field: &str, value: &str, limit: crate::contract::Text) {
        if let Some(problem) = limit.problem(value) {
            self.0.push(FieldError::new(field, problem));
        }
    }

    /// Like `text`, for a value that may be empty (an optional description, say).
    pub fn optional_text(&mut self, field: &str, value: &str, limit: crate::contract::Text) {
        if !value.trim().is_empty() {
            self.text(field, value, limit);
        }
    }

    pub fn extend(&mut self, errors: impl IntoIterator<Item = FieldError>) {
        self.0.extend(errors);
    }

    pub fn finish(self) -> Result<(), DomainError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(DomainError::Invalid(self.0))
        }
    }
}
