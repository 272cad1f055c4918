//! Kafka client set-up shared by the relay and the projector. Only the official client
//! (librdkafka) is used, so the same code runs against tansu locally and Kafka in compose.

use std::time::Duration;

use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::types::RDKafkaErrorCode;

/// The most records the relay puts in one producer batch. Consumers resume this many
/// offsets before their checkpoint, so the batch holding it is read whole (tansu answers
/// a Fetch from inside a batch with the batches after it; see the projector's
/// `log_cursor`).
pub const MAX_BATCH_RECORDS: i64 = 100;

pub fn client_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers).set("socket.keepalive.enable", "true");
    config
}

/// Creates the events topic unless it exists (brokers here do not auto-create topics).
pub async fn ensure_topic(brokers: &str, topic: &str, partitions: i32) -> anyhow::Result<bool> {
    let admin: AdminClient<DefaultClientContext> =
        client_config(brokers).create().context("creating the Kafka admin client")?;
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin.create_topics([&new_topic], &options).await.context("creating the events topic")?;
    match results.into_iter().next() {
        Some(Ok(_)) => {
            tracing::info!(topic, partitions, "created the events topic");
            Ok(true)
        }
        Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) | None => Ok(false),
        Some(Err((name, code))) => anyhow::bail!("could not create topic {name}: {code}"),
    }
}

/// Deletes a topic; used by tests to simulate a broker that lost its log.
pub async fn delete_topic(brokers: &str, topic: &str) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(brokers).create()?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.delete_topics(&[topic], &options).await? {
        if let Err((name, code)) = result {
            anyhow::bail!("could not delete topic {name}: {code}");
        }
    }
    Ok(())
}

/// Whether a broker answers a metadata request within `timeout` (blocking; readiness).
pub fn reachable(brokers: &str, timeout: Duration) -> anyhow::Result<()> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let probe: BaseConsumer = client_config(brokers).create().context("creating a Kafka client")?;
    probe.fetch_metadata(None, timeout).context("asking the broker for metadata")?;
    Ok(())
}
