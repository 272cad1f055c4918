//! The webhook stream: a tenant's subscription of a URL to event types. The projector
//! delivers each matching event to it, signed with the subscription's secret, which lives
//! off the log (`eventstore.webhook_secrets`, written with the command): no event, read
//! model or answer carries it.
//!
//! Where a URL points is a fact the write side looks up before deciding (`Destination`):
//! only public addresses take deliveries unless the operator allows private ones.

use std::net::IpAddr;

use chrono::{DateTime, Utc};

use crate::change::Change;
use crate::contract;
use crate::error::{DomainError, FieldError, Validator};
use crate::stream::Context;

/// The longest URL a subscription takes.
pub const URL_MAX: usize = 2048;
/// Event types one subscription may name, and the longest name one may be.
pub const MAX_EVENT_TYPES: usize = 100;
pub const EVENT_TYPE: contract::Text = contract::Text::line(100);
/// Webhooks one tenant may have (each event is queued once per matching one, in the
/// projection's transaction that every tenant shares).
pub const MAX_WEBHOOKS: usize = 25;
/// A signing secret's length in characters.
pub const SECRET_MIN: usize = 16;
pub const SECRET_MAX: usize = 256;

/// Where the URL's host resolved to, looked up by the write side before deciding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Every address it resolves to takes deliveries.
    Allowed,
    /// It resolves to a private, loopback or otherwise internal address, which the operator
    /// does not allow (`MURIMA_WEBHOOK_ALLOW_PRIVATE`).
    Private(IpAddr),
    /// It does not resolve (the reason).
    Unresolved(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum WebhookCommand {
    Create {
        url: String,
        event_types: Vec<String>,
        description: Option<String>,
        destination: Destination,
        /// How many webhooks (not deleted) the tenant has, counted by the write side.
        existing: usize,
    },
    /// Absent fields stay as they are; `destination` is looked up when `url` is given.
    Update {
        url: Option<String>,
        event_types: Option<Vec<String>>,
        description: Option<Option<String>>,
        active: Option<bool>,
        destination: Option<Destination>,
    },
    Delete,
}

payloads! {
    pub struct WebhookCreated {
        pub url: String,
        pub event_types: Vec<String>,
        pub description: Option<String>,
        pub created_at: DateTime<Utc>,
    }
}

field_changes! {
    #[derive(Default)]
    pub struct WebhookUpdated changes Webhook {
        url: String,
        event_types: Vec<String>,
        description: Option<String>,
        active: bool,
    } with {
        pub updated_at: DateTime<Utc>,
    }
}

payloads! {
    pub struct WebhookDeleted {
        pub deleted_at: DateTime<Utc>,
    }
}

event_enum! {
    pub enum WebhookEvent {
        Created(WebhookCreated) = "WebhookCreated" @ 1,
        Updated(WebhookUpdated) = "WebhookUpdated" @ 1,
        Deleted(WebhookDeleted) = "WebhookDeleted" @ 1,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub url: String,
    pub event_types: Vec<String>,
    pub description: Option<String>,
    pub active: bool,
    pub deleted: bool,
}

pub fn evolve(state: Option<Webhook>, event: &WebhookEvent) -> Option<Webhook> {
    match (state, event) {
        (None, WebhookEvent::Created(e)) => Some(Webhook {
            url: e.url.clone(),
            event_types: e.event_types.clone(),
            description: e.description.clone(),
            active: true,
            deleted: false,
        }),
        (Some(mut w), WebhookEvent::Updated(e)) => {
            e.apply(&mut w);
            Some(w)
        }
        (Some(mut w), WebhookEvent::Deleted(_)) => {
            w.active = false;
            w.deleted = true;
            Some(w)
        }
        (state @ Some(_), WebhookEvent::Created(_)) => state,
        (None, WebhookEvent::Updated(_) | WebhookEvent::Deleted(_)) => None,
    }
}

pub fn decide(
    state: Option<&Webhook>,
    command: WebhookCommand,
    ctx: &Context,
) -> Result<Vec<WebhookEvent>, DomainError> {
    let now = ctx.now;
    let known: Vec<&str> = crate::DomainEvent::event_types().collect();
    let known_event_types = known.as_slice();
    match (state, command) {
        (None, WebhookCommand::Create { url, event_types, description, destination, existing }) => {
            if existing >= MAX_WEBHOOKS {
                return Err(DomainError::Conflict(format!(
                    "the tenant has {existing} webhooks, the most it may have ({MAX_WEBHOOKS}); delete one first"
                )));
            }
            let mut v = Validator::default();
            check_url(&mut v, &url, Some(&destination));
            check_event_types(&mut v, &event_types, known_event_types);
            if let Some(d) = &description {
                v.optional_text("description", d, contract::TEAM_DESCRIPTION);
            }
            v.finish()?;
            Ok(vec![WebhookEvent::Created(WebhookCreated {
                url,
                event_types: normalise(event_types),
                description,
                created_at: now,
            })])
        }
        (Some(_), WebhookCommand::Create { .. }) => Err(DomainError::Conflict("the webhook already exists".into())),
        (None, _) => Err(DomainError::NotFound("webhook")),
        (Some(w), _) if w.deleted => Err(DomainError::NotFound("webhook")),
        (Some(w), WebhookCommand::Update { url, event_types, description, active, destination }) => {
            let mut v = Validator::default();
            if let Some(url) = &url {
                check_url(&mut v, url, destination.as_ref());
            }
            if let Some(types) = &event_types {
                check_event_types(&mut v, types, known_event_types);
            }
            if let Some(Some(d)) = &description {
                v.optional_text("description", d, contract::TEAM_DESCRIPTION);
            }
            v.finish()?;
            let event = WebhookUpdated {
                url: Change::between(&w.url, url),
                event_types: Change::between(&w.event_types, event_types.map(normalise)),
                description: Change::between(&w.description, description),
                active: Change::between(&w.active, active),
                updated_at: now,
            };
            let unchanged = event.is_empty();
            Ok(if unchanged { vec![] } else { vec![WebhookEvent::Updated(event)] })
        }
        (Some(_), WebhookCommand::Delete) => Ok(vec![WebhookEvent::Deleted(WebhookDeleted { deleted_at: now })]),
    }
}

fn normalise(mut types: Vec<String>) -> Vec<String> {
    types.sort();
    types.dedup();
    types
}

/// `*` (every event), or event type names the log knows (`CaseOpened`, ...).
fn check_event_types(v: &mut Validator, types: &[String], known: &[&str]) {
    v.check(!types.is_empty(), "event_types", "name at least one event type, or \"*\" for every event");
    v.check(types.len() <= MAX_EVENT_TYPES, "event_types", format!("at most {MAX_EVENT_TYPES} event types"));
    for (i, t) in types.iter().enumerate().take(MAX_EVENT_TYPES) {
        if t != "*" && !known.contains(&t.as_str()) {
            v.extend([FieldError::new(
                format!("event_types[{i}]"),
                "not an event type of the log (e.g. CaseOpened, CaseStatusChanged) nor \"*\"",
            )]);
        }
    }
}

/// An http(s) URL with a host and neither credentials nor a fragment; then where it
/// points (`destination`, looked up for a URL that parses).
fn check_url(v: &mut Validator, url: &str, destination: Option<&Destination>) {
    match parse_url(url) {
        Err(message) => v.check(false, "url", message),
        // Which internal addresses a name has, or why it does not resolve, is not told:
        // a tenant could map the operator's network with it.
        Ok(_) => match destination {
            Some(Destination::Private(_)) => v.check(
                false,
                "url",
                "the host is or resolves to a private or internal address; webhooks go to public addresses \
                 only (an operator can allow private ones)",
            ),
            Some(Destination::Unresolved(_)) => {
                v.check(false, "url", "the host does not resolve to an address; give a host that does")
            }
            Some(Destination::Allowed) | None => {}
        },
    }
}

/// The URL, if a subscription may take it (the message says why not).
pub fn parse_url(raw: &str) -> Result<url::Url, String> {
    if raw.len() > URL_MAX || raw.chars().any(char::is_control) {
        return Err(format!("must be an http or https URL of at most {URL_MAX} bytes, without control characters"));
    }
    let url = url::Url::parse(raw).map_err(|e| format!("not a URL ({e}); e.g. https://example.com/hooks"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http or https URL".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials; deliveries are signed with the webhook's secret instead".into());
    }
    if url.fragment().is_some() {
        return Err("must not have a #fragment".into());
    }
    Ok(url)
}

/// Whether `ip` is one no webhook may reach even where an operator allows private
/// addresses: link-local ranges (169.254.0.0/16 and fe80::/10, where cloud metadata
/// services answer with the host's credentials), the other metadata addresses clouds use
/// (100.100.100.200, fd00:ec2::254, fd20:ce::254, Azure's 168.63.129.16), and the
/// unspecified address, also inside 6to4, NAT64 and IPv4-compatible addresses.
pub fn is_never_reachable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_link_local()
                || v4.is_unspecified()
                || v4.octets() == [100, 100, 100, 200] // Alibaba Cloud's metadata
                || v4.octets() == [168, 63, 129, 16] // Azure's host agent (WireServer)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_never_reachable(IpAddr::V4(v4));
            }
            let s = v6.segments();
            let embedded = |hi: u16, lo: u16| {
                let ([a, b], [c, d]) = (hi.to_be_bytes(), lo.to_be_bytes());
                is_never_reachable(IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d)))
            };
            // 6to4 and NAT64 carry an IPv4 address a gateway would dial.
            (s[0] == 0x2002 && embedded(s[1], s[2]))
                || (s[0] == 0x0064 && s[1] == 0xff9b && embedded(s[6], s[7]))
                || (s[0] & 0xffc0) == 0xfe80
                || v6.is_unspecified()
                || (s[..6] == [0; 6] && embedded(s[6], s[7])) // IPv4-compatible
                || s == [0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254] // AWS
                || s == [0xfd20, 0x00ce, 0, 0, 0, 0, 0, 0x0254] // Google Cloud
        }
    }
}

/// Whether deliveries may go to this address when private ones are not allowed: not
/// loopback, private (RFC 1918, unique local), link-local, shared (CGNAT), documentation,
/// benchmarking, multicast, broadcast or unspecified, nor an IPv4 address inside IPv6.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_unspecified()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            let first = s[0];
            // 6to4 (2002::/16) carries an IPv4 address in its next 32 bits.
            if first == 0x2002 {
                let [a, b] = s[1].to_be_bytes();
                let [c, d] = s[2].to_be_bytes();
                return is_public(IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d)));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || s[..6] == [0; 6] // IPv4-compatible (::/96), deprecated
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first & 0xffc0) == 0xfec0 // site-local, deprecated
                || first == 0x2001 && s[1] == 0x0db8
                || first == 0x0064 && (s[1] == 0xff9b))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::testing::given;

    fn create(url: &str, types: &[&str], destination: Destination) -> Result<Vec<WebhookEvent>, DomainError> {
        let cmd = WebhookCommand::Create {
            url: url.into(),
            event_types: types.iter().map(|t| t.to_string()).collect(),
            description: None,
            destination,
            existing: 0,
        };
        decide(None, cmd, &Context::at(Utc::now()))
    }

    fn fields(result: Result<Vec<WebhookEvent>, DomainError>) -> Vec<String> {
        match result {
            Err(DomainError::Invalid(errors)) => errors.into_iter().map(|e| e.field).collect(),
            other => panic!("expected invalid: {other:?}"),
        }
    }

    #[test]
    fn a_subscription_names_known_event_types_and_a_clean_public_url() {
        let ok = create("https://hooks.example.com/in", &["CaseOpened", "CaseOpened"], Destination::Allowed).unwrap();
        let [WebhookEvent::Created(e)] = ok.as_slice() else { panic!("expected created") };
        assert_eq!(e.event_types, vec!["CaseOpened"]);
        assert_eq!(fields(create("https://x.example/", &["CaseClosed!"], Destination::Allowed)), ["event_types[0]"]);
        assert_eq!(fields(create("https://x.example/", &[], Destination::Allowed)), ["event_types"]);
        for bad in [
            "ftp://x.example/",
            "https://user:pw@x.example/",
            "https://x.example/#f",
            "not a url",
            "https://x\u{0}.example/",
        ] {
            assert_eq!(fields(create(bad, &["*"], Destination::Allowed)), ["url"], "{bad}");
        }
        let private = Destination::Private("10.0.0.1".parse().unwrap());
        assert_eq!(fields(create("https://intranet.example/", &["*"], private)), ["url"]);
    }

    #[test]
    fn a_tenant_has_a_bounded_number_of_webhooks() {
        let cmd = |existing| WebhookCommand::Create {
            url: "https://x.example/".into(),
            event_types: vec!["*".into()],
            description: None,
            destination: Destination::Allowed,
            existing,
        };
        assert!(decide(None, cmd(MAX_WEBHOOKS - 1), &Context::at(Utc::now())).is_ok());
        assert!(matches!(decide(None, cmd(MAX_WEBHOOKS), &Context::at(Utc::now())), Err(DomainError::Conflict(_))));
    }

    #[test]
    fn internal_addresses_are_not_public() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::127.0.0.1",
            "fec0::1",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::",
            "192.0.0.8",
            "64:ff9b::7f00:1",
            "64:ff9b:1::1",
        ] {
            assert!(!is_public(internal.parse().unwrap()), "{internal}");
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn a_deleted_webhook_takes_no_more_commands() {
        let created = create("https://x.example/", &["*"], Destination::Allowed).unwrap();
        let state = given(&created).state();
        let deleted = decide(state.as_ref(), WebhookCommand::Delete, &Context::at(Utc::now())).unwrap();
        let state = created.iter().chain(&deleted).fold(None, evolve);
        assert!(matches!(
            decide(state.as_ref(), WebhookCommand::Delete, &Context::at(Utc::now())),
            Err(DomainError::NotFound(_))
        ));
    }
}
