//! The connections to the four stores, and every projection by name: what the projector
//! service runs and what the operator commands (`murima-admin`) act on.

use std::sync::Arc;

use anyhow::Context;
use elasticsearch::Elasticsearch;
use redis::aio::ConnectionManager;
use runtime::metrics::{probe_elastic, probe_mongo, probe_redis, Probe};
use runtime::Settings;
use sqlx::PgPool;

use crate::projection::{Placement, Projection};
use crate::projections::{
    elastic::ElasticProjection, mongo_audit::MongoAuditProjection, mongo_documents::MongoDocuments,
    mongo_field_definitions::FieldDefinitions, mongo_notes::Notes, mongo_templates::Templates,
    postgres::PostgresProjection, redis_counters::RedisCountersProjection,
};

/// Declares `ProjectionName` and, from the same list, `ProjectionName::ALL` (what the
/// projector starts) and each one's name: a projection declared is a projection run.
macro_rules! projections {
    ($($variant:ident => $name:literal,)+) => {
        /// Every projection, the one list of them: its name is the consumer-group suffix,
        /// and each match over it (which store it builds, how a rebuild copies, switches
        /// and drops it) fails to compile until a new projection is handled.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ProjectionName {
            $($variant,)+
        }

        impl ProjectionName {
            /// Every projection, in the order declared.
            pub const ALL: [ProjectionName; [$($name),+].len()] = [$(ProjectionName::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(ProjectionName::$variant => $name,)+
                }
            }
        }
    };
}

projections! {
    Postgres => "postgres",
    Mongo => "mongo",
    MongoNotes => "mongo_notes",
    MongoTemplates => "mongo_templates",
    MongoFieldDefinitions => "mongo_field_definitions",
    Elasticsearch => "elasticsearch",
    Redis => "redis",
}

/// The store a projection builds, and what of it the projection owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// A schema per tenant.
    Postgres,
    /// One collection per tenant (what a rebuild switches); the audit projection also
    /// creates the others.
    Mongo { owns: &'static str },
    /// Indices per tenant and month.
    Elasticsearch,
    /// A key prefix per tenant.
    Redis,
}

impl ProjectionName {
    pub fn store(self) -> StoreKind {
        match self {
            ProjectionName::Postgres => StoreKind::Postgres,
            ProjectionName::Mongo => StoreKind::Mongo { owns: runtime::tenancy::AUDIT_LOGS },
            ProjectionName::MongoNotes => StoreKind::Mongo { owns: crate::mongo::CASE_NOTES },
            ProjectionName::MongoTemplates => StoreKind::Mongo { owns: crate::mongo::MESSAGE_TEMPLATES },
            ProjectionName::MongoFieldDefinitions => StoreKind::Mongo { owns: crate::mongo::CUSTOM_FIELD_DEFINITIONS },
            ProjectionName::Elasticsearch => StoreKind::Elasticsearch,
            ProjectionName::Redis => StoreKind::Redis,
        }
    }

    /// The store's name as the health probes and operators call it.
    pub fn store_name(self) -> &'static str {
        use runtime::position::Store;
        match self.store() {
            StoreKind::Postgres => Store::Postgres,
            StoreKind::Mongo { .. } => Store::Mongo,
            StoreKind::Elasticsearch => Store::Elastic,
            StoreKind::Redis => Store::Redis,
        }
        .name()
    }
}

impl std::fmt::Display for ProjectionName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Bound in queries as its name (`projection` columns are text: a test's own projection
/// keeps rows there under a name of its own, so names read back stay strings).
impl sqlx::Type<sqlx::Postgres> for ProjectionName {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <&str as sqlx::Type<sqlx::Postgres>>::type_info()
    }

    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <&str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
    }
}

impl<'q> sqlx::Encode<'q, sqlx::Postgres> for ProjectionName {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <&str as sqlx::Encode<'q, sqlx::Postgres>>::encode_by_ref(&self.as_str(), buf)
    }
}

impl std::str::FromStr for ProjectionName {
    type Err = anyhow::Error;

    /// Refuses names that are not projections, with the list of those that are.
    fn from_str(name: &str) -> anyhow::Result<Self> {
        ProjectionName::ALL
            .into_iter()
            .find(|p| p.as_str() == name)
            .ok_or_else(|| anyhow::anyhow!("no projection is called {name:?}; they are: {}", names()))
    }
}

#[derive(Clone)]
pub struct Stores {
    pub settings: Settings,
    pub pool: PgPool,
    pub mongo: mongodb::Client,
    pub elastic: Elasticsearch,
    redis: Arc<tokio::sync::OnceCell<ConnectionManager>>,
}

impl Stores {
    /// Every store, Redis connected now (the projector needs all of them).
    pub async fn connect(settings: &Settings, pool_size: u32) -> anyhow::Result<Self> {
        let stores = Self::connect_on_demand(settings, pool_size).await?;
        stores.redis().await?;
        Ok(stores)
    }

    /// Every store, Redis connected on first use: an operator command that does not need
    /// it (`status`) answers while Redis does not.
    pub async fn connect_on_demand(settings: &Settings, pool_size: u32) -> anyhow::Result<Self> {
        // No server-side statement deadline: a worker's attempt is bounded by the apply
        // deadline, and an operator's switch or index build may rightly take longer.
        runtime::subject_keys::use_kek(settings)?;
        let pool = runtime::db::connect_service(settings, pool_size, None).await?;
        let mongo = runtime::clients::mongo(&settings.mongo_url, settings.store_deadline).await?;
        // A bulk request of a whole batch may take longer than one read.
        let elastic = runtime::clients::elastic(&settings.elastic_url, settings.apply_deadline)?;
        Ok(Self { settings: settings.clone(), pool, mongo, elastic, redis: Arc::default() })
    }

    /// The Redis connection, made on first use.
    pub async fn redis(&self) -> anyhow::Result<ConnectionManager> {
        let connect = || runtime::redis_connection::connect(&self.settings.redis_url);
        self.redis.get_or_try_init(connect).await.cloned()
    }

    /// The consumer group of a projection, which also names its checkpoints and progress.
    pub fn group(&self, projection: &str) -> String {
        format!("{}.{projection}", self.settings.kafka_group_prefix)
    }

    /// The live projection called `name`.
    pub async fn projection(&self, name: ProjectionName) -> anyhow::Result<Arc<dyn Projection>> {
        let db = self.mongo.database(&self.settings.mongo_database);
        Ok(match name {
            ProjectionName::Postgres => Arc::new(PostgresProjection::new(self.pool.clone())),
            ProjectionName::Mongo => Arc::new(MongoAuditProjection::new(db)),
            ProjectionName::MongoNotes => Arc::new(MongoDocuments::<Notes>::new(db)),
            ProjectionName::MongoTemplates => Arc::new(MongoDocuments::<Templates>::new(db)),
            ProjectionName::MongoFieldDefinitions => Arc::new(MongoDocuments::<FieldDefinitions>::new(db)),
            ProjectionName::Elasticsearch => {
                Arc::new(ElasticProjection::new(self.elastic.clone()).await.context("preparing Elasticsearch")?)
            }
            ProjectionName::Redis => Arc::new(RedisCountersProjection::new(self.redis().await?)),
        })
    }

    /// A projection writing into a rebuild's copies.
    pub async fn placed(&self, name: ProjectionName, placement: Placement) -> anyhow::Result<Arc<dyn Projection>> {
        let db = self.mongo.database(&self.settings.mongo_database);
        Ok(match name {
            ProjectionName::Postgres => Arc::new(PostgresProjection::placed(self.pool.clone(), placement)),
            ProjectionName::Mongo => Arc::new(MongoAuditProjection::placed(db, placement)),
            ProjectionName::MongoNotes => Arc::new(MongoDocuments::<Notes>::placed(db, placement)),
            ProjectionName::MongoTemplates => Arc::new(MongoDocuments::<Templates>::placed(db, placement)),
            ProjectionName::MongoFieldDefinitions => {
                Arc::new(MongoDocuments::<FieldDefinitions>::placed(db, placement))
            }
            ProjectionName::Elasticsearch => Arc::new(
                ElasticProjection::placed(self.elastic.clone(), placement).await.context("preparing Elasticsearch")?,
            ),
            ProjectionName::Redis => Arc::new(RedisCountersProjection::placed(self.redis().await?, placement)),
        })
    }

    /// What `/readyz` checks for the projector.
    pub async fn probes(&self) -> anyhow::Result<Vec<Probe>> {
        Ok(vec![
            Probe::postgres(self.pool.clone()),
            probe_redis(self.redis().await?),
            probe_mongo(self.mongo.clone()),
            probe_elastic(self.elastic.clone()),
            Probe::kafka(&self.settings.kafka_brokers),
        ])
    }
}

pub fn names() -> String {
    ProjectionName::ALL.map(ProjectionName::as_str).join(", ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn every_projection_declared_is_listed_once_and_found_by_its_name() {
        let names: std::collections::BTreeSet<&str> = ProjectionName::ALL.iter().map(|p| p.as_str()).collect();
        assert_eq!(names.len(), ProjectionName::ALL.len(), "names are unique");
        for projection in ProjectionName::ALL {
            assert_eq!(projection.as_str().parse::<ProjectionName>().unwrap(), projection);
        }
        let refused = "mongo_audit".parse::<ProjectionName>().unwrap_err().to_string();
        assert!(refused.contains("they are: postgres, mongo,"), "{refused}");
    }
}
