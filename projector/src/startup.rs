//! Builds the projector: the four projections, one worker (consumer group) each, the
//! webhook sender, and a small HTTP server for health checks.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use runtime::Settings;
use tokio::net::TcpListener;

use crate::lease::Share;
use crate::parking::ParkingLot;
use crate::stores::{ProjectionName, Stores};
use crate::worker::Worker;

pub struct Application {
    port: u16,
    listener: TcpListener,
    workers: Vec<Worker>,
    share: Arc<Share>,
    stores: Stores,
    statistics_every: Duration,
    webhooks: crate::webhooks::Sender,
}

impl Application {
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        // Before any task records a metric: one recorded without a recorder is lost.
        runtime::metrics::install();
        let stores = Stores::connect(settings, 24).await?;
        runtime::kafka::ensure_topic(&settings.kafka_brokers, &settings.kafka_topic, settings.kafka_partitions).await?;

        let parking = Arc::new(ParkingLot::new(stores.pool.clone()));
        let instance = format!("{}.{}", settings.kafka_group_prefix, settings.kafka_topic);
        let share = Share::join(stores.pool.clone(), &instance, ProjectionName::ALL.len()).await?;
        let mut workers = Vec::new();
        for name in ProjectionName::ALL {
            let projection = stores.projection(name).await?;
            workers.push(Worker::new(projection, parking.clone(), stores.pool.clone(), share.clone(), settings));
        }

        let (listener, port) = runtime::http::bind(&settings.host, settings.projector_port).await?;
        let webhooks = crate::webhooks::Sender::new(stores.pool.clone(), settings.webhooks)?;
        Ok(Self { port, listener, workers, share, stores, statistics_every: settings.statistics_refresh, webhooks })
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
        maintenance.spawn(self.share.clone().keep_up(Duration::from_secs(2)));
        let pool = self.stores.pool.clone();
        maintenance.spawn(crate::maintenance::maintain_partitions(pool.clone(), Duration::from_secs(3600)));
        maintenance.spawn(crate::maintenance::refresh_statistics(
            pool,
            self.stores.redis().await?,
            self.statistics_every,
        ));
        maintenance.spawn(crate::operations::export_lag(self.stores.clone(), Duration::from_secs(5)));
        maintenance.spawn(crate::rebuild::clean_up_periodically(self.stores.clone(), Duration::from_secs(60)));
        maintenance.spawn(self.webhooks.run_until_stopped());
        maintenance.spawn(crate::retention::maintain(self.stores.clone()));
        let mongo = self.stores.mongo.database(&self.stores.settings.mongo_database);
        maintenance.spawn(crate::projections::mongo_audit::keep_audit_logs_by_month(mongo, self.stores.pool.clone()));
        let probes = self.stores.probes().await?;
        let admin = crate::admin::router(self.stores.clone());
        let router = runtime::http::with_common_layers("projector", admin, 64 * 1024, probes);
        tracing::info!(port = self.port, "projector health endpoint listening");
        let served = runtime::http::serve(self.listener, router).await;
        self.share.leave().await;
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
