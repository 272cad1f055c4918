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

use crate::projections::elastic::LOOKUPS;
use crate::stores::Stores;

/// Every entity of a tenant's indices: what a migration copies and a rebuild switches
/// and drops. The lookups (case types' names, channels' types) go with the documents
/// that were built from them.
pub const ENTITIES: &[&str] = &[CASES, NOTES, INTERACTIONS, ES_AUDIT_LOGS, LOOKUPS];

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Migrated {
    pub alias: String,
    pub from: String,
    pub to: String,
    pub documents: u64,
}

/// Migrates the indices of one tenant (or every tenant) and one entity (or all of them).
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
                migrated.push(migrate_index(&stores.elastic, entity, &alias, &index).await?);
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

/// The month's own name under the tenant alias (`<alias>-YYYY-MM`), which the projector
/// writes to; an index made by a rebuild carries the rebuild's scratch id in its name.
pub(crate) fn month_name(alias: &str, index: &str) -> String {
    let (base, _) = versioned(index);
    format!("{alias}-{}", &base[base.len().saturating_sub(7)..])
}

async fn migrate_index(client: &Elasticsearch, entity: &str, alias: &str, index: &str) -> anyhow::Result<Migrated> {
    let (_, version) = versioned(index);
    let month = month_name(alias, index);
    let next = format!("{month}-v{}", version + 1);
    // The current mapping and analysis, as the index template has them (sent, not left
    // to the template: a server that lost its templates would map the copy dynamically).
    let body = crate::projections::elastic::index_template(entity);
    let created = client.indices().create(IndicesCreateParts::Index(&next)).body(body).send().await?;
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
            { "add": { "index": next, "alias": &month } },
        ]}))
        .send()
        .await?;
    let status = swapped.status_code();
    anyhow::ensure!(status.is_success(), "swapping {alias} to {next}: {status} {}", swapped.text().await?);
    let documents = copied["total"].as_u64().unwrap_or(0);
    tracing::info!(alias, from = index, to = %next, documents, "index migrated");
    Ok(Migrated { alias: alias.to_owned(), from: index.to_owned(), to: next, documents })
}

/// A rebuild's switch: in one atomic `_aliases` request per tenant, the live indices go
/// and the copy's indices take the tenant's read aliases and the months' names.
pub async fn switch_copy(client: &Elasticsearch, live: Tenancy, copy: Tenancy) -> anyhow::Result<()> {
    let mut actions = Vec::new();
    for entity in ENTITIES {
        let (live_alias, copy_alias) = (live.es_alias(entity), copy.es_alias(entity));
        let copies = indices_of(client, &copy_alias).await?;
        if copies.is_empty() {
            continue; // nothing rebuilt for this entity: the live indices stay
        }
        for index in indices_of(client, &live_alias).await? {
            actions.push(json!({ "remove_index": { "index": index } }));
        }
        for index in copies {
            actions.push(json!({ "add": { "index": index, "alias": live_alias } }));
            actions.push(json!({ "add": { "index": index, "alias": month_name(&live_alias, &index) } }));
            actions.push(json!({ "remove": { "index": index, "alias": copy_alias } }));
        }
    }
    if actions.is_empty() {
        return Ok(());
    }
    let swapped = client.indices().update_aliases().body(json!({ "actions": actions })).send().await?;
    let status = swapped.status_code();
    anyhow::ensure!(status.is_success(), "switching the indices: {status} {}", swapped.text().await?);
    Ok(())
}

/// Deletes a copy's indices (an abandoned rebuild), by name.
pub async fn drop_indices(client: &Elasticsearch, copy: Tenancy) -> anyhow::Result<()> {
    for entity in ENTITIES {
        let indices = indices_of(client, &copy.es_alias(entity)).await?;
        if indices.is_empty() {
            continue;
        }
        let names: Vec<&str> = indices.iter().map(String::as_str).collect();
        client
            .indices()
            .delete(elasticsearch::indices::IndicesDeleteParts::Index(&names))
            .send()
            .await?
            .error_for_status_code()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_follow_the_month_name() {
        assert_eq!(versioned("tenant-ab-cases-2026-11"), ("tenant-ab-cases-2026-11", 1));
        assert_eq!(versioned("tenant-ab-cases-2026-11-v2"), ("tenant-ab-cases-2026-11", 2));
        assert_eq!(versioned("tenant-ab-audit-logs-2026-11-v12"), ("tenant-ab-audit-logs-2026-11", 12));
        // A rebuilt index (named after the rebuild's scratch id) serves the tenant's month.
        assert_eq!(month_name("tenant-ab-cases", "tenant-cd-cases-2026-11"), "tenant-ab-cases-2026-11");
        assert_eq!(month_name("tenant-ab-cases", "tenant-ab-cases-2026-11-v3"), "tenant-ab-cases-2026-11");
    }
}
