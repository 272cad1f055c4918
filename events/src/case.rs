//! The case stream (the seed's `cases` table): open, update, assign, change status.
//!
//! `decide` holds every business rule and returns the facts to record; `evolve` only
//! applies facts. Events carry the old value beside the new one, so the audit trail and
//! the counters never need to look anything up.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use crate::change::Change;
use crate::contract;
use crate::error::FieldError;
use crate::error::{DomainError, Validator};
use crate::form::FormDefinition;
use crate::reference::Reference;
use crate::workflow::{ActionTargets, Effect, WorkflowDefinition};

pub type CustomFields = serde_json::Map<String, serde_json::Value>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Status {
    Open,
    InProgress,
    Pending,
    Resolved,
    Closed,
}

impl Status {
    pub const ALL: [Status; 5] = [Status::Open, Status::InProgress, Status::Pending, Status::Resolved, Status::Closed];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::InProgress => "in_progress",
            Status::Pending => "pending",
            Status::Resolved => "resolved",
            Status::Closed => "closed",
        }
    }

    /// The statuses of a case that needs no more work: the one list every read model
    /// and query takes "open" from (`is_active`, `is_active_name`, `finished_sql`, the
    /// counters' Lua script).
    pub const FINISHED: [Status; 2] = [Status::Resolved, Status::Closed];

    /// Whether the case still needs work (counts towards an assignee's open load, and its
    /// SLA clocks run).
    pub fn is_active(self) -> bool {
        !Self::FINISHED.contains(&self)
    }

    /// `is_active` for a status as the read models store it (`as_str`).
    pub fn is_active_name(name: &str) -> bool {
        !Self::FINISHED.iter().any(|s| s.as_str() == name)
    }

    /// The finished statuses as a SQL list, `'resolved', 'closed'`, for `status NOT IN (...)`.
    pub fn finished_sql() -> String {
        Self::FINISHED.map(|s| format!("'{}'", s.as_str())).join(", ")
    }

    /// The status workflow every tenant shares until issue-level workflows exist.
    fn may_become(self, to: Status) -> bool {
        use Status::*;
        match self {
            Open => matches!(to, InProgress | Pending | Resolved | Closed),
            InProgress => matches!(to, Open | Pending | Resolved | Closed),
            Pending => matches!(to, Open | InProgress | Resolved | Closed),
            Resolved => matches!(to, Open | Closed),
            Closed => matches!(to, Open),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Priority {
    Low,
    #[default]
    Medium,
    High,
    Urgent,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Medium => "medium",
            Priority::High => "high",
            Priority::Urgent => "urgent",
        }
    }
}

// ---- commands ----

#[derive(Debug, Clone, PartialEq)]
pub enum CaseCommand {
    Open(OpenCase),
    Update(UpdateCase),
    /// Adds and removes tags against the case's current tags (no lost concurrent edits).
    ChangeTags {
        add: Vec<String>,
        remove: Vec<String>,
    },
    MoveStage(MoveStage),
    Assign(AssignCase),
    /// Assign the case to a team (or none); `team` is what the write side found for it.
    AssignTeam {
        team_id: Option<Uuid>,
        team: Reference,
    },
    ChangeStatus(ChangeStatus),
    /// The SLA scheduler's look at the case's clocks at `Context::now`: records each
    /// warning and breach that is due and not recorded yet (nothing, usually).
    CheckSla,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OpenCase {
    /// Allocated by the write side before deciding (unique per tenant).
    pub case_number: String,
    /// The case type as the write side found it (None: no such type in the tenant).
    pub case_type: Option<CaseTypeFacts>,
    /// What the write side found for `assigned_to` (ignored when it is None).
    pub assignee: Reference,
    pub title: String,
    pub description: Option<String>,
    pub priority: Priority,
    pub case_type_id: Uuid,
    pub assigned_to: Option<Uuid>,
    pub due_date: Option<DateTime<Utc>>,
    pub tags: Vec<String>,
    pub custom_fields: CustomFields,
    /// The customer the case is about (their id in the tenant's own records): its title,
    /// description and custom fields, and its notes' and interactions' content, are
    /// sealed with that data subject's key (`personal`). Never changes.
    pub customer_id: Option<Uuid>,
}

/// What a case command needs to know of the case's type, looked up before deciding.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseTypeFacts {
    pub active: bool,
    pub form: FormDefinition,
    /// The type's workflow, when it has one.
    pub workflow: Option<WorkflowFacts>,
    /// Custom fields the acting user's role may not see on cases of this type.
    pub hidden: BTreeSet<String>,
}

/// A workflow as the write side found it, looked up before deciding.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowFacts {
    pub id: Uuid,
    pub active: bool,
    pub definition: WorkflowDefinition,
}

/// Move a case to another stage of its workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct MoveStage {
    pub to: Uuid,
    /// The actor's role, checked against the transition's allowed roles.
    pub role: String,
    pub workflow: Option<WorkflowFacts>,
    /// What the write side found for each user and team the workflow's actions name.
    pub targets: ActionTargets,
    /// The case's customer was erased: the custom fields a transition requires went with
    /// their data and can never be recorded again, so none is asked for.
    pub customer_erased: bool,
}

/// Every field is optional: absent means "leave as is". `Some(None)` clears a nullable field.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpdateCase {
    /// The form of the case's type, looked up when `custom_fields` is given.
    pub form: Option<FormDefinition>,
    /// Custom fields the acting user's role may not see on this case: refused when sent,
    /// kept as they are when the rest of the fields are replaced.
    pub hidden: BTreeSet<String>,
    /// The case's workflow, looked up when `priority` is given (its SLA may change).
    pub workflow: Option<WorkflowFacts>,
    pub title: Option<String>,
    pub description: Option<Option<String>>,
    pub priority: Option<Priority>,
    pub due_date: Option<Option<DateTime<Utc>>>,
    pub tags: Option<Vec<String>>,
    pub custom_fields: Option<CustomFields>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AssignCase {
    pub assigned_to: Option<Uuid>,
    /// What the write side found for `assigned_to` (ignored when it is None).
    pub assignee: Reference,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChangeStatus {
    pub status: Status,
}

pub use crate::stream::Context;

// ---- events ----

payloads! {
    pub struct CaseOpened {
        pub case_number: String,
        pub title: String,
        pub description: Option<String>,
        pub status: Status,
        pub priority: Priority,
        pub case_type_id: Uuid,
        pub created_by: Uuid,
        pub assigned_to: Option<Uuid>,
        pub due_date: Option<DateTime<Utc>>,
        pub tags: Vec<String>,
        pub custom_fields: CustomFields,
        pub opened_at: DateTime<Utc>,
        /// v2: v1 cases name no customer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub customer_id: Option<Uuid>,
    }
}

/// Upcasts an event whose new version only added optional fields (absent: none).
pub fn unchanged(payload: serde_json::Value) -> serde_json::Value {
    payload
}

field_changes! {
    #[derive(Default)]
    pub struct CaseUpdated changes Case {
        title: String,
        description: Option<String>,
        priority: Priority,
        due_date: Option<DateTime<Utc>>,
        tags: Vec<String>,
        custom_fields: CustomFields,
    } with {
        pub updated_at: DateTime<Utc>,
    }
}

payloads! {
    pub struct CaseAssigned {
        pub assigned_to: Change<Option<Uuid>>,
        pub assigned_at: DateTime<Utc>,
    }

    pub struct CaseStatusChanged {
        pub status: Change<Status>,
        pub changed_at: DateTime<Utc>,
    }

    pub struct CaseTeamAssigned {
        pub team_id: Change<Option<Uuid>>,
        pub assigned_at: DateTime<Utc>,
    }

    /// The case follows its type's workflow from the workflow's initial stage.
    pub struct CaseWorkflowStarted {
        pub workflow_id: Uuid,
        pub stage_id: Uuid,
        pub started_at: DateTime<Utc>,
    }

    pub struct CaseStageMoved {
        pub stage_id: Change<Uuid>,
        pub moved_at: DateTime<Utc>,
    }

    /// SLA due times from the workflow's targets for the case's priority.
    pub struct CaseSlaSet {
        pub priority: Priority,
        pub first_response_due: DateTime<Utc>,
        pub resolution_due: DateTime<Utc>,
        pub set_at: DateTime<Utc>,
    }
}

/// One of a case's two SLA clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum SlaClock {
    /// Runs from the SLA's start until the case first leaves the `open` status.
    FirstResponse,
    /// Runs while the case is not resolved or closed.
    Resolution,
}

impl SlaClock {
    pub const ALL: [SlaClock; 2] = [SlaClock::FirstResponse, SlaClock::Resolution];

    pub fn as_str(self) -> &'static str {
        match self {
            SlaClock::FirstResponse => "first_response",
            SlaClock::Resolution => "resolution",
        }
    }
}

payloads! {
    /// A running SLA clock has four fifths of its time behind it (recorded once per SLA set).
    pub struct CaseSlaWarned {
        pub clock: SlaClock,
        pub due: DateTime<Utc>,
        pub warned_at: DateTime<Utc>,
    }

    /// A running SLA clock passed its due time (recorded once per SLA set).
    pub struct CaseSlaBreached {
        pub clock: SlaClock,
        pub due: DateTime<Utc>,
        pub breached_at: DateTime<Utc>,
    }

    /// A workflow action stopped the case's SLA clocks.
    pub struct CaseSlaStopped {
        pub stopped_at: DateTime<Utc>,
    }

    /// A workflow action told a user (None: whoever the case's assignee is) something.
    pub struct CaseNotified {
        pub user_id: Option<Uuid>,
        pub message: String,
        pub notified_at: DateTime<Utc>,
    }

    /// A workflow action asked for a task on the case. The task itself is its own stream,
    /// created with the id `task_id` by the command API's task scheduler
    /// (`command-api/src/requested_tasks.rs`)
    /// from this event, once, whichever writer recorded it.
    pub struct CaseTaskRequested {
        pub task_id: Uuid,
        pub title: String,
        pub description: Option<String>,
        pub priority: Priority,
        pub assigned_to: Option<Uuid>,
        pub due_date: Option<DateTime<Utc>>,
        pub requested_at: DateTime<Utc>,
    }
}

event_enum! {
    pub enum CaseEvent {
        Opened(CaseOpened) = "CaseOpened" @ 2 [1 => unchanged],
        Updated(CaseUpdated) = "CaseUpdated" @ 1,
        Assigned(CaseAssigned) = "CaseAssigned" @ 1,
        StatusChanged(CaseStatusChanged) = "CaseStatusChanged" @ 1,
        WorkflowStarted(CaseWorkflowStarted) = "CaseWorkflowStarted" @ 1,
        StageMoved(CaseStageMoved) = "CaseStageMoved" @ 1,
        SlaSet(CaseSlaSet) = "CaseSlaSet" @ 1,
        TeamAssigned(CaseTeamAssigned) = "CaseTeamAssigned" @ 1,
        SlaWarned(CaseSlaWarned) = "CaseSlaWarned" @ 1,
        SlaBreached(CaseSlaBreached) = "CaseSlaBreached" @ 1,
        SlaStopped(CaseSlaStopped) = "CaseSlaStopped" @ 1,
        Notified(CaseNotified) = "CaseNotified" @ 1,
        TaskRequested(CaseTaskRequested) = "CaseTaskRequested" @ 1,
    }
}

// ---- state ----

/// A case as the write side sees it after folding its events.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub case_number: String,
    pub title: String,
    pub description: Option<String>,
    pub status: Status,
    pub priority: Priority,
    pub case_type_id: Uuid,
    pub created_by: Uuid,
    pub assigned_to: Option<Uuid>,
    pub due_date: Option<DateTime<Utc>>,
    pub tags: Vec<String>,
    pub custom_fields: CustomFields,
    /// The customer the case is about (`OpenCase::customer_id`).
    pub customer_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub workflow_id: Option<Uuid>,
    pub stage_id: Option<Uuid>,
    pub sla: Option<CaseSlaSet>,
    pub team_id: Option<Uuid>,
    /// When the case first left the `open` status (its first response).
    pub responded_at: Option<DateTime<Utc>>,
    /// Since when the case is resolved or closed (None while it needs work).
    pub finished_at: Option<DateTime<Utc>>,
    /// The clocks of the current SLA already warned of, and already breached.
    pub sla_warned: BTreeSet<SlaClock>,
    pub sla_breached: BTreeSet<SlaClock>,
}

impl Case {
    /// Whether `clock` runs: the case has an SLA, owes what the clock measures, and the
    /// clock has not been breached yet.
    pub fn sla_running(&self, clock: SlaClock) -> bool {
        self.sla.is_some() && self.clock_stopped_at(clock).is_none() && !self.sla_breached.contains(&clock)
    }

    /// When what `clock` measures was done (None: not yet): the first response when the
    /// case first left `open`, the resolution while it is resolved or closed.
    fn clock_stopped_at(&self, clock: SlaClock) -> Option<DateTime<Utc>> {
        match clock {
            SlaClock::FirstResponse => self.responded_at.or(self.finished_at),
            SlaClock::Resolution => self.finished_at,
        }
    }

    /// The due time of `clock` and when it warns (four fifths of its time after the SLA
    /// was set; at the due time itself when set late).
    fn sla_times(&self, clock: SlaClock) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let sla = self.sla.as_ref()?;
        let due = match clock {
            SlaClock::FirstResponse => sla.first_response_due,
            SlaClock::Resolution => sla.resolution_due,
        };
        let fifth = due.signed_duration_since(sla.set_at).checked_div(5).unwrap_or_default();
        let warn = due.checked_sub_signed(fifth).filter(|w| *w >= sla.set_at).unwrap_or(due);
        Some((due, warn))
    }

    /// When the SLA scheduler should next look at the case (None: no clock runs).
    pub fn next_sla_check(&self) -> Option<DateTime<Utc>> {
        SlaClock::ALL
            .into_iter()
            .filter(|c| self.sla_running(*c))
            .filter_map(|c| {
                let (due, warn) = self.sla_times(c)?;
                Some(if self.sla_warned.contains(&c) { due } else { warn.min(due) })
            })
            .min()
    }

    /// The warnings and breaches due at `now` and not recorded yet. A clock stopped after
    /// its due time before the scheduler looked (it runs late, or was down) is breached
    /// still, as of its due time.
    fn sla_events(&self, now: DateTime<Utc>) -> Vec<CaseEvent> {
        let mut events = Vec::new();
        for clock in SlaClock::ALL.into_iter().filter(|c| !self.sla_breached.contains(c)) {
            let Some((due, warn)) = self.sla_times(clock) else { continue };
            match self.clock_stopped_at(clock) {
                Some(stopped) if stopped > due => {
                    events.push(CaseEvent::SlaBreached(CaseSlaBreached { clock, due, breached_at: due }));
                }
                Some(_) => {}
                None if now >= due => {
                    events.push(CaseEvent::SlaBreached(CaseSlaBreached { clock, due, breached_at: now }));
                }
                None if now >= warn && !self.sla_warned.contains(&clock) => {
                    events.push(CaseEvent::SlaWarned(CaseSlaWarned { clock, due, warned_at: now }));
                }
                None => {}
            }
        }
        events
    }
}

/// Applies one recorded fact. Holds no rules: anything refused was refused by `decide`.
/// A case is about its customer, if it names one.
pub fn data_subject(_: Uuid, state: Option<&Case>, events: &[CaseEvent]) -> Option<Uuid> {
    let opened = events.iter().find_map(|e| match e {
        CaseEvent::Opened(e) => Some(e.customer_id),
        _ => None,
    });
    opened.unwrap_or_else(|| state.and_then(|c| c.customer_id))
}

pub fn evolve(state: Option<Case>, event: &CaseEvent) -> Option<Case> {
    match (state, event) {
        (None, CaseEvent::Opened(e)) => Some(Case {
            case_number: e.case_number.clone(),
            title: e.title.clone(),
            description: e.description.clone(),
            status: e.status,
            priority: e.priority,
            case_type_id: e.case_type_id,
            created_by: e.created_by,
            assigned_to: e.assigned_to,
            due_date: e.due_date,
            tags: e.tags.clone(),
            custom_fields: e.custom_fields.clone(),
            customer_id: e.customer_id,
            created_at: e.opened_at,
            updated_at: e.opened_at,
            workflow_id: None,
            stage_id: None,
            sla: None,
            team_id: None,
            responded_at: None,
            finished_at: None,
            sla_warned: BTreeSet::new(),
            sla_breached: BTreeSet::new(),
        }),
        (Some(mut case), CaseEvent::Updated(e)) => {
            e.apply(&mut case);
            case.updated_at = e.updated_at;
            Some(case)
        }
        (Some(mut case), CaseEvent::Assigned(e)) => {
            case.assigned_to = e.assigned_to.new;
            case.updated_at = e.assigned_at;
            Some(case)
        }
        (Some(mut case), CaseEvent::StatusChanged(e)) => {
            if e.status.old == Status::Open && case.responded_at.is_none() {
                case.responded_at = Some(e.changed_at);
            }
            case.finished_at = match (e.status.new.is_active(), case.finished_at) {
                (true, _) => None,
                (false, Some(since)) => Some(since),
                (false, None) => Some(e.changed_at),
            };
            case.status = e.status.new;
            case.updated_at = e.changed_at;
            Some(case)
        }
        (Some(mut case), CaseEvent::WorkflowStarted(e)) => {
            case.workflow_id = Some(e.workflow_id);
            case.stage_id = Some(e.stage_id);
            Some(case)
        }
        (Some(mut case), CaseEvent::StageMoved(e)) => {
            case.stage_id = Some(e.stage_id.new);
            case.updated_at = e.moved_at;
            Some(case)
        }
        (Some(mut case), CaseEvent::SlaSet(e)) => {
            // A clock with a new due time is a new clock, warned and breached afresh; one
            // whose due time stays (a priority with the same target) keeps what it had.
            let old = case.sla.replace(e.clone());
            let moved = |clock: &SlaClock| {
                let due = |s: &CaseSlaSet| match clock {
                    SlaClock::FirstResponse => s.first_response_due,
                    SlaClock::Resolution => s.resolution_due,
                };
                old.as_ref().is_none_or(|o| due(o) != due(e))
            };
            case.sla_warned.retain(|c| !moved(c));
            case.sla_breached.retain(|c| !moved(c));
            Some(case)
        }
        (Some(mut case), CaseEvent::SlaWarned(e)) => {
            case.sla_warned.insert(e.clock);
            Some(case)
        }
        (Some(mut case), CaseEvent::SlaBreached(e)) => {
            case.sla_breached.insert(e.clock);
            Some(case)
        }
        (Some(mut case), CaseEvent::SlaStopped(_)) => {
            case.sla = None;
            case.sla_warned.clear();
            case.sla_breached.clear();
            Some(case)
        }
        (state @ Some(_), CaseEvent::Notified(_) | CaseEvent::TaskRequested(_)) => state,
        (Some(mut case), CaseEvent::TeamAssigned(e)) => {
            case.team_id = e.team_id.new;
            case.updated_at = e.assigned_at;
            Some(case)
        }
        // Never in a well-formed stream: the state is kept, never invented. Every
        // (state, event) pair is named, so a new event fails to compile here until folded.
        (state @ Some(_), CaseEvent::Opened(_)) => state,
        (
            None,
            CaseEvent::Updated(_)
            | CaseEvent::Assigned(_)
            | CaseEvent::StatusChanged(_)
            | CaseEvent::WorkflowStarted(_)
            | CaseEvent::StageMoved(_)
            | CaseEvent::SlaSet(_)
            | CaseEvent::TeamAssigned(_)
            | CaseEvent::SlaWarned(_)
            | CaseEvent::SlaBreached(_)
            | CaseEvent::SlaStopped(_)
            | CaseEvent::Notified(_)
            | CaseEvent::TaskRequested(_),
        ) => None,
    }
}

/// Decides what a command means for the case in `state` (None: not opened yet).
/// An empty result means the command changes nothing and nothing is recorded.
pub fn decide(state: Option<&Case>, command: CaseCommand, ctx: &Context) -> Result<Vec<CaseEvent>, DomainError> {
    let ctx = *ctx;
    match (state, command) {
        (None, CaseCommand::Open(cmd)) => open(cmd, ctx),
        (Some(_), CaseCommand::Open(_)) => Err(DomainError::Conflict("the case is already open".into())),
        (None, _) => Err(DomainError::NotFound("case")),
        (Some(case), CaseCommand::Update(cmd)) => update(case, cmd, ctx),
        (Some(case), CaseCommand::CheckSla) => Ok(case.sla_events(ctx.now)),
        (Some(case), CaseCommand::MoveStage(cmd)) => move_stage(case, cmd, ctx),
        (Some(case), CaseCommand::AssignTeam { team_id, team }) => {
            refuse_if_closed(case)?;
            if team_id.is_some() && team != Reference::Usable {
                return Err(DomainError::Invalid(vec![FieldError::new(
                    "team_id",
                    "no team with this id exists in the tenant",
                )]));
            }
            Ok(Change::between(&case.team_id, Some(team_id))
                .map(|team_id| CaseEvent::TeamAssigned(CaseTeamAssigned { team_id, assigned_at: ctx.now }))
                .into_iter()
                .collect())
        }
        (Some(case), CaseCommand::ChangeTags { add, remove }) => {
            let mut v = Validator::default();
            check_tags(&mut v, &add);
            v.finish()?;
            let remove: BTreeSet<String> = remove.iter().map(|t| t.trim().to_lowercase()).collect();
            let mut tags: Vec<String> = case.tags.iter().filter(|t| !remove.contains(*t)).cloned().collect();
            tags.extend(add);
            update(case, UpdateCase { tags: Some(tags), ..Default::default() }, ctx)
        }
        (Some(case), CaseCommand::Assign(cmd)) => {
            refuse_if_closed(case)?;
            let mut v = Validator::default();
            check_assignee(&mut v, cmd.assigned_to, cmd.assignee);
            v.finish()?;
            if case.assigned_to == cmd.assigned_to {
                return Ok(vec![]);
            }
            Ok(vec![CaseEvent::Assigned(CaseAssigned {
                assigned_to: Change { old: case.assigned_to, new: cmd.assigned_to },
                assigned_at: ctx.now,
            })])
        }
        (Some(case), CaseCommand::ChangeStatus(cmd)) => {
            if case.status == cmd.status {
                return Ok(vec![]);
            }
            if !case.status.may_become(cmd.status) {
                return Err(DomainError::Conflict(format!(
                    "a {} case cannot become {}",
                    case.status.as_str(),
                    cmd.status.as_str()
                )));
            }
            Ok(vec![CaseEvent::StatusChanged(CaseStatusChanged {
                status: Change { old: case.status, new: cmd.status },
                changed_at: ctx.now,
            })])
        }
    }
}

fn refuse_if_closed(case: &Case) -> Result<(), DomainError> {
    if case.status == Status::Closed {
        return Err(DomainError::Conflict("the case is closed; reopen it (status open) before changing it".into()));
    }
    Ok(())
}

/// A field the actor's role may not see is not theirs to set (403 naming it).
fn refuse_hidden(fields: &CustomFields, hidden: &BTreeSet<String>) -> Result<(), DomainError> {
    match fields.keys().find(|k| hidden.contains(*k)) {
        Some(k) => Err(DomainError::Forbidden(format!(
            "custom_fields.{k} is not visible to your role, so you cannot set it; leave it out"
        ))),
        None => Ok(()),
    }
}

fn open(cmd: OpenCase, ctx: Context) -> Result<Vec<CaseEvent>, DomainError> {
    if let Some(t) = &cmd.case_type {
        refuse_hidden(&cmd.custom_fields, &t.hidden)?;
    }
    let mut v = Validator::default();
    v.text("title", &cmd.title, contract::TITLE);
    if let Some(d) = &cmd.description {
        v.optional_text("description", d, contract::DESCRIPTION);
    }
    check_due_date(&mut v, cmd.due_date, ctx.now);
    check_tags(&mut v, &cmd.tags);
    check_custom_fields(&mut v, &cmd.custom_fields);
    check_assignee(&mut v, cmd.assigned_to, cmd.assignee);
    let mut custom_fields = cmd.custom_fields;
    match &cmd.case_type {
        None => v.check(false, "case_type_id", "no case type with this id exists in the tenant"),
        Some(t) if !t.active => v.check(false, "case_type_id", "the case type is deactivated; it takes no new cases"),
        Some(t) => {
            match t.form.apply(&custom_fields) {
                Ok(applied) => custom_fields = applied,
                Err(errors) => v.extend(errors),
            }
            if t.workflow.as_ref().is_some_and(|w| !w.active) {
                v.check(false, "case_type_id", "the case type's workflow is deactivated; it takes no new cases");
            }
        }
    }
    v.finish()?;
    let workflow = cmd.case_type.and_then(|t| t.workflow);
    let mut events = vec![CaseEvent::Opened(CaseOpened {
        case_number: cmd.case_number,
        title: cmd.title.trim().to_owned(),
        description: cmd.description,
        status: Status::Open,
        priority: cmd.priority,
        case_type_id: cmd.case_type_id,
        created_by: ctx.actor,
        assigned_to: cmd.assigned_to,
        due_date: cmd.due_date,
        tags: normalise_tags(cmd.tags),
        custom_fields,
        opened_at: ctx.now,
        customer_id: cmd.customer_id,
    })];
    if let Some(w) = workflow {
        events.push(CaseEvent::WorkflowStarted(CaseWorkflowStarted {
            workflow_id: w.id,
            stage_id: w.definition.initial_stage,
            started_at: ctx.now,
        }));
        events.extend(sla_set(&w.definition, cmd.priority, ctx.now, ctx.now).map(CaseEvent::SlaSet));
    }
    Ok(events)
}

/// SLA due times counted from when the case was opened.
fn sla_set(
    definition: &WorkflowDefinition,
    priority: Priority,
    opened: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<CaseSlaSet> {
    // Targets are at most `contract::MAX_SLA_MINUTES`, so the sums are dates; a target
    // that were not would leave the case without SLA due times rather than overflow.
    let after = |minutes: u32| opened.checked_add_signed(chrono::Duration::minutes(i64::from(minutes)));
    let target = definition.sla_for(priority)?;
    Some(CaseSlaSet {
        priority,
        first_response_due: after(target.first_response_minutes)?,
        resolution_due: after(target.resolution_minutes)?,
        set_at: now,
    })
}

fn move_stage(case: &Case, cmd: MoveStage, ctx: Context) -> Result<Vec<CaseEvent>, DomainError> {
    refuse_if_closed(case)?;
    let (Some(workflow_id), Some(current)) = (case.workflow_id, case.stage_id) else {
        return Err(DomainError::Conflict("the case follows no workflow".into()));
    };
    let Some(workflow) = cmd.workflow.filter(|w| w.id == workflow_id) else {
        return Err(DomainError::Conflict("the case's workflow no longer exists".into()));
    };
    if current == cmd.to {
        return Ok(vec![]);
    }
    let Some(transition) = workflow.definition.transition(current, cmd.to) else {
        let allowed: Vec<String> =
            workflow.definition.transitions.iter().filter(|t| t.from == current).map(|t| t.to.to_string()).collect();
        return Err(DomainError::Conflict(format!(
            "the workflow has no transition from the case's stage to {}; allowed next stages: {allowed:?}",
            cmd.to
        )));
    };
    if !transition.allowed_roles.is_empty() && !transition.allowed_roles.contains(&cmd.role) {
        return Err(DomainError::Forbidden(format!(
            "the role {} may not take this transition; roles allowed: {:?}",
            cmd.role, transition.allowed_roles
        )));
    }
    let missing: Vec<FieldError> = transition
        .required_fields
        .iter()
        .filter(|f| case.custom_fields.get(*f).is_none_or(serde_json::Value::is_null))
        .map(|f| FieldError::new(format!("custom_fields.{f}"), "must be filled before this transition"))
        .collect();
    if !missing.is_empty() && !cmd.customer_erased {
        return Err(DomainError::Invalid(missing));
    }
    let moved =
        CaseEvent::StageMoved(CaseStageMoved { stage_id: Change { old: current, new: cmd.to }, moved_at: ctx.now });
    let mut after = evolve(Some(case.clone()), &moved).unwrap_or_else(|| case.clone());
    let mut events = vec![moved];
    for effect in workflow.definition.effects_of(current, cmd.to) {
        for event in effect_events(&after, effect, &workflow.definition, &cmd.targets, ctx)? {
            after = evolve(Some(after.clone()), &event).unwrap_or(after);
            events.push(event);
        }
    }
    Ok(events)
}

/// What one workflow action does to the case as it stands after the move and the actions
/// before it (nothing, when the case already is that way).
fn effect_events(
    case: &Case,
    effect: Effect,
    definition: &WorkflowDefinition,
    targets: &ActionTargets,
    ctx: Context,
) -> Result<Vec<CaseEvent>, DomainError> {
    if let Some((kind, id)) = effect.names().filter(|(_, id)| targets.get(id) != Some(&Reference::Usable)) {
        return Err(DomainError::Conflict(format!(
            "the workflow's action {} names the {kind} {id}, which is not an active {kind} of the tenant; \
             an administrator must change the workflow before cases can take this move",
            effect.kind()
        )));
    }
    let updated = |event: CaseUpdated| CaseEvent::Updated(event);
    Ok(match effect {
        Effect::AssignUser { user_id } => Change::between(&case.assigned_to, Some(Some(user_id)))
            .map(|assigned_to| CaseEvent::Assigned(CaseAssigned { assigned_to, assigned_at: ctx.now }))
            .into_iter()
            .collect(),
        Effect::AssignTeam { team_id } => Change::between(&case.team_id, Some(Some(team_id)))
            .map(|team_id| CaseEvent::TeamAssigned(CaseTeamAssigned { team_id, assigned_at: ctx.now }))
            .into_iter()
            .collect(),
        Effect::SetPriority { priority } => match Change::between(&case.priority, Some(priority)) {
            None => vec![],
            Some(change) => std::iter::once(updated(CaseUpdated {
                priority: Some(change),
                updated_at: ctx.now,
                ..CaseUpdated::default()
            }))
            .chain(sla_set(definition, priority, case.created_at, ctx.now).map(CaseEvent::SlaSet))
            .collect(),
        },
        Effect::AddTags { tags } => {
            let mut all = case.tags.clone();
            all.extend(tags);
            let all = normalise_tags(all);
            if all.len() > contract::MAX_TAGS {
                return Err(DomainError::Conflict(format!(
                    "the workflow's action add_tags would give the case more than {} tags",
                    contract::MAX_TAGS
                )));
            }
            Change::between(&case.tags, Some(all))
                .map(|tags| updated(CaseUpdated { tags: Some(tags), updated_at: ctx.now, ..CaseUpdated::default() }))
                .into_iter()
                .collect()
        }
        Effect::StartSla => {
            sla_set(definition, case.priority, ctx.now, ctx.now).map(CaseEvent::SlaSet).into_iter().collect()
        }
        Effect::StopSla => match case.sla {
            Some(_) => vec![CaseEvent::SlaStopped(CaseSlaStopped { stopped_at: ctx.now })],
            None => vec![],
        },
        Effect::Notify { user_id, message } => {
            vec![CaseEvent::Notified(CaseNotified { user_id, message, notified_at: ctx.now })]
        }
        Effect::CreateTask { title, description, priority, user_id, due_in_minutes } => {
            let due_date = match due_in_minutes {
                None => None,
                // Checked when the workflow was saved (at most a year): a date every store takes.
                Some(m) => {
                    Some(ctx.now.checked_add_signed(chrono::Duration::minutes(i64::from(m))).ok_or_else(|| {
                        DomainError::Conflict("the workflow's action create_task has a due time out of range".into())
                    })?)
                }
            };
            vec![CaseEvent::TaskRequested(CaseTaskRequested {
                task_id: Uuid::now_v7(),
                title: title.trim().to_owned(),
                description,
                priority: priority.unwrap_or(case.priority),
                assigned_to: user_id.or(case.assigned_to),
                due_date,
                requested_at: ctx.now,
            })]
        }
    })
}

fn update(case: &Case, cmd: UpdateCase, ctx: Context) -> Result<Vec<CaseEvent>, DomainError> {
    refuse_if_closed(case)?;
    let mut v = Validator::default();
    if let Some(t) = &cmd.title {
        v.text("title", t, contract::TITLE);
    }
    if let Some(Some(d)) = &cmd.description {
        v.optional_text("description", d, contract::DESCRIPTION);
    }
    if let Some(due) = cmd.due_date {
        // The seed's check constraint: a due date lies after the case was created.
        v.check(due.is_none_or(|d| d > case.created_at), "due_date", "must be after the case was created");
    }
    if let Some(tags) = &cmd.tags {
        check_tags(&mut v, tags);
    }
    let mut custom_fields = cmd.custom_fields;
    if let Some(fields) = custom_fields.as_mut() {
        refuse_hidden(fields, &cmd.hidden)?;
        // What the actor cannot see stays as it is: their copy never had it.
        for name in &cmd.hidden {
            if let Some(value) = case.custom_fields.get(name) {
                fields.insert(name.clone(), value.clone());
            }
        }
    }
    if let Some(fields) = &custom_fields {
        check_custom_fields(&mut v, fields);
        if let Some(form) = &cmd.form {
            match form.apply(fields) {
                Ok(applied) => custom_fields = Some(applied),
                Err(errors) => v.extend(errors),
            }
        }
    }
    v.finish()?;

    let event = CaseUpdated {
        title: Change::between(&case.title, cmd.title.map(|t| t.trim().to_owned())),
        description: Change::between(&case.description, cmd.description),
        priority: Change::between(&case.priority, cmd.priority),
        due_date: Change::between(&case.due_date, cmd.due_date),
        tags: Change::between(&case.tags, cmd.tags.map(normalise_tags)),
        custom_fields: Change::between(&case.custom_fields, custom_fields),
        updated_at: ctx.now,
    };
    // A new priority means new SLA targets when the case follows a workflow with them.
    let sla = match (&event.priority, &cmd.workflow) {
        (Some(p), Some(w)) if case.workflow_id == Some(w.id) => sla_set(&w.definition, p.new, case.created_at, ctx.now),
        _ => None,
    };
    let nothing_changed = event.is_empty();
    if nothing_changed {
        return Ok(vec![]);
    }
    Ok(std::iter::once(CaseEvent::Updated(event)).chain(sla.map(CaseEvent::SlaSet)).collect())
}

/// An assignee must be an active user of the tenant.
fn check_assignee(v: &mut Validator, assigned_to: Option<Uuid>, assignee: Reference) {
    if assigned_to.is_some() {
        match assignee {
            Reference::Missing => v.check(false, "assigned_to", "no user with this id exists in the tenant"),
            Reference::Inactive => v.check(false, "assigned_to", "the user is not active"),
            Reference::Usable => {}
        }
    }
}

fn check_due_date(v: &mut Validator, due: Option<DateTime<Utc>>, now: DateTime<Utc>) {
    v.check(due.is_none_or(|d| d > now), "due_date", "must be in the future");
}

fn check_tags(v: &mut Validator, tags: &[String]) {
    v.check(tags.len() <= contract::MAX_TAGS, "tags", format!("at most {} tags", contract::MAX_TAGS));
    for (i, tag) in tags.iter().enumerate() {
        v.text(&format!("tags[{i}]"), tag, contract::TAG);
    }
}

fn check_custom_fields(v: &mut Validator, fields: &CustomFields) {
    v.check(
        fields.len() <= contract::MAX_CUSTOM_FIELDS,
        "custom_fields",
        format!("at most {} fields", contract::MAX_CUSTOM_FIELDS),
    );
    for key in fields.keys() {
        let ok = !key.is_empty() && key.len() <= 64 && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        v.check(ok, &format!("custom_fields.{key}"), "field names are 1-64 characters of a-z, A-Z, 0-9 and _");
    }
}

/// Tags are compared case-insensitively and kept once each, in first-seen order.
fn normalise_tags(tags: Vec<String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    tags.into_iter().map(|t| t.trim().to_lowercase()).filter(|t| seen.insert(t.clone())).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::error::DecodeError;
    use crate::testing::given;
    use chrono::TimeZone;

    fn ctx() -> Context {
        Context { actor: Uuid::from_u128(7), now: Utc.with_ymd_and_hms(2026, 11, 1, 9, 0, 0).unwrap() }
    }

    fn open_cmd() -> OpenCase {
        OpenCase {
            case_number: "CASE-000001".into(),
            case_type: Some(CaseTypeFacts {
                active: true,
                form: FormDefinition::default(),
                workflow: None,
                hidden: BTreeSet::new(),
            }),
            assignee: Reference::Usable,
            title: "  Printer on fire ".into(),
            description: Some("third floor".into()),
            priority: Priority::High,
            case_type_id: Uuid::from_u128(1),
            assigned_to: None,
            due_date: None,
            tags: vec!["Hardware".into(), "hardware".into(), "urgent".into()],
            custom_fields: CustomFields::new(),
            customer_id: None,
        }
    }

    fn opened() -> CaseEvent {
        decide(None, CaseCommand::Open(open_cmd()), &ctx()).unwrap().remove(0)
    }

    /// An SLA set at `ctx().now`: first response in 60 minutes, resolution in 8 hours.
    fn sla_set_now() -> CaseEvent {
        CaseEvent::SlaSet(CaseSlaSet {
            priority: Priority::High,
            first_response_due: ctx().now + chrono::Duration::minutes(60),
            resolution_due: ctx().now + chrono::Duration::hours(8),
            set_at: ctx().now,
        })
    }

    fn at(minutes: i64) -> Context {
        Context { now: ctx().now + chrono::Duration::minutes(minutes), ..ctx() }
    }

    fn check(events: &[CaseEvent], minutes: i64) -> Vec<CaseEvent> {
        given(events).when_in(CaseCommand::CheckSla, &at(minutes)).result().unwrap()
    }

    #[test]
    fn a_clock_warns_at_four_fifths_of_its_time_then_breaches_once() {
        let mut history = vec![opened(), sla_set_now()];
        assert_eq!(
            given(&history).state().unwrap().next_sla_check(),
            Some(at(48).now),
            "first response warns at 48 min"
        );
        assert!(check(&history, 47).is_empty(), "nothing is due before the warning");
        let warned = check(&history, 48);
        assert!(matches!(warned.as_slice(), [CaseEvent::SlaWarned(w)] if w.clock == SlaClock::FirstResponse));
        history.extend(warned);
        assert!(check(&history, 50).is_empty(), "a warning is recorded once");
        assert_eq!(given(&history).state().unwrap().next_sla_check(), Some(at(60).now));
        let breached = check(&history, 61);
        let [CaseEvent::SlaBreached(b)] = breached.as_slice() else { panic!("expected one breach: {breached:?}") };
        assert_eq!((b.clock, b.due, b.breached_at), (SlaClock::FirstResponse, at(60).now, at(61).now));
        history.extend(breached);
        assert!(check(&history, 62).is_empty(), "a breach is recorded once");
        assert_eq!(given(&history).state().unwrap().next_sla_check(), Some(at(384).now), "resolution warns at 6.4 h");
    }

    #[test]
    fn a_late_check_records_the_breach_without_a_warning() {
        let events = check(&[opened(), sla_set_now()], 600);
        let clocks: Vec<_> = events
            .iter()
            .map(|e| match e {
                CaseEvent::SlaBreached(b) => b.clock,
                other => panic!("expected breaches only: {other:?}"),
            })
            .collect();
        assert_eq!(clocks, SlaClock::ALL);
    }

    #[test]
    fn leaving_open_stops_the_first_response_clock_and_resolving_stops_both() {
        let moved = |old, new, minutes| {
            CaseEvent::StatusChanged(CaseStatusChanged { status: Change { old, new }, changed_at: at(minutes).now })
        };
        let mut history = vec![opened(), sla_set_now(), moved(Status::Open, Status::InProgress, 10)];
        assert!(check(&history, 61).is_empty(), "responded in time: no first-response breach");
        assert_eq!(given(&history).state().unwrap().responded_at, Some(at(10).now));
        history.push(moved(Status::InProgress, Status::Resolved, 20));
        assert!(check(&history, 600).is_empty(), "a resolved case breaches nothing");
        assert_eq!(given(&history).state().unwrap().next_sla_check(), None);
        history.push(moved(Status::Resolved, Status::Open, 30));
        let events = check(&history, 600);
        assert!(
            matches!(events.as_slice(), [CaseEvent::SlaBreached(b)] if b.clock == SlaClock::Resolution),
            "reopened past its resolution target: {events:?}"
        );
    }

    #[test]
    fn a_clock_stopped_after_its_due_time_before_anyone_looked_is_breached_as_of_then() {
        let responded = CaseEvent::StatusChanged(CaseStatusChanged {
            status: Change { old: Status::Open, new: Status::InProgress },
            changed_at: at(90).now,
        });
        let events = check(&[opened(), sla_set_now(), responded], 91);
        let [CaseEvent::SlaBreached(b)] = events.as_slice() else { panic!("expected one breach: {events:?}") };
        assert_eq!((b.clock, b.breached_at), (SlaClock::FirstResponse, at(60).now));
    }

    #[test]
    fn the_same_target_again_keeps_its_breach() {
        let mut history = vec![opened(), sla_set_now()];
        history.extend(check(&history, 61));
        let CaseEvent::SlaSet(again) = sla_set_now() else { unreachable!() };
        history.push(CaseEvent::SlaSet(CaseSlaSet { set_at: at(70).now, ..again }));
        assert!(check(&history, 71).is_empty(), "the first response breach is not recorded twice");
    }

    #[test]
    fn new_targets_start_new_clocks() {
        let mut history = vec![opened(), sla_set_now()];
        history.extend(check(&history, 61));
        history.push(CaseEvent::SlaSet(CaseSlaSet {
            priority: Priority::Low,
            first_response_due: at(120).now,
            resolution_due: at(900).now,
            set_at: at(61).now,
        }));
        assert!(check(&history, 62).is_empty());
        assert!(matches!(check(&history, 121).as_slice(), [CaseEvent::SlaBreached(_)]));
    }

    #[test]
    fn a_case_without_an_sla_has_no_clocks() {
        assert!(check(&[opened()], 100_000).is_empty());
        assert_eq!(given(&[opened()]).state().unwrap().next_sla_check(), None);
        assert!(matches!(decide(None, CaseCommand::CheckSla, &ctx()), Err(DomainError::NotFound(_))));
    }

    #[test]
    fn one_list_says_which_statuses_are_finished() {
        let all = [Status::Open, Status::InProgress, Status::Pending, Status::Resolved, Status::Closed];
        for status in all {
            assert_eq!(status.is_active(), Status::is_active_name(status.as_str()), "{status:?}");
        }
        assert_eq!(all.iter().filter(|s| !s.is_active()).count(), Status::FINISHED.len());
        assert_eq!(Status::finished_sql(), "'resolved', 'closed'");
    }

    #[test]
    fn opening_records_a_trimmed_title_and_deduplicated_tags() {
        let CaseEvent::Opened(e) = opened() else { panic!("expected CaseOpened") };
        assert_eq!(e.title, "Printer on fire");
        assert_eq!(e.tags, vec!["hardware", "urgent"]);
        assert_eq!(e.status, Status::Open);
        assert_eq!(e.created_by, Uuid::from_u128(7));
    }

    #[test]
    fn opening_reports_every_invalid_field() {
        let mut cmd = open_cmd();
        cmd.title = " ".into();
        cmd.tags = vec!["".into()];
        cmd.due_date = Some(ctx().now - chrono::Duration::days(1));
        let Err(DomainError::Invalid(errors)) = decide(None, CaseCommand::Open(cmd), &ctx()) else {
            panic!("expected invalid")
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["title", "due_date", "tags[0]"]);
    }

    #[test]
    fn a_case_needs_an_active_case_type_and_fields_of_its_form() {
        let mut cmd = open_cmd();
        cmd.case_type = None;
        let Err(DomainError::Invalid(errors)) = decide(None, CaseCommand::Open(cmd), &ctx()) else {
            panic!("expected invalid")
        };
        assert_eq!(errors[0].field, "case_type_id");

        let mut cmd = open_cmd();
        cmd.case_type = Some(CaseTypeFacts {
            active: false,
            form: FormDefinition::default(),
            workflow: None,
            hidden: BTreeSet::new(),
        });
        assert!(matches!(decide(None, CaseCommand::Open(cmd), &ctx()), Err(DomainError::Invalid(_))));

        let form: FormDefinition = serde_json::from_value(serde_json::json!({ "fields": [
            { "name": "customer_id", "type": "text", "required": true },
            { "name": "channel", "type": "select", "options": ["phone"], "default": "phone" }
        ]}))
        .unwrap();
        let mut cmd = open_cmd();
        cmd.case_type =
            Some(CaseTypeFacts { active: true, form: form.clone(), workflow: None, hidden: BTreeSet::new() });
        let Err(DomainError::Invalid(errors)) = decide(None, CaseCommand::Open(cmd.clone()), &ctx()) else {
            panic!("expected invalid")
        };
        assert_eq!(errors[0].field, "custom_fields.customer_id");
        cmd.custom_fields.insert("customer_id".into(), "C-1".into());
        let events = decide(None, CaseCommand::Open(cmd), &ctx()).unwrap();
        let [CaseEvent::Opened(e)] = events.as_slice() else { panic!("expected CaseOpened") };
        assert_eq!(e.custom_fields["channel"], "phone");
    }

    #[test]
    fn an_open_case_cannot_be_opened_again() {
        let state = given(&[opened()]).state();
        let result = decide(state.as_ref(), CaseCommand::Open(open_cmd()), &ctx());
        assert!(matches!(result, Err(DomainError::Conflict(_))));
    }

    #[test]
    fn commands_on_a_missing_case_are_not_found() {
        let result =
            decide(None, CaseCommand::Assign(AssignCase { assigned_to: None, assignee: Reference::Usable }), &ctx());
        assert_eq!(result, Err(DomainError::NotFound("case")));
    }

    #[test]
    fn update_records_only_what_changed_with_old_values() {
        let state = given(&[opened()]).state();
        let cmd = UpdateCase {
            title: Some("Printer on fire".into()),
            priority: Some(Priority::Urgent),
            ..Default::default()
        };
        let events = decide(state.as_ref(), CaseCommand::Update(cmd), &ctx()).unwrap();
        let [CaseEvent::Updated(e)] = events.as_slice() else { panic!("expected one CaseUpdated") };
        assert_eq!(e.title, None);
        assert_eq!(e.priority, Some(Change { old: Priority::High, new: Priority::Urgent }));
    }

    #[test]
    fn an_update_that_changes_nothing_records_nothing() {
        let state = given(&[opened()]).state();
        let cmd = UpdateCase { priority: Some(Priority::High), ..Default::default() };
        assert_eq!(decide(state.as_ref(), CaseCommand::Update(cmd), &ctx()).unwrap(), vec![]);
    }

    #[test]
    fn assignees_must_be_active_users() {
        let state = given(&[opened()]).state();
        let cmd = AssignCase { assigned_to: Some(Uuid::from_u128(9)), assignee: Reference::Inactive };
        let Err(DomainError::Invalid(errors)) = decide(state.as_ref(), CaseCommand::Assign(cmd), &ctx()) else {
            panic!("expected invalid")
        };
        assert_eq!(errors[0].field, "assigned_to");
    }

    #[test]
    fn cases_are_assigned_to_existing_teams() {
        let state = given(&[opened()]).state();
        let team = Some(Uuid::from_u128(5));
        let missing =
            decide(state.as_ref(), CaseCommand::AssignTeam { team_id: team, team: Reference::Missing }, &ctx());
        assert!(matches!(missing, Err(DomainError::Invalid(_))));
        let events =
            decide(state.as_ref(), CaseCommand::AssignTeam { team_id: team, team: Reference::Usable }, &ctx()).unwrap();
        assert_eq!(events.iter().fold(state, evolve).unwrap().team_id, team);
    }

    #[test]
    fn assigning_records_the_previous_assignee() {
        let state = given(&[opened()]).state();
        let who = Some(Uuid::from_u128(9));
        let events = decide(
            state.as_ref(),
            CaseCommand::Assign(AssignCase { assigned_to: who, assignee: Reference::Usable }),
            &ctx(),
        )
        .unwrap();
        let state = events.iter().fold(state, evolve).unwrap();
        assert_eq!(state.assigned_to, who);
        let [CaseEvent::Assigned(e)] = events.as_slice() else { panic!("expected one CaseAssigned") };
        assert_eq!(e.assigned_to.old, None);
    }

    #[test]
    fn status_follows_the_shared_workflow() {
        let closed = CaseEvent::StatusChanged(CaseStatusChanged {
            status: Change { old: Status::Open, new: Status::Closed },
            changed_at: ctx().now,
        });
        let state = given(&[opened(), closed]).state();
        let to_pending =
            decide(state.as_ref(), CaseCommand::ChangeStatus(ChangeStatus { status: Status::Pending }), &ctx());
        assert!(matches!(to_pending, Err(DomainError::Conflict(m)) if m.contains("closed case cannot become pending")));
        let reopen =
            decide(state.as_ref(), CaseCommand::ChangeStatus(ChangeStatus { status: Status::Open }), &ctx()).unwrap();
        assert_eq!(reopen.len(), 1);
    }

    #[test]
    fn tags_are_added_and_removed_against_the_current_ones() {
        let state = given(&[opened()]).state();
        let cmd = CaseCommand::ChangeTags { add: vec!["VIP".into(), "urgent".into()], remove: vec!["Hardware".into()] };
        let events = decide(state.as_ref(), cmd, &ctx()).unwrap();
        let [CaseEvent::Updated(e)] = events.as_slice() else { panic!("expected CaseUpdated") };
        assert_eq!(e.tags.as_ref().unwrap().new, vec!["urgent", "vip"]);
    }

    fn workflow() -> WorkflowFacts {
        let (new, triage, done) = (Uuid::from_u128(11), Uuid::from_u128(12), Uuid::from_u128(13));
        WorkflowFacts {
            id: Uuid::from_u128(10),
            active: true,
            definition: serde_json::from_value(serde_json::json!({
                "stages": [{ "id": new, "name": "New" }, { "id": triage, "name": "Triage" }, { "id": done, "name": "Done" }],
                "initial_stage": new,
                "transitions": [
                    { "from": new, "to": triage },
                    { "from": triage, "to": done, "allowed_roles": ["supervisor"], "required_fields": ["root_cause"] }
                ],
                "sla": [{ "priority": "high", "first_response_minutes": 60, "resolution_minutes": 480 }]
            }))
            .unwrap(),
        }
    }

    #[test]
    fn a_case_follows_its_workflow_and_gets_sla_due_times() {
        let mut cmd = open_cmd();
        cmd.case_type = Some(CaseTypeFacts {
            active: true,
            form: FormDefinition::default(),
            workflow: Some(workflow()),
            hidden: BTreeSet::new(),
        });
        let events = decide(None, CaseCommand::Open(cmd), &ctx()).unwrap();
        let [CaseEvent::Opened(_), CaseEvent::WorkflowStarted(w), CaseEvent::SlaSet(sla)] = events.as_slice() else {
            panic!("expected opened, workflow started, SLA set: {events:?}")
        };
        assert_eq!(w.stage_id, Uuid::from_u128(11));
        assert_eq!(sla.resolution_due, ctx().now + chrono::Duration::hours(8));

        let state = given(&events).state();
        let move_to = |to: u128, role: &str| {
            CaseCommand::MoveStage(MoveStage {
                to: Uuid::from_u128(to),
                role: role.into(),
                workflow: Some(workflow()),
                targets: Default::default(),
                customer_erased: false,
            })
        };
        // Not along a transition: 409; wrong role: 403; missing required field: 422.
        assert!(matches!(decide(state.as_ref(), move_to(13, "agent"), &ctx()), Err(DomainError::Conflict(_))));
        let moved = decide(state.as_ref(), move_to(12, "agent"), &ctx()).unwrap();
        let state = moved.iter().fold(state, evolve);
        assert_eq!(state.as_ref().unwrap().stage_id, Some(Uuid::from_u128(12)));
        assert!(matches!(decide(state.as_ref(), move_to(13, "agent"), &ctx()), Err(DomainError::Forbidden(_))));
        let Err(DomainError::Invalid(errors)) = decide(state.as_ref(), move_to(13, "supervisor"), &ctx()) else {
            panic!("expected invalid")
        };
        assert_eq!(errors[0].field, "custom_fields.root_cause");
        // An erased customer's case: the fields went with their data.
        let CaseCommand::MoveStage(mut erased) = move_to(13, "supervisor") else { unreachable!() };
        erased.customer_erased = true;
        assert!(decide(state.as_ref(), CaseCommand::MoveStage(erased), &ctx()).is_ok());
    }

    #[test]
    fn a_move_runs_the_actions_of_its_transition_and_of_the_stage_it_enters() {
        let (kim, tier2) = (Uuid::from_u128(21), Uuid::from_u128(22));
        let mut facts = workflow();
        facts.definition.actions = vec![
            serde_json::json!({ "when": { "from": Uuid::from_u128(11), "to": Uuid::from_u128(12) },
                                "do": { "type": "set_priority", "priority": "urgent" } }),
            serde_json::json!({ "when": { "enters": Uuid::from_u128(12) }, "do": { "type": "assign_user", "user_id": kim } }),
            serde_json::json!({ "when": { "enters": Uuid::from_u128(12) }, "do": { "type": "assign_team", "team_id": tier2 } }),
            serde_json::json!({ "when": { "enters": Uuid::from_u128(12) }, "do": { "type": "add_tags", "tags": ["Triaged", "phone"] } }),
            serde_json::json!({ "when": { "enters": Uuid::from_u128(13) }, "do": { "type": "start_sla" } }),
        ];
        assert_eq!(facts.definition.check(), vec![]);
        let mut cmd = open_cmd();
        cmd.case_type = Some(CaseTypeFacts {
            active: true,
            form: FormDefinition::default(),
            workflow: Some(facts.clone()),
            hidden: BTreeSet::new(),
        });
        let state = given(&decide(None, CaseCommand::Open(cmd), &ctx()).unwrap()).state();
        let mut targets = ActionTargets::from([(kim, Reference::Usable), (tier2, Reference::Usable)]);
        let move_to = |targets: &ActionTargets| {
            CaseCommand::MoveStage(MoveStage {
                to: Uuid::from_u128(12),
                role: "agent".into(),
                workflow: Some(facts.clone()),
                targets: targets.clone(),
                customer_erased: false,
            })
        };
        let events = decide(state.as_ref(), move_to(&targets), &ctx()).unwrap();
        let names: Vec<&str> = events.iter().map(|e| e.event_type()).collect();
        assert_eq!(
            names,
            ["CaseStageMoved", "CaseUpdated", "CaseAssigned", "CaseTeamAssigned", "CaseUpdated"],
            "urgent has no SLA target here, so no SLA event"
        );
        let moved = events.iter().fold(state.clone(), evolve).unwrap();
        assert_eq!((moved.priority, moved.assigned_to, moved.team_id), (Priority::Urgent, Some(kim), Some(tier2)));
        assert_eq!(moved.tags, vec!["hardware", "urgent", "triaged", "phone"], "added after the case's own");

        // An action naming a user who is no longer active stops the move, saying why.
        targets.insert(kim, Reference::Inactive);
        let Err(DomainError::Conflict(why)) = decide(state.as_ref(), move_to(&targets), &ctx()) else {
            panic!("conflict")
        };
        assert!(why.contains("assign_user") && why.contains(&kim.to_string()), "{why}");
    }

    #[test]
    fn a_workflow_refuses_actions_it_cannot_run_naming_them() {
        let mut definition = workflow().definition;
        definition.actions = vec![
            serde_json::json!({ "when": { "enters": Uuid::from_u128(12) }, "do": { "type": "explode" } }),
            serde_json::json!({ "when": { "enters": Uuid::from_u128(99) }, "do": { "type": "start_sla" } }),
            serde_json::json!({ "when": { "from": Uuid::from_u128(11), "to": Uuid::from_u128(13) }, "do": { "type": "start_sla" } }),
            serde_json::json!({ "when": {}, "do": { "type": "add_tags", "tags": [] } }),
            serde_json::json!({ "when": { "enters": Uuid::from_u128(12) }, "do": { "type": "assign_user" } }),
        ];
        let fields: Vec<String> = definition.check().into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "definition.actions[0].do.type",
                "definition.actions[1].when.enters",
                "definition.actions[2].when",
                "definition.actions[3].when",
                "definition.actions[3].do.tags",
                "definition.actions[4]",
            ]
        );
    }

    #[test]
    fn a_new_priority_recomputes_the_sla() {
        let mut cmd = open_cmd();
        cmd.case_type = Some(CaseTypeFacts {
            active: true,
            form: FormDefinition::default(),
            workflow: Some(workflow()),
            hidden: BTreeSet::new(),
        });
        cmd.priority = Priority::Low;
        let events = decide(None, CaseCommand::Open(cmd), &ctx()).unwrap();
        assert_eq!(events.len(), 2, "no SLA target for low priority");
        let state = given(&events).state();
        let update = UpdateCase { priority: Some(Priority::High), workflow: Some(workflow()), ..Default::default() };
        let events = decide(state.as_ref(), CaseCommand::Update(update), &ctx()).unwrap();
        assert!(matches!(events.as_slice(), [CaseEvent::Updated(_), CaseEvent::SlaSet(_)]));
    }

    #[test]
    fn a_closed_case_cannot_be_edited() {
        let closed = CaseEvent::StatusChanged(CaseStatusChanged {
            status: Change { old: Status::Open, new: Status::Closed },
            changed_at: ctx().now,
        });
        let state = given(&[opened(), closed]).state();
        let cmd = UpdateCase { title: Some("new".into()), ..Default::default() };
        assert!(matches!(decide(state.as_ref(), CaseCommand::Update(cmd), &ctx()), Err(DomainError::Conflict(_))));
    }

    #[test]
    fn events_round_trip_through_their_stored_form() {
        let event = opened();
        let decoded = CaseEvent::decode(event.event_type(), event.schema_version(), event.payload()).unwrap();
        assert_eq!(decoded, event);
    }

    #[test]
    fn every_case_event_round_trips() {
        let mut cmd = open_cmd();
        cmd.case_type = Some(CaseTypeFacts {
            active: true,
            form: FormDefinition::default(),
            workflow: Some(workflow()),
            hidden: BTreeSet::new(),
        });
        for event in decide(None, CaseCommand::Open(cmd), &ctx()).unwrap() {
            let decoded = CaseEvent::decode(event.event_type(), event.schema_version(), event.payload()).unwrap();
            assert_eq!(decoded, event);
        }
    }

    #[test]
    fn unknown_versions_are_refused_not_guessed() {
        let event = opened();
        let err = CaseEvent::decode("CaseOpened", 99, event.payload()).unwrap_err();
        assert!(matches!(err, DecodeError::Unknown { schema_version: 99, .. }));
    }
}
