//! What every command request carries besides its body: the caller, the expected
//! version (`If-Match`), the `Idempotency-Key` and the request facts kept for the audit log.
//!
//! The caller's rights follow live state (guarantee 9): a login token only names its user
//! and session; every command needs the session alive and takes the user's role, grants
//! and status from the journal (the same folded state the command is decided on), so a
//! lock or demotion takes effect on the very next command. Operators' tokens
//! (`Claims::op`) keep the role they carry.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::{header, request::Parts, HeaderMap};
use events::user::{User, UserRole, UserStatus};
use events::{Actor, RequestContext};
use runtime::auth::{Authority, Caller, Permission, Role, Token};
use runtime::http::header_text;
use runtime::session::Rights;
use runtime::ApiError;
use uuid::Uuid;

use crate::journal::Metadata;
use crate::state::AppState;
use events::user;

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
const MAX_IDEMPOTENCY_KEY: usize = 200;

/// A command request's caller, with the metadata the journal records (made from the
/// caller once, so the two cannot disagree).
#[derive(Debug, Clone)]
pub struct CommandContext {
    pub caller: Caller,
    pub meta: Metadata,
}

impl FromRequestParts<AppState> for CommandContext {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        Self::from_parts(caller, parts, &state.trusted_proxies)
    }
}

impl Authority for AppState {
    /// The session alive and the tenant active (`Sessions::admit`); then an operator's
    /// token keeps its role and a login token gets its user's rights from the journal.
    async fn authorise(&self, token: Token) -> Result<Caller, ApiError> {
        if self.sessions.admit(&token).await?.is_none() || token.caller.operator {
            return Ok(token.caller);
        }
        live(self, token.caller).await
    }
}

/// The caller with the role, grants and status its user has now (see the module).
pub async fn live(state: &AppState, caller: Caller) -> Result<Caller, ApiError> {
    let Some(user) = state.journal.state::<user::User>(caller.tenant_id, caller.user_id).await? else {
        return Err(ApiError::Unauthorized("the token's user does not exist in its tenant; log in again".into()));
    };
    let rights = rights_of(&user, 0);
    if user.status != UserStatus::Active {
        return Err(ApiError::Forbidden(format!(
            "the account {} is {}; an administrator can reactivate it",
            caller.user_id, rights.status
        )));
    }
    Ok(Caller { role: rights.role, grants: rights.grants, ..caller })
}

/// A user's rights as the session store keeps them.
pub fn rights_of(user: &User, version: i64) -> Rights {
    let role = match user.role {
        UserRole::Agent => Role::Agent,
        UserRole::Supervisor => Role::Supervisor,
        UserRole::Admin => Role::Admin,
    };
    let grants = Permission::bits(&Permission::from_document(&user.permissions));
    Rights { version, role, status: user.status.as_str().to_owned(), grants }
}

/// The request facts of an unauthenticated request (a login), to build a context from
/// once the caller is known.
pub struct RequestFacts(pub Parts);

impl<S: Send + Sync> FromRequestParts<S> for RequestFacts {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let (mut copy, _) = axum::http::Request::new(()).into_parts();
        copy.headers = parts.headers.clone();
        copy.extensions = parts.extensions.clone();
        Ok(Self(copy))
    }
}

impl CommandContext {
    pub fn from_parts(caller: Caller, parts: &Parts, trusted_proxies: &[IpAddr]) -> Result<Self, ApiError> {
        let headers = &parts.headers;
        let request_id = header_text(headers, runtime::http::REQUEST_ID.as_str());
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        let ip_address = runtime::http::client_ip(headers, peer, trusted_proxies).map(|ip| ip.to_string());
        let correlation_id = match header_text(headers, "x-correlation-id") {
            Some(raw) => raw.parse().map_err(|_| ApiError::BadRequest("X-Correlation-Id must be a UUID".into()))?,
            None => request_id.as_deref().and_then(|r| r.parse().ok()).unwrap_or_else(Uuid::now_v7),
        };
        let meta = Metadata {
            actor: Actor { user_id: caller.user_id, role: caller.role.as_str().to_owned() },
            operator: caller.operator,
            caller_tenant: caller.tenant_id,
            expected_version: expected_version(headers)?,
            idempotency_key: idempotency_key(headers)?,
            correlation_id,
            request: RequestContext {
                ip_address,
                user_agent: header_text(headers, header::USER_AGENT.as_str()),
                session_id: header_text(headers, "x-session-id"),
                request_id,
                sealed: None,
            },
        };
        Ok(Self { caller, meta })
    }
}

/// `If-Match: "3"` (also `W/"3"` or a bare `3`): the stream version the client last saw.
fn expected_version(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(raw) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let bad = || ApiError::BadRequest("If-Match must be the ETag of the version you last read, e.g. \"3\"".into());
    let text = raw.to_str().map_err(|_| bad())?.trim();
    let text = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
    text.parse::<i64>().ok().filter(|v| *v >= 0).map(Some).ok_or_else(bad)
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(raw) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = raw.to_str().map(str::trim).unwrap_or_default();
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY {
        return Err(ApiError::BadRequest(format!(
            "Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} visible ASCII characters"
        )));
    }
    Ok(Some(key.to_owned()))
}
