//! Read-your-writes: a read may carry the position token a command returned (header
//! `X-Murima-Position` or query `position`). The read waits, bounded by the configured
//! timeout, until the store it reads holds that stream at that version; otherwise it
//! answers 503 not-yet-consistent instead of passing stale data off as fresh.
//!
//! Tokens are signed by the command API (`runtime::position`): a forged one, or one of
//! another tenant, is a 400 at once. At most `MAX_WAITS_PER_TENANT` reads of one tenant
//! wait at a time in this instance; more get 503 with `Retry-After`.

use std::future::Future;
use std::time::Duration;

use axum::extract::FromRef;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use runtime::auth::{JwtKeys, Token};
use runtime::position::PositionToken;
use runtime::ApiError;
use tokio::time::Instant;

pub const POSITION_HEADER: &str = "x-murima-position";

/// The token a request asked to wait for, if any.
pub struct WaitFor(pub Option<PositionToken>);

impl<S: Send + Sync> FromRequestParts<S> for WaitFor
where
    JwtKeys: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let from_header = parts.headers.get(POSITION_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let from_query = parts
            .uri
            .query()
            .and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("position=").map(str::to_owned)));
        let Some(raw) = from_header.or(from_query) else { return Ok(Self(None)) };
        let keys = JwtKeys::from_ref(state);
        let token = PositionToken::verify(&raw, &keys).ok_or_else(|| {
            ApiError::BadRequest(
                "the position token is not one this API issued; pass the `position` a command returned".into(),
            )
        })?;
        let caller = Token::from_request_parts(parts, state).await?;
        if caller.caller.tenant_id != token.tenant_id {
            return Err(ApiError::BadRequest("the position token belongs to another tenant".into()));
        }
        Ok(Self(Some(token)))
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
    let deadline = Instant::now().checked_add(limit).unwrap_or_else(Instant::now);
    let mut slot = None;
    // Short pauses first (most tokens are reached within tens of milliseconds), capped so
    // a slow projection costs one cheap look-up per 50 ms per waiting read.
    let mut pauses = runtime::retry::delays(Duration::from_millis(5), Duration::from_millis(50));
    loop {
        let pause = pauses.next().unwrap_or(Duration::from_millis(50));
        let held = held_version(token).await?;
        if held >= token.version {
            return Ok(());
        }
        if slot.is_none() {
            slot = Some(WaitSlot::take(token.tenant_id)?);
        }
        if Instant::now().checked_add(pause).is_none_or(|next| next > deadline) {
            return Err(ApiError::NotYetConsistent(format!(
                "this read model holds version {held} of the stream, not yet {}; retry shortly",
                token.version
            )));
        }
        tokio::time::sleep(pause).await;
    }
}

/// Reads of one tenant that may wait at once in this instance.
pub const MAX_WAITS_PER_TENANT: usize = 32;

static WAITING: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<uuid::Uuid, usize>>> =
    std::sync::LazyLock::new(Default::default);

/// One waiting read of a tenant, counted while it lives.
struct WaitSlot(uuid::Uuid);

impl WaitSlot {
    fn take(tenant: uuid::Uuid) -> Result<Self, ApiError> {
        let mut waiting = WAITING.lock().unwrap_or_else(|e| e.into_inner());
        let count = waiting.entry(tenant).or_default();
        if *count >= MAX_WAITS_PER_TENANT {
            metrics::counter!("read_waits_refused_total").increment(1);
            return Err(ApiError::Busy {
                detail: format!("{MAX_WAITS_PER_TENANT} reads of this tenant are already waiting for their writes; retry in a second"),
                retry_after: 1,
            });
        }
        *count = count.saturating_add(1);
        Ok(Self(tenant))
    }
}

impl Drop for WaitSlot {
    fn drop(&mut self) {
        let mut waiting = WAITING.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = waiting.get_mut(&self.0) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                waiting.remove(&self.0);
            }
        }
    }
}
