//! What a batch commits besides its rows: the highest journal position applied per
//! tenant (the log checkpoint itself is `crate::checkpoint`, saved in the same
//! transaction).

use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use crate::event::Event;

/// The highest journal position applied per tenant, committed with the rows: reads wait
/// on it for a command's position token (a tenant's events arrive in journal order).
pub(super) async fn save_tenant_positions(
    tx: &mut Transaction<'_, Postgres>,
    group: &str,
    events: &[Event],
) -> Result<(), sqlx::Error> {
    let mut highest: std::collections::BTreeMap<Uuid, i64> = std::collections::BTreeMap::new();
    for event in events {
        let entry = highest.entry(event.envelope.tenant_id).or_insert(0);
        *entry = (*entry).max(event.envelope.position);
    }
    let (tenants, positions): (Vec<Uuid>, Vec<i64>) = highest.into_iter().unzip();
    sqlx::query(
        "INSERT INTO projector.tenant_positions (projection, tenant_id, position, updated_at)
         SELECT $1, t, p, now() FROM UNNEST($2::uuid[], $3::bigint[]) AS x(t, p)
         ON CONFLICT (projection, tenant_id)
         DO UPDATE SET position = GREATEST(projector.tenant_positions.position, EXCLUDED.position), updated_at = now()",
    )
    .bind(group)
    .bind(tenants)
    .bind(positions)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
