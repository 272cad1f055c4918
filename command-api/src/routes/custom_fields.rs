//! Custom field definition commands (tenant administrators): define a field of cases,
//! interactions or users; update its spec; deactivate and activate it.

use events::field_definition::{self, EntityType, FieldDefinitionCommand, FieldOption, FieldSpec, VisibilityRules};
use events::form::FieldType;
use runtime::auth::Permission;
use runtime::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use super::endpoint::{Endpoint, Facts, Route};
use super::AppState;
use crate::journal::Lookup;

pub fn router() -> OpenApiRouter<AppState> {
    super::endpoint::router!["custom-fields": DefineBody, UpdateBody, Deactivate, Activate]
}

// The two bodies state the spec's fields themselves rather than flatten `FieldSpec`
// into them: a flattened field is an `allOf` in the document, and clients and fuzzers
// would not see the properties (nor their limits) of the body they send. `spec_body!`
// writes the spec's fields into both, once; adding a field to `FieldSpec` fails to
// compile in `split` until the macro takes it.

/// Declares a body of its own fields followed by a field's whole spec, and `split`,
/// which gives the spec and the body's own fields.
macro_rules! spec_body {
    (
        $(#[$meta:meta])*
        struct $name:ident { $( $(#[$fmeta:meta])* $field:ident: $ty:ty, )* }
    ) => {
        #[derive(Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(deny_unknown_fields)]
        $(#[$meta])*
        struct $name {
            $( $(#[$fmeta])* $field: $ty, )*
            /// The label users see.
            #[schema(example = "Customer satisfaction")]
            display_name: String,
            field_type: FieldType,
            #[serde(default)]
            required: bool,
            #[serde(default)]
            #[schema(schema_with = field_value)]
            default_value: Option<Value>,
            /// The choices of a select or multiselect field (at least one for those).
            #[serde(default)]
            options: Vec<FieldOption>,
            /// Text: `{"pattern": "<regular expression>"}`; text length and numbers:
            /// `{"min": n, "max": n}`.
            #[serde(default)]
            #[schema(value_type = Option<Object>)]
            validation: Option<Value>,
            #[serde(default)]
            visibility_rules: VisibilityRules,
            /// Where the field comes among the others (ascending).
            #[serde(default)]
            order: i32,
            /// The group of fields it is shown in.
            #[serde(default)]
            section: Option<String>,
            #[serde(default)]
            description: Option<String>,
        }

        impl $name {
            fn split(self) -> (FieldSpec, ($($ty,)*)) {
                let spec = FieldSpec {
                    display_name: self.display_name,
                    field_type: self.field_type,
                    required: self.required,
                    default_value: self.default_value,
                    options: self.options,
                    validation: self.validation,
                    visibility_rules: self.visibility_rules,
                    order: self.order,
                    section: self.section,
                    description: self.description,
                };
                (spec, ($(self.$field,)*))
            }
        }
    };
}

spec_body! {
    /// A new custom field of cases, interactions or users.
    #[schema(as = CustomFieldDefineBody)]
    struct DefineBody {
        entity_type: EntityType,
        /// The field's key in an entity's `custom_fields`: 1-64 characters of a-z, A-Z, 0-9
        /// and _, unique per entity type.
        #[schema(pattern = "^[A-Za-z0-9_]+$", example = "satisfaction")]
        field_name: String,
    }
}

spec_body! {
    /// A custom field's new spec (all of it: absent fields take their defaults).
    #[schema(as = CustomFieldUpdateBody)]
    struct UpdateBody {}
}

/// A field's default: a value of the field's type.
fn field_value() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Number, Type::Boolean, Type::Array, Type::Null]))
        .description(Some(
            "The value a new entity gets when none is given, of the field's type: text, a date or one of the \
             options (a string), a number, true or false, or a list of the options (multiselect).",
        ))
        .build()
}

activation_endpoints!(
    field_definition::FieldDefinition,
    "custom_field",
    "/v1/custom-fields/{id}/deactivate",
    "/v1/custom-fields/{id}/activate",
    Permission::CustomFieldsManage,
    FieldDefinitionCommand::Deactivate,
    FieldDefinitionCommand::Activate
);

impl Endpoint for DefineBody {
    type Stream = field_definition::FieldDefinition;
    type Path = ();
    const ROUTE: Route = Route::post("/v1/custom-fields", "custom_fields_define")
        .named("define_custom_field")
        .holds(Permission::CustomFieldsManage);

    fn lookup(&self) -> Lookup {
        Lookup::UniqueName { kind: "custom_field", name: format!("{}.{}", self.entity_type.as_str(), self.field_name) }
    }

    async fn command(self, _: (), _: Facts<'_>) -> Result<FieldDefinitionCommand, ApiError> {
        let (spec, (entity_type, field_name)) = self.split();
        Ok(FieldDefinitionCommand::Create { entity_type, field_name, spec })
    }
}

impl Endpoint for UpdateBody {
    type Stream = field_definition::FieldDefinition;
    type Path = Uuid;
    const ROUTE: Route = Route::put("/v1/custom-fields/{id}", "custom_fields_update")
        .named("update_custom_field")
        .holds(Permission::CustomFieldsManage);

    async fn command(self, _: Uuid, _: Facts<'_>) -> Result<FieldDefinitionCommand, ApiError> {
        Ok(FieldDefinitionCommand::Update { spec: self.split().0 })
    }
}
