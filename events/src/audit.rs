//! Field-level changes of an event, as the audit log records them (seed §2.2.2).

use serde::Serialize;
use serde_json::{json, Value};

use crate::case::{CaseEvent, Change};
use crate::case_type::CaseTypeEvent;
use crate::channel::ChannelEvent;
use crate::document::DocumentEvent;
use crate::field_definition::FieldDefinitionEvent;
use crate::interaction::InteractionEvent;
use crate::note::NoteEvent;
use crate::task::TaskEvent;
use crate::team::TeamEvent;
use crate::template::TemplateEvent;
use crate::tenant::TenantEvent;
use crate::user::UserEvent;
use crate::webhook::{WebhookEvent, WebhookUpdated};
use crate::workflow::WorkflowEvent;

/// The audit log's name for the entities of a kind of stream (the entries'
/// `entity_type`, seed §2.2.2): the stream type's, but for the two the seed names after
/// their collections.
pub fn entity_type(stream: crate::StreamType) -> &'static str {
    match stream {
        crate::StreamType::Note => "case_note",
        crate::StreamType::CustomField => "custom_field_definition",
        other => other.as_str(),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    pub field: &'static str,
    pub old_value: Value,
    pub new_value: Value,
}

/// The audit entry of an entity taken out of use or back into use: `field` became `active`.
fn activation(field: &'static str, active: bool) -> (&'static str, Vec<FieldChange>) {
    let action = if active { "activate" } else { "deactivate" };
    (action, vec![FieldChange { field, old_value: json!(!active), new_value: json!(active) }])
}

/// Records a changed field, if it changed.
fn push<T: Serialize>(out: &mut Vec<FieldChange>, field: &'static str, change: &Option<Change<T>>) {
    if let Some(c) = change {
        out.push(FieldChange { field, old_value: json!(c.old), new_value: json!(c.new) });
    }
}

/// The audit action and per-field old/new values of a case event.
pub fn case_changes(event: &CaseEvent) -> (&'static str, Vec<FieldChange>) {
    let mut out = Vec::new();
    let action = match event {
        CaseEvent::Opened(e) => {
            let fields: [(&'static str, Value); 9] = [
                ("case_number", json!(e.case_number)),
                ("title", json!(e.title)),
                ("description", json!(e.description)),
                ("status", json!(e.status)),
                ("priority", json!(e.priority)),
                ("case_type_id", json!(e.case_type_id)),
                ("assigned_to", json!(e.assigned_to)),
                ("due_date", json!(e.due_date)),
                ("tags", json!(e.tags)),
            ];
            out.extend(fields.into_iter().map(|(field, new_value)| FieldChange {
                field,
                old_value: Value::Null,
                new_value,
            }));
            // Custom fields set at opening are changes too (readers strip hidden ones).
            if !e.custom_fields.is_empty() {
                out.push(FieldChange {
                    field: "custom_fields",
                    old_value: Value::Null,
                    new_value: json!(e.custom_fields),
                });
            }
            "create"
        }
        CaseEvent::Updated(e) => {
            out = e.changes();
            "update"
        }
        CaseEvent::Assigned(e) => {
            push(&mut out, "assigned_to", &Some(e.assigned_to.clone()));
            "assign"
        }
        CaseEvent::StatusChanged(e) => {
            push(&mut out, "status", &Some(e.status.clone()));
            "status_change"
        }
        CaseEvent::WorkflowStarted(e) => {
            out.push(FieldChange { field: "workflow_id", old_value: Value::Null, new_value: json!(e.workflow_id) });
            out.push(FieldChange { field: "current_stage_id", old_value: Value::Null, new_value: json!(e.stage_id) });
            "workflow_start"
        }
        CaseEvent::StageMoved(e) => {
            push(&mut out, "current_stage_id", &Some(e.stage_id.clone()));
            "stage_move"
        }
        CaseEvent::TeamAssigned(e) => {
            push(&mut out, "team_id", &Some(e.team_id.clone()));
            "team_assign"
        }
        CaseEvent::SlaSet(e) => {
            out.push(FieldChange {
                field: "sla",
                old_value: Value::Null,
                new_value: json!({ "first_response_due": e.first_response_due, "resolution_due": e.resolution_due }),
            });
            "sla_set"
        }
        CaseEvent::SlaWarned(e) => {
            out.push(FieldChange {
                field: "sla_warning",
                old_value: Value::Null,
                new_value: json!({ "clock": e.clock, "due": e.due }),
            });
            "sla_warning"
        }
        CaseEvent::SlaBreached(e) => {
            out.push(FieldChange {
                field: "sla_breach",
                old_value: Value::Null,
                new_value: json!({ "clock": e.clock, "due": e.due }),
            });
            "sla_breach"
        }
        CaseEvent::SlaStopped(_) => {
            out.push(FieldChange { field: "sla", old_value: Value::Null, new_value: Value::Null });
            "sla_stop"
        }
        CaseEvent::Notified(e) => {
            out.push(FieldChange {
                field: "notification",
                old_value: Value::Null,
                new_value: json!({ "user_id": e.user_id, "message": e.message }),
            });
            "notify"
        }
        CaseEvent::TaskRequested(e) => {
            out.push(FieldChange {
                field: "task",
                old_value: Value::Null,
                new_value: json!({ "task_id": e.task_id, "title": e.title, "assigned_to": e.assigned_to,
                                   "priority": e.priority, "due_date": e.due_date }),
            });
            "task_request"
        }
    };
    (action, out)
}

/// The audit action and per-field old/new values of a tenant event.
pub fn tenant_changes(event: &TenantEvent) -> (&'static str, Vec<FieldChange>) {
    let change = |field, old_value, new_value| FieldChange { field, old_value, new_value };
    match event {
        TenantEvent::Provisioned(e) => (
            "create",
            vec![
                change("name", Value::Null, json!(e.name)),
                change("slug", Value::Null, json!(e.slug)),
                change("settings", Value::Null, json!(e.settings)),
            ],
        ),
        TenantEvent::SettingsUpdated(e) => {
            ("update", vec![change("settings", json!(e.settings.old), json!(e.settings.new))])
        }
        TenantEvent::Suspended(e) => (
            "suspend",
            vec![change("status", json!("active"), json!("suspended")), change("reason", Value::Null, json!(e.reason))],
        ),
        TenantEvent::Reactivated(_) => ("reactivate", vec![change("status", json!("suspended"), json!("active"))]),
    }
}

/// The audit action and per-field old/new values of a user event. The password hash is
/// never written to the audit log.
/// The fields of a user's audit entries that hold their personal data: an erasure
/// replaces their values with `[erased]` in every audit store.
pub const USER_PERSONAL_FIELDS: &[&str] = &["username", "email", "first_name", "last_name", "preferences"];

/// The audit fields that hold a customer's data (`personal`: a case's, its notes' and its
/// interactions' personal fields); an erasure of the customer replaces their values.
pub const CUSTOMER_PERSONAL_FIELDS: &[&str] =
    &["title", "description", "custom_fields", "content", "external_id", "metadata"];

/// Replaces the values of an audit entry's `changes` (a JSON array of `FieldChange`) for
/// the fields named with `[erased]`; whether anything changed. Nulls stay null.
pub fn erase_changes(changes: &mut Value, fields: &[&str]) -> bool {
    let mut erased = false;
    for change in changes.as_array_mut().into_iter().flatten() {
        if !change["field"].as_str().is_some_and(|f| fields.contains(&f)) {
            continue;
        }
        for side in ["old_value", "new_value"] {
            let value = &mut change[side];
            if !value.is_null() && value.as_str() != Some(crate::personal::ERASED) {
                *value = json!(crate::personal::ERASED);
                erased = true;
            }
        }
    }
    erased
}

pub fn user_changes(event: &UserEvent) -> (&'static str, Vec<FieldChange>) {
    let mut out = Vec::new();
    let action = match event {
        UserEvent::Created(e) => {
            for (field, value) in [
                ("username", json!(e.username)),
                ("email", json!(e.email)),
                ("first_name", json!(e.first_name)),
                ("last_name", json!(e.last_name)),
                ("role", json!(e.role)),
            ] {
                out.push(FieldChange { field, old_value: Value::Null, new_value: value });
            }
            "create"
        }
        UserEvent::ProfileUpdated(e) => {
            out = e.changes();
            "update"
        }
        UserEvent::RoleChanged(e) => {
            push(&mut out, "role", &Some(e.role.clone()));
            "role_change"
        }
        UserEvent::StatusChanged(e) => {
            push(&mut out, "status", &Some(e.status.clone()));
            "status_change"
        }
        UserEvent::PermissionsSet(e) => {
            push(&mut out, "permissions", &Some(e.permissions.clone()));
            "permissions_change"
        }
        UserEvent::PreferencesSet(e) => {
            push(&mut out, "preferences", &Some(e.preferences.clone()));
            "preferences_change"
        }
        UserEvent::LoggedIn(e) => {
            out.push(FieldChange { field: "last_login", old_value: Value::Null, new_value: json!(e.logged_in_at) });
            "login"
        }
        UserEvent::Erased(_) => "erase",
        UserEvent::NotificationsRead(e) => {
            if !e.ids.is_empty() {
                out.push(FieldChange { field: "notifications_read", old_value: Value::Null, new_value: json!(e.ids) });
            }
            if let Some(before) = e.all_before {
                out.push(FieldChange {
                    field: "notifications_read_before",
                    old_value: Value::Null,
                    new_value: json!(before),
                });
            }
            "notifications_read"
        }
        UserEvent::PasswordChanged(e) => {
            out.push(FieldChange { field: "password", old_value: Value::Null, new_value: json!("changed") });
            if e.reset {
                "password_reset"
            } else {
                "password_change"
            }
        }
    };
    (action, out)
}

/// The audit action and per-field old/new values of a team event.
pub fn team_changes(event: &TeamEvent) -> (&'static str, Vec<FieldChange>) {
    let change = |field, old_value, new_value| FieldChange { field, old_value, new_value };
    match event {
        TeamEvent::Created(e) => (
            "create",
            vec![change("name", Value::Null, json!(e.name)), change("description", Value::Null, json!(e.description))],
        ),
        TeamEvent::Renamed(e) => ("update", vec![change("name", json!(e.name.old), json!(e.name.new))]),
        TeamEvent::MemberAdded(e) => {
            ("member_add", vec![change("member", Value::Null, json!({ "user_id": e.user_id, "role": e.role }))])
        }
        TeamEvent::MemberRemoved(e) => {
            ("member_remove", vec![change("member", json!({ "user_id": e.user_id, "role": e.role }), Value::Null)])
        }
    }
}

/// A webhook URL as the audit log keeps it: without its query, which often carries the
/// receiver's token (`audit:read` is not `webhooks:manage`).
fn without_query(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?…"),
        None => url.to_owned(),
    }
}

/// The audit action and per-field old/new values of a webhook event (its secret is never
/// in one).
pub fn webhook_changes(event: &WebhookEvent) -> (&'static str, Vec<FieldChange>) {
    let change = |field, old_value, new_value| FieldChange { field, old_value, new_value };
    let mut out = Vec::new();
    let action = match event {
        WebhookEvent::Created(e) => {
            out.push(change("url", Value::Null, json!(without_query(&e.url))));
            out.push(change("event_types", Value::Null, json!(e.event_types)));
            out.push(change("description", Value::Null, json!(e.description)));
            "create"
        }
        WebhookEvent::Updated(e) => {
            let url = e.url.as_ref().map(|c| Change { old: without_query(&c.old), new: without_query(&c.new) });
            out = WebhookUpdated { url, ..e.clone() }.changes();
            "update"
        }
        WebhookEvent::Deleted(_) => "delete",
    };
    (action, out)
}

/// The audit action and per-field old/new values of a case type event.
pub fn case_type_changes(event: &CaseTypeEvent) -> (&'static str, Vec<FieldChange>) {
    match event {
        CaseTypeEvent::Created(e) => (
            "create",
            [
                ("name", json!(e.name)),
                ("description", json!(e.description)),
                ("form_definition", json!(e.form_definition)),
                ("validation_rules", json!(e.validation_rules)),
                ("workflow_id", json!(e.workflow_id)),
            ]
            .into_iter()
            .map(|(field, new_value)| FieldChange { field, old_value: Value::Null, new_value })
            .collect(),
        ),
        CaseTypeEvent::Updated(e) => ("update", e.changes()),
        CaseTypeEvent::Deactivated(_) => activation("is_active", false),
        CaseTypeEvent::Activated(_) => activation("is_active", true),
    }
}

/// The audit action and per-field old/new values of a channel event.
pub fn channel_changes(event: &ChannelEvent) -> (&'static str, Vec<FieldChange>) {
    let change = |field, old_value, new_value| FieldChange { field, old_value, new_value };
    match event {
        ChannelEvent::Created(e) => (
            "create",
            vec![
                change("name", Value::Null, json!(e.name)),
                change("type", Value::Null, json!(e.channel_type)),
                change("configuration", Value::Null, json!(e.configuration)),
            ],
        ),
        ChannelEvent::Updated(e) => ("update", e.changes()),
        ChannelEvent::Deactivated(_) => activation("is_active", false),
        ChannelEvent::Activated(_) => activation("is_active", true),
    }
}

/// The audit action and fields of an interaction event.
pub fn interaction_changes(event: &InteractionEvent) -> (&'static str, Vec<FieldChange>) {
    match event {
        InteractionEvent::Recorded(e) => (
            "create",
            [
                ("case_id", json!(e.case_id)),
                ("channel_id", json!(e.channel_id)),
                ("direction", json!(e.direction)),
                ("external_id", json!(e.external_id)),
            ]
            .into_iter()
            .map(|(field, new_value)| FieldChange { field, old_value: Value::Null, new_value })
            .collect(),
        ),
    }
}

/// The audit action and per-field old/new values of a task event.
pub fn task_changes(event: &TaskEvent) -> (&'static str, Vec<FieldChange>) {
    let change = |field, old_value, new_value| FieldChange { field, old_value, new_value };
    match event {
        TaskEvent::Created(e) => (
            "create",
            vec![
                change("case_id", Value::Null, json!(e.case_id)),
                change("title", Value::Null, json!(e.title)),
                change("priority", Value::Null, json!(e.priority)),
                change("assigned_to", Value::Null, json!(e.assigned_to)),
                change("due_date", Value::Null, json!(e.due_date)),
            ],
        ),
        TaskEvent::Assigned(e) => {
            ("assign", vec![change("assigned_to", json!(e.assigned_to.old), json!(e.assigned_to.new))])
        }
        TaskEvent::StatusChanged(e) => {
            ("status_change", vec![change("status", json!(e.status.old), json!(e.status.new))])
        }
    }
}

/// The audit action and per-field old/new values of a case note event.
pub fn note_changes(event: &NoteEvent) -> (&'static str, Vec<FieldChange>) {
    let change = |field, old_value, new_value| FieldChange { field, old_value, new_value };
    match event {
        NoteEvent::Added(e) => (
            "create",
            vec![
                change("case_id", Value::Null, json!(e.case_id)),
                change("content", Value::Null, json!(e.content)),
                change("is_internal", Value::Null, json!(e.is_internal)),
                change("tags", Value::Null, json!(e.tags)),
            ],
        ),
        NoteEvent::Edited(e) => ("update", e.changes()),
        NoteEvent::Deleted(_) => ("delete", vec![]),
    }
}

/// The audit action and fields of a document event.
pub fn document_changes(event: &DocumentEvent) -> (&'static str, Vec<FieldChange>) {
    let change = |field, old_value, new_value| FieldChange { field, old_value, new_value };
    match event {
        DocumentEvent::Attached(e) => (
            "create",
            vec![
                change("case_id", Value::Null, json!(e.case_id)),
                change("filename", Value::Null, json!(e.filename)),
                change("mime_type", Value::Null, json!(e.mime_type)),
                change("size", Value::Null, json!(e.size)),
            ],
        ),
        DocumentEvent::Deleted(_) => ("delete", vec![change("is_deleted", json!(false), json!(true))]),
    }
}

/// The audit action and per-field old/new values of a message template event.
pub fn template_changes(event: &TemplateEvent) -> (&'static str, Vec<FieldChange>) {
    let change = |field, old_value, new_value| FieldChange { field, old_value, new_value };
    match event {
        TemplateEvent::Created(e) => (
            "create",
            vec![
                change("name", Value::Null, json!(e.name)),
                change("subject", Value::Null, json!(e.subject)),
                change("content", Value::Null, json!(e.content)),
                change("variables", Value::Null, json!(e.variables)),
            ],
        ),
        TemplateEvent::Updated(e) => ("update", e.changes()),
        TemplateEvent::Deactivated(_) => activation("is_active", false),
        TemplateEvent::Activated(_) => activation("is_active", true),
    }
}

/// The audit action and per-field old/new values of a workflow event.
pub fn workflow_changes(event: &WorkflowEvent) -> (&'static str, Vec<FieldChange>) {
    let change = |field, old_value, new_value| FieldChange { field, old_value, new_value };
    match event {
        WorkflowEvent::Created(e) => (
            "create",
            vec![change("name", Value::Null, json!(e.name)), change("definition", Value::Null, json!(e.definition))],
        ),
        WorkflowEvent::Updated(e) => ("update", e.changes()),
        WorkflowEvent::Deactivated(_) => activation("active", false),
        WorkflowEvent::Activated(_) => activation("active", true),
    }
}

/// The audit action and per-field old/new values of a custom field definition event.
pub fn field_definition_changes(event: &FieldDefinitionEvent) -> (&'static str, Vec<FieldChange>) {
    let change = |field, old_value, new_value| FieldChange { field, old_value, new_value };
    match event {
        FieldDefinitionEvent::Created(e) => (
            "create",
            vec![
                change("entity_type", Value::Null, json!(e.entity_type)),
                change("field_name", Value::Null, json!(e.field_name)),
                change("spec", Value::Null, json!(e.spec)),
            ],
        ),
        FieldDefinitionEvent::Updated(e) => ("update", vec![change("spec", json!(e.spec.old), json!(e.spec.new))]),
        FieldDefinitionEvent::Deactivated(_) => activation("is_active", false),
        FieldDefinitionEvent::Activated(_) => activation("is_active", true),
    }
}
