//! The message template stream: `{{variable}}` placeholders in subject and content are
//! extracted when a template is created or changed; `render` fills them and reports the
//! ones it had no value for.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::change::{activation, Activation, Change};
use crate::channel::ChannelType;
use crate::contract;
use crate::error::{DomainError, Validator};
use crate::stream::Context;

#[derive(Debug, Clone, PartialEq)]
pub enum TemplateCommand {
    Create {
        name: String,
        description: Option<String>,
        channel_type: ChannelType,
        subject: Option<String>,
        content: String,
        tags: Vec<String>,
        category: Option<String>,
    },
    Update {
        name: Option<String>,
        description: Option<Option<String>>,
        subject: Option<Option<String>>,
        content: Option<String>,
    },
    Deactivate,
    Activate,
}

payloads! {
    pub struct TemplateCreated {
        pub name: String,
        pub description: Option<String>,
        pub channel_type: ChannelType,
        pub subject: Option<String>,
        pub content: String,
        pub variables: Vec<String>,
        pub tags: Vec<String>,
        pub category: Option<String>,
        pub created_by: uuid::Uuid,
        pub created_at: DateTime<Utc>,
    }
}

field_changes! {
    pub struct TemplateUpdated changes Template {
        name: String,
        description: Option<String>,
        subject: Option<String>,
        content: String,
    } with {
        /// The placeholders after the change.
        pub variables: Vec<String>,
        pub updated_at: DateTime<Utc>,
    }
}

event_enum! {
    pub enum TemplateEvent {
        Created(TemplateCreated) = "MessageTemplateCreated" @ 1,
        Updated(TemplateUpdated) = "MessageTemplateUpdated" @ 1,
        Deactivated(Activation) = "MessageTemplateDeactivated" @ 1,
        Activated(Activation) = "MessageTemplateActivated" @ 1,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub name: String,
    pub description: Option<String>,
    pub channel_type: ChannelType,
    pub subject: Option<String>,
    pub content: String,
    pub variables: Vec<String>,
    pub active: bool,
}

pub fn evolve(state: Option<Template>, event: &TemplateEvent) -> Option<Template> {
    match (state, event) {
        (None, TemplateEvent::Created(e)) => Some(Template {
            name: e.name.clone(),
            description: e.description.clone(),
            channel_type: e.channel_type,
            subject: e.subject.clone(),
            content: e.content.clone(),
            variables: e.variables.clone(),
            active: true,
        }),
        (Some(mut t), TemplateEvent::Updated(e)) => {
            e.apply(&mut t);
            t.variables = e.variables.clone();
            Some(t)
        }
        (Some(mut t), TemplateEvent::Deactivated(_)) => {
            t.active = false;
            Some(t)
        }
        (Some(mut t), TemplateEvent::Activated(_)) => {
            t.active = true;
            Some(t)
        }
        // Never in a well-formed stream: the state is kept, never invented. Every
        // (state, event) pair is named, so a new event fails to compile here until folded.
        (state @ Some(_), TemplateEvent::Created(_)) => state,
        (None, TemplateEvent::Updated(_) | TemplateEvent::Deactivated(_) | TemplateEvent::Activated(_)) => None,
    }
}

/// Splits text into literal parts and `{{name}}` placeholders (names trimmed).
fn placeholders(text: &str) -> impl Iterator<Item = (usize, usize, &str)> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        // Offsets within `text`, which is far shorter than usize::MAX.
        let start = at.checked_add(text.get(at..)?.find("{{")?)?;
        let name_at = start.checked_add(2)?;
        let end = name_at.checked_add(text.get(name_at..)?.find("}}")?)?;
        at = end.checked_add(2)?;
        Some((start, at, text.get(name_at..end)?.trim()))
    })
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

/// The distinct placeholder names of the texts, sorted.
pub fn extract_variables<'a>(texts: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut names = BTreeSet::new();
    for text in texts {
        names.extend(placeholders(text).map(|(_, _, n)| n.to_owned()).filter(|n| valid_name(n)));
    }
    names.into_iter().collect()
}

/// Fills placeholders from `values`; returns the text and the names that had no value
/// (left in place, so a reader sees what is missing).
pub fn render(text: &str, values: &Map<String, Value>, missing: &mut BTreeSet<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (start, end, name) in placeholders(text) {
        out.push_str(&text[last..start]);
        match values.get(name) {
            Some(Value::String(s)) => out.push_str(s),
            Some(Value::Null) | None => {
                missing.insert(name.to_owned());
                out.push_str(&text[start..end]);
            }
            Some(other) => out.push_str(&other.to_string()),
        }
        last = end;
    }
    out.push_str(&text[last..]);
    out
}

fn check_texts(v: &mut Validator, subject: Option<&str>, content: &str) {
    v.text("content", content, contract::TEMPLATE);
    if let Some(s) = subject {
        v.text("subject", s, contract::SUBJECT);
    }
    for (field, text) in [("subject", subject.unwrap_or_default()), ("content", content)] {
        for (_, _, name) in placeholders(text) {
            v.check(
                valid_name(name),
                field,
                format!("placeholder {{{{{name}}}}} must be 1-64 characters of a-z, 0-9, _ and ."),
            );
        }
    }
}

pub fn decide(
    state: Option<&Template>,
    command: TemplateCommand,
    ctx: &Context,
) -> Result<Vec<TemplateEvent>, DomainError> {
    let (actor, now) = (ctx.actor, ctx.now);
    match (state, command) {
        (Some(_), TemplateCommand::Create { .. }) => Err(DomainError::Conflict("the template already exists".into())),
        (None, TemplateCommand::Create { name, description, channel_type, subject, content, tags, category }) => {
            let mut v = Validator::default();
            v.text("name", &name, contract::NAME);
            if let Some(d) = &description {
                v.optional_text("description", d, contract::DESCRIPTION);
            }
            if let Some(c) = &category {
                v.text("category", c, contract::NAME);
            }
            v.check(tags.len() <= contract::MAX_TAGS, "tags", format!("at most {} tags", contract::MAX_TAGS));
            for (i, tag) in tags.iter().enumerate() {
                v.text(&format!("tags[{i}]"), tag, contract::TAG);
            }
            check_texts(&mut v, subject.as_deref(), &content);
            v.finish()?;
            let variables = extract_variables(subject.as_deref().into_iter().chain([content.as_str()]));
            Ok(vec![TemplateEvent::Created(TemplateCreated {
                name: name.trim().to_owned(),
                description,
                channel_type,
                subject,
                content,
                variables,
                tags,
                category,
                created_by: actor,
                created_at: now,
            })])
        }
        (None, _) => Err(DomainError::NotFound("message template")),
        (Some(t), TemplateCommand::Update { name, description, subject, content }) => {
            let new_subject = subject.clone().unwrap_or_else(|| t.subject.clone());
            let new_content = content.clone().unwrap_or_else(|| t.content.clone());
            let mut v = Validator::default();
            if let Some(n) = &name {
                v.text("name", n, contract::NAME);
            }
            if let Some(Some(d)) = &description {
                v.optional_text("description", d, contract::DESCRIPTION);
            }
            check_texts(&mut v, new_subject.as_deref(), &new_content);
            v.finish()?;
            let event = TemplateUpdated {
                name: Change::between(&t.name, name.map(|n| n.trim().to_owned())),
                description: Change::between(&t.description, description),
                subject: Change::between(&t.subject, subject),
                content: Change::between(&t.content, content),
                variables: extract_variables(new_subject.as_deref().into_iter().chain([new_content.as_str()])),
                updated_at: now,
            };
            let nothing = event.is_empty();
            Ok(if nothing { vec![] } else { vec![TemplateEvent::Updated(event)] })
        }
        (Some(t), TemplateCommand::Deactivate) => Ok(activation(t.active, false, now, TemplateEvent::Deactivated)),
        (Some(t), TemplateCommand::Activate) => Ok(activation(t.active, true, now, TemplateEvent::Activated)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::testing::given;
    use serde_json::json;

    #[test]
    fn variables_are_extracted_once_each_in_order() {
        let vars =
            extract_variables(["Case #{{case_number}}", "Dear {{ customer_name }}, case {{case_number}} {{unclosed"]);
        assert_eq!(vars, vec!["case_number", "customer_name"]);
    }

    #[test]
    fn rendering_fills_known_values_and_reports_missing_ones() {
        let values = json!({ "case_number": "CASE-000001", "amount": 12 });
        let mut missing = BTreeSet::new();
        let text =
            render("{{case_number}} for {{customer_name}}: {{amount}}", values.as_object().unwrap(), &mut missing);
        assert_eq!(text, "CASE-000001 for {{customer_name}}: 12");
        assert_eq!(missing.into_iter().collect::<Vec<_>>(), vec!["customer_name"]);
    }

    #[test]
    fn bad_placeholders_are_refused_and_updates_recompute_variables() {
        let create = |content: &str| TemplateCommand::Create {
            name: "Resolved".into(),
            description: None,
            channel_type: ChannelType::Email,
            subject: Some("Case {{case_number}}".into()),
            content: content.into(),
            tags: vec![],
            category: None,
        };
        assert!(matches!(
            decide(None, create("Hi {{first name}}"), &Context::at(Utc::now())),
            Err(DomainError::Invalid(_))
        ));
        let events = decide(None, create("Hi {{customer_name}}"), &Context::at(Utc::now())).unwrap();
        let state = given(&events).state();
        let update = TemplateCommand::Update { name: None, description: None, subject: Some(None), content: None };
        let updated = decide(state.as_ref(), update, &Context::at(Utc::now())).unwrap();
        let [TemplateEvent::Updated(e)] = updated.as_slice() else { panic!("expected an update") };
        assert_eq!(e.variables, vec!["customer_name"]);
    }

    /// The audit listed name, subject and content by hand and missed the description:
    /// the fold, the audit and the no-change check now read one list of fields.
    #[test]
    fn a_description_change_is_folded_and_audited() {
        let create = TemplateCommand::Create {
            name: "Hello".into(),
            description: Some("old".into()),
            channel_type: ChannelType::Sms,
            subject: None,
            content: "Hi".into(),
            tags: vec![],
            category: None,
        };
        let created = decide(None, create, &crate::testing::context()).unwrap();
        let update =
            TemplateCommand::Update { name: None, description: Some(Some("new".into())), subject: None, content: None };
        let (events, state) = given(&created).when(update).events_and_state();
        assert_eq!(state.unwrap().description.as_deref(), Some("new"));
        let [event] = events.as_slice() else { panic!("expected one update") };
        let (action, changes) = crate::audit::template_changes(event);
        assert_eq!(action, "update");
        let fields: Vec<_> = changes.iter().map(|c| (c.field, c.old_value.clone(), c.new_value.clone())).collect();
        assert_eq!(fields, vec![("description", json!("old"), json!("new"))]);
    }

    #[test]
    fn deactivation_toggles_once_and_missing_templates_are_not_found() {
        let create = TemplateCommand::Create {
            name: "Hello".into(),
            description: None,
            channel_type: ChannelType::Sms,
            subject: None,
            content: "Hi {{customer_name}}".into(),
            tags: vec![],
            category: None,
        };
        let state = decide(None, create, &Context::at(Utc::now())).unwrap().iter().fold(None, evolve);
        let off = decide(state.as_ref(), TemplateCommand::Deactivate, &Context::at(Utc::now())).unwrap();
        let state = off.iter().fold(state, evolve);
        assert!(!state.as_ref().unwrap().active);
        assert_eq!(decide(state.as_ref(), TemplateCommand::Deactivate, &Context::at(Utc::now())).unwrap(), vec![]);
        assert!(matches!(
            decide(None, TemplateCommand::Activate, &Context::at(Utc::now())),
            Err(DomainError::NotFound(_))
        ));
    }
}
