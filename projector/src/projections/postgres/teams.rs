//! `teams` and `team_members`.

use events::team::TeamEvent;
use events::EventEnvelope;

use super::{Applied, Tx};

/// Teams keep a stream version; membership rows are keyed by (team, user), and the
/// team row's version guard decides whether a membership event is new.
pub(super) async fn apply(tx: &mut Tx<'_>, schema: &str, env: &EventEnvelope, event: &TeamEvent) -> Applied {
    if let TeamEvent::Created(e) = event {
        sqlx::query(&format!(
            "INSERT INTO {schema}.teams (id, tenant_id, name, description, created_at, updated_at, version)
             VALUES ($1, $2, $3, $4, $5, $5, $6) ON CONFLICT (id) DO NOTHING"
        ))
        .bind(env.stream_id)
        .bind(env.tenant_id)
        .bind(&e.name)
        .bind(&e.description)
        .bind(e.created_at)
        .bind(env.stream_version)
        .execute(&mut **tx)
        .await?;
        return Ok(());
    }
    // Claim the version first: if this event was applied already, nothing else runs.
    let claimed = update_guarded!((tx, schema, "teams", env), "updated_at = $3", env.occurred_at).await?;
    if claimed.rows_affected() == 0 {
        return Ok(());
    }
    match event {
        TeamEvent::Created(_) => {}
        TeamEvent::Renamed(e) => {
            sqlx::query(&format!("UPDATE {schema}.teams SET name = $2, updated_at = $3 WHERE id = $1"))
                .bind(env.stream_id)
                .bind(&e.name.new)
                .bind(e.renamed_at)
                .execute(&mut **tx)
                .await?;
        }
        TeamEvent::MemberAdded(e) => {
            sqlx::query(&format!(
                "INSERT INTO {schema}.team_members (team_id, user_id, tenant_id, role, joined_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (team_id, user_id) DO UPDATE SET role = EXCLUDED.role"
            ))
            .bind(env.stream_id)
            .bind(e.user_id)
            .bind(env.tenant_id)
            .bind(e.role.as_str())
            .bind(e.joined_at)
            .execute(&mut **tx)
            .await?;
        }
        TeamEvent::MemberRemoved(e) => {
            sqlx::query(&format!("DELETE FROM {schema}.team_members WHERE team_id = $1 AND user_id = $2"))
                .bind(env.stream_id)
                .bind(e.user_id)
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(())
}
