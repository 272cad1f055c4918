//! What every command route shares: the journal, the token keys, the sessions and the
//! policies read at start.

use axum::extract::FromRef;
use runtime::auth::JwtKeys;

use crate::journal::Journal;
use crate::login_guard::LoginGuard;

#[derive(Clone)]
pub struct AppState {
    pub journal: Journal,
    pub keys: JwtKeys,
    pub sessions: runtime::session::Sessions,
    /// Proxies whose `X-Forwarded-For` names the client (`MURIMA_TRUSTED_PROXIES`).
    pub trusted_proxies: std::sync::Arc<Vec<std::net::IpAddr>>,
    pub login_guard: LoginGuard,
    /// Where webhook URLs may point (`MURIMA_WEBHOOK_ALLOW_PRIVATE`).
    pub webhooks: runtime::webhook::Policy,
}

impl FromRef<AppState> for JwtKeys {
    fn from_ref(state: &AppState) -> Self {
        state.keys.clone()
    }
}
