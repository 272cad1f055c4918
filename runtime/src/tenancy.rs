//! The one place tenant-scoped names are made, so every store isolates tenants the same way
//! (seed §1.3): Postgres schema `tenant_<id>`, Mongo `tenant_<id>_<collection>`,
//! Elasticsearch `tenant-<id>-<entity>-YYYY-MM`, Redis `tenant_<id>:...`.
//! `<id>` is the tenant UUID without dashes. These names are stored state: never change them.

use chrono::{DateTime, Utc};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tenancy(pub Uuid);

impl Tenancy {
    fn id(&self) -> String {
        self.0.simple().to_string()
    }

    pub fn pg_schema(&self) -> String {
        format!("tenant_{}", self.id())
    }

    pub fn mongo_collection(&self, collection: &str) -> String {
        format!("tenant_{}_{collection}", self.id())
    }

    /// The month's audit collection, `tenant_<id>_audit_logs_YYYY_MM` (seed §5.2.2): a
    /// tenant's audit entries are kept by the month of their time, so retention drops a
    /// month whole and no index grows forever.
    pub fn mongo_audit_collection(&self, at: DateTime<Utc>) -> String {
        format!("{}{}", self.mongo_audit_prefix(), at.format("%Y_%m"))
    }

    /// What every name of the tenant's audit collections starts with.
    pub fn mongo_audit_prefix(&self) -> String {
        format!("{}_", self.mongo_collection(AUDIT_LOGS))
    }

    /// The first instant of the month an audit collection of this tenant holds, if `name`
    /// is one.
    pub fn mongo_audit_month(&self, name: &str) -> Option<DateTime<Utc>> {
        let month = name.strip_prefix(&self.mongo_audit_prefix())?;
        let (year, month) = month.split_once('_')?;
        if year.len() != 4 || month.len() != 2 || !(year.bytes().chain(month.bytes())).all(|b| b.is_ascii_digit()) {
            return None;
        }
        let first = chrono::NaiveDate::from_ymd_opt(year.parse().ok()?, month.parse().ok()?, 1)?;
        Some(first.and_hms_opt(0, 0, 0)?.and_utc())
    }

    pub fn es_index(&self, entity: &str, month: DateTime<Utc>) -> String {
        format!("tenant-{}-{entity}-{}", self.id(), month.format("%Y-%m"))
    }

    /// The read alias spanning every month of an entity's indices.
    pub fn es_alias(&self, entity: &str) -> String {
        format!("tenant-{}-{entity}", self.id())
    }

    /// The monthly index holding a case: the month its v7 id was minted, so every event
    /// of the case (and every reader) finds the same index without a lookup.
    pub fn case_index(&self, case_id: Uuid) -> String {
        self.es_index(CASES, uuid_time(case_id).unwrap_or(DateTime::UNIX_EPOCH))
    }

    pub fn redis_key(&self, rest: &str) -> String {
        format!("tenant_{}:{rest}", self.id())
    }

    /// Hash: case status -> number of cases in it.
    pub fn redis_cases_by_status(&self) -> String {
        self.redis_key("counters:cases_by_status")
    }

    /// Hash: user id -> number of open (not resolved or closed) cases assigned to them.
    pub fn redis_open_cases_by_assignee(&self) -> String {
        self.redis_key("counters:open_cases_by_assignee")
    }

    /// Hash: priority -> number of open cases with it.
    pub fn redis_open_cases_by_priority(&self) -> String {
        self.redis_key("counters:open_cases_by_priority")
    }

    /// Hash: team id -> number of open cases assigned to the team.
    pub fn redis_open_cases_by_team(&self) -> String {
        self.redis_key("counters:open_cases_by_team")
    }

    /// Hash: case id -> "version|status|priority|assignee|team", what the counters last counted.
    /// SLA breaches recorded, by clock (`first_response`, `resolution`).
    pub fn redis_sla_breaches(&self) -> String {
        self.redis_key("counters:sla_breaches")
    }

    pub fn redis_counted_cases(&self) -> String {
        self.redis_key("projection:counted_cases")
    }

    /// Hash: stream id -> the last version applied to Redis, for streams other than cases.
    pub fn redis_stream_versions(&self) -> String {
        self.redis_key("projection:stream_versions")
    }

    /// Sorted set (seed §2.3.2): user id scored by the unix time of their last activity.
    pub fn redis_online_users(&self) -> String {
        self.redis_key("online_users")
    }

    /// List (seed §2.3.2): the user's notifications as JSON, newest first; 30 days.
    pub fn redis_notifications(&self, user_id: Uuid) -> String {
        self.redis_key(&format!("notifications:{user_id}"))
    }

    /// Set: the ids of the user's notifications read one by one; 30 days.
    pub fn redis_notifications_read(&self, user_id: Uuid) -> String {
        self.redis_key(&format!("notifications:{user_id}:read"))
    }

    /// String: unix milliseconds; a notification about an event before then is read.
    pub fn redis_notifications_read_before(&self, user_id: Uuid) -> String {
        self.redis_key(&format!("notifications:{user_id}:read_before"))
    }

    /// Hash (seed §2.3.2): the user's permission cache; 1 hour, dropped on a role change.
    pub fn redis_user_permissions(&self, user_id: Uuid) -> String {
        self.redis_key(&format!("user:{user_id}:permissions"))
    }

    /// Sorted set (seed §2.3.2's viewers set, with an expiry per member): who is looking
    /// at a case, each user scored by the unix milliseconds of their last read or
    /// heartbeat; a member older than the viewer window is no longer a viewer.
    pub fn redis_case_viewers(&self, case_id: Uuid) -> String {
        self.redis_key(&format!("case:{case_id}:viewing"))
    }

    /// String (seed §2.3.2): a lock on a resource; 30 seconds.
    pub fn redis_lock(&self, resource: &str) -> String {
        self.redis_key(&format!("locks:{resource}"))
    }

    /// The seed's case cache key (§2.3.2), dropped by the projector on every case event.
    pub fn redis_case_cache(&self, case_id: Uuid) -> String {
        self.redis_key(&format!("case:{case_id}"))
    }
}

/// Collection and index names that both the projector and the query API use.
pub const AUDIT_LOGS: &str = "audit_logs";
pub const CASES: &str = "cases";
pub const NOTES: &str = "notes";
pub const INTERACTIONS: &str = "interactions";
/// The audit entries' Elasticsearch entity (indices use dashes, seed §2.4.2).
pub const ES_AUDIT_LOGS: &str = "audit-logs";

/// When a UUIDv7 was minted; case ids are v7 so a case's monthly index follows from its id.
pub fn uuid_time(id: Uuid) -> Option<DateTime<Utc>> {
    let (secs, nanos) = id.get_timestamp()?.to_unix();
    DateTime::from_timestamp(secs as i64, nanos)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn names_follow_the_design_document() {
        let t = Tenancy(Uuid::from_u128(0xab));
        let hex = "000000000000000000000000000000ab";
        assert_eq!(t.pg_schema(), format!("tenant_{hex}"));
        assert_eq!(t.mongo_collection("audit_logs"), format!("tenant_{hex}_audit_logs"));
        let month = DateTime::from_timestamp(1_780_000_000, 0).unwrap();
        assert_eq!(t.es_index("cases", month), format!("tenant-{hex}-cases-2026-05"));
        assert_eq!(t.mongo_audit_collection(month), format!("tenant_{hex}_audit_logs_2026_05"));
        assert_eq!(t.redis_key("counters"), format!("tenant_{hex}:counters"));
    }

    #[test]
    fn an_audit_collection_names_its_month_and_nothing_else_passes_for_one() {
        let t = Tenancy(Uuid::from_u128(0xab));
        let month = DateTime::from_timestamp(1_780_000_000, 0).unwrap();
        let first = DateTime::parse_from_rfc3339("2026-05-01T00:00:00Z").unwrap().to_utc();
        assert_eq!(t.mongo_audit_month(&t.mongo_audit_collection(month)), Some(first));
        let prefix = t.mongo_audit_prefix();
        for other in ["2026_13", "2026_5", "26_05", "2026-05", "2026_05_x", "x026_05", ""] {
            assert_eq!(t.mongo_audit_month(&format!("{prefix}{other}")), None, "{other}");
        }
        assert_eq!(t.mongo_audit_month(&t.mongo_collection(AUDIT_LOGS)), None);
        assert_eq!(Tenancy(Uuid::from_u128(0xac)).mongo_audit_month(&t.mongo_audit_collection(month)), None);
    }

    #[test]
    fn a_v7_id_knows_its_month() {
        let id = Uuid::now_v7();
        let minted = uuid_time(id).unwrap();
        assert!((Utc::now() - minted).num_seconds().abs() < 5);
        assert_eq!(uuid_time(Uuid::new_v4()), None);
    }
}
