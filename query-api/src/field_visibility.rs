//! Custom field visibility on reads (issue 28, point 6): a case field whose definition's
//! `visibility_rules.roles` leaves out the reader's role is removed from every case the
//! reader gets (screen, list, queue, search hits, audit trail), and filtering on it is
//! refused, so its values cannot be guessed by yes/no questions either.
//!
//! The rules come from the custom field definitions in MongoDB, kept per tenant for one
//! second. If MongoDB does not answer, a copy up to five minutes old is used; without
//! one, cases are served with every custom field withheld (`custom_fields_withheld`) and
//! a filter on custom fields answers 503: a case screen never waits on MongoDB, and never
//! shows what it cannot tell is allowed.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use events::field_definition::VisibilityRules;
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use runtime::auth::Caller;
use runtime::tenancy::Tenancy;
use runtime::ApiError;
use serde_json::Value;
use uuid::Uuid;

/// How long a tenant's rules are used without asking MongoDB again.
const FRESH: Duration = Duration::from_secs(1);
/// How old a copy may be when MongoDB does not answer.
const USABLE: Duration = Duration::from_secs(300);
/// How long a read waits for MongoDB's answer.
const ASK_LIMIT: Duration = Duration::from_secs(1);
/// After MongoDB failed to answer, how long reads go on without asking it again.
const QUIET_AFTER_FAILURE: Duration = Duration::from_secs(2);

/// The case field rules of one tenant: only fields restricted to some roles.
#[derive(Debug, Default)]
pub struct CaseFieldRules {
    restricted: Vec<(String, VisibilityRules)>,
    /// The rules could not be read: every custom field is withheld.
    unknown: bool,
}

impl CaseFieldRules {
    fn unknown() -> Self {
        Self { restricted: Vec::new(), unknown: true }
    }

    /// What `role` may not see of a case of `case_type` (None: of some case type).
    fn hidden(&self, role: &str, case_type: Option<Uuid>) -> BTreeSet<&str> {
        self.restricted
            .iter()
            .filter(|(_, rules)| rules.hides_from(role, case_type))
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// Removes from a case (as the APIs answer it) the fields the caller may not see.
    pub fn strip_case(&self, caller: Caller, case: &mut Value) {
        if self.unknown {
            if let Some(fields) = case.get_mut("custom_fields").and_then(Value::as_object_mut) {
                fields.clear();
            }
            case["custom_fields_withheld"] = Value::Bool(true);
            return;
        }
        if self.restricted.is_empty() {
            return;
        }
        let case_type = case["case_type_id"].as_str().and_then(|t| t.parse().ok());
        // A case of no known type hides what any type would.
        let hidden = self.hidden(caller.role.as_str(), case_type);
        if let Some(fields) = case.get_mut("custom_fields").and_then(Value::as_object_mut) {
            fields.retain(|name, _| !hidden.contains(name.as_str()));
        }
    }

    /// A filter on a field the caller may not see (on any case type) is refused.
    pub fn check_filter(&self, caller: Caller, filter: &serde_json::Map<String, Value>) -> Result<(), ApiError> {
        if self.unknown && !filter.is_empty() {
            return Err(ApiError::Unavailable(
                "the custom field rules cannot be read right now, so custom fields cannot be filtered on; retry \
                 in a moment"
                    .into(),
            ));
        }
        let hidden = self.hidden(caller.role.as_str(), None);
        match filter.keys().find(|k| hidden.contains(k.as_str())) {
            Some(name) => Err(ApiError::Forbidden(format!(
                "custom_fields.{name} is not visible to your role, so you cannot filter on it"
            ))),
            None => Ok(()),
        }
    }

    /// Removes hidden fields from the `custom_fields` changes of a case's audit entry.
    pub fn strip_audit_entry(&self, caller: Caller, entry: &mut Document) {
        let Ok(changes) = entry.get_array_mut("changes") else { return };
        if self.unknown {
            changes.retain(|c| !matches!(c, Bson::Document(d) if d.get_str("field") == Ok("custom_fields")));
            return;
        }
        let hidden = self.hidden(caller.role.as_str(), None);
        if hidden.is_empty() {
            return;
        }
        for change in changes.iter_mut().filter_map(|c| match c {
            Bson::Document(d) if d.get_str("field") == Ok("custom_fields") => Some(d),
            _ => None,
        }) {
            for side in ["old_value", "new_value"] {
                if let Ok(values) = change.get_document_mut(side) {
                    for name in &hidden {
                        values.remove(*name);
                    }
                }
            }
        }
    }
}

/// A tenant's rules, with when they were read.
type Read = (Instant, Arc<CaseFieldRules>);

/// The rules of every tenant read lately, with when they were read.
#[derive(Clone, Default)]
pub struct FieldVisibility {
    seen: Arc<Mutex<HashMap<Uuid, Read>>>,
    /// When asking MongoDB last failed, per tenant.
    failed: Arc<Mutex<HashMap<Uuid, Instant>>>,
}

impl FieldVisibility {
    /// The tenant's case field rules, at most a second old (see the module's notes).
    pub async fn case_rules(&self, mongo: &mongodb::Database, tenant: Uuid) -> Arc<CaseFieldRules> {
        let held = self.held(tenant);
        if let Some((at, rules)) = &held {
            if at.elapsed() < FRESH {
                return rules.clone();
            }
        }
        let failed_lately = self
            .failed
            .lock()
            .ok()
            .and_then(|f| f.get(&tenant).copied())
            .is_some_and(|at| at.elapsed() < QUIET_AFTER_FAILURE);
        let answer = if failed_lately {
            Err(None)
        } else {
            match tokio::time::timeout(ASK_LIMIT, read(mongo, tenant)).await {
                Ok(Ok(rules)) => Ok(rules),
                Ok(Err(e)) => Err(Some(e.to_string())),
                Err(_) => Err(Some(format!("no answer in {ASK_LIMIT:?}"))),
            }
        };
        if let (Err(Some(_)), Ok(mut failed)) = (&answer, self.failed.lock()) {
            failed.insert(tenant, Instant::now());
        }
        match answer {
            Ok(rules) => {
                if let Ok(mut failed) = self.failed.lock() {
                    failed.remove(&tenant);
                }
                let rules = Arc::new(rules);
                if let Ok(mut seen) = self.seen.lock() {
                    seen.insert(tenant, (Instant::now(), rules.clone()));
                }
                rules
            }
            Err(why) => {
                let why = why.unwrap_or_else(|| "MongoDB failed to answer a moment ago".to_owned());
                match held {
                    Some((at, rules)) if at.elapsed() < USABLE => {
                        tracing::warn!(error = %why, "reading custom field rules failed; using the last copy");
                        rules
                    }
                    _ => {
                        tracing::error!(error = %why, "reading custom field rules failed; custom fields are withheld");
                        Arc::new(CaseFieldRules::unknown())
                    }
                }
            }
        }
    }

    fn held(&self, tenant: Uuid) -> Option<(Instant, Arc<CaseFieldRules>)> {
        self.seen.lock().ok().and_then(|seen| seen.get(&tenant).cloned())
    }
}

async fn read(mongo: &mongodb::Database, tenant: Uuid) -> Result<CaseFieldRules, mongodb::error::Error> {
    let coll = mongo.collection::<Document>(&Tenancy(tenant).mongo_collection("custom_field_definitions"));
    let docs: Vec<Document> = coll
        .find(doc! { "tenant_id": tenant.to_string(), "entity_type": "case" })
        .projection(doc! { "field_name": 1, "visibility_rules": 1 })
        .await?
        .try_collect()
        .await?;
    let mut restricted = Vec::new();
    for d in docs {
        let Ok(name) = d.get_str("field_name") else { continue };
        let rules: VisibilityRules = match d.get("visibility_rules") {
            Some(r) => mongodb::bson::from_bson(r.clone()).unwrap_or_else(|e| {
                // Unreadable rules hide the field from everyone but admins.
                tracing::error!(error = %e, field = name, "unreadable visibility rules");
                VisibilityRules { case_type_ids: vec![], roles: vec!["admin".into()] }
            }),
            None => continue,
        };
        if !rules.roles.is_empty() {
            restricted.push((name.to_owned(), rules));
        }
    }
    Ok(CaseFieldRules { restricted, unknown: false })
}
