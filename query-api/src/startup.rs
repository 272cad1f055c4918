//! Builds the query API over the four read models.

use anyhow::Context;
use runtime::auth::JwtKeys;
use runtime::metrics::{probe_elastic, probe_mongo, probe_redis, Probe};
use runtime::Settings;
use tokio::net::TcpListener;

use crate::routes::{router, AppState};

pub struct Application {
    port: u16,
    listener: TcpListener,
    router: axum::Router,
    /// Listens for projection progress (`consistency::follow_progress`).
    progress: sqlx::PgPool,
}

impl Application {
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let pool = runtime::db::connect_service(settings, 20, Some(settings.store_deadline)).await?;
        let mongo = runtime::clients::mongo(&settings.mongo_url, settings.store_deadline).await?;
        let elastic = runtime::clients::elastic(&settings.elastic_url, settings.store_deadline)?;
        let redis = runtime::redis_connection::connect(&settings.redis_url).await?;
        let probes = vec![
            Probe::postgres(pool.clone()),
            probe_redis(redis.clone()),
            probe_mongo(mongo.clone()),
            probe_elastic(elastic.clone()),
        ];
        let progress = pool.clone();
        let state = AppState {
            pool,
            mongo: mongo.database(&settings.mongo_database),
            elastic,
            sessions: runtime::session::Sessions::new(redis.clone()),
            redis: redis.clone(),
            keys: JwtKeys::new(&settings.jwt_secret),
            read_wait: settings.read_wait,
            viewer_window: settings.viewer_window,
            postgres_projection: format!("{}.postgres", settings.kafka_group_prefix),
            field_visibility: Default::default(),
        };
        let keys = state.keys.clone();
        let api = runtime::http::with_deadline(router(state), settings.request_deadline());
        let api = runtime::limits::layered(api, redis, keys, settings);
        let router = runtime::http::with_common_layers("query-api", api, settings.max_body_bytes, probes);
        let (listener, port) = runtime::http::bind(&settings.host, settings.query_port).await?;
        Ok(Self { port, listener, router, progress })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        tracing::info!(port = self.port, "query API listening");
        // Aborted with this future: a JoinSet of one.
        let mut progress = tokio::task::JoinSet::new();
        progress.spawn(crate::consistency::follow_progress(self.progress));
        runtime::http::serve(self.listener, self.router).await.context("serving HTTP")
    }
}
