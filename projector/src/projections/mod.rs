//! The read models. Adding one: a file here, a variant of `stores::ProjectionName` (the
//! compiler then lists every match that must name it), its schema, a test.

pub mod elastic;
pub mod mongo_audit;
pub mod mongo_documents;
pub mod mongo_field_definitions;
pub mod mongo_notes;
pub mod mongo_templates;
pub mod postgres;
pub mod redis_counters;
