//! Parks events a projection cannot apply, visibly, in `projector.parked_events`.
//!
//! A stream is identified by (tenant, id): ids are unique within a tenant only, so what
//! is parked is a `StreamKey`, and parking one tenant's stream never holds back another
//! tenant's stream of the same id.

use std::collections::HashSet;

use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use events::EventEnvelope;

/// A stream as the journal identifies it: its tenant and its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    pub tenant_id: Uuid,
    pub stream_id: Uuid,
}

impl StreamKey {
    pub fn new(tenant_id: Uuid, stream_id: Uuid) -> Self {
        Self { tenant_id, stream_id }
    }

    /// The stream an event belongs to.
    pub fn of(envelope: &EventEnvelope) -> Self {
        Self::new(envelope.tenant_id, envelope.stream_id)
    }
}

impl From<(Uuid, Uuid)> for StreamKey {
    fn from((tenant_id, stream_id): (Uuid, Uuid)) -> Self {
        Self::new(tenant_id, stream_id)
    }
}

pub struct ParkingLot {
    pool: PgPool,
}

impl ParkingLot {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The streams already parked for a projection (loaded when a worker starts).
    pub async fn parked_streams(&self, projection: &str) -> anyhow::Result<HashSet<StreamKey>> {
        self.streams(
            "SELECT DISTINCT tenant_id, stream_id FROM projector.parked_events WHERE projection = $1",
            projection,
        )
        .await
    }

    /// The streams a replay or rebuild keeps out for a projection, as its worker does:
    /// those parked, and those an operator skipped.
    pub async fn held_back(&self, projection: &str) -> anyhow::Result<HashSet<StreamKey>> {
        self.streams(
            "SELECT tenant_id, stream_id FROM projector.parked_events WHERE projection = $1
             UNION SELECT tenant_id, stream_id FROM projector.skipped_events WHERE projection = $1",
            projection,
        )
        .await
    }

    /// The (tenant, stream) pairs `sql` selects for a projection.
    async fn streams(&self, sql: &str, projection: &str) -> anyhow::Result<HashSet<StreamKey>> {
        let rows: Vec<(Uuid, Uuid)> = sqlx::query_as(sql).bind(projection).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(StreamKey::from).collect())
    }

    pub async fn park(
        &self,
        projection: &str,
        envelope: Option<&EventEnvelope>,
        raw: &[u8],
        error: &str,
    ) -> anyhow::Result<()> {
        let (event_id, tenant_id, stream_id, version, event_type, body) = match envelope {
            Some(e) => {
                (e.event_id, e.tenant_id, e.stream_id, e.stream_version, e.event_type.clone(), serde_json::to_value(e)?)
            }
            // Not even an envelope: keep the raw bytes so an operator can look at them.
            None => (
                Uuid::now_v7(),
                Uuid::nil(),
                Uuid::nil(),
                0,
                "unreadable".to_owned(),
                Value::String(String::from_utf8_lossy(raw).into_owned()),
            ),
        };
        tracing::error!(projection, %event_id, %tenant_id, %stream_id, version, error, "parked an event");
        sqlx::query(
            "INSERT INTO projector.parked_events
                (projection, event_id, tenant_id, stream_id, stream_version, event_type, envelope, error)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        )
        .bind(projection)
        .bind(event_id)
        .bind(tenant_id)
        .bind(stream_id)
        .bind(version)
        .bind(event_type)
        .bind(body)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// An erased user's requests in the parked and skipped copies of the events they acted in
/// (sealed fields stay sealed there; a request of before requests were sealed kept its
/// address and user agent as they came): gone, as `events::envelope::RequestContext::erase` makes them (a tenant's
/// users' only, as `events::envelope::Actor::is_tenant_user` says).
pub async fn forget_requests_of(conn: &mut sqlx::PgConnection, tenant: Uuid, user: Uuid) -> Result<(), sqlx::Error> {
    for table in ["projector.parked_events", "projector.skipped_events"] {
        sqlx::query(&format!(
            "UPDATE {table} SET envelope = jsonb_set(jsonb_set(envelope #- '{{request,sealed}}',
                 '{{request,ip_address}}', 'null'), '{{request,user_agent}}',
                 CASE WHEN envelope->'request'->>'user_agent' IS NULL AND NOT envelope->'request' ? 'sealed'
                      THEN 'null'::jsonb ELSE to_jsonb($3::text) END)
             WHERE tenant_id = $1 AND envelope->'actor'->>'user_id' = $2::text
               AND envelope->'actor'->>'role' = ANY($4)
               AND envelope ? 'request'"
        ))
        .bind(tenant)
        .bind(user)
        .bind(events::personal::ERASED)
        .bind(events::workflow::ROLES.as_slice())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
