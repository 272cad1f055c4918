//! The tenant configuration cache of the seed (§6.3.3): `tenant_<id>:config:tenant` in
//! Redis, for an hour, holding a tenant's settings and status as its tenant stream's
//! folded state at one version.
//!
//! A command API checks its tenant on every command from its own cache of facts
//! (`stream_cache`), which costs nothing. This copy serves the check when that cache does
//! not hold the tenant (a command API just started, a tenant it has not seen, the facts'
//! notifications lost): the copy is read, and then the tenant's events from the copy's
//! version on, from the journal. The copy names the id of its last event, and is used
//! only if the journal holds that event at that version (otherwise, a database restored
//! behind it, the tenant is folded from its start and the copy replaced); the events
//! after it are folded on. So the check never decides on an old copy or another
//! journal's. What it saves is folding the tenant's whole history (every settings change
//! is an event) on each such miss, in every command API.
//!
//! A tenant change drops older copies; a check that folded further than the copy (or
//! found none) writes its fold back, newest version first, so an older fold never
//! replaces a newer one. Every call is bounded by `TIMEOUT` and failing Redis is only a
//! miss: the journal answers then.

use std::time::Duration;

use events::tenant::Tenant;
use redis::aio::ConnectionManager;
use redis::Script;
use runtime::tenancy::Tenancy;
use uuid::Uuid;

/// How long a copy lives (seed §6.3.3).
pub const TTL_SECS: u64 = 3600;
/// How long a Redis call may take before the journal answers alone.
const TIMEOUT: Duration = Duration::from_millis(250);
/// The shape of the state the copy holds: a copy of another shape (written by a build
/// whose `Tenant` differs) reads as a miss. Raise it when `Tenant` changes.
const FORMAT: &str = "1";

/// KEYS: the copy. ARGV: version, event id, state, format, TTL, "1" to replace whatever
/// is held. Keeps the state unless a copy of this format at the same or a newer version
/// is held (1 if written).
const KEEP_NEWEST: &str = r#"
local held = tonumber(redis.call('HGET', KEYS[1], 'version')) or 0
if redis.call('HGET', KEYS[1], 'format') ~= ARGV[4] then
  held = 0
end
if ARGV[6] ~= '1' and tonumber(ARGV[1]) <= held then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'event', ARGV[2], 'state', ARGV[3], 'format', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"#;

/// KEYS: the copy. ARGV: version. Drops a copy older than the version, or one whose
/// version does not read as a number (1 if dropped).
const DROP_OLDER: &str = r#"
local held = redis.call('HGET', KEYS[1], 'version')
if held and (tonumber(held) == nil or tonumber(held) < tonumber(ARGV[1])) then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"#;

/// A tenant's state as a copy holds it: after `version`, whose event is `event_id`.
pub struct Copy {
    pub state: Tenant,
    pub version: i64,
    pub event_id: Uuid,
}

#[derive(Clone)]
pub struct ConfigCache {
    redis: ConnectionManager,
    keep_newest: std::sync::Arc<Script>,
    drop_older: std::sync::Arc<Script>,
}

/// The key of a tenant's copy.
pub fn key(tenant: Uuid) -> String {
    Tenancy(tenant).redis_key("config:tenant")
}

impl ConfigCache {
    pub fn new(redis: ConnectionManager) -> Self {
        Self {
            redis,
            keep_newest: std::sync::Arc::new(Script::new(KEEP_NEWEST)),
            drop_older: std::sync::Arc::new(Script::new(DROP_OLDER)),
        }
    }

    /// The tenant's state at the copy's version, if Redis holds a copy this build reads.
    pub async fn read(&self, tenant: Uuid) -> Option<Copy> {
        let mut redis = self.redis.clone();
        let mut hmget = redis::cmd("HMGET");
        hmget.arg(key(tenant)).arg("version").arg("event").arg("state").arg("format");
        type Fields = (Option<String>, Option<String>, Option<String>, Option<String>);
        let read = hmget.query_async::<Fields>(&mut redis);
        let found = match tokio::time::timeout(TIMEOUT, read).await {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => return self.missed(tenant, &e.to_string()),
            Err(_) => return self.missed(tenant, "Redis did not answer in time"),
        };
        let (Some(version), Some(event_id), Some(state), Some(FORMAT)) =
            (found.0, found.1, found.2, found.3.as_deref())
        else {
            metrics::counter!("config_cache_reads_total", "outcome" => "miss").increment(1);
            return None;
        };
        let read = (version.parse::<i64>(), event_id.parse::<Uuid>(), serde_json::from_str::<Tenant>(&state));
        match read {
            (Ok(version), Ok(event_id), Ok(state)) if version > 0 => {
                metrics::counter!("config_cache_reads_total", "outcome" => "hit").increment(1);
                Some(Copy { state, version, event_id })
            }
            _ => self.missed(tenant, "the copy does not read as a tenant"),
        }
    }

    fn missed<T>(&self, tenant: Uuid, why: &str) -> Option<T> {
        metrics::counter!("config_cache_reads_total", "outcome" => "error").increment(1);
        tracing::warn!(%tenant, why, "the tenant's configuration cache was not read; the journal answers");
        None
    }

    /// Keeps the tenant's state at `version` (whose event is `event_id`), unless a copy as
    /// new is held; `replace`: whatever is held (it was found not to be of this journal).
    pub async fn keep(&self, tenant: Uuid, version: i64, event_id: Uuid, state: &Tenant, replace: bool) {
        let Ok(json) = serde_json::to_string(state) else { return };
        let mut invocation = self.keep_newest.key(key(tenant));
        invocation.arg(version).arg(event_id.to_string()).arg(json).arg(FORMAT).arg(TTL_SECS);
        invocation.arg(if replace { "1" } else { "0" });
        let mut redis = self.redis.clone();
        let write = invocation.invoke_async::<i64>(&mut redis);
        self.settle(tenant, "kept", tokio::time::timeout(TIMEOUT, write).await);
    }

    /// The tenant changed at `version` and this process does not hold the new state: an
    /// older copy goes (the next check reads the journal and writes it again).
    pub async fn drop_older(&self, tenant: Uuid, version: i64) {
        let mut invocation = self.drop_older.key(key(tenant));
        invocation.arg(version);
        let mut redis = self.redis.clone();
        let write = invocation.invoke_async::<i64>(&mut redis);
        self.settle(tenant, "dropped", tokio::time::timeout(TIMEOUT, write).await);
    }

    /// A write that failed leaves an older copy at worst, which costs the next reader the
    /// events after it and nothing else.
    fn settle(&self, tenant: Uuid, what: &str, done: Result<redis::RedisResult<i64>, tokio::time::error::Elapsed>) {
        let why = match done {
            Ok(Ok(_)) => return,
            Ok(Err(e)) => e.to_string(),
            Err(_) => "Redis did not answer in time".to_owned(),
        };
        tracing::warn!(%tenant, what, why, "the tenant's configuration cache was not written");
    }
}
