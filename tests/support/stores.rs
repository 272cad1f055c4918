//! What the stores hold for a test's tenant, read straight from them, and writes that
//! bypass the command API (a raw journal event).

use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use super::app::TestApp;
use super::poll::eventually;

/// Appends an event straight to the journal (as a buggy or older writer could have) and
/// queues it for the relay, bypassing the command API and its validation. Both in one
/// transaction, as every writer does: a command appended between the two (the SLA
/// scheduler reacts to the journal at once) would otherwise be relayed first and leave
/// the read models waiting for this event forever.
#[allow(clippy::too_many_arguments)]
pub async fn append_raw_event(
    app: &TestApp,
    tenant: Uuid,
    stream_type: &str,
    stream: Uuid,
    version: i64,
    event_type: &str,
    schema_version: i64,
    payload: Value,
) {
    let at = "2026-11-20T09:00:00Z".parse().expect("a time");
    append_raw_event_at(app, tenant, stream_type, stream, version, event_type, schema_version, payload, at).await
}

/// `append_raw_event`, the event dated `at` (the journal's time, which audit entries take).
#[allow(clippy::too_many_arguments)]
pub async fn append_raw_event_at(
    app: &TestApp,
    tenant: Uuid,
    stream_type: &str,
    stream: Uuid,
    version: i64,
    event_type: &str,
    schema_version: i64,
    payload: Value,
    at: chrono::DateTime<chrono::Utc>,
) {
    let event_id = Uuid::now_v7();
    let envelope = json!({
        "event_id": event_id, "tenant_id": tenant, "stream_type": stream_type, "stream_id": stream,
        "stream_version": version, "event_type": event_type, "schema_version": schema_version,
        "occurred_at": at, "actor": { "user_id": app.user_id, "role": "agent" },
        "correlation_id": Uuid::now_v7(), "causation_id": null, "payload": payload,
    });
    let mut tx = app.pool.begin().await.expect("a transaction");
    let position: i64 = sqlx::query_scalar(
        "INSERT INTO eventstore.events (event_id, tenant_id, stream_type, stream_id, stream_version, event_type,
            schema_version, occurred_at, envelope)
         VALUES ($1, $2, $7, $3, $4, $5, $8, $9, $6) RETURNING position",
    )
    .bind(event_id)
    .bind(tenant)
    .bind(stream)
    .bind(version)
    .bind(event_type)
    .bind(&envelope)
    .bind(stream_type)
    .bind(schema_version as i16)
    .bind(at)
    .fetch_one(&mut *tx)
    .await
    .expect("appending a raw event");
    sqlx::query("INSERT INTO eventstore.outbox (position) VALUES ($1)")
        .bind(position)
        .execute(&mut *tx)
        .await
        .expect("queueing a raw event");
    tx.commit().await.expect("committing a raw event");
}

/// What the four read models hold for the test's tenant, read straight from the stores.
#[derive(Debug, PartialEq, Eq)]
pub struct StoreCounts {
    /// Sum of case versions in PostgreSQL: equals the journal's case events when caught up.
    pub postgres_versions: i64,
    pub audit_entries: u64,
    /// Sum of case versions the Redis counters have counted.
    pub redis_versions: i64,
    pub elastic_versions: i64,
}

impl TestApp {
    /// Every document under a search alias (up to 10,000), with its `_version`; none
    /// when the index is not there yet.
    pub async fn every_hit(&self, alias: &str) -> Vec<Value> {
        let search: Value = self
            .http
            .post(format!("{}/{alias}/_search?version=true", self.settings.elastic_url))
            .json(&json!({ "size": 10000, "version": true, "query": { "match_all": {} } }))
            .send()
            .await
            .expect("elasticsearch")
            .json()
            .await
            .unwrap_or(Value::Null);
        search["hits"]["hits"].as_array().cloned().unwrap_or_default()
    }

    pub async fn store_counts(&self) -> StoreCounts {
        use redis::AsyncCommands;
        let t = runtime::tenancy::Tenancy(self.tenant_id);
        let postgres_versions: i64 =
            sqlx::query_scalar(&format!("SELECT COALESCE(sum(version), 0)::bigint FROM {}.cases", t.pg_schema()))
                .fetch_one(&self.pool)
                .await
                .unwrap_or(0);
        let audit_entries = self.audit_entries(self.tenant_id, mongodb::bson::doc! {}).await.len() as u64;
        let mut redis = redis::Client::open(self.settings.redis_url.as_str())
            .expect("redis")
            .get_multiplexed_async_connection()
            .await
            .expect("redis connection");
        let counted: std::collections::HashMap<String, String> =
            redis.hgetall(t.redis_counted_cases()).await.unwrap_or_default();
        let redis_versions = counted.values().filter_map(|v| v.split('|').next()?.parse::<i64>().ok()).sum();
        let hits = self.every_hit(&t.es_alias(runtime::tenancy::CASES)).await;
        let elastic_versions = hits.iter().filter_map(|h| h["_source"]["version"].as_i64()).sum();
        StoreCounts { postgres_versions, audit_entries, redis_versions, elastic_versions }
    }

    /// Waits until every read model reflects every journal event of this tenant.
    pub async fn wait_for_all_stores(&self) -> StoreCounts {
        let case_events = self.journal_count("case").await;
        let all_events: i64 = sqlx::query_scalar("SELECT count(*) FROM eventstore.events WHERE tenant_id = $1")
            .bind(self.tenant_id)
            .fetch_one(&self.pool)
            .await
            .expect("count journal");
        let _ = self.http.post(format!("{}/_refresh", self.settings.elastic_url)).send().await;
        let counts = eventually("every read model to catch up with the journal", || async {
            let _ = self.http.post(format!("{}/_refresh", self.settings.elastic_url)).send().await;
            let counts = self.store_counts().await;
            let expected = StoreCounts {
                postgres_versions: case_events,
                audit_entries: all_events as u64,
                redis_versions: case_events,
                elastic_versions: case_events,
            };
            (counts == expected).then_some(counts)
        })
        .await;
        // The notes have a projection of their own: every note event applied there too.
        let note_events = self.journal_count("note").await;
        let notes = mongodb::Client::with_uri_str(&self.settings.mongo_url)
            .await
            .expect("mongo")
            .database(&self.settings.mongo_database)
            .collection::<mongodb::bson::Document>(
                &runtime::tenancy::Tenancy(self.tenant_id).mongo_collection("case_notes"),
            );
        eventually("the notes projection to catch up with the journal", || async {
            use futures::TryStreamExt;
            let docs: Vec<mongodb::bson::Document> =
                notes.find(mongodb::bson::doc! {}).await.ok()?.try_collect().await.ok()?;
            let held: i64 = docs.iter().filter_map(|d| d.get_i64("version").ok()).sum();
            (held == note_events).then_some(())
        })
        .await;
        counts
    }

    /// Redis counters must equal a count over PostgreSQL.
    pub async fn assert_counters_match_postgres(&self) {
        let schema = runtime::tenancy::Tenancy(self.tenant_id).pg_schema();
        let count = |sql: String| async move {
            let rows: Vec<(String, i64)> = sqlx::query_as(&sql).fetch_all(&self.pool).await.expect("count cases");
            Value::Object(rows.into_iter().map(|(s, n)| (s, json!(n))).collect())
        };
        let open = "status NOT IN ('resolved', 'closed')";
        let expected = [
            ("cases_by_status", count(format!("SELECT status, count(*) FROM {schema}.cases GROUP BY 1")).await),
            (
                "open_cases_by_priority",
                count(format!("SELECT priority, count(*) FROM {schema}.cases WHERE {open} GROUP BY 1")).await,
            ),
            (
                "open_cases_by_assignee",
                count(format!(
                    "SELECT assigned_to::text, count(*) FROM {schema}.cases
                     WHERE assigned_to IS NOT NULL AND {open} GROUP BY 1"
                ))
                .await,
            ),
            (
                "open_cases_by_team",
                count(format!(
                    "SELECT assigned_team_id::text, count(*) FROM {schema}.cases
                     WHERE assigned_team_id IS NOT NULL AND {open} GROUP BY 1"
                ))
                .await,
            ),
        ];
        let counters: Value = self.query("/v1/counters", &self.token).await.json().await.expect("counters");
        for (name, counted) in expected {
            assert_eq!(counters[name], counted, "{name}: Redis against PostgreSQL");
        }
    }
}

/// Every read model of one tenant, reduced to comparable fingerprints: per PostgreSQL
/// table, Mongo collection, Elasticsearch alias and Redis key, the number of rows
/// (documents, entries) and a hash over their full contents in a stable order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreDigest(pub std::collections::BTreeMap<String, (usize, u64)>);

/// The tenant tables the projector fills (the statistics view holds `now()`-relative averages).
pub const TENANT_TABLES: [&str; 10] = [
    "cases",
    "users",
    "teams",
    "team_members",
    "case_types",
    "channels",
    "interactions",
    "documents",
    "tasks",
    "workflows",
];

fn fingerprint(mut rows: Vec<String>) -> (usize, u64) {
    use std::hash::{Hash, Hasher};
    rows.sort();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    rows.hash(&mut hasher);
    (rows.len(), hasher.finish())
}

impl TestApp {
    /// Fingerprints of this tenant's contents in all four stores.
    pub async fn store_digest(&self) -> StoreDigest {
        self.store_digest_of(self.tenant_id).await
    }

    /// Fingerprints of a tenant's contents in all four stores.
    pub async fn store_digest_of(&self, tenant: Uuid) -> StoreDigest {
        let contents = self.store_contents_of(tenant, false).await;
        StoreDigest(contents.into_iter().map(|(name, rows)| (name, fingerprint(rows))).collect())
    }

    /// Waits until the relational read model holds the tenant's retention of `days`
    /// (what a retention run and a restore read).
    pub async fn wait_for_retention(&self, tenant: Uuid, days: i64) {
        eventually("the retention in the tenants table", || async {
            let held: Option<i64> =
                sqlx::query_scalar("SELECT (settings->>'retention_days')::bigint FROM public.tenants WHERE id = $1")
                    .bind(tenant)
                    .fetch_one(&self.pool)
                    .await
                    .ok()?;
            (held == Some(days)).then_some(())
        })
        .await;
    }

    /// Every row, document and key of the tenant, in every store (caches and sessions
    /// too), that holds any of `texts`, named by its store.
    pub async fn stores_holding(&self, tenant: Uuid, texts: &[&str]) -> Vec<String> {
        let mut found = Vec::new();
        for (store, rows) in self.store_contents_of(tenant, true).await {
            found.extend(holding(&rows, texts).into_iter().map(|row| format!("{store}: {row}")));
        }
        found
    }

    /// The tenant's MongoDB audit entries `filter` finds, in every month, oldest first.
    pub async fn audit_entries(&self, tenant: Uuid, filter: mongodb::bson::Document) -> Vec<mongodb::bson::Document> {
        let mongo = mongodb::Client::with_uri_str(&self.settings.mongo_url).await.expect("mongo");
        let db = mongo.database(&self.settings.mongo_database);
        let oldest_first = mongodb::bson::doc! { "timestamp": 1, "_id": 1 };
        runtime::audit_log::find(&db, runtime::tenancy::Tenancy(tenant), filter, Some(oldest_first), None)
            .await
            .expect("read the audit log")
    }

    /// A tenant's contents in all four stores as text, per table, collection, index and
    /// key. `everything`: also what reads and logins write (caches, presence, sessions),
    /// which a replay does not reproduce.
    pub async fn store_contents_of(
        &self,
        tenant: Uuid,
        everything: bool,
    ) -> std::collections::BTreeMap<String, Vec<String>> {
        use futures::TryStreamExt;
        use redis::AsyncCommands;
        let t = runtime::tenancy::Tenancy(tenant);
        let mut digest = std::collections::BTreeMap::new();

        let schema = t.pg_schema();
        for table in TENANT_TABLES {
            let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT t::text FROM {schema}.{table} t"))
                .fetch_all(&self.pool)
                .await
                .expect("read a tenant table");
            digest.insert(format!("postgres:{table}"), rows);
        }
        let tenant: Vec<String> = sqlx::query_scalar("SELECT t::text FROM public.tenants t WHERE id = $1")
            .bind(tenant)
            .fetch_all(&self.pool)
            .await
            .expect("read the tenant row");
        digest.insert("postgres:tenants".into(), tenant);

        let mongo = mongodb::Client::with_uri_str(&self.settings.mongo_url).await.expect("mongo");
        let db = mongo.database(&self.settings.mongo_database);
        let prefix = t.mongo_collection("");
        for name in db.list_collection_names().await.expect("list collections") {
            if !name.starts_with(&prefix) {
                continue;
            }
            let docs: Vec<mongodb::bson::Document> = db
                .collection::<mongodb::bson::Document>(&name)
                .find(mongodb::bson::doc! {})
                .await
                .expect("read a collection")
                .try_collect()
                .await
                .expect("read a collection");
            let rows = docs.iter().map(|d| d.to_string()).collect();
            digest.insert(format!("mongo:{name}"), rows);
        }

        let _ = self.http.post(format!("{}/_refresh", self.settings.elastic_url)).send().await;
        for entity in [
            runtime::tenancy::CASES,
            runtime::tenancy::NOTES,
            runtime::tenancy::INTERACTIONS,
            runtime::tenancy::ES_AUDIT_LOGS,
        ] {
            let alias = t.es_alias(entity);
            let hits = self.every_hit(&alias).await;
            let rows = hits.iter().map(|h| format!("{}|{}|{}", h["_id"], h["_version"], h["_source"])).collect();
            digest.insert(format!("elasticsearch:{entity}"), rows);
        }

        let mut redis = redis::Client::open(self.settings.redis_url.as_str())
            .expect("redis")
            .get_multiplexed_async_connection()
            .await
            .expect("redis connection");
        let keys: Vec<String> = redis.keys(t.redis_key("*")).await.expect("list redis keys");
        for key in keys {
            // Presence, locks, the query API's caches (a case, a user's permissions), the
            // command API's tenant configuration cache and the sessions are written by
            // reads and logins, not projected from events.
            let cache = key.ends_with(":permissions")
                || key.ends_with(":config:tenant")
                || (key.contains(":case:") && !key.ends_with(":viewers"));
            let session = key.contains(":session:")
                || key.ends_with(":sessions")
                || key.ends_with(":revision")
                || key.ends_with(":tenant:status")
                || key.ends_with(":tenant:status_version");
            let written_by_reads = key.contains(":locks:")
                || key.ends_with(":viewers")
                || key.ends_with(":online_users")
                || cache
                || session;
            if written_by_reads && !everything {
                continue;
            }
            let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut redis).await.expect("key type");
            let rows: Vec<String> = match kind.as_str() {
                "hash" => {
                    let h: std::collections::BTreeMap<String, String> = redis.hgetall(&key).await.expect("hash");
                    h.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
                }
                // A list's order matters: keep it by prefixing the index.
                "list" => {
                    let l: Vec<String> = redis.lrange(&key, 0, -1).await.expect("list");
                    l.into_iter().enumerate().map(|(i, v)| format!("{i:06}:{v}")).collect()
                }
                "zset" => {
                    let z: Vec<(String, f64)> = redis.zrange_withscores(&key, 0, -1).await.expect("zset");
                    z.into_iter().map(|(m, s)| format!("{m}={s}")).collect()
                }
                "set" => redis.smembers(&key).await.expect("set"),
                _ => vec![redis.get::<_, Option<String>>(&key).await.expect("string").unwrap_or_default()],
            };
            digest.insert(format!("redis:{key}"), rows);
        }
        digest
    }

    /// The reference for a rebuilt or recovered read model: wipes the tenant's read models,
    /// replays the whole log with fresh consumer groups and no interruption, and asserts
    /// every store ends exactly as `expected`.
    pub async fn assert_same_as_fresh_replay(&mut self, expected: &StoreDigest) {
        self.kill_projector().await;
        self.wipe_read_models().await;
        self.settings.kafka_group_prefix = format!("{}.replay", self.settings.kafka_group_prefix);
        self.start_projector().await;
        self.wait_for_all_stores().await;
        let mut replayed = self.store_digest().await;
        for _ in 0..40 {
            if &replayed == expected {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            replayed = self.store_digest().await;
        }
        let differing: Vec<_> = expected
            .0
            .iter()
            .filter(|(key, value)| replayed.0.get(*key) != Some(value))
            .map(|(key, value)| (key, value, replayed.0.get(key)))
            .collect();
        assert!(differing.is_empty(), "stores differ from a fresh replay (key, expected, replayed): {differing:#?}");
        assert_eq!(replayed.0.len(), expected.0.len(), "the replay made other keys: {:?}", replayed.0.keys());
    }

    /// Deletes every read model of this tenant in all four stores (the journal stays).
    pub async fn wipe_read_models(&self) {
        use redis::AsyncCommands;
        let t = runtime::tenancy::Tenancy(self.tenant_id);
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {} CASCADE", t.pg_schema()))
            .execute(&self.pool)
            .await
            .expect("drop the tenant schema");
        sqlx::query("DELETE FROM public.tenants WHERE id = $1")
            .bind(self.tenant_id)
            .execute(&self.pool)
            .await
            .expect("delete the tenant row");
        let mongo = mongodb::Client::with_uri_str(&self.settings.mongo_url).await.expect("mongo");
        let db = mongo.database(&self.settings.mongo_database);
        let prefix = t.mongo_collection("");
        for name in db.list_collection_names().await.expect("list collections") {
            if name.starts_with(&prefix) {
                db.collection::<mongodb::bson::Document>(&name).drop().await.expect("drop a collection");
            }
        }
        let indices: Value = self
            .http
            .get(format!("{}/_cat/indices?format=json", self.settings.elastic_url))
            .send()
            .await
            .expect("elasticsearch")
            .json()
            .await
            .expect("index list");
        let own = format!("{}-", t.es_alias("").trim_end_matches('-'));
        for index in indices.as_array().into_iter().flatten().filter_map(|i| i["index"].as_str()) {
            if index.starts_with(&own) {
                self.http.delete(format!("{}/{index}", self.settings.elastic_url)).send().await.expect("delete index");
            }
        }
        let mut redis = redis::Client::open(self.settings.redis_url.as_str())
            .expect("redis")
            .get_multiplexed_async_connection()
            .await
            .expect("redis connection");
        let keys: Vec<String> = redis.keys(t.redis_key("*")).await.expect("list redis keys");
        if !keys.is_empty() {
            let _: i64 = redis.del(keys).await.expect("delete redis keys");
        }
    }
}

/// The `rows` that hold any of `texts`.
pub fn holding<'a>(rows: &'a [String], texts: &[&str]) -> Vec<&'a String> {
    rows.iter().filter(|row| texts.iter().any(|t| row.contains(t))).collect()
}
