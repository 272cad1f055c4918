//! `interactions`: recorded once (version 1), into their month's partition, which is
//! created first when the maintenance has not made it yet. A run of interactions is
//! written set-based: one multi-row INSERT per tenant schema.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use events::interaction::{InteractionEvent, InteractionRecorded};
use events::DomainEvent;
use sqlx::types::Json;
use uuid::Uuid;

use super::{Applied, Tx};
use crate::event::Event;

/// (tenant, YYYY-MM) interaction partitions known to exist.
pub(super) type Partitions = Mutex<HashSet<(Uuid, String)>>;

/// Writes the run's interactions (its other events are not this table's).
pub(super) async fn apply(
    tx: &mut Tx<'_>,
    schema: impl Fn(Uuid) -> String,
    run: &[&Event],
    partitions: &Partitions,
) -> Applied {
    let mut per_tenant: BTreeMap<Uuid, Vec<(&Event, &InteractionRecorded)>> = BTreeMap::new();
    for event in run {
        if let DomainEvent::Interaction(InteractionEvent::Recorded(e)) = &event.data {
            per_tenant.entry(event.envelope.tenant_id).or_default().push((event, e));
        }
    }
    // A past month's partition may have been archived and dropped by retention since it
    // was seen (`crate::retention`): only this month's and later ones are remembered.
    let current = chrono::Utc::now().format("%Y-%m").to_string();
    for (tenant, recorded) in per_tenant {
        let schema = schema(tenant);
        // Each month the run writes to, with one of its times (the partition function
        // takes a time).
        let months: BTreeMap<String, chrono::DateTime<chrono::Utc>> =
            recorded.iter().map(|(_, e)| (e.timestamp.format("%Y-%m").to_string(), e.timestamp)).collect();
        let mut made = Vec::with_capacity(months.len());
        for (month, at) in months {
            let key = (tenant, month);
            let known = key.1 >= current && partitions.lock().map(|p| p.contains(&key)).unwrap_or(false);
            if !known {
                sqlx::query("SELECT public.murima_interaction_partition($1, $2)")
                    .bind(&schema)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
            }
            made.push(key);
        }
        insert(tx, &schema, tenant, &recorded).await?;
        if let Ok(mut p) = partitions.lock() {
            p.extend(made);
        }
    }
    Ok(())
}

async fn insert(tx: &mut Tx<'_>, schema: &str, tenant: Uuid, recorded: &[(&Event, &InteractionRecorded)]) -> Applied {
    let column = |f: &dyn Fn(&Event, &InteractionRecorded) -> Option<String>| {
        recorded.iter().map(|(event, e)| f(event, e)).collect::<Vec<_>>()
    };
    let ids: Vec<Uuid> = recorded.iter().map(|(event, _)| event.envelope.stream_id).collect();
    let cases: Vec<Uuid> = recorded.iter().map(|(_, e)| e.case_id).collect();
    let channels: Vec<Uuid> = recorded.iter().map(|(_, e)| e.channel_id).collect();
    let users: Vec<Uuid> = recorded.iter().map(|(_, e)| e.user_id).collect();
    let directions = column(&|_, e| Some(e.direction.as_str().to_owned()));
    let contents = column(&|_, e| e.content.clone());
    let timestamps: Vec<chrono::DateTime<chrono::Utc>> = recorded.iter().map(|(_, e)| e.timestamp).collect();
    let metadata: Vec<Json<&serde_json::Map<String, serde_json::Value>>> =
        recorded.iter().map(|(_, e)| Json(&e.metadata)).collect();
    let external_ids = column(&|_, e| e.external_id.clone());
    let tags: Vec<Json<&Vec<String>>> = recorded.iter().map(|(_, e)| Json(&e.tags)).collect();
    let versions: Vec<i64> = recorded.iter().map(|(event, _)| event.envelope.stream_version).collect();
    let customers: Vec<Option<Uuid>> = recorded.iter().map(|(_, e)| e.customer_id).collect();
    sqlx::query(&format!(
        "INSERT INTO {schema}.interactions (id, tenant_id, case_id, channel_id, user_id, direction, content,
            timestamp, metadata, external_id, tags, version, customer_id)
         SELECT r.id, $1, r.case_id, r.channel_id, r.user_id, r.direction, r.content, r.timestamp, r.metadata,
            r.external_id, ARRAY(SELECT jsonb_array_elements_text(r.tags)), r.version, r.customer_id
         FROM UNNEST($2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[], $6::text[], $7::text[], $8::timestamptz[],
                     $9::jsonb[], $10::text[], $11::jsonb[], $12::bigint[], $13::uuid[])
           WITH ORDINALITY AS r(id, case_id, channel_id, user_id, direction, content, timestamp, metadata,
                external_id, tags, version, customer_id, n)
         ORDER BY r.n
         ON CONFLICT (tenant_id, timestamp, id) DO NOTHING"
    ))
    .bind(tenant)
    .bind(&ids)
    .bind(&cases)
    .bind(&channels)
    .bind(&users)
    .bind(&directions)
    .bind(&contents)
    .bind(&timestamps)
    .bind(&metadata)
    .bind(&external_ids)
    .bind(&tags)
    .bind(&versions)
    .bind(&customers)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
