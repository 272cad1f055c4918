//! Serving a router: request ids, request logs, body limits, health and a problem+json 404.

use axum::extract::DefaultBodyLimit;
use axum::http::HeaderName;
use axum::response::{IntoResponse, Response};
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
    // Bytes past ASCII (a browser's UTF-8 User-Agent) are kept, what is not UTF-8 as the
    // replacement character, rather than the whole value lost. Control characters (a tab,
    // C1 controls) and the marks that reorder text as it is shown go: the value is
    // shown to auditors.
    let value = String::from_utf8_lossy(headers.get(name)?.as_bytes());
    let shown = |c: &char| {
        !c.is_control() && !matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    Some(value.chars().filter(shown).take(MAX_HEADER_CHARS).collect())
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
        .layer(axum::middleware::from_fn(move |request, next| read_body_first(max_body_bytes, request, next)))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(TraceLayer::new_for_http())
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(axum::middleware::from_fn(move |request, next| crate::metrics::track_requests(service, request, next)))
}

/// Bounds every request of `routes` by `deadline`: one that is not answered by then (a
/// store that stops answering) gets 503 with `Retry-After: 1` instead of hanging.
pub fn with_deadline(routes: Router, deadline: std::time::Duration) -> Router {
    routes.layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| async move {
            match tokio::time::timeout(deadline, next.run(request)).await {
                Ok(response) => response,
                Err(_) => {
                    metrics::counter!("requests_past_deadline_total").increment(1);
                    tracing::warn!(?deadline, "a request passed its deadline");
                    ApiError::Busy {
                        detail: format!(
                            "the request was not answered within {deadline:?}: a store is slow to answer or does not \
                         answer; retry shortly"
                        ),
                        retry_after: 1,
                    }
                    .into_response()
                }
            }
        },
    ))
}

/// How much of an oversized body is read and thrown away, and for how long, so that the
/// client reads the 413 instead of a reset: a server that answers and closes while the
/// client still writes makes the client's write fail (EPIPE, "broken pipe") before it
/// looks for an answer. Production proxies do the same (nginx's lingering close).
const DRAIN_BYTES: u64 = 16 * 1024 * 1024;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads every request body whole (up to `max` bytes) before any route, extractor or
/// guard sees the request, so no answer (401, 415, 429 or 413) leaves a body unread on
/// the connection. A body over `max` is drained (up to `DRAIN_BYTES`, for `DRAIN_TIME`)
/// and answered 413; one declared beyond `DRAIN_BYTES` is answered at once, and the
/// connection closed.
async fn read_body_first(max: usize, request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use futures::StreamExt as _;
    let too_large = || ApiError::PayloadTooLarge(format!("the request body is over {max} bytes; send a smaller body"));
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_BYTES) {
        return closing(too_large().into_response());
    }
    let limit = u64::try_from(max).unwrap_or(u64::MAX);
    let mut chunks = body.into_data_stream();
    let mut kept: Vec<u8> = Vec::new();
    let mut seen: u64 = 0;
    let mut drain_until: Option<tokio::time::Instant> = None;
    loop {
        let next_chunk = match drain_until {
            None => chunks.next().await,
            Some(deadline) => match tokio::time::timeout_at(deadline, chunks.next()).await {
                Ok(chunk) => chunk,
                Err(_) => return closing(too_large().into_response()),
            },
        };
        match next_chunk {
            None => break,
            Some(Err(_)) => {
                return ApiError::BadRequest("the request body could not be read to its end".into()).into_response()
            }
            Some(Ok(chunk)) => {
                seen = seen.saturating_add(u64::try_from(chunk.len()).unwrap_or(u64::MAX));
                if seen > DRAIN_BYTES {
                    return closing(too_large().into_response());
                }
                if seen > limit {
                    kept = Vec::new();
                    drain_until.get_or_insert_with(|| {
                        let now = tokio::time::Instant::now();
                        now.checked_add(DRAIN_TIME).unwrap_or(now)
                    });
                } else {
                    kept.extend_from_slice(&chunk);
                }
            }
        }
    }
    if drain_until.is_some() {
        return too_large().into_response();
    }
    next.run(axum::extract::Request::from_parts(parts, axum::body::Body::from(kept))).await
}

/// An answer after which the server closes the connection (what is left of the body
/// is not read).
fn closing(mut response: Response) -> Response {
    response.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
    response
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

    #[test]
    fn a_user_agent_past_ascii_is_kept() {
        let mut headers = axum::http::HeaderMap::new();
        let utf8 = axum::http::HeaderValue::from_bytes("Zoë's Browser/1.0 (日本語)".as_bytes()).unwrap();
        headers.insert("user-agent", utf8);
        assert_eq!(header_text(&headers, "user-agent").as_deref(), Some("Zoë's Browser/1.0 (日本語)"));
        headers.insert("user-agent", axum::http::HeaderValue::from_bytes(b"Old\xe9Browser").unwrap());
        assert_eq!(header_text(&headers, "user-agent").as_deref(), Some("Old\u{fffd}Browser"), "Latin-1 bytes");
        let tricky = "Agent\t\u{85}\u{202e}lmth.exe\u{2069}/1".as_bytes();
        headers.insert("user-agent", axum::http::HeaderValue::from_bytes(tricky).unwrap());
        assert_eq!(
            header_text(&headers, "user-agent").as_deref(),
            Some("Agentlmth.exe/1"),
            "no controls or reordering"
        );
        let long = "ü".repeat(600);
        headers.insert("user-agent", axum::http::HeaderValue::from_bytes(long.as_bytes()).unwrap());
        assert_eq!(header_text(&headers, "user-agent").unwrap().chars().count(), MAX_HEADER_CHARS);
    }
}
