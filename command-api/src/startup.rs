//! Builds the command API: database (migrated), journal, relay, SLA scheduler and HTTP
//! server.

use std::sync::Arc;

use anyhow::Context;
use runtime::auth::JwtKeys;
use runtime::metrics::{probe_redis, Probe};
use runtime::session::Sessions;
use runtime::Settings;
use tokio::net::TcpListener;

use crate::journal::Journal;
use crate::relay::Relay;
use crate::requested_tasks::RequestedTasks;
use crate::routes::{router, AppState};
use crate::sla::SlaScheduler;

pub struct Application {
    port: u16,
    listener: TcpListener,
    router: axum::Router,
    relay: Relay,
    journal: Journal,
    sla_tick: std::time::Duration,
}

impl Application {
    /// Binds `settings.command_port` (0 picks a free port, as tests do).
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        // Before any task records a metric: one recorded without a recorder is lost.
        runtime::metrics::install();
        let pool = runtime::db::connect_service(settings, 20, Some(settings.store_deadline)).await?;
        let wake = Arc::new(tokio::sync::Notify::new());
        let relay = Relay::new(
            pool.clone(),
            &settings.kafka_brokers,
            &settings.kafka_topic,
            settings.kafka_partitions,
            wake.clone(),
            settings.relay_audit_interval,
        )?;
        let redis = runtime::redis_connection::connect(&settings.redis_url).await?;
        let probes =
            vec![Probe::postgres(pool.clone()), Probe::kafka(&settings.kafka_brokers), probe_redis(redis.clone())];
        let keys = JwtKeys::new(&settings.jwt_secret);
        runtime::subject_keys::use_kek(settings)?;
        let config = crate::config_cache::ConfigCache::new(redis.clone());
        let journal = Journal::new(pool, wake, keys.clone(), settings.idempotency_ttl, config);
        let state = AppState {
            journal: journal.clone(),
            keys: keys.clone(),
            sessions: Sessions::new(redis.clone()),
            trusted_proxies: settings.trusted_proxies.clone().into(),
            login_guard: crate::login_guard::LoginGuard::new(
                redis.clone(),
                settings.rate_limits.map(|l| l.failed_logins_per_ip),
            ),
            webhooks: settings.webhooks,
        };
        let api = runtime::http::with_deadline(router(state), settings.request_deadline());
        let api = runtime::limits::layered(api, redis, keys, settings);
        let router = runtime::http::with_common_layers("command-api", api, settings.max_body_bytes, probes);
        let (listener, port) = runtime::http::bind(&settings.host, settings.command_port).await?;
        Ok(Self { port, listener, router, relay, journal, sla_tick: settings.sla_tick })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves commands and relays the journal until SIGINT/SIGTERM.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        tracing::info!(port = self.port, "command API listening");
        // A JoinSet aborts the relay when this future ends or is dropped.
        let mut relay = tokio::task::JoinSet::new();
        relay.spawn(self.relay.run_until_stopped());
        relay.spawn(self.journal.clone().follow_facts());
        relay.spawn(SlaScheduler::new(self.journal.clone(), self.sla_tick).run_until_stopped());
        relay.spawn(RequestedTasks::new(self.journal.clone(), self.sla_tick).run_until_stopped());
        relay.spawn(purge_idempotency(self.journal));
        let served = runtime::http::serve(self.listener, self.router).await;
        relay.abort_all();
        served.context("serving HTTP")
    }
}

/// How often expired idempotency records are deleted (lookups ignore them meanwhile).
const IDEMPOTENCY_PURGE_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Deletes expired idempotency records now and every `IDEMPOTENCY_PURGE_EVERY`, beside
/// the relay; every instance may run it (a DELETE of old rows is harmless twice).
async fn purge_idempotency(journal: Journal) -> anyhow::Result<()> {
    let mut every = tokio::time::interval(IDEMPOTENCY_PURGE_EVERY);
    loop {
        every.tick().await;
        match journal.purge_idempotency().await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "purged expired idempotency records"),
            Err(e) => tracing::warn!(error = %e, "purging expired idempotency records failed; will retry"),
        }
    }
}
