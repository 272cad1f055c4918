//! Test harness: `TestApp::spawn()` starts the three services in-process against the
//! real servers of the local stack, with names no other test uses (its own database,
//! topic, consumer groups, Mongo database and tenant), and gives typed helpers.
//!
//! `support/app.rs` starts the services (`TestApp`, `ServiceProcess`), `broker.rs` runs a
//! private broker, `poll.rs` waits for read models, `stores.rs` reads the stores directly.

mod support;

pub use support::app::*;
pub use support::broker::PrivateBroker;
pub use support::poll::eventually;
pub use support::stores::*;
