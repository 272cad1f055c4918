//! `case_types`, and the type's name denormalised onto its cases.

use events::case_type::CaseTypeEvent;
use events::EventEnvelope;

use super::{Applied, Tx};

pub(super) async fn apply(tx: &mut Tx<'_>, schema: &str, env: &EventEnvelope, event: &CaseTypeEvent) -> Applied {
    match event {
        CaseTypeEvent::Created(e) => {
            sqlx::query(&format!(
                "INSERT INTO {schema}.case_types (id, tenant_id, name, description, form_definition,
                    validation_rules, workflow_id, created_at, updated_at, is_active, version)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, TRUE, $9) ON CONFLICT (id) DO NOTHING"
            ))
            .bind(env.stream_id)
            .bind(env.tenant_id)
            .bind(&e.name)
            .bind(&e.description)
            .bind(sqlx::types::Json(&e.form_definition))
            .bind(&e.validation_rules)
            .bind(e.workflow_id)
            .bind(e.created_at)
            .bind(env.stream_version)
            .execute(&mut **tx)
            .await?;
        }
        CaseTypeEvent::Updated(e) => {
            update_guarded!(
                (tx, schema, "case_types", env),
                "name = CASE WHEN $3 THEN $4 ELSE name END,
                 description = CASE WHEN $5 THEN $6 ELSE description END,
                 form_definition = CASE WHEN $7 THEN $8 ELSE form_definition END,
                 validation_rules = CASE WHEN $9 THEN $10 ELSE validation_rules END, updated_at = $11",
                e.name.is_some(),
                e.name.as_ref().map(|c| c.new.clone()),
                e.description.is_some(),
                e.description.as_ref().and_then(|c| c.new.clone()),
                e.form_definition.is_some(),
                e.form_definition.as_ref().map(|c| sqlx::types::Json(c.new.clone())),
                e.validation_rules.is_some(),
                e.validation_rules.as_ref().map(|c| c.new.clone()),
                e.updated_at
            )
            .await?;
        }
        CaseTypeEvent::Deactivated(e) | CaseTypeEvent::Activated(e) => {
            let active = matches!(event, CaseTypeEvent::Activated(_));
            update_guarded!((tx, schema, "case_types", env), "is_active = $3, updated_at = $4", active, e.at).await?;
        }
    }
    let renamed = match event {
        CaseTypeEvent::Created(_) => true,
        CaseTypeEvent::Updated(e) => e.name.is_some(),
        CaseTypeEvent::Deactivated(_) | CaseTypeEvent::Activated(_) => false,
    };
    if renamed {
        // The denormalised name on the type's cases follows the type's current name.
        sqlx::query(&format!(
            "UPDATE {schema}.cases c SET case_type_name = ct.name FROM {schema}.case_types ct
             WHERE ct.id = $1 AND c.case_type_id = $1 AND c.case_type_name IS DISTINCT FROM ct.name"
        ))
        .bind(env.stream_id)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
