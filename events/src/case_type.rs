//! The case type stream: a form definition (the custom fields its cases carry), validation
//! rules and an optional workflow; deactivated types accept no new cases.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::change::{activation, Activation, Change};
use crate::contract;
use crate::error::{DomainError, Validator};
use crate::form::{FormDefinition, ValidationRules};
use crate::stream::Context;

#[derive(Debug, Clone, PartialEq)]
pub enum CaseTypeCommand {
    Create {
        name: String,
        description: Option<String>,
        form_definition: FormDefinition,
        validation_rules: Value,
        workflow_id: Option<Uuid>,
    },
    Update {
        name: Option<String>,
        description: Option<Option<String>>,
        form_definition: Option<FormDefinition>,
        validation_rules: Option<Value>,
    },
    Deactivate,
    Activate,
}

payloads! {
    pub struct CaseTypeCreated {
        pub name: String,
        pub description: Option<String>,
        pub form_definition: FormDefinition,
        pub validation_rules: Value,
        pub workflow_id: Option<Uuid>,
        pub created_at: DateTime<Utc>,
    }
}

field_changes! {
    pub struct CaseTypeUpdated changes CaseType {
        name: String,
        description: Option<String>,
        form_definition: FormDefinition,
        validation_rules: Value,
    } with {
        pub updated_at: DateTime<Utc>,
    }
}

event_enum! {
    pub enum CaseTypeEvent {
        Created(CaseTypeCreated) = "CaseTypeCreated" @ 1,
        Updated(CaseTypeUpdated) = "CaseTypeUpdated" @ 1,
        Deactivated(Activation) = "CaseTypeDeactivated" @ 1,
        Activated(Activation) = "CaseTypeActivated" @ 1,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CaseType {
    pub name: String,
    pub description: Option<String>,
    pub form_definition: FormDefinition,
    pub validation_rules: Value,
    pub workflow_id: Option<Uuid>,
    pub active: bool,
}

pub fn evolve(state: Option<CaseType>, event: &CaseTypeEvent) -> Option<CaseType> {
    match (state, event) {
        (None, CaseTypeEvent::Created(e)) => Some(CaseType {
            name: e.name.clone(),
            description: e.description.clone(),
            form_definition: e.form_definition.clone(),
            validation_rules: e.validation_rules.clone(),
            workflow_id: e.workflow_id,
            active: true,
        }),
        (Some(mut t), CaseTypeEvent::Updated(e)) => {
            e.apply(&mut t);
            Some(t)
        }
        (Some(mut t), CaseTypeEvent::Deactivated(_)) => {
            t.active = false;
            Some(t)
        }
        (Some(mut t), CaseTypeEvent::Activated(_)) => {
            t.active = true;
            Some(t)
        }
        // Never in a well-formed stream: the state is kept, never invented. Every
        // (state, event) pair is named, so a new event fails to compile here until folded.
        (state @ Some(_), CaseTypeEvent::Created(_)) => state,
        (None, CaseTypeEvent::Updated(_) | CaseTypeEvent::Deactivated(_) | CaseTypeEvent::Activated(_)) => None,
    }
}

/// Case type names are unique per tenant regardless of case and surrounding spaces.
pub fn normalise_name(name: &str) -> String {
    name.trim().to_lowercase()
}

fn check_form(v: &mut Validator, form: &FormDefinition) {
    v.extend(form.check());
}

/// The rules must parse and fit the form they tighten.
fn check_rules(v: &mut Validator, form: &FormDefinition, rules: &Value) {
    match ValidationRules::parse(rules) {
        Err(e) => v.extend([e]),
        Ok(parsed) => {
            if let Err(errors) = parsed.apply_to(form) {
                v.extend(errors.into_iter().filter(|e| e.field.starts_with("validation_rules")));
            }
        }
    }
}

impl CaseType {
    /// The form a case of this type is validated against: the form definition with the
    /// validation rules applied.
    pub fn effective_form(&self) -> FormDefinition {
        ValidationRules::parse(&self.validation_rules)
            .ok()
            .and_then(|rules| rules.apply_to(&self.form_definition).ok())
            .unwrap_or_else(|| self.form_definition.clone())
    }
}

pub fn decide(
    state: Option<&CaseType>,
    command: CaseTypeCommand,
    ctx: &Context,
) -> Result<Vec<CaseTypeEvent>, DomainError> {
    let now = ctx.now;
    match (state, command) {
        (Some(_), CaseTypeCommand::Create { .. }) => Err(DomainError::Conflict("the case type already exists".into())),
        (None, CaseTypeCommand::Create { name, description, form_definition, validation_rules, workflow_id }) => {
            let mut v = Validator::default();
            v.text("name", &name, contract::NAME);
            if let Some(d) = &description {
                v.optional_text("description", d, contract::DESCRIPTION);
            }
            check_form(&mut v, &form_definition);
            check_rules(&mut v, &form_definition, &validation_rules);
            v.finish()?;
            Ok(vec![CaseTypeEvent::Created(CaseTypeCreated {
                name: name.trim().to_owned(),
                description,
                form_definition,
                validation_rules,
                workflow_id,
                created_at: now,
            })])
        }
        (None, _) => Err(DomainError::NotFound("case type")),
        (Some(t), CaseTypeCommand::Update { name, description, form_definition, validation_rules }) => {
            let mut v = Validator::default();
            if let Some(n) = &name {
                v.text("name", n, contract::NAME);
            }
            if let Some(Some(d)) = &description {
                v.optional_text("description", d, contract::DESCRIPTION);
            }
            if let Some(f) = &form_definition {
                check_form(&mut v, f);
            }
            let form = form_definition.as_ref().unwrap_or(&t.form_definition);
            check_rules(&mut v, form, validation_rules.as_ref().unwrap_or(&t.validation_rules));
            v.finish()?;
            let event = CaseTypeUpdated {
                name: Change::between(&t.name, name.map(|n| n.trim().to_owned())),
                description: Change::between(&t.description, description),
                form_definition: Change::between(&t.form_definition, form_definition),
                validation_rules: Change::between(&t.validation_rules, validation_rules),
                updated_at: now,
            };
            let nothing = event.is_empty();
            Ok(if nothing { vec![] } else { vec![CaseTypeEvent::Updated(event)] })
        }
        (Some(t), CaseTypeCommand::Deactivate) => Ok(activation(t.active, false, now, CaseTypeEvent::Deactivated)),
        (Some(t), CaseTypeCommand::Activate) => Ok(activation(t.active, true, now, CaseTypeEvent::Activated)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::testing::given;
    use serde_json::json;

    fn create(form: Value) -> CaseTypeCommand {
        CaseTypeCommand::Create {
            name: "Billing".into(),
            description: None,
            form_definition: serde_json::from_value(form).unwrap(),
            validation_rules: json!({}),
            workflow_id: None,
        }
    }

    #[test]
    fn a_broken_form_definition_is_refused_field_by_field() {
        let cmd = create(json!({ "fields": [{ "name": "plan", "type": "select" }] }));
        let Err(DomainError::Invalid(errors)) = decide(None, cmd, &Context::at(Utc::now())) else {
            panic!("expected invalid")
        };
        assert_eq!(errors[0].field, "form_definition.fields[0].options");
    }

    #[test]
    fn validation_rules_must_fit_the_form() {
        let mut cmd = create(json!({ "fields": [{ "name": "amount", "type": "number" }] }));
        if let CaseTypeCommand::Create { validation_rules, .. } = &mut cmd {
            *validation_rules = json!({ "fields": { "colour": { "required": true } } });
        }
        let Err(DomainError::Invalid(errors)) = decide(None, cmd, &Context::at(Utc::now())) else {
            panic!("expected invalid")
        };
        assert_eq!(errors[0].field, "validation_rules.fields.colour");
    }

    #[test]
    fn deactivation_toggles_once() {
        let events = decide(None, create(json!({ "fields": [] })), &Context::at(Utc::now())).unwrap();
        let state = given(&events).state();
        let off = decide(state.as_ref(), CaseTypeCommand::Deactivate, &Context::at(Utc::now())).unwrap();
        let state = off.iter().fold(state, evolve);
        assert!(!state.as_ref().unwrap().active);
        assert_eq!(decide(state.as_ref(), CaseTypeCommand::Deactivate, &Context::at(Utc::now())).unwrap(), vec![]);
    }

    #[test]
    fn updates_record_only_changes_and_activation_toggles_back() {
        let events = decide(None, create(json!({ "fields": [] })), &Context::at(Utc::now())).unwrap();
        let state = given(&events).state();
        let same = CaseTypeCommand::Update {
            name: Some("Billing".into()),
            description: None,
            form_definition: None,
            validation_rules: None,
        };
        assert_eq!(decide(state.as_ref(), same, &Context::at(Utc::now())).unwrap(), vec![]);
        let renamed = CaseTypeCommand::Update {
            name: Some("Refunds".into()),
            description: None,
            form_definition: None,
            validation_rules: None,
        };
        assert_eq!(decide(state.as_ref(), renamed, &Context::at(Utc::now())).unwrap().len(), 1);
        assert_eq!(decide(state.as_ref(), CaseTypeCommand::Activate, &Context::at(Utc::now())).unwrap(), vec![]);
        assert_eq!(
            decide(None, CaseTypeCommand::Activate, &Context::at(Utc::now())),
            Err(DomainError::NotFound("case type"))
        );
    }
}
