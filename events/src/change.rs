//! A field's value before and after an event: events carry both, so the audit trail and
//! the counters never need to look anything up.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change<T> {
    pub old: T,
    pub new: T,
}

impl<T: PartialEq + Clone> Change<T> {
    /// `Some(change)` when `new` is given and differs from `old`.
    pub fn between(old: &T, new: Option<T>) -> Option<Self> {
        new.filter(|n| n != old).map(|new| Change { old: old.clone(), new })
    }
}

/// Declares an event that changes some of a state's fields, each listed once: from the
/// list come the payload (each field an `Option<Change<T>>`, left out when unchanged,
/// then the event's other fields), `apply` (the fold: each changed field's new value onto
/// the state field of the same name), `is_empty` (nothing changed: no event is
/// recorded) and `changes` (the audit log's old and new values, field by field). So a new
/// changeable field is one line, and neither the fold nor the audit can miss it.
///
/// ```ignore
/// field_changes! {
///     pub struct NoteEdited changes Note {
///         content: String,
///         is_internal: bool,
///     } with {
///         pub edited_at: DateTime<Utc>,
///     }
/// }
/// ```
macro_rules! field_changes {
    (
        $(#[$meta:meta])*
        pub struct $name:ident changes $state:ty {
            $( $(#[$fmeta:meta])* $field:ident: $ty:ty, )+
        } with {
            $( $(#[$xmeta:meta])* pub $extra:ident: $xty:ty, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $(
                $(#[$fmeta])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $field: Option<$crate::change::Change<$ty>>,
            )+
            $( $(#[$xmeta])* pub $extra: $xty, )*
        }

        impl $name {
            /// Whether no field changed (then no event is recorded).
            pub fn is_empty(&self) -> bool {
                true $( && self.$field.is_none() )+
            }

            /// Sets each changed field of the state to its new value.
            pub fn apply(&self, state: &mut $state) {
                $(
                    if let Some(change) = &self.$field {
                        state.$field = change.new.clone();
                    }
                )+
            }

            /// The changed fields' old and new values, in declaration order.
            pub fn changes(&self) -> Vec<$crate::audit::FieldChange> {
                let mut out = Vec::new();
                $(
                    if let Some(change) = &self.$field {
                        out.push($crate::audit::FieldChange {
                            field: stringify!($field),
                            old_value: serde_json::json!(change.old),
                            new_value: serde_json::json!(change.new),
                        });
                    }
                )+
                out
            }
        }
    };
}

payloads! {
    /// An entity taken out of use (nothing new may use it) or put back into use.
    pub struct Activation {
        pub at: chrono::DateTime<chrono::Utc>,
    }
}

/// What taking an entity that is `active` to `wanted` records: nothing when it is there
/// already (deactivating twice is not an error and records nothing), else one event.
pub fn activation<E>(
    active: bool,
    wanted: bool,
    at: chrono::DateTime<chrono::Utc>,
    event: fn(Activation) -> E,
) -> Vec<E> {
    if active == wanted {
        vec![]
    } else {
        vec![event(Activation { at })]
    }
}
