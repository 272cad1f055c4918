//! Builds the projector: the four projections, one worker (consumer group) each, and a
//! small HTTP server for health checks.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use elasticsearch::http::transport::Transport;
use elasticsearch::Elasticsearch;
use runtime::Settings;
use tokio::net::TcpListener;

use crate::parking::ParkingLot;
use crate::projection::Projection;
use crate::projections::{
    elastic::ElasticProjection, mongo_audit::MongoAuditProjection,
    mongo_field_definitions::MongoFieldDefinitionsProjection, mongo_notes::MongoNotesProjection,
    mongo_templates::MongoTemplatesProjection, postgres::PostgresProjection, redis_counters::RedisCountersProjection,
};
use crate::worker::Worker;

pub struct Application {
    port: u16,
    listener: TcpListener,
    workers: Vec<Worker>,
    pool: sqlx::PgPool,
    redis: redis::aio::ConnectionManager,
    statistics_every: Duration,
}

impl Application {
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let pool = runtime::db::connect_and_migrate(&settings.database_url, 10).await?;
        runtime::kafka::ensure_topic(&settings.kafka_brokers, &settings.kafka_topic, settings.kafka_partitions).await?;

        let mongo = mongodb::Client::with_uri_str(&settings.mongo_url).await.context("connecting to MongoDB")?;
        let transport = Transport::single_node(&settings.elastic_url).context("configuring Elasticsearch")?;
        let elastic = Elasticsearch::new(transport);
        let redis = redis::Client::open(settings.redis_url.as_str()).context("configuring Redis")?;
        let redis = redis::aio::ConnectionManager::new(redis).await.context("connecting to Redis")?;

        let projections: Vec<Arc<dyn Projection>> = vec![
            Arc::new(PostgresProjection::new(pool.clone())),
            Arc::new(MongoAuditProjection::new(mongo.database(&settings.mongo_database))),
            Arc::new(MongoNotesProjection::new(mongo.database(&settings.mongo_database))),
            Arc::new(MongoTemplatesProjection::new(mongo.database(&settings.mongo_database))),
            Arc::new(MongoFieldDefinitionsProjection::new(mongo.database(&settings.mongo_database))),
            Arc::new(ElasticProjection::new(elastic).await.context("preparing Elasticsearch")?),
            Arc::new(RedisCountersProjection::new(redis.clone())),
        ];
        let parking = Arc::new(ParkingLot::new(pool.clone()));
        let workers = projections
            .into_iter()
            .map(|p| {
                Worker::new(
                    p,
                    parking.clone(),
                    &settings.kafka_brokers,
                    &settings.kafka_topic,
                    &settings.kafka_group_prefix,
                )
            })
            .collect();

        let (listener, port) = runtime::http::bind(&settings.host, settings.projector_port).await?;
        Ok(Self { port, listener, workers, pool, redis, statistics_every: settings.statistics_refresh })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs every projection until SIGINT/SIGTERM, then lets each finish its batch and
    /// leave its consumer group. Dropping this future (as a test that kills the projector
    /// does) aborts every worker with it.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut workers = tokio::task::JoinSet::new();
        for worker in self.workers {
            let stopped = stopped.clone();
            workers.spawn(async move {
                if let Err(e) = worker.run_until_stopped(stopped).await {
                    tracing::error!(error = ?e, "projection worker stopped");
                }
            });
        }
        let mut maintenance = tokio::task::JoinSet::new();
        maintenance.spawn(crate::maintenance::maintain_partitions(self.pool.clone(), Duration::from_secs(3600)));
        maintenance.spawn(crate::maintenance::refresh_statistics(self.pool, self.redis, self.statistics_every));
        let router = runtime::http::with_common_layers(axum::Router::new(), 1024);
        tracing::info!(port = self.port, "projector health endpoint listening");
        let served = runtime::http::serve(self.listener, router).await;
        let _ = stop.send(true);
        let drained =
            tokio::time::timeout(Duration::from_secs(20), async { while workers.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!("projection workers did not stop within 20 s; aborting them");
            workers.abort_all();
        }
        served.context("serving HTTP")
    }
}
