//! Read-your-writes: a read may carry the position token a command returned (header
//! `X-Murima-Position` or query `position`). The read waits, bounded by the configured
//! timeout, until the store it reads holds that stream at that version; otherwise it
//! answers 503 not-yet-consistent instead of passing stale data off as fresh.

use std::future::Future;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use runtime::position::PositionToken;
use runtime::ApiError;
use tokio::time::Instant;

pub const POSITION_HEADER: &str = "x-murima-position";

/// The token a request asked to wait for, if any.
pub struct WaitFor(pub Option<PositionToken>);

impl<S: Send + Sync> FromRequestParts<S> for WaitFor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let from_header = parts.headers.get(POSITION_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let from_query = parts
            .uri
            .query()
            .and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("position=").map(str::to_owned)));
        match from_header.or(from_query) {
            None => Ok(Self(None)),
            Some(raw) => PositionToken::decode(&raw).map(|t| Self(Some(t))).ok_or_else(|| {
                ApiError::BadRequest("the position token is malformed; pass the `position` a command returned".into())
            }),
        }
    }
}

/// Polls `held_version` until it reaches the token's version or `limit` passes.
pub async fn wait_until<F, Fut>(
    token: Option<PositionToken>,
    limit: Duration,
    mut held_version: F,
) -> Result<(), ApiError>
where
    F: FnMut(PositionToken) -> Fut,
    Fut: Future<Output = Result<i64, ApiError>>,
{
    let Some(token) = token else { return Ok(()) };
    let deadline = Instant::now() + limit;
    // Short pauses first (most tokens are reached within tens of milliseconds), capped so
    // a slow projection costs one cheap look-up per 50 ms per waiting read.
    let mut pause = Duration::from_millis(5);
    loop {
        let held = held_version(token).await?;
        if held >= token.version {
            return Ok(());
        }
        if Instant::now() + pause > deadline {
            return Err(ApiError::NotYetConsistent(format!(
                "this read model holds version {held} of the stream, not yet {}; retry shortly",
                token.version
            )));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}
