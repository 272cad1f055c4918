//! The command endpoints: one per command, each answering with the stream id, its new
//! version (also as `ETag`) and a position token for read-your-writes.

mod case_types;
mod cases;
mod channels;
mod documents;
mod notes;
mod tasks;
mod teams;
mod templates;
mod tenants;
mod users;

use axum::extract::FromRef;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Router;
use runtime::auth::JwtKeys;

use crate::journal::{CommandReply, Journal};

#[derive(Clone)]
pub struct AppState {
    pub journal: Journal,
    pub keys: JwtKeys,
}

impl FromRef<AppState> for JwtKeys {
    fn from_ref(state: &AppState) -> Self {
        state.keys.clone()
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(cases::router())
        .merge(tenants::router())
        .merge(users::router())
        .merge(teams::router())
        .merge(case_types::router())
        .merge(channels::router())
        .merge(tasks::router())
        .merge(notes::router())
        .merge(documents::router())
        .merge(templates::router())
        .with_state(state)
}

impl IntoResponse for CommandReply {
    fn into_response(self) -> Response {
        let version = self.version();
        let location = self.body["location"].as_str().map(str::to_owned);
        let mut response = (self.status, axum::Json(self.body)).into_response();
        if let Some(etag) = version.and_then(|v| HeaderValue::from_str(&format!("\"{v}\"")).ok()) {
            response.headers_mut().insert(header::ETAG, etag);
        }
        if let Some(location) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            response.headers_mut().insert(header::LOCATION, location);
        }
        response
    }
}
