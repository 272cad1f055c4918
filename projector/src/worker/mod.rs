//! Runs one projection: read a batch from the log, apply it, then record where it ends.
//!
//! Offsets are recorded (in `projector.checkpoints`) only after the batch is applied, so
//! a crash redelivers at most the batch in flight, which the version guards ignore
//! (at-least-once delivery, exactly-once effect). A poison event is parked with every
//! later event of its stream (a tenant's stream: ids are unique per tenant only); other
//! streams, including other tenants' streams of the same id, keep flowing.
//!
//! The worker assigns itself every partition of the topic instead of joining a consumer
//! group: tansu 0.6's group coordinator can leave a group stuck for good after a member
//! dies (partitions owned by an expired member, or a leader that no longer exists), which
//! stalled projections after repeated crashes. One worker per projection instance holds a
//! lease (`lease`), so a standby projector takes over when the active one dies. Each
//! partition is read with a `LogCursor`, which refuses to step over missing offsets.
//! A watchdog replaces a consumer that has lag and receives nothing.

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
use tokio::time::Instant;

use events::EventEnvelope;

pub mod policy;
mod progress;

pub use policy::{apply_or_park, Ledger, OnTrouble, Recorded, StoreUnavailable, Target, DEFAULT_APPLY_DEADLINE, PACE};
pub use progress::ErrorClass;
use progress::{record_progress, record_recovery, record_restart, Rate};

use crate::event::{Event, Undecodable};
use crate::lease::{Lease, Share};
use crate::log_cursor::{LogCursor, Verdict};
use crate::parking::{ParkingLot, StreamKey};
use crate::projection::{Checkpoint, LogPosition, Projection};

type Consumed = StreamConsumer;

const MAX_BATCH: usize = 500;
/// How long a batch waits for the next message. Short: under load messages queue up in
/// the consumer while a batch is applied, so batches fill without waiting, and a quiet
/// system's lag is not held back (20 ms here was a fifth of the measured idle lag).
const BATCH_WINDOW: Duration = Duration::from_millis(2);
/// How often the watchdog looks at the lease and the partitions' lag.
const WATCH_EVERY: Duration = Duration::from_secs(3);
/// A partition with lag that delivers nothing for this long has a wedged consumer.
const STALLED_AFTER: Duration = Duration::from_secs(12);

pub struct Worker {
    projection: Arc<dyn Projection>,
    parking: Arc<ParkingLot>,
    pool: PgPool,
    brokers: String,
    topic: String,
    group: String,
    fetch_wait: Duration,
    /// Longest one attempt at a batch may take before it counts as the store's trouble.
    apply_deadline: Duration,
    /// This process's part of the leases (see `lease`).
    share: Arc<Share>,
}

/// Why a worker put its consumer down and starts again.
#[derive(Debug, thiserror::Error)]
enum Restart {
    #[error("offsets {expected}.. of partition {partition} did not arrive; reading again from {from}")]
    Gap { partition: i32, expected: i64, from: i64 },
    #[error("{0}")]
    Stalled(String),
    #[error("the lease's database connection was lost")]
    LeaseLost,
    #[error("this projector holds more than its share of the leases; another one takes this")]
    HandedBack,
    #[error("{0:#}")]
    Failed(#[from] anyhow::Error),
}

impl Restart {
    fn reason(&self) -> &'static str {
        match self {
            Restart::Gap { .. } => "gap",
            Restart::Stalled(_) => "stalled",
            Restart::LeaseLost => "lease_lost",
            Restart::HandedBack => "handed_back",
            Restart::Failed(_) => "failed",
        }
    }
}

impl From<sqlx::Error> for Restart {
    fn from(e: sqlx::Error) -> Self {
        Restart::Failed(e.into())
    }
}

impl From<KafkaError> for Restart {
    fn from(e: KafkaError) -> Self {
        Restart::Failed(e.into())
    }
}

impl Worker {
    /// A worker for `projection`, reading the broker and topic of `settings` under the
    /// group `<kafka_group_prefix>.<projection>`.
    pub fn new(
        projection: Arc<dyn Projection>,
        parking: Arc<ParkingLot>,
        pool: PgPool,
        share: Arc<Share>,
        settings: &runtime::Settings,
    ) -> Self {
        let group = format!("{}.{}", settings.kafka_group_prefix, projection.name());
        Self {
            projection,
            parking,
            pool,
            brokers: settings.kafka_brokers.clone(),
            topic: settings.kafka_topic.clone(),
            group,
            fetch_wait: settings.kafka_fetch_wait,
            apply_deadline: settings.apply_deadline,
            share,
        }
    }

    fn consumer(&self) -> anyhow::Result<Consumed> {
        runtime::kafka::client_config(&self.brokers)
            // Names the client in the broker's logs; no group is joined (see the module).
            .set("group.id", &self.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // A checkpoint beyond the end of a log that was refilled from 0: read it all.
            .set("auto.offset.reset", "earliest")
            .set("topic.metadata.refresh.interval.ms", "2000")
            // See Settings::kafka_fetch_wait: the lag of a quiet system on tansu.
            .set("fetch.wait.max.ms", self.fetch_wait.as_millis().to_string())
            // librdkafka 2.12 crashes on a Fetch answer that names no topic, which tansu
            // sends once it restarted empty; a consumer that lost its broker is therefore
            // replaced (see `consume`) before it would reconnect with stale topic ids.
            .set("reconnect.backoff.ms", "5000")
            .set("reconnect.backoff.max.ms", "10000")
            .create()
            .context("creating a Kafka consumer")
    }

    /// Consumes until `stop` turns true or the task is dropped. Nothing but `stop` ends
    /// it: a lost broker, a failing store, a wedged fetch or a gap in the log replace the
    /// consumer and carry on from the checkpoints, after a pause that grows while the
    /// failures go on.
    pub async fn run_until_stopped(self, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
        let name = self.projection.name();
        let mut cursor = LogCursor::default();
        let restart_pauses = || runtime::retry::delays(Duration::from_millis(200), Duration::from_secs(5));
        let mut pauses = restart_pauses();
        loop {
            let Some(lease) = self.take_lease(&mut stop).await else { return Ok(()) };
            let started = Instant::now();
            match self.consume(lease, &mut cursor, &mut stop).await {
                Ok(()) => {
                    tracing::info!(projection = name, "projection stopped");
                    return Ok(());
                }
                Err(Restart::HandedBack) => {
                    tracing::info!(projection = name, "lease handed back to another projector");
                    metrics::counter!("projection_leases_handed_back_total", "projection" => name).increment(1);
                }
                Err(restart) => {
                    tracing::warn!(projection = name, reason = restart.reason(), error = %restart, "restarting the consumer");
                    metrics::counter!("projection_consumer_restarts_total", "projection" => name, "reason" => restart.reason())
                        .increment(1);
                    record_restart(&self.pool, &self.group, &restart.to_string()).await;
                    // A gap is mended at once; anything else may be an outage: back off.
                    if started.elapsed() > Duration::from_secs(30) || matches!(restart, Restart::Gap { .. }) {
                        pauses = restart_pauses();
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(pauses.next().unwrap_or(Duration::from_secs(5))) => {}
                        _ = stop.wait_for(|stopped| *stopped) => return Ok(()),
                    }
                }
            }
        }
    }

    /// Waits for the projection's lease (None once stopped).
    async fn take_lease(&self, stop: &mut watch::Receiver<bool>) -> Option<Lease> {
        let mut said = false;
        let mut connection = None;
        loop {
            if *stop.borrow() {
                return None;
            }
            match Lease::try_take(&self.pool, &self.group, self.projection.name(), &self.share, &mut connection).await {
                Ok(Some(lease)) => return Some(lease),
                Ok(None) if !said => {
                    tracing::info!(
                        projection = self.projection.name(),
                        "another projector runs this projection, or this one runs its share; standing by"
                    );
                    said = true;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(projection = self.projection.name(), error = %e, "cannot take the lease"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.wait_for(|stopped| *stopped) => return None,
            }
        }
    }

    /// Reads every partition from its checkpoint (a little before it, see `log_cursor`)
    /// and applies what arrives, until stopped (Ok) or a reason to restart (Err).
    async fn consume(
        &self,
        mut lease: Lease,
        cursor: &mut LogCursor,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), Restart> {
        let consumer = ClosedInBackground(Some(Arc::new(self.consumer()?)));
        let consumer = consumer.get();
        let partitions = partitions(consumer.clone(), &self.topic).await?;
        // A checkpoint of an older log epoch points into a log that is gone: the refilled
        // one is read from its start (offsets there mean nothing to the old checkpoint).
        let epoch: i32 = sqlx::query_scalar("SELECT refills FROM eventstore.relay_state WHERE topic = $1")
            .bind(&self.topic)
            .fetch_optional(&self.pool)
            .await?
            .unwrap_or(0);
        let checkpoints: BTreeMap<i32, LogPosition> = crate::checkpoint::load(&self.pool, &self.group, &self.topic)
            .await?
            .into_iter()
            .filter(|(_, at)| at.epoch >= epoch)
            .collect();
        let mut assignment = TopicPartitionList::new();
        for (partition, from) in cursor.start(&partitions, &checkpoints) {
            assignment.add_partition_offset(&self.topic, partition, Offset::Offset(from))?;
        }
        consumer.assign(&assignment)?;
        tracing::info!(projection = self.projection.name(), group = %self.group, ?checkpoints, "projection consuming");

        let mut parked: HashSet<StreamKey> = self.parking.parked_streams(self.projection.name()).await?;
        let mut heard: BTreeMap<i32, Instant> = partitions.iter().map(|p| (*p, Instant::now())).collect();
        let mut watched = Instant::now();
        let mut failing_since: Option<Instant> = None;
        let mut rate = Rate::default();
        loop {
            if watched.elapsed() >= WATCH_EVERY {
                watched = Instant::now();
                self.watch(consumer.clone(), &mut lease, cursor, &heard).await?;
            }
            // Stop only between batches: a batch is applied and its checkpoint saved, or neither.
            let next = tokio::select! {
                next = tokio::time::timeout(WATCH_EVERY, next_batch(consumer)) => next,
                _ = stop.wait_for(|stopped| *stopped) => return Ok(()),
            };
            let batch = match next {
                Err(_idle) => continue,
                Ok(Ok(batch)) => {
                    failing_since = None;
                    batch
                }
                Ok(Err(e)) if lost_broker(&e) => return Err(anyhow::anyhow!("lost the broker: {e}").into()),
                Ok(Err(e)) => {
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    tracing::debug!(error = %e, "consumer error");
                    if since.elapsed() > Duration::from_secs(10) {
                        return Err(anyhow::anyhow!("the consumer has failed for 10s: {e}").into());
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let received = std::time::Instant::now();
            let mut gap = None;
            let mut fresh = Vec::with_capacity(batch.len());
            let mut advanced = HashSet::new();
            for message in batch.into_iter().filter(|m| m.topic() == self.topic) {
                heard.insert(message.partition(), Instant::now());
                match cursor.observe(message.partition(), message.offset(), log_epoch(&message)) {
                    Verdict::Apply => {
                        advanced.insert(message.partition());
                        fresh.push(message);
                    }
                    Verdict::Duplicate => {}
                    Verdict::Gap { expected, from } => {
                        metrics::counter!("projection_offset_gaps_total", "projection" => self.projection.name())
                            .increment(1);
                        gap.get_or_insert(Restart::Gap { partition: message.partition(), expected, from });
                    }
                }
            }
            let checkpoint = Checkpoint {
                group: self.group.clone(),
                topic: self.topic.clone(),
                positions: advanced.iter().filter_map(|p| Some((*p, cursor.position(*p)?))).collect(),
            };
            if !fresh.is_empty() {
                self.apply_batch(fresh, &checkpoint, &mut parked, &mut rate, received).await?;
                // Time spent applying is not time the partitions were quiet.
                let now = Instant::now();
                for at in heard.values_mut() {
                    *at = (*at + received.elapsed()).min(now);
                }
            }
            if let Some(gap) = gap {
                return Err(gap);
            }
        }
    }

    /// Applies one batch of new messages, again and again while its store is in trouble:
    /// between attempts no lock or transaction is held, so operators are never stuck
    /// behind a store that does not answer.
    async fn apply_batch(
        &self,
        fresh: Vec<OwnedMessage>,
        checkpoint: &Checkpoint,
        parked: &mut HashSet<StreamKey>,
        rate: &mut Rate,
        received: std::time::Instant,
    ) -> Result<(), Restart> {
        let mut backoff = runtime::retry::delays(Duration::from_millis(100), Duration::from_secs(5));
        let mut since: Option<Instant> = None;
        loop {
            match self.try_batch(&fresh, checkpoint, parked, rate, received).await {
                Err(Restart::Failed(e)) if e.is::<StoreUnavailable>() => {
                    let retry_in = backoff.next().unwrap_or(Duration::from_secs(5));
                    let since = *since.get_or_insert_with(Instant::now);
                    tracing::warn!(
                        projection = self.projection.name(),
                        error = %format!("{e:#}"),
                        ?retry_in,
                        unavailable_for = ?since.elapsed(),
                        "store unavailable; the batch waits, holding nothing"
                    );
                    tokio::time::sleep(retry_in).await;
                }
                Ok(()) => {
                    if since.is_some() {
                        record_recovery(&self.pool, &self.group).await;
                    }
                    return Ok(());
                }
                Err(other) => return Err(other),
            }
        }
    }

    /// Decodes, applies (or parks) and checkpoints one batch of new messages, holding the
    /// projection's lock shared; gives the store's trouble back as `StoreUnavailable`.
    async fn try_batch(
        &self,
        fresh: &[OwnedMessage],
        checkpoint: &Checkpoint,
        parked: &mut HashSet<StreamKey>,
        rate: &mut Rate,
        received: std::time::Instant,
    ) -> Result<(), Restart> {
        // Operator commands (a rebuild's switch, a parked retry) wait for this batch.
        let mut hold = crate::control::shared(&self.pool, self.projection.name()).await?;
        if !parked.is_empty() {
            // An operator may have retried or skipped a parked stream since.
            *parked = self.parking.parked_streams(self.projection.name()).await?;
        }
        let events = self.decode(fresh, parked).await?;
        let last = events.last().map(|e| (e.envelope.position, e.envelope.occurred_at));
        let count = events.len();
        let target = Target {
            projection: &*self.projection,
            deadline: self.apply_deadline,
            on_trouble: OnTrouble::GiveBack,
            pace: PACE,
        };
        let ledger = Recorded { parking: &self.parking, pool: &self.pool, group: &self.group };
        let applied = apply_or_park(target, &ledger, events, checkpoint, parked).await?;
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
        record_progress(&mut hold, &self.group, checkpoint, count, rate.per_second(), last).await?;
        // The PostgreSQL projection saved the checkpoint with its rows; the other stores'
        // is saved here, after their writes (and any store's, when nothing was applied:
        // the batch was all parked or undecodable).
        if !(applied && self.projection.commits_checkpoint()) {
            crate::checkpoint::save(&mut hold, checkpoint).await?;
        }
        // Reads waiting for this batch look again once it commits (the query API listens).
        if count > 0 {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(runtime::position::PROGRESS_CHANNEL)
                .bind(self.projection.name().parse::<crate::stores::ProjectionName>().map_or("all", |p| p.store_name()))
                .execute(&mut *hold)
                .await?;
        }
        hold.commit().await?;
        Ok(())
    }

    /// The watchdog: the lease must still hold, and a partition with lag must deliver.
    async fn watch(
        &self,
        consumer: Arc<Consumed>,
        lease: &mut Lease,
        cursor: &LogCursor,
        heard: &BTreeMap<i32, Instant>,
    ) -> Result<(), Restart> {
        if !lease.holds().await {
            return Err(Restart::LeaseLost);
        }
        if lease.hand_back() {
            return Err(Restart::HandedBack);
        }
        let topic = self.topic.clone();
        let expected = cursor.expected();
        let partitions: Vec<i32> = expected.keys().copied().collect();
        let highs = tokio::task::spawn_blocking(move || {
            partitions
                .into_iter()
                .map(|p| Ok((p, consumer.fetch_watermarks(&topic, p, Duration::from_secs(2))?.1)))
                .collect::<Result<BTreeMap<i32, i64>, KafkaError>>()
        })
        .await
        .map_err(|e| anyhow::anyhow!("watermark task: {e}"))?;
        let Ok(highs) = highs else {
            return Ok(()); // the broker is away; the consumer reports that itself
        };
        for (partition, high) in highs {
            let next = expected.get(&partition).copied().unwrap_or(0);
            let quiet = heard.get(&partition).map_or(Duration::MAX, |at| at.elapsed());
            if high > next && quiet > STALLED_AFTER {
                return Err(Restart::Stalled(format!(
                    "partition {partition} has {} unread messages and delivered nothing for {}s",
                    high - next,
                    quiet.as_secs()
                )));
            }
        }
        Ok(())
    }

    /// Decodes a batch; unreadable events and events of parked streams are parked.
    async fn decode(&self, batch: &[OwnedMessage], parked: &mut HashSet<StreamKey>) -> anyhow::Result<Vec<Event>> {
        let mut events = Vec::with_capacity(batch.len());
        let envelopes: Vec<(&[u8], Result<EventEnvelope, Undecodable>)> = batch
            .iter()
            .map(|message| {
                let raw = message.payload().unwrap_or_default();
                (raw, Event::envelope_of(raw))
            })
            .collect();
        let wanted = envelopes.iter().filter_map(|(_, e)| e.as_ref().ok());
        let keys = crate::event::keys_for(&self.pool, wanted, self.projection.keeps_requests()).await?;
        for (raw, envelope) in envelopes {
            match envelope.and_then(|e| Event::from_envelope(e, &keys)) {
                Ok(event) if parked.contains(&StreamKey::of(&event.envelope)) => {
                    self.parking
                        .park(
                            self.projection.name(),
                            Some(&event.as_stored()),
                            raw,
                            "an earlier event of this stream is parked",
                        )
                        .await?;
                }
                Ok(event) => events.push(event),
                Err(undecodable) => {
                    if let Some(e) = &undecodable.envelope {
                        parked.insert(StreamKey::of(e));
                    }
                    let envelope = undecodable.envelope.as_deref();
                    self.parking.park(self.projection.name(), envelope, raw, &undecodable.reason).await?;
                }
            }
        }
        Ok(events)
    }
}

/// The topic's partitions, from the broker's metadata.
async fn partitions(consumer: Arc<Consumed>, topic: &str) -> Result<Vec<i32>, Restart> {
    let topic = topic.to_owned();
    let partitions = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<i32>> {
        let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(5))?;
        let found = metadata.topics().iter().find(|t| t.name() == topic && t.error().is_none());
        let partitions: Vec<i32> = found.map(|t| t.partitions().iter().map(|p| p.id()).collect()).unwrap_or_default();
        anyhow::ensure!(!partitions.is_empty(), "the broker has no topic {topic}");
        Ok(partitions)
    })
    .await
    .map_err(|e| anyhow::anyhow!("metadata task: {e}"))??;
    Ok(partitions)
}

/// Closing a consumer blocks, for long if its broker is gone;
/// this closes it on a thread of its own, also when the worker task is aborted.
struct ClosedInBackground(Option<Arc<Consumed>>);

impl ClosedInBackground {
    fn get(&self) -> &Arc<Consumed> {
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
