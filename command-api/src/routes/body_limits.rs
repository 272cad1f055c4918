//! The input contract (`events::contract`) as the command API's OpenAPI document states
//! it: every bounded text property of every request body, with its limit. The test
//! `openapi::every_text_a_command_takes_declares_its_limit` fails on a text property
//! missing here, and the document refuses to build with a name the schemas lack.

use events::contract::{self, Text};
use events::webhook;
use runtime::openapi::{FieldLimit, Limit};

use super::users::MAX_PASSWORD;

const fn text(limit: Text) -> Limit {
    Limit::Text(limit)
}

const fn tags(max_items: usize) -> Limit {
    Limit::List { max_items, each: contract::TAG }
}

pub const LIMITS: &[FieldLimit] = &[
    ("LoginBody", "tenant", Limit::Chars(contract::SLUG_MAX)),
    ("LoginBody", "username", Limit::Chars(contract::USERNAME_MAX)),
    ("LoginBody", "password", Limit::Chars(MAX_PASSWORD)),
    ("ProvisionTenant", "name", text(contract::TENANT_NAME)),
    ("ProvisionTenant", "slug", Limit::Chars(contract::SLUG_MAX)),
    ("Suspend", "reason", text(contract::REASON)),
    ("UserCreateBody", "username", Limit::Chars(contract::USERNAME_MAX)),
    ("UserCreateBody", "email", Limit::Chars(contract::EMAIL_MAX)),
    ("UserCreateBody", "password", Limit::Chars(MAX_PASSWORD)),
    ("UserCreateBody", "first_name", text(contract::NAME)),
    ("UserCreateBody", "last_name", text(contract::NAME)),
    ("ProfileBody", "first_name", text(contract::NAME)),
    ("ProfileBody", "last_name", text(contract::NAME)),
    ("ProfileBody", "email", Limit::Chars(contract::EMAIL_MAX)),
    ("PasswordBody", "current_password", Limit::Chars(MAX_PASSWORD)),
    ("PasswordBody", "new_password", Limit::Chars(MAX_PASSWORD)),
    ("ResetBody", "new_password", Limit::Chars(MAX_PASSWORD)),
    ("TeamCreateBody", "name", text(contract::NAME)),
    ("TeamCreateBody", "description", text(contract::TEAM_DESCRIPTION)),
    ("RenameBody", "name", text(contract::NAME)),
    ("CaseTypeCreateBody", "name", text(contract::NAME)),
    ("CaseTypeCreateBody", "description", text(contract::DESCRIPTION)),
    ("CaseTypeUpdateBody", "name", text(contract::NAME)),
    ("CaseTypeUpdateBody", "description", text(contract::DESCRIPTION)),
    ("ChannelCreateBody", "name", text(contract::NAME)),
    ("ChannelUpdateBody", "name", text(contract::NAME)),
    ("InteractionBody", "content", text(contract::INTERACTION_CONTENT)),
    ("InteractionBody", "external_id", text(contract::EXTERNAL_ID)),
    ("InteractionBody", "tags", tags(contract::MAX_TAGS)),
    ("TaskCreateBody", "title", text(contract::TITLE)),
    ("TaskCreateBody", "description", text(contract::DESCRIPTION)),
    ("AddBody", "content", text(contract::NOTE)),
    ("AddBody", "tags", tags(contract::MAX_NOTE_TAGS)),
    ("EditBody", "content", text(contract::NOTE)),
    ("EditBody", "tags", tags(contract::MAX_NOTE_TAGS)),
    ("AttachmentBody", "filename", text(contract::NAME)),
    ("AttachmentBody", "mime_type", text(contract::MIME_TYPE)),
    ("AttachmentBody", "storage_path", text(contract::STORAGE_PATH)),
    ("AttachBody", "filename", text(contract::NAME)),
    ("AttachBody", "mime_type", text(contract::MIME_TYPE)),
    ("AttachBody", "storage_path", text(contract::STORAGE_PATH)),
    ("TemplateCreateBody", "name", text(contract::NAME)),
    ("TemplateCreateBody", "description", text(contract::DESCRIPTION)),
    ("TemplateCreateBody", "subject", text(contract::SUBJECT)),
    ("TemplateCreateBody", "content", text(contract::TEMPLATE)),
    ("TemplateCreateBody", "category", text(contract::NAME)),
    ("TemplateCreateBody", "tags", tags(contract::MAX_TAGS)),
    ("TemplateUpdateBody", "name", text(contract::NAME)),
    ("TemplateUpdateBody", "description", text(contract::DESCRIPTION)),
    ("TemplateUpdateBody", "subject", text(contract::SUBJECT)),
    ("TemplateUpdateBody", "content", text(contract::TEMPLATE)),
    ("WorkflowCreateBody", "name", text(contract::NAME)),
    ("WorkflowCreateBody", "description", text(contract::DESCRIPTION)),
    ("WorkflowUpdateBody", "name", text(contract::NAME)),
    ("WorkflowUpdateBody", "description", text(contract::DESCRIPTION)),
    ("OpenCaseBody", "title", text(contract::TITLE)),
    ("OpenCaseBody", "description", text(contract::DESCRIPTION)),
    ("OpenCaseBody", "tags", tags(contract::MAX_TAGS)),
    ("UpdateCaseBody", "title", text(contract::TITLE)),
    ("UpdateCaseBody", "description", text(contract::DESCRIPTION)),
    ("UpdateCaseBody", "tags", tags(contract::MAX_TAGS)),
    ("TagsBody", "add", tags(contract::MAX_TAGS)),
    ("TagsBody", "remove", tags(contract::MAX_TAGS)),
    // A field's key: 1-64 of a-z, A-Z, 0-9 and _ (`events::form::FormDefinition::check`).
    ("CustomFieldDefineBody", "field_name", Limit::Chars(64)),
    ("CustomFieldDefineBody", "display_name", text(contract::NAME)),
    ("CustomFieldDefineBody", "section", text(contract::NAME)),
    ("CustomFieldDefineBody", "description", text(contract::DESCRIPTION)),
    ("CustomFieldDefineBody", "default_value", text(contract::CUSTOM_TEXT)),
    ("CustomFieldUpdateBody", "display_name", text(contract::NAME)),
    ("CustomFieldUpdateBody", "section", text(contract::NAME)),
    ("CustomFieldUpdateBody", "description", text(contract::DESCRIPTION)),
    ("CustomFieldUpdateBody", "default_value", text(contract::CUSTOM_TEXT)),
    ("FieldOption", "label", text(contract::NAME)),
    ("FieldOption", "value", text(contract::CUSTOM_TEXT)),
    ("VisibilityRules", "roles", tags(contract::MAX_TAGS)),
    ("WebhookCreateBody", "url", Limit::Chars(webhook::URL_MAX)),
    (
        "WebhookCreateBody",
        "event_types",
        Limit::List { max_items: webhook::MAX_EVENT_TYPES, each: webhook::EVENT_TYPE },
    ),
    ("WebhookCreateBody", "secret", Limit::Chars(webhook::SECRET_MAX)),
    ("WebhookCreateBody", "description", text(contract::TEAM_DESCRIPTION)),
    ("WebhookUpdateBody", "url", Limit::Chars(webhook::URL_MAX)),
    (
        "WebhookUpdateBody",
        "event_types",
        Limit::List { max_items: webhook::MAX_EVENT_TYPES, each: webhook::EVENT_TYPE },
    ),
    ("WebhookUpdateBody", "secret", Limit::Chars(webhook::SECRET_MAX)),
    ("WebhookUpdateBody", "description", text(contract::TEAM_DESCRIPTION)),
];
