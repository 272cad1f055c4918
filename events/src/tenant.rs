//! The tenant stream: provision (creates everything the read side needs), update
//! settings, suspend and reactivate. A suspended tenant's commands are refused.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::change::Change;
use crate::contract;
use crate::error::{DomainError, Validator};
use crate::stream::Context;

pub type Settings = Map<String, Value>;

const MAX_SETTINGS_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    Active,
    Suspended,
}

impl TenantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TenantStatus::Active => "active",
            TenantStatus::Suspended => "suspended",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum TenantCommand {
    Provision { name: String, slug: String, settings: Settings },
    UpdateSettings { settings: Settings },
    Suspend { reason: String },
    Reactivate,
}

payloads! {
    /// v2 added `settings`; v1 events (no settings) are upcast with an empty object.
    pub struct TenantProvisioned {
        pub name: String,
        pub slug: String,
        pub settings: Settings,
        pub provisioned_at: DateTime<Utc>,
    }

    pub struct TenantSettingsUpdated {
        pub settings: Change<Settings>,
        pub updated_at: DateTime<Utc>,
    }

    pub struct TenantSuspended {
        pub reason: String,
        pub suspended_at: DateTime<Utc>,
    }

    pub struct TenantReactivated {
        pub reactivated_at: DateTime<Utc>,
    }
}

event_enum! {
    pub enum TenantEvent {
        Provisioned(TenantProvisioned) = "TenantProvisioned" @ 2 [1 => provisioned_v1_to_v2],
        SettingsUpdated(TenantSettingsUpdated) = "TenantSettingsUpdated" @ 1,
        Suspended(TenantSuspended) = "TenantSuspended" @ 1,
        Reactivated(TenantReactivated) = "TenantReactivated" @ 1,
    }
}

/// TenantProvisioned v1 (name, slug, provisioned_at) -> v2 (adds `settings`, empty).
fn provisioned_v1_to_v2(mut payload: Value) -> Value {
    if let Some(object) = payload.as_object_mut() {
        object.entry("settings").or_insert_with(|| Value::Object(Settings::new()));
    }
    payload
}

/// Serialised as the tenant configuration cache's copy (`command-api`'s `config_cache`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    pub name: String,
    pub slug: String,
    pub settings: Settings,
    pub status: TenantStatus,
}

pub fn evolve(state: Option<Tenant>, event: &TenantEvent) -> Option<Tenant> {
    match (state, event) {
        (None, TenantEvent::Provisioned(e)) => Some(Tenant {
            name: e.name.clone(),
            slug: e.slug.clone(),
            settings: e.settings.clone(),
            status: TenantStatus::Active,
        }),
        (Some(mut t), TenantEvent::SettingsUpdated(e)) => {
            t.settings = e.settings.new.clone();
            Some(t)
        }
        (Some(mut t), TenantEvent::Suspended(_)) => {
            t.status = TenantStatus::Suspended;
            Some(t)
        }
        (Some(mut t), TenantEvent::Reactivated(_)) => {
            t.status = TenantStatus::Active;
            Some(t)
        }
        // Never in a well-formed stream: the state is kept, never invented. Every
        // (state, event) pair is named, so a new event fails to compile here until folded.
        (state @ Some(_), TenantEvent::Provisioned(_)) => state,
        (None, TenantEvent::SettingsUpdated(_) | TenantEvent::Suspended(_) | TenantEvent::Reactivated(_)) => None,
    }
}

/// How long a tenant keeps interactions and audit entries by default, in days (seed
/// §5.3.2: deleted after 365 days); `settings.retention_days` overrides it.
pub const DEFAULT_RETENTION_DAYS: i64 = 365;
/// The longest retention a tenant may set (ten years).
pub const MAX_RETENTION_DAYS: i64 = 3650;

/// A tenant's retention in days, as its settings give it (checked when they were saved).
pub fn retention_days(settings: &Settings) -> i64 {
    settings
        .get("retention_days")
        .and_then(serde_json::Value::as_i64)
        .filter(|d| (1..=MAX_RETENTION_DAYS).contains(d))
        .unwrap_or(DEFAULT_RETENTION_DAYS)
}

/// The first month a tenant with `days` of retention still keeps, as of `now`: every
/// month before it ended more than `days` ago (and is removed by the retention job).
pub fn kept_from(now: DateTime<Utc>, days: i64) -> Option<DateTime<Utc>> {
    use chrono::{Datelike, TimeZone};
    let at = now.checked_sub_signed(chrono::Duration::days(days))?;
    let first = chrono::NaiveDate::from_ymd_opt(at.year(), at.month(), 1)?;
    Some(Utc.from_utc_datetime(&first.and_hms_opt(0, 0, 0)?))
}

fn check_settings(v: &mut Validator, settings: &Settings) {
    let size = serde_json::to_string(settings).map(|s| s.len()).unwrap_or(0);
    v.check(size <= MAX_SETTINGS_BYTES, "settings", format!("must be at most {MAX_SETTINGS_BYTES} bytes of JSON"));
    if let Some(days) = settings.get("retention_days") {
        v.check(
            days.as_i64().is_some_and(|d| (1..=MAX_RETENTION_DAYS).contains(&d)),
            "settings.retention_days",
            format!("must be a whole number of days from 1 to {MAX_RETENTION_DAYS}"),
        );
    }
}

pub fn decide(state: Option<&Tenant>, command: TenantCommand, ctx: &Context) -> Result<Vec<TenantEvent>, DomainError> {
    let now = ctx.now;
    match (state, command) {
        (Some(_), TenantCommand::Provision { .. }) => {
            Err(DomainError::Conflict("the tenant is already provisioned".into()))
        }
        (None, TenantCommand::Provision { name, slug, settings }) => {
            let mut v = Validator::default();
            v.text("name", &name, contract::TENANT_NAME);
            let slug_ok = (3..=63).contains(&slug.len())
                && slug.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !slug.starts_with('-')
                && !slug.ends_with('-');
            v.check(slug_ok, "slug", "3-63 characters of a-z, 0-9 and '-', not starting or ending with '-'");
            check_settings(&mut v, &settings);
            v.finish()?;
            Ok(vec![TenantEvent::Provisioned(TenantProvisioned {
                name: name.trim().to_owned(),
                slug,
                settings,
                provisioned_at: now,
            })])
        }
        (None, _) => Err(DomainError::NotFound("tenant")),
        (Some(tenant), TenantCommand::UpdateSettings { settings }) => {
            let mut v = Validator::default();
            check_settings(&mut v, &settings);
            v.finish()?;
            Ok(Change::between(&tenant.settings, Some(settings))
                .map(|settings| TenantEvent::SettingsUpdated(TenantSettingsUpdated { settings, updated_at: now }))
                .into_iter()
                .collect())
        }
        (Some(tenant), TenantCommand::Suspend { reason }) => {
            let mut v = Validator::default();
            v.text("reason", &reason, contract::REASON);
            v.finish()?;
            if tenant.status == TenantStatus::Suspended {
                return Ok(vec![]);
            }
            Ok(vec![TenantEvent::Suspended(TenantSuspended { reason: reason.trim().to_owned(), suspended_at: now })])
        }
        (Some(tenant), TenantCommand::Reactivate) => {
            if tenant.status == TenantStatus::Active {
                return Ok(vec![]);
            }
            Ok(vec![TenantEvent::Reactivated(TenantReactivated { reactivated_at: now })])
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::testing::given;
    use serde_json::json;

    fn provision() -> TenantCommand {
        TenantCommand::Provision { name: "Acme".into(), slug: "acme".into(), settings: Settings::new() }
    }

    #[test]
    fn provisioning_validates_the_slug() {
        let cmd = TenantCommand::Provision { name: "Acme".into(), slug: "Acme Corp".into(), settings: Settings::new() };
        let Err(DomainError::Invalid(errors)) = decide(None, cmd, &Context::at(Utc::now())) else {
            panic!("expected invalid")
        };
        assert_eq!(errors[0].field, "slug");
    }

    #[test]
    fn a_tenant_is_provisioned_once() {
        let state = given(&decide(None, provision(), &Context::at(Utc::now())).unwrap()).state();
        assert!(matches!(decide(state.as_ref(), provision(), &Context::at(Utc::now())), Err(DomainError::Conflict(_))));
    }

    #[test]
    fn suspending_and_reactivating_toggle_the_status_once() {
        let mut events = decide(None, provision(), &Context::at(Utc::now())).unwrap();
        let state = given(&events).state();
        let suspended =
            decide(state.as_ref(), TenantCommand::Suspend { reason: "unpaid".into() }, &Context::at(Utc::now()))
                .unwrap();
        events.extend(suspended);
        let state = given(&events).state();
        assert_eq!(state.as_ref().unwrap().status, TenantStatus::Suspended);
        let again =
            decide(state.as_ref(), TenantCommand::Suspend { reason: "unpaid".into() }, &Context::at(Utc::now()))
                .unwrap();
        assert_eq!(again, vec![]);
        let back = decide(state.as_ref(), TenantCommand::Reactivate, &Context::at(Utc::now())).unwrap();
        events.extend(back);
        assert_eq!(given(&events).state().unwrap().status, TenantStatus::Active);
    }

    #[test]
    fn settings_updates_record_old_and_new() {
        let state = given(&decide(None, provision(), &Context::at(Utc::now())).unwrap()).state();
        let settings: Settings = serde_json::from_value(json!({ "timezone": "Africa/Nairobi" })).unwrap();
        let events = decide(
            state.as_ref(),
            TenantCommand::UpdateSettings { settings: settings.clone() },
            &Context::at(Utc::now()),
        )
        .unwrap();
        let [TenantEvent::SettingsUpdated(e)] = events.as_slice() else { panic!("expected one update") };
        assert_eq!(e.settings.old, Settings::new());
        assert_eq!(e.settings.new, settings);
        let unchanged = decide(
            state.as_ref(),
            TenantCommand::UpdateSettings { settings: Settings::new() },
            &Context::at(Utc::now()),
        );
        assert_eq!(unchanged.unwrap(), vec![], "the same settings are no change");
    }

    #[test]
    fn a_v1_provisioned_event_in_the_log_is_upcast_with_empty_settings() {
        let v1 = json!({ "name": "Old Co", "slug": "old-co", "provisioned_at": "2026-11-25T09:00:00Z" });
        let event = TenantEvent::decode("TenantProvisioned", 1, v1).unwrap();
        let TenantEvent::Provisioned(e) = &event else { panic!("expected TenantProvisioned") };
        assert_eq!(e.slug, "old-co");
        assert_eq!(e.settings, Settings::new());
        assert_eq!(event.schema_version(), 2);
    }

    #[test]
    fn commands_on_a_missing_tenant_are_not_found() {
        assert_eq!(
            decide(None, TenantCommand::Reactivate, &Context::at(Utc::now())),
            Err(DomainError::NotFound("tenant"))
        );
    }
}
