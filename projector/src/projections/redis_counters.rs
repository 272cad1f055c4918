//! Live counters in Redis: cases per status and open cases per assignee, per tenant.
//!
//! Each event runs one Lua script that compares the stream version with what the counters
//! last counted for that case, so a redelivered event cannot count twice, and moves the
//! case's contribution from its old (status, assignee) to its new one atomically. The
//! same script drops the case's cache entry (seed §2.3.2) so no stale copy is served.

use events::case::{CaseEvent, Status};
use events::case_type::CaseTypeEvent;
use events::channel::ChannelEvent;
use events::document::DocumentEvent;
use events::field_definition::FieldDefinitionEvent;
use events::interaction::InteractionEvent;
use events::note::NoteEvent;
use events::task::TaskEvent;
use events::team::TeamEvent;
use events::template::TemplateEvent;
use events::tenant::TenantEvent;
use events::user::UserEvent;
use events::workflow::WorkflowEvent;
use redis::aio::ConnectionManager;
use redis::Script;
use runtime::tenancy::Tenancy;

use crate::event::{DomainEvent, Event};
use crate::projection::{ApplyError, Projection};

/// KEYS: counted cases, by-status, open-by-assignee, case cache.
/// ARGV: case id, version, new status or "-" (unchanged), new assignee, "" (none) or "-".
const COUNT: &str = r#"
local held = redis.call('HGET', KEYS[1], ARGV[1])
local version, status, assignee = 0, '', ''
if held then
  local v, s, a = string.match(held, '^(%d+)|([^|]*)|(.*)$')
  version, status, assignee = tonumber(v), s, a
end
local v = tonumber(ARGV[2])
if v <= version then return 0 end
if v ~= version + 1 then return -1 end
local function active(s) return s ~= '' and s ~= 'resolved' and s ~= 'closed' end
local new_status = ARGV[3]
if new_status == '-' then new_status = status end
local new_assignee = ARGV[4]
if new_assignee == '-' then new_assignee = assignee end
if status ~= '' then
  redis.call('HINCRBY', KEYS[2], status, -1)
  if assignee ~= '' and active(status) then redis.call('HINCRBY', KEYS[3], assignee, -1) end
end
redis.call('HINCRBY', KEYS[2], new_status, 1)
if new_assignee ~= '' and active(new_status) then redis.call('HINCRBY', KEYS[3], new_assignee, 1) end
redis.call('HSET', KEYS[1], ARGV[1], v .. '|' .. new_status .. '|' .. new_assignee)
redis.call('DEL', KEYS[4])
return 1
"#;

pub struct RedisCountersProjection {
    conn: ConnectionManager,
    script: Script,
}

impl RedisCountersProjection {
    pub fn new(conn: ConnectionManager) -> Self {
        Self { conn, script: Script::new(COUNT) }
    }
}

const UNCHANGED: &str = "-";

fn status_arg(status: Status) -> String {
    status.as_str().to_owned()
}

fn assignee_arg(assignee: Option<uuid::Uuid>) -> String {
    assignee.map(|a| a.to_string()).unwrap_or_default()
}

#[async_trait::async_trait]
impl Projection for RedisCountersProjection {
    fn name(&self) -> &'static str {
        "redis"
    }

    #[tracing::instrument(skip_all, fields(projection = "redis", events = events.len()))]
    async fn apply(&self, events: &[Event]) -> Result<(), ApplyError> {
        let mut conn = self.conn.clone();
        for event in events {
            let env = &event.envelope;
            let (status, assignee) = match &event.data {
                DomainEvent::Case(CaseEvent::Opened(e)) => (status_arg(e.status), assignee_arg(e.assigned_to)),
                DomainEvent::Case(CaseEvent::StatusChanged(e)) => (status_arg(e.status.new), UNCHANGED.to_owned()),
                DomainEvent::Case(CaseEvent::Assigned(e)) => (UNCHANGED.to_owned(), assignee_arg(e.assigned_to.new)),
                // These move only the counted version forward.
                DomainEvent::Case(
                    CaseEvent::Updated(_)
                    | CaseEvent::WorkflowStarted(_)
                    | CaseEvent::StageMoved(_)
                    | CaseEvent::SlaSet(_)
                    | CaseEvent::TeamAssigned(_),
                ) => (UNCHANGED.to_owned(), UNCHANGED.to_owned()),
                DomainEvent::Tenant(
                    TenantEvent::Provisioned(_)
                    | TenantEvent::SettingsUpdated(_)
                    | TenantEvent::Suspended(_)
                    | TenantEvent::Reactivated(_),
                )
                // User search and presence arrive with the read-model issue.
                | DomainEvent::User(
                    UserEvent::Created(_)
                    | UserEvent::ProfileUpdated(_)
                    | UserEvent::RoleChanged(_)
                    | UserEvent::StatusChanged(_)
                    | UserEvent::PermissionsSet(_)
                    | UserEvent::PreferencesSet(_)
                    | UserEvent::LoggedIn(_),
                )
                | DomainEvent::Team(
                    TeamEvent::Created(_)
                    | TeamEvent::Renamed(_)
                    | TeamEvent::MemberAdded(_)
                    | TeamEvent::MemberRemoved(_),
                )
                | DomainEvent::CaseType(
                    CaseTypeEvent::Created(_)
                    | CaseTypeEvent::Updated(_)
                    | CaseTypeEvent::Deactivated(_)
                    | CaseTypeEvent::Activated(_),
                )
                | DomainEvent::Channel(
                    ChannelEvent::Created(_)
                    | ChannelEvent::Updated(_)
                    | ChannelEvent::Deactivated(_)
                    | ChannelEvent::Activated(_),
                )
                // The interactions index arrives with the read-model issue.
                | DomainEvent::Interaction(InteractionEvent::Recorded(_))
                | DomainEvent::Task(TaskEvent::Created(_) | TaskEvent::Assigned(_) | TaskEvent::StatusChanged(_))
                // Note search arrives with the read-model issue.
                | DomainEvent::Note(NoteEvent::Added(_) | NoteEvent::Edited(_) | NoteEvent::Deleted(_))
                | DomainEvent::Document(DocumentEvent::Attached(_) | DocumentEvent::Deleted(_))
                | DomainEvent::Template(
                    TemplateEvent::Created(_)
                    | TemplateEvent::Updated(_)
                    | TemplateEvent::Deactivated(_)
                    | TemplateEvent::Activated(_),
                )
                | DomainEvent::Workflow(
                    WorkflowEvent::Created(_)
                    | WorkflowEvent::Updated(_)
                    | WorkflowEvent::Deactivated(_)
                    | WorkflowEvent::Activated(_),
                )
                | DomainEvent::FieldDefinition(
                    FieldDefinitionEvent::Created(_)
                    | FieldDefinitionEvent::Updated(_)
                    | FieldDefinitionEvent::Deactivated(_)
                    | FieldDefinitionEvent::Activated(_),
                ) => continue,
            };
            let t = Tenancy(env.tenant_id);
            let outcome: i64 = self
                .script
                .key(t.redis_counted_cases())
                .key(t.redis_cases_by_status())
                .key(t.redis_open_cases_by_assignee())
                .key(t.redis_case_cache(env.stream_id))
                .arg(env.stream_id.to_string())
                .arg(env.stream_version)
                .arg(status)
                .arg(assignee)
                .invoke_async(&mut conn)
                .await
                .map_err(|e| ApplyError::Transient(e.into()))?;
            if outcome < 0 {
                tracing::warn!(stream_id = %env.stream_id, version = env.stream_version, "version gap; waiting for the missing event");
            }
        }
        Ok(())
    }
}
