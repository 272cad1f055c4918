//! `users`: a row per user stream, guarded by its version.

use events::user::UserEvent;
use events::EventEnvelope;

use super::{Applied, Tx};

pub(super) async fn apply(tx: &mut Tx<'_>, schema: &str, env: &EventEnvelope, event: &UserEvent) -> Applied {
    match event {
        UserEvent::Created(e) => {
            sqlx::query(&format!(
                "INSERT INTO {schema}.users (id, tenant_id, username, email, first_name, last_name,
                    role, status, created_at, updated_at, permissions, preferences, version)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8, $8, '{{}}', '{{}}', $9)
                 ON CONFLICT (id) DO NOTHING"
            ))
            .bind(env.stream_id)
            .bind(env.tenant_id)
            .bind(&e.username)
            .bind(&e.email)
            .bind(&e.first_name)
            .bind(&e.last_name)
            .bind(e.role.as_str())
            .bind(e.created_at)
            .bind(env.stream_version)
            .execute(&mut **tx)
            .await?;
            // Cases that named the user before their row existed (a log from before tenant
            // keying) name them now.
            return copy_username(tx, schema, env, &e.username).await;
        }
        UserEvent::ProfileUpdated(e) => {
            update_guarded!(
                (tx, schema, "users", env),
                "first_name = CASE WHEN $3 THEN $4 ELSE first_name END,
             last_name = CASE WHEN $5 THEN $6 ELSE last_name END,
             email = CASE WHEN $7 THEN $8 ELSE email END, updated_at = $9",
                e.first_name.is_some(),
                e.first_name.as_ref().and_then(|c| c.new.clone()),
                e.last_name.is_some(),
                e.last_name.as_ref().and_then(|c| c.new.clone()),
                e.email.is_some(),
                e.email.as_ref().map(|c| c.new.clone()),
                e.updated_at
            )
            .await?
        }
        UserEvent::RoleChanged(e) => {
            update_guarded!((tx, schema, "users", env), "role = $3, updated_at = $4", e.role.new.as_str(), e.changed_at)
                .await?
        }
        UserEvent::StatusChanged(e) => {
            update_guarded!(
                (tx, schema, "users", env),
                "status = $3, updated_at = $4",
                e.status.new.as_str(),
                e.changed_at
            )
            .await?
        }
        UserEvent::PermissionsSet(e) => {
            update_guarded!(
                (tx, schema, "users", env),
                "permissions = $3, updated_at = $4",
                sqlx::types::Json(&e.permissions.new),
                e.set_at
            )
            .await?
        }
        UserEvent::PreferencesSet(e) => {
            update_guarded!(
                (tx, schema, "users", env),
                "preferences = $3, updated_at = $4",
                sqlx::types::Json(&e.preferences.new),
                e.set_at
            )
            .await?
        }
        UserEvent::LoggedIn(e) => {
            update_guarded!((tx, schema, "users", env), "last_login = $3", e.logged_in_at).await?
        }
        UserEvent::PasswordChanged(e) => {
            update_guarded!((tx, schema, "users", env), "updated_at = $3", e.changed_at).await?
        }
        // Erased as a data subject: the row keeps no personal field, and the cases that
        // copy the username copy the marker.
        UserEvent::Erased(e) => {
            update_guarded!(
                (tx, schema, "users", env),
                "username = $3, email = $3,
                 first_name = CASE WHEN first_name IS NULL THEN NULL ELSE $4 END,
                 last_name = CASE WHEN last_name IS NULL THEN NULL ELSE $4 END,
                 preferences = '{}', status = 'inactive', updated_at = $5",
                &e.marker,
                events::personal::ERASED,
                e.erased_at
            )
            .await?;
            return copy_username(tx, schema, env, &e.marker).await;
        }
        // What a user read lives in Redis; the row only follows the stream's version.
        UserEvent::NotificationsRead(_) => {
            update_guarded!((tx, schema, "users", env), "updated_at = updated_at").await?
        }
    };
    Ok(())
}

/// The user's cases copy their username (`cases.assigned_to_username`).
async fn copy_username(tx: &mut Tx<'_>, schema: &str, env: &EventEnvelope, username: &str) -> Applied {
    sqlx::query(&format!(
        "UPDATE {schema}.cases SET assigned_to_username = $2
         WHERE assigned_to = $1 AND assigned_to_username IS DISTINCT FROM $2"
    ))
    .bind(env.stream_id)
    .bind(username)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
