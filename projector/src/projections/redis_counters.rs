//! Redis (seed §2.3): live counters, presence, notifications and cache invalidation.
//!
//! Per tenant: cases by status, and open (not resolved or closed) cases by priority,
//! assignee and team; the online-users sorted set (a login scores the user); the user's
//! notification list (30 days, newest event first whatever the arrival order, at most
//! 100) on case and task assignment, on a case reopened, an SLA warning and an SLA breach
//! (to the case's assignee) and on a mention in a note; SLA breaches by clock, with what the user has read (ids read, and a time before which
//! everything counts as read);
//! and invalidation of the case cache on every case event and of a permission cache older
//! than a change of role, permissions or status.
//!
//! One round trip per batch: the batch becomes a list of operations per tenant, and a
//! pipeline runs one Lua script per tenant. The script keeps, per stream, the version it
//! last applied (per case, also what it counted), and applies an operation only when it
//! is the next version, so redelivery, a replay or a broker refill cannot count twice.
//! The script derives its keys from the tenant prefix, which a single Redis accepts; a
//! Redis Cluster deployment needs the prefix as a hash tag first.

use std::collections::{BTreeMap, HashMap};

use events::case::{CaseEvent, Status};
use events::note::NoteEvent;
use events::task::TaskEvent;
use events::tenant::TenantEvent;
use events::user::UserEvent;
use redis::aio::ConnectionManager;
use redis::Script;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::event::Event;
use crate::projection::{ApplyError, Checkpoint, Held, Placement, Projection};
use events::DomainEvent;

/// Notifications kept per user, and for how long (seed §2.3.2: 30 days).
const NOTIFICATIONS_KEPT: i64 = 100;
const NOTIFICATION_TTL_SECS: i64 = 30 * 24 * 3600;
/// How long after its due time a breach is still worth a notification.
const BREACH_NEWS: chrono::Duration = chrono::Duration::days(1);
/// Operations one script call applies (a notification reads its user's list of 100).
const OPERATIONS_PER_SCRIPT: usize = 200;

/// ARGV[1]: tenant key prefix ("tenant_<id>:"); ARGV[2]: JSON array of operations;
/// ARGV[3]: notifications kept; ARGV[4]: notification TTL; ARGV[5]: the finished statuses
/// (`Status::FINISHED`, a JSON array). Returns the number of gaps.
///
/// A case operation names the fields it changes (absent = unchanged, "" = none):
/// {case, v, status, priority, assignee, team, notify, notify_assignee (a notification body
/// for whoever the case's assignee is), sla_breach (a clock: counted once)}. Any other stream's operation:
/// {stream, v, drop: [key suffixes], online: [member, score], notify (one or a list),
/// raise: key suffix (a revision raised to v), read: {user, ids, before (unix ms)}}. A tenant's suspension or reactivation: {tenant_status, v}.
const APPLY: &str = r#"
local prefix, ops = ARGV[1], cjson.decode(ARGV[2])
local kept, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local counted, versions = prefix .. 'projection:counted_cases', prefix .. 'projection:stream_versions'
local by_status = prefix .. 'counters:cases_by_status'
local open_by = {
  priority = prefix .. 'counters:open_cases_by_priority',
  assignee = prefix .. 'counters:open_cases_by_assignee',
  team = prefix .. 'counters:open_cases_by_team',
}
local finished = {}
for _, s in ipairs(cjson.decode(ARGV[5])) do finished[s] = true end
local function active(s) return s ~= '' and not finished[s] end
-- Newest first by event id (v7, so by time): events of different streams arrive in any
-- order across partitions, and the list must not depend on that order.
local function notify(n)
  if type(n) ~= 'table' then return end
  if n.user == nil then
    for _, each in ipairs(n) do notify(each) end
    return
  end
  local key = prefix .. 'notifications:' .. n.user
  local entry = cjson.encode(n.body)
  local placed = false
  for _, item in ipairs(redis.call('LRANGE', key, 0, -1)) do
    local ok, held = pcall(cjson.decode, item)
    -- One notification per event and user: a redelivered event adds nothing.
    if ok and type(held) == 'table' and held.id == n.body.id then return end
    if ok and type(held) == 'table' and held.id and held.id < n.body.id then
      redis.call('LINSERT', key, 'BEFORE', item, entry)
      placed = true
      break
    end
  end
  if not placed then redis.call('RPUSH', key, entry) end
  redis.call('LTRIM', key, 0, kept - 1)
  redis.call('EXPIRE', key, ttl)
  -- What the user read lives as long as the list it marks.
  redis.call('EXPIRE', key .. ':read', ttl)
  redis.call('EXPIRE', key .. ':read_before', ttl)
end
local function field(op, name, old)
  local value = op[name]
  if value == nil or value == cjson.null then return old end
  return value
end
local gaps = 0
for _, op in ipairs(ops) do
  if op.tenant_status then
    local held = tonumber(redis.call('GET', prefix .. 'tenant:status_version') or '0')
    if held < op.v then
      redis.call('SET', prefix .. 'tenant:status', op.tenant_status)
      redis.call('SET', prefix .. 'tenant:status_version', op.v)
    end
  elseif op.notify_only then
    -- Not a counted stream: notify() skips what a user's list already holds.
    notify(op.notify_only)
  elseif op.case then
    local held = redis.call('HGET', counted, op.case)
    local v, s, p, a, t = 0, '', '', '', ''
    if held then
      local hv
      hv, s, p, a, t = string.match(held, '^(%d+)|([^|]*)|([^|]*)|([^|]*)|(.*)$')
      v = tonumber(hv)
    end
    if op.v == v + 1 then
      local ns, np, na, nt = field(op, 'status', s), field(op, 'priority', p), field(op, 'assignee', a), field(op, 'team', t)
      if s ~= '' then
        redis.call('HINCRBY', by_status, s, -1)
        if active(s) then
          if p ~= '' then redis.call('HINCRBY', open_by.priority, p, -1) end
          if a ~= '' then redis.call('HINCRBY', open_by.assignee, a, -1) end
          if t ~= '' then redis.call('HINCRBY', open_by.team, t, -1) end
        end
      end
      redis.call('HINCRBY', by_status, ns, 1)
      if active(ns) then
        if np ~= '' then redis.call('HINCRBY', open_by.priority, np, 1) end
        if na ~= '' then redis.call('HINCRBY', open_by.assignee, na, 1) end
        if nt ~= '' then redis.call('HINCRBY', open_by.team, nt, 1) end
      end
      redis.call('HSET', counted, op.case, op.v .. '|' .. ns .. '|' .. np .. '|' .. na .. '|' .. nt)
      if op.sla_breach and op.sla_breach ~= cjson.null then
        redis.call('HINCRBY', prefix .. 'counters:sla_breaches', op.sla_breach, 1)
      end
      redis.call('DEL', prefix .. 'case:' .. op.case)
      notify(op.notify)
      -- The case's assignee, known here only, hears of it (unless they did it).
      local tell = op.notify_assignee
      if tell and tell ~= cjson.null and na ~= '' and na ~= tell.by then
        notify({ user = na, body = tell })
      end
    elseif op.v > v + 1 then
      gaps = gaps + 1
    end
  else
    local v = tonumber(redis.call('HGET', versions, op.stream) or '0')
    if op.v == v + 1 then
      redis.call('HSET', versions, op.stream, op.v)
      -- A rights cache is dropped only when older than this event: the command API has
      -- usually written the newer one already (runtime::session).
      for _, suffix in ipairs(op.drop or {}) do
        local held = redis.call('HGET', prefix .. suffix, 'version')
        if not held or tonumber(held) < op.v then redis.call('DEL', prefix .. suffix) end
      end
      if op.raise and op.raise ~= cjson.null then
        local key = prefix .. op.raise
        if tonumber(redis.call('GET', key) or '0') < op.v then redis.call('SET', key, op.v) end
      end
      if op.online and op.online ~= cjson.null then
        redis.call('ZADD', prefix .. 'online_users', op.online[2], op.online[1])
      end
      if op.read and op.read ~= cjson.null then
        local list = prefix .. 'notifications:' .. op.read.user
        local read, before = list .. ':read', list .. ':read_before'
        if #op.read.ids > 0 then
          redis.call('SADD', read, unpack(op.read.ids))
          -- Ids read that no longer name a listed notification go once the set is large.
          if redis.call('SCARD', read) > 2 * kept then
            local listed = {}
            for _, item in ipairs(redis.call('LRANGE', list, 0, -1)) do
              local ok, held = pcall(cjson.decode, item)
              if ok and type(held) == 'table' and held.id then listed[held.id] = true end
            end
            for _, id in ipairs(redis.call('SMEMBERS', read)) do
              if not listed[id] then redis.call('SREM', read, id) end
            end
          end
          redis.call('EXPIRE', read, ttl)
        end
        if op.read.before and op.read.before ~= cjson.null
          and tonumber(redis.call('GET', before) or '0') < op.read.before then
          redis.call('SET', before, op.read.before, 'EX', ttl)
        end
      end
      notify(op.notify)
    elseif op.v > v + 1 then
      gaps = gaps + 1
    end
  end
end
return gaps
"#;

pub struct RedisCountersProjection {
    conn: ConnectionManager,
    script: Script,
    placement: Placement,
}

impl RedisCountersProjection {
    pub fn new(conn: ConnectionManager) -> Self {
        Self::placed(conn, Placement::live())
    }

    /// A projection writing where `placement` says (a rebuild's copy key prefixes).
    pub fn placed(conn: ConnectionManager, placement: Placement) -> Self {
        Self { conn, script: Script::new(APPLY), placement }
    }
}

fn id(value: Option<Uuid>) -> Value {
    json!(value.map(|v| v.to_string()).unwrap_or_default())
}

/// Whether an event is recent enough to notify about: a replay or rebuild does not bring
/// back notifications the list would have dropped by now.
fn still_news(event: &Event) -> bool {
    let kept = chrono::Duration::seconds(NOTIFICATION_TTL_SECS);
    chrono::Utc::now().signed_duration_since(event.envelope.occurred_at) < kept
}

/// A notification for `user` about this event, unless they caused it themselves.
fn notification(event: &Event, user: Option<Uuid>, kind: &str, subject: Value) -> Value {
    match user {
        Some(user) if user != event.envelope.actor.user_id && still_news(event) => {
            json!({ "user": user.to_string(), "body": notification_body(event, kind, subject) })
        }
        _ => Value::Null,
    }
}

/// What a notification about this event says (its id is the event's).
fn notification_body(event: &Event, kind: &str, subject: Value) -> Value {
    json!({
        "id": event.envelope.event_id,
        "type": kind,
        "subject": subject,
        "by": event.envelope.actor.user_id,
        "at": event.envelope.occurred_at,
    })
}

/// The Redis operation an event stands for, if it touches Redis at all.
fn operation(event: &Event) -> Option<Value> {
    let env = &event.envelope;
    let (stream, v) = (env.stream_id.to_string(), env.stream_version);
    let case = |fields: Value| {
        let mut op = json!({ "case": stream, "v": v });
        if let (Some(op), Value::Object(fields)) = (op.as_object_mut(), fields) {
            op.extend(fields);
        }
        Some(op)
    };
    let stream_op = |drop: Vec<String>, online: Value, notify: Value| {
        Some(json!({ "stream": stream, "v": v, "drop": drop, "online": online, "notify": notify }))
    };
    // Live state the command API also writes (runtime::session), kept here too so that it
    // holds even when the command API's own write failed after its commit.
    let with = |op: Option<Value>, field: &str, value: Value| {
        op.map(|mut op| {
            op[field] = value;
            op
        })
    };
    match &event.data {
        DomainEvent::Case(CaseEvent::Opened(e)) => case(json!({
            "status": e.status.as_str(), "priority": e.priority.as_str(),
            "assignee": id(e.assigned_to), "team": "",
            // A customer's data stays out of Redis (nothing there to erase): the title of a
            // case about a customer is not in its notification.
            "notify": notification(event, e.assigned_to, "case_assigned", json!({
                "case_id": env.stream_id, "case_number": e.case_number,
                "title": if e.customer_id.is_none() { Some(&e.title) } else { None },
            })),
        })),
        DomainEvent::Case(CaseEvent::Updated(e)) => {
            case(json!({ "priority": e.priority.as_ref().map(|c| c.new.as_str()) }))
        }
        DomainEvent::Case(CaseEvent::Assigned(e)) => case(json!({
            "assignee": id(e.assigned_to.new),
            "notify": notification(event, e.assigned_to.new, "case_assigned", json!({ "case_id": env.stream_id })),
        })),
        DomainEvent::Case(CaseEvent::StatusChanged(e)) => {
            let finished = |s: &Status| Status::FINISHED.contains(s);
            let reopened = finished(&e.status.old) && !finished(&e.status.new) && still_news(event);
            case(json!({
                "status": e.status.new.as_str(),
                "notify_assignee": reopened.then(|| notification_body(event, "case_reopened",
                    json!({ "case_id": env.stream_id, "status": e.status.new.as_str() }))),
            }))
        }
        DomainEvent::Case(CaseEvent::TeamAssigned(e)) => case(json!({ "team": id(e.team_id.new) })),
        DomainEvent::Case(CaseEvent::WorkflowStarted(_) | CaseEvent::StageMoved(_) | CaseEvent::SlaSet(_)) => {
            case(json!({}))
        }
        // The task's own stream counts and notifies when it is created.
        DomainEvent::Case(CaseEvent::SlaStopped(_) | CaseEvent::TaskRequested(_)) => case(json!({})),
        DomainEvent::Case(CaseEvent::Notified(e)) => {
            let subject = json!({ "case_id": env.stream_id, "message": e.message });
            match e.user_id {
                Some(user) => case(json!({ "notify": notification(event, Some(user), "workflow_notice", subject) })),
                None => case(json!({
                    "notify_assignee": still_news(event).then(|| notification_body(event, "workflow_notice", subject)),
                })),
            }
        }
        DomainEvent::Case(CaseEvent::SlaWarned(e)) => case(json!({
            "notify_assignee": still_news(event).then(|| notification_body(event, "sla_warning",
                json!({ "case_id": env.stream_id, "clock": e.clock, "due": e.due }))),
        })),
        DomainEvent::Case(CaseEvent::SlaBreached(e)) => case(json!({
            "sla_breach": e.clock.as_str(),
            // A breach found long after its due time (the scheduler's first look at old
            // cases) is counted, but nobody is woken for it.
            "notify_assignee": (still_news(event) && chrono::Utc::now().signed_duration_since(e.due) < BREACH_NEWS)
                .then(|| notification_body(event, "sla_breached",
                json!({ "case_id": env.stream_id, "clock": e.clock, "due": e.due }))),
        })),
        DomainEvent::User(user_event) => {
            let permissions = format!("user:{stream}:permissions");
            match user_event {
                UserEvent::RoleChanged(_)
                | UserEvent::PermissionsSet(_)
                | UserEvent::StatusChanged(_)
                | UserEvent::Erased(_) => with(
                    stream_op(vec![permissions], Value::Null, Value::Null),
                    "raise",
                    json!(format!("user:{stream}:revision")),
                ),
                UserEvent::LoggedIn(e) => stream_op(vec![], json!([stream, e.logged_in_at.timestamp()]), Value::Null),
                UserEvent::NotificationsRead(e) => with(
                    stream_op(vec![], Value::Null, Value::Null),
                    "read",
                    json!({ "user": stream, "ids": e.ids, "before": e.all_before.map(|t| t.timestamp_millis()) }),
                ),
                UserEvent::Created(_)
                | UserEvent::ProfileUpdated(_)
                | UserEvent::PreferencesSet(_)
                | UserEvent::PasswordChanged(_) => stream_op(vec![], Value::Null, Value::Null),
            }
        }
        DomainEvent::Task(TaskEvent::Created(e)) => stream_op(
            vec![],
            Value::Null,
            notification(
                event,
                e.assigned_to,
                "task_assigned",
                json!({ "task_id": env.stream_id, "case_id": e.case_id, "title": e.title }),
            ),
        ),
        DomainEvent::Task(TaskEvent::Assigned(e)) => stream_op(
            vec![],
            Value::Null,
            notification(event, e.assigned_to.new, "task_assigned", json!({ "task_id": env.stream_id })),
        ),
        DomainEvent::Task(TaskEvent::StatusChanged(_)) => stream_op(vec![], Value::Null, Value::Null),
        // A tenant's status, newest version first (not a counted stream: its other events
        // touch nothing here).
        DomainEvent::Tenant(TenantEvent::Suspended(_)) => Some(json!({ "tenant_status": "suspended", "v": v })),
        DomainEvent::Tenant(TenantEvent::Reactivated(_)) => Some(json!({ "tenant_status": "active", "v": v })),
        DomainEvent::Tenant(TenantEvent::Provisioned(_) | TenantEvent::SettingsUpdated(_)) => None,
        DomainEvent::Note(NoteEvent::Added(e)) => {
            let subject = json!({ "case_id": e.case_id, "note_id": env.stream_id });
            let mentioned: Vec<Value> = e
                .mentions
                .iter()
                .map(|user| notification(event, Some(*user), "mention", subject.clone()))
                .filter(|n| !n.is_null())
                .collect();
            (!mentioned.is_empty()).then(|| json!({ "notify_only": mentioned }))
        }
        DomainEvent::Note(NoteEvent::Edited(_) | NoteEvent::Deleted(_)) => None,
        DomainEvent::Team(_)
        | DomainEvent::CaseType(_)
        | DomainEvent::Channel(_)
        | DomainEvent::Interaction(_)
        | DomainEvent::Document(_)
        | DomainEvent::Template(_)
        | DomainEvent::Workflow(_)
        | DomainEvent::FieldDefinition(_)
        | DomainEvent::Webhook(_)
        | DomainEvent::DataSubject(_) => None,
    }
}

#[async_trait::async_trait]
impl Projection for RedisCountersProjection {
    fn name(&self) -> &'static str {
        crate::stores::ProjectionName::Redis.as_str()
    }

    async fn healthy(&self) -> anyhow::Result<()> {
        redis::cmd("PING").query_async::<String>(&mut self.conn.clone()).await?;
        Ok(())
    }

    async fn held(&self, tenant: Uuid) -> anyhow::Result<Vec<Held>> {
        let tenancy = self.placement.of(tenant).unwrap_or(runtime::tenancy::Tenancy(tenant));
        let mut conn = self.conn.clone();
        let counted: HashMap<String, String> =
            redis::cmd("HGETALL").arg(tenancy.redis_counted_cases()).query_async(&mut conn).await?;
        let streams: HashMap<String, i64> =
            redis::cmd("HGETALL").arg(tenancy.redis_stream_versions()).query_async(&mut conn).await?;
        // A counted case is held as "version|status|priority|assignee|team".
        let cases = counted
            .into_iter()
            .filter_map(|(id, held)| Some((id.parse().ok()?, held.split('|').next()?.parse().ok()?)))
            .collect();
        let others = streams.into_iter().filter_map(|(id, v)| Some((id.parse().ok()?, v))).collect();
        Ok(vec![
            Held { what: "counted cases", stream_types: &["case"], versions: cases },
            Held { what: "stream versions", stream_types: &["user", "task"], versions: others },
        ])
    }

    #[tracing::instrument(skip_all, fields(projection = "redis", events = events.len()))]
    async fn apply(&self, events: &[Event], _checkpoint: &Checkpoint) -> Result<(), ApplyError> {
        let mut per_tenant: BTreeMap<Uuid, Vec<Value>> = BTreeMap::new();
        for event in events.iter().filter(|e| self.placement.of(e.envelope.tenant_id).is_some()) {
            if let Some(op) = operation(event) {
                per_tenant.entry(event.envelope.tenant_id).or_default().push(op);
            }
        }
        let mut conn = self.conn.clone();
        // The query API's cached cases (live keys only) may hold what an erasure took: a
        // user's username, as a case's assignee's.
        if self.placement.is_live() {
            for event in events.iter().filter(|e| e.erased_subject().is_some()) {
                forget_cached_cases(&mut conn, event.envelope.tenant_id).await?;
            }
        }
        if per_tenant.is_empty() {
            return Ok(());
        }
        // One pipeline of EVALSHA (one per tenant) per batch; the script is loaded only
        // when Redis does not know it yet (first use, or after a Redis restart).
        let finished = Value::from(Status::FINISHED.map(Status::as_str).to_vec()).to_string();
        let mut pipe = redis::pipe();
        // A script blocks Redis while it runs: a rebuild's large batches go in slices.
        for (tenant, ops) in
            per_tenant.iter().flat_map(|(t, ops)| ops.chunks(OPERATIONS_PER_SCRIPT).map(move |c| (t, c)))
        {
            pipe.cmd("EVALSHA")
                .arg(self.script.get_hash())
                .arg(0)
                .arg(self.placement.of(*tenant).map(|t| t.redis_key("")).unwrap_or_default())
                .arg(Value::Array(ops.to_vec()).to_string())
                .arg(NOTIFICATIONS_KEPT)
                .arg(NOTIFICATION_TTL_SECS)
                .arg(&finished);
        }
        let gaps: Vec<i64> = match pipe.query_async(&mut conn).await {
            Err(e) if e.kind() == redis::ErrorKind::NoScriptError => {
                self.script.prepare_invoke().load_async(&mut conn).await.map_err(classify)?;
                pipe.query_async(&mut conn).await.map_err(classify)?
            }
            other => other.map_err(classify)?,
        };
        if gaps.iter().any(|g| *g > 0) {
            tracing::warn!(gaps = gaps.iter().sum::<i64>(), "version gaps; waiting for the missing events");
        }
        Ok(())
    }
}

/// Deletes every case the query API cached for the tenant (`Tenancy::redis_case_cache`);
/// they are read from PostgreSQL again.
async fn forget_cached_cases(conn: &mut ConnectionManager, tenant: Uuid) -> Result<(), ApplyError> {
    let tenancy = runtime::tenancy::Tenancy(tenant);
    let prefix = tenancy.redis_key("case:");
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .map_err(classify)?;
        // `case:<id>` only: `case:<id>:viewing` is presence.
        let cached: Vec<&String> =
            keys.iter().filter(|k| k.strip_prefix(&prefix).is_some_and(|id| id.parse::<Uuid>().is_ok())).collect();
        if !cached.is_empty() {
            redis::cmd("DEL").arg(&cached).query_async::<()>(conn).await.map_err(classify)?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// Redis away, loading, out of memory, read-only or unable to persist is the store's
/// trouble; an error from the script itself (it refused the operations) is unexplained.
fn classify(error: redis::RedisError) -> ApplyError {
    let store_side = error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || matches!(error.kind(), redis::ErrorKind::BusyLoadingError | redis::ErrorKind::TryAgain)
        || error.code().is_some_and(|c| ["OOM", "MISCONF", "READONLY", "LOADING", "BUSY", "NOREPLICAS"].contains(&c));
    if store_side {
        ApplyError::Transient(error.into())
    } else {
        ApplyError::Unexplained(error.into())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::event::test_event;

    #[test]
    fn an_assignment_moves_the_case_and_notifies_the_assignee_but_not_the_actor() {
        let assignee = Uuid::from_u128(9);
        let event = test_event(
            "case",
            2,
            "CaseAssigned",
            json!({ "assigned_to": { "old": null, "new": assignee }, "assigned_at": "2026-11-20T09:00:00Z" }),
        );
        let op = operation(&event).unwrap();
        assert_eq!(op["v"], 2);
        assert_eq!(op["assignee"], assignee.to_string());
        assert!(op.get("status").is_none(), "unchanged fields stay absent");
        assert_eq!(op["notify"]["user"], assignee.to_string());
        assert_eq!(op["notify"]["body"]["type"], "case_assigned");

        let actor = event.envelope.actor.user_id;
        let self_assigned = test_event(
            "case",
            2,
            "CaseAssigned",
            json!({ "assigned_to": { "old": null, "new": actor }, "assigned_at": "2026-11-20T09:00:00Z" }),
        );
        assert_eq!(operation(&self_assigned).unwrap()["notify"], Value::Null);
    }

    #[test]
    fn a_role_change_drops_the_permission_cache_and_a_login_marks_presence() {
        let user = Uuid::from_u128(0x01a2_1200_0000_7000_8000_0000_0000_0002);
        let changed = test_event(
            "user",
            2,
            "UserRoleChanged",
            json!({ "role": { "old": "agent", "new": "supervisor" }, "changed_at": "2026-11-20T09:00:00Z" }),
        );
        assert_eq!(operation(&changed).unwrap()["drop"], json!([format!("user:{user}:permissions")]));
        let login = test_event("user", 3, "UserLoggedIn", json!({ "logged_in_at": "2026-11-20T09:00:00Z" }));
        assert_eq!(operation(&login).unwrap()["online"], json!([user.to_string(), 1_795_165_200]));
    }
}
