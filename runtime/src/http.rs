//! Serving a router: request ids, request logs, body limits, health and a problem+json 404.

use axum::extract::DefaultBodyLimit;
use axum::http::HeaderName;
use axum::Router;
use tokio::net::TcpListener;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::metrics::Probe;
use crate::problem::ApiError;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Wraps a service's routes with what every Murima HTTP API has: `/metrics`, `/healthz`,
/// `/readyz` (checking `probes`), request metrics, request ids and logs, a body limit.
pub fn with_common_layers(service: &'static str, routes: Router, max_body_bytes: usize, probes: Vec<Probe>) -> Router {
    routes
        .merge(crate::metrics::routes(service, probes))
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(TraceLayer::new_for_http())
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(axum::middleware::from_fn(move |request, next| crate::metrics::track_requests(service, request, next)))
}

/// Binds `host:port` (port 0 picks a free one, as tests do) and says which port it got.
pub async fn bind(host: &str, port: u16) -> anyhow::Result<(TcpListener, u16)> {
    let address = format!("{host}:{port}");
    let listener = TcpListener::bind(&address).await.map_err(|e| anyhow::anyhow!("binding {address}: {e}"))?;
    let port = listener.local_addr()?.port();
    Ok((listener, port))
}

pub async fn serve(listener: TcpListener, router: Router) -> std::io::Result<()> {
    axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(shutdown_signal())
        .await
}

pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
}
