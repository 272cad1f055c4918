//! Sessions and the live rights of their users, in Redis (seed §2.3.2). Every key sits
//! under its tenant's prefix (`tenant_<id>:`):
//!
//! - `session:{id}` (hash: `user`): one login; 24 hours, renewed by every request.
//! - `user:{id}:sessions_by_age` (sorted set, scored by when each opened): the user's
//!   sessions, at most `MAX_SESSIONS_PER_USER` (a login beyond ends the oldest), so all of
//!   them can be ended, in batches of `END_BATCH`. (`user:{id}:sessions`, a plain set,
//!   held them before the cap; it is still ended, never added to, and expires unused.)
//! - `user:{id}:epoch`: raised whenever all of a user's sessions end; a login opens its
//!   session only if the epoch it saw before checking the password still holds, so a
//!   login in flight cannot outlive a password change, a reset or a lock.
//! - `user:{id}:permissions` (hash: `role`, `status`, `grants`, `version`): the rights
//!   cache, 1 hour. The command API writes it in the request that changes the user (and at
//!   login); the query API fills it from its read model on a miss; the projector drops it
//!   when it applies a change. Every writer keeps the newest user version, so an older
//!   copy never replaces a newer one.
//! - `user:{id}:revision`: the newest user version whose rights the command API committed.
//!   A rights entry older than it is stale and is never served, whoever wrote it.
//! - `tenant:status` (and `tenant:status_version`): `active` or `suspended`, written by
//!   the command API in the request that changes it and by the projector, newest first.
//! - `rate_limit:overrides` (hash: class -> per minute): the tenant's budgets as the
//!   platform operator set them in its settings (`runtime::limits`).

use redis::aio::ConnectionManager;
use redis::Script;
use uuid::Uuid;

use crate::auth::{Role, Token};
use crate::tenancy::Tenancy;

/// How long a session lives without a request (sliding).
pub const SESSION_TTL_SECS: i64 = 24 * 3600;
/// How long a rights cache entry lives (seed §6.3.2).
pub const RIGHTS_TTL_SECS: i64 = 3600;
/// Live sessions a user may hold; a login beyond ends the oldest.
pub const MAX_SESSIONS_PER_USER: usize = 20;
/// Sessions ended per Redis script when all of a user's end (a script blocks Redis).
pub const END_BATCH: usize = 100;

/// A user's rights at one version of their stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rights {
    pub version: i64,
    pub role: Role,
    /// `active`, `inactive`, `locked`, ...: anything but `active` refuses the user.
    pub status: String,
    /// Bits of `Permission::ALL` the user's permission document grants.
    pub grants: u32,
}

impl Rights {
    /// The user as a caller with these rights (to ask what they may do).
    pub fn caller(&self, user_id: Uuid, tenant_id: Uuid) -> crate::auth::Caller {
        crate::auth::Caller { user_id, tenant_id, role: self.role, grants: self.grants, operator: false }
    }
}

/// What one round trip to Redis found for a request.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// The token's session exists and belongs to its user (renewed by this look).
    pub alive: bool,
    pub rights: Option<Rights>,
    /// The newest user version the command API committed a rights change at (0: none).
    pub revision: i64,
    pub tenant_suspended: bool,
    /// Whether Redis holds the tenant's status at all (it does not for a tenant from
    /// before sessions, or after Redis lost its data): if not, the caller must look it up
    /// in its own store before serving anything.
    pub tenant_status_known: bool,
}

impl Seen {
    /// The cached rights, if no committed change is newer than them.
    pub fn fresh_rights(&self) -> Option<&Rights> {
        self.rights.as_ref().filter(|r| r.version >= self.revision)
    }
}

/// KEYS: the rights hash, the revision. ARGV: version, role, status, grants, TTL, and
/// whether this write is a committed change (which also raises the revision).
const KEEP_NEWEST: &str = r#"
local v = tonumber(ARGV[1])
if ARGV[6] == '1' and v > tonumber(redis.call('GET', KEYS[2]) or '0') then
  redis.call('SET', KEYS[2], v)
end
if v >= tonumber(redis.call('HGET', KEYS[1], 'version') or '-1') then
  redis.call('HSET', KEYS[1], 'version', v, 'role', ARGV[2], 'status', ARGV[3], 'grants', ARGV[4])
  redis.call('EXPIRE', KEYS[1], ARGV[5])
end
return 0
"#;

/// KEYS: the user's epoch. Raises it (no login that began before can open a session)
/// and answers Redis's clock in microseconds: sessions opened up to then are to end.
const BEGIN_END_ALL: &str = r#"
redis.call('INCR', KEYS[1])
local t = redis.call('TIME')
return tonumber(t[1] .. string.rep('0', 6 - #t[2]) .. t[2])
"#;

/// KEYS: the user's sessions by age, their set from before the cap. ARGV: the tenant
/// prefix, the clock from `BEGIN_END_ALL`, the batch size. Ends one batch of the sessions
/// opened up to that clock; answers {ended (were alive), taken from the sets}.
const END_SOME: &str = r#"
local ended = 0
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  ended = ended + redis.call('DEL', ARGV[1] .. 'session:' .. id)
  redis.call('ZREM', KEYS[1], id)
end
local taken = #ids
if taken < tonumber(ARGV[3]) and redis.call('EXISTS', KEYS[2]) == 1 then
  local old = redis.call('SPOP', KEYS[2], tonumber(ARGV[3]) - taken)
  for _, id in ipairs(old) do
    ended = ended + redis.call('DEL', ARGV[1] .. 'session:' .. id)
  end
  taken = taken + #old
end
return {ended, taken}
"#;

/// KEYS: the tenant's status and its version. ARGV: status, version.
const TENANT_STATUS: &str = r#"
local held = tonumber(redis.call('GET', KEYS[2]) or '0')
local v = tonumber(ARGV[2])
-- A newer status, or the same one again where the status itself was lost (evicted).
if held < v or (held == v and redis.call('EXISTS', KEYS[1]) == 0) then
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('SET', KEYS[2], ARGV[2])
end
return 0
"#;

/// KEYS: the session, the user's sessions by age, their epoch. ARGV: user id, session
/// id, TTL, the epoch the login saw, the most sessions a user holds, the tenant prefix.
/// Opens the session unless the epoch moved (1 if opened), and ends the oldest ones
/// beyond the most (at most one, as every login keeps the bound).
const OPEN: &str = r#"
if tonumber(redis.call('GET', KEYS[3]) or '0') ~= tonumber(ARGV[4]) then return 0 end
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], 'user', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
-- (digits, not a Lua number: Lua would print it with 14 digits only)
redis.call('ZADD', KEYS[2], t[1] .. string.rep('0', 6 - #t[2]) .. t[2], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[5])
if excess > 0 then
  for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, excess - 1)) do
    redis.call('DEL', ARGV[6] .. 'session:' .. id)
  end
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, excess - 1)
end
return 1
"#;

#[derive(Clone)]
pub struct Sessions {
    redis: ConnectionManager,
    keep_newest: std::sync::Arc<Script>,
    begin_end_all: std::sync::Arc<Script>,
    end_some: std::sync::Arc<Script>,
    open: std::sync::Arc<Script>,
    tenant_status: std::sync::Arc<Script>,
}

/// Why a token is not admitted, or the session store did not answer.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(
        "the session has ended (logged out, ended by an administrator, a password change, or 24 hours unused); \
         log in again"
    )]
    Ended,
    #[error("the tenant is suspended; ask the platform operator")]
    TenantSuspended,
    #[error("the session store failed: {0}")]
    Unreachable(#[from] redis::RedisError),
}

fn unreachable(e: redis::RedisError) -> SessionError {
    SessionError::Unreachable(e)
}

fn session_key(tenant: Uuid, session: Uuid) -> String {
    Tenancy(tenant).redis_key(&format!("session:{session}"))
}

fn sessions_of(tenant: Uuid, user: Uuid) -> String {
    Tenancy(tenant).redis_key(&format!("user:{user}:sessions_by_age"))
}

/// The set that held a user's sessions before they were capped (ended, never added to).
fn sessions_before_the_cap(tenant: Uuid, user: Uuid) -> String {
    Tenancy(tenant).redis_key(&format!("user:{user}:sessions"))
}

fn epoch_key(tenant: Uuid, user: Uuid) -> String {
    Tenancy(tenant).redis_key(&format!("user:{user}:epoch"))
}

fn revision_key(tenant: Uuid, user: Uuid) -> String {
    Tenancy(tenant).redis_key(&format!("user:{user}:revision"))
}

fn tenant_status_key(tenant: Uuid) -> String {
    Tenancy(tenant).redis_key("tenant:status")
}

impl Sessions {
    pub fn new(redis: ConnectionManager) -> Self {
        Self {
            redis,
            keep_newest: std::sync::Arc::new(Script::new(KEEP_NEWEST)),
            begin_end_all: std::sync::Arc::new(Script::new(BEGIN_END_ALL)),
            end_some: std::sync::Arc::new(Script::new(END_SOME)),
            open: std::sync::Arc::new(Script::new(OPEN)),
            tenant_status: std::sync::Arc::new(Script::new(TENANT_STATUS)),
        }
    }

    /// The user's session epoch, read before a login checks the password.
    pub async fn epoch(&self, tenant: Uuid, user: Uuid) -> Result<i64, SessionError> {
        let epoch: Option<i64> = redis::cmd("GET")
            .arg(epoch_key(tenant, user))
            .query_async(&mut self.redis.clone())
            .await
            .map_err(unreachable)?;
        Ok(epoch.unwrap_or(0))
    }

    /// Opens a session for a user who just proved who they are, unless their sessions
    /// were ended since `epoch` was read (None: log in again).
    pub async fn open(&self, tenant: Uuid, user: Uuid, epoch: i64) -> Result<Option<Uuid>, SessionError> {
        let id = Uuid::new_v4();
        let opened: i64 = self
            .open
            .key(session_key(tenant, id))
            .key(sessions_of(tenant, user))
            .key(epoch_key(tenant, user))
            .arg(user.to_string())
            .arg(id.to_string())
            .arg(SESSION_TTL_SECS)
            .arg(epoch)
            .arg(MAX_SESSIONS_PER_USER)
            .arg(Tenancy(tenant).redis_key(""))
            .invoke_async(&mut self.redis.clone())
            .await
            .map_err(unreachable)?;
        Ok((opened == 1).then_some(id))
    }

    /// Ends one session (a logout).
    pub async fn end(&self, tenant: Uuid, user: Uuid, session: Uuid) -> Result<(), SessionError> {
        redis::pipe()
            .atomic()
            .del(session_key(tenant, session))
            .ignore()
            .zrem(sessions_of(tenant, user), session.to_string())
            .ignore()
            .srem(sessions_before_the_cap(tenant, user), session.to_string())
            .ignore()
            .query_async::<()>(&mut self.redis.clone())
            .await
            .map_err(unreachable)
    }

    /// Ends every session of a user, `END_BATCH` per script so Redis never blocks long;
    /// returns how many were alive. Logins that began before cannot open one after.
    pub async fn end_all(&self, tenant: Uuid, user: Uuid) -> Result<u64, SessionError> {
        let mut redis = self.redis.clone();
        let upto: i64 =
            self.begin_end_all.key(epoch_key(tenant, user)).invoke_async(&mut redis).await.map_err(unreachable)?;
        let mut ended = 0u64;
        loop {
            let (alive, taken): (u64, usize) = self
                .end_some
                .key(sessions_of(tenant, user))
                .key(sessions_before_the_cap(tenant, user))
                .arg(Tenancy(tenant).redis_key(""))
                .arg(upto)
                .arg(END_BATCH)
                .invoke_async(&mut redis)
                .await
                .map_err(unreachable)?;
            ended = ended.saturating_add(alive);
            if taken < END_BATCH {
                return Ok(ended);
            }
        }
    }

    /// One round trip for a request: is the session alive (renewing it), the user's cached
    /// rights and revision, and the tenant's status. `session` is None for operator tokens.
    pub async fn look(&self, tenant: Uuid, user: Uuid, session: Option<Uuid>) -> Result<Seen, SessionError> {
        let mut pipe = redis::pipe();
        if let Some(id) = session {
            let key = session_key(tenant, id);
            pipe.hget(&key, "user").expire(&key, SESSION_TTL_SECS).ignore();
            pipe.expire(sessions_of(tenant, user), SESSION_TTL_SECS).ignore();
            // The pre-cap set lives while its sessions do, so ending them all finds them.
            pipe.expire(sessions_before_the_cap(tenant, user), SESSION_TTL_SECS).ignore();
        }
        pipe.hgetall(Tenancy(tenant).redis_user_permissions(user))
            .get(revision_key(tenant, user))
            .get(tenant_status_key(tenant));
        let mut redis = self.redis.clone();
        let (owner, rights, revision, status) = if session.is_some() {
            let (owner, rights, revision, status): (Option<String>, _, _, _) =
                pipe.query_async(&mut redis).await.map_err(unreachable)?;
            (owner, rights, revision, status)
        } else {
            let (rights, revision, status) = pipe.query_async(&mut redis).await.map_err(unreachable)?;
            (None, rights, revision, status)
        };
        let rights: std::collections::HashMap<String, String> = rights;
        let revision: Option<i64> = revision;
        let status: Option<String> = status;
        Ok(Seen {
            alive: owner.is_some_and(|o| o == user.to_string()),
            rights: parse_rights(&rights),
            revision: revision.unwrap_or(0),
            tenant_suspended: status.as_deref() == Some("suspended"),
            tenant_status_known: status.is_some(),
        })
    }

    /// What both APIs check of every token before they read the caller's rights: a login
    /// token's session is alive (401 otherwise), and the tenant is not suspended (403).
    /// None for a platform operator, who acts on no tenant's data.
    pub async fn admit(&self, token: &Token) -> Result<Option<Seen>, SessionError> {
        let caller = token.caller;
        if token.session.is_none() && caller.role == Role::PlatformAdmin {
            return Ok(None);
        }
        let seen = self.look(caller.tenant_id, caller.user_id, token.session).await?;
        if token.session.is_some() && !seen.alive {
            return Err(SessionError::Ended);
        }
        if seen.tenant_suspended {
            return Err(SessionError::TenantSuspended);
        }
        Ok(Some(seen))
    }

    /// The command API, after committing a change to a user (or a login): these are the
    /// user's rights from now on.
    pub async fn publish(&self, tenant: Uuid, user: Uuid, rights: &Rights) -> Result<(), SessionError> {
        self.keep(tenant, user, rights, true).await
    }

    /// The query API, after reading rights from its read model: cache them unless a newer
    /// copy is there.
    pub async fn remember(&self, tenant: Uuid, user: Uuid, rights: &Rights) -> Result<(), SessionError> {
        self.keep(tenant, user, rights, false).await
    }

    async fn keep(&self, tenant: Uuid, user: Uuid, rights: &Rights, committed: bool) -> Result<(), SessionError> {
        self.keep_newest
            .key(Tenancy(tenant).redis_user_permissions(user))
            .key(revision_key(tenant, user))
            .arg(rights.version)
            .arg(rights.role.as_str())
            .arg(&rights.status)
            .arg(rights.grants)
            .arg(RIGHTS_TTL_SECS)
            .arg(if committed { "1" } else { "0" })
            .invoke_async::<i64>(&mut self.redis.clone())
            .await
            .map(drop)
            .map_err(unreachable)
    }

    /// The command API, after committing a tenant's suspension or reactivation: the
    /// status at `version` of the tenant's stream, unless a newer one is held (the
    /// projector writes it too).
    pub async fn publish_tenant_status(&self, tenant: Uuid, suspended: bool, version: i64) -> Result<(), SessionError> {
        let status = if suspended { "suspended" } else { "active" };
        self.tenant_status
            .key(tenant_status_key(tenant))
            .key(Tenancy(tenant).redis_key("tenant:status_version"))
            .arg(status)
            .arg(version)
            .invoke_async::<i64>(&mut self.redis.clone())
            .await
            .map(drop)
            .map_err(unreachable)
    }

    /// The command API, after committing a tenant's settings: its rate-limit overrides
    /// (`runtime::limits`), read by every instance's limiter from the next request on.
    pub async fn publish_rate_limits(&self, tenant: Uuid, overrides: &[(String, u32)]) -> Result<(), SessionError> {
        let key = Tenancy(tenant).redis_key("rate_limit:overrides");
        let mut pipe = redis::pipe();
        pipe.atomic().del(&key).ignore();
        for (class, per_minute) in overrides {
            pipe.hset(&key, class, per_minute).ignore();
        }
        pipe.query_async::<()>(&mut self.redis.clone()).await.map_err(unreachable)
    }

    /// At a login into an active tenant whose status Redis does not hold yet (a tenant
    /// from before sessions, or a Redis that lost its data): never over a suspension
    /// that raced the login.
    pub async fn note_active_tenant(&self, tenant: Uuid) -> Result<(), SessionError> {
        // For a while only: the read model it came from may not show a suspension yet.
        redis::cmd("SET")
            .arg(tenant_status_key(tenant))
            .arg("active")
            .arg("NX")
            .arg("EX")
            .arg(300)
            .query_async::<Option<String>>(&mut self.redis.clone())
            .await
            .map(drop)
            .map_err(unreachable)
    }
}

fn parse_rights(hash: &std::collections::HashMap<String, String>) -> Option<Rights> {
    let role = serde_json::from_value(serde_json::Value::String(hash.get("role")?.clone())).ok()?;
    Some(Rights {
        version: hash.get("version")?.parse().ok()?,
        role,
        status: hash.get("status")?.clone(),
        grants: hash.get("grants")?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_rights_older_than_a_committed_change_are_not_fresh() {
        let rights = Rights { version: 4, role: Role::Admin, status: "active".into(), grants: 0 };
        let seen = Seen {
            alive: true,
            rights: Some(rights.clone()),
            revision: 5,
            tenant_suspended: false,
            tenant_status_known: true,
        };
        assert_eq!(seen.fresh_rights(), None);
        let seen = Seen { revision: 4, ..seen };
        assert_eq!(seen.fresh_rights(), Some(&rights));
    }

    #[test]
    fn an_entry_of_the_old_shape_is_no_entry() {
        let old: std::collections::HashMap<String, String> =
            [("role", "admin"), ("status", "active"), ("grants", "0")].map(|(k, v)| (k.into(), v.into())).into();
        assert_eq!(parse_rights(&old), None);
    }
}
