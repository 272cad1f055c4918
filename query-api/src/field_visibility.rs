//! Custom field visibility on reads (issue 28, point 6): a case field whose definition's
//! `visibility_rules.roles` leaves out the reader's role is removed from every case the
//! reader gets (screen, list, queue, search hits, audit trail), and filtering on it is
//! refused, so its values cannot be guessed by yes/no questions either.
//!
//! The rules come from the custom field definitions in MongoDB, kept per tenant for one
//! second; a read never goes on without them: if MongoDB does not answer, a copy up to
//! five minutes old is used, else the read answers 503.

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
const ASK_LIMIT: Duration = Duration::from_secs(2);

/// The case field rules of one tenant: only fields restricted to some roles.
#[derive(Debug, Default)]
pub struct CaseFieldRules {
    restricted: Vec<(String, VisibilityRules)>,
}

impl CaseFieldRules {
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
        let hidden = self.hidden(caller.role.as_str(), None);
        if hidden.is_empty() {
            return;
        }
        let Ok(changes) = entry.get_array_mut("changes") else { return };
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

/// The rules of every tenant read lately, with when they were read.
#[derive(Clone, Default)]
pub struct FieldVisibility {
    seen: Arc<Mutex<HashMap<Uuid, (Instant, Arc<CaseFieldRules>)>>>,
}

impl FieldVisibility {
    /// The tenant's case field rules, at most a second old (see the module's notes).
    pub async fn case_rules(&self, mongo: &mongodb::Database, tenant: Uuid) -> Result<Arc<CaseFieldRules>, ApiError> {
        let held = self.held(tenant);
        if let Some((at, rules)) = &held {
            if at.elapsed() < FRESH {
                return Ok(rules.clone());
            }
        }
        match tokio::time::timeout(ASK_LIMIT, read(mongo, tenant)).await {
            Ok(Ok(rules)) => {
                let rules = Arc::new(rules);
                if let Ok(mut seen) = self.seen.lock() {
                    seen.insert(tenant, (Instant::now(), rules.clone()));
                }
                Ok(rules)
            }
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no answer in {ASK_LIMIT:?}"),
                };
                match held {
                    Some((at, rules)) if at.elapsed() < USABLE => {
                        tracing::warn!(error = %why, "reading custom field rules failed; using the last copy");
                        Ok(rules)
                    }
                    _ => {
                        tracing::error!(error = %why, "reading custom field rules failed");
                        Err(ApiError::Unavailable(
                            "the custom field rules cannot be read right now; retry in a moment".into(),
                        ))
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
    Ok(CaseFieldRules { restricted })
}
