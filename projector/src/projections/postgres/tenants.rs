//! `public.tenants`: one row per tenant stream, readable by its own tenant only (row-level
//! security), guarded by the stream version like every other table.

use events::tenant::TenantEvent;
use events::EventEnvelope;

use super::{Applied, Tx};

pub(super) async fn apply(tx: &mut Tx<'_>, env: &EventEnvelope, event: &TenantEvent) -> Applied {
    match event {
        // The row may exist already as a placeholder (see `ensure_tenant`): filled in here.
        TenantEvent::Provisioned(e) => {
            sqlx::query(
                "UPDATE public.tenants SET name = $2, slug = $3, settings = $4, created_at = $5, updated_at = $5,
                    version = $6
                 WHERE id = $1 AND version < $6",
            )
            .bind(env.tenant_id)
            .bind(&e.name)
            .bind(&e.slug)
            .bind(sqlx::types::Json(&e.settings))
            .bind(e.provisioned_at)
            .bind(env.stream_version)
            .execute(&mut **tx)
            .await?;
        }
        TenantEvent::SettingsUpdated(e) => {
            update_guarded!(
                (tx, "public", "tenants", env),
                "settings = $3, updated_at = $4",
                sqlx::types::Json(&e.settings.new),
                e.updated_at
            )
            .await?;
        }
        TenantEvent::Suspended(e) => {
            update_guarded!(
                (tx, "public", "tenants", env),
                "status = $3, updated_at = $4",
                "suspended",
                e.suspended_at
            )
            .await?;
        }
        TenantEvent::Reactivated(e) => {
            update_guarded!((tx, "public", "tenants", env), "status = $3, updated_at = $4", "active", e.reactivated_at)
                .await?;
        }
    }
    Ok(())
}
