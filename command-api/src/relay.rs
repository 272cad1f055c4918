//! Relays the journal to Kafka: drains `eventstore.outbox` in position order, deletes what
//! the broker acknowledged, and refills a broker that lost its log.
//!
//! Ordering: a stream's next event can only be written after its previous one committed,
//! so position order is stream order. The message key is the tenant id, so each tenant's
//! events share a partition and reach the projector in journal order: a read model sees
//! a case type before the cases of that type, and can hold the seed's foreign keys and
//! unique names. Tenants, not streams, are the unit of parallelism in the projector.
//! If a send fails, nothing after it in the batch is
//! deleted from the outbox: it is sent again after the failed one, and consumers drop the
//! early copy as a version gap and apply the later one in order.
//!
//! Refill: `relay_offsets` keeps, per partition, the highest high watermark seen since the
//! topic was last filled. A healthy partition's watermark never goes down, so a missing
//! topic, or a partition below what was seen (an in-memory broker that restarted empty),
//! re-queues the whole journal. Consumers are version-guarded, so the duplicates this
//! produces have no effect. (A count of deliveries compared with the sum of the watermarks
//! raced them and took a healthy broker for an empty one, and tansu acknowledges offsets up
//! to a batch beyond its watermark, so acknowledged offsets cannot be compared either.)

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::Notify;
use uuid::Uuid;

use events::envelope::headers;

use crate::leader::{self, Leading};

pub const BATCH: i64 = 500;
/// The oldest `$1` undelivered events (`publish_batch` says why it is written this way).
pub const NEXT_BATCH_SQL: &str =
    "WITH next AS MATERIALIZED (SELECT position FROM eventstore.outbox ORDER BY position LIMIT $1)
     SELECT n.position, e.tenant_id, e.event_type, e.schema_version, e.envelope
     FROM next n JOIN eventstore.events e USING (position)
     ORDER BY n.position";
/// Vacuum the queue tables after this many relayed rows, or this long after the last
/// vacuum if anything was relayed since.
const VACUUM_EVERY_ROWS: usize = 2_000;
const VACUUM_EVERY: Duration = Duration::from_secs(10);
/// How long a woken relay waits for more commands before reading the outbox.
const COALESCE: Duration = Duration::from_millis(3);
/// The tables the relay vacuums itself (`vacuum_queues`); the command API's role owns them
/// (migration 20261206150000), since PostgreSQL skips a vacuum by anyone else.
/// (`eventstore.case_numbers` was one until case numbers came from sequences.)
pub const QUEUE_TABLES: [&str; 2] = ["eventstore.outbox", "eventstore.relay_state"];
/// Only one relay publishes at a time; others wait on this advisory lock as standbys.
const RELAY_LOCK: i64 = 0x6d75_7269_6d61_0001;

pub struct Relay {
    pool: PgPool,
    producer: FutureProducer,
    brokers: String,
    topic: String,
    partitions: i32,
    wake: Arc<Notify>,
    audit_every: Duration,
}

struct Pending {
    position: i64,
    tenant_id: Uuid,
    event_type: String,
    schema_version: i16,
    envelope: Value,
}

impl Relay {
    pub fn new(
        pool: PgPool,
        brokers: &str,
        topic: &str,
        partitions: i32,
        wake: Arc<Notify>,
        audit_every: Duration,
    ) -> anyhow::Result<Self> {
        let producer: FutureProducer = runtime::kafka::client_config(brokers)
            .set("acks", "all")
            // No idempotent producer on every broker we run against; one request in
            // flight keeps retries from reordering a partition.
            .set("enable.idempotence", "false")
            .set("max.in.flight.requests.per.connection", "1")
            .set("linger.ms", "2")
            .set("batch.num.messages", runtime::kafka::MAX_BATCH_RECORDS.to_string())
            .set("message.timeout.ms", "10000")
            .create()
            .context("creating the Kafka producer")?;
        Ok(Self { pool, producer, brokers: brokers.to_owned(), topic: topic.to_owned(), partitions, wake, audit_every })
    }

    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        loop {
            if let Err(e) = self.lead().await {
                tracing::warn!(error = %format!("{e:#}"), "relay stopped leading; retrying in 1s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    /// Holds the relay lock (`leader::acquire`) and publishes while it holds it.
    async fn lead(&self) -> anyhow::Result<()> {
        let mut lock_conn = leader::acquire(&self.pool, RELAY_LOCK).await?;
        tracing::info!(topic = %self.topic, "relay leading");
        // `relay_leading` is 1 while this process's relay holds the lock.
        let _leading = Leading::new("relay_leading");
        self.ensure_state().await?;
        let mut last_audit = Instant::now().checked_sub(self.audit_every).unwrap_or_else(Instant::now);
        let mut last_vacuum = Instant::now();
        let mut relayed_since_vacuum = 0usize;
        loop {
            if last_audit.elapsed() >= self.audit_every {
                self.audit_broker().await?;
                last_audit = Instant::now();
            }
            if relayed_since_vacuum >= VACUUM_EVERY_ROWS
                || (relayed_since_vacuum > 0 && last_vacuum.elapsed() >= VACUUM_EVERY)
            {
                self.vacuum_queues().await;
                relayed_since_vacuum = 0;
                last_vacuum = Instant::now();
            }
            match self.publish_batch().await {
                Ok(n) if n as i64 >= BATCH => {
                    relayed_since_vacuum = relayed_since_vacuum.saturating_add(n);
                    continue;
                }
                Ok(n) => relayed_since_vacuum = relayed_since_vacuum.saturating_add(n),
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "publishing failed; will retry"),
            }
            // Keep the lock connection alive and wake on new commands or a short tick.
            leader::still_held(&mut lock_conn).await?;
            let woken = tokio::time::timeout(Duration::from_millis(250), self.wake.notified()).await;
            if woken.is_ok() {
                // Let the commands committing alongside this one join the batch: one outbox
                // query per few milliseconds instead of one per command.
                tokio::time::sleep(COALESCE).await;
            }
        }
    }

    /// The outbox is a queue: every relayed row is deleted, and an index scan for the
    /// oldest rows walks every dead entry until a vacuum removes them (at 200 commands/s,
    /// tens of thousands within autovacuum's one-minute nap; that walk was the biggest cost
    /// of the write path). The relay vacuums its queue tables itself, often and cheaply.
    async fn vacuum_queues(&self) {
        for table in QUEUE_TABLES {
            if let Err(e) = sqlx::query(&format!("VACUUM {table}")).execute(&self.pool).await {
                tracing::warn!(table, error = %e, "vacuuming a queue table failed");
            }
        }
    }

    async fn ensure_state(&self) -> anyhow::Result<()> {
        runtime::kafka::ensure_topic(&self.brokers, &self.topic, self.partitions).await?;
        sqlx::query("INSERT INTO eventstore.relay_state (topic) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(&self.topic)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Publishes the oldest undelivered events; returns how many the broker acknowledged.
    async fn publish_batch(&self) -> anyhow::Result<usize> {
        // The batch's positions are taken from the outbox first, then looked up in the
        // journal: written as one join, the planner walked the journal in position order
        // and probed the outbox for each event whenever its statistics said the outbox was
        // big (after a refill, or a backlog): 675 ms a batch against a journal of 490,000
        // events, so the relay published 800 events/s while commands wrote 1,800/s and
        // its backlog fed itself. This way a batch costs its own 500 look-ups (6 ms).
        let rows: Vec<(i64, Uuid, String, i16, Value)> =
            sqlx::query_as(NEXT_BATCH_SQL).bind(BATCH).fetch_all(&self.pool).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let epoch: i32 = sqlx::query_scalar("SELECT refills FROM eventstore.relay_state WHERE topic = $1")
            .bind(&self.topic)
            .fetch_one(&self.pool)
            .await?;
        let epoch = epoch.to_string();
        let pending: Vec<Pending> = rows
            .into_iter()
            .map(|(position, tenant_id, event_type, schema_version, envelope)| Pending {
                position,
                tenant_id,
                event_type,
                schema_version,
                envelope,
            })
            .collect();

        let mut deliveries = Vec::with_capacity(pending.len());
        for p in &pending {
            let mut envelope = p.envelope.clone();
            envelope["position"] = Value::from(p.position);
            let payload = serde_json::to_vec(&envelope)?;
            let key = p.tenant_id.to_string();
            let tenant = p.tenant_id.to_string();
            let version = p.schema_version.to_string();
            let record = FutureRecord::to(&self.topic).key(&key).payload(&payload).headers(
                OwnedHeaders::new()
                    .insert(Header { key: headers::TENANT_ID, value: Some(&tenant) })
                    .insert(Header { key: headers::EVENT_TYPE, value: Some(&p.event_type) })
                    .insert(Header { key: headers::SCHEMA_VERSION, value: Some(&version) })
                    .insert(Header { key: headers::LOG_EPOCH, value: Some(&epoch) }),
            );
            // send_result enqueues now; the DeliveryFuture resolves when the broker acks.
            deliveries.push(match self.producer.send_result(record) {
                Ok(delivery) => Some(delivery),
                Err((e, _)) => {
                    tracing::warn!(error = %e, "could not enqueue an event");
                    None
                }
            });
        }
        let mut results: Vec<Result<(), String>> = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            results.push(match delivery {
                None => Err("not enqueued".into()),
                Some(d) => match d.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err((e, _))) => Err(e.to_string()),
                    Err(_) => Err("delivery cancelled".into()),
                },
            });
        }

        // Only the acknowledged prefix leaves the outbox, so order survives a failure.
        let prefix: Vec<i64> =
            pending.iter().zip(&results).take_while(|(_, r)| r.is_ok()).map(|(p, _)| p.position).collect();
        sqlx::query("DELETE FROM eventstore.outbox WHERE position = ANY($1)").bind(&prefix).execute(&self.pool).await?;
        if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
            anyhow::bail!("the broker refused an event after {} deliveries: {e}", prefix.len());
        }
        tracing::debug!(count = prefix.len(), "relayed events");
        Ok(prefix.len())
    }

    /// Re-queues the whole journal when a partition's high watermark went down (the broker
    /// lost its log); otherwise records the watermarks as the new highest seen.
    async fn audit_broker(&self) -> anyhow::Result<()> {
        let seen: Vec<(i32, i64)> =
            sqlx::query_as("SELECT partition, high_watermark FROM eventstore.relay_offsets WHERE topic = $1")
                .bind(&self.topic)
                .fetch_all(&self.pool)
                .await?;
        let held = match self.watermarks().await {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot read the broker's watermarks; will check again");
                return Ok(());
            }
        };
        // Only a topic the broker really lacks counts as gone: one created a moment ago
        // may not be in its metadata yet, and refilling then would publish the whole
        // journal again for nothing.
        if held.is_none() && !runtime::kafka::ensure_topic(&self.brokers, &self.topic, self.partitions).await? {
            return Ok(());
        }
        let Some(shortfall) = lost_log(&seen, held.as_ref()) else {
            if let Some(held) = held {
                let (partitions, highs): (Vec<i32>, Vec<i64>) = held.into_iter().unzip();
                sqlx::query(
                    "INSERT INTO eventstore.relay_offsets (topic, partition, high_watermark)
                     SELECT $1, p, h FROM unnest($2::int[], $3::bigint[]) AS w(p, h)
                     ON CONFLICT (topic, partition)
                     DO UPDATE SET high_watermark = GREATEST(relay_offsets.high_watermark, EXCLUDED.high_watermark)",
                )
                .bind(&self.topic)
                .bind(&partitions)
                .bind(&highs)
                .execute(&self.pool)
                .await?;
            }
            return Ok(());
        };
        tracing::warn!(topic = %self.topic, %shortfall, "the broker lost the event log; republishing the journal");
        runtime::kafka::ensure_topic(&self.brokers, &self.topic, self.partitions).await?;
        let mut tx = self.pool.begin().await?;
        // The command API's statements are bounded by the store deadline; re-queuing a
        // whole journal may rightly take longer (250,000 events took over 5 s here), and
        // cancelled, it would be retried and cancelled for ever while nothing is relayed.
        sqlx::query("SET LOCAL statement_timeout = 0").execute(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO eventstore.outbox (position) SELECT position FROM eventstore.events ON CONFLICT DO NOTHING",
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE eventstore.relay_state SET refills = refills + 1, updated_at = now() WHERE topic = $1")
            .bind(&self.topic)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM eventstore.relay_offsets WHERE topic = $1")
            .bind(&self.topic)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Each partition's high watermark, or None when the topic does not exist.
    async fn watermarks(&self) -> anyhow::Result<Option<BTreeMap<i32, i64>>> {
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            let client = producer.client();
            let timeout = Duration::from_secs(5);
            let metadata = client.fetch_metadata(Some(&topic), timeout)?;
            let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
                return Ok(None);
            };
            if t.error().is_some() || t.partitions().is_empty() {
                return Ok(None);
            }
            let mut held = BTreeMap::new();
            for p in t.partitions() {
                let (_low, high) = client.fetch_watermarks(&topic, p.id(), timeout)?;
                held.insert(p.id(), high);
            }
            Ok(Some(held))
        })
        .await?
    }
}

/// Why the broker lost its log (None: it did not). `seen` is the highest watermark seen per
/// partition since the last fill, `held` the watermarks now (None: no topic).
fn lost_log(seen: &[(i32, i64)], held: Option<&BTreeMap<i32, i64>>) -> Option<String> {
    // A topic that is gone lost whatever it held, even when no watermark above 0 was ever
    // seen: tansu reports the base offset of a partition's last batch as its high
    // watermark, which stayed 0 for a partition holding nine events (and it acknowledges
    // produces to a topic it no longer has).
    let Some(held) = held else { return Some("the topic is gone".into()) };
    if seen.iter().all(|&(_, high)| high == 0) {
        return None; // nothing was ever seen in the topic: nothing that could be lost
    }
    seen.iter().find_map(|&(partition, before)| {
        let now = held.get(&partition).copied().unwrap_or(0);
        (now < before).then(|| format!("partition {partition} ends at {now} but had reached {before}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(highs: &[(i32, i64)]) -> BTreeMap<i32, i64> {
        highs.iter().copied().collect()
    }

    #[test]
    fn a_broker_whose_watermarks_only_grew_has_not_lost_its_log() {
        let seen = [(0, 42), (1, 10), (2, 0)];
        assert_eq!(lost_log(&seen, Some(&held(&[(0, 42), (1, 10), (2, 0)]))), None);
        assert_eq!(lost_log(&seen, Some(&held(&[(0, 50), (1, 500), (2, 3)]))), None);
        // Nothing seen since the last fill, and the topic is there: nothing to miss.
        assert_eq!(lost_log(&[], Some(&held(&[(0, 0)]))), None);
        assert_eq!(lost_log(&[(0, 0)], Some(&held(&[(0, 0)]))), None);
    }

    #[test]
    fn a_restarted_empty_broker_is_noticed() {
        let seen = [(0, 41), (1, 9)];
        assert!(lost_log(&seen, None).is_some(), "no topic");
        assert!(lost_log(&[(0, 0), (1, 0)], None).is_some(), "no topic, though no watermark above 0 was seen");
        assert!(lost_log(&seen, Some(&held(&[(0, 0), (1, 0)]))).is_some(), "empty partitions");
        // Written to again since the restart, but below what it held before.
        assert!(lost_log(&seen, Some(&held(&[(0, 3), (1, 12)]))).is_some());
        assert!(lost_log(&[(0, 1)], Some(&held(&[(0, 0), (1, 0)]))).is_some(), "a single lost message");
    }
}
