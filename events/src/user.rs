//! The user stream: create, update profile, change role or status, set permissions and
//! preferences, record logins. Passwords reach this module already hashed (argon2, by the
//! command API); the clear text is never stored or emitted.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::change::Change;
use crate::contract;
use crate::error::{DomainError, Validator};
use crate::stream::Context;

pub type Document = Map<String, Value>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum UserRole {
    Agent,
    Supervisor,
    Admin,
}

impl UserRole {
    pub fn as_str(self) -> &'static str {
        match self {
            UserRole::Agent => "agent",
            UserRole::Supervisor => "supervisor",
            UserRole::Admin => "admin",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum UserStatus {
    Active,
    Inactive,
    Locked,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Inactive => "inactive",
            UserStatus::Locked => "locked",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum UserCommand {
    Create(CreateUser),
    UpdateProfile {
        first_name: Option<Option<String>>,
        last_name: Option<Option<String>>,
        email: Option<String>,
    },
    ChangeRole {
        role: UserRole,
    },
    ChangeStatus {
        status: UserStatus,
    },
    SetPermissions {
        permissions: Document,
    },
    SetPreferences {
        preferences: Document,
    },
    RecordLogin,
    /// The password was set anew (its hash is kept off the log, in the credentials
    /// table); `reset`: by an administrator rather than the user.
    ChangePassword {
        reset: bool,
    },
    /// The user read notifications: those named, and with `all` every one until now.
    ReadNotifications {
        ids: Vec<uuid::Uuid>,
        all: bool,
    },
    /// Erase the user as a data subject (`events::personal`): their key is deleted with
    /// this command, and `marker` (`erased-<id>`) stands in for their username and email.
    Erase {
        marker: String,
    },
}

/// Notifications one command may mark read by id.
pub const MAX_NOTIFICATIONS_READ: usize = 100;

#[derive(Debug, Clone, PartialEq)]
pub struct CreateUser {
    pub username: String,
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub role: UserRole,
}

payloads! {
    pub struct UserCreated {
        pub username: String,
        pub email: String,
        pub first_name: Option<String>,
        pub last_name: Option<String>,
        pub role: UserRole,
        pub created_at: DateTime<Utc>,
    }
}

field_changes! {
    #[derive(Default)]
    pub struct UserProfileUpdated changes User {
        first_name: Option<String>,
        last_name: Option<String>,
        email: String,
    } with {
        pub updated_at: DateTime<Utc>,
    }
}

payloads! {
    pub struct UserRoleChanged {
        pub role: Change<UserRole>,
        pub changed_at: DateTime<Utc>,
    }

    pub struct UserStatusChanged {
        pub status: Change<UserStatus>,
        pub changed_at: DateTime<Utc>,
    }

    pub struct UserPermissionsSet {
        pub permissions: Change<Document>,
        pub set_at: DateTime<Utc>,
    }

    pub struct UserPreferencesSet {
        pub preferences: Change<Document>,
        pub set_at: DateTime<Utc>,
    }

    pub struct UserLoggedIn {
        pub logged_in_at: DateTime<Utc>,
    }

    /// The user's password was changed (by them, with the old one) or reset by an
    /// administrator. The event says only that; the hash never enters the log.
    pub struct UserPasswordChanged {
        pub reset: bool,
        pub changed_at: DateTime<Utc>,
    }

    /// The user read notifications: those named by id (the id of the event each one is
    /// about), and with `all_before` every one about an event that happened before then.
    pub struct UserNotificationsRead {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub ids: Vec<uuid::Uuid>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub all_before: Option<DateTime<Utc>>,
        pub read_at: DateTime<Utc>,
    }
}

event_enum! {
    pub enum UserEvent {
        // v1 held the password hash; v2 keeps credentials off the log.
        Created(UserCreated) = "UserCreated" @ 2 [1 => without_password_hash],
        ProfileUpdated(UserProfileUpdated) = "UserProfileUpdated" @ 1,
        RoleChanged(UserRoleChanged) = "UserRoleChanged" @ 1,
        StatusChanged(UserStatusChanged) = "UserStatusChanged" @ 1,
        PermissionsSet(UserPermissionsSet) = "UserPermissionsSet" @ 1,
        PreferencesSet(UserPreferencesSet) = "UserPreferencesSet" @ 1,
        LoggedIn(UserLoggedIn) = "UserLoggedIn" @ 1,
        PasswordChanged(UserPasswordChanged) = "UserPasswordChanged" @ 1,
        NotificationsRead(UserNotificationsRead) = "UserNotificationsRead" @ 1,
        Erased(UserErased) = "UserErased" @ 1,
    }
}

/// Upcasts a v1 `UserCreated`: its password hash moved to the credentials table (migration
/// `20261130110000_credentials`) and is dropped from every old copy as it is read.
pub fn without_password_hash(mut payload: Value) -> Value {
    if let Some(fields) = payload.as_object_mut() {
        fields.remove("password_hash");
    }
    payload
}

/// The user was erased as a data subject: their key is gone, so every personal field of
/// their events reads as a marker from now on; `marker` stands in for the username and
/// email (unique, as they are), `[erased]` for names. Their preferences (free-form, so
/// possibly personal) are emptied and the account is inactive for good.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserErased {
    pub marker: String,
    pub erased_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub username: String,
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub role: UserRole,
    pub status: UserStatus,
    pub permissions: Document,
    pub preferences: Document,
    pub last_login: Option<DateTime<Utc>>,
    /// Erased as a data subject: nothing more is recorded about them.
    pub erased: bool,
}

/// A user's own stream is about them.
pub fn data_subject(stream_id: uuid::Uuid, _: Option<&User>, _: &[UserEvent]) -> Option<uuid::Uuid> {
    Some(stream_id)
}

pub fn evolve(state: Option<User>, event: &UserEvent) -> Option<User> {
    match (state, event) {
        (None, UserEvent::Created(e)) => Some(User {
            username: e.username.clone(),
            email: e.email.clone(),
            first_name: e.first_name.clone(),
            last_name: e.last_name.clone(),
            role: e.role,
            status: UserStatus::Active,
            permissions: Document::new(),
            preferences: Document::new(),
            last_login: None,
            erased: false,
        }),
        (Some(mut u), UserEvent::ProfileUpdated(e)) => {
            e.apply(&mut u);
            Some(u)
        }
        (Some(mut u), UserEvent::RoleChanged(e)) => {
            u.role = e.role.new;
            Some(u)
        }
        (Some(mut u), UserEvent::StatusChanged(e)) => {
            u.status = e.status.new;
            Some(u)
        }
        (Some(mut u), UserEvent::PermissionsSet(e)) => {
            u.permissions = e.permissions.new.clone();
            Some(u)
        }
        (Some(mut u), UserEvent::PreferencesSet(e)) => {
            u.preferences = e.preferences.new.clone();
            Some(u)
        }
        (Some(mut u), UserEvent::LoggedIn(e)) => {
            u.last_login = Some(e.logged_in_at);
            Some(u)
        }
        (Some(mut u), UserEvent::Erased(e)) => {
            u.username = e.marker.clone();
            u.email = e.marker.clone();
            u.first_name = u.first_name.map(|_| crate::personal::ERASED.to_owned());
            u.last_name = u.last_name.map(|_| crate::personal::ERASED.to_owned());
            u.preferences = Document::new();
            u.status = UserStatus::Inactive;
            u.erased = true;
            Some(u)
        }
        // The hash lives in the credentials table; the stream only records the change.
        (state @ Some(_), UserEvent::PasswordChanged(_)) => state,
        // What was read lives in the notification store (Redis); the stream records it.
        (state @ Some(_), UserEvent::NotificationsRead(_)) => state,
        // Never in a well-formed stream: the state is kept, never invented. Every
        // (state, event) pair is named, so a new event fails to compile here until folded.
        (state @ Some(_), UserEvent::Created(_)) => state,
        (
            None,
            UserEvent::ProfileUpdated(_)
            | UserEvent::RoleChanged(_)
            | UserEvent::StatusChanged(_)
            | UserEvent::PermissionsSet(_)
            | UserEvent::PreferencesSet(_)
            | UserEvent::LoggedIn(_)
            | UserEvent::PasswordChanged(_)
            | UserEvent::NotificationsRead(_)
            | UserEvent::Erased(_),
        ) => None,
    }
}

/// Usernames are 3-64 characters of a-z, 0-9, '.', '_' and '-' (stored lower-case).
pub fn normalise_username(raw: &str) -> String {
    raw.trim().to_lowercase()
}

pub fn normalise_email(raw: &str) -> String {
    raw.trim().to_lowercase()
}

fn check_email(v: &mut Validator, email: &str) {
    let ok = email.len() <= 255
        && email.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !email.contains(char::is_whitespace);
    v.check(ok, "email", "must be an email address like name@example.com");
}

fn check_name(v: &mut Validator, field: &str, name: &Option<String>) {
    if let Some(n) = name {
        v.text(field, n, contract::NAME);
    }
}

fn check_document(v: &mut Validator, field: &str, doc: &Document) {
    let size = serde_json::to_string(doc).map(|s| s.len()).unwrap_or(0);
    v.check(size <= 16 * 1024, field, "must be at most 16 KiB of JSON");
}

pub fn decide(state: Option<&User>, command: UserCommand, ctx: &Context) -> Result<Vec<UserEvent>, DomainError> {
    let now = ctx.now;
    match (state, command) {
        (Some(_), UserCommand::Create(_)) => Err(DomainError::Conflict("the user already exists".into())),
        (None, UserCommand::Create(cmd)) => {
            let mut v = Validator::default();
            let username = normalise_username(&cmd.username);
            let ok = (3..=64).contains(&username.len())
                && username.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
            v.check(ok, "username", "3-64 characters of a-z, 0-9, '.', '_' and '-'");
            let email = normalise_email(&cmd.email);
            check_email(&mut v, &email);
            check_name(&mut v, "first_name", &cmd.first_name);
            check_name(&mut v, "last_name", &cmd.last_name);
            v.finish()?;
            Ok(vec![UserEvent::Created(UserCreated {
                username,
                email,
                first_name: cmd.first_name,
                last_name: cmd.last_name,
                role: cmd.role,
                created_at: now,
            })])
        }
        (None, _) => Err(DomainError::NotFound("user")),
        (Some(user), UserCommand::Erase { .. }) if user.erased => Ok(vec![]),
        (Some(_), UserCommand::Erase { marker }) => Ok(vec![UserEvent::Erased(UserErased { marker, erased_at: now })]),
        (Some(user), _) if user.erased => Err(DomainError::Conflict(
            "the user was erased as a data subject; nothing more is recorded about them".into(),
        )),
        (Some(user), UserCommand::UpdateProfile { first_name, last_name, email }) => {
            let mut v = Validator::default();
            if let Some(first) = &first_name {
                check_name(&mut v, "first_name", first);
            }
            if let Some(last) = &last_name {
                check_name(&mut v, "last_name", last);
            }
            let email = email.map(|e| normalise_email(&e));
            if let Some(e) = &email {
                check_email(&mut v, e);
            }
            v.finish()?;
            let event = UserProfileUpdated {
                first_name: Change::between(&user.first_name, first_name),
                last_name: Change::between(&user.last_name, last_name),
                email: Change::between(&user.email, email),
                updated_at: now,
            };
            let nothing = event.is_empty();
            Ok(if nothing { vec![] } else { vec![UserEvent::ProfileUpdated(event)] })
        }
        (Some(user), UserCommand::ChangeRole { role }) => Ok(Change::between(&user.role, Some(role))
            .map(|role| UserEvent::RoleChanged(UserRoleChanged { role, changed_at: now }))
            .into_iter()
            .collect()),
        (Some(user), UserCommand::ChangeStatus { status }) => Ok(Change::between(&user.status, Some(status))
            .map(|status| UserEvent::StatusChanged(UserStatusChanged { status, changed_at: now }))
            .into_iter()
            .collect()),
        (Some(user), UserCommand::SetPermissions { permissions }) => {
            let mut v = Validator::default();
            check_document(&mut v, "permissions", &permissions);
            v.finish()?;
            Ok(Change::between(&user.permissions, Some(permissions))
                .map(|permissions| UserEvent::PermissionsSet(UserPermissionsSet { permissions, set_at: now }))
                .into_iter()
                .collect())
        }
        (Some(user), UserCommand::SetPreferences { preferences }) => {
            let mut v = Validator::default();
            check_document(&mut v, "preferences", &preferences);
            v.finish()?;
            Ok(Change::between(&user.preferences, Some(preferences))
                .map(|preferences| UserEvent::PreferencesSet(UserPreferencesSet { preferences, set_at: now }))
                .into_iter()
                .collect())
        }
        (Some(user), UserCommand::RecordLogin) => {
            if user.status != UserStatus::Active {
                return Err(DomainError::Conflict(format!("the user is {}", user.status.as_str())));
            }
            Ok(vec![UserEvent::LoggedIn(UserLoggedIn { logged_in_at: now })])
        }
        (Some(_), UserCommand::ChangePassword { reset }) => {
            Ok(vec![UserEvent::PasswordChanged(UserPasswordChanged { reset, changed_at: now })])
        }
        (Some(_), UserCommand::ReadNotifications { mut ids, all }) => {
            let mut v = Validator::default();
            v.check(ids.len() <= MAX_NOTIFICATIONS_READ, "ids", "at most 100 notifications at once");
            // A notification's id is the id of the event it is about: a v7 UUID.
            v.check(
                ids.iter().all(|id| id.get_version_num() == 7),
                "ids",
                "must be notification ids (as GET /v1/notifications lists them)",
            );
            v.check(all || !ids.is_empty(), "ids", "name a notification, or read all");
            v.finish()?;
            ids.sort_unstable();
            ids.dedup();
            let all_before = all.then_some(now);
            Ok(vec![UserEvent::NotificationsRead(UserNotificationsRead { ids, all_before, read_at: now })])
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::testing::given;

    fn create() -> UserCommand {
        UserCommand::Create(CreateUser {
            username: " Jane.Doe ".into(),
            email: "Jane@Example.org".into(),
            first_name: Some("Jane".into()),
            last_name: None,
            role: UserRole::Agent,
        })
    }

    #[test]
    fn creating_normalises_username_and_email() {
        let events = decide(None, create(), &Context::at(Utc::now())).unwrap();
        let user = given(&events).state().unwrap();
        assert_eq!(user.username, "jane.doe");
        assert_eq!(user.email, "jane@example.org");
        assert_eq!(user.status, UserStatus::Active);
    }

    #[test]
    fn creating_refuses_bad_fields() {
        let cmd = UserCommand::Create(CreateUser {
            username: "x".into(),
            email: "not-an-email".into(),
            first_name: None,
            last_name: None,
            role: UserRole::Agent,
        });
        let Err(DomainError::Invalid(errors)) = decide(None, cmd, &Context::at(Utc::now())) else {
            panic!("expected invalid")
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["username", "email"]);
    }

    #[test]
    fn role_and_status_changes_record_old_values_and_skip_no_ops() {
        let state = given(&decide(None, create(), &Context::at(Utc::now())).unwrap()).state();
        let events =
            decide(state.as_ref(), UserCommand::ChangeRole { role: UserRole::Supervisor }, &Context::at(Utc::now()))
                .unwrap();
        let [UserEvent::RoleChanged(e)] = events.as_slice() else { panic!("expected a role change") };
        assert_eq!(e.role, Change { old: UserRole::Agent, new: UserRole::Supervisor });
        let same =
            decide(state.as_ref(), UserCommand::ChangeStatus { status: UserStatus::Active }, &Context::at(Utc::now()))
                .unwrap();
        assert_eq!(same, vec![]);
    }

    #[test]
    fn locked_users_cannot_log_in() {
        let mut events = decide(None, create(), &Context::at(Utc::now())).unwrap();
        let state = given(&events).state();
        events.extend(
            decide(state.as_ref(), UserCommand::ChangeStatus { status: UserStatus::Locked }, &Context::at(Utc::now()))
                .unwrap(),
        );
        let state = given(&events).state();
        assert!(matches!(
            decide(state.as_ref(), UserCommand::RecordLogin, &Context::at(Utc::now())),
            Err(DomainError::Conflict(_))
        ));
    }

    #[test]
    fn profile_updates_carry_only_changes() {
        let state = given(&decide(None, create(), &Context::at(Utc::now())).unwrap()).state();
        let cmd = UserCommand::UpdateProfile {
            first_name: Some(Some("Jane".into())),
            last_name: Some(Some("Doe".into())),
            email: None,
        };
        let events = decide(state.as_ref(), cmd, &Context::at(Utc::now())).unwrap();
        let [UserEvent::ProfileUpdated(e)] = events.as_slice() else { panic!("expected a profile update") };
        assert_eq!(e.first_name, None);
        assert_eq!(e.last_name, Some(Change { old: None, new: Some("Doe".into()) }));
    }

    #[test]
    fn events_round_trip_through_their_stored_form() {
        let event = decide(None, create(), &Context::at(Utc::now())).unwrap().remove(0);
        assert_eq!(UserEvent::decode(event.event_type(), 2, event.payload()).unwrap(), event);
        assert!(UserEvent::decode("UserCreated", 3, event.payload()).is_err());
    }

    #[test]
    fn a_v1_user_created_is_read_without_its_password_hash() {
        let event = decide(None, create(), &Context::at(Utc::now())).unwrap().remove(0);
        let mut v1 = event.payload();
        v1["password_hash"] = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into();
        assert!(UserEvent::decode("UserCreated", 2, v1.clone()).is_err(), "v2 has no such field");
        let read = UserEvent::decode("UserCreated", 1, v1).unwrap();
        assert_eq!(read, event);
        assert!(!read.payload().to_string().contains("argon2"));
    }

    #[test]
    fn a_password_change_says_only_that_it_happened() {
        let state = given(&decide(None, create(), &Context::at(Utc::now())).unwrap()).state();
        let events =
            decide(state.as_ref(), UserCommand::ChangePassword { reset: true }, &Context::at(Utc::now())).unwrap();
        let [UserEvent::PasswordChanged(e)] = events.as_slice() else { panic!("expected a password change") };
        assert!(e.reset);
        assert_eq!(events[0].payload().as_object().unwrap().len(), 2);
    }

    #[test]
    fn permissions_and_preferences_are_documents_with_old_values() {
        let state = given(&decide(None, create(), &Context::at(Utc::now())).unwrap()).state();
        let permissions: Document = serde_json::from_value(serde_json::json!({ "users": ["manage"] })).unwrap();
        let events = decide(
            state.as_ref(),
            UserCommand::SetPermissions { permissions: permissions.clone() },
            &Context::at(Utc::now()),
        )
        .unwrap();
        let [UserEvent::PermissionsSet(e)] = events.as_slice() else { panic!("expected permissions") };
        assert_eq!(e.permissions.old, Document::new());
        let prefs: Document = serde_json::from_value(serde_json::json!({ "lang": "sw" })).unwrap();
        assert_eq!(
            decide(state.as_ref(), UserCommand::SetPreferences { preferences: prefs }, &Context::at(Utc::now()))
                .unwrap()
                .len(),
            1
        );
        let huge: Document = serde_json::from_value(serde_json::json!({ "x": "a".repeat(20_000) })).unwrap();
        assert!(matches!(
            decide(state.as_ref(), UserCommand::SetPreferences { preferences: huge }, &Context::at(Utc::now())),
            Err(DomainError::Invalid(_))
        ));
        assert!(decide(state.as_ref(), UserCommand::RecordLogin, &Context::at(Utc::now())).is_ok());
        assert_eq!(
            decide(None, UserCommand::RecordLogin, &Context::at(Utc::now())),
            Err(DomainError::NotFound("user"))
        );
    }
}
