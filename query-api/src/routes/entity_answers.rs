//! What each read of the tenant's configuration, people and webhooks answers, as the OpenAPI
//! document shows it. The rows come out as JSON built by PostgreSQL (`to_jsonb`) or from
//! MongoDB's documents, so these types are not built by the handlers: the test
//! `openapi::every_entity_read_answers_as_documented` holds them to the real answers
//! (every answered field documented, every required one answered).
#![allow(dead_code)] // documentation types: read by utoipa only

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

#[derive(utoipa::ToSchema)]
pub struct User {
    id: Uuid,
    tenant_id: Uuid,
    username: String,
    email: String,
    first_name: Option<String>,
    last_name: Option<String>,
    #[schema(example = "agent")]
    role: String,
    #[schema(example = "active")]
    status: String,
    last_login: Option<DateTime<Utc>>,
    /// Permissions granted beyond the role's.
    #[schema(value_type = Option<Object>)]
    permissions: Option<Value>,
    #[schema(value_type = Option<Object>)]
    preferences: Option<Value>,
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
}

#[derive(utoipa::ToSchema)]
pub struct TeamMember {
    user_id: Uuid,
    #[schema(example = "member")]
    role: String,
    joined_at: DateTime<Utc>,
}

#[derive(utoipa::ToSchema)]
pub struct Team {
    id: Uuid,
    tenant_id: Uuid,
    name: String,
    description: Option<String>,
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
    /// In the order they joined.
    members: Vec<TeamMember>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
}

#[derive(utoipa::ToSchema)]
pub struct CaseType {
    id: Uuid,
    tenant_id: Uuid,
    name: String,
    description: Option<String>,
    #[schema(value_type = Object)]
    form_definition: Value,
    #[schema(value_type = Option<Object>)]
    validation_rules: Option<Value>,
    workflow_id: Option<Uuid>,
    is_active: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
}

#[derive(utoipa::ToSchema)]
pub struct Workflow {
    id: Uuid,
    tenant_id: Uuid,
    name: String,
    description: Option<String>,
    active: bool,
    #[schema(value_type = Vec<Object>)]
    stages: Value,
    initial_stage_id: Uuid,
    #[schema(value_type = Vec<Object>)]
    transitions: Value,
    #[schema(value_type = Option<Vec<Object>>)]
    actions: Option<Value>,
    #[schema(value_type = Option<Vec<Object>>)]
    sla_definitions: Option<Value>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Channel {
    id: Uuid,
    tenant_id: Uuid,
    name: String,
    #[serde(rename = "type")]
    #[schema(example = "email")]
    channel_type: String,
    /// Endpoints and accounts, credentials only as set-or-not markers; for those who
    /// manage channels only.
    #[schema(value_type = Option<Object>)]
    configuration: Option<Value>,
    is_active: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
}

#[derive(utoipa::ToSchema)]
pub struct CustomField {
    id: Uuid,
    tenant_id: Uuid,
    #[schema(example = "case")]
    entity_type: String,
    field_name: String,
    display_name: String,
    #[schema(example = "select")]
    field_type: String,
    required: bool,
    #[schema(value_type = Option<Object>)]
    default_value: Option<Value>,
    #[schema(value_type = Vec<Object>)]
    options: Value,
    #[schema(value_type = Option<Object>)]
    validation: Option<Value>,
    #[schema(value_type = Object)]
    visibility_rules: Value,
    order: i32,
    section: Option<String>,
    description: Option<String>,
    is_active: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
}

#[derive(utoipa::ToSchema)]
pub struct MessageTemplate {
    id: Uuid,
    tenant_id: Uuid,
    name: String,
    description: Option<String>,
    #[schema(example = "email")]
    channel_type: String,
    subject: Option<String>,
    content: String,
    /// The `{{variables}}` the content and subject name.
    variables: Vec<String>,
    tags: Vec<String>,
    category: Option<String>,
    created_by: Uuid,
    is_active: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
}

#[derive(utoipa::ToSchema)]
pub struct Tenant {
    id: Uuid,
    name: String,
    slug: String,
    #[schema(example = "active")]
    status: String,
    #[schema(value_type = Object)]
    settings: Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
}

#[derive(utoipa::ToSchema)]
pub struct Webhook {
    id: Uuid,
    url: String,
    /// The event types it is sent (`CaseOpened`, ...).
    event_types: Vec<String>,
    description: Option<String>,
    active: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
}

/// One event sent (or being sent) to a webhook.
#[derive(utoipa::ToSchema)]
pub struct Delivery {
    event_id: Uuid,
    event_type: String,
    #[schema(example = "pending")]
    status: String,
    attempts: i32,
    /// The HTTP status of the last attempt, if it got one.
    last_status: Option<i32>,
    last_error: Option<String>,
    created_at: DateTime<Utc>,
    delivered_at: Option<DateTime<Utc>>,
    /// While pending: when it is tried again.
    next_attempt_at: Option<DateTime<Utc>>,
    /// What is sent.
    #[schema(value_type = Object)]
    body: Value,
}
