//! What a worker records of its progress in `projector.progress` (what `status` shows):
//! each batch's positions and rate, the latest failure, a recovery, a consumer restart.

use sqlx::PgPool;

use crate::projection::Checkpoint;

/// Events per second over the last few batches (an exponentially weighted average).
#[derive(Default)]
pub(super) struct Rate {
    since: Option<std::time::Instant>,
    per_second: f64,
}

impl Rate {
    pub(super) fn record(&mut self, events: usize) {
        let now = std::time::Instant::now();
        if let Some(since) = self.since {
            let seconds = now.duration_since(since).as_secs_f64().max(1e-3);
            let sample = events as f64 / seconds;
            // Idle gaps count too: a projection that stopped receiving decays to 0.
            let weight = (seconds / 10.0).min(1.0);
            self.per_second += (sample - self.per_second) * weight.max(0.1);
        }
        self.since = Some(now);
    }

    pub(super) fn per_second(&self) -> f64 {
        self.per_second
    }
}

/// The worker's row in `projector.progress`, written in the batch's lock transaction.
pub(super) async fn record_progress(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    group: &str,
    checkpoint: &Checkpoint,
    applied: usize,
    per_second: f64,
    last: Option<(i64, chrono::DateTime<chrono::Utc>)>,
) -> anyhow::Result<()> {
    let positions: serde_json::Map<String, serde_json::Value> =
        checkpoint.positions.iter().map(|(p, at)| (p.to_string(), at.next_offset.into())).collect();
    sqlx::query(
        "INSERT INTO projector.progress AS p (projection, positions, events_applied, events_per_sec, last_position,
                last_event_at, last_batch_at)
         VALUES ($1, $2, $3, $4, COALESCE($5, 0), $6, now())
         ON CONFLICT (projection) DO UPDATE SET
             positions = p.positions || EXCLUDED.positions,
             events_applied = p.events_applied + EXCLUDED.events_applied,
             events_per_sec = EXCLUDED.events_per_sec,
             last_position = GREATEST(p.last_position, EXCLUDED.last_position),
             last_event_at = COALESCE(EXCLUDED.last_event_at, p.last_event_at),
             last_batch_at = now(), retrying_since = NULL",
    )
    .bind(group)
    .bind(serde_json::Value::Object(positions))
    .bind(applied as i64)
    .bind(per_second)
    .bind(last.map(|(position, _)| position))
    .bind(last.map(|(_, at)| at))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// What kind of failure `status` shows last.
#[derive(Debug, Clone, Copy)]
pub enum ErrorClass {
    /// The store was unreachable or busy: retried.
    Transient,
    /// The store will never take the event: its stream was parked.
    Deterministic,
}

impl ErrorClass {
    fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Deterministic => "deterministic",
        }
    }
}

/// Keeps the latest failure visible to `status`, and since when the projection retries
/// (best effort: the store may be the thing that is down, and PostgreSQL with it).
pub(super) async fn record_error(pool: &PgPool, group: &str, error: &str, class: ErrorClass) {
    let recorded = sqlx::query(
        "INSERT INTO projector.progress (projection, last_error, last_error_at, last_error_class, retrying_since)
         VALUES ($1, $2, now(), $3, CASE WHEN $3 = 'transient' THEN now() END)
         ON CONFLICT (projection) DO UPDATE SET last_error = EXCLUDED.last_error, last_error_at = now(),
             last_error_class = EXCLUDED.last_error_class,
             retrying_since = CASE WHEN EXCLUDED.last_error_class = 'transient'
                                   THEN COALESCE(projector.progress.retrying_since, now())
                                   ELSE projector.progress.retrying_since END",
    )
    .bind(group)
    .bind(error)
    .bind(class.as_str())
    .execute(pool)
    .await;
    if let Err(e) = recorded {
        tracing::debug!(error = %e, "could not record the projection's error");
    }
}

/// The projection applies again after retries.
pub(super) async fn record_recovery(pool: &PgPool, group: &str) {
    let recorded = sqlx::query("UPDATE projector.progress SET retrying_since = NULL WHERE projection = $1")
        .bind(group)
        .execute(pool)
        .await;
    if let Err(e) = recorded {
        tracing::debug!(error = %e, "could not record the projection's recovery");
    }
}

/// Counts a consumer restart where `status` shows it (best effort, like `record_error`).
pub(super) async fn record_restart(pool: &PgPool, group: &str, reason: &str) {
    let recorded = sqlx::query(
        "INSERT INTO projector.progress (projection, restarts, last_restart_at, last_restart_reason)
         VALUES ($1, 1, now(), $2)
         ON CONFLICT (projection) DO UPDATE SET restarts = projector.progress.restarts + 1,
             last_restart_at = now(), last_restart_reason = EXCLUDED.last_restart_reason",
    )
    .bind(group)
    .bind(reason)
    .execute(pool)
    .await;
    if let Err(e) = recorded {
        tracing::debug!(error = %e, "could not record the consumer restart");
    }
}
