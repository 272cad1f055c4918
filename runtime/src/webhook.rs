//! What the command API and the projector agree on about webhooks: where deliveries may
//! go, how often they are tried, and how a delivery is signed.

use std::net::IpAddr;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::parse;

/// The header a delivery's signature travels in: `t=<unix seconds>,v1=<hex HMAC-SHA256 of
/// "<t>.<body>" with the subscription's secret>`. A receiver recomputes it, and refuses a
/// timestamp older than a few minutes (a replayed delivery).
pub const SIGNATURE_HEADER: &str = "murima-signature";
pub const EVENT_ID_HEADER: &str = "murima-event-id";
pub const EVENT_TYPE_HEADER: &str = "murima-event-type";
pub const ATTEMPT_HEADER: &str = "murima-delivery-attempt";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub allow_private: bool,
    pub max_attempts: u32,
    pub backoff: Duration,
}

impl Policy {
    pub fn from_env() -> anyhow::Result<Self> {
        let allow_private = match crate::config::var("MURIMA_WEBHOOK_ALLOW_PRIVATE", "off").as_str() {
            "on" | "true" | "1" => true,
            "off" | "false" | "0" => false,
            other => anyhow::bail!("MURIMA_WEBHOOK_ALLOW_PRIVATE must be on or off, not {other:?}"),
        };
        let max_attempts: u32 = parse("MURIMA_WEBHOOK_MAX_ATTEMPTS", "8")?;
        anyhow::ensure!(
            (1..=20).contains(&max_attempts),
            "MURIMA_WEBHOOK_MAX_ATTEMPTS must be 1 to 20, not {max_attempts}"
        );
        let backoff_ms: u64 = parse("MURIMA_WEBHOOK_BACKOFF_MS", "1000")?;
        anyhow::ensure!(
            (10..=600_000).contains(&backoff_ms),
            "MURIMA_WEBHOOK_BACKOFF_MS must be 10 to 600000 milliseconds, not {backoff_ms}"
        );
        Ok(Self { allow_private, max_attempts, backoff: Duration::from_millis(backoff_ms) })
    }

    /// Whether a delivery may go to `ip`: a public address, or with `allow_private` any
    /// but those never reachable (cloud metadata services among them).
    pub fn allows(&self, ip: IpAddr) -> bool {
        !events::webhook::is_never_reachable(ip) && (self.allow_private || events::webhook::is_public(ip))
    }

    /// The wait after failed attempt number `attempt` (1: the first): the backoff doubled
    /// for each attempt after the first, at most an hour.
    pub fn retry_after(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(20);
        self.backoff.saturating_mul(1u32 << doublings).min(Duration::from_secs(3600))
    }
}

/// The signature header's value for a body sent at `timestamp` (unix seconds).
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", hex(&mac(secret, timestamp, body)))
}

/// Whether `header` is a valid signature of `body` with `secret` (the timestamp is the
/// receiver's to judge).
pub fn verify(secret: &str, header: &str, body: &[u8]) -> bool {
    let mut timestamp = None;
    let mut given = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => given = Some(v.to_owned()),
            _ => {}
        }
    }
    let (Some(timestamp), Some(given)) = (timestamp, given) else { return false };
    let Some(given) = unhex(&given) else { return false };
    let Ok(mut expected) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else { return false };
    expected.update(format!("{timestamp}.").as_bytes());
    expected.update(body);
    expected.verify_slice(&given).is_ok()
}

/// A secret as a request fingerprint may hold it: its SHA-256, in hex.
pub fn secret_digest(secret: &str) -> String {
    use sha2::Digest;
    hex(&Sha256::digest(secret.as_bytes()))
}

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length: new_from_slice cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else { return Vec::new() };
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i.checked_add(2)?)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_with_its_secret_only() {
        let header = signature("s3cret-s3cret-s3cret", 1_700_000_000, b"{\"id\":1}");
        assert!(header.starts_with("t=1700000000,v1="));
        assert!(verify("s3cret-s3cret-s3cret", &header, b"{\"id\":1}"));
        assert!(!verify("another-secret-here", &header, b"{\"id\":1}"));
        assert!(!verify("s3cret-s3cret-s3cret", &header, b"{\"id\":2}"));
        assert!(!verify("s3cret-s3cret-s3cret", &header.replace("t=1700000000", "t=1700000001"), b"{\"id\":1}"));
        assert!(!verify("s3cret-s3cret-s3cret", "t=1,v1=zz", b""));
    }

    #[test]
    fn metadata_services_are_out_of_reach_even_where_private_addresses_are_allowed() {
        let open = Policy { allow_private: true, max_attempts: 8, backoff: Duration::from_secs(1) };
        for ip in [
            "169.254.169.254",
            "169.254.170.2",
            "100.100.100.200",
            "fd00:ec2::254",
            "fe80::1",
            "0.0.0.0",
            "::",
            "::ffff:169.254.169.254",
            "2002:a9fe:a9fe::1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(!open.allows(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["127.0.0.1", "10.1.2.3", "192.168.0.9", "::1", "93.184.216.34"] {
            assert!(open.allows(ip.parse().unwrap()), "{ip}");
        }
        let closed = Policy { allow_private: false, ..open };
        assert!(!closed.allows("127.0.0.1".parse().unwrap()));
        assert!(closed.allows("93.184.216.34".parse().unwrap()));
    }

    #[test]
    fn retries_back_off_doubling_up_to_an_hour() {
        let policy = Policy { allow_private: false, max_attempts: 8, backoff: Duration::from_secs(1) };
        let waits: Vec<u64> = (1..=4).map(|a| policy.retry_after(a).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8]);
        assert_eq!(policy.retry_after(40), Duration::from_secs(3600));
    }
}
