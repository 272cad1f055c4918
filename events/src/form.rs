//! Form definitions of case types and the validation of a case's custom fields against
//! them: type, required, options, min/max and pattern. Pure: the case type is looked up
//! by the command API and handed to `decide`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::contract;
use crate::error::FieldError;

pub type CustomFields = Map<String, Value>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum FieldType {
    Text,
    Number,
    Date,
    Boolean,
    Select,
    Multiselect,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormField {
    pub name: String,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(rename = "type")]
    pub field_type: FieldType,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub options: Vec<String>,
    /// Numbers: smallest and largest value. Text: shortest and longest length.
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    /// Text: a regular expression the whole value must match.
    #[serde(default)]
    pub pattern: Option<String>,
    #[serde(default)]
    pub default: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormDefinition {
    #[serde(default)]
    pub fields: Vec<FormField>,
}

/// A case type's validation rules: per-field overrides of the form's constraints,
/// `{"fields": {"customer_id": {"required": true, "pattern": "C-[0-9]{4}"}}}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationRules {
    #[serde(default)]
    pub fields: std::collections::BTreeMap<String, FieldRule>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldRule {
    #[serde(default)]
    pub required: Option<bool>,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    #[serde(default)]
    pub pattern: Option<String>,
}

impl ValidationRules {
    /// Reads the stored JSON (null or `{}` mean no rules); a wrong shape names what to fix.
    pub fn parse(raw: &Value) -> Result<Self, FieldError> {
        if raw.is_null() {
            return Ok(Self::default());
        }
        serde_json::from_value(raw.clone()).map_err(|e| FieldError::new("validation_rules", format!("{e}")))
    }

    /// The form with these rules applied; rules for fields the form lacks are errors.
    pub fn apply_to(&self, form: &FormDefinition) -> Result<FormDefinition, Vec<FieldError>> {
        let mut out = form.clone();
        let mut errors = Vec::new();
        for (name, rule) in &self.fields {
            let Some(field) = out.fields.iter_mut().find(|f| &f.name == name) else {
                errors.push(FieldError::new(format!("validation_rules.fields.{name}"), "is not a field of the form"));
                continue;
            };
            if let Some(r) = rule.required {
                field.required = r;
            }
            field.min = rule.min.or(field.min);
            field.max = rule.max.or(field.max);
            if rule.pattern.is_some() {
                field.pattern = rule.pattern.clone();
            }
        }
        errors.extend(out.check());
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }
}

impl FormDefinition {
    /// Problems with the definition itself (names, options, patterns, bounds).
    pub fn check(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        if self.fields.len() > contract::MAX_CUSTOM_FIELDS {
            errors.push(FieldError::new(
                "form_definition.fields",
                format!("at most {} fields", contract::MAX_CUSTOM_FIELDS),
            ));
        }
        for (i, f) in self.fields.iter().enumerate() {
            let at = |what: &str| format!("form_definition.fields[{i}].{what}");
            let name_ok = !f.name.is_empty()
                && f.name.len() <= 64
                && f.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !name_ok {
                errors.push(FieldError::new(at("name"), "1-64 characters of a-z, A-Z, 0-9 and _"));
            } else if !seen.insert(f.name.clone()) {
                errors.push(FieldError::new(at("name"), format!("{} is defined twice", f.name)));
            }
            let has_options = matches!(f.field_type, FieldType::Select | FieldType::Multiselect);
            if has_options && f.options.is_empty() {
                errors.push(FieldError::new(at("options"), "select fields need at least one option"));
            }
            if f.options.len() > contract::MAX_OPTIONS {
                errors.push(FieldError::new(at("options"), format!("at most {} options", contract::MAX_OPTIONS)));
            }
            // An option becomes a case's value: it is bounded like a text value.
            for (j, option) in f.options.iter().enumerate() {
                if let Some(problem) = contract::CUSTOM_TEXT.problem(option) {
                    errors.push(FieldError::new(at(&format!("options[{j}]")), problem));
                }
            }
            if let Some(problem) = f.label.as_deref().and_then(|l| contract::NAME.problem(l)) {
                errors.push(FieldError::new(at("label"), problem));
            }
            if let Some(p) = &f.pattern {
                if p.chars().count() > contract::MAX_PATTERN {
                    errors
                        .push(FieldError::new(at("pattern"), format!("at most {} characters", contract::MAX_PATTERN)));
                } else if regex_lite::Regex::new(p).is_err() {
                    errors.push(FieldError::new(at("pattern"), "is not a valid regular expression"));
                }
            }
            if let (Some(min), Some(max)) = (f.min, f.max) {
                if min > max {
                    errors.push(FieldError::new(at("min"), "must not exceed max"));
                }
            }
            if let Some(d) = &f.default {
                if let Err(message) = check_value(f, d) {
                    errors.push(FieldError::new(at("default"), message));
                }
            }
        }
        errors
    }

    /// Fills defaults for absent fields and reports every field that breaks the form.
    /// Fields the form does not define are refused, so typos do not pass silently.
    pub fn apply(&self, fields: &CustomFields) -> Result<CustomFields, Vec<FieldError>> {
        let mut out = fields.clone();
        let mut errors = Vec::new();
        for key in fields.keys() {
            if !self.fields.iter().any(|f| &f.name == key) {
                errors.push(FieldError::new(format!("custom_fields.{key}"), "is not a field of this case type"));
            }
        }
        for f in &self.fields {
            let at = format!("custom_fields.{}", f.name);
            match fields.get(&f.name) {
                None | Some(Value::Null) => match &f.default {
                    Some(d) => {
                        out.insert(f.name.clone(), d.clone());
                    }
                    None if f.required => errors.push(FieldError::new(at, "is required")),
                    None => {}
                },
                Some(v) => {
                    if let Err(message) = check_value(f, v) {
                        errors.push(FieldError::new(at, message));
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }
}

fn check_value(f: &FormField, v: &Value) -> Result<(), String> {
    let in_range = |x: f64, what: &str| -> Result<(), String> {
        if f.min.is_some_and(|m| x < m) || f.max.is_some_and(|m| x > m) {
            return Err(format!(
                "{what} must be between {} and {}",
                f.min.map_or("-inf".into(), |m| m.to_string()),
                f.max.map_or("inf".into(), |m| m.to_string())
            ));
        }
        Ok(())
    };
    match f.field_type {
        FieldType::Text => {
            let s = v.as_str().ok_or("must be text")?;
            if let Some(problem) = contract::CUSTOM_TEXT.problem(s).filter(|_| !s.trim().is_empty()) {
                return Err(problem);
            }
            in_range(s.chars().count() as f64, "the length")?;
            if let Some(p) = &f.pattern {
                let anchored = format!("^(?:{p})$");
                let matches = regex_lite::Regex::new(&anchored).map(|r| r.is_match(s)).unwrap_or(false);
                if !matches {
                    return Err(format!("must match the pattern {p}"));
                }
            }
            Ok(())
        }
        FieldType::Number => in_range(v.as_f64().ok_or("must be a number")?, "the value"),
        FieldType::Date => {
            let s = v.as_str().ok_or("must be a date like 2026-12-31")?;
            chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map(|_| ())
                .or_else(|_| chrono::DateTime::parse_from_rfc3339(s).map(|_| ()))
                .map_err(|_| "must be a date like 2026-12-31".to_owned())
        }
        FieldType::Boolean => v.as_bool().map(|_| ()).ok_or_else(|| "must be true or false".to_owned()),
        FieldType::Select => {
            let s = v.as_str().ok_or("must be one of the options")?;
            if f.options.iter().any(|o| o == s) {
                Ok(())
            } else {
                Err(format!("must be one of {:?}", f.options))
            }
        }
        FieldType::Multiselect => {
            let items = v.as_array().ok_or("must be a list of options")?;
            if items.iter().all(|i| i.as_str().is_some_and(|s| f.options.iter().any(|o| o == s))) {
                Ok(())
            } else {
                Err(format!("every item must be one of {:?}", f.options))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn form() -> FormDefinition {
        serde_json::from_value(json!({ "fields": [
            { "name": "customer_id", "type": "text", "required": true, "pattern": "C-[0-9]{4}" },
            { "name": "amount", "type": "number", "min": 0, "max": 1000 },
            { "name": "channel", "type": "select", "options": ["phone", "email"], "default": "phone" },
            { "name": "topics", "type": "multiselect", "options": ["billing", "outage"] },
            { "name": "callback", "type": "boolean" },
            { "name": "since", "type": "date" }
        ]}))
        .unwrap()
    }

    #[test]
    fn valid_fields_pass_and_defaults_are_filled() {
        let fields = json!({ "customer_id": "C-1234", "amount": 12.5, "topics": ["billing"], "callback": true, "since": "2026-01-31" });
        let applied = form().apply(fields.as_object().unwrap()).unwrap();
        assert_eq!(applied["channel"], "phone");
        assert!(form().check().is_empty());
    }

    #[test]
    fn every_broken_field_is_named() {
        let fields = json!({ "amount": 5000, "channel": "fax", "topics": ["weather"], "callback": "yes", "since": "yesterday", "colour": "red" });
        let errors = form().apply(fields.as_object().unwrap()).unwrap_err();
        let named: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            named,
            vec![
                "custom_fields.colour",
                "custom_fields.customer_id",
                "custom_fields.amount",
                "custom_fields.channel",
                "custom_fields.topics",
                "custom_fields.callback",
                "custom_fields.since"
            ]
        );
        let wrong_pattern = json!({ "customer_id": "X-1" });
        let errors = form().apply(wrong_pattern.as_object().unwrap()).unwrap_err();
        assert!(errors[0].message.contains("pattern"));
    }

    #[test]
    fn validation_rules_tighten_the_form() {
        let rules =
            ValidationRules::parse(&json!({ "fields": { "amount": { "required": true, "max": 100 } } })).unwrap();
        let strict = rules.apply_to(&form()).unwrap();
        let fields = json!({ "customer_id": "C-1234", "amount": 500 });
        let errors = strict.apply(fields.as_object().unwrap()).unwrap_err();
        assert_eq!(errors[0].field, "custom_fields.amount");
        let unknown = ValidationRules::parse(&json!({ "fields": { "nope": { "required": true } } })).unwrap();
        assert!(unknown.apply_to(&form()).is_err());
        assert!(ValidationRules::parse(&json!({ "fields": { "amount": { "maximum": 1 } } })).is_err());
    }

    #[test]
    fn broken_definitions_are_refused() {
        let bad: FormDefinition = serde_json::from_value(json!({ "fields": [
            { "name": "a b", "type": "text" },
            { "name": "s", "type": "select" },
            { "name": "p", "type": "text", "pattern": "(" },
            { "name": "n", "type": "number", "min": 5, "max": 1 }
        ]}))
        .unwrap();
        assert_eq!(bad.check().len(), 4);
    }
}
