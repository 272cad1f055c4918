//! Position tokens: what a command answer carries so a later read can wait for it.
//!
//! A token names the stream, the stream version the command produced, its journal
//! position and the tenant. Projections are version-guarded per stream, so "has the read
//! model reached this token" is "does it hold that stream at that version or later".
//!
//! Tokens are signed with the services' secret: only the command API makes them, so a
//! token always names a committed write, and a forged far-future one (which would hold a
//! read for the whole wait) is a 400 at once.

use events::StreamType;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::{JwtKeys, ISSUER};

const AUDIENCE: &str = "murima-position";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PositionToken {
    pub tenant_id: Uuid,
    pub stream_id: Uuid,
    pub version: i64,
    pub position: i64,
    /// The kind of the stream, so a read refuses a token of a stream it never holds
    /// (None: a token signed before tokens named it).
    pub stream_type: Option<StreamType>,
}

#[derive(Serialize, Deserialize)]
struct Signed {
    iss: String,
    aud: String,
    t: Uuid,
    s: Uuid,
    v: i64,
    p: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    k: Option<StreamType>,
}

impl PositionToken {
    pub fn sign(&self, keys: &JwtKeys) -> String {
        keys.sign_claims(&Signed {
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            t: self.tenant_id,
            s: self.stream_id,
            v: self.version,
            p: self.position,
            k: self.stream_type,
        })
    }

    /// A token the command API signed; None for anything else.
    pub fn verify(raw: &str, keys: &JwtKeys) -> Option<Self> {
        let signed: Signed = keys.verify_unexpiring(raw.trim(), AUDIENCE)?;
        (signed.v >= 0 && signed.p >= 0).then_some(Self {
            tenant_id: signed.t,
            stream_id: signed.s,
            version: signed.v,
            position: signed.p,
            stream_type: signed.k,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn tokens_round_trip_and_forgeries_are_refused() {
        let keys = JwtKeys::new("a secret of at least thirty-two bytes, for tests");
        let t = PositionToken {
            tenant_id: Uuid::now_v7(),
            stream_id: Uuid::now_v7(),
            version: 3,
            position: 42,
            stream_type: Some(StreamType::Case),
        };
        assert_eq!(PositionToken::verify(&t.sign(&keys), &keys), Some(t));
        assert_eq!(PositionToken::verify("not a token", &keys), None);
        let other = JwtKeys::new("another secret of at least thirty-two bytes!");
        assert_eq!(PositionToken::verify(&t.sign(&other), &keys), None, "signed with another secret");
        let far = PositionToken { position: i64::MAX, ..t };
        assert_eq!(PositionToken::verify(&far.sign(&other), &keys), None);
    }
}

/// The channel on which the projector says it committed a batch. The payload names the
/// store the batch was written to (`Store::name`), so the query API wakes only the reads
/// waiting on that store.
pub const PROGRESS_CHANNEL: &str = "murima_progress";

/// A store projections write and reads wait on, as progress notifications and health
/// probes name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Postgres,
    Mongo,
    Elastic,
    Redis,
}

impl Store {
    pub const ALL: [Store; 4] = [Store::Postgres, Store::Mongo, Store::Elastic, Store::Redis];

    pub fn name(self) -> &'static str {
        match self {
            Store::Postgres => "postgresql",
            Store::Mongo => "mongodb",
            Store::Elastic => "elasticsearch",
            Store::Redis => "redis",
        }
    }
}
