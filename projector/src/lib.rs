//! The projector: one Kafka consumer group per projection, each building one read model
//! (PostgreSQL, MongoDB, Elasticsearch, Redis) with exactly-once effect.

pub mod event;
pub mod maintenance;
pub mod mongo;
pub mod parking;
pub mod projection;
pub mod projections;
pub mod startup;
pub mod worker;

pub use startup::Application;
