//! The tenant configuration cache of the seed (§6.3.3): `tenant_<id>:config:tenant` in
//! Redis, for an hour, holding a tenant's settings and status as its tenant stream's
//! folded state at one version.
//!
//! A command API checks its tenant on every command from its own cache of facts
//! (`stream_cache`), which costs nothing. This copy serves the check when that cache does
//! not hold the tenant (a command API just started, a tenant it has not seen, the facts'
//! notifications lost): the copy is read, and then only the tenant's events after its
//! version from the journal, so the check never decides on an old copy. What it saves is
//! folding the tenant's whole history (every settings change is an event) on each such
//! miss, in every command API.
//!
//! Written newest version first, so an older fold never replaces a newer one: by the
//! command API that changes the tenant, in the request that commits the change (or, if it
//! does not hold the new state, it drops any older copy), and by a command API that had to
//! read newer events than the copy held. Every call is bounded by `TIMEOUT` and failing
//! Redis is only a miss: the journal answers then.

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

/// KEYS: the copy. ARGV: version, state, format, TTL. Keeps the state unless a copy at
/// the same or a newer version is held (1 if written).
const KEEP_NEWEST: &str = r#"
local held = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if tonumber(ARGV[1]) <= held then
  return 0
end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'state', ARGV[2], 'format', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"#;

/// KEYS: the copy. ARGV: version. Drops a copy older than the version (1 if dropped).
const DROP_OLDER: &str = r#"
local held = redis.call('HGET', KEYS[1], 'version')
if held and tonumber(held) < tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"#;

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
    pub async fn read(&self, tenant: Uuid) -> Option<(Tenant, i64)> {
        let mut redis = self.redis.clone();
        let mut hmget = redis::cmd("HMGET");
        hmget.arg(key(tenant)).arg("version").arg("state").arg("format");
        let read = hmget.query_async::<(Option<i64>, Option<String>, Option<String>)>(&mut redis);
        let found = match tokio::time::timeout(TIMEOUT, read).await {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => return self.missed(tenant, &e.to_string()),
            Err(_) => return self.missed(tenant, "Redis did not answer in time"),
        };
        let (Some(version), Some(state), Some(FORMAT)) = (found.0, found.1, found.2.as_deref()) else {
            metrics::counter!("config_cache_reads_total", "outcome" => "miss").increment(1);
            return None;
        };
        match serde_json::from_str::<Tenant>(&state) {
            Ok(tenant) if version > 0 => {
                metrics::counter!("config_cache_reads_total", "outcome" => "hit").increment(1);
                Some((tenant, version))
            }
            _ => self.missed(tenant, "the copy does not read as a tenant"),
        }
    }

    fn missed<T>(&self, tenant: Uuid, why: &str) -> Option<T> {
        metrics::counter!("config_cache_reads_total", "outcome" => "error").increment(1);
        tracing::warn!(%tenant, why, "the tenant's configuration cache was not read; the journal answers");
        None
    }

    /// Keeps the tenant's state at `version`, unless a copy as new is held.
    pub async fn keep(&self, tenant: Uuid, version: i64, state: &Tenant) {
        let Ok(json) = serde_json::to_string(state) else { return };
        let mut invocation = self.keep_newest.key(key(tenant));
        invocation.arg(version).arg(json).arg(FORMAT).arg(TTL_SECS);
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
