//! Keyset cursors, one encoding for every list: the last row's sort key and id,
//! `base64url("{key}|{id}")`, opaque to clients. A cursor that does not decode to a key
//! of the list's type is a 400 that says what to pass, never a database error.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use runtime::ApiError;
use uuid::Uuid;

/// The sort key of a list's rows, as a cursor writes and reads it.
pub trait CursorKey: Sized {
    fn write(&self) -> String;
    /// `None`: not a key of this type (a tampered or foreign cursor).
    fn read(text: &str) -> Option<Self>;
}

impl CursorKey for DateTime<Utc> {
    fn write(&self) -> String {
        self.to_rfc3339()
    }

    fn read(text: &str) -> Option<Self> {
        DateTime::parse_from_rfc3339(text).ok().map(|at| at.with_timezone(&Utc))
    }
}

/// Where the previous page ended: its last row's key and id.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor<K> {
    pub key: K,
    pub id: Uuid,
}

impl<K: CursorKey> Cursor<K> {
    pub fn new(key: K, id: Uuid) -> Self {
        Self { key, id }
    }

    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}|{}", self.key.write(), self.id))
    }

    pub fn decode(raw: &str) -> Result<Self, ApiError> {
        let bad = || ApiError::BadRequest("the cursor is malformed; pass next_cursor from the previous page".into());
        let text = String::from_utf8(URL_SAFE_NO_PAD.decode(raw).map_err(|_| bad())?).map_err(|_| bad())?;
        let (key, id) = text.rsplit_once('|').ok_or_else(bad)?;
        Ok(Self { key: K::read(key).ok_or_else(bad)?, id: id.parse().map_err(|_| bad())? })
    }
}

/// One page of a list: `{items, next_cursor}`, and a `Link: rel="next"` header to the
/// page after it when there is one. Every keyset list answers with it; the cursor is an
/// opaque string (`Cursor`), but for the audit trail's, which is a version number (`C`).
pub struct Page<T, C = String> {
    items: Vec<T>,
    /// The cursor of the next page and that page's URL.
    next: Option<(C, String)>,
}

impl<T: serde::Serialize, C: serde::Serialize> Page<T, C> {
    /// `link(cursor)`: the URL of the page after `cursor`, the list's filters kept.
    pub fn new(items: Vec<T>, next_cursor: Option<C>, link: impl FnOnce(&C) -> String) -> Self {
        let next = next_cursor.map(|cursor| {
            let url = link(&cursor);
            (cursor, url)
        });
        Self { items, next }
    }
}

/// A page's body, as the OpenAPI document shows it: `body = PageBody<Item, String>`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct PageBody<T, C> {
    pub items: Vec<T>,
    /// Pass it as `cursor` for the next page; null on the last.
    // Documented as the opaque string of every list but the audit trail, which documents
    // its own page (`audit::AuditPage`): utoipa drops the null of a generic `Option<C>`.
    #[schema(value_type = Option<String>)]
    pub next_cursor: Option<C>,
}

impl<T: serde::Serialize, C: serde::Serialize> axum::response::IntoResponse for Page<T, C> {
    fn into_response(self) -> axum::response::Response {
        let (next_cursor, url) = self.next.unzip();
        let mut response = axum::Json(PageBody { items: self.items, next_cursor }).into_response();
        let link = url.and_then(|url| axum::http::HeaderValue::from_str(&format!("<{url}>; rel=\"next\"")).ok());
        if let Some(link) = link {
            response.headers_mut().insert(axum::http::header::LINK, link);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_as_written_and_a_tampered_one_is_a_400() {
        let at = DateTime::parse_from_rfc3339("2026-11-20T09:00:00.123456Z").map(|t| t.with_timezone(&Utc));
        let Ok(at) = at else { panic!("a valid time") };
        let cursor = Cursor::new(at, Uuid::from_u128(42));
        assert_eq!(Cursor::<DateTime<Utc>>::decode(&cursor.encode()).ok(), Some(cursor));
        for raw in ["", "not base64!", &URL_SAFE_NO_PAD.encode("yesterday|x"), &URL_SAFE_NO_PAD.encode("\u{0}")] {
            assert!(matches!(Cursor::<DateTime<Utc>>::decode(raw), Err(ApiError::BadRequest(_))), "{raw:?}");
        }
    }
}
