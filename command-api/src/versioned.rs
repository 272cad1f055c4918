//! Versioned command bodies. A body may carry `schema_version`; absent means the newest.
//! An unknown version is a 400 that names the supported ones, so old clients fail loudly
//! instead of having fields silently misread.

use axum::extract::{FromRequest, Request};
use runtime::extract::ApiJson;
use runtime::ApiError;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A command body's name and the schema versions this build accepts (oldest first).
pub trait CommandSchema {
    const NAME: &'static str;
    const VERSIONS: &'static [u16] = &[1];
}

pub struct Versioned<T> {
    pub version: u16,
    pub body: T,
}

impl<T: DeserializeOwned + CommandSchema, S: Send + Sync> FromRequest<S> for Versioned<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let ApiJson(mut value) = ApiJson::<Value>::from_request(req, state).await?;
        let object = value.as_object_mut().ok_or_else(|| ApiError::unprocessable("the body must be a JSON object"))?;
        let newest = T::VERSIONS.last().copied().unwrap_or(1);
        let version = match object.remove("schema_version") {
            None => newest,
            Some(raw) => {
                raw.as_u64().and_then(|v| u16::try_from(v).ok()).filter(|v| T::VERSIONS.contains(v)).ok_or_else(
                    || {
                        ApiError::BadRequest(format!(
                            "schema_version {raw} of {} is not supported; supported versions: {:?}",
                            T::NAME,
                            T::VERSIONS
                        ))
                    },
                )?
            }
        };
        if let Some(number) = beyond_signed_64_bits(&value) {
            return Err(ApiError::unprocessable(format!(
                "the number {number} is too large: whole numbers must lie between {} and {} (every store keeps \
                 them as signed 64-bit integers)",
                i64::MIN,
                i64::MAX
            )));
        }
        let body = serde_path_to_error::deserialize(value).map_err(|e| {
            // Named by its place in the body (`customer_id`, `tags[2]`) where it has one.
            let (field, message) = (e.path().to_string(), e.inner().to_string());
            match field.as_str() {
                "." => ApiError::unprocessable(message),
                _ => ApiError::Unprocessable {
                    detail: format!("{field}: {message}"),
                    errors: vec![events::FieldError::new(field, message)],
                },
            }
        })?;
        Ok(Self { version, body })
    }
}

/// A whole number anywhere in the body above `i64::MAX`: JSON allows it, MongoDB's and
/// Elasticsearch's integers do not, so a command holding one would be accepted and then
/// never projected.
fn beyond_signed_64_bits(value: &Value) -> Option<&serde_json::Number> {
    let mut pending = vec![value];
    while let Some(value) = pending.pop() {
        match value {
            Value::Number(n) if n.as_i64().is_none() && n.as_u64().is_some() => return Some(n),
            Value::Array(items) => pending.extend(items),
            Value::Object(fields) => pending.extend(fields.values()),
            _ => {}
        }
    }
    None
}

/// For `#[serde(default, deserialize_with = "crate::versioned::present")]` on an
/// `Option<Option<T>>` field: tells "present and null" (Some(None), clear it) from
/// "absent" (None, leave it).
pub(crate) fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    serde::Deserialize::deserialize(d).map(Some)
}
