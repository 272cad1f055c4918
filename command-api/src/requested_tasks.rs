//! The task scheduler: creates the tasks that workflow actions asked for.
//!
//! A `create_task` action records `CaseTaskRequested` on the case, naming the new task's
//! id, in the command that moved the case (so the request is replayed and audited with
//! the move). The journal queues each request in `eventstore.task_requests` in the same
//! transaction (migration 20261206190000), whichever writer appended it. One command API
//! at a time (`leader`) creates the task stream from it, as the system on behalf of the
//! mover, and deletes the request. Creating is idempotent: a task stream that exists
//! already (a scheduler that died before deleting, or two that raced) gets nothing more,
//! so each request makes exactly one task.

use std::time::Duration;

use chrono::Utc;
use events::case::{Case, CaseTaskRequested, Status};
use events::reference::Reference;
use events::task::{self, Task, TaskCommand};
use events::user::{User, UserStatus};
use sqlx::types::Json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::journal::{Command, Journal, JournalError, Lookup, Metadata};
use crate::leader;

/// Only one task scheduler runs at a time; others wait on this advisory lock as standbys.
const TASKS_LOCK: i64 = 0x6d75_7269_6d61_0003;
/// Requests handled per round.
const BATCH: i64 = 100;
/// A requested task whose due time passed before it was created is due this soon after.
const DUE_AT_ONCE: chrono::Duration = chrono::Duration::minutes(1);
/// How long a request whose task could not be written waits before it is tried again.
const RETRY_FAILED: chrono::Duration = chrono::Duration::seconds(30);

pub struct RequestedTasks {
    journal: Journal,
    pool: PgPool,
    /// How long an idle leader waits between rounds: how late a task may appear.
    tick: Duration,
}

/// One queued request.
struct Request {
    tenant_id: Uuid,
    task_id: Uuid,
    case_id: Uuid,
    requested_by: Uuid,
    /// The event's payload (a `CaseTaskRequested`).
    request: Json<serde_json::Value>,
}

/// What became of a request.
enum Outcome {
    /// The task exists (made now or before): the request is done.
    Created,
    /// The write side refused the task for good (it is logged and counted): done too.
    Refused,
}

impl RequestedTasks {
    pub fn new(journal: Journal, tick: Duration) -> Self {
        let pool = journal.pool().clone();
        Self { journal, pool, tick }
    }

    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        leader::schedule(&self.pool, TASKS_LOCK, "task scheduler", "task_scheduler_leading", self.tick, || {
            self.round()
        })
        .await;
        Ok(())
    }

    /// One round: what is due, handled; true when the batch was full (more may be due).
    async fn round(&self) -> anyhow::Result<bool> {
        let due: Vec<Request> = sqlx::query_as::<_, (Uuid, Uuid, Uuid, Uuid, Json<serde_json::Value>)>(
            "SELECT tenant_id, task_id, case_id, requested_by, request FROM eventstore.task_requests
             WHERE due_at <= now() ORDER BY due_at LIMIT $1",
        )
        .bind(BATCH)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|(tenant_id, task_id, case_id, requested_by, request)| Request {
            tenant_id,
            task_id,
            case_id,
            requested_by,
            request,
        })
        .collect();
        for request in &due {
            let done = match self.create(request).await {
                Ok(outcome) => Some(outcome),
                Err(e) => {
                    tracing::warn!(tenant_id = %request.tenant_id, task_id = %request.task_id,
                        error = %format!("{e:#}"), "creating a requested task failed; will retry");
                    None
                }
            };
            if let Err(e) = self.finish(request, done).await {
                tracing::warn!(error = %e, "recording a task request's outcome failed");
            }
        }
        Ok(due.len() >= BATCH as usize)
    }

    /// Creates the requested task unless its stream exists already.
    async fn create(&self, request: &Request) -> anyhow::Result<Outcome> {
        let wanted: CaseTaskRequested = match serde_json::from_value(request.request.0.clone()) {
            Ok(wanted) => wanted,
            // Only a request written by hand can be malformed; it must not stop the others.
            Err(e) => return Ok(refused(request, &format!("the request is malformed: {e}"))),
        };
        // The assignee was an active user when the case moved; one deactivated since
        // leaves the task unassigned rather than undone.
        let assigned_to = match wanted.assigned_to {
            Some(user) => match self.journal.state::<User>(request.tenant_id, user).await? {
                Some(u) if u.status == UserStatus::Active => Some(user),
                _ => None,
            },
            None => None,
        };
        // The case was open when it moved; one closed since gets no task (as a task added
        // by hand would not), which is logged and counted.
        let case = match self.journal.state::<Case>(request.tenant_id, request.case_id).await? {
            None => Reference::Missing,
            Some(c) if c.status == Status::Closed => Reference::Inactive,
            Some(_) => Reference::Usable,
        };
        let now = Utc::now();
        let command = TaskCommand::Create {
            case_id: request.case_id,
            case,
            title: wanted.title.clone(),
            description: wanted.description.clone(),
            priority: wanted.priority,
            assigned_to,
            assignee: Reference::Usable,
            // Due a while after the move: a request handled after that is due at once.
            due_date: wanted.due_date.map(|due| due.max(now.checked_add_signed(DUE_AT_ONCE).unwrap_or(now))),
        };
        let meta = Metadata::system(request.tenant_id);
        let journal_command = Command {
            meta: &meta,
            tenant_id: request.tenant_id,
            stream_id: request.task_id,
            request_hash: String::new(),
            lookup: Lookup::Nothing,
        };
        let recorded = self
            .journal
            .execute::<Task>(journal_command, |state, _| match state {
                Some(_) => Ok(vec![]),
                None => task::decide(None, command.clone(), &events::Context { actor: request.requested_by, now }),
            })
            .await;
        match recorded {
            Ok(_) => {
                metrics::counter!("workflow_tasks_created_total").increment(1);
                Ok(Outcome::Created)
            }
            Err(JournalError::Rejected { error, .. }) => Ok(refused(request, &error.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a finished request, or defers one that failed (later, so that requests that
    /// keep failing cannot fill every round).
    async fn finish(&self, request: &Request, done: Option<Outcome>) -> anyhow::Result<()> {
        let sql = match done {
            Some(Outcome::Created | Outcome::Refused) => {
                "DELETE FROM eventstore.task_requests WHERE tenant_id = $1 AND task_id = $2"
            }
            None => "UPDATE eventstore.task_requests SET due_at = $3 WHERE tenant_id = $1 AND task_id = $2",
        };
        let now = Utc::now();
        let query = sqlx::query(sql).bind(request.tenant_id).bind(request.task_id);
        let query =
            if done.is_none() { query.bind(now.checked_add_signed(RETRY_FAILED).unwrap_or(now)) } else { query };
        query.execute(&self.pool).await?;
        Ok(())
    }
}

/// A request the write side will never take: logged and counted, and then done with (the
/// case's audit log keeps the request).
fn refused(request: &Request, why: &str) -> Outcome {
    tracing::error!(tenant_id = %request.tenant_id, case_id = %request.case_id, task_id = %request.task_id,
        error = why, "a workflow's requested task was refused; it is not created");
    metrics::counter!("workflow_tasks_refused_total").increment(1);
    Outcome::Refused
}
