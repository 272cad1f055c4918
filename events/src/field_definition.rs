//! The custom field definition stream (seed §2.2.2): fields a tenant adds to cases (or
//! interactions, users), with type, options, default, validation, visibility rules
//! (case types, roles), order and section. Active case field definitions are checked
//! together with the case type's form when a case is opened or its fields change.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::change::{activation, Activation, Change};
use crate::contract;
use crate::error::{DomainError, Validator};
use crate::form::{FieldType, FormDefinition, FormField};
use crate::stream::Context;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum EntityType {
    Case,
    Interaction,
    User,
}

impl EntityType {
    pub fn as_str(self) -> &'static str {
        match self {
            EntityType::Case => "case",
            EntityType::Interaction => "interaction",
            EntityType::User => "user",
        }
    }
}

/// One choice of a select or multiselect field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldOption {
    /// What users see.
    pub label: String,
    /// What a case's field holds when this option is chosen.
    pub value: String,
}

/// Where a field shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VisibilityRules {
    /// Case types the field applies to; empty means all.
    #[serde(default)]
    pub case_type_ids: Vec<Uuid>,
    /// Roles that see the field; empty means all.
    #[serde(default)]
    pub roles: Vec<String>,
}

impl VisibilityRules {
    /// Whether a user of `role` may not see the field on a case of `case_type` (None:
    /// on some case type). A hidden field is left out of every read and filter, and
    /// setting it is refused.
    pub fn hides_from(&self, role: &str, case_type: Option<Uuid>) -> bool {
        !self.roles.is_empty()
            && !self.roles.iter().any(|r| r == role)
            && case_type.is_none_or(|t| self.case_type_ids.is_empty() || self.case_type_ids.contains(&t))
    }
}

/// The case field names among `definitions` that `role` may not see on a case of
/// `case_type` (a deactivated definition still hides what cases hold of it).
pub fn hidden_case_fields(
    definitions: &[FieldDefinition],
    role: &str,
    case_type: Uuid,
) -> std::collections::BTreeSet<String> {
    definitions
        .iter()
        .filter(|d| d.entity_type == EntityType::Case && d.spec.visibility_rules.hides_from(role, Some(case_type)))
        .map(|d| d.field_name.clone())
        .collect()
}

/// Everything about a definition that can change after it is created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    pub display_name: String,
    pub field_type: FieldType,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub default_value: Option<Value>,
    #[serde(default)]
    pub options: Vec<FieldOption>,
    /// Text: `{"pattern": "..."}`; text length and numbers: `{"min": n, "max": n}`.
    #[serde(default)]
    pub validation: Option<Value>,
    #[serde(default)]
    pub visibility_rules: VisibilityRules,
    #[serde(default)]
    pub order: i32,
    #[serde(default)]
    pub section: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FieldDefinitionCommand {
    Create { entity_type: EntityType, field_name: String, spec: FieldSpec },
    Update { spec: FieldSpec },
    Deactivate,
    Activate,
}

payloads! {
    pub struct FieldDefinitionCreated {
        pub entity_type: EntityType,
        pub field_name: String,
        pub spec: FieldSpec,
        pub created_at: DateTime<Utc>,
    }

    pub struct FieldDefinitionUpdated {
        pub spec: Change<FieldSpec>,
        pub updated_at: DateTime<Utc>,
    }
}

event_enum! {
    #[allow(clippy::large_enum_variant)] // short-lived values, one per decision or message
    pub enum FieldDefinitionEvent {
        Created(FieldDefinitionCreated) = "CustomFieldDefined" @ 1,
        Updated(FieldDefinitionUpdated) = "CustomFieldDefinitionUpdated" @ 1,
        Deactivated(Activation) = "CustomFieldDeactivated" @ 1,
        Activated(Activation) = "CustomFieldActivated" @ 1,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FieldDefinition {
    pub entity_type: EntityType,
    pub field_name: String,
    pub spec: FieldSpec,
    pub active: bool,
}

impl FieldDefinition {
    /// Whether the field applies to a case of `case_type` (its visibility rules).
    pub fn applies_to_case_type(&self, case_type: Uuid) -> bool {
        self.active
            && self.entity_type == EntityType::Case
            && (self.spec.visibility_rules.case_type_ids.is_empty()
                || self.spec.visibility_rules.case_type_ids.contains(&case_type))
    }

    /// The definition as a form field, so one validator checks both.
    pub fn as_form_field(&self) -> FormField {
        let bound = |key: &str| self.spec.validation.as_ref().and_then(|v| v.get(key)).and_then(Value::as_f64);
        FormField {
            name: self.field_name.clone(),
            label: Some(self.spec.display_name.clone()),
            field_type: self.spec.field_type,
            required: self.spec.required,
            options: self.spec.options.iter().map(|o| o.value.clone()).collect(),
            min: bound("min"),
            max: bound("max"),
            pattern: self
                .spec
                .validation
                .as_ref()
                .and_then(|v| v.get("pattern"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            default: self.spec.default_value.clone(),
        }
    }
}

/// Adds the definitions' fields to a form (the form's own field of a name wins).
pub fn merge_into(form: &FormDefinition, definitions: &[FieldDefinition]) -> FormDefinition {
    let mut merged = form.clone();
    for d in definitions {
        if !merged.fields.iter().any(|f| f.name == d.field_name) {
            merged.fields.push(d.as_form_field());
        }
    }
    merged
}

pub fn evolve(state: Option<FieldDefinition>, event: &FieldDefinitionEvent) -> Option<FieldDefinition> {
    match (state, event) {
        (None, FieldDefinitionEvent::Created(e)) => Some(FieldDefinition {
            entity_type: e.entity_type,
            field_name: e.field_name.clone(),
            spec: e.spec.clone(),
            active: true,
        }),
        (Some(mut d), FieldDefinitionEvent::Updated(e)) => {
            d.spec = e.spec.new.clone();
            Some(d)
        }
        (Some(mut d), FieldDefinitionEvent::Deactivated(_)) => {
            d.active = false;
            Some(d)
        }
        (Some(mut d), FieldDefinitionEvent::Activated(_)) => {
            d.active = true;
            Some(d)
        }
        // Never in a well-formed stream: the state is kept, never invented. Every
        // (state, event) pair is named, so a new event fails to compile here until folded.
        (state @ Some(_), FieldDefinitionEvent::Created(_)) => state,
        (
            None,
            FieldDefinitionEvent::Updated(_)
            | FieldDefinitionEvent::Deactivated(_)
            | FieldDefinitionEvent::Activated(_),
        ) => None,
    }
}

fn check_spec(v: &mut Validator, field_name: &str, spec: &FieldSpec) {
    v.text("display_name", &spec.display_name, contract::NAME);
    if let Some(section) = &spec.section {
        v.optional_text("section", section, contract::NAME);
    }
    if let Some(description) = &spec.description {
        v.optional_text("description", description, contract::DESCRIPTION);
    }
    for (i, option) in spec.options.iter().enumerate() {
        v.optional_text(&format!("options[{i}].label"), &option.label, contract::NAME);
    }
    let roles = &spec.visibility_rules.roles;
    v.check(
        roles.len() <= contract::MAX_TAGS,
        "visibility_rules.roles",
        format!("at most {} roles", contract::MAX_TAGS),
    );
    for (i, role) in roles.iter().enumerate() {
        let field = format!("visibility_rules.roles[{i}]");
        v.text(&field, role, contract::TAG);
        v.check(
            crate::workflow::ROLES.contains(&role.as_str()),
            &field,
            format!("{role:?} is not a role; roles are {:?}", crate::workflow::ROLES),
        );
    }
    let probe = FieldDefinition {
        entity_type: EntityType::Case,
        field_name: field_name.to_owned(),
        spec: spec.clone(),
        active: true,
    };
    let form = FormDefinition { fields: vec![probe.as_form_field()] };
    for e in form.check() {
        let field = e.field.replace("form_definition.fields[0].", "").replace("name", "field_name");
        v.check(false, &field, e.message);
    }
}

pub fn decide(
    state: Option<&FieldDefinition>,
    command: FieldDefinitionCommand,
    ctx: &Context,
) -> Result<Vec<FieldDefinitionEvent>, DomainError> {
    let now = ctx.now;
    match (state, command) {
        (Some(_), FieldDefinitionCommand::Create { .. }) => {
            Err(DomainError::Conflict("the field definition already exists".into()))
        }
        (None, FieldDefinitionCommand::Create { entity_type, field_name, spec }) => {
            let mut v = Validator::default();
            check_spec(&mut v, &field_name, &spec);
            v.finish()?;
            Ok(vec![FieldDefinitionEvent::Created(FieldDefinitionCreated {
                entity_type,
                field_name,
                spec,
                created_at: now,
            })])
        }
        (None, _) => Err(DomainError::NotFound("custom field definition")),
        (Some(d), FieldDefinitionCommand::Update { spec }) => {
            let mut v = Validator::default();
            check_spec(&mut v, &d.field_name, &spec);
            v.finish()?;
            Ok(Change::between(&d.spec, Some(spec))
                .map(|spec| FieldDefinitionEvent::Updated(FieldDefinitionUpdated { spec, updated_at: now }))
                .into_iter()
                .collect())
        }
        (Some(d), FieldDefinitionCommand::Deactivate) => {
            Ok(activation(d.active, false, now, FieldDefinitionEvent::Deactivated))
        }
        (Some(d), FieldDefinitionCommand::Activate) => {
            Ok(activation(d.active, true, now, FieldDefinitionEvent::Activated))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::testing::given;
    use serde_json::json;

    fn spec(value: Value) -> FieldSpec {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_definition_is_checked_like_a_form_field() {
        let bad = FieldDefinitionCommand::Create {
            entity_type: EntityType::Case,
            field_name: "satisfaction level".into(),
            spec: spec(json!({ "display_name": "Satisfaction", "field_type": "select" })),
        };
        let Err(DomainError::Invalid(errors)) = decide(None, bad, &Context::at(Utc::now())) else {
            panic!("expected invalid")
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["field_name", "options"]);
    }

    #[test]
    fn every_text_of_a_definition_is_bounded() {
        let long = |n: usize| "x".repeat(n);
        let roles: Vec<&str> = (0..=contract::MAX_TAGS).map(|i| crate::workflow::ROLES[i % 3]).collect();
        let bad = FieldDefinitionCommand::Create {
            entity_type: EntityType::Case,
            field_name: "mood".into(),
            spec: spec(json!({ "display_name": "Mood", "field_type": "select",
                               "section": long(contract::NAME.max_chars + 1),
                               "description": long(contract::DESCRIPTION.max_chars + 1),
                               "options": [{ "label": long(contract::NAME.max_chars + 1), "value": "happy" }],
                               "visibility_rules": { "roles": roles } })),
        };
        let Err(DomainError::Invalid(errors)) = decide(None, bad, &Context::at(Utc::now())) else {
            panic!("expected invalid")
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["section", "description", "options[0].label", "visibility_rules.roles"]);
        let bad_role = FieldDefinitionCommand::Create {
            entity_type: EntityType::Case,
            field_name: "mood".into(),
            spec: spec(json!({ "display_name": "Mood", "field_type": "text",
                               "visibility_rules": { "roles": [long(contract::TAG.max_chars + 1)] } })),
        };
        let Err(DomainError::Invalid(errors)) = decide(None, bad_role, &Context::at(Utc::now())) else {
            panic!("expected invalid")
        };
        assert_eq!(errors[0].field, "visibility_rules.roles[0]");
    }

    #[test]
    fn definitions_join_a_case_types_form_where_visible() {
        let create = FieldDefinitionCommand::Create {
            entity_type: EntityType::Case,
            field_name: "satisfaction".into(),
            spec: spec(json!({ "display_name": "Satisfaction", "field_type": "select", "required": true,
                               "options": [{ "label": "Happy", "value": "happy" }],
                               "visibility_rules": { "case_type_ids": [Uuid::from_u128(1)] } })),
        };
        let events = decide(None, create, &Context::at(Utc::now())).unwrap();
        let definition = given(&events).state().unwrap();
        assert!(definition.applies_to_case_type(Uuid::from_u128(1)));
        assert!(!definition.applies_to_case_type(Uuid::from_u128(2)));
        let form = merge_into(&FormDefinition::default(), &[definition]);
        let errors = form.apply(&serde_json::Map::new()).unwrap_err();
        assert_eq!(errors[0].field, "custom_fields.satisfaction");
    }

    #[test]
    fn specs_update_and_definitions_deactivate() {
        let create = FieldDefinitionCommand::Create {
            entity_type: EntityType::Case,
            field_name: "priority_reason".into(),
            spec: spec(json!({ "display_name": "Why", "field_type": "text" })),
        };
        let state = given(&decide(None, create, &Context::at(Utc::now())).unwrap()).state();
        let required = FieldDefinitionCommand::Update {
            spec: spec(json!({ "display_name": "Why", "field_type": "text", "required": true })),
        };
        assert_eq!(decide(state.as_ref(), required, &Context::at(Utc::now())).unwrap().len(), 1);
        let off = decide(state.as_ref(), FieldDefinitionCommand::Deactivate, &Context::at(Utc::now())).unwrap();
        let state = off.iter().fold(state, evolve).unwrap();
        assert!(!state.applies_to_case_type(Uuid::from_u128(1)));
    }
}
