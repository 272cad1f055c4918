//! What every service exposes to operators: `/metrics` (Prometheus text format),
//! `/healthz` (the process answers) and `/readyz` (its dependencies answer).
//!
//! Metric names (all services share one recorder per process):
//! - `http_requests_total{service,method,route,status}` and
//!   `http_request_duration_seconds{...}` (histogram), recorded by [`track_requests`];
//!   `route` is the matched route template, never the raw path, so ids do not explode
//!   the label set.
//! - the command API adds `commands_total{outcome,reason}` and `events_appended_total`;
//! - the projector adds `projection_batch_events`, `projection_events_applied_total`,
//!   `projection_lag_events`, `projection_lag_seconds` and `projection_parked_events`,
//!   each labelled by `projection`.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::future::BoxFuture;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;

/// Latency buckets in seconds: 1 ms to 10 s.
const SECONDS_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process's recorder once (tests run three services in one process) and
/// keeps its histograms drained.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(SECONDS_BUCKETS)
                .and_then(|b| b.install_recorder())
                .unwrap_or_else(|e| {
                    // Another recorder already owns the process: render an empty one.
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    PrometheusBuilder::new().build_recorder().handle()
                });
            let upkeep = handle.clone();
            std::thread::spawn(move || loop {
                std::thread::sleep(Duration::from_secs(5));
                upkeep.run_upkeep();
            });
            handle
        })
        .clone()
}

/// One dependency check for `/readyz`: a name and a probe that answers within a second.
pub struct Probe {
    pub name: &'static str,
    pub check: Box<dyn Fn() -> BoxFuture<'static, anyhow::Result<()>> + Send + Sync>,
}

impl Probe {
    pub fn new<F, Fut>(name: &'static str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        Self { name, check: Box::new(move || Box::pin(check())) }
    }

    pub fn postgres(pool: sqlx::PgPool) -> Self {
        Self::new("postgres", move || {
            let pool = pool.clone();
            async move {
                sqlx::query("SELECT 1").execute(&pool).await?;
                Ok(())
            }
        })
    }

    pub fn kafka(brokers: &str) -> Self {
        let brokers = brokers.to_owned();
        Self::new("kafka", move || {
            let brokers = brokers.clone();
            async move {
                tokio::task::spawn_blocking(move || crate::kafka::reachable(&brokers, Duration::from_secs(1))).await?
            }
        })
    }
}

/// `/metrics`, `/healthz` and `/readyz` for a service with these dependencies.
pub fn routes(service: &'static str, probes: Vec<Probe>) -> Router {
    let handle = install();
    let probes = Arc::new(probes);
    Router::new()
        .route("/metrics", get(move || std::future::ready(render(&handle))))
        .route("/healthz", get(move || std::future::ready(Json(json!({ "status": "alive", "service": service })))))
        .route("/readyz", get(move || ready(service, probes.clone())))
}

fn render(handle: &PrometheusHandle) -> Response {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], handle.render()).into_response()
}

async fn ready(service: &'static str, probes: Arc<Vec<Probe>>) -> Response {
    let checks = futures::future::join_all(probes.iter().map(|p| async move {
        let outcome = tokio::time::timeout(Duration::from_secs(2), (p.check)()).await;
        let error = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("{e:#}")),
            Err(_) => Some("no answer within 2 s".to_owned()),
        };
        (p.name, error)
    }))
    .await;
    let ready = checks.iter().all(|(_, e)| e.is_none());
    let dependencies: serde_json::Map<String, serde_json::Value> = checks
        .into_iter()
        .map(|(name, error)| {
            let state = match error {
                None => json!({ "status": "up" }),
                Some(e) => json!({ "status": "down", "error": e }),
            };
            (name.to_owned(), state)
        })
        .collect();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({ "status": if ready { "ready" } else { "not ready" }, "service": service, "dependencies": dependencies });
    (status, Json(body)).into_response()
}

/// Middleware: counts and times every request by method, route template and status.
pub async fn track_requests(service: &'static str, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let response = next.run(request).await;
    let labels = [
        ("service", service.to_owned()),
        ("method", method),
        ("route", route),
        ("status", response.status().as_u16().to_string()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels).record(started.elapsed().as_secs_f64());
    response
}

#[cfg(feature = "sessions")]
pub fn probe_redis(redis: redis::aio::ConnectionManager) -> Probe {
    Probe::new("redis", move || {
        let mut redis = redis.clone();
        async move {
            let _: String = redis::cmd("PING").query_async(&mut redis).await?;
            Ok(())
        }
    })
}

#[cfg(feature = "stores")]
pub fn probe_mongo(client: mongodb::Client) -> Probe {
    Probe::new("mongodb", move || {
        let client = client.clone();
        async move {
            client.database("admin").run_command(mongodb::bson::doc! { "ping": 1 }).await?;
            Ok(())
        }
    })
}

#[cfg(feature = "stores")]
pub fn probe_elastic(elastic: elasticsearch::Elasticsearch) -> Probe {
    Probe::new("elasticsearch", move || {
        let elastic = elastic.clone();
        async move {
            let answer = elastic.ping().send().await?;
            anyhow::ensure!(answer.status_code().is_success(), "ping answered {}", answer.status_code());
            Ok(())
        }
    })
}
