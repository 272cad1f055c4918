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

/// The longest client-supplied header value (User-Agent, X-Request-Id, ...) kept in an
/// event or a log; longer ones are cut.
pub const MAX_HEADER_CHARS: usize = 512;

/// A header's value as text, cut to `MAX_HEADER_CHARS` characters.
pub fn header_text(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    let value = headers.get(name)?.to_str().ok()?;
    Some(value.chars().take(MAX_HEADER_CHARS).collect())
}

/// The client's address: the peer's, unless the peer is a trusted proxy, in which case
/// the nearest address in `X-Forwarded-For` that is not one of the trusted proxies.
pub fn client_ip(
    headers: &axum::http::HeaderMap,
    peer: Option<std::net::IpAddr>,
    trusted: &[std::net::IpAddr],
) -> Option<std::net::IpAddr> {
    let peer = peer?;
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let forwarded = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let hops: Vec<std::net::IpAddr> = forwarded.split(',').filter_map(|h| h.trim().parse().ok()).collect();
    Some(hops.into_iter().rev().find(|ip| !trusted.contains(ip)).unwrap_or(peer))
}

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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("x-forwarded-for", "6.6.6.6, 10.0.0.7".parse().unwrap());
        let (client, proxy, spoof) =
            ("10.0.0.7".parse().unwrap(), "10.0.0.1".parse().unwrap(), "6.6.6.6".parse().unwrap());
        assert_eq!(client_ip(&headers, Some(client), &[]), Some(client), "an untrusted peer is the client");
        assert_eq!(client_ip(&headers, Some(proxy), &[proxy]), Some(client), "the proxy's nearest hop");
        assert_ne!(client_ip(&headers, Some(proxy), &[proxy]), Some(spoof));
        let mut long = axum::http::HeaderMap::new();
        long.insert("user-agent", "a".repeat(600).parse().unwrap());
        assert_eq!(header_text(&long, "user-agent").unwrap().chars().count(), MAX_HEADER_CHARS);
    }
}
