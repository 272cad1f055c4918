//! Webhook commands (`webhooks:manage`, tenant administrators): subscribe a URL to event
//! types with a signing secret, change it, delete it. The secret goes to
//! `eventstore.webhook_secrets` with the command, never into an event or an answer.
//!
//! The URL's host is resolved here: one that reaches a private, loopback or other internal
//! address is a 422 unless the operator allows them (`MURIMA_WEBHOOK_ALLOW_PRIVATE`); the
//! projector checks again at each delivery.

use std::time::Duration;

use events::webhook::{self, Destination, WebhookCommand};
use events::{DomainError, FieldError};
use runtime::auth::Permission;
use runtime::webhook::secret_digest;
use runtime::ApiError;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use super::endpoint::{self, Body, Endpoint, Facts, Route, Target};
use super::AppState;
use crate::journal::{fingerprint, Lookup};

/// How long a URL's host may take to resolve.
const RESOLVE_WITHIN: Duration = Duration::from_secs(3);

pub fn router() -> OpenApiRouter<AppState> {
    super::endpoint::router!["webhooks": CreateBody, UpdateBody, RemoveBody]
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

impl Endpoint for CreateBody {
    type Stream = webhook::Webhook;
    type Path = ();
    const ROUTE: Route =
        Route::post("/v1/webhooks", "webhooks_create").named("create_webhook").holds(Permission::WebhooksManage);

    fn check(&self) -> Result<(), ApiError> {
        check_secret(&self.secret)
    }

    /// The secret's digest, never the secret, goes into the stored fingerprint.
    fn fingerprint(&self, _: &()) -> String {
        let facts = (&self.url, &self.event_types, &self.description, self.id, secret_digest(&self.secret));
        fingerprint(<Self as Endpoint>::NAME, None, &facts)
    }

    fn target(&self, _: &()) -> Result<Target, ApiError> {
        Target::chosen("/v1/webhooks", self.id)
    }

    fn lookup(&self) -> Lookup {
        Lookup::WebhookSecret { secret: Some(self.secret.clone()) }
    }

    async fn command(self, _: (), facts: Facts<'_>) -> Result<WebhookCommand, ApiError> {
        let destination = destination(facts.state, &self.url).await;
        let all = facts.state.journal.all::<webhook::Webhook>(facts.tenant()).await?;
        Ok(WebhookCommand::Create {
            url: self.url,
            event_types: self.event_types,
            description: self.description,
            destination,
            existing: all.iter().filter(|w| !w.deleted).count(),
        })
    }
}

impl Endpoint for UpdateBody {
    type Stream = webhook::Webhook;
    type Path = Uuid;
    const ROUTE: Route =
        Route::patch("/v1/webhooks/{id}", "webhooks_update").named("update_webhook").holds(Permission::WebhooksManage);

    fn check(&self) -> Result<(), ApiError> {
        self.secret.as_deref().map_or(Ok(()), check_secret)
    }

    /// The secret's digest, never the secret, goes into the stored fingerprint.
    fn fingerprint(&self, id: &Uuid) -> String {
        let secret = self.secret.as_deref().map(secret_digest);
        let facts = (&self.url, &self.event_types, &self.description, self.active, secret);
        fingerprint(<Self as Endpoint>::NAME, Some(*id), &facts)
    }

    fn lookup(&self) -> Lookup {
        match &self.secret {
            Some(secret) => Lookup::WebhookSecret { secret: Some(secret.clone()) },
            None => Lookup::Nothing,
        }
    }

    async fn command(self, _: Uuid, facts: Facts<'_>) -> Result<WebhookCommand, ApiError> {
        let destination = match &self.url {
            Some(url) => Some(destination(facts.state, url).await),
            None => None,
        };
        Ok(WebhookCommand::Update {
            url: self.url,
            event_types: self.event_types,
            description: self.description,
            active: self.active,
            destination,
        })
    }
}

endpoint::no_fields!(RemoveBody);

impl Endpoint for RemoveBody {
    type Stream = webhook::Webhook;
    type Path = Uuid;
    const ROUTE: Route = Route::delete("/v1/webhooks/{id}", "webhooks_remove")
        .summary(
            "Deletes the subscription and its secret: nothing more is queued for it, and what is\nqueued is not sent.",
        )
        .named("delete_webhook")
        .holds(Permission::WebhooksManage);
    const BODY: Body = Body::Ignored;

    fn lookup(&self) -> Lookup {
        Lookup::WebhookSecret { secret: None }
    }

    async fn command(self, _: Uuid, _: Facts<'_>) -> Result<WebhookCommand, ApiError> {
        Ok(WebhookCommand::Delete)
    }
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
