//! Read-your-writes: a read may carry the position token a command returned (header
//! `X-Murima-Position` or query `position`). The read waits, bounded by the configured
//! timeout, until the store it reads holds that stream at that version; otherwise it
//! answers 503 not-yet-consistent instead of passing stale data off as fresh.
//!
//! Tokens are signed by the command API (`runtime::position`): a forged one, or one of
//! another tenant, is a 400 at once. A read waits only for what it can reach: a read that
//! waits for one stream's document takes tokens of that kind of stream only (400 naming
//! the kinds it takes, `Wait::of_kind`); the others wait for their projection's position,
//! which every token reaches. At most `MAX_WAITS_PER_TENANT` reads of one tenant, and
//! `MAX_WAITS_PER_USER` of one user, wait at a time in this instance; more get 503 with
//! `Retry-After`.

use std::future::Future;
use std::time::Duration;

use axum::extract::FromRef;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use events::StreamType;
use runtime::auth::{JwtKeys, Token};
use runtime::position::PositionToken;
use runtime::ApiError;
use tokio::time::Instant;
use uuid::Uuid;

pub const POSITION_HEADER: &str = "x-murima-position";

/// A verified position token and who waits for it.
#[derive(Debug, Clone, Copy)]
pub struct Wait {
    pub token: PositionToken,
    pub user: Uuid,
}

impl Wait {
    /// The wait of a read that can reach only streams of `kinds` (it looks for the token's
    /// own document): a token of another kind, or one that names no kind, is a 400.
    pub fn of_kind(wait: Option<Wait>, kinds: &[StreamType], read: &str) -> Result<Option<Wait>, ApiError> {
        let Some(w) = wait else { return Ok(None) };
        match w.token.stream_type {
            Some(kind) if kinds.contains(&kind) => Ok(Some(w)),
            found => {
                let named: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
                Err(ApiError::BadRequest(format!(
                    "{read} waits only for the position of a command on a {}; this token is of {}: read without                      it, or where that write shows",
                    named.join(" or "),
                    found.map_or("a stream it does not name (an older token)".to_owned(), |k| format!("a {}", k.as_str()))
                )))
            }
        }
    }
}

/// The token a request asked to wait for, if any.
pub struct WaitFor(pub Option<Wait>);

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
        Ok(Self(Some(Wait { token, user: caller.caller.user_id })))
    }
}

/// The store a waiting read looks at: it is woken when a projection writing there
/// commits a batch.
pub use runtime::position::Store;
use runtime::position::PROGRESS_CHANNEL;

/// Woken, per store, whenever a projection writing there commits a batch.
static PROGRESS: std::sync::LazyLock<[tokio::sync::Notify; 4]> = std::sync::LazyLock::new(Default::default);

fn progress(store: Store) -> &'static tokio::sync::Notify {
    &PROGRESS[Store::ALL.iter().position(|s| *s == store).unwrap_or(0)]
}

/// Wakes waiting reads when the projector commits a batch, for as long as the query API
/// runs. Without the notifications (not yet listening, connection lost) reads poll.
pub async fn follow_progress(pool: sqlx::PgPool) {
    loop {
        if let Err(e) = listen_for_progress(&pool).await {
            tracing::warn!(error = %e, "not hearing projection progress; waiting reads poll meanwhile");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn listen_for_progress(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
    listener.listen(PROGRESS_CHANNEL).await?;
    // None: the connection was lost.
    while let Some(notification) = listener.try_recv().await? {
        match Store::ALL.into_iter().find(|s| s.name() == notification.payload()) {
            Some(store) => progress(store).notify_waiters(),
            None => Store::ALL.into_iter().for_each(|s| progress(s).notify_waiters()),
        }
    }
    anyhow::bail!("the connection to PostgreSQL was lost")
}

/// Looks at `held_version` until it reaches the token's version or `limit` passes: again
/// whenever a projection writing to `store` commits a batch, and at the latest after a
/// pause that grows to 50 ms (in case a notification is missed).
pub async fn wait_until<F, Fut>(
    wait: Option<Wait>,
    limit: Duration,
    store: Store,
    mut held_version: F,
) -> Result<(), ApiError>
where
    F: FnMut(PositionToken) -> Fut,
    Fut: Future<Output = Result<i64, ApiError>>,
{
    let Some(Wait { token, user }) = wait else { return Ok(()) };
    let deadline = Instant::now().checked_add(limit).unwrap_or_else(Instant::now);
    let mut slot = None;
    // Short pauses first (most tokens are reached within tens of milliseconds), capped so
    // a slow projection costs one cheap look-up per 50 ms per waiting read.
    let mut pauses = runtime::retry::delays(Duration::from_millis(5), Duration::from_millis(50));
    loop {
        let pause = pauses.next().unwrap_or(Duration::from_millis(50));
        // Registered before looking, so a batch committed while it looks is not missed.
        let progressed = progress(store).notified();
        tokio::pin!(progressed);
        progressed.as_mut().enable();
        let held = held_version(token).await?;
        if held >= token.version {
            return Ok(());
        }
        if slot.is_none() {
            slot = Some(WaitSlot::take(token.tenant_id, user)?);
        }
        if Instant::now().checked_add(pause).is_none_or(|next| next > deadline) {
            return Err(ApiError::NotYetConsistent(format!(
                "this read model holds version {held} of the stream, not yet {}; retry shortly",
                token.version
            )));
        }
        tokio::select! {
            () = &mut progressed => {}
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// Reads of one tenant that may wait at once in this instance.
pub const MAX_WAITS_PER_TENANT: usize = 32;
/// Reads of one user that may wait at once in this instance: one user never holds more
/// than a small share of their tenant's slots.
pub const MAX_WAITS_PER_USER: usize = 4;

/// Waiting reads per tenant and per (tenant, user).
#[derive(Default)]
struct Waiting {
    tenants: std::collections::HashMap<Uuid, usize>,
    users: std::collections::HashMap<(Uuid, Uuid), usize>,
}

static WAITING: std::sync::LazyLock<std::sync::Mutex<Waiting>> = std::sync::LazyLock::new(Default::default);

/// One waiting read of a tenant's user, counted while it lives.
struct WaitSlot {
    tenant: Uuid,
    user: Uuid,
}

impl WaitSlot {
    fn take(tenant: Uuid, user: Uuid) -> Result<Self, ApiError> {
        let mut waiting = WAITING.lock().unwrap_or_else(|e| e.into_inner());
        let of_user = waiting.users.get(&(tenant, user)).copied().unwrap_or(0);
        let of_tenant = waiting.tenants.get(&tenant).copied().unwrap_or(0);
        let refused = if of_user >= MAX_WAITS_PER_USER {
            Some(format!("{MAX_WAITS_PER_USER} of your reads are already waiting for their writes; retry in a second"))
        } else if of_tenant >= MAX_WAITS_PER_TENANT {
            Some(format!(
                "{MAX_WAITS_PER_TENANT} reads of this tenant are already waiting for their writes; retry in a second"
            ))
        } else {
            None
        };
        if let Some(detail) = refused {
            metrics::counter!("read_waits_refused_total").increment(1);
            return Err(ApiError::Busy { detail, retry_after: 1 });
        }
        waiting.users.insert((tenant, user), of_user.saturating_add(1));
        waiting.tenants.insert(tenant, of_tenant.saturating_add(1));
        Ok(Self { tenant, user })
    }
}

impl Drop for WaitSlot {
    fn drop(&mut self) {
        let mut waiting = WAITING.lock().unwrap_or_else(|e| e.into_inner());
        let Waiting { tenants, users } = &mut *waiting;
        release(tenants, self.tenant);
        release(users, (self.tenant, self.user));
    }
}

fn release<K: std::hash::Hash + Eq>(counts: &mut std::collections::HashMap<K, usize>, key: K) {
    if let Some(count) = counts.get_mut(&key) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            counts.remove(&key);
        }
    }
}
