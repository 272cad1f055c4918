//! The codec of every stream's events, declared once per stream by `event_enum!`.
//!
//! A stream's event enum lists each variant with its stored name, its current schema
//! version and the upcasters that lift older versions, and the macro writes the enum and
//! its `event_type`, `schema_version`, `payload` and `decode`. A new variant is one line;
//! every `match` over the enum elsewhere (the write side's fold, each projection) then
//! fails to compile until it handles the variant.
//!
//! ```ignore
//! event_enum! {
//!     pub enum UserEvent {
//!         // Stored as "UserCreated", now at version 2; a v1 payload is lifted by
//!         // `without_password_hash` (v1 -> v2) before it is read.
//!         Created(UserCreated) = "UserCreated" @ 2 [1 => without_password_hash],
//!         LoggedIn(UserLoggedIn) = "UserLoggedIn" @ 1,
//!     }
//! }
//! ```

/// Declares a stream's event enum and its codec (see the module's documentation).
///
/// Upcasters are listed oldest first; each takes a payload of the version named and
/// returns it at the next one. A stored version with no path to the current one, or an
/// unknown name, is `DecodeError::Unknown`: never a guess.
macro_rules! event_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $(
                $(#[$vmeta:meta])*
                $variant:ident($data:ty) = $stored:literal @ $version:literal
                    $([ $($from:literal => $upcast:path),+ $(,)? ])?
            ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant($data), )+
        }

        impl $name {
            /// Every stored name this enum reads and writes, in declaration order.
            pub const EVENT_TYPES: &'static [&'static str] = &[$($stored),+];

            /// The name the event is stored under.
            pub fn event_type(&self) -> &'static str {
                match self {
                    $( $name::$variant(_) => $stored, )+
                }
            }

            /// The schema version the event is written at.
            pub fn schema_version(&self) -> u16 {
                match self {
                    $( $name::$variant(_) => $version, )+
                }
            }

            /// The event's payload as stored.
            pub fn payload(&self) -> serde_json::Value {
                let value = match self {
                    $( $name::$variant(e) => serde_json::to_value(e), )+
                };
                // panic-free: events are plain data (no maps with non-string keys), which always serialise
                value.expect("events are plain data and always serialise")
            }

            /// Reads a stored event, lifting older schema versions through the upcasters
            /// first. Unknown names and versions are errors, never guesses.
            #[allow(unused_mut, unused_assignments)]
            pub fn decode(
                event_type: &str,
                schema_version: u16,
                payload: serde_json::Value,
            ) -> Result<Self, $crate::DecodeError> {
                let unknown = || $crate::DecodeError::Unknown { event_type: event_type.to_owned(), schema_version };
                let malformed = |source| $crate::DecodeError::Malformed {
                    event_type: event_type.to_owned(),
                    schema_version,
                    source,
                };
                $(
                    if event_type == $stored {
                        let mut version: u16 = schema_version;
                        let mut payload = payload;
                        $($(
                            if version == $from {
                                payload = $upcast(payload);
                                version = $from + 1;
                            }
                        )+)?
                        return if version == $version {
                            serde_json::from_value(payload).map($name::$variant).map_err(malformed)
                        } else {
                            Err(unknown())
                        };
                    }
                )+
                Err(unknown())
            }
        }

        impl $crate::stream::StreamEvent for $name {
            fn event_type(&self) -> &'static str {
                $name::event_type(self)
            }
            fn schema_version(&self) -> u16 {
                $name::schema_version(self)
            }
            fn payload(&self) -> serde_json::Value {
                $name::payload(self)
            }
            fn decode(event_type: &str, schema_version: u16, payload: serde_json::Value) -> Result<Self, $crate::DecodeError> {
                $name::decode(event_type, schema_version, payload)
            }
        }
    };
}

/// Declares events' payloads: plain data (cloned, compared, printed) that is stored as it
/// serialises and refuses unknown fields when read, so a field this build does not know
/// is an error, never dropped.
macro_rules! payloads {
    ($(
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* pub $field:ident: $ty:ty ),* $(,)?
        }
    )+) => {
        $(
            $(#[$meta])*
            #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            pub struct $name {
                $( $(#[$fmeta])* pub $field: $ty, )*
            }
        )+
    };
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};
    use serde_json::{json, Value};

    use crate::DecodeError;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Opened {
        title: String,
        priority: u8,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Closed {
        reason: String,
    }

    fn v1_to_v2(mut payload: Value) -> Value {
        if let Some(fields) = payload.as_object_mut() {
            fields.remove("legacy");
        }
        payload
    }

    fn v2_to_v3(mut payload: Value) -> Value {
        if let Some(fields) = payload.as_object_mut() {
            fields.entry("priority").or_insert(json!(3));
        }
        payload
    }

    event_enum! {
        enum Sample {
            Opened(Opened) = "SampleOpened" @ 3 [1 => v1_to_v2, 2 => v2_to_v3],
            Closed(Closed) = "SampleClosed" @ 1,
        }
    }

    #[test]
    fn every_stored_version_reads_as_the_current_one() {
        let current = Sample::Opened(Opened { title: "t".into(), priority: 3 });
        assert_eq!(Sample::decode("SampleOpened", 3, current.payload()).ok(), Some(current.clone()));
        assert_eq!(Sample::decode("SampleOpened", 2, json!({"title": "t"})).ok(), Some(current.clone()));
        assert_eq!(Sample::decode("SampleOpened", 1, json!({"title": "t", "legacy": 1})).ok(), Some(current));
        assert_eq!(
            (Sample::EVENT_TYPES, Sample::Closed(Closed { reason: "r".into() }).schema_version()),
            (&["SampleOpened", "SampleClosed"][..], 1)
        );
    }

    #[test]
    fn unknown_names_and_versions_and_bad_payloads_are_refused() {
        assert!(matches!(Sample::decode("SampleOpened", 4, json!({})), Err(DecodeError::Unknown { .. })));
        assert!(matches!(Sample::decode("SampleOpened", 0, json!({})), Err(DecodeError::Unknown { .. })));
        assert!(matches!(Sample::decode("SampleClosed", 2, json!({})), Err(DecodeError::Unknown { .. })));
        assert!(matches!(Sample::decode("SampleMoved", 1, json!({})), Err(DecodeError::Unknown { .. })));
        assert!(matches!(
            Sample::decode("SampleClosed", 1, json!({"reason": "r", "extra": 1})),
            Err(DecodeError::Malformed { .. })
        ));
    }
}
