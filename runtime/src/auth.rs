//! Bearer tokens: HS256 JWTs carrying tenant, user and role. Every request is bound to
//! exactly one tenant by its token (guarantee 8).

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::{header, request::Parts};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::problem::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Agent,
    Supervisor,
    Admin,
    /// Operates the platform itself (provisions tenants); bound to no tenant's data.
    PlatformAdmin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Supervisor => "supervisor",
            Role::Admin => "admin",
            Role::PlatformAdmin => "platform_admin",
        }
    }
}

/// What a command needs the caller to be allowed to do. The string form is what a 403
/// names and what the seed's permission documents hold; never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    CasesCreate,
    CasesUpdate,
    CasesAssign,
    CasesChangeStatus,
    TenantSettings,
    TenantsManage,
    UsersManage,
    TeamsManage,
    CaseTypesManage,
    ChannelsManage,
    NotesModerate,
    TemplatesManage,
    WorkflowsManage,
    CustomFieldsManage,
    /// See internal notes written by others (everyone sees public notes and their own).
    NotesViewInternal,
    /// Read audit trails (who did what, when).
    AuditRead,
    /// Subscribe URLs to the tenant's events, and read their delivery log.
    WebhooksManage,
}

impl Permission {
    pub const ALL: [Permission; 17] = [
        Permission::CasesCreate,
        Permission::CasesUpdate,
        Permission::CasesAssign,
        Permission::CasesChangeStatus,
        Permission::TenantSettings,
        Permission::TenantsManage,
        Permission::UsersManage,
        Permission::TeamsManage,
        Permission::CaseTypesManage,
        Permission::ChannelsManage,
        Permission::NotesModerate,
        Permission::TemplatesManage,
        Permission::WorkflowsManage,
        Permission::CustomFieldsManage,
        Permission::NotesViewInternal,
        Permission::AuditRead,
        Permission::WebhooksManage,
    ];

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// A set of permissions as the bits `Caller::grants` holds.
    pub fn bits(permissions: &[Permission]) -> u32 {
        permissions.iter().fold(0, |bits, p| bits | p.bit())
    }

    fn bit(self) -> u32 {
        1 << Self::ALL.iter().position(|p| *p == self).unwrap_or(31)
    }

    /// Whether a tenant may grant it: everything but the platform's own operations
    /// (provisioning, suspending and reactivating tenants), which only the platform
    /// administrator role carries, and `webhooks:manage`, which only the administrator role
    /// carries: its holder sends every event's payload out and reads it in the delivery
    /// log, hidden custom fields and internal notes included.
    pub fn tenant_scoped(self) -> bool {
        !matches!(self, Permission::TenantsManage | Permission::WebhooksManage)
    }

    /// The permissions a user's permission document grants (the seed's shape:
    /// `{"cases": ["create", "update"], "users": ["manage"]}`). Unknown names, and any
    /// permission that is not tenant-scoped (an old document may hold one), grant nothing.
    pub fn from_document(document: &serde_json::Map<String, serde_json::Value>) -> Vec<Self> {
        Self::names(document).iter().filter_map(|name| Self::parse(name)).filter(|p| p.tenant_scoped()).collect()
    }

    /// Reads a permission document to be stored: every entry must name a permission
    /// (`resource: [action, ...]`); `Err` lists the names that do not.
    pub fn parse_document(document: &serde_json::Map<String, serde_json::Value>) -> Result<Vec<Self>, Vec<String>> {
        let mut unknown: Vec<String> = document
            .iter()
            .filter(|(_, actions)| !actions.as_array().is_some_and(|a| a.iter().all(|a| a.is_string())))
            .map(|(resource, _)| format!("{resource} (must be a list of action names)"))
            .collect();
        let names = Self::names(document);
        unknown.extend(names.iter().filter(|name| Self::parse(name).is_none()).cloned());
        if unknown.is_empty() {
            Ok(names.iter().filter_map(|name| Self::parse(name)).collect())
        } else {
            Err(unknown)
        }
    }

    /// `resource:action` for every action of a permission document.
    fn names(document: &serde_json::Map<String, serde_json::Value>) -> Vec<String> {
        document
            .iter()
            .flat_map(|(resource, actions)| {
                actions
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(move |a| a.as_str().map(|a| format!("{resource}:{a}")))
            })
            .collect()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::CasesCreate => "cases:create",
            Permission::CasesUpdate => "cases:update",
            Permission::CasesAssign => "cases:assign",
            Permission::CasesChangeStatus => "cases:change_status",
            Permission::TenantSettings => "tenant:settings",
            Permission::TenantsManage => "tenants:manage",
            Permission::UsersManage => "users:manage",
            Permission::TeamsManage => "teams:manage",
            Permission::CaseTypesManage => "case_types:manage",
            Permission::ChannelsManage => "channels:manage",
            Permission::NotesModerate => "notes:moderate",
            Permission::TemplatesManage => "templates:manage",
            Permission::WorkflowsManage => "workflows:manage",
            Permission::CustomFieldsManage => "custom_fields:manage",
            Permission::NotesViewInternal => "notes:view_internal",
            Permission::AuditRead => "audit:read",
            Permission::WebhooksManage => "webhooks:manage",
        }
    }
}

impl Role {
    /// The permissions each role carries. Platform administrators run the platform and
    /// touch no tenant's cases; tenant administrators manage their own tenant.
    pub fn grants(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::PlatformAdmin => matches!(permission, TenantsManage | TenantSettings),
            Role::Admin => !matches!(permission, TenantsManage),
            Role::Supervisor => {
                matches!(
                    permission,
                    CasesCreate
                        | CasesUpdate
                        | CasesAssign
                        | CasesChangeStatus
                        | TeamsManage
                        | NotesModerate
                        | NotesViewInternal
                        | TemplatesManage
                        | AuditRead
                )
            }
            Role::Agent => matches!(permission, CasesCreate | CasesUpdate | CasesAssign | CasesChangeStatus),
        }
    }
}

/// Who issues Murima's tokens, and for whom: checked on every token.
pub const ISSUER: &str = "murima";
pub const AUDIENCE: &str = "murima-api";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: Uuid,
    pub tenant_id: Uuid,
    pub role: Role,
    pub exp: i64,
    /// An operator's token, minted with the secret (`command-api token`): its role is
    /// taken as it stands. A login token (not `op`) only names its user and session: both
    /// APIs take the user's role, grants and status from live state on every request.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub op: bool,
    /// A login token's session (`runtime::session`): the token is good while it lives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<Uuid>,
}

/// The signing secret, shared through the router state.
#[derive(Clone)]
pub struct JwtKeys(Arc<(EncodingKey, DecodingKey)>);

impl JwtKeys {
    pub fn new(secret: &str) -> Self {
        Self(Arc::new((EncodingKey::from_secret(secret.as_bytes()), DecodingKey::from_secret(secret.as_bytes()))))
    }

    /// An operator's token (see `Claims::op`).
    pub fn issue(&self, user: Uuid, tenant: Uuid, role: Role, ttl: chrono::Duration) -> String {
        self.sign_for(user, tenant, role, ttl, None)
    }

    /// A user's login token, good while its session lives; the role it names is
    /// informative only (rights are read from live state on every request).
    pub fn issue_login(&self, user: Uuid, tenant: Uuid, role: Role, session: Uuid, ttl: chrono::Duration) -> String {
        self.sign_for(user, tenant, role, ttl, Some(session))
    }

    /// A token of a login session, or an operator's without one.
    fn sign_for(&self, user: Uuid, tenant: Uuid, role: Role, ttl: chrono::Duration, session: Option<Uuid>) -> String {
        self.sign(Claims {
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            sub: user,
            tenant_id: tenant,
            role,
            exp: expiry(ttl),
            op: session.is_none(),
            sid: session,
        })
    }

    fn sign(&self, claims: Claims) -> String {
        self.sign_claims(&claims)
    }

    /// Any claims, signed with the secret (position tokens use it too).
    pub fn sign_claims<T: Serialize>(&self, claims: &T) -> String {
        // panic-free: HMAC signing of serialisable claims cannot fail
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.0 .0).expect("HS256 signing cannot fail")
    }

    /// Claims this secret signed for `audience`, without an expiry.
    pub fn verify_unexpiring<T: serde::de::DeserializeOwned>(&self, token: &str, audience: &str) -> Option<T> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["iss", "aud"]);
        validation.validate_exp = false;
        jsonwebtoken::decode::<T>(token, &self.0 .1, &validation).ok().map(|data| data.claims)
    }

    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        jsonwebtoken::decode::<Claims>(token, &self.0 .1, &validation)
            .map(|data| data.claims)
            .map_err(|e| ApiError::Unauthorized(format!("the bearer token is not valid: {e}")))
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub user_id: Uuid,
    pub tenant_id: Uuid,
    pub role: Role,
    /// Extra permissions from the token, as bits of `Permission::ALL`.
    pub grants: u32,
    /// An operator's token (`Claims::op`); otherwise a user's login token.
    pub operator: bool,
}

impl Caller {
    /// A caller acting inside a tenant (platform tokens carry no tenant data rights).
    pub fn tenant_member(self) -> Result<Self, ApiError> {
        if self.role == Role::PlatformAdmin {
            return Err(ApiError::Forbidden(
                "platform tokens cannot act on a tenant's cases; use a tenant token".into(),
            ));
        }
        Ok(self)
    }

    /// The caller, if their role or their own grants include `permission`; otherwise a
    /// 403 naming it.
    pub fn require(self, permission: Permission) -> Result<Self, ApiError> {
        let granted =
            self.role != Role::PlatformAdmin && permission.tenant_scoped() && self.grants & permission.bit() != 0;
        if self.role.grants(permission) || granted {
            Ok(self)
        } else {
            Err(ApiError::Forbidden(format!(
                "the role {} lacks the permission {}",
                self.role.as_str(),
                permission.as_str()
            )))
        }
    }

    pub fn platform_admin(self) -> Result<Self, ApiError> {
        if self.role != Role::PlatformAdmin {
            return Err(ApiError::Forbidden("only platform administrators may do this".into()));
        }
        Ok(self)
    }
}

/// A verified bearer token: the caller as it names them, and its session (None for an
/// operator's token). Rights still have to be read from live state (`Authority`).
#[derive(Debug, Clone, Copy)]
pub struct Token {
    pub caller: Caller,
    pub session: Option<Uuid>,
}

impl<S: Send + Sync> FromRequestParts<S> for Token
where
    JwtKeys: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::Unauthorized("send an Authorization: Bearer <token> header".into()))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| ApiError::Unauthorized("the Authorization header must be 'Bearer <token>'".into()))?;
        let claims = JwtKeys::from_ref(state).verify(token.trim())?;
        if !claims.op && (claims.sid.is_none() || claims.role == Role::PlatformAdmin) {
            return Err(ApiError::Unauthorized("this token belongs to no session; log in again".into()));
        }
        Ok(Token {
            caller: Caller {
                user_id: claims.sub,
                tenant_id: claims.tenant_id,
                role: claims.role,
                grants: 0,
                operator: claims.op,
            },
            session: claims.sid,
        })
    }
}

/// How a service turns a verified token into a caller with the rights its user holds
/// now: the session alive, the tenant active, role, grants and status from live state.
pub trait Authority: Send + Sync {
    fn authorise(&self, token: Token) -> impl std::future::Future<Output = Result<Caller, ApiError>> + Send;
}

/// The caller of a request, authorised on live state by the service's `Authority`.
impl<S: Authority> FromRequestParts<S> for Caller
where
    JwtKeys: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = Token::from_request_parts(parts, state).await?;
        state.authorise(token).await
    }
}

/// When a token issued now for `ttl` expires (the latest date there is, for an absurd
/// `ttl`).
fn expiry(ttl: chrono::Duration) -> i64 {
    chrono::Utc::now().checked_add_signed(ttl).unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC).timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn no_tenant_can_grant_a_platform_permission() {
        let doc = document(serde_json::json!({ "tenants": ["manage"], "users": ["manage"] }));
        assert_eq!(Permission::from_document(&doc), vec![Permission::UsersManage]);
        let admin = Caller {
            user_id: Uuid::nil(),
            tenant_id: Uuid::nil(),
            role: Role::Admin,
            grants: u32::MAX,
            operator: false,
        };
        assert!(admin.require(Permission::TenantsManage).is_err(), "not even with the bit in its token");
        assert!(admin.require(Permission::UsersManage).is_ok());
    }

    #[test]
    fn a_document_to_store_names_only_permissions() {
        let ok = document(serde_json::json!({ "cases": ["create"], "notes": ["view_internal"] }));
        assert_eq!(Permission::parse_document(&ok), Ok(vec![Permission::CasesCreate, Permission::NotesViewInternal]));
        let bad = document(serde_json::json!({ "cases": ["fly"], "users": "manage", "x": [1] }));
        assert_eq!(
            Permission::parse_document(&bad),
            Err(vec![
                "users (must be a list of action names)".to_owned(),
                "x (must be a list of action names)".to_owned(),
                "cases:fly".to_owned()
            ])
        );
    }
}
