//! The team stream: create (name unique per tenant, checked by the write side), rename,
//! add and remove members with a role. Members must be users of the tenant (checked by
//! the command API before deciding).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::change::Change;
use crate::contract;
use crate::error::{DomainError, Validator};
use crate::stream::Context;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum TeamRole {
    Member,
    Lead,
}

impl TeamRole {
    pub fn as_str(self) -> &'static str {
        match self {
            TeamRole::Member => "member",
            TeamRole::Lead => "lead",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum TeamCommand {
    Create { name: String, description: Option<String> },
    Rename { name: String },
    AddMember { user_id: Uuid, role: TeamRole },
    RemoveMember { user_id: Uuid },
}

payloads! {
    pub struct TeamCreated {
        pub name: String,
        pub description: Option<String>,
        pub created_at: DateTime<Utc>,
    }

    pub struct TeamRenamed {
        pub name: Change<String>,
        pub renamed_at: DateTime<Utc>,
    }

    pub struct TeamMemberAdded {
        pub user_id: Uuid,
        pub role: TeamRole,
        pub joined_at: DateTime<Utc>,
    }

    pub struct TeamMemberRemoved {
        pub user_id: Uuid,
        pub role: TeamRole,
        pub removed_at: DateTime<Utc>,
    }
}

event_enum! {
    pub enum TeamEvent {
        Created(TeamCreated) = "TeamCreated" @ 1,
        Renamed(TeamRenamed) = "TeamRenamed" @ 1,
        MemberAdded(TeamMemberAdded) = "TeamMemberAdded" @ 1,
        MemberRemoved(TeamMemberRemoved) = "TeamMemberRemoved" @ 1,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Team {
    pub name: String,
    pub description: Option<String>,
    /// Members in the order they joined.
    pub members: Vec<(Uuid, TeamRole)>,
}

impl Team {
    pub fn role_of(&self, user: Uuid) -> Option<TeamRole> {
        self.members.iter().find(|(u, _)| *u == user).map(|(_, r)| *r)
    }
}

pub fn evolve(state: Option<Team>, event: &TeamEvent) -> Option<Team> {
    match (state, event) {
        (None, TeamEvent::Created(e)) => {
            Some(Team { name: e.name.clone(), description: e.description.clone(), members: vec![] })
        }
        (Some(mut t), TeamEvent::Renamed(e)) => {
            t.name = e.name.new.clone();
            Some(t)
        }
        (Some(mut t), TeamEvent::MemberAdded(e)) => {
            t.members.push((e.user_id, e.role));
            Some(t)
        }
        (Some(mut t), TeamEvent::MemberRemoved(e)) => {
            t.members.retain(|(u, _)| *u != e.user_id);
            Some(t)
        }
        // Never in a well-formed stream: the state is kept, never invented. Every
        // (state, event) pair is named, so a new event fails to compile here until folded.
        (state @ Some(_), TeamEvent::Created(_)) => state,
        (None, TeamEvent::Renamed(_) | TeamEvent::MemberAdded(_) | TeamEvent::MemberRemoved(_)) => None,
    }
}

/// Team names are unique per tenant regardless of case and surrounding spaces.
pub fn normalise_name(name: &str) -> String {
    name.trim().to_lowercase()
}

pub fn decide(state: Option<&Team>, command: TeamCommand, ctx: &Context) -> Result<Vec<TeamEvent>, DomainError> {
    let now = ctx.now;
    match (state, command) {
        (Some(_), TeamCommand::Create { .. }) => Err(DomainError::Conflict("the team already exists".into())),
        (None, TeamCommand::Create { name, description }) => {
            let mut v = Validator::default();
            v.text("name", &name, contract::NAME);
            if let Some(d) = &description {
                v.optional_text("description", d, contract::TEAM_DESCRIPTION);
            }
            v.finish()?;
            Ok(vec![TeamEvent::Created(TeamCreated { name: name.trim().to_owned(), description, created_at: now })])
        }
        (None, _) => Err(DomainError::NotFound("team")),
        (Some(team), TeamCommand::Rename { name }) => {
            let mut v = Validator::default();
            v.text("name", &name, contract::NAME);
            v.finish()?;
            Ok(Change::between(&team.name, Some(name.trim().to_owned()))
                .map(|name| TeamEvent::Renamed(TeamRenamed { name, renamed_at: now }))
                .into_iter()
                .collect())
        }
        (Some(team), TeamCommand::AddMember { user_id, role }) => match team.role_of(user_id) {
            Some(current) if current == role => Ok(vec![]),
            Some(current) => Err(DomainError::Conflict(format!(
                "the user is already a {} of this team; remove them first to change their role",
                current.as_str()
            ))),
            None => Ok(vec![TeamEvent::MemberAdded(TeamMemberAdded { user_id, role, joined_at: now })]),
        },
        (Some(team), TeamCommand::RemoveMember { user_id }) => Ok(team
            .role_of(user_id)
            .map(|role| TeamEvent::MemberRemoved(TeamMemberRemoved { user_id, role, removed_at: now }))
            .into_iter()
            .collect()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::testing::given;

    fn created() -> Vec<TeamEvent> {
        decide(None, TeamCommand::Create { name: " Tier 1 ".into(), description: None }, &Context::at(Utc::now()))
            .unwrap()
    }

    #[test]
    fn creating_trims_the_name_and_refuses_blank_ones() {
        assert_eq!(given(&created()).state().unwrap().name, "Tier 1");
        let blank =
            decide(None, TeamCommand::Create { name: "  ".into(), description: None }, &Context::at(Utc::now()));
        assert!(matches!(blank, Err(DomainError::Invalid(_))));
    }

    #[test]
    fn members_join_once_and_leave_with_their_role_recorded() {
        let user = Uuid::now_v7();
        let mut events = created();
        let add = TeamCommand::AddMember { user_id: user, role: TeamRole::Lead };
        events.extend(given(&events).when_in(add.clone(), &Context::at(Utc::now())).result().unwrap());
        assert_eq!(given(&events).when_in(add, &Context::at(Utc::now())).result().unwrap(), vec![]);
        let other_role = TeamCommand::AddMember { user_id: user, role: TeamRole::Member };
        assert!(matches!(
            given(&events).when_in(other_role, &Context::at(Utc::now())).result(),
            Err(DomainError::Conflict(_))
        ));
        let removed = given(&events)
            .when_in(TeamCommand::RemoveMember { user_id: user }, &Context::at(Utc::now()))
            .result()
            .unwrap();
        let [TeamEvent::MemberRemoved(e)] = removed.as_slice() else { panic!("expected a removal") };
        assert_eq!(e.role, TeamRole::Lead);
        events.extend(removed);
        assert_eq!(given(&events).state().unwrap().members, vec![]);
    }

    #[test]
    fn renaming_to_the_same_name_records_nothing() {
        let state = given(&created()).state();
        assert_eq!(
            decide(state.as_ref(), TeamCommand::Rename { name: "Tier 1".into() }, &Context::at(Utc::now())).unwrap(),
            vec![]
        );
    }

    #[test]
    fn removing_a_non_member_records_nothing() {
        let state = given(&created()).state();
        let remove = TeamCommand::RemoveMember { user_id: Uuid::now_v7() };
        assert_eq!(decide(state.as_ref(), remove, &Context::at(Utc::now())).unwrap(), vec![]);
        assert_eq!(
            decide(None, TeamCommand::Rename { name: "x".into() }, &Context::at(Utc::now())),
            Err(DomainError::NotFound("team"))
        );
    }
}
