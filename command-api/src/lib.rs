//! The command side: validates versioned commands, records their events in the
//! PostgreSQL journal (with optimistic concurrency and idempotency) and relays the
//! journal to Kafka in stream order.

pub mod appender;
pub mod config_cache;
pub mod context;
pub mod journal;
pub mod leader;
pub mod login_guard;
pub mod relay;
pub mod requested_tasks;
pub mod routes;
pub mod sla;
pub mod startup;
pub mod state;
pub mod stream_cache;
pub mod versioned;

pub use startup::Application;
