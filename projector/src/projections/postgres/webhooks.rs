//! Webhook subscriptions (`projector.webhooks`) and the deliveries they ask for
//! (`projector.webhook_deliveries`), queued in the batch's transaction: an event is queued
//! once per matching subscription whatever the projector crashes or replays (the
//! delivery's key), and `crate::webhooks` sends what is queued.

use chrono::{DateTime, Utc};
use events::webhook::WebhookEvent;
use events::EventEnvelope;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{Applied, Tx};
use crate::event::Event;

/// Events older than this are not delivered: a replay or a rebuild from the start of the
/// log reaches subscribers with nothing from before (deliveries are kept longer than this,
/// so the key still stops a second copy of a recent event).
pub const DELIVERABLE_FOR: chrono::Duration = chrono::Duration::days(3);

pub async fn apply(tx: &mut Tx<'_>, env: &EventEnvelope, event: &WebhookEvent) -> Applied {
    match event {
        WebhookEvent::Created(e) => {
            sqlx::query(
                "INSERT INTO projector.webhooks (tenant_id, id, url, event_types, description, created_at,
                    updated_at, version)
                 VALUES ($1, $2, $3, $4, $5, $6, $6, $7) ON CONFLICT (tenant_id, id) DO NOTHING",
            )
            .bind(env.tenant_id)
            .bind(env.stream_id)
            .bind(&e.url)
            .bind(&e.event_types)
            .bind(&e.description)
            .bind(e.created_at)
            .bind(env.stream_version)
            .execute(&mut **tx)
            .await?;
        }
        WebhookEvent::Updated(e) => {
            sqlx::query(
                "UPDATE projector.webhooks SET url = COALESCE($4, url), event_types = COALESCE($5, event_types),
                    description = CASE WHEN $6 THEN $7 ELSE description END, active = COALESCE($8, active),
                    updated_at = $9, version = $3
                 WHERE tenant_id = $1 AND id = $2 AND version = $3 - 1",
            )
            .bind(env.tenant_id)
            .bind(env.stream_id)
            .bind(env.stream_version)
            .bind(e.url.as_ref().map(|c| c.new.clone()))
            .bind(e.event_types.as_ref().map(|c| c.new.clone()))
            .bind(e.description.is_some())
            .bind(e.description.as_ref().and_then(|c| c.new.clone()))
            .bind(e.active.as_ref().map(|c| c.new))
            .bind(e.updated_at)
            .execute(&mut **tx)
            .await?;
        }
        WebhookEvent::Deleted(e) => {
            sqlx::query(
                "UPDATE projector.webhooks SET active = false, deleted = true, updated_at = $4, version = $3
                 WHERE tenant_id = $1 AND id = $2 AND version = $3 - 1",
            )
            .bind(env.tenant_id)
            .bind(env.stream_id)
            .bind(env.stream_version)
            .bind(e.deleted_at)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

/// Deliveries of an erased subject's events keep the events' data (opened) until they
/// age out: theirs is replaced with the marker, delivered or not. A subject's events are
/// those of their own user stream and those sealed for them (`data_subject`).
pub async fn erase_subject(tx: &mut Tx<'_>, tenant: Uuid, subject: Uuid) -> Applied {
    sqlx::query(
        "UPDATE projector.webhook_deliveries SET body = jsonb_set(body, '{data}', to_jsonb($3::text))
         WHERE tenant_id = $1
           AND ((body->>'stream_type' = 'user' AND body->>'stream_id' = $2::text AND event_type <> 'UserErased')
                OR body->>'data_subject' = $2::text)",
    )
    .bind(tenant)
    .bind(subject)
    .bind(events::personal::ERASED)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// What a receiver gets for an event: the envelope's facts and the payload as `data`.
pub fn body(env: &EventEnvelope) -> Value {
    json!({
        "id": env.event_id,
        "type": env.event_type,
        "schema_version": env.schema_version,
        "tenant_id": env.tenant_id,
        "stream_type": env.stream_type,
        "stream_id": env.stream_id,
        "version": env.stream_version,
        "occurred_at": env.occurred_at,
        "actor": env.actor,
        "data_subject": env.data_subject,
        "data": env.payload,
    })
}

/// Queues a delivery of each event of the batch to each active subscription of its tenant
/// that names its type (or `*`) and existed when it happened. One small query finds the
/// tenants with subscriptions; only their events travel to PostgreSQL.
pub async fn enqueue(tx: &mut Tx<'_>, events: &[Event], now: DateTime<Utc>) -> Applied {
    let oldest = now.checked_sub_signed(DELIVERABLE_FOR).unwrap_or(now);
    let mut tenants: Vec<Uuid> = events.iter().map(|e| e.envelope.tenant_id).collect();
    tenants.sort_unstable();
    tenants.dedup();
    let subscribed: Vec<Uuid> =
        sqlx::query_scalar("SELECT DISTINCT tenant_id FROM projector.webhooks WHERE tenant_id = ANY($1) AND active")
            .bind(&tenants)
            .fetch_all(&mut **tx)
            .await?;
    if subscribed.is_empty() {
        return Ok(());
    }
    let deliverable: Vec<&EventEnvelope> = events
        .iter()
        .map(|e| &e.envelope)
        .filter(|env| subscribed.contains(&env.tenant_id) && env.occurred_at >= oldest)
        .collect();
    if deliverable.is_empty() {
        return Ok(());
    }
    let tenant_ids: Vec<Uuid> = deliverable.iter().map(|env| env.tenant_id).collect();
    let event_ids: Vec<Uuid> = deliverable.iter().map(|env| env.event_id).collect();
    let types: Vec<String> = deliverable.iter().map(|env| env.event_type.clone()).collect();
    let times: Vec<DateTime<Utc>> = deliverable.iter().map(|env| env.occurred_at).collect();
    let bodies: Vec<Value> = deliverable.iter().map(|env| body(env)).collect();
    sqlx::query(
        "INSERT INTO projector.webhook_deliveries (tenant_id, webhook_id, event_id, event_type, body)
         SELECT e.tenant_id, w.id, e.event_id, e.event_type, e.body
         FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::jsonb[])
              AS e(tenant_id, event_id, event_type, occurred_at, body)
         JOIN projector.webhooks w ON w.tenant_id = e.tenant_id AND w.active
              AND (e.event_type = ANY(w.event_types) OR '*' = ANY(w.event_types))
              AND e.occurred_at >= w.created_at
         ON CONFLICT DO NOTHING",
    )
    .bind(&tenant_ids)
    .bind(&event_ids)
    .bind(&types)
    .bind(&times)
    .bind(&bodies)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
