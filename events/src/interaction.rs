//! The interaction stream: one inbound or outbound contact on a case through a channel,
//! recorded once. The command API checks, before deciding, that the case exists and the
//! channel is active, and hands those facts in.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::contract;
use crate::error::{DomainError, Validator};
use crate::stream::Context;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

pub use crate::reference::Reference;

#[derive(Debug, Clone, PartialEq)]
pub struct RecordInteraction {
    pub case_id: Uuid,
    pub case: Reference,
    pub channel_id: Uuid,
    pub channel: Reference,
    pub direction: Direction,
    pub content: Option<String>,
    pub external_id: Option<String>,
    pub tags: Vec<String>,
    pub metadata: Map<String, Value>,
    /// When the contact happened (defaults to now); never in the future.
    pub occurred_at: Option<DateTime<Utc>>,
    /// The first instant the tenant's retention keeps (`tenant::kept_from`): an
    /// interaction dated before it would be removed by the next retention run.
    pub kept_from: Option<DateTime<Utc>>,
    /// The case's customer (`case::OpenCase::customer_id`): the contact is about them.
    pub customer_id: Option<Uuid>,
}

payloads! {
    pub struct InteractionRecorded {
        pub case_id: Uuid,
        pub channel_id: Uuid,
        pub user_id: Uuid,
        pub direction: Direction,
        pub content: Option<String>,
        pub external_id: Option<String>,
        pub tags: Vec<String>,
        pub metadata: Map<String, Value>,
        pub timestamp: DateTime<Utc>,
        /// The case's customer, whose key seals the content, external id and metadata.
        /// v2: earlier interactions name none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub customer_id: Option<Uuid>,
    }
}

event_enum! {
    pub enum InteractionEvent {
        Recorded(InteractionRecorded) = "InteractionRecorded" @ 2 [1 => crate::case::unchanged],
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Interaction {
    pub case_id: Uuid,
    pub timestamp: DateTime<Utc>,
}

/// An interaction is about its case's customer, if the case names one.
pub fn data_subject(_: Uuid, _: Option<&Interaction>, events: &[InteractionEvent]) -> Option<Uuid> {
    events.iter().find_map(|e| match e {
        InteractionEvent::Recorded(e) => e.customer_id,
    })
}

pub fn evolve(state: Option<Interaction>, event: &InteractionEvent) -> Option<Interaction> {
    match event {
        InteractionEvent::Recorded(e) => state.or(Some(Interaction { case_id: e.case_id, timestamp: e.timestamp })),
    }
}

pub fn decide(
    state: Option<&Interaction>,
    cmd: RecordInteraction,
    ctx: &Context,
) -> Result<Vec<InteractionEvent>, DomainError> {
    let (actor, now) = (ctx.actor, ctx.now);
    if state.is_some() {
        return Err(DomainError::Conflict("the interaction is already recorded".into()));
    }
    let mut v = Validator::default();
    match cmd.case {
        Reference::Missing => v.check(false, "case_id", "no case with this id exists in the tenant"),
        Reference::Inactive => v.check(false, "case_id", "the case is closed; reopen it to record interactions"),
        Reference::Usable => {}
    }
    match cmd.channel {
        Reference::Missing => v.check(false, "channel_id", "no channel with this id exists in the tenant"),
        Reference::Inactive => v.check(false, "channel_id", "the channel is deactivated"),
        Reference::Usable => {}
    }
    if let Some(c) = &cmd.content {
        v.optional_text("content", c, contract::INTERACTION_CONTENT);
    }
    if let Some(x) = &cmd.external_id {
        v.text("external_id", x, contract::EXTERNAL_ID);
    }
    v.check(cmd.tags.len() <= contract::MAX_TAGS, "tags", format!("at most {} tags", contract::MAX_TAGS));
    for (i, tag) in cmd.tags.iter().enumerate() {
        v.text(&format!("tags[{i}]"), tag, contract::TAG);
    }
    let timestamp = cmd.occurred_at.unwrap_or(now);
    let latest = now.checked_add_signed(chrono::Duration::minutes(5)).unwrap_or(now);
    v.check(timestamp <= latest, "occurred_at", "must not be in the future");
    // Interactions are partitioned (PostgreSQL) and indexed (Elasticsearch) by month: an
    // unbounded past would let one caller create a partition and an index per month.
    let oldest = now.checked_sub_signed(chrono::Duration::days(contract::MAX_BACKDATED_DAYS)).unwrap_or(now);
    v.check(
        timestamp >= oldest,
        "occurred_at",
        format!("must be within the last {} days", contract::MAX_BACKDATED_DAYS),
    );
    if let Some(kept_from) = cmd.kept_from {
        v.check(
            timestamp >= kept_from,
            "occurred_at",
            format!(
                "must not be before {}: the tenant keeps interactions for its retention_days, and older ones are removed",
                kept_from.format("%Y-%m-%d")
            ),
        );
    }
    v.finish()?;
    Ok(vec![InteractionEvent::Recorded(InteractionRecorded {
        case_id: cmd.case_id,
        channel_id: cmd.channel_id,
        user_id: actor,
        direction: cmd.direction,
        content: cmd.content,
        external_id: cmd.external_id,
        tags: cmd.tags,
        metadata: cmd.metadata,
        timestamp,
        customer_id: cmd.customer_id,
    })])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::testing::given;

    fn cmd(case: Reference, channel: Reference) -> RecordInteraction {
        RecordInteraction {
            case_id: Uuid::now_v7(),
            case,
            channel_id: Uuid::now_v7(),
            channel,
            direction: Direction::Inbound,
            content: Some("Customer called about a refund".into()),
            external_id: None,
            tags: vec![],
            metadata: Map::new(),
            occurred_at: None,
            kept_from: None,
            customer_id: None,
        }
    }

    #[test]
    fn references_must_be_usable_and_are_named_when_not() {
        let Err(DomainError::Invalid(errors)) =
            decide(None, cmd(Reference::Missing, Reference::Inactive), &Context::at(Utc::now()))
        else {
            panic!("expected invalid")
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["case_id", "channel_id"]);
    }

    #[test]
    fn nothing_is_dated_before_the_tenant_s_retention() {
        let now: DateTime<Utc> = "2026-12-07T10:00:00Z".parse().unwrap();
        let kept_from = crate::tenant::kept_from(now, 30).unwrap();
        assert_eq!(kept_from.to_rfc3339(), "2026-11-01T00:00:00+00:00", "whole months");
        let dated = |at: &str| {
            let mut c = cmd(Reference::Usable, Reference::Usable);
            c.occurred_at = Some(at.parse().unwrap());
            c.kept_from = Some(kept_from);
            decide(None, c, &Context { actor: Uuid::nil(), now })
        };
        let Err(DomainError::Invalid(errors)) = dated("2026-10-31T23:59:59Z") else { panic!("expected invalid") };
        assert_eq!(errors[0].field, "occurred_at");
        assert!(dated("2026-11-01T00:00:00Z").is_ok());
    }

    #[test]
    fn an_interaction_is_recorded_once() {
        let events = decide(None, cmd(Reference::Usable, Reference::Usable), &Context::at(Utc::now())).unwrap();
        let state = given(&events).state();
        let again = decide(state.as_ref(), cmd(Reference::Usable, Reference::Usable), &Context::at(Utc::now()));
        assert!(matches!(again, Err(DomainError::Conflict(_))));
    }
}
