//! Extractors whose rejections are problem+json answers that say what to fix.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::problem::ApiError;

/// A JSON body. Unknown fields are refused where the DTO says `deny_unknown_fields`.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !json_content_type(req.headers()) {
            return Err(ApiError::UnsupportedMediaType(
                "send the body as JSON with Content-Type: application/json".into(),
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(|rejection| {
            let text = rejection.body_text();
            match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(format!("{text}; send a smaller body")),
                _ => ApiError::BadRequest(text),
            }
        })?;
        // No store keeps a NUL in text (PostgreSQL refuses it): refuse it here, by field.
        if has_nul_escape(&bytes) {
            if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                if let Some(field) = nul_field(&value, "") {
                    return Err(ApiError::invalid(field, "must not contain NUL (\\u0000) characters"));
                }
            }
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_problem(rejection)),
        }
    }
}

/// `application/json` or any `+json` type, as axum's own JSON extractor accepts.
fn json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Whether the JSON text holds a `\u0000` escape (an odd run of backslashes before it).
fn has_nul_escape(bytes: &[u8]) -> bool {
    bytes
        .windows(5)
        .enumerate()
        .any(|(i, w)| w == b"u0000" && bytes[..i].iter().rev().take_while(|b| **b == b'\\').count() % 2 == 1)
}

/// The path of the first key or string holding a NUL (`title`, `permissions.a`, `tags[2]`).
fn nul_field(value: &serde_json::Value, path: &str) -> Option<String> {
    let join = |key: &str| if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
    match value {
        serde_json::Value::String(s) if s.contains('\0') => {
            Some(if path.is_empty() { "body".into() } else { path.into() })
        }
        serde_json::Value::Object(map) => map.iter().find_map(|(k, v)| {
            if k.contains('\0') {
                Some(join(&k.replace('\0', "\\u0000")))
            } else {
                nul_field(v, &join(k))
            }
        }),
        serde_json::Value::Array(items) => {
            items.iter().enumerate().find_map(|(i, v)| nul_field(v, &format!("{path}[{i}]")))
        }
        _ => None,
    }
}

fn json_problem(rejection: JsonRejection) -> ApiError {
    let text = rejection.body_text();
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(format!("{text}; send a smaller body")),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ApiError::UnsupportedMediaType("send the body as JSON with Content-Type: application/json".into())
        }
        StatusCode::UNPROCESSABLE_ENTITY => ApiError::unprocessable(text),
        _ => ApiError::BadRequest(text),
    }
}

/// Query-string parameters.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // No store keeps a control character in a filter's text (PostgreSQL refuses NUL):
        // a parameter holding one is a 400 naming it, not a failed query.
        let query = parts.uri.query().unwrap_or_default();
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            if value.chars().any(char::is_control) {
                return Err(ApiError::BadRequest(format!(
                    "the query parameter {name} must not contain control characters"
                )));
            }
        }
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Self(q.0))
            .map_err(|e: QueryRejection| ApiError::BadRequest(e.body_text()))
    }
}

/// Path parameters (ids that are not UUIDs are a 404: no such resource can exist).
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Self(p.0))
            .map_err(|e: PathRejection| ApiError::NotFound(format!("no such resource: {}", e.body_text())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_escapes_are_found_by_field_and_escaped_backslashes_are_not_nul() {
        assert!(has_nul_escape(br#"{"title": "a\u0000b"}"#));
        assert!(!has_nul_escape(br#"{"title": "a\\u0000b"}"#), "a backslash, then the text u0000");
        let value = serde_json::json!({ "a": { "b": ["x", "y\u{0}"] } });
        assert_eq!(nul_field(&value, ""), Some("a.b[1]".to_owned()));
        let key = serde_json::json!({ "permissions": { "x\u{0}": ["read"] } });
        assert_eq!(nul_field(&key, ""), Some("permissions.x\\u0000".to_owned()));
    }
}
