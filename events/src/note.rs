//! The case note stream: add (internal flag, tags, attachment metadata), edit, delete.
//! Notes live in MongoDB (`tenant_<id>_case_notes`, seed §2.2.2).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::change::Change;
use crate::contract;
use crate::error::{DomainError, Validator};
use crate::reference::Reference;
use crate::stream::Context;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    pub id: Uuid,
    pub filename: String,
    pub mime_type: String,
    pub size: i64,
    pub storage_path: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NoteCommand {
    Add {
        case_id: Uuid,
        case: Reference,
        content: String,
        is_internal: bool,
        tags: Vec<String>,
        attachments: Vec<Attachment>,
        /// Users the content mentions (`@username`), resolved by the command API.
        mentions: Vec<Uuid>,
        /// The case's customer (`case::OpenCase::customer_id`): the content is about them.
        customer_id: Option<Uuid>,
    },
    Edit {
        content: Option<String>,
        is_internal: Option<bool>,
        tags: Option<Vec<String>>,
    },
    Delete,
}

payloads! {
    pub struct NoteAdded {
        pub case_id: Uuid,
        pub author_id: Uuid,
        pub content: String,
        pub is_internal: bool,
        pub tags: Vec<String>,
        pub attachments: Vec<Attachment>,
        /// Users mentioned in the content (`@username`) when it was added; each is notified.
        /// v2: v1 events have none.
        pub mentions: Vec<Uuid>,
        pub created_at: DateTime<Utc>,
        /// The case's customer, whose key seals the content. v3: earlier notes name none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub customer_id: Option<Uuid>,
    }
}

/// Upcasts a v1 `CaseNoteAdded`: notes added before mentions mention nobody.
pub fn with_no_mentions(mut payload: serde_json::Value) -> serde_json::Value {
    if let Some(fields) = payload.as_object_mut() {
        fields.entry("mentions").or_insert_with(|| serde_json::json!([]));
    }
    payload
}

/// Mentions honoured in one note.
pub const MAX_MENTIONS: usize = 20;

/// The usernames a note's text mentions: `@` then a username (3-64 of a-z, 0-9, '.', '_',
/// '-', matched case-insensitively), not inside a word or an email address; a trailing
/// '.' ends a sentence, not the name. At most `MAX_MENTIONS`, each once, in order.
pub fn mentioned_usernames(content: &str) -> Vec<String> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
    let mut found: Vec<String> = Vec::new();
    let mut previous: Option<char> = None;
    for (at, c) in content.char_indices() {
        if c == '@' && !previous.is_some_and(is_name) {
            let rest = content[at..].strip_prefix('@').unwrap_or_default();
            let end = rest.find(|c: char| !is_name(c)).unwrap_or(rest.len());
            let name = rest[..end].trim_end_matches('.').to_lowercase();
            if (3..=64).contains(&name.len()) && !found.contains(&name) {
                found.push(name);
                if found.len() == MAX_MENTIONS {
                    break;
                }
            }
        }
        previous = Some(c);
    }
    found
}

field_changes! {
    pub struct NoteEdited changes Note {
        content: String,
        is_internal: bool,
        tags: Vec<String>,
    } with {
        pub edited_at: DateTime<Utc>,
    }
}

payloads! {
    pub struct NoteDeleted {
        pub case_id: Uuid,
        pub deleted_at: DateTime<Utc>,
    }
}

event_enum! {
    pub enum NoteEvent {
        Added(NoteAdded) = "CaseNoteAdded" @ 3 [1 => with_no_mentions, 2 => crate::case::unchanged],
        Edited(NoteEdited) = "CaseNoteEdited" @ 1,
        Deleted(NoteDeleted) = "CaseNoteDeleted" @ 1,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub case_id: Uuid,
    pub author_id: Uuid,
    pub content: String,
    pub is_internal: bool,
    pub tags: Vec<String>,
    pub deleted: bool,
    pub customer_id: Option<Uuid>,
}

/// A note is about its case's customer, if the case names one.
pub fn data_subject(_: Uuid, state: Option<&Note>, events: &[NoteEvent]) -> Option<Uuid> {
    let added = events.iter().find_map(|e| match e {
        NoteEvent::Added(e) => Some(e.customer_id),
        _ => None,
    });
    added.unwrap_or_else(|| state.and_then(|n| n.customer_id))
}

pub fn evolve(state: Option<Note>, event: &NoteEvent) -> Option<Note> {
    match (state, event) {
        (None, NoteEvent::Added(e)) => Some(Note {
            case_id: e.case_id,
            author_id: e.author_id,
            content: e.content.clone(),
            is_internal: e.is_internal,
            tags: e.tags.clone(),
            deleted: false,
            customer_id: e.customer_id,
        }),
        (Some(mut n), NoteEvent::Edited(e)) => {
            e.apply(&mut n);
            Some(n)
        }
        (Some(mut n), NoteEvent::Deleted(_)) => {
            n.deleted = true;
            Some(n)
        }
        // Never in a well-formed stream: the state is kept, never invented. Every
        // (state, event) pair is named, so a new event fails to compile here until folded.
        (state @ Some(_), NoteEvent::Added(_)) => state,
        (None, NoteEvent::Edited(_) | NoteEvent::Deleted(_)) => None,
    }
}

fn check_tags(v: &mut Validator, tags: &[String]) {
    v.check(tags.len() <= contract::MAX_NOTE_TAGS, "tags", format!("at most {} tags", contract::MAX_NOTE_TAGS));
    for (i, t) in tags.iter().enumerate() {
        v.text(&format!("tags[{i}]"), t, contract::TAG);
    }
}

pub fn decide(state: Option<&Note>, command: NoteCommand, ctx: &Context) -> Result<Vec<NoteEvent>, DomainError> {
    let (actor, now) = (ctx.actor, ctx.now);
    match (state, command) {
        (Some(_), NoteCommand::Add { .. }) => Err(DomainError::Conflict("the note already exists".into())),
        (
            None,
            NoteCommand::Add { case_id, case, content, is_internal, tags, attachments, mut mentions, customer_id },
        ) => {
            let mut v = Validator::default();
            match case {
                Reference::Missing => v.check(false, "case_id", "no case with this id exists in the tenant"),
                Reference::Inactive => v.check(false, "case_id", "the case is closed; reopen it to add notes"),
                Reference::Usable => {}
            }
            v.text("content", &content, contract::NOTE);
            check_tags(&mut v, &tags);
            v.check(attachments.len() <= 20, "attachments", "at most 20 attachments");
            for (i, a) in attachments.iter().enumerate() {
                v.text(&format!("attachments[{i}].filename"), &a.filename, contract::NAME);
                v.text(&format!("attachments[{i}].mime_type"), &a.mime_type, contract::MIME_TYPE);
                v.check(a.size >= 0, &format!("attachments[{i}].size"), "must not be negative");
            }
            v.finish()?;
            Ok(vec![NoteEvent::Added(NoteAdded {
                case_id,
                author_id: actor,
                content,
                is_internal,
                tags,
                attachments,
                mentions: {
                    mentions.retain(|m| *m != actor);
                    mentions.dedup();
                    mentions.truncate(MAX_MENTIONS);
                    mentions
                },
                created_at: now,
                customer_id,
            })])
        }
        (None, _) => Err(DomainError::NotFound("note")),
        (Some(n), _) if n.deleted => Err(DomainError::NotFound("note")),
        (Some(n), NoteCommand::Edit { content, is_internal, tags }) => {
            let mut v = Validator::default();
            if let Some(c) = &content {
                v.text("content", c, contract::NOTE);
            }
            if let Some(t) = &tags {
                check_tags(&mut v, t);
            }
            v.finish()?;
            let event = NoteEdited {
                content: Change::between(&n.content, content),
                is_internal: Change::between(&n.is_internal, is_internal),
                tags: Change::between(&n.tags, tags),
                edited_at: now,
            };
            let nothing = event.is_empty();
            Ok(if nothing { vec![] } else { vec![NoteEvent::Edited(event)] })
        }
        (Some(n), NoteCommand::Delete) => {
            Ok(vec![NoteEvent::Deleted(NoteDeleted { case_id: n.case_id, deleted_at: now })])
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::testing::given;

    fn add(case: Reference) -> NoteCommand {
        NoteCommand::Add {
            case_id: Uuid::now_v7(),
            case,
            content: "Called back".into(),
            is_internal: true,
            tags: vec![],
            attachments: vec![],
            mentions: vec![],
            customer_id: None,
        }
    }

    #[test]
    fn notes_need_a_usable_case_and_content() {
        let cmd = NoteCommand::Add {
            case_id: Uuid::now_v7(),
            case: Reference::Missing,
            content: " ".into(),
            is_internal: false,
            tags: vec![],
            attachments: vec![],
            mentions: vec![],
            customer_id: None,
        };
        let Err(DomainError::Invalid(errors)) = decide(None, cmd, &Context::at(Utc::now())) else {
            panic!("expected invalid")
        };
        assert_eq!(errors.len(), 2);
        assert!(decide(None, add(Reference::Usable), &Context::at(Utc::now())).is_ok());
    }

    #[test]
    fn a_deleted_note_is_gone_for_commands() {
        let mut events = decide(None, add(Reference::Usable), &Context::at(Utc::now())).unwrap();
        let state = given(&events).state();
        events.extend(decide(state.as_ref(), NoteCommand::Delete, &Context::at(Utc::now())).unwrap());
        let state = given(&events).state();
        let edit = NoteCommand::Edit { content: Some("x".into()), is_internal: None, tags: None };
        assert_eq!(decide(state.as_ref(), edit, &Context::at(Utc::now())), Err(DomainError::NotFound("note")));
    }

    #[test]
    fn edits_record_only_changes() {
        let state = decide(None, add(Reference::Usable), &Context::at(Utc::now())).unwrap().iter().fold(None, evolve);
        let same = NoteCommand::Edit { content: Some("Called back".into()), is_internal: Some(true), tags: None };
        assert_eq!(decide(state.as_ref(), same, &Context::at(Utc::now())).unwrap(), vec![]);
        let public = NoteCommand::Edit { content: None, is_internal: Some(false), tags: None };
        assert_eq!(decide(state.as_ref(), public, &Context::at(Utc::now())).unwrap().len(), 1);
    }

    #[test]
    fn mentions_are_names_after_an_at_sign_outside_words_and_addresses() {
        let text = "@Kim.Lee please call; cc @sam-o, @kim.lee again. Mail ana@example.org, @x is short, \
                    end with @jo_b. and (@pat)";
        assert_eq!(mentioned_usernames(text), vec!["kim.lee", "sam-o", "jo_b", "pat"]);
        assert!(mentioned_usernames("no mention @ all, @@ nothing").is_empty());
        let many: String = (0..30).map(|i| format!("@user{i:02} ")).collect();
        assert_eq!(mentioned_usernames(&many).len(), MAX_MENTIONS);
        // Multi-byte text around a mention is not split inside a character.
        assert!(mentioned_usernames("Grüße an @müller und @zoë-b").is_empty(), "names are ASCII");
    }

    #[test]
    fn the_author_is_not_mentioned_and_old_notes_mention_nobody() {
        let (author, kim) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let mut cmd = add(Reference::Usable);
        if let NoteCommand::Add { mentions, .. } = &mut cmd {
            *mentions = vec![author, kim, kim];
        }
        let events = decide(None, cmd, &Context { actor: author, now: Utc::now() }).unwrap();
        let NoteEvent::Added(added) = &events[0] else { panic!("added") };
        assert_eq!(added.mentions, vec![kim]);
        let v1 = serde_json::json!({ "case_id": kim, "author_id": author, "content": "x", "is_internal": false,
                                      "tags": [], "attachments": [], "created_at": "2026-11-20T09:00:00Z" });
        let upcast: NoteAdded = serde_json::from_value(with_no_mentions(v1)).unwrap();
        assert!(upcast.mentions.is_empty());
    }
}
