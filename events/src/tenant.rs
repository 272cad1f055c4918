//! The tenant stream: provisioning a tenant creates everything its read side needs.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{DecodeError, DomainError, Validator};

#[derive(Debug, Clone, PartialEq)]
pub enum TenantCommand {
    Provision { name: String, slug: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantProvisioned {
    pub name: String,
    pub slug: String,
    pub provisioned_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TenantEvent {
    Provisioned(TenantProvisioned),
}

impl TenantEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            TenantEvent::Provisioned(_) => "TenantProvisioned",
        }
    }

    pub fn schema_version(&self) -> u16 {
        match self {
            TenantEvent::Provisioned(_) => 1,
        }
    }

    pub fn payload(&self) -> serde_json::Value {
        match self {
            TenantEvent::Provisioned(e) => serde_json::to_value(e).expect("plain data always serialises"),
        }
    }

    pub fn decode(event_type: &str, schema_version: u16, payload: serde_json::Value) -> Result<Self, DecodeError> {
        match (event_type, schema_version) {
            ("TenantProvisioned", 1) => serde_json::from_value(payload)
                .map(TenantEvent::Provisioned)
                .map_err(|source| DecodeError::Malformed { event_type: event_type.to_owned(), schema_version, source }),
            _ => Err(DecodeError::Unknown { event_type: event_type.to_owned(), schema_version }),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tenant {
    pub name: String,
    pub slug: String,
}

pub fn evolve(state: Option<Tenant>, event: &TenantEvent) -> Option<Tenant> {
    match event {
        TenantEvent::Provisioned(e) => Some(Tenant { name: e.name.clone(), slug: e.slug.clone() }).or(state),
    }
}

pub fn decide(
    state: Option<&Tenant>,
    command: TenantCommand,
    now: DateTime<Utc>,
) -> Result<Vec<TenantEvent>, DomainError> {
    match command {
        TenantCommand::Provision { name, slug } => {
            if state.is_some() {
                return Err(DomainError::Conflict("the tenant is already provisioned".into()));
            }
            let mut v = Validator::default();
            v.text("name", &name, 200);
            let slug_ok = (3..=63).contains(&slug.len())
                && slug.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !slug.starts_with('-')
                && !slug.ends_with('-');
            v.check(slug_ok, "slug", "3-63 characters of a-z, 0-9 and '-', not starting or ending with '-'");
            v.finish()?;
            Ok(vec![TenantEvent::Provisioned(TenantProvisioned {
                name: name.trim().to_owned(),
                slug,
                provisioned_at: now,
            })])
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn provisioning_validates_the_slug() {
        let cmd = TenantCommand::Provision { name: "Acme".into(), slug: "Acme Corp".into() };
        let Err(DomainError::Invalid(errors)) = decide(None, cmd, Utc::now()) else { panic!("expected invalid") };
        assert_eq!(errors[0].field, "slug");
    }

    #[test]
    fn a_tenant_is_provisioned_once() {
        let cmd = || TenantCommand::Provision { name: "Acme".into(), slug: "acme".into() };
        let events = decide(None, cmd(), Utc::now()).unwrap();
        let state = events.iter().fold(None, evolve);
        assert!(matches!(decide(state.as_ref(), cmd(), Utc::now()), Err(DomainError::Conflict(_))));
    }
}
