//! The workflow stream: stages, the transitions between them (which roles may take them
//! and which custom fields must be filled first), actions, and SLA targets per priority.
//! Cases of a case type with a workflow start at its initial stage and move only along
//! its transitions (see `case::decide`).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::case::Priority;
use crate::change::{activation, Activation, Change};
use crate::contract;
use crate::error::{DomainError, FieldError, Validator};
use crate::reference::Reference;
use crate::stream::Context;

/// The roles of a tenant's users, as rules name them.
pub const ROLES: [&str; 3] = ["agent", "supervisor", "admin"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    pub id: Uuid,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transition {
    pub from: Uuid,
    pub to: Uuid,
    /// Roles that may take it; empty means every role.
    #[serde(default)]
    pub allowed_roles: Vec<String>,
    /// Custom fields that must hold a value before the case may move.
    #[serde(default)]
    pub required_fields: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlaTarget {
    pub priority: Priority,
    pub first_response_minutes: u32,
    pub resolution_minutes: u32,
}

/// When a workflow action runs: as a case enters the stage `enters` (by any move), or as
/// it takes the transition `from` → `to`. Not when a case opens at the initial stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct When {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enters: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Uuid>,
}

/// What a workflow action does to the case, recorded as events of the command that moved
/// it (so a replay or rebuild shows the same, and the audit log names the mover).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Effect {
    /// Assign the case to an active user of the tenant.
    AssignUser { user_id: Uuid },
    /// Give the case to a team of the tenant.
    AssignTeam { team_id: Uuid },
    /// Set the case's priority (its SLA follows the new priority's targets).
    SetPriority { priority: Priority },
    /// Add tags to the case's tags.
    AddTags { tags: Vec<String> },
    /// Start the SLA clock again from now, with the targets for the case's priority.
    StartSla,
    /// Stop the case's SLA clocks (no warning or breach comes of them any more).
    StopSla,
    /// Tell a user (an active one of the tenant), or without `user_id` the case's assignee,
    /// in their notifications.
    Notify {
        #[serde(default)]
        user_id: Option<Uuid>,
        message: String,
    },
    /// Create a task on the case: assigned to `user_id` (an active user of the tenant), or
    /// without it to the case's assignee; of the case's priority unless `priority` is
    /// given; due `due_in_minutes` after the move, if given.
    CreateTask {
        title: String,
        #[serde(default)]
        description: Option<String>,
        #[serde(default)]
        priority: Option<Priority>,
        #[serde(default)]
        user_id: Option<Uuid>,
        #[serde(default)]
        due_in_minutes: Option<u32>,
    },
}

impl Effect {
    /// The action's `type`, as a workflow declares it (one of `ACTION_TYPES`).
    pub fn kind(&self) -> &'static str {
        match self {
            Effect::AssignUser { .. } => "assign_user",
            Effect::AssignTeam { .. } => "assign_team",
            Effect::SetPriority { .. } => "set_priority",
            Effect::AddTags { .. } => "add_tags",
            Effect::StartSla => "start_sla",
            Effect::StopSla => "stop_sla",
            Effect::Notify { .. } => "notify",
            Effect::CreateTask { .. } => "create_task",
        }
    }

    /// The user or team the action names (as `("user" | "team", id)`), which must be
    /// usable when the workflow is saved and when the action runs.
    pub fn names(&self) -> Option<(&'static str, Uuid)> {
        match self {
            Effect::AssignUser { user_id }
            | Effect::Notify { user_id: Some(user_id), .. }
            | Effect::CreateTask { user_id: Some(user_id), .. } => Some(("user", *user_id)),
            Effect::AssignTeam { team_id } => Some(("team", *team_id)),
            Effect::SetPriority { .. }
            | Effect::AddTags { .. }
            | Effect::StartSla
            | Effect::StopSla
            | Effect::Notify { user_id: None, .. }
            | Effect::CreateTask { user_id: None, .. } => None,
        }
    }
}

/// What the write side found for each user and team a workflow's actions name (absent:
/// not looked up, so not usable).
pub type ActionTargets = std::collections::BTreeMap<Uuid, Reference>;

/// The action types a workflow may declare.
pub const ACTION_TYPES: [&str; 8] =
    ["assign_user", "assign_team", "set_priority", "add_tags", "start_sla", "stop_sla", "notify", "create_task"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowAction {
    pub when: When,
    #[serde(rename = "do")]
    pub effect: Effect,
}

impl WorkflowAction {
    fn runs_on(&self, from: Uuid, to: Uuid) -> bool {
        self.when.enters == Some(to) || (self.when.from == Some(from) && self.when.to == Some(to))
    }
}

/// Actions a workflow may declare.
pub const MAX_ACTIONS: usize = 50;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowDefinition {
    pub stages: Vec<Stage>,
    pub initial_stage: Uuid,
    #[serde(default)]
    pub transitions: Vec<Transition>,
    #[serde(default)]
    pub actions: Vec<Value>,
    #[serde(default)]
    pub sla: Vec<SlaTarget>,
}

impl WorkflowDefinition {
    pub fn check(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut ids = BTreeSet::new();
        if self.stages.is_empty() {
            errors.push(FieldError::new("definition.stages", "a workflow needs at least one stage"));
        }
        for (i, s) in self.stages.iter().enumerate() {
            if !ids.insert(s.id) {
                errors.push(FieldError::new(format!("definition.stages[{i}].id"), "is used twice"));
            }
            if let Some(problem) = contract::STAGE_NAME.problem(&s.name) {
                errors.push(FieldError::new(format!("definition.stages[{i}].name"), problem));
            }
        }
        if !ids.contains(&self.initial_stage) {
            errors.push(FieldError::new("definition.initial_stage", "must be one of the stages"));
        }
        for (i, t) in self.transitions.iter().enumerate() {
            for (end, id) in [("from", t.from), ("to", t.to)] {
                if !ids.contains(&id) {
                    errors.push(FieldError::new(
                        format!("definition.transitions[{i}].{end}"),
                        "must be one of the stages",
                    ));
                }
            }
            if let Some(role) = t.allowed_roles.iter().find(|r| !ROLES.contains(&r.as_str())) {
                errors.push(FieldError::new(
                    format!("definition.transitions[{i}].allowed_roles"),
                    format!("{role} is not a role; roles are {ROLES:?}"),
                ));
            }
        }
        self.check_actions(&ids, &mut errors);
        let mut priorities = BTreeSet::new();
        for (i, s) in self.sla.iter().enumerate() {
            if !priorities.insert(s.priority.as_str()) {
                errors.push(FieldError::new(format!("definition.sla[{i}].priority"), "has two SLA targets"));
            }
            if s.first_response_minutes == 0 || s.first_response_minutes > s.resolution_minutes {
                errors.push(FieldError::new(
                    format!("definition.sla[{i}]"),
                    "first_response_minutes must be positive and at most resolution_minutes",
                ));
            }
            // Due times are dates in every store: up to 4,294,967,295 minutes reached the
            // year 10192, which Elasticsearch's date fields refuse.
            if s.resolution_minutes > contract::MAX_SLA_MINUTES {
                errors.push(FieldError::new(
                    format!("definition.sla[{i}].resolution_minutes"),
                    format!("must be at most {} (a year)", contract::MAX_SLA_MINUTES),
                ));
            }
        }
        errors
    }

    /// What each declared action is, or why it is none (named by its place).
    fn parsed_actions(&self) -> impl Iterator<Item = (usize, Result<WorkflowAction, FieldError>)> + '_ {
        self.actions.iter().enumerate().map(|(i, raw)| {
            let parsed = serde_json::from_value::<WorkflowAction>(raw.clone()).map_err(|e| {
                let kind = raw.pointer("/do/type").and_then(Value::as_str);
                match kind {
                    Some(kind) if !ACTION_TYPES.contains(&kind) => FieldError::new(
                        format!("definition.actions[{i}].do.type"),
                        format!("{kind:?} is not an action; actions are {}", ACTION_TYPES.join(", ")),
                    ),
                    _ => FieldError::new(
                        format!("definition.actions[{i}]"),
                        format!(
                            "{e}; an action is {{\"when\": {{\"enters\": stage}} or {{\"from\": stage, \"to\": stage}}, \
                             \"do\": {{\"type\": one of {}, ...}}}}",
                            ACTION_TYPES.join(", ")
                        ),
                    ),
                }
            });
            (i, parsed)
        })
    }

    fn check_actions(&self, stages: &BTreeSet<Uuid>, errors: &mut Vec<FieldError>) {
        if self.actions.len() > MAX_ACTIONS {
            errors.push(FieldError::new("definition.actions", format!("at most {MAX_ACTIONS} actions")));
            return;
        }
        for (i, action) in self.parsed_actions() {
            let action = match action {
                Ok(action) => action,
                Err(problem) => {
                    errors.push(problem);
                    continue;
                }
            };
            let at = |what: &str| format!("definition.actions[{i}].{what}");
            let w = &action.when;
            match (w.enters, w.from, w.to) {
                (Some(stage), None, None) if !stages.contains(&stage) => {
                    errors.push(FieldError::new(at("when.enters"), "must be one of the stages"))
                }
                (Some(_), None, None) => {}
                (None, Some(from), Some(to)) if self.transition(from, to).is_none() => {
                    errors.push(FieldError::new(at("when"), "from and to must name one of the workflow's transitions"))
                }
                (None, Some(_), Some(_)) => {}
                _ => errors.push(FieldError::new(
                    at("when"),
                    "give either enters (a stage) or from and to (a transition), not both",
                )),
            }
            match &action.effect {
                Effect::AddTags { tags } => {
                    if tags.is_empty() || tags.len() > contract::MAX_TAGS {
                        errors.push(FieldError::new(at("do.tags"), format!("1 to {} tags", contract::MAX_TAGS)));
                    }
                    for (t, tag) in tags.iter().enumerate() {
                        if let Some(problem) = contract::TAG.problem(tag) {
                            errors.push(FieldError::new(at(&format!("do.tags[{t}]")), problem));
                        }
                    }
                }
                Effect::StartSla if self.sla.is_empty() => {
                    errors.push(FieldError::new(at("do.type"), "start_sla needs the workflow's sla targets"))
                }
                Effect::Notify { message, .. } => {
                    if let Some(problem) = contract::NOTICE.problem(message) {
                        errors.push(FieldError::new(at("do.message"), problem));
                    }
                }
                Effect::CreateTask { title, description, due_in_minutes, .. } => {
                    if let Some(problem) = contract::TITLE.problem(title) {
                        errors.push(FieldError::new(at("do.title"), problem));
                    }
                    if let Some(problem) = description.as_deref().and_then(|d| contract::DESCRIPTION.problem(d)) {
                        errors.push(FieldError::new(at("do.description"), problem));
                    }
                    // A due date is a date in every store: at most a year ahead, like SLA targets.
                    if due_in_minutes.is_some_and(|m| m == 0 || m > contract::MAX_SLA_MINUTES) {
                        errors.push(FieldError::new(
                            at("do.due_in_minutes"),
                            format!("must be 1 to {} (a year)", contract::MAX_SLA_MINUTES),
                        ));
                    }
                }
                Effect::StartSla
                | Effect::StopSla
                | Effect::AssignUser { .. }
                | Effect::AssignTeam { .. }
                | Effect::SetPriority { .. } => {}
            }
        }
    }

    /// `check`, and that every user and team the actions name is usable.
    pub fn check_with(&self, targets: &ActionTargets) -> Vec<FieldError> {
        let mut errors = self.check();
        for (i, action) in self.parsed_actions() {
            let Some((kind, id)) = action.ok().and_then(|a| a.effect.names()) else { continue };
            if targets.get(&id) != Some(&Reference::Usable) {
                errors.push(FieldError::new(
                    format!("definition.actions[{i}].do.{kind}_id"),
                    format!("names no active {kind} of the tenant"),
                ));
            }
        }
        errors
    }

    /// The declared actions (each checked when the workflow was saved; one saved before
    /// actions were checked that is not an action is left out).
    pub fn actions(&self) -> Vec<WorkflowAction> {
        self.parsed_actions().filter_map(|(_, a)| a.ok()).collect()
    }

    /// What a case taking the transition `from` → `to` has done to it, in declared order.
    pub fn effects_of(&self, from: Uuid, to: Uuid) -> Vec<Effect> {
        self.actions().into_iter().filter(|a| a.runs_on(from, to)).map(|a| a.effect).collect()
    }

    pub fn transition(&self, from: Uuid, to: Uuid) -> Option<&Transition> {
        self.transitions.iter().find(|t| t.from == from && t.to == to)
    }

    pub fn sla_for(&self, priority: Priority) -> Option<&SlaTarget> {
        self.sla.iter().find(|s| s.priority == priority)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum WorkflowCommand {
    /// `targets`: what the write side found for the users and teams the actions name.
    Create {
        name: String,
        description: Option<String>,
        definition: WorkflowDefinition,
        targets: ActionTargets,
    },
    Update {
        name: Option<String>,
        description: Option<Option<String>>,
        definition: Option<WorkflowDefinition>,
        targets: ActionTargets,
    },
    Deactivate,
    Activate,
}

payloads! {
    pub struct WorkflowCreated {
        pub name: String,
        pub description: Option<String>,
        pub definition: WorkflowDefinition,
        pub created_at: DateTime<Utc>,
    }
}

field_changes! {
    pub struct WorkflowUpdated changes Workflow {
        name: String,
        description: Option<String>,
        definition: WorkflowDefinition,
    } with {
        pub updated_at: DateTime<Utc>,
    }
}

event_enum! {
    pub enum WorkflowEvent {
        Created(WorkflowCreated) = "WorkflowCreated" @ 1,
        Updated(WorkflowUpdated) = "WorkflowUpdated" @ 1,
        Deactivated(Activation) = "WorkflowDeactivated" @ 1,
        Activated(Activation) = "WorkflowActivated" @ 1,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Workflow {
    pub name: String,
    pub description: Option<String>,
    pub definition: WorkflowDefinition,
    pub active: bool,
}

pub fn evolve(state: Option<Workflow>, event: &WorkflowEvent) -> Option<Workflow> {
    match (state, event) {
        (None, WorkflowEvent::Created(e)) => Some(Workflow {
            name: e.name.clone(),
            description: e.description.clone(),
            definition: e.definition.clone(),
            active: true,
        }),
        (Some(mut w), WorkflowEvent::Updated(e)) => {
            e.apply(&mut w);
            Some(w)
        }
        (Some(mut w), WorkflowEvent::Deactivated(_)) => {
            w.active = false;
            Some(w)
        }
        (Some(mut w), WorkflowEvent::Activated(_)) => {
            w.active = true;
            Some(w)
        }
        // Never in a well-formed stream: the state is kept, never invented. Every
        // (state, event) pair is named, so a new event fails to compile here until folded.
        (state @ Some(_), WorkflowEvent::Created(_)) => state,
        (None, WorkflowEvent::Updated(_) | WorkflowEvent::Deactivated(_) | WorkflowEvent::Activated(_)) => None,
    }
}

pub fn decide(
    state: Option<&Workflow>,
    command: WorkflowCommand,
    ctx: &Context,
) -> Result<Vec<WorkflowEvent>, DomainError> {
    let now = ctx.now;
    match (state, command) {
        (Some(_), WorkflowCommand::Create { .. }) => Err(DomainError::Conflict("the workflow already exists".into())),
        (None, WorkflowCommand::Create { name, description, definition, targets }) => {
            let mut v = Validator::default();
            v.text("name", &name, contract::NAME);
            if let Some(d) = &description {
                v.optional_text("description", d, contract::DESCRIPTION);
            }
            v.extend(definition.check_with(&targets));
            v.finish()?;
            Ok(vec![WorkflowEvent::Created(WorkflowCreated {
                name: name.trim().to_owned(),
                description,
                definition,
                created_at: now,
            })])
        }
        (None, _) => Err(DomainError::NotFound("workflow")),
        (Some(w), WorkflowCommand::Update { name, description, definition, targets }) => {
            let mut v = Validator::default();
            if let Some(n) = &name {
                v.text("name", n, contract::NAME);
            }
            if let Some(Some(d)) = &description {
                v.optional_text("description", d, contract::DESCRIPTION);
            }
            if let Some(d) = &definition {
                v.extend(d.check_with(&targets));
            }
            v.finish()?;
            let event = WorkflowUpdated {
                name: Change::between(&w.name, name.map(|n| n.trim().to_owned())),
                description: Change::between(&w.description, description),
                definition: Change::between(&w.definition, definition),
                updated_at: now,
            };
            let nothing = event.is_empty();
            Ok(if nothing { vec![] } else { vec![WorkflowEvent::Updated(event)] })
        }
        (Some(w), WorkflowCommand::Deactivate) => Ok(activation(w.active, false, now, WorkflowEvent::Deactivated)),
        (Some(w), WorkflowCommand::Activate) => Ok(activation(w.active, true, now, WorkflowEvent::Activated)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::testing::given;
    use serde_json::json;

    #[test]
    fn an_sla_target_stays_within_dates_every_store_takes() {
        let a = Uuid::from_u128(1);
        let definition: WorkflowDefinition = serde_json::from_value(json!({
            "stages": [{ "id": a, "name": "New" }],
            "initial_stage": a,
            "transitions": [],
            "sla": [{ "priority": "high", "first_response_minutes": 60, "resolution_minutes": u32::MAX }]
        }))
        .unwrap();
        let fields: Vec<String> = definition.check().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, vec!["definition.sla[0].resolution_minutes"]);
    }

    #[test]
    fn a_definition_must_be_consistent() {
        let a = Uuid::from_u128(1);
        let definition: WorkflowDefinition = serde_json::from_value(json!({
            "stages": [{ "id": a, "name": "New" }, { "id": a, "name": "" }],
            "initial_stage": Uuid::from_u128(9),
            "transitions": [{ "from": a, "to": Uuid::from_u128(3), "allowed_roles": ["wizard"] }],
            "sla": [{ "priority": "high", "first_response_minutes": 90, "resolution_minutes": 60 }]
        }))
        .unwrap();
        let fields: Vec<String> = definition.check().into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            vec![
                "definition.stages[1].id",
                "definition.stages[1].name",
                "definition.initial_stage",
                "definition.transitions[0].to",
                "definition.transitions[0].allowed_roles",
                "definition.sla[0]"
            ]
        );
    }

    fn simple() -> WorkflowDefinition {
        let a = Uuid::from_u128(1);
        serde_json::from_value(json!({ "stages": [{ "id": a, "name": "New" }], "initial_stage": a })).unwrap()
    }

    #[test]
    fn workflows_are_created_updated_and_deactivated() {
        let create = WorkflowCommand::Create {
            name: "Support".into(),
            description: None,
            definition: simple(),
            targets: Default::default(),
        };
        let state = given(&decide(None, create.clone(), &Context::at(Utc::now())).unwrap()).state();
        assert!(matches!(decide(state.as_ref(), create, &Context::at(Utc::now())), Err(DomainError::Conflict(_))));
        let rename = WorkflowCommand::Update {
            name: Some("Care".into()),
            description: None,
            definition: None,
            targets: Default::default(),
        };
        assert_eq!(decide(state.as_ref(), rename, &Context::at(Utc::now())).unwrap().len(), 1);
        let off = decide(state.as_ref(), WorkflowCommand::Deactivate, &Context::at(Utc::now())).unwrap();
        let state = off.iter().fold(state, evolve);
        assert!(!state.as_ref().unwrap().active);
        assert_eq!(decide(state.as_ref(), WorkflowCommand::Activate, &Context::at(Utc::now())).unwrap().len(), 1);
    }
}
