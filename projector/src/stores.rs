//! The connections to the four stores, and every projection by name: what the projector
//! service runs and what the operator commands (`murima-admin`) act on.

use std::sync::Arc;

use anyhow::Context;
use elasticsearch::http::transport::Transport;
use elasticsearch::Elasticsearch;
use runtime::metrics::{probe_elastic, probe_mongo, probe_redis, Probe};
use runtime::Settings;
use sqlx::PgPool;

use crate::projection::{Placement, Projection};
use crate::projections::{
    elastic::ElasticProjection, mongo_audit::MongoAuditProjection,
    mongo_field_definitions::MongoFieldDefinitionsProjection, mongo_notes::MongoNotesProjection,
    mongo_templates::MongoTemplatesProjection, postgres::PostgresProjection, redis_counters::RedisCountersProjection,
};

/// Every projection: its name (the consumer-group suffix) and the store it builds.
pub const PROJECTIONS: &[(&str, &str)] = &[
    ("postgres", "postgresql"),
    ("mongo", "mongodb"),
    ("mongo_notes", "mongodb"),
    ("mongo_templates", "mongodb"),
    ("mongo_field_definitions", "mongodb"),
    ("elasticsearch", "elasticsearch"),
    ("redis", "redis"),
];

/// The MongoDB collection each MongoDB projection owns (what its rebuild switches).
pub const MONGO_OWNED: &[(&str, &str)] = &[
    ("mongo", runtime::tenancy::AUDIT_LOGS),
    ("mongo_notes", crate::mongo::CASE_NOTES),
    ("mongo_templates", crate::mongo::MESSAGE_TEMPLATES),
    ("mongo_field_definitions", crate::mongo::CUSTOM_FIELD_DEFINITIONS),
];

#[derive(Clone)]
pub struct Stores {
    pub settings: Settings,
    pub pool: PgPool,
    pub mongo: mongodb::Client,
    pub elastic: Elasticsearch,
    pub redis: redis::aio::ConnectionManager,
}

impl Stores {
    pub async fn connect(settings: &Settings, pool_size: u32) -> anyhow::Result<Self> {
        let pool = runtime::db::connect_service(settings, pool_size).await?;
        let mongo = mongodb::Client::with_uri_str(&settings.mongo_url).await.context("connecting to MongoDB")?;
        let transport = Transport::single_node(&settings.elastic_url).context("configuring Elasticsearch")?;
        let elastic = Elasticsearch::new(transport);
        let redis = runtime::redis_connection::connect(&settings.redis_url).await?;
        Ok(Self { settings: settings.clone(), pool, mongo, elastic, redis })
    }

    /// The consumer group of a projection, which also names its checkpoints and progress.
    pub fn group(&self, projection: &str) -> String {
        format!("{}.{projection}", self.settings.kafka_group_prefix)
    }

    /// The live projection called `name`.
    pub async fn projection(&self, name: &str) -> anyhow::Result<Arc<dyn Projection>> {
        let db = self.mongo.database(&self.settings.mongo_database);
        Ok(match name {
            "postgres" => Arc::new(PostgresProjection::new(self.pool.clone())),
            "mongo" => Arc::new(MongoAuditProjection::new(db)),
            "mongo_notes" => Arc::new(MongoNotesProjection::new(db)),
            "mongo_templates" => Arc::new(MongoTemplatesProjection::new(db)),
            "mongo_field_definitions" => Arc::new(MongoFieldDefinitionsProjection::new(db)),
            "elasticsearch" => {
                Arc::new(ElasticProjection::new(self.elastic.clone()).await.context("preparing Elasticsearch")?)
            }
            "redis" => Arc::new(RedisCountersProjection::new(self.redis.clone())),
            other => anyhow::bail!("no projection is called {other:?}; they are: {}", names()),
        })
    }

    /// A projection writing into a rebuild's copies.
    pub async fn placed(&self, name: &str, placement: Placement) -> anyhow::Result<Arc<dyn Projection>> {
        let db = self.mongo.database(&self.settings.mongo_database);
        Ok(match name {
            "postgres" => Arc::new(PostgresProjection::placed(self.pool.clone(), placement)),
            "mongo" => Arc::new(MongoAuditProjection::placed(db, placement)),
            "mongo_notes" => Arc::new(MongoNotesProjection::placed(db, placement)),
            "mongo_templates" => Arc::new(MongoTemplatesProjection::placed(db, placement)),
            "mongo_field_definitions" => Arc::new(MongoFieldDefinitionsProjection::placed(db, placement)),
            "elasticsearch" => Arc::new(
                ElasticProjection::placed(self.elastic.clone(), placement).await.context("preparing Elasticsearch")?,
            ),
            "redis" => Arc::new(RedisCountersProjection::placed(self.redis.clone(), placement)),
            other => anyhow::bail!("no projection is called {other:?}; they are: {}", names()),
        })
    }

    /// What `/readyz` checks for the projector.
    pub fn probes(&self) -> Vec<Probe> {
        vec![
            Probe::postgres(self.pool.clone()),
            probe_redis(self.redis.clone()),
            probe_mongo(self.mongo.clone()),
            probe_elastic(self.elastic.clone()),
            Probe::kafka(&self.settings.kafka_brokers),
        ]
    }
}

pub fn names() -> String {
    PROJECTIONS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

/// Refuses names that are not projections, with the list of those that are.
pub fn known(name: &str) -> anyhow::Result<&'static str> {
    PROJECTIONS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(n, _)| *n)
        .ok_or_else(|| anyhow::anyhow!("no projection is called {name:?}; they are: {}", names()))
}
