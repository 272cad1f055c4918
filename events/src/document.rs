//! The document stream: metadata of a file attached to a case (the bytes live in object
//! storage at `storage_path`), soft-deleted rather than removed.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::contract;
use crate::error::{DomainError, Validator};
use crate::reference::Reference;
use crate::stream::Context;

/// Largest document the metadata may describe (1 GiB).
pub const MAX_SIZE: i64 = 1 << 30;

#[derive(Debug, Clone, PartialEq)]
pub enum DocumentCommand {
    Attach {
        case_id: Uuid,
        case: Reference,
        filename: String,
        mime_type: String,
        size: i64,
        storage_path: String,
        metadata: Map<String, Value>,
    },
    Delete,
}

payloads! {
    pub struct DocumentAttached {
        pub case_id: Uuid,
        pub filename: String,
        pub mime_type: String,
        pub size: i64,
        pub storage_path: String,
        pub uploaded_by: Uuid,
        pub metadata: Map<String, Value>,
        pub uploaded_at: DateTime<Utc>,
    }

    pub struct DocumentDeleted {
        pub case_id: Uuid,
        pub deleted_at: DateTime<Utc>,
    }
}

event_enum! {
    pub enum DocumentEvent {
        Attached(DocumentAttached) = "DocumentAttached" @ 1,
        Deleted(DocumentDeleted) = "DocumentDeleted" @ 1,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub case_id: Uuid,
    pub uploaded_by: Uuid,
    pub deleted: bool,
}

pub fn evolve(state: Option<Document>, event: &DocumentEvent) -> Option<Document> {
    match (state, event) {
        (None, DocumentEvent::Attached(e)) => {
            Some(Document { case_id: e.case_id, uploaded_by: e.uploaded_by, deleted: false })
        }
        (Some(mut d), DocumentEvent::Deleted(_)) => {
            d.deleted = true;
            Some(d)
        }
        // Never in a well-formed stream: the state is kept, never invented. Every
        // (state, event) pair is named, so a new event fails to compile here until folded.
        (state @ Some(_), DocumentEvent::Attached(_)) => state,
        (None, DocumentEvent::Deleted(_)) => None,
    }
}

pub fn decide(
    state: Option<&Document>,
    command: DocumentCommand,
    ctx: &Context,
) -> Result<Vec<DocumentEvent>, DomainError> {
    let (actor, now) = (ctx.actor, ctx.now);
    match (state, command) {
        (Some(_), DocumentCommand::Attach { .. }) => Err(DomainError::Conflict("the document already exists".into())),
        (None, DocumentCommand::Attach { case_id, case, filename, mime_type, size, storage_path, metadata }) => {
            let mut v = Validator::default();
            match case {
                Reference::Missing => v.check(false, "case_id", "no case with this id exists in the tenant"),
                Reference::Inactive => v.check(false, "case_id", "the case is closed; reopen it to attach documents"),
                Reference::Usable => {}
            }
            v.text("filename", &filename, contract::NAME);
            let mime_ok = mime_type.len() <= 100
                && mime_type.split_once('/').is_some_and(|(a, b)| !a.is_empty() && !b.is_empty());
            v.check(mime_ok, "mime_type", "must be a MIME type like application/pdf");
            v.check((0..=MAX_SIZE).contains(&size), "size", format!("must be between 0 and {MAX_SIZE} bytes"));
            v.text("storage_path", &storage_path, contract::STORAGE_PATH);
            v.finish()?;
            Ok(vec![DocumentEvent::Attached(DocumentAttached {
                case_id,
                filename,
                mime_type,
                size,
                storage_path,
                uploaded_by: actor,
                metadata,
                uploaded_at: now,
            })])
        }
        (None, DocumentCommand::Delete) => Err(DomainError::NotFound("document")),
        (Some(d), DocumentCommand::Delete) => Ok(if d.deleted {
            vec![]
        } else {
            vec![DocumentEvent::Deleted(DocumentDeleted { case_id: d.case_id, deleted_at: now })]
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::testing::given;

    fn attach(mime: &str, size: i64) -> DocumentCommand {
        DocumentCommand::Attach {
            case_id: Uuid::now_v7(),
            case: Reference::Usable,
            filename: "invoice.pdf".into(),
            mime_type: mime.into(),
            size,
            storage_path: "t/c/invoice.pdf".into(),
            metadata: Map::new(),
        }
    }

    #[test]
    fn metadata_is_validated() {
        let Err(DomainError::Invalid(errors)) = decide(None, attach("pdf", -1), &Context::at(Utc::now())) else {
            panic!("expected invalid")
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["mime_type", "size"]);
    }

    #[test]
    fn deleting_twice_records_once() {
        let events = decide(None, attach("application/pdf", 10), &Context::at(Utc::now())).unwrap();
        let state = given(&events).state();
        let deleted = decide(state.as_ref(), DocumentCommand::Delete, &Context::at(Utc::now())).unwrap();
        let state = deleted.iter().fold(state, evolve);
        assert_eq!(decide(state.as_ref(), DocumentCommand::Delete, &Context::at(Utc::now())).unwrap(), vec![]);
    }

    #[test]
    fn attaching_to_a_closed_case_is_refused() {
        let mut cmd = attach("application/pdf", 10);
        if let DocumentCommand::Attach { case, .. } = &mut cmd {
            *case = Reference::Inactive;
        }
        let Err(DomainError::Invalid(errors)) = decide(None, cmd, &Context::at(Utc::now())) else {
            panic!("expected invalid")
        };
        assert_eq!(errors[0].field, "case_id");
    }
}
