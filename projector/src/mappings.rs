//! Elasticsearch mapping migrations (seed §7.1.3): each monthly index of a tenant's alias
//! is copied into a new versioned index made from the current index template (the new
//! mapping), with `_reindex` keeping every document's external version, and then one
//! atomic `_aliases` request drops the old index and points both the tenant's read alias
//! and the month's own name at the new one. The projector writes to the month's name, so
//! it follows without knowing; reads go through the alias and never see a half state.
//! The Elasticsearch projection is paused (its lock, held exclusively) meanwhile, so no
//! write lands in an index that is being copied.

use elasticsearch::indices::{IndicesCreateParts, IndicesGetAliasParts};
use elasticsearch::Elasticsearch;
use runtime::tenancy::{Tenancy, CASES, ES_AUDIT_LOGS, INTERACTIONS, NOTES};
use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::stores::Stores;

pub const ENTITIES: &[&str] = &[CASES, NOTES, INTERACTIONS, ES_AUDIT_LOGS];

#[derive(Debug, Clone, Serialize)]
pub struct Migrated {
    pub alias: String,
    pub from: String,
    pub to: String,
    pub documents: u64,
}

/// Migrates the indices of one tenant (or every tenant) and one entity (or all four).
pub async fn migrate(stores: &Stores, tenant: Option<Uuid>, entity: Option<&str>) -> anyhow::Result<Vec<Migrated>> {
    let entities: Vec<&str> = match entity {
        Some(e) if ENTITIES.contains(&e) => vec![e],
        Some(e) => anyhow::bail!("no index entity is called {e:?}; they are: {}", ENTITIES.join(", ")),
        None => ENTITIES.to_vec(),
    };
    let tenants: Vec<Uuid> = match tenant {
        Some(t) => vec![t],
        None => sqlx::query_scalar("SELECT id FROM public.tenants ORDER BY id").fetch_all(&stores.pool).await?,
    };
    let hold = crate::control::exclusive(&stores.pool, "elasticsearch").await?;
    let mut migrated = Vec::new();
    for tenant in tenants {
        for entity in &entities {
            let alias = Tenancy(tenant).es_alias(entity);
            for index in indices_of(&stores.elastic, &alias).await? {
                migrated.push(migrate_index(&stores.elastic, &alias, &index).await?);
            }
        }
    }
    hold.commit().await?;
    Ok(migrated)
}

/// The concrete indices behind an alias (none when the tenant has no such documents yet).
async fn indices_of(client: &Elasticsearch, alias: &str) -> anyhow::Result<Vec<String>> {
    let response = client.indices().get_alias(IndicesGetAliasParts::Name(&[alias])).send().await?;
    if response.status_code().as_u16() == 404 {
        return Ok(Vec::new());
    }
    let body: Value = response.error_for_status_code()?.json().await?;
    let mut indices: Vec<String> = body.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    indices.sort();
    Ok(indices)
}

/// `tenant-…-cases-2026-11` → (`tenant-…-cases-2026-11`, 1); `…-2026-11-v3` → (…, 3).
fn versioned(index: &str) -> (&str, u32) {
    match index.rsplit_once("-v") {
        Some((base, n)) if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) => (base, n.parse().unwrap_or(1)),
        _ => (index, 1),
    }
}

async fn migrate_index(client: &Elasticsearch, alias: &str, index: &str) -> anyhow::Result<Migrated> {
    let (month, version) = versioned(index);
    let next = format!("{month}-v{}", version + 1);
    // No body: the index template gives the new index the current mapping and analysis.
    let created = client.indices().create(IndicesCreateParts::Index(&next)).body(json!({})).send().await?;
    let status = created.status_code();
    let text = created.text().await.unwrap_or_default();
    anyhow::ensure!(
        status.is_success() || text.contains("resource_already_exists_exception"),
        "creating {next}: {status} {text}"
    );
    let copied: Value = client
        .reindex()
        .refresh(true)
        .wait_for_completion(true)
        .body(json!({
            "source": { "index": index },
            "dest": { "index": next, "version_type": "external" },
        }))
        .send()
        .await?
        .error_for_status_code()?
        .json()
        .await?;
    let failures = copied["failures"].as_array().map_or(0, Vec::len);
    anyhow::ensure!(failures == 0, "reindexing {index} into {next} failed: {}", copied["failures"]);
    let swapped = client
        .indices()
        .update_aliases()
        .body(json!({ "actions": [
            { "remove_index": { "index": index } },
            { "add": { "index": next, "alias": alias } },
            { "add": { "index": next, "alias": month } },
        ]}))
        .send()
        .await?;
    let status = swapped.status_code();
    anyhow::ensure!(status.is_success(), "swapping {alias} to {next}: {status} {}", swapped.text().await?);
    let documents = copied["total"].as_u64().unwrap_or(0);
    tracing::info!(alias, from = index, to = %next, documents, "index migrated");
    Ok(Migrated { alias: alias.to_owned(), from: index.to_owned(), to: next, documents })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_follow_the_month_name() {
        assert_eq!(versioned("tenant-ab-cases-2026-11"), ("tenant-ab-cases-2026-11", 1));
        assert_eq!(versioned("tenant-ab-cases-2026-11-v2"), ("tenant-ab-cases-2026-11", 2));
        assert_eq!(versioned("tenant-ab-audit-logs-2026-11-v12"), ("tenant-ab-audit-logs-2026-11", 12));
    }
}
