//! `workflows`.

use events::workflow::WorkflowEvent;
use events::EventEnvelope;

use super::{Applied, Tx};

pub(super) async fn apply(tx: &mut Tx<'_>, schema: &str, env: &EventEnvelope, event: &WorkflowEvent) -> Applied {
    match event {
        WorkflowEvent::Created(e) => {
            let d = &e.definition;
            sqlx::query(&format!(
                "INSERT INTO {schema}.workflows (id, tenant_id, name, description, active, created_at, updated_at,
                    stages, transitions, actions, sla_definitions, initial_stage_id, version)
                 VALUES ($1, $2, $3, $4, TRUE, $5, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (id) DO NOTHING"
            ))
            .bind(env.stream_id)
            .bind(env.tenant_id)
            .bind(&e.name)
            .bind(&e.description)
            .bind(e.created_at)
            .bind(sqlx::types::Json(&d.stages))
            .bind(sqlx::types::Json(&d.transitions))
            .bind(sqlx::types::Json(&d.actions))
            .bind(sqlx::types::Json(&d.sla))
            .bind(d.initial_stage)
            .bind(env.stream_version)
            .execute(&mut **tx)
            .await?;
        }
        WorkflowEvent::Updated(e) => {
            let d = e.definition.as_ref().map(|c| &c.new);
            update_guarded!(
                (tx, schema, "workflows", env),
                "name = CASE WHEN $3 THEN $4 ELSE name END,
                 description = CASE WHEN $5 THEN $6 ELSE description END,
                 stages = COALESCE($7, stages), transitions = COALESCE($8, transitions),
                 actions = COALESCE($9, actions), sla_definitions = COALESCE($10, sla_definitions),
                 initial_stage_id = COALESCE($11, initial_stage_id), updated_at = $12",
                e.name.is_some(),
                e.name.as_ref().map(|c| c.new.clone()),
                e.description.is_some(),
                e.description.as_ref().and_then(|c| c.new.clone()),
                d.map(|d| sqlx::types::Json(d.stages.clone())),
                d.map(|d| sqlx::types::Json(d.transitions.clone())),
                d.map(|d| sqlx::types::Json(d.actions.clone())),
                d.map(|d| sqlx::types::Json(d.sla.clone())),
                d.map(|d| d.initial_stage),
                e.updated_at
            )
            .await?;
        }
        WorkflowEvent::Deactivated(e) | WorkflowEvent::Activated(e) => {
            let active = matches!(event, WorkflowEvent::Activated(_));
            update_guarded!((tx, schema, "workflows", env), "active = $3, updated_at = $4", active, e.at).await?;
        }
    }
    Ok(())
}
