//! The projector: one Kafka consumer group per projection, each building one read model
//! (PostgreSQL, MongoDB, Elasticsearch, Redis) with exactly-once effect.

pub mod admin;
pub mod control;
pub mod event;
pub mod maintenance;
pub mod mappings;
pub mod mongo;
pub mod operations;
pub mod parking;
pub mod projection;
pub mod projections;
pub mod rebuild;
pub mod startup;
pub mod stores;
pub mod worker;

pub use startup::Application;
