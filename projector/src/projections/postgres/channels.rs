//! `channels`.

use events::channel::ChannelEvent;
use events::EventEnvelope;

use super::{Applied, Tx};

pub(super) async fn apply(tx: &mut Tx<'_>, schema: &str, env: &EventEnvelope, event: &ChannelEvent) -> Applied {
    match event {
        ChannelEvent::Created(e) => {
            sqlx::query(&format!(
                "INSERT INTO {schema}.channels (id, tenant_id, name, type, configuration, created_at, updated_at,
                    is_active, version)
                 VALUES ($1, $2, $3, $4, $5, $6, $6, TRUE, $7) ON CONFLICT (id) DO NOTHING"
            ))
            .bind(env.stream_id)
            .bind(env.tenant_id)
            .bind(&e.name)
            .bind(e.channel_type.as_str())
            .bind(sqlx::types::Json(&e.configuration))
            .bind(e.created_at)
            .bind(env.stream_version)
            .execute(&mut **tx)
            .await?;
        }
        ChannelEvent::Updated(e) => {
            update_guarded!(
                (tx, schema, "channels", env),
                "name = CASE WHEN $3 THEN $4 ELSE name END,
                 configuration = CASE WHEN $5 THEN $6 ELSE configuration END, updated_at = $7",
                e.name.is_some(),
                e.name.as_ref().map(|c| c.new.clone()),
                e.configuration.is_some(),
                e.configuration.as_ref().map(|c| sqlx::types::Json(c.new.clone())),
                e.updated_at
            )
            .await?;
        }
        ChannelEvent::Deactivated(e) | ChannelEvent::Activated(e) => {
            let active = matches!(event, ChannelEvent::Activated(_));
            update_guarded!((tx, schema, "channels", env), "is_active = $3, updated_at = $4", active, e.at).await?;
        }
    }
    Ok(())
}
