//! Channel commands (tenant administrators) and recording interactions on a case
//! (anyone who may update cases), through an active channel.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use events::channel::{self, normalise_name, ChannelCommand, ChannelType, Configuration};
use events::interaction::{self, Direction, RecordInteraction, Reference};
use runtime::auth::Permission;
use runtime::extract::ApiPath;
use runtime::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::endpoint::{Access, Endpoint, Facts, Route, Target};
use super::AppState;
use super::CommandReply;
use crate::context::CommandContext;
use crate::journal::{fingerprint, Lookup};
use crate::versioned::{CommandSchema, Versioned};

pub fn router() -> OpenApiRouter<AppState> {
    super::endpoint::router![Deactivate, Activate, InteractionBody].routes(routes!(create)).routes(routes!(update))
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
}

impl CommandSchema for CreateBody {
    const NAME: &'static str = "create_channel";
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ChannelUpdateBody)]
struct UpdateBody {
    name: Option<String>,
    #[schema(value_type = Option<Object>)]
    configuration: Option<Configuration>,
}

impl CommandSchema for UpdateBody {
    const NAME: &'static str = "update_channel";
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

#[utoipa::path(post, path = "/v1/channels", tag = "channels", operation_id = "channels_create", request_body = CreateBody, responses(runtime::openapi::CommandAnswered))]
async fn create(
    State(state): State<AppState>,
    ctx: CommandContext,
    Versioned { body, .. }: Versioned<CreateBody>,
) -> Result<CommandReply, ApiError> {
    ctx.caller.require(Permission::ChannelsManage)?;
    let hash = fingerprint_masked(CreateBody::NAME, None, &body);
    let id = Uuid::now_v7();
    let mut configuration = body.configuration;
    let credentials = channel::split_credentials(&mut configuration, Utc::now());
    channel::check_credentials(&credentials)?;
    let kept = credentials.kept.clone();
    let lookup = Lookup::Channel { name: Some(normalise_name(&body.name)), credentials: Some(credentials) };
    let cmd = ChannelCommand::Create { name: body.name, channel_type: body.channel_type, configuration, kept };
    Ok(super::decide_in_tenant::<channel::Channel>(&state, &ctx, id, hash, lookup, StatusCode::CREATED, cmd)
        .await?
        .at(format!("/v1/channels/{id}")))
}

#[utoipa::path(patch, path = "/v1/channels/{id}", tag = "channels", operation_id = "channels_update", params(("id" = Uuid, Path)), request_body = UpdateBody, responses(runtime::openapi::CommandAnswered))]
async fn update(
    State(state): State<AppState>,
    ctx: CommandContext,
    ApiPath(id): ApiPath<Uuid>,
    Versioned { body, .. }: Versioned<UpdateBody>,
) -> Result<CommandReply, ApiError> {
    ctx.caller.require(Permission::ChannelsManage)?;
    let hash = fingerprint_masked(UpdateBody::NAME, Some(id), &body);
    let mut configuration = body.configuration;
    let credentials = configuration.as_mut().map(|c| channel::split_credentials(c, Utc::now()));
    if let Some(credentials) = &credentials {
        channel::check_credentials(credentials)?;
    }
    let kept = credentials.as_ref().map(|c| c.kept.clone()).unwrap_or_default();
    let lookup = Lookup::Channel { name: body.name.as_deref().map(normalise_name), credentials };
    let cmd = ChannelCommand::Update { name: body.name, configuration, kept };
    super::decide_in_tenant::<channel::Channel>(&state, &ctx, id, hash, lookup, StatusCode::OK, cmd).await
}

activation_endpoints!(
    channel::Channel,
    "channel",
    "channels",
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
    const NAME: &'static str = "record_interaction";
    const ROUTE: Route = Route::post("/v1/cases/{id}/interactions", "channels", "channels_record_interaction").summary(
        "Records one contact on a case; the case must exist and not be closed, the channel\nmust be active (422 naming the field otherwise).",
    );
    const ACCESS: Access = Access::Holds(Permission::CasesUpdate);

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
