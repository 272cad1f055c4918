//! The SLA scheduler: records a case's SLA warnings and breaches as events when their
//! times come (`CaseCommand::CheckSla`), once each, whichever command API runs it.
//!
//! Which cases to look at, and when, is `eventstore.sla_timers` (migration
//! 20261206160000): the journal marks a case due now whenever an event may start, stop or
//! restart its clocks, and the scheduler moves the mark to the case's next warning or
//! breach (`Case::next_sla_check`), or deletes it when no clock runs. Only one command API
//! schedules at a time (`leader`); the events are decided on the case's journal state and
//! appended at its version like any command, so a breach is recorded once even if two
//! schedulers raced: the second one decides on a case that already has it, and records
//! nothing. A replay or rebuild reads the events, so it raises nothing again.

use std::time::Duration;

use chrono::{DateTime, Utc};
use events::case::{self, Case, CaseCommand, CaseEvent};
use sqlx::PgPool;
use uuid::Uuid;

use crate::journal::{Command, Journal, JournalError, Lookup, Metadata};
use crate::leader;

/// Only one scheduler runs at a time; others wait on this advisory lock as standbys.
const SLA_LOCK: i64 = 0x6d75_7269_6d61_0002;
/// Cases looked at per round.
const BATCH: i64 = 200;
/// How long a case whose check failed waits before it is tried again.
const RETRY_FAILED: chrono::Duration = chrono::Duration::seconds(30);

pub struct SlaScheduler {
    journal: Journal,
    pool: PgPool,
    /// How long an idle leader waits between rounds: the lateness a warning or breach may
    /// have beyond its time.
    tick: Duration,
}

/// A case due for a look, and the mark's revision when read.
struct Timer {
    tenant_id: Uuid,
    stream_id: Uuid,
    revision: i64,
}

impl SlaScheduler {
    pub fn new(journal: Journal, tick: Duration) -> Self {
        let pool = journal.pool().clone();
        Self { journal, pool, tick }
    }

    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        leader::schedule(&self.pool, SLA_LOCK, "SLA scheduler", "sla_scheduler_leading", self.tick, || self.round())
            .await;
        Ok(())
    }

    /// One round: what is due, handled; true when the batch was full (more may be due).
    async fn round(&self) -> anyhow::Result<bool> {
        let due: Vec<Timer> = sqlx::query_as::<_, (Uuid, Uuid, i64)>(
            "SELECT tenant_id, stream_id, revision FROM eventstore.sla_timers
             WHERE due_at <= now() ORDER BY due_at LIMIT $1",
        )
        .bind(BATCH)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|(tenant_id, stream_id, revision)| Timer { tenant_id, stream_id, revision })
        .collect();
        for timer in &due {
            if let Err(e) = self.check(timer).await {
                tracing::warn!(tenant_id = %timer.tenant_id, case_id = %timer.stream_id,
                    error = %format!("{e:#}"), "checking a case's SLA failed; will retry");
                // Later, so that cases that keep failing cannot fill every round.
                let now = chrono::Utc::now();
                let later = now.checked_add_signed(RETRY_FAILED).unwrap_or(now);
                if let Err(e) = self.mark(timer, Some(later)).await {
                    tracing::warn!(error = %e, "deferring a failed SLA check failed");
                }
            }
        }
        Ok(due.len() >= BATCH as usize)
    }

    /// Records what is due on the case now, then marks when to look next.
    async fn check(&self, timer: &Timer) -> anyhow::Result<()> {
        let meta = Metadata::system(timer.tenant_id);
        let command = Command {
            meta: &meta,
            tenant_id: timer.tenant_id,
            stream_id: timer.stream_id,
            request_hash: String::new(),
            lookup: Lookup::Nothing,
        };
        let now = Utc::now();
        let mut decided: Vec<CaseEvent> = Vec::new();
        let recorded = self
            .journal
            .execute::<Case>(command, |state, _| {
                let events = case::decide(state, CaseCommand::CheckSla, &case::Context { actor: Uuid::nil(), now })?;
                decided.clone_from(&events);
                Ok(events)
            })
            .await;
        match recorded {
            Ok(_) => count(&decided),
            // No such case in the tenant (a mark written by hand): nothing to look at.
            Err(JournalError::Rejected { .. }) => return self.mark(timer, None).await,
            // A command of the case's own won the race: its mark, or this one, stays due.
            Err(JournalError::Conflict { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let state = self.journal.state::<Case>(timer.tenant_id, timer.stream_id).await?;
        self.mark(timer, state.and_then(|c| c.next_sla_check())).await
    }

    /// Moves the case's mark to `next`, or deletes it (None), unless an event marked the
    /// case again since it was read (its revision moved): then it stays due now.
    async fn mark(&self, timer: &Timer, next: Option<DateTime<Utc>>) -> anyhow::Result<()> {
        let query = match next {
            Some(_) => {
                "UPDATE eventstore.sla_timers SET due_at = $4
                 WHERE tenant_id = $1 AND stream_id = $2 AND revision = $3"
            }
            None => "DELETE FROM eventstore.sla_timers WHERE tenant_id = $1 AND stream_id = $2 AND revision = $3",
        };
        sqlx::query(query)
            .bind(timer.tenant_id)
            .bind(timer.stream_id)
            .bind(timer.revision)
            .bind(next)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// `sla_events_total{kind, clock}`: the warnings and breaches recorded.
fn count(events: &[CaseEvent]) {
    for event in events {
        let (kind, clock) = match event {
            CaseEvent::SlaWarned(e) => ("warning", e.clock),
            CaseEvent::SlaBreached(e) => ("breach", e.clock),
            _ => continue,
        };
        tracing::info!(kind, clock = clock.as_str(), "SLA event recorded");
        metrics::counter!("sla_events_total", "kind" => kind, "clock" => clock.as_str()).increment(1);
    }
}
