//! `tasks`.

use events::task::TaskEvent;
use events::EventEnvelope;

use super::{Applied, Tx};

pub(super) async fn apply(tx: &mut Tx<'_>, schema: &str, env: &EventEnvelope, event: &TaskEvent) -> Applied {
    match event {
        TaskEvent::Created(e) => {
            sqlx::query(&format!(
                "INSERT INTO {schema}.tasks (id, tenant_id, case_id, title, description, status, priority,
                    assigned_to, created_by, created_at, updated_at, due_date, version)
                 VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, $9, $9, $10, $11) ON CONFLICT (id) DO NOTHING"
            ))
            .bind(env.stream_id)
            .bind(env.tenant_id)
            .bind(e.case_id)
            .bind(&e.title)
            .bind(&e.description)
            .bind(e.priority.as_str())
            .bind(e.assigned_to)
            .bind(e.created_by)
            .bind(e.created_at)
            .bind(e.due_date)
            .bind(env.stream_version)
            .execute(&mut **tx)
            .await?;
        }
        TaskEvent::Assigned(e) => {
            update_guarded!(
                (tx, schema, "tasks", env),
                "assigned_to = $3, updated_at = $4",
                e.assigned_to.new,
                e.assigned_at
            )
            .await?;
        }
        TaskEvent::StatusChanged(e) => {
            update_guarded!(
                (tx, schema, "tasks", env),
                "status = $3, completed_at = $4, updated_at = $5",
                e.status.new.as_str(),
                e.completed_at,
                e.changed_at
            )
            .await?;
        }
    }
    Ok(())
}
