//! Runs one projection: consume a batch, apply it, then store the offsets.
//!
//! Offsets are stored only after the batch is applied, so a crash redelivers at most
//! the batch in flight, which the version guards ignore (at-least-once delivery,
//! exactly-once effect). A poison event is parked with every later event of its stream;
//! other streams keep flowing.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Headers;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use sqlx::PgPool;
use tokio::sync::watch;
use uuid::Uuid;

use crate::event::Event;
use crate::parking::ParkingLot;
use crate::projection::{ApplyError, Checkpoint, LogPosition, Projection};

type Consumed = StreamConsumer;

/// Where the store says it is, per partition; messages before it were applied already.
type Applied = BTreeMap<i32, LogPosition>;

const MAX_BATCH: usize = 500;
/// How long a batch waits for the next message. Short: under load messages queue up in
/// the consumer while a batch is applied, so batches fill without waiting, and a quiet
/// system's lag is not held back (20 ms here was a fifth of the measured idle lag).
const BATCH_WINDOW: Duration = Duration::from_millis(2);

pub struct Worker {
    projection: Arc<dyn Projection>,
    parking: Arc<ParkingLot>,
    pool: PgPool,
    brokers: String,
    topic: String,
    group: String,
    fetch_wait: Duration,
}

impl Worker {
    pub fn new(
        projection: Arc<dyn Projection>,
        parking: Arc<ParkingLot>,
        pool: PgPool,
        brokers: &str,
        topic: &str,
        group_prefix: &str,
        fetch_wait: Duration,
    ) -> Self {
        let group = format!("{group_prefix}.{}", projection.name());
        Self { projection, parking, pool, brokers: brokers.to_owned(), topic: topic.to_owned(), group, fetch_wait }
    }

    fn consumer(&self) -> anyhow::Result<Consumed> {
        let consumer: Consumed = runtime::kafka::client_config(&self.brokers)
            .set("group.id", &self.group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "500")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("topic.metadata.refresh.interval.ms", "2000")
            // See Settings::kafka_fetch_wait: the lag of a quiet system on tansu.
            .set("fetch.wait.max.ms", self.fetch_wait.as_millis().to_string())
            // librdkafka 2.12 crashes on a Fetch answer that names no topic, which tansu
            // sends once it restarted empty; a consumer that lost its broker is therefore
            // replaced (see `consume`) before it would reconnect with stale topic ids.
            .set("reconnect.backoff.ms", "5000")
            .set("reconnect.backoff.max.ms", "10000")
            // A lost member (a killed projector) is noticed in seconds, not 45 s.
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            // Also the rebalance timeout: a member that stopped polling (a consumer still
            // closing after its broker died) holds up the group for this long at most.
            .set("max.poll.interval.ms", "10000")
            .create()
            .context("creating a Kafka consumer")?;
        consumer.subscribe(&[&self.topic]).context("subscribing to the events topic")?;
        Ok(consumer)
    }

    /// Consumes until `stop` turns true (then leaves the consumer group cleanly, so a
    /// restarted projector is assigned its partitions at once) or the task is dropped. A consumer that keeps failing (a broker that
    /// restarted, a topic that was re-created) is rebuilt; it then resumes from the
    /// group's committed offsets, or from the start of the log if the broker lost them.
    pub async fn run_until_stopped(self, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
        let mut parked: HashSet<Uuid> =
            self.parking.parked_streams(self.projection.name()).await?.into_iter().collect();
        loop {
            let mut consumer = ClosedInBackground(Some(self.consumer()?));
            let applied = self.projection.checkpoints(&self.group, &self.topic).await?.unwrap_or_default();
            tracing::info!(projection = self.projection.name(), group = %self.group, "projection consuming");
            let outcome = self.consume(consumer.get(), &applied, &mut parked, &mut stop).await;
            match outcome {
                Ok(()) => {
                    if let Some(c) = consumer.0.take() {
                        let closing = tokio::task::spawn_blocking(move || drop(c));
                        let _ = tokio::time::timeout(Duration::from_secs(10), closing).await;
                    }
                    tracing::info!(projection = self.projection.name(), "projection stopped");
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(projection = self.projection.name(), error = %e, "consumer failed; rebuilding it");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    async fn consume(
        &self,
        consumer: &Consumed,
        applied: &Applied,
        parked: &mut HashSet<Uuid>,
        stop: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let mut failing_since: Option<tokio::time::Instant> = None;
        let mut rate = Rate::default();
        loop {
            // Stop only between batches: a batch is applied and its offsets stored, or neither.
            let next = tokio::select! {
                next = next_batch(consumer) => next,
                _ = stop.wait_for(|stopped| *stopped) => return Ok(()),
            };
            let batch = match next {
                Ok(batch) => {
                    failing_since = None;
                    batch
                }
                Err(e) if lost_broker(&e) => anyhow::bail!("lost the broker: {e}"),
                Err(e) => {
                    let since = *failing_since.get_or_insert_with(tokio::time::Instant::now);
                    tracing::debug!(error = %e, "consumer error");
                    if since.elapsed() > Duration::from_secs(10) {
                        anyhow::bail!("the consumer has failed for 10s: {e}");
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let received = std::time::Instant::now();
            let checkpoint = self.checkpoint_of(&batch);
            let fresh: Vec<OwnedMessage> = batch.into_iter().filter(|m| !already_applied(applied, m)).collect();
            // Operator commands (a rebuild's switch, a parked retry) wait for this batch.
            let mut hold = crate::control::shared(&self.pool, self.projection.name()).await?;
            if !parked.is_empty() {
                // An operator may have retried or skipped a parked stream since.
                *parked = self.parking.parked_streams(self.projection.name()).await?.into_iter().collect();
            }
            let events = self.decode(&fresh, parked).await?;
            let last = events.last().map(|e| (e.envelope.position, e.envelope.occurred_at));
            let count = events.len();
            apply_or_park(&*self.projection, &self.parking, events, &checkpoint, parked, &self.group, &self.pool)
                .await?;
            metrics::histogram!("projection_batch_events", "projection" => self.projection.name()).record(count as f64);
            metrics::histogram!("projection_batch_seconds", "projection" => self.projection.name())
                .record(received.elapsed().as_secs_f64());
            if let Some((_, occurred_at)) = last {
                let since_event = (chrono::Utc::now() - occurred_at).num_milliseconds();
                let applying = received.elapsed().as_millis() as i64;
                tracing::debug!(projection = self.projection.name(), count, since_event, applying, "applied a batch");
            }
            metrics::counter!("projection_events_applied_total", "projection" => self.projection.name())
                .increment(count as u64);
            rate.record(count);
            record_progress(&mut hold, &self.group, &checkpoint, count, rate.per_second(), last).await?;
            hold.commit().await?;
            store_offsets(consumer, &checkpoint)?;
        }
    }

    /// Decodes a batch; unreadable events and events of parked streams are parked.
    async fn decode(&self, batch: &[OwnedMessage], parked: &mut HashSet<Uuid>) -> anyhow::Result<Vec<Event>> {
        let mut events = Vec::with_capacity(batch.len());
        for message in batch {
            let raw = message.payload().unwrap_or_default();
            match Event::from_payload(raw) {
                Ok(event) if parked.contains(&event.envelope.stream_id) => {
                    self.parking
                        .park(
                            self.projection.name(),
                            Some(&event.envelope),
                            raw,
                            "an earlier event of this stream is parked",
                        )
                        .await?;
                }
                Ok(event) => events.push(event),
                Err(undecodable) => {
                    if let Some(e) = &undecodable.envelope {
                        parked.insert(e.stream_id);
                    }
                    let envelope = undecodable.envelope.as_deref();
                    self.parking.park(self.projection.name(), envelope, raw, &undecodable.reason).await?;
                }
            }
        }
        Ok(events)
    }

    fn checkpoint_of(&self, batch: &[OwnedMessage]) -> Checkpoint {
        let mut positions: BTreeMap<i32, LogPosition> = BTreeMap::new();
        for m in batch.iter().filter(|m| m.topic() == self.topic) {
            let next = LogPosition { next_offset: m.offset() + 1, epoch: log_epoch(m) };
            let entry = positions.entry(m.partition()).or_insert(next);
            if next.next_offset >= entry.next_offset {
                *entry = next;
            }
        }
        Checkpoint { group: self.group.clone(), topic: self.topic.clone(), positions }
    }
}

/// Applies a batch; a poison event is parked with every later event of its stream in the
/// batch (and the stream is remembered as parked), and the rest is applied again. A
/// transient failure is retried with backoff until it passes. The worker and a replay
/// share this.
pub async fn apply_or_park(
    projection: &dyn Projection,
    parking: &ParkingLot,
    mut events: Vec<Event>,
    checkpoint: &Checkpoint,
    parked: &mut HashSet<Uuid>,
    group: &str,
    pool: &PgPool,
) -> anyhow::Result<()> {
    let mut backoff = Duration::from_millis(100);
    while !events.is_empty() {
        match projection.apply(&events, checkpoint).await {
            Ok(()) => return Ok(()),
            Err(ApplyError::Poison { event_id, reason }) => {
                let Some(stream) =
                    events.iter().find(|e| e.envelope.event_id == event_id).map(|e| e.envelope.stream_id)
                else {
                    anyhow::bail!("projection {} named a poison event not in the batch", projection.name());
                };
                parked.insert(stream);
                // The poison event and everything after it in its stream wait together.
                let mut blocked = false;
                let mut kept = Vec::with_capacity(events.len());
                for event in events {
                    if event.envelope.stream_id == stream && (blocked || event.envelope.event_id == event_id) {
                        blocked = true;
                        let why = if event.envelope.event_id == event_id {
                            reason.clone()
                        } else {
                            "an earlier event of this stream is parked".to_owned()
                        };
                        let raw = serde_json::to_vec(&event.envelope)?;
                        parking.park(projection.name(), Some(&event.envelope), &raw, &why).await?;
                    } else {
                        kept.push(event);
                    }
                }
                events = kept;
            }
            Err(ApplyError::Transient(e)) => {
                tracing::warn!(projection = projection.name(), error = ?e, retry_in = ?backoff, "apply failed");
                record_error(pool, group, &format!("{e:#}")).await;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    Ok(())
}

/// Events per second over the last few batches (an exponentially weighted average).
#[derive(Default)]
struct Rate {
    since: Option<std::time::Instant>,
    per_second: f64,
}

impl Rate {
    fn record(&mut self, events: usize) {
        let now = std::time::Instant::now();
        if let Some(since) = self.since {
            let seconds = now.duration_since(since).as_secs_f64().max(1e-3);
            let sample = events as f64 / seconds;
            // Idle gaps count too: a projection that stopped receiving decays to 0.
            let weight = (seconds / 10.0).min(1.0);
            self.per_second += (sample - self.per_second) * weight.max(0.1);
        }
        self.since = Some(now);
    }

    fn per_second(&self) -> f64 {
        self.per_second
    }
}

/// The worker's row in `projector.progress`, written in the batch's lock transaction.
async fn record_progress(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    group: &str,
    checkpoint: &Checkpoint,
    applied: usize,
    per_second: f64,
    last: Option<(i64, chrono::DateTime<chrono::Utc>)>,
) -> anyhow::Result<()> {
    let positions: serde_json::Map<String, serde_json::Value> =
        checkpoint.positions.iter().map(|(p, at)| (p.to_string(), at.next_offset.into())).collect();
    sqlx::query(
        "INSERT INTO projector.progress AS p (projection, positions, events_applied, events_per_sec, last_position,
                last_event_at, last_batch_at)
         VALUES ($1, $2, $3, $4, COALESCE($5, 0), $6, now())
         ON CONFLICT (projection) DO UPDATE SET
             positions = p.positions || EXCLUDED.positions,
             events_applied = p.events_applied + EXCLUDED.events_applied,
             events_per_sec = EXCLUDED.events_per_sec,
             last_position = GREATEST(p.last_position, EXCLUDED.last_position),
             last_event_at = COALESCE(EXCLUDED.last_event_at, p.last_event_at),
             last_batch_at = now()",
    )
    .bind(group)
    .bind(serde_json::Value::Object(positions))
    .bind(applied as i64)
    .bind(per_second)
    .bind(last.map(|(position, _)| position))
    .bind(last.map(|(_, at)| at))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Keeps the latest failure visible to `status` (best effort: the store may be the
/// thing that is down, and PostgreSQL with it).
async fn record_error(pool: &PgPool, group: &str, error: &str) {
    let recorded = sqlx::query(
        "INSERT INTO projector.progress (projection, last_error, last_error_at) VALUES ($1, $2, now())
         ON CONFLICT (projection) DO UPDATE SET last_error = EXCLUDED.last_error, last_error_at = now()",
    )
    .bind(group)
    .bind(error)
    .execute(pool)
    .await;
    if let Err(e) = recorded {
        tracing::debug!(error = %e, "could not record the projection's error");
    }
}

/// Closing a consumer blocks while it leaves its group, for long if its broker is gone;
/// this closes it on a thread of its own, also when the worker task is aborted.
struct ClosedInBackground(Option<Consumed>);

impl ClosedInBackground {
    fn get(&self) -> &Consumed {
        self.0.as_ref().expect("present until dropped")
    }
}

impl Drop for ClosedInBackground {
    fn drop(&mut self) {
        if let Some(consumer) = self.0.take() {
            std::thread::spawn(move || drop(consumer));
        }
    }
}

/// A broker that went away may come back empty, so the consumer is rebuilt rather than
/// left to reconnect (see the reconnect settings in `Worker::consumer`).
fn lost_broker(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure)
    )
}

/// Waits for one message, then takes whatever else arrives within a short window.
async fn next_batch(consumer: &Consumed) -> Result<Vec<OwnedMessage>, KafkaError> {
    let first = consumer.recv().await?.detach();
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match tokio::time::timeout(BATCH_WINDOW, consumer.recv()).await {
            Ok(Ok(m)) => batch.push(m.detach()),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "consumer error inside a batch");
                break;
            }
            Err(_) => break,
        }
    }
    Ok(batch)
}

/// Marks the batch consumed; the auto-commit sends it to the broker shortly after.
fn store_offsets(consumer: &Consumed, checkpoint: &Checkpoint) -> anyhow::Result<()> {
    let mut list = TopicPartitionList::new();
    for (partition, position) in &checkpoint.positions {
        list.add_partition_offset(&checkpoint.topic, *partition, Offset::Offset(position.next_offset))?;
    }
    if let Err(e) = consumer.store_offsets(&list) {
        // After a rebalance the partition may belong to someone else: they re-apply it.
        tracing::debug!(error = %e, "could not store offsets");
    }
    Ok(())
}

/// The relay's refill count when it published the message: offsets of one log epoch
/// mean nothing in another (a broker that lost its log is refilled from offset 0).
fn log_epoch(message: &OwnedMessage) -> i32 {
    message
        .headers()
        .and_then(|h| h.iter().find(|h| h.key == events::envelope::headers::LOG_EPOCH))
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
        .unwrap_or(0)
}

/// True when the store committed this message with an earlier batch: the broker's
/// offsets are committed a moment after the store's checkpoint, so a restart can
/// redeliver what the store already holds.
fn already_applied(applied: &Applied, message: &OwnedMessage) -> bool {
    applied.get(&message.partition()).is_some_and(|p| p.epoch == log_epoch(message) && message.offset() < p.next_offset)
}
