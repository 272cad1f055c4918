//! The document and search stores' clients, each call bounded: a server that stops
//! answering (a pause, a long lock, a lost network path) costs a caller at most its
//! deadline, never a hung request or worker.

use std::time::Duration;

use anyhow::Context;
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::Elasticsearch;

/// A MongoDB client that gives up choosing a server, or connecting, after `deadline`.
pub async fn mongo(url: &str, deadline: Duration) -> anyhow::Result<mongodb::Client> {
    let mut options = mongodb::options::ClientOptions::parse(url).await.context("reading MURIMA_MONGO_URL")?;
    options.server_selection_timeout = Some(deadline);
    options.connect_timeout = Some(deadline);
    mongodb::Client::with_options(options).context("configuring MongoDB")
}

/// An Elasticsearch client whose every request ends after `deadline`.
pub fn elastic(url: &str, deadline: Duration) -> anyhow::Result<Elasticsearch> {
    let url = url::Url::parse(url).context("reading MURIMA_ELASTIC_URL")?;
    let transport = TransportBuilder::new(SingleNodeConnectionPool::new(url))
        .timeout(deadline)
        .build()
        .context("configuring Elasticsearch")?;
    Ok(Elasticsearch::new(transport))
}
