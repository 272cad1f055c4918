//! Glue the three Murima services share: configuration, telemetry, bearer-token auth,
//! problem+json errors and extractors, tenancy names, position tokens, Kafka and
//! PostgreSQL set-up, and serving an axum router until shutdown.

#[cfg(feature = "stores")]
pub mod audit_log;
pub mod auth;
#[cfg(feature = "stores")]
pub mod clients;
pub mod config;
pub mod db;
pub mod extract;
pub mod http;
pub mod kafka;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod position;
pub mod problem;
#[cfg(feature = "sessions")]
pub mod redis_connection;
pub mod retry;
#[cfg(feature = "sessions")]
pub mod session;
pub mod subject_keys;
pub mod telemetry;
pub mod tenancy;
pub mod webhook;

pub use config::{Migrations, Settings};
pub use problem::ApiError;
