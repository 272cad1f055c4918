//! `interactions`: recorded once (version 1), into their month's partition, which is
//! created first when the maintenance has not made it yet.

use std::collections::HashSet;
use std::sync::Mutex;

use events::interaction::InteractionRecorded;
use events::EventEnvelope;
use uuid::Uuid;

use super::{Applied, Tx};

/// (tenant, YYYY-MM) interaction partitions known to exist.
pub(super) type Partitions = Mutex<HashSet<(Uuid, String)>>;

pub(super) async fn apply(
    tx: &mut Tx<'_>,
    schema: &str,
    env: &EventEnvelope,
    e: &InteractionRecorded,
    partitions: &Partitions,
) -> Applied {
    let month = (env.tenant_id, e.timestamp.format("%Y-%m").to_string());
    // A past month's partition may have been archived and dropped by retention since it
    // was seen (`crate::retention`): only this month's and later ones are remembered.
    let current = chrono::Utc::now().format("%Y-%m").to_string();
    let known = month.1 >= current && partitions.lock().map(|p| p.contains(&month)).unwrap_or(false);
    if !known {
        sqlx::query("SELECT public.murima_interaction_partition($1, $2)")
            .bind(schema)
            .bind(e.timestamp)
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query(&format!(
        "INSERT INTO {schema}.interactions (id, tenant_id, case_id, channel_id, user_id, direction, content,
            timestamp, metadata, external_id, tags, version, customer_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
         ON CONFLICT (tenant_id, timestamp, id) DO NOTHING"
    ))
    .bind(env.stream_id)
    .bind(env.tenant_id)
    .bind(e.case_id)
    .bind(e.channel_id)
    .bind(e.user_id)
    .bind(e.direction.as_str())
    .bind(&e.content)
    .bind(e.timestamp)
    .bind(sqlx::types::Json(&e.metadata))
    .bind(&e.external_id)
    .bind(&e.tags)
    .bind(env.stream_version)
    .bind(e.customer_id)
    .execute(&mut **tx)
    .await?;
    if let Ok(mut p) = partitions.lock() {
        p.insert(month);
    }
    Ok(())
}
