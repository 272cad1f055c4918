//! The projector: one worker per projection, each building one read model
//! (PostgreSQL, MongoDB, Elasticsearch, Redis) with exactly-once effect.

pub mod admin;
pub mod checkpoint;
pub mod control;
pub mod copies;
pub mod event;
pub mod lease;
pub mod log_cursor;
pub mod maintenance;
pub mod mappings;
pub mod mongo;
pub mod operations;
pub mod parking;
pub mod projection;
pub mod projections;
pub mod rebuild;
pub mod retention;
pub mod startup;
pub mod stores;
pub mod verify;
pub mod webhooks;
pub mod worker;

pub use startup::Application;
