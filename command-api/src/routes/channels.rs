//! Channel commands (tenant administrators) and recording interactions on a case
//! (anyone who may update cases), through an active channel.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use events::case::Status;
use events::channel::{self, normalise_name, ChannelCommand, ChannelType, Configuration};
use events::interaction::{self, Direction, RecordInteraction, Reference};
use runtime::auth::Permission;
use runtime::extract::ApiPath;
use runtime::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::AppState;
use super::CommandReply;
use crate::context::CommandContext;
use crate::journal::{fingerprint, Command, Lookup};
use crate::versioned::{CommandSchema, Versioned};
use events::case;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(update))
        .routes(routes!(deactivate))
        .routes(routes!(activate))
        .routes(routes!(record_interaction))
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

impl CommandSchema for InteractionBody {
    const NAME: &'static str = "record_interaction";
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

activation_handlers!(
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

/// Records one contact on a case; the case must exist and not be closed, the channel
/// must be active (422 naming the field otherwise).
#[utoipa::path(post, path = "/v1/cases/{id}/interactions", tag = "channels", operation_id = "channels_record_interaction", params(("id" = Uuid, Path)), request_body = InteractionBody, responses(runtime::openapi::CommandAnswered))]
async fn record_interaction(
    State(state): State<AppState>,
    ctx: CommandContext,
    ApiPath(case_id): ApiPath<Uuid>,
    Versioned { body, .. }: Versioned<InteractionBody>,
) -> Result<CommandReply, ApiError> {
    let caller = ctx.caller.require(Permission::CasesUpdate)?;
    super::ensure_active_tenant(&state, caller.tenant_id).await?;
    super::acting_user(&state, &ctx.caller).await?;
    let hash = fingerprint(InteractionBody::NAME, Some(case_id), &body);
    let found = state.journal.state::<case::Case>(caller.tenant_id, case_id).await?;
    let customer_id = found.as_ref().and_then(|c| c.customer_id);
    let case = match found {
        None => Reference::Missing,
        Some(c) if c.status == Status::Closed => Reference::Inactive,
        Some(_) => Reference::Usable,
    };
    let channel = match state.journal.state::<channel::Channel>(caller.tenant_id, body.channel_id).await? {
        None => Reference::Missing,
        Some(c) if !c.active => Reference::Inactive,
        Some(_) => Reference::Usable,
    };
    let days = state.journal.tenant(caller.tenant_id).await?.map(|t| events::tenant::retention_days(&t.settings));
    let kept_from = events::tenant::kept_from(Utc::now(), days.unwrap_or(events::tenant::DEFAULT_RETENTION_DAYS));
    let id = Uuid::now_v7();
    let command =
        Command { ctx: &ctx, tenant_id: caller.tenant_id, stream_id: id, request_hash: hash, lookup: Lookup::Nothing };
    let cmd = RecordInteraction {
        kept_from,
        case_id,
        case,
        channel_id: body.channel_id,
        channel,
        direction: body.direction,
        content: body.content,
        external_id: body.external_id,
        tags: body.tags,
        metadata: body.metadata,
        occurred_at: body.occurred_at,
        customer_id,
    };
    super::execute::<interaction::Interaction>(&state, command, StatusCode::CREATED, |s, _| {
        interaction::decide(s, cmd.clone(), &events::Context { actor: caller.user_id, now: Utc::now() })
    })
    .await
}
