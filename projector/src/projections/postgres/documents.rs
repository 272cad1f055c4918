//! `documents` (their metadata; the files live elsewhere).

use events::document::DocumentEvent;
use events::EventEnvelope;

use super::{Applied, Tx};

pub(super) async fn apply(tx: &mut Tx<'_>, schema: &str, env: &EventEnvelope, event: &DocumentEvent) -> Applied {
    match event {
        DocumentEvent::Attached(e) => {
            sqlx::query(&format!(
                "INSERT INTO {schema}.documents (id, tenant_id, case_id, filename, mime_type, size, storage_path,
                    uploaded_by, uploaded_at, metadata, version)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (id) DO NOTHING"
            ))
            .bind(env.stream_id)
            .bind(env.tenant_id)
            .bind(e.case_id)
            .bind(&e.filename)
            .bind(&e.mime_type)
            .bind(e.size)
            .bind(&e.storage_path)
            .bind(e.uploaded_by)
            .bind(e.uploaded_at)
            .bind(sqlx::types::Json(&e.metadata))
            .bind(env.stream_version)
            .execute(&mut **tx)
            .await?;
        }
        DocumentEvent::Deleted(_) => {
            update_guarded!((tx, schema, "documents", env), "is_deleted = TRUE").await?;
        }
    }
    Ok(())
}
