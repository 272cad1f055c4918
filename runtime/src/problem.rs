//! The one HTTP error type of both APIs, answered as `application/problem+json` (RFC 9457).
//! Client mistakes say what to fix; server faults are logged once and answered opaquely.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use events::{DomainError, FieldError};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{detail}")]
    Conflict { detail: String, current_version: Option<i64> },
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{detail}")]
    Unprocessable { detail: String, errors: Vec<FieldError> },
    /// A read asked to wait for a position its projection has not reached in time.
    #[error("{0}")]
    NotYetConsistent(String),
    #[error("{0}")]
    Unavailable(String),
    /// A budget is spent (rate limits, login lock-out) or a guarded resource is busy
    /// (`busy`: a 503); `retry_after` seconds until it is worth trying again.
    #[error("{detail}")]
    TooManyRequests { detail: String, retry_after: u64 },
    #[error("{detail}")]
    Busy { detail: String, retry_after: u64 },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The problem type answered with a status (for metrics, where only the status is left).
pub fn kind_of(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad-request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not-found",
        409 | 412 => "conflict",
        413 => "payload-too-large",
        415 => "unsupported-media-type",
        422 => "validation",
        429 => "too-many-requests",
        503 => "unavailable",
        s if s >= 500 => "internal",
        _ => "other",
    }
}

/// What each refusal of the session store is in HTTP.
impl From<crate::session::SessionError> for ApiError {
    fn from(e: crate::session::SessionError) -> Self {
        use crate::session::SessionError;
        match e {
            SessionError::Ended => Self::Unauthorized(e.to_string()),
            SessionError::TenantSuspended => Self::Forbidden(e.to_string()),
            SessionError::Unreachable(error) => {
                tracing::error!(%error, "the session store failed");
                Self::Unavailable("the session store is not reachable; try again shortly".into())
            }
        }
    }
}

/// The detail of a 422 whose fields are listed in `errors`.
const INVALID_FIELDS: &str = "some fields are invalid; see errors";

impl ApiError {
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::Unprocessable { detail: detail.into(), errors: vec![] }
    }

    /// A 422 naming one field of the body and what is wrong with it.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        DomainError::Invalid(vec![events::FieldError::new(field, message)]).into()
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request", "Bad request"),
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized", "Missing or invalid credentials"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Not allowed"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            Self::Conflict { .. } => (StatusCode::CONFLICT, "conflict", "Conflict with the current state"),
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", "Request body too large"),
            Self::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "Unsupported media type")
            }
            Self::Unprocessable { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "validation", "The request is invalid"),
            Self::NotYetConsistent(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "not-yet-consistent", "The read model has not caught up yet")
            }
            Self::Unavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable", "A backing service is unavailable")
            }
            Self::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "too-many-requests", "Too many requests"),
            Self::Busy { .. } => (StatusCode::SERVICE_UNAVAILABLE, "busy", "The server is busy"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error"),
        }
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Invalid(errors) => Self::Unprocessable { detail: INVALID_FIELDS.into(), errors },
            DomainError::Conflict(detail) => Self::Conflict { detail, current_version: None },
            DomainError::NotFound(what) => Self::NotFound(format!("{what} not found")),
            DomainError::Forbidden(detail) => Self::Forbidden(detail),
        }
    }
}

/// SQLSTATEs that say "not now" rather than "wrong": query_canceled (a statement
/// deadline), lock_not_available, admin/crash shutdown, cannot_connect_now, insufficient
/// resources (class 53: too many connections, disk full), and a transaction rolled back
/// as a deadlock's victim or for serialization (class 40): nothing of it committed.
fn is_transient(code: &str) -> bool {
    matches!(code, "57014" | "55P03" | "57P01" | "57P02" | "57P03") || code.starts_with("53") || code.starts_with("40")
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) => Self::Unavailable("the database is not reachable".into()),
            // The statement deadline passed (`statement_timeout`), a lock wait gave up, or
            // the server is shutting down or out of connections: try again in a moment.
            // Logged with its SQLSTATE: a deadlock that repeats is a lock-order bug to find.
            sqlx::Error::Database(db) if db.code().is_some_and(|c| is_transient(&c)) => {
                tracing::warn!(code = ?db.code(), error = %db, "the database refused for now");
                Self::Unavailable("the database did not answer in time".into())
            }
            other => Self::Internal(other.into()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, title) = self.parts();
        let detail = match &self {
            Self::Internal(e) => {
                tracing::error!(error = ?e, "request failed");
                "something went wrong on our side; it has been logged".to_owned()
            }
            other => other.to_string(),
        };
        let mut body = json!({
            "type": format!("https://murima.dev/problems/{kind}"),
            "title": title,
            "status": status.as_u16(),
            "detail": detail,
        });
        match &self {
            Self::Unprocessable { errors, .. } if !errors.is_empty() => body["errors"] = json!(errors),
            Self::Conflict { current_version: Some(v), .. } => body["current_version"] = json!(v),
            _ => {}
        }
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Self::Conflict { current_version: Some(v), .. } = &self {
            if let Ok(etag) = HeaderValue::from_str(&format!("\"{v}\"")) {
                headers.insert(header::ETAG, etag);
            }
        }
        match &self {
            Self::TooManyRequests { retry_after, .. } | Self::Busy { retry_after, .. } => {
                if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
                    headers.insert(header::RETRY_AFTER, v);
                }
            }
            _ if status == StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
