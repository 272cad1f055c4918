//! Channel commands (tenant administrators) and recording interactions on a case
//! (anyone who may update cases), through an active channel.

use chrono::{DateTime, Utc};
use events::channel::{self, normalise_name, ChannelCommand, ChannelType, Configuration, Credentials};
use events::interaction::{self, Direction, RecordInteraction, Reference};
use runtime::auth::Permission;
use runtime::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use super::endpoint::{Endpoint, Facts, Route, Target};
use super::AppState;
use crate::journal::{fingerprint, Lookup};

pub fn router() -> OpenApiRouter<AppState> {
    super::endpoint::router!["channels": CreateBody, UpdateBody, Deactivate, Activate, InteractionBody]
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ChannelCreateBody)]
struct CreateBody {
    name: String,
    #[serde(rename = "type")]
    channel_type: ChannelType,
    #[serde(default)]
    #[schema(value_type = Object)]
    configuration: Configuration,
    /// When the request was read: what its credentials are stamped with.
    #[serde(skip, default = "Utc::now")]
    read_at: DateTime<Utc>,
}

impl Endpoint for CreateBody {
    type Stream = channel::Channel;
    type Path = ();
    const ROUTE: Route =
        Route::post("/v1/channels", "channels_create").named("create_channel").holds(Permission::ChannelsManage);

    fn fingerprint(&self, _: &()) -> String {
        fingerprint_masked(<Self as Endpoint>::NAME, None, self)
    }

    /// Credentials that do not split (too many, names too long) reserve nothing: `command`
    /// refuses them with a 422 before the journal is reached.
    fn lookup(&self) -> Lookup {
        let credentials = split(&self.configuration, self.read_at).ok().map(|(_, credentials)| credentials);
        Lookup::Channel { name: Some(normalise_name(&self.name)), credentials }
    }

    async fn command(self, _: (), _: Facts<'_>) -> Result<ChannelCommand, ApiError> {
        let (configuration, credentials) = split(&self.configuration, self.read_at)?;
        Ok(ChannelCommand::Create {
            name: self.name,
            channel_type: self.channel_type,
            configuration,
            kept: credentials.kept,
        })
    }
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ChannelUpdateBody)]
struct UpdateBody {
    name: Option<String>,
    #[schema(value_type = Option<Object>)]
    configuration: Option<Configuration>,
    /// When the request was read: what its credentials are stamped with.
    #[serde(skip, default = "Utc::now")]
    read_at: DateTime<Utc>,
}

impl Endpoint for UpdateBody {
    type Stream = channel::Channel;
    type Path = Uuid;
    const ROUTE: Route =
        Route::patch("/v1/channels/{id}", "channels_update").named("update_channel").holds(Permission::ChannelsManage);

    fn fingerprint(&self, id: &Uuid) -> String {
        fingerprint_masked(<Self as Endpoint>::NAME, Some(*id), self)
    }

    fn lookup(&self) -> Lookup {
        let credentials = self.split().ok().flatten().map(|(_, credentials)| credentials);
        Lookup::Channel { name: self.name.as_deref().map(normalise_name), credentials }
    }

    async fn command(self, _: Uuid, _: Facts<'_>) -> Result<ChannelCommand, ApiError> {
        let (configuration, kept) = match self.split()? {
            Some((configuration, credentials)) => (Some(configuration), credentials.kept),
            None => (None, Vec::new()),
        };
        Ok(ChannelCommand::Update { name: self.name, configuration, kept })
    }
}

impl UpdateBody {
    /// The new configuration, if any, with its credentials taken out.
    fn split(&self) -> Result<Option<(Configuration, Credentials)>, ApiError> {
        self.configuration.as_ref().map(|c| split(c, self.read_at)).transpose()
    }
}

/// A configuration with its credentials taken out (422 if they are too many or their
/// names too long), as of when the request was read: every step that splits the same
/// body gets the same answer.
fn split(configuration: &Configuration, at: DateTime<Utc>) -> Result<(Configuration, Credentials), ApiError> {
    let mut configuration = configuration.clone();
    let credentials = channel::split_credentials(&mut configuration, at);
    channel::check_credentials(&credentials)?;
    Ok((configuration, credentials))
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct InteractionBody {
    channel_id: Uuid,
    direction: Direction,
    content: Option<String>,
    external_id: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    metadata: Map<String, Value>,
    occurred_at: Option<DateTime<Utc>>,
}

activation_endpoints!(
    channel::Channel,
    "channel",
    "/v1/channels/{id}/deactivate",
    "/v1/channels/{id}/activate",
    Permission::ChannelsManage,
    ChannelCommand::Deactivate,
    ChannelCommand::Activate
);

/// The request's fingerprint with its credential values masked: the idempotency record
/// holds no hash a weak secret could be guessed from.
fn fingerprint_masked(command: &str, stream: Option<Uuid>, body: &impl Serialize) -> String {
    let mut body = serde_json::to_value(body).unwrap_or_default();
    if let Some(configuration) = body.get_mut("configuration").and_then(Value::as_object_mut) {
        channel::mask_credentials(configuration);
    }
    fingerprint(command, stream, &body)
}

impl Endpoint for InteractionBody {
    type Stream = interaction::Interaction;
    type Path = Uuid;
    const ROUTE: Route = Route::post("/v1/cases/{id}/interactions", "channels_record_interaction").summary(
        "Records one contact on a case; the case must exist and not be closed, the channel\nmust be active (422 naming the field otherwise).",
    ).named("record_interaction").holds(Permission::CasesUpdate);

    fn target(&self, _: &Uuid) -> Result<Target, ApiError> {
        Ok(Target::unlisted())
    }

    async fn command(self, case_id: Uuid, facts: Facts<'_>) -> Result<RecordInteraction, ApiError> {
        facts.acting_user().await?;
        let (case, customer_id) = facts.case(case_id).await?;
        let channel = match facts.stream::<channel::Channel>(self.channel_id).await? {
            None => Reference::Missing,
            Some(c) if !c.active => Reference::Inactive,
            Some(_) => Reference::Usable,
        };
        let settings = facts.state.journal.tenant(facts.tenant()).await?.map(|t| t.settings);
        let days =
            settings.map(|s| events::tenant::retention_days(&s)).unwrap_or(events::tenant::DEFAULT_RETENTION_DAYS);
        Ok(RecordInteraction {
            kept_from: events::tenant::kept_from(Utc::now(), days),
            case_id,
            case,
            channel_id: self.channel_id,
            channel,
            direction: self.direction,
            content: self.content,
            external_id: self.external_id,
            tags: self.tags,
            metadata: self.metadata,
            occurred_at: self.occurred_at,
            customer_id,
        })
    }
}
