//! The task stream: work items on a case, assigned to users, moving through statuses;
//! completing one records when.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::case::Priority;
use crate::change::Change;
use crate::contract;
use crate::error::{DomainError, Validator};
use crate::reference::Reference;
use crate::stream::Context;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum TaskStatus {
    Pending,
    InProgress,
    Done,
    Cancelled,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::InProgress => "in_progress",
            TaskStatus::Done => "done",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    fn is_finished(self) -> bool {
        matches!(self, TaskStatus::Done | TaskStatus::Cancelled)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum TaskCommand {
    Create {
        case_id: Uuid,
        case: Reference,
        title: String,
        description: Option<String>,
        priority: Priority,
        assigned_to: Option<Uuid>,
        assignee: Reference,
        due_date: Option<DateTime<Utc>>,
    },
    Assign {
        assigned_to: Option<Uuid>,
        assignee: Reference,
    },
    ChangeStatus {
        status: TaskStatus,
    },
}

payloads! {
    pub struct TaskCreated {
        pub case_id: Uuid,
        pub title: String,
        pub description: Option<String>,
        pub priority: Priority,
        pub assigned_to: Option<Uuid>,
        pub created_by: Uuid,
        pub due_date: Option<DateTime<Utc>>,
        pub created_at: DateTime<Utc>,
    }

    pub struct TaskAssigned {
        pub assigned_to: Change<Option<Uuid>>,
        pub assigned_at: DateTime<Utc>,
    }

    pub struct TaskStatusChanged {
        pub status: Change<TaskStatus>,
        /// Set when the task becomes done; cleared when it is reopened.
        pub completed_at: Option<DateTime<Utc>>,
        pub changed_at: DateTime<Utc>,
    }
}

event_enum! {
    pub enum TaskEvent {
        Created(TaskCreated) = "TaskCreated" @ 1,
        Assigned(TaskAssigned) = "TaskAssigned" @ 1,
        StatusChanged(TaskStatusChanged) = "TaskStatusChanged" @ 1,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub case_id: Uuid,
    pub title: String,
    pub status: TaskStatus,
    pub assigned_to: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

pub fn evolve(state: Option<Task>, event: &TaskEvent) -> Option<Task> {
    match (state, event) {
        (None, TaskEvent::Created(e)) => Some(Task {
            case_id: e.case_id,
            title: e.title.clone(),
            status: TaskStatus::Pending,
            assigned_to: e.assigned_to,
            created_at: e.created_at,
            completed_at: None,
        }),
        (Some(mut t), TaskEvent::Assigned(e)) => {
            t.assigned_to = e.assigned_to.new;
            Some(t)
        }
        (Some(mut t), TaskEvent::StatusChanged(e)) => {
            t.status = e.status.new;
            t.completed_at = e.completed_at;
            Some(t)
        }
        // Never in a well-formed stream: the state is kept, never invented. Every
        // (state, event) pair is named, so a new event fails to compile here until folded.
        (state @ Some(_), TaskEvent::Created(_)) => state,
        (None, TaskEvent::Assigned(_) | TaskEvent::StatusChanged(_)) => None,
    }
}

fn check_assignee(v: &mut Validator, assigned_to: Option<Uuid>, assignee: Reference) {
    if assigned_to.is_some() {
        match assignee {
            Reference::Missing => v.check(false, "assigned_to", "no user with this id exists in the tenant"),
            Reference::Inactive => v.check(false, "assigned_to", "the user is not active"),
            Reference::Usable => {}
        }
    }
}

pub fn decide(state: Option<&Task>, command: TaskCommand, ctx: &Context) -> Result<Vec<TaskEvent>, DomainError> {
    let (actor, now) = (ctx.actor, ctx.now);
    match (state, command) {
        (Some(_), TaskCommand::Create { .. }) => Err(DomainError::Conflict("the task already exists".into())),
        (
            None,
            TaskCommand::Create { case_id, case, title, description, priority, assigned_to, assignee, due_date },
        ) => {
            let mut v = Validator::default();
            match case {
                Reference::Missing => v.check(false, "case_id", "no case with this id exists in the tenant"),
                Reference::Inactive => v.check(false, "case_id", "the case is closed; reopen it to add tasks"),
                Reference::Usable => {}
            }
            v.text("title", &title, contract::TITLE);
            if let Some(d) = &description {
                v.optional_text("description", d, contract::DESCRIPTION);
            }
            check_assignee(&mut v, assigned_to, assignee);
            v.check(due_date.is_none_or(|d| d > now), "due_date", "must be in the future");
            v.finish()?;
            Ok(vec![TaskEvent::Created(TaskCreated {
                case_id,
                title: title.trim().to_owned(),
                description,
                priority,
                assigned_to,
                created_by: actor,
                due_date,
                created_at: now,
            })])
        }
        (None, _) => Err(DomainError::NotFound("task")),
        (Some(task), TaskCommand::Assign { assigned_to, assignee }) => {
            let mut v = Validator::default();
            check_assignee(&mut v, assigned_to, assignee);
            v.finish()?;
            if task.status.is_finished() {
                return Err(DomainError::Conflict(format!("the task is {}", task.status.as_str())));
            }
            Ok(Change::between(&task.assigned_to, Some(assigned_to))
                .map(|assigned_to| TaskEvent::Assigned(TaskAssigned { assigned_to, assigned_at: now }))
                .into_iter()
                .collect())
        }
        (Some(task), TaskCommand::ChangeStatus { status }) => {
            if task.status == status {
                return Ok(vec![]);
            }
            if task.status == TaskStatus::Cancelled {
                return Err(DomainError::Conflict("a cancelled task cannot change status".into()));
            }
            let completed_at = (status == TaskStatus::Done).then_some(now);
            Ok(vec![TaskEvent::StatusChanged(TaskStatusChanged {
                status: Change { old: task.status, new: status },
                completed_at,
                changed_at: now,
            })])
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::testing::given;

    fn create(case: Reference, assignee: Reference) -> TaskCommand {
        TaskCommand::Create {
            case_id: Uuid::now_v7(),
            case,
            title: "Call the customer back".into(),
            description: None,
            priority: Priority::High,
            assigned_to: Some(Uuid::now_v7()),
            assignee,
            due_date: None,
        }
    }

    #[test]
    fn tasks_need_a_usable_case_and_assignee() {
        let Err(DomainError::Invalid(errors)) =
            decide(None, create(Reference::Inactive, Reference::Missing), &Context::at(Utc::now()))
        else {
            panic!("expected invalid")
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["case_id", "assigned_to"]);
    }

    #[test]
    fn completing_sets_completed_at_and_reopening_clears_it() {
        let events = decide(None, create(Reference::Usable, Reference::Usable), &Context::at(Utc::now())).unwrap();
        let state = given(&events).state();
        let done =
            decide(state.as_ref(), TaskCommand::ChangeStatus { status: TaskStatus::Done }, &Context::at(Utc::now()))
                .unwrap();
        let state = done.iter().fold(state, evolve);
        assert!(state.as_ref().unwrap().completed_at.is_some());
        let reopened = decide(
            state.as_ref(),
            TaskCommand::ChangeStatus { status: TaskStatus::InProgress },
            &Context::at(Utc::now()),
        )
        .unwrap();
        assert_eq!(reopened.iter().fold(state, evolve).unwrap().completed_at, None);
    }

    #[test]
    fn finished_tasks_are_not_reassigned() {
        let mut events = decide(None, create(Reference::Usable, Reference::Usable), &Context::at(Utc::now())).unwrap();
        let state = given(&events).state();
        events.extend(
            decide(
                state.as_ref(),
                TaskCommand::ChangeStatus { status: TaskStatus::Cancelled },
                &Context::at(Utc::now()),
            )
            .unwrap(),
        );
        let state = given(&events).state();
        let assign = TaskCommand::Assign { assigned_to: None, assignee: Reference::Usable };
        assert!(matches!(decide(state.as_ref(), assign, &Context::at(Utc::now())), Err(DomainError::Conflict(_))));
    }

    #[test]
    fn reassigning_records_the_previous_assignee() {
        let events = decide(None, create(Reference::Usable, Reference::Usable), &Context::at(Utc::now())).unwrap();
        let state = given(&events).state();
        let previous = state.as_ref().unwrap().assigned_to;
        let events = decide(
            state.as_ref(),
            TaskCommand::Assign { assigned_to: None, assignee: Reference::Usable },
            &Context::at(Utc::now()),
        )
        .unwrap();
        let [TaskEvent::Assigned(e)] = events.as_slice() else { panic!("expected an assignment") };
        assert_eq!(e.assigned_to.old, previous);
    }
}
