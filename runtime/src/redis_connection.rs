//! The one way the services connect to Redis: a connection manager that fails fast.
//!
//! redis-rs' defaults wait for a reply forever and retry a lost connection six times
//! with growing pauses (over 6 s) inside the call that found it lost, so with Redis away
//! every request held on for seconds before its 503 (sessions fail closed) or before the
//! rate limiter let it through (it fails open). Bounded here: a connection attempt takes
//! at most a second, a reply two, and a call retries the connection twice.

use std::time::Duration;

use anyhow::Context;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

pub async fn connect(url: &str) -> anyhow::Result<ConnectionManager> {
    let client = redis::Client::open(url).context("configuring Redis")?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Duration::from_secs(1))
        .set_response_timeout(Duration::from_secs(2))
        .set_number_of_retries(2)
        .set_max_delay(500);
    ConnectionManager::new_with_config(client, config).await.context("connecting to Redis")
}
