//! Webhook commands (`webhooks:manage`, tenant administrators): subscribe a URL to event
//! types with a signing secret, change it, delete it. The secret goes to
//! `eventstore.webhook_secrets` with the command, never into an event or an answer.
//!
//! The URL's host is resolved here: one that reaches a private, loopback or other internal
//! address is a 422 unless the operator allows them (`MURIMA_WEBHOOK_ALLOW_PRIVATE`); the
//! projector checks again at each delivery.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use events::webhook::{self, Destination, WebhookCommand};
use events::{DomainError, FieldError};
use runtime::auth::Permission;
use runtime::extract::ApiPath;
use runtime::webhook::secret_digest;
use runtime::ApiError;
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{AppState, CommandReply};
use crate::context::CommandContext;
use crate::journal::{fingerprint, Lookup};
use crate::versioned::{CommandSchema, Versioned};

/// How long a URL's host may take to resolve.
const RESOLVE_WITHIN: Duration = Duration::from_secs(3);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create)).routes(routes!(update, remove))
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WebhookCreateBody)]
struct CreateBody {
    /// An http(s) URL of a public host.
    url: String,
    /// Event types to deliver (`CaseOpened`, ...), or `["*"]` for every event.
    event_types: Vec<String>,
    /// 16-256 characters: each delivery carries `Murima-Signature: t=<unix>,v1=<hex
    /// HMAC-SHA256 of "<t>.<body>">` made with it. Never shown again.
    secret: String,
    description: Option<String>,
    /// Optional: lets an administrator choose the id (a second create with it is a 409).
    id: Option<Uuid>,
}

impl CommandSchema for CreateBody {
    const NAME: &'static str = "create_webhook";
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WebhookUpdateBody)]
struct UpdateBody {
    url: Option<String>,
    event_types: Option<Vec<String>>,
    /// A new signing secret (16-256 characters), used from the next delivery on.
    secret: Option<String>,
    #[serde(default, deserialize_with = "crate::versioned::present")]
    description: Option<Option<String>>,
    /// false: no deliveries (events meanwhile are not queued); true: again.
    active: Option<bool>,
}

impl CommandSchema for UpdateBody {
    const NAME: &'static str = "update_webhook";
}

#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", operation_id = "webhooks_create", request_body = CreateBody, responses(runtime::openapi::CommandAnswered))]
async fn create(
    State(state): State<AppState>,
    ctx: CommandContext,
    Versioned { body, .. }: Versioned<CreateBody>,
) -> Result<CommandReply, ApiError> {
    ctx.caller.require(Permission::WebhooksManage)?;
    check_secret(&body.secret)?;
    // The secret's digest, never the secret, goes into the stored fingerprint.
    let facts = (&body.url, &body.event_types, &body.description, body.id, secret_digest(&body.secret));
    let hash = fingerprint(CreateBody::NAME, None, &facts);
    let id = super::chosen_id(body.id)?;
    let destination = destination(&state, &body.url).await;
    let all = state.journal.all::<webhook::Webhook>(ctx.caller.tenant_id).await?;
    let cmd = WebhookCommand::Create {
        url: body.url,
        event_types: body.event_types,
        description: body.description,
        destination,
        existing: all.iter().filter(|w| !w.deleted).count(),
    };
    let lookup = Lookup::WebhookSecret { secret: Some(body.secret) };
    Ok(super::decide_in_tenant::<webhook::Webhook>(&state, &ctx, id, hash, lookup, StatusCode::CREATED, cmd)
        .await?
        .at(format!("/v1/webhooks/{id}")))
}

#[utoipa::path(patch, path = "/v1/webhooks/{id}", tag = "webhooks", operation_id = "webhooks_update", params(("id" = Uuid, Path)), request_body = UpdateBody, responses(runtime::openapi::CommandAnswered))]
async fn update(
    State(state): State<AppState>,
    ctx: CommandContext,
    ApiPath(id): ApiPath<Uuid>,
    Versioned { body, .. }: Versioned<UpdateBody>,
) -> Result<CommandReply, ApiError> {
    ctx.caller.require(Permission::WebhooksManage)?;
    if let Some(secret) = &body.secret {
        check_secret(secret)?;
    }
    let secret = body.secret.as_deref().map(secret_digest);
    let facts = (&body.url, &body.event_types, &body.description, body.active, secret);
    let hash = fingerprint(UpdateBody::NAME, Some(id), &facts);
    let destination = match &body.url {
        Some(url) => Some(destination(&state, url).await),
        None => None,
    };
    let lookup = match body.secret {
        Some(secret) => Lookup::WebhookSecret { secret: Some(secret) },
        None => Lookup::Nothing,
    };
    let cmd = WebhookCommand::Update {
        url: body.url,
        event_types: body.event_types,
        description: body.description,
        active: body.active,
        destination,
    };
    super::decide_in_tenant::<webhook::Webhook>(&state, &ctx, id, hash, lookup, StatusCode::OK, cmd).await
}

/// Deletes the subscription and its secret: nothing more is queued for it, and what is
/// queued is not sent.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks", operation_id = "webhooks_remove", params(("id" = Uuid, Path)), responses(runtime::openapi::CommandAnswered))]
async fn remove(
    State(state): State<AppState>,
    ctx: CommandContext,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<CommandReply, ApiError> {
    ctx.caller.require(Permission::WebhooksManage)?;
    let hash = fingerprint("delete_webhook", Some(id), &());
    let lookup = Lookup::WebhookSecret { secret: None };
    super::decide_in_tenant::<webhook::Webhook>(&state, &ctx, id, hash, lookup, StatusCode::OK, WebhookCommand::Delete)
        .await
}

fn check_secret(secret: &str) -> Result<(), ApiError> {
    let fits = (webhook::SECRET_MIN..=webhook::SECRET_MAX).contains(&secret.chars().count());
    if fits && !secret.chars().any(char::is_control) {
        return Ok(());
    }
    Err(DomainError::Invalid(vec![FieldError::new(
        "secret",
        format!(
            "must be {}-{} characters without control characters (e.g. 32 random bytes in hex)",
            webhook::SECRET_MIN,
            webhook::SECRET_MAX
        ),
    )])
    .into())
}

/// Where the URL's host resolves to, as `decide` needs it (a URL that does not parse is
/// `decide`'s to refuse: any destination does).
async fn destination(state: &AppState, url: &str) -> Destination {
    let Ok(url) = webhook::parse_url(url) else { return Destination::Allowed };
    let Some(host) = url.host_str().map(|h| h.trim_matches(['[', ']']).to_owned()) else {
        return Destination::Allowed;
    };
    let port = url.port_or_known_default().unwrap_or(443);
    let resolved = tokio::time::timeout(RESOLVE_WITHIN, tokio::net::lookup_host((host.as_str(), port))).await;
    let addresses: Vec<std::net::IpAddr> = match resolved {
        Ok(Ok(addresses)) => addresses.map(|a| a.ip()).collect(),
        Ok(Err(e)) => return Destination::Unresolved(e.to_string()),
        Err(_) => return Destination::Unresolved(format!("no answer within {} s", RESOLVE_WITHIN.as_secs())),
    };
    match addresses.iter().find(|ip| !state.webhooks.allows(**ip)) {
        Some(ip) => Destination::Private(*ip),
        None if addresses.is_empty() => Destination::Unresolved("no address".into()),
        None => Destination::Allowed,
    }
}
