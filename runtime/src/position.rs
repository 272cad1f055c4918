//! Position tokens: what a command answer carries so a later read can wait for it.
//!
//! A token names the stream, the stream version the command produced and its journal
//! position. Projections are version-guarded per stream, so "has the read model reached
//! this token" is "does it hold that stream at that version or later".

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PositionToken {
    pub stream_id: Uuid,
    pub version: i64,
    pub position: i64,
}

impl PositionToken {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("v1:{}:{}:{}", self.stream_id, self.version, self.position))
    }

    pub fn decode(token: &str) -> Option<Self> {
        let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(token.trim()).ok()?).ok()?;
        let mut parts = raw.split(':');
        if parts.next()? != "v1" {
            return None;
        }
        let token = Self {
            stream_id: parts.next()?.parse().ok()?,
            version: parts.next()?.parse().ok()?,
            position: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(token)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let t = PositionToken { stream_id: Uuid::now_v7(), version: 3, position: 42 };
        assert_eq!(PositionToken::decode(&t.encode()), Some(t));
        assert_eq!(PositionToken::decode("not a token"), None);
        assert_eq!(PositionToken::decode(&URL_SAFE_NO_PAD.encode("v1:x:1:2")), None);
    }
}
