//! Case events into `tenant_<id>.cases`, set-based.
//!
//! A run of consecutive case events (a live batch, or 5,000 events of a rebuild) is
//! folded in memory into one patch per case: the columns the events set, the version the
//! row must hold before and the version after. Then one multi-row INSERT takes the new
//! cases and one multi-row UPDATE the others, per tenant schema, instead of one statement
//! per event. The guards are those of a per-event write: a patch starts right after the
//! version the row holds (events at or below it are redeliveries and are dropped) and
//! stops at a gap (the relay sends the missing event again, then the rest).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use events::case::{CaseEvent, CaseOpened, Status};
use serde_json::{json, Value};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use crate::event::Event;
use events::DomainEvent;

/// What `resolved_at` becomes: untouched, `COALESCE(resolved_at, at)`, or a value.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
enum Resolved {
    #[default]
    Keep,
    Since(DateTime<Utc>),
    Set(Option<DateTime<Utc>>),
}

/// The combined effect of a run of one case's events. `Some` = the column is set.
#[derive(Debug, Clone, Default)]
struct Patch {
    id: Uuid,
    /// The version the row holds before (0: no row; the run starts with CaseOpened).
    from: i64,
    to: i64,
    opened: Option<CaseOpened>,
    title: Option<String>,
    description: Option<Option<String>>,
    status: Option<&'static str>,
    priority: Option<&'static str>,
    due_date: Option<Option<DateTime<Utc>>>,
    tags: Option<Vec<String>>,
    custom_fields: Option<Value>,
    assigned_to: Option<Option<Uuid>>,
    team: Option<Option<Uuid>>,
    workflow: Option<Uuid>,
    stage: Option<Uuid>,
    updated_at: Option<DateTime<Utc>>,
    resolved: Resolved,
    sla: Option<Value>,
    /// Whether `sla` replaces metadata.sla (an SLA set in this run) or is merged into it
    /// (warnings and breaches of the SLA the row holds).
    sla_replaces: bool,
}

impl Patch {
    /// A warning or breach of the SLA: merged into the row's metadata.sla, or into the
    /// SLA set earlier in this run.
    fn note_sla(&mut self, key: String, at: DateTime<Utc>) {
        if let Some(sla) = self.sla.get_or_insert_with(|| json!({})).as_object_mut() {
            sla.insert(key, json!(at));
        }
    }

    fn fold(&mut self, event: &CaseEvent, version: i64) {
        self.to = version;
        match event {
            CaseEvent::Opened(e) => self.opened = Some(e.clone()),
            CaseEvent::Updated(e) => {
                if let Some(c) = &e.title {
                    self.title = Some(c.new.clone());
                }
                if let Some(c) = &e.description {
                    self.description = Some(c.new.clone());
                }
                if let Some(c) = &e.priority {
                    self.priority = Some(c.new.as_str());
                }
                if let Some(c) = &e.due_date {
                    self.due_date = Some(c.new);
                }
                if let Some(c) = &e.tags {
                    self.tags = Some(c.new.clone());
                }
                if let Some(c) = &e.custom_fields {
                    self.custom_fields = Some(json!(c.new));
                }
                self.updated_at = Some(e.updated_at);
            }
            CaseEvent::Assigned(e) => {
                self.assigned_to = Some(e.assigned_to.new);
                self.updated_at = Some(e.assigned_at);
            }
            CaseEvent::StatusChanged(e) => {
                let status = e.status.new.as_str();
                self.status = Some(status);
                self.updated_at = Some(e.changed_at);
                self.resolved = if !Status::is_active_name(status) {
                    match self.resolved {
                        Resolved::Keep => Resolved::Since(e.changed_at),
                        Resolved::Set(None) => Resolved::Set(Some(e.changed_at)),
                        held => held,
                    }
                } else {
                    Resolved::Set(None)
                };
            }
            CaseEvent::WorkflowStarted(e) => {
                self.workflow = Some(e.workflow_id);
                self.stage = Some(e.stage_id);
            }
            CaseEvent::StageMoved(e) => {
                self.stage = Some(e.stage_id.new);
                self.updated_at = Some(e.moved_at);
            }
            CaseEvent::TeamAssigned(e) => {
                self.team = Some(e.team_id.new);
                self.updated_at = Some(e.assigned_at);
            }
            // The seed's cases table has no SLA columns: the due times live in metadata.sla,
            // with the warnings and breaches of those due times beside them.
            CaseEvent::SlaSet(e) => {
                self.sla = Some(json!({
                    "priority": e.priority,
                    "first_response_due": e.first_response_due,
                    "resolution_due": e.resolution_due,
                }));
                self.sla_replaces = true;
            }
            // No SLA any more: metadata.sla becomes null (no due times, no clocks).
            CaseEvent::SlaStopped(_) => {
                self.sla = Some(Value::Null);
                self.sla_replaces = true;
            }
            // A notification lives in Redis only, a requested task in its own stream: the
            // row just moves to its version.
            CaseEvent::Notified(_) | CaseEvent::TaskRequested(_) => {}
            CaseEvent::SlaWarned(e) => self.note_sla(format!("{}_warned_at", e.clock.as_str()), e.warned_at),
            CaseEvent::SlaBreached(e) => self.note_sla(format!("{}_breached_at", e.clock.as_str()), e.breached_at),
        }
    }
}

/// Applies a run of case events (of any tenants) in `tx`. `schema` names each tenant's.
pub async fn apply(
    tx: &mut Transaction<'_, Postgres>,
    schema: impl Fn(Uuid) -> String,
    run: &[&Event],
) -> Result<(), sqlx::Error> {
    let mut per_tenant: BTreeMap<Uuid, Vec<(&Event, &CaseEvent)>> = BTreeMap::new();
    for event in run {
        if let DomainEvent::Case(case_event) = &event.data {
            per_tenant.entry(event.envelope.tenant_id).or_default().push((event, case_event));
        }
    }
    for (tenant, events) in per_tenant {
        let schema = schema(tenant);
        let mut ids: Vec<Uuid> = events.iter().map(|(e, _)| e.envelope.stream_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let held: HashMap<Uuid, i64> =
            sqlx::query_as::<_, (Uuid, i64)>(&format!("SELECT id, version FROM {schema}.cases WHERE id = ANY($1)"))
                .bind(&ids)
                .fetch_all(&mut **tx)
                .await?
                .into_iter()
                .collect();
        let patches = fold(&events, &held);
        let (new, existing): (Vec<Patch>, Vec<Patch>) = patches.into_iter().partition(|p| p.from == 0);
        insert(tx, &schema, tenant, &new).await?;
        update(tx, &schema, &existing).await?;
    }
    Ok(())
}

/// One patch per case, in first-seen order, from the events after the held version.
fn fold(events: &[(&Event, &CaseEvent)], held: &HashMap<Uuid, i64>) -> Vec<Patch> {
    let mut order: Vec<Uuid> = Vec::new();
    let mut patches: HashMap<Uuid, Patch> = HashMap::new();
    let mut stopped: std::collections::HashSet<Uuid> = std::collections::HashSet::new();
    for (event, case_event) in events {
        let (id, v) = (event.envelope.stream_id, event.envelope.stream_version);
        let from = held.get(&id).copied().unwrap_or(0);
        if v <= from || stopped.contains(&id) {
            continue; // a redelivery, or after a gap
        }
        let patch = patches.entry(id).or_insert_with(|| {
            order.push(id);
            Patch { id, from, to: from, ..Patch::default() }
        });
        if v <= patch.to {
            // A second copy of an event already folded in this run (the relay sends
            // events again after a crash): only that copy is dropped, the stream goes on.
            continue;
        }
        let opens_a_new_row = patch.from == 0 && patch.to == 0;
        if v != patch.to + 1 || opens_a_new_row != matches!(case_event, CaseEvent::Opened(_)) {
            tracing::warn!(stream_id = %id, version = v, held = patch.to, "version gap; waiting for the missing event");
            stopped.insert(id);
            continue;
        }
        patch.fold(case_event, v);
    }
    order.into_iter().filter_map(|id| patches.remove(&id)).filter(|p| p.to > p.from).collect()
}

async fn insert(tx: &mut Transaction<'_, Postgres>, schema: &str, tenant: Uuid, new: &[Patch]) -> sqlx::Result<()> {
    if new.is_empty() {
        return Ok(());
    }
    let mut c = Columns::default();
    for p in new {
        let Some(o) = &p.opened else { continue };
        c.id.push(p.id);
        c.case_number.push(o.case_number.clone());
        c.title.push(p.title.clone().unwrap_or_else(|| o.title.clone()));
        c.description.push(p.description.clone().unwrap_or_else(|| o.description.clone()));
        c.status.push(p.status.unwrap_or(o.status.as_str()).to_owned());
        c.priority.push(p.priority.unwrap_or(o.priority.as_str()).to_owned());
        c.case_type.push(o.case_type_id);
        c.created_by.push(o.created_by);
        c.assigned_to.push(p.assigned_to.unwrap_or(o.assigned_to));
        c.created_at.push(o.opened_at);
        c.updated_at.push(p.updated_at.unwrap_or(o.opened_at));
        c.due_date.push(p.due_date.unwrap_or(o.due_date));
        c.custom_fields.push(p.custom_fields.clone().unwrap_or_else(|| json!(o.custom_fields)));
        c.tags.push(json!(p.tags.clone().unwrap_or_else(|| o.tags.clone())));
        c.version.push(p.to);
        c.team.push(p.team.flatten());
        c.workflow.push(p.workflow);
        c.stage.push(p.stage);
        c.resolved_at.push(match p.resolved {
            Resolved::Keep => None,
            Resolved::Since(at) => Some(at),
            Resolved::Set(at) => at,
        });
        c.metadata.push(p.sla.clone().map(|sla| json!({ "sla": sla })));
        c.customer.push(o.customer_id);
    }
    sqlx::query(&format!(
        "INSERT INTO {schema}.cases (id, tenant_id, case_number, title, description, status, priority, case_type_id,
            created_by, assigned_to, created_at, updated_at, due_date, custom_fields, tags, version, assigned_team_id,
            workflow_id, current_stage_id, resolved_at, metadata, case_type_name, assigned_to_username, customer_id)
         SELECT r.id, $1, r.case_number, r.title, r.description, r.status, r.priority, r.case_type_id, r.created_by,
            r.assigned_to, r.created_at, r.updated_at, r.due_date, r.custom_fields,
            ARRAY(SELECT jsonb_array_elements_text(r.tags)), r.version, r.team, r.workflow, r.stage, r.resolved_at,
            r.metadata,
            (SELECT name FROM {schema}.case_types WHERE id = r.case_type_id),
            (SELECT username FROM {schema}.users WHERE id = r.assigned_to), r.customer_id
         FROM UNNEST($2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::uuid[], $9::uuid[],
                     $10::uuid[], $11::timestamptz[], $12::timestamptz[], $13::timestamptz[], $14::jsonb[],
                     $15::jsonb[], $16::bigint[], $17::uuid[], $18::uuid[], $19::uuid[], $20::timestamptz[],
                     $21::jsonb[], $22::uuid[])
           WITH ORDINALITY AS r(id, case_number, title, description, status, priority, case_type_id, created_by,
                assigned_to, created_at, updated_at, due_date, custom_fields, tags, version, team, workflow, stage,
                resolved_at, metadata, customer_id, n)
         ORDER BY r.n
         ON CONFLICT (id) DO NOTHING"
    ))
    .bind(tenant)
    .bind(&c.id)
    .bind(&c.case_number)
    .bind(&c.title)
    .bind(&c.description)
    .bind(&c.status)
    .bind(&c.priority)
    .bind(&c.case_type)
    .bind(&c.created_by)
    .bind(&c.assigned_to)
    .bind(&c.created_at)
    .bind(&c.updated_at)
    .bind(&c.due_date)
    .bind(&c.custom_fields)
    .bind(&c.tags)
    .bind(&c.version)
    .bind(&c.team)
    .bind(&c.workflow)
    .bind(&c.stage)
    .bind(&c.resolved_at)
    .bind(&c.metadata)
    .bind(&c.customer)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Column arrays of an INSERT (UNNEST takes one array per column).
#[derive(Default)]
struct Columns {
    id: Vec<Uuid>,
    case_number: Vec<String>,
    title: Vec<String>,
    description: Vec<Option<String>>,
    status: Vec<String>,
    priority: Vec<String>,
    case_type: Vec<Uuid>,
    created_by: Vec<Uuid>,
    assigned_to: Vec<Option<Uuid>>,
    created_at: Vec<DateTime<Utc>>,
    updated_at: Vec<DateTime<Utc>>,
    due_date: Vec<Option<DateTime<Utc>>>,
    custom_fields: Vec<Value>,
    tags: Vec<Value>,
    version: Vec<i64>,
    team: Vec<Option<Uuid>>,
    workflow: Vec<Option<Uuid>>,
    stage: Vec<Option<Uuid>>,
    resolved_at: Vec<Option<DateTime<Utc>>>,
    metadata: Vec<Option<Value>>,
    customer: Vec<Option<Uuid>>,
}

async fn update(tx: &mut Transaction<'_, Postgres>, schema: &str, existing: &[Patch]) -> sqlx::Result<()> {
    if existing.is_empty() {
        return Ok(());
    }
    let col = |f: &dyn Fn(&Patch) -> Option<String>| existing.iter().map(f).collect::<Vec<Option<String>>>();
    let flag = |f: &dyn Fn(&Patch) -> bool| existing.iter().map(f).collect::<Vec<bool>>();
    let ids: Vec<Uuid> = existing.iter().map(|p| p.id).collect();
    let from: Vec<i64> = existing.iter().map(|p| p.from).collect();
    let to: Vec<i64> = existing.iter().map(|p| p.to).collect();
    let has_description = flag(&|p| p.description.is_some());
    let has_due = flag(&|p| p.due_date.is_some());
    let has_assignee = flag(&|p| p.assigned_to.is_some());
    let has_team = flag(&|p| p.team.is_some());
    let uuids = |f: &dyn Fn(&Patch) -> Option<Uuid>| existing.iter().map(f).collect::<Vec<Option<Uuid>>>();
    let times =
        |f: &dyn Fn(&Patch) -> Option<DateTime<Utc>>| existing.iter().map(f).collect::<Vec<Option<DateTime<Utc>>>>();
    let values = |f: &dyn Fn(&Patch) -> Option<Value>| existing.iter().map(f).collect::<Vec<Option<Value>>>();
    let resolved_kind: Vec<i16> = existing
        .iter()
        .map(|p| match p.resolved {
            Resolved::Keep => 0,
            Resolved::Since(_) => 1,
            Resolved::Set(_) => 2,
        })
        .collect();
    let resolved_at = times(&|p| match p.resolved {
        Resolved::Keep => None,
        Resolved::Since(at) => Some(at),
        Resolved::Set(at) => at,
    });
    let updated = sqlx::query(&format!(
        "UPDATE {schema}.cases c SET
            title = COALESCE(u.title, c.title),
            description = CASE WHEN u.has_description THEN u.description ELSE c.description END,
            status = COALESCE(u.status, c.status),
            priority = COALESCE(u.priority, c.priority),
            due_date = CASE WHEN u.has_due THEN u.due_date ELSE c.due_date END,
            tags = CASE WHEN u.tags IS NULL THEN c.tags ELSE ARRAY(SELECT jsonb_array_elements_text(u.tags)) END,
            custom_fields = COALESCE(u.custom_fields, c.custom_fields),
            assigned_to = CASE WHEN u.has_assignee THEN u.assigned_to ELSE c.assigned_to END,
            assigned_to_username = CASE WHEN u.has_assignee
                THEN (SELECT username FROM {schema}.users WHERE id = u.assigned_to) ELSE c.assigned_to_username END,
            assigned_team_id = CASE WHEN u.has_team THEN u.team ELSE c.assigned_team_id END,
            workflow_id = COALESCE(u.workflow, c.workflow_id),
            current_stage_id = COALESCE(u.stage, c.current_stage_id),
            updated_at = COALESCE(u.updated_at, c.updated_at),
            resolved_at = CASE u.resolved_kind WHEN 0 THEN c.resolved_at
                WHEN 1 THEN COALESCE(c.resolved_at, u.resolved_at) ELSE u.resolved_at END,
            metadata = CASE WHEN u.sla IS NULL THEN c.metadata
                ELSE jsonb_set(COALESCE(c.metadata, '{{}}'), '{{sla}}', CASE WHEN u.sla_replaces THEN u.sla
                    ELSE COALESCE(c.metadata->'sla', '{{}}') || u.sla END) END,
            version = u.to_version
         FROM UNNEST($1::uuid[], $2::bigint[], $3::bigint[], $4::text[], $5::bool[], $6::text[], $7::text[],
                     $8::text[], $9::bool[], $10::timestamptz[], $11::jsonb[], $12::jsonb[], $13::bool[], $14::uuid[],
                     $15::bool[], $16::uuid[], $17::uuid[], $18::uuid[], $19::timestamptz[], $20::int2[],
                     $21::timestamptz[], $22::jsonb[], $23::bool[])
           AS u(id, from_version, to_version, title, has_description, description, status, priority, has_due,
                due_date, tags, custom_fields, has_assignee, assigned_to, has_team, team, workflow, stage, updated_at,
                resolved_kind, resolved_at, sla, sla_replaces)
         WHERE c.id = u.id AND c.version = u.from_version"
    ))
    .bind(&ids)
    .bind(&from)
    .bind(&to)
    .bind(col(&|p| p.title.clone()))
    .bind(&has_description)
    .bind(col(&|p| p.description.clone().flatten()))
    .bind(col(&|p| p.status.map(str::to_owned)))
    .bind(col(&|p| p.priority.map(str::to_owned)))
    .bind(&has_due)
    .bind(times(&|p| p.due_date.flatten()))
    .bind(values(&|p| p.tags.as_ref().map(|t| json!(t))))
    .bind(values(&|p| p.custom_fields.clone()))
    .bind(&has_assignee)
    .bind(uuids(&|p| p.assigned_to.flatten()))
    .bind(&has_team)
    .bind(uuids(&|p| p.team.flatten()))
    .bind(uuids(&|p| p.workflow))
    .bind(uuids(&|p| p.stage))
    .bind(times(&|p| p.updated_at))
    .bind(&resolved_kind)
    .bind(&resolved_at)
    .bind(values(&|p| p.sla.clone()))
    .bind(flag(&|p| p.sla_replaces))
    .execute(&mut **tx)
    .await?;
    if updated.rows_affected() < existing.len() as u64 {
        // Rows read a moment ago in this transaction: only a concurrent writer explains it.
        tracing::warn!(
            expected = existing.len(),
            updated = updated.rows_affected(),
            "some case rows moved on meanwhile"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::event::test_event;

    fn opened() -> Event {
        test_event(
            "case",
            1,
            "CaseOpened",
            json!({ "case_number": "CASE-000001", "title": "Printer", "description": null, "status": "open",
                    "priority": "low", "case_type_id": Uuid::from_u128(3), "created_by": Uuid::from_u128(7),
                    "assigned_to": null, "due_date": null, "tags": [], "custom_fields": {},
                    "opened_at": "2026-11-20T09:00:00Z" }),
        )
    }

    fn status(v: i64, old: &str, new: &str, at: &str) -> Event {
        test_event("case", v, "CaseStatusChanged", json!({ "status": { "old": old, "new": new }, "changed_at": at }))
    }

    fn fold_all(events: &[Event], held: i64) -> Vec<Patch> {
        let pairs: Vec<(&Event, &CaseEvent)> = events
            .iter()
            .map(|e| match &e.data {
                DomainEvent::Case(c) => (e, c),
                _ => unreachable!(),
            })
            .collect();
        let held = if held > 0 { HashMap::from([(events[0].envelope.stream_id, held)]) } else { HashMap::new() };
        fold(&pairs, &held)
    }

    #[test]
    fn a_run_folds_into_one_row_as_its_events_would_leave_it_one_by_one() {
        let events = [
            opened(),
            status(2, "open", "resolved", "2026-11-20T10:00:00Z"),
            status(3, "resolved", "closed", "2026-11-20T11:00:00Z"),
            status(4, "closed", "open", "2026-11-20T12:00:00Z"),
            status(5, "open", "resolved", "2026-11-20T13:00:00Z"),
        ];
        let patches = fold_all(&events, 0);
        assert_eq!(patches.len(), 1);
        let p = &patches[0];
        assert_eq!((p.from, p.to, p.status), (0, 5, Some("resolved")));
        assert!(p.opened.is_some());
        // Resolved at 10:00, kept when closed, cleared on reopening, set again at 13:00.
        assert_eq!(p.resolved, Resolved::Set(Some("2026-11-20T13:00:00Z".parse().unwrap())));
        // Resolving once more on top of a row that may already be resolved keeps its time.
        let more = fold_all(&[status(6, "resolved", "closed", "2026-11-20T14:00:00Z")], 5);
        assert_eq!(more[0].resolved, Resolved::Since("2026-11-20T14:00:00Z".parse().unwrap()));
    }

    #[test]
    fn redeliveries_are_dropped_and_a_gap_stops_the_stream() {
        let events = [
            opened(),
            status(2, "open", "pending", "2026-11-20T10:00:00Z"),
            status(3, "pending", "open", "2026-11-20T11:00:00Z"),
            status(5, "open", "resolved", "2026-11-20T12:00:00Z"),
        ];
        let patches = fold_all(&events, 2);
        assert_eq!((patches[0].from, patches[0].to, patches[0].status), (2, 3, Some("open")));
        assert!(patches[0].opened.is_none());
        // Without CaseOpened a case with no row cannot start.
        assert!(fold_all(&events[1..], 0).is_empty());
    }

    #[test]
    fn a_second_copy_of_an_event_in_the_same_run_does_not_stop_the_stream() {
        // The relay sent the open and the status change again after a crash, and both
        // copies landed in one batch: the change that follows must still be applied.
        let events = [
            opened(),
            status(2, "open", "pending", "2026-11-20T10:00:00Z"),
            opened(),
            status(2, "open", "pending", "2026-11-20T10:00:00Z"),
            status(3, "pending", "resolved", "2026-11-20T11:00:00Z"),
        ];
        let patches = fold_all(&events, 0);
        assert_eq!((patches[0].from, patches[0].to, patches[0].status), (0, 3, Some("resolved")));
    }
}
