//! What a projection's failures come to (the failure policy): the worker, a replay, a
//! rebuild and a repair hand their batches to `apply_or_park`, which retries the store's
//! own troubles, finds and parks the one event a store refuses (with the rest of its
//! stream), and applies the others, recording what it did in a `Ledger`.

use std::collections::HashSet;
use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

use super::progress::{record_error, record_recovery, ErrorClass};
use crate::event::Event;
use crate::parking::{ParkingLot, StreamKey};
use crate::projection::{ApplyError, Checkpoint, Projection};

/// Where the policy records what it did: failures (shown by `status`), a recovery, and
/// the events it parks.
#[async_trait::async_trait]
pub trait Ledger: Send + Sync {
    /// The latest failure, and whether it is retried (transient) or parked (deterministic).
    async fn failed(&self, error: &str, class: ErrorClass);
    /// The projection applies again after failures.
    async fn recovered(&self);
    /// Keeps an event the projection cannot apply, with why.
    async fn park(&self, projection: &str, event: &events::EventEnvelope, raw: &[u8], why: &str) -> anyhow::Result<()>;
}

/// The ledger in PostgreSQL: `projector.progress` for the consumer group `group`, and the
/// parking lot.
pub struct Recorded<'a> {
    pub parking: &'a ParkingLot,
    pub pool: &'a PgPool,
    pub group: &'a str,
}

#[async_trait::async_trait]
impl Ledger for Recorded<'_> {
    async fn failed(&self, error: &str, class: ErrorClass) {
        record_error(self.pool, self.group, error, class).await;
    }

    async fn recovered(&self) {
        record_recovery(self.pool, self.group).await;
    }

    async fn park(&self, projection: &str, event: &events::EventEnvelope, raw: &[u8], why: &str) -> anyhow::Result<()> {
        self.parking.park(projection, Some(event), raw, why).await
    }
}

/// A store did not answer (or answered trouble) while a worker applied a batch: the
/// worker lets go of its lock and transaction, waits, and tries the batch again.
#[derive(Debug, thiserror::Error)]
#[error("the store is unavailable: {0:#}")]
pub struct StoreUnavailable(anyhow::Error);

/// What `apply_or_park` does when the store is in trouble.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnTrouble {
    /// Retry in place, with backoff, until the store answers (replays and repairs).
    Wait,
    /// Return `StoreUnavailable` at once, so the caller releases what it holds first.
    GiveBack,
}

/// Longest an attempt at a batch may take where no setting says otherwise (replays,
/// repairs): past it the attempt counts as the store's trouble.
pub const DEFAULT_APPLY_DEADLINE: Duration = Duration::from_secs(30);
/// The first wait between two attempts at a batch (and between attempts at one event).
pub const PACE: Duration = Duration::from_millis(100);
/// Longest a store's health probe may take.
const HEALTH_DEADLINE: Duration = Duration::from_secs(3);

/// A projection as `apply_or_park` drives it: each attempt bounded by `deadline`.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub projection: &'a dyn Projection,
    pub deadline: Duration,
    pub on_trouble: OnTrouble,
    /// The first wait between attempts (`PACE`; retries back off to 50 times it).
    pub pace: Duration,
}

impl<'a> Target<'a> {
    /// Retrying in place (replays, repairs, rebuilds), with the default deadline.
    pub fn waiting(projection: &'a dyn Projection) -> Self {
        Self { projection, deadline: DEFAULT_APPLY_DEADLINE, on_trouble: OnTrouble::Wait, pace: PACE }
    }

    /// One attempt; no answer within the deadline is the store's trouble (transient).
    pub(crate) async fn attempt(&self, events: &[Event], checkpoint: &Checkpoint) -> Result<(), ApplyError> {
        match tokio::time::timeout(self.deadline, self.projection.apply(events, checkpoint)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(ApplyError::Transient(anyhow::anyhow!(
                "{} did not finish applying {} events within {:?}",
                self.projection.name(),
                events.len(),
                self.deadline
            ))),
        }
    }

    async fn healthy(&self) -> anyhow::Result<()> {
        match tokio::time::timeout(HEALTH_DEADLINE, self.projection.healthy()).await {
            Ok(health) => health,
            Err(_) => anyhow::bail!("no answer to the health probe within {HEALTH_DEADLINE:?}"),
        }
    }
}

/// Unexplained failures of one batch, while its store answers its health probe, before
/// the worker looks for the event behind them.
const ATTEMPTS_WHILE_HEALTHY: u32 = 8;
/// Attempts at one event on its own before it is parked.
const ATTEMPTS_ALONE: u32 = 3;

/// Applies a batch; a poison event is parked with every later event of its stream in the
/// batch (and the stream is remembered as parked), and the rest is applied again. True
/// when the projection applied what was left (and so recorded `checkpoint`, if it does);
/// false when nothing is left to apply (the caller records the checkpoint). The worker, a
/// replay and a repair share this.
///
/// The store's own troubles (`ApplyError::Transient`) are retried with backoff for as
/// long as they last, the projection shown as retrying in `status`. An unexplained error
/// that repeats while the store answers its health probe is no outage: after
/// `ATTEMPTS_WHILE_HEALTHY` of them the events are applied one by one, in order and
/// without the checkpoint (every store ignores what it holds, so nothing is skipped if
/// this is interrupted), and one that fails `ATTEMPTS_ALONE` times on its own is parked
/// like a poison event. No event can hold a projection back for every tenant.
pub async fn apply_or_park(
    target: Target<'_>,
    ledger: &dyn Ledger,
    mut events: Vec<Event>,
    checkpoint: &Checkpoint,
    parked: &mut HashSet<StreamKey>,
) -> anyhow::Result<bool> {
    let projection = target.projection;
    let mut backoff = runtime::retry::delays(target.pace, target.pace * 50);
    let mut unexplained_while_healthy = 0;
    let mut retrying = false;
    while !events.is_empty() {
        let (event_id, reason) = match target.attempt(&events, checkpoint).await {
            Ok(()) => {
                if retrying {
                    ledger.recovered().await;
                }
                return Ok(true);
            }
            Err(ApplyError::Poison { event_id, reason }) => (event_id, reason),
            Err(ApplyError::Transient(e)) if target.on_trouble == OnTrouble::GiveBack => {
                ledger.failed(&format!("store unavailable: {e:#}"), ErrorClass::Transient).await;
                return Err(StoreUnavailable(e).into());
            }
            Err(ApplyError::Transient(e)) => {
                retry_later(projection, ledger, &e, &mut backoff).await;
                retrying = true;
                continue;
            }
            Err(ApplyError::Unexplained(e)) => {
                let health = target.healthy().await;
                if health.is_err() && target.on_trouble == OnTrouble::GiveBack {
                    ledger.failed(&format!("store unavailable: {e:#}"), ErrorClass::Transient).await;
                    return Err(StoreUnavailable(e).into());
                }
                retry_later(projection, ledger, &e, &mut backoff).await;
                retrying = true;
                match health {
                    Ok(()) => unexplained_while_healthy += 1,
                    Err(down) => {
                        tracing::warn!(projection = projection.name(), error = %format!("{down:#}"), "the store is unhealthy");
                        unexplained_while_healthy = 0;
                    }
                }
                if unexplained_while_healthy < ATTEMPTS_WHILE_HEALTHY {
                    continue;
                }
                unexplained_while_healthy = 0;
                match alone(target, &events, checkpoint).await? {
                    Alone::Refused(event_id, reason) => (event_id, reason),
                    // Each event is applied now: so is the batch, but for its checkpoint.
                    Alone::AllApplied => {
                        ledger.recovered().await;
                        return Ok(false);
                    }
                    Alone::StoreTrouble if target.on_trouble == OnTrouble::GiveBack => {
                        return Err(StoreUnavailable(anyhow::anyhow!(
                            "the store failed while events were applied one by one"
                        ))
                        .into());
                    }
                    Alone::StoreTrouble => continue,
                }
            }
        };
        ledger.failed(&reason, ErrorClass::Deterministic).await;
        let Some(stream) = events.iter().find(|e| e.envelope.event_id == event_id).map(|e| StreamKey::of(&e.envelope))
        else {
            anyhow::bail!("projection {} named a poison event not in the batch", projection.name());
        };
        parked.insert(stream);
        // The poison event and everything after it in its stream wait together.
        let mut blocked = false;
        let mut kept = Vec::with_capacity(events.len());
        for event in events {
            if StreamKey::of(&event.envelope) == stream && (blocked || event.envelope.event_id == event_id) {
                blocked = true;
                let why = if event.envelope.event_id == event_id {
                    reason.clone()
                } else {
                    "an earlier event of this stream is parked".to_owned()
                };
                let stored = event.as_stored();
                let raw = serde_json::to_vec(&*stored)?;
                ledger.park(projection.name(), &stored, &raw, &why).await?;
            } else {
                kept.push(event);
            }
        }
        events = kept;
    }
    Ok(false)
}

/// Logs and records a failure, then waits before the next attempt.
async fn retry_later(
    projection: &dyn Projection,
    ledger: &dyn Ledger,
    e: &anyhow::Error,
    backoff: &mut (impl Iterator<Item = Duration> + Send),
) {
    let retry_in = backoff.next().unwrap_or(Duration::from_secs(5));
    tracing::warn!(projection = projection.name(), error = %format!("{e:#}"), ?retry_in, "apply failed");
    ledger.failed(&format!("{e:#}"), ErrorClass::Transient).await;
    tokio::time::sleep(retry_in).await;
}

/// What applying a batch's events one by one found.
enum Alone {
    /// This event failed every time on its own while the store answered: park it.
    Refused(Uuid, String),
    /// Every event applied on its own.
    AllApplied,
    /// The store went away or reported trouble of its own: back to plain retries.
    StoreTrouble,
}

/// Applies `events` one by one, in order, without recording a checkpoint (every store
/// ignores what it already holds, so the batch applied again later changes nothing).
async fn alone(target: Target<'_>, events: &[Event], checkpoint: &Checkpoint) -> anyhow::Result<Alone> {
    let unrecorded = Checkpoint { positions: Default::default(), ..checkpoint.clone() };
    for event in events {
        let mut last = None;
        for attempt in 1..=ATTEMPTS_ALONE {
            match target.attempt(std::slice::from_ref(event), &unrecorded).await {
                Ok(()) => {
                    last = None;
                    break;
                }
                Err(ApplyError::Poison { event_id, reason }) => return Ok(Alone::Refused(event_id, reason)),
                Err(ApplyError::Transient(_)) => return Ok(Alone::StoreTrouble),
                Err(ApplyError::Unexplained(e)) => {
                    last = Some(format!("{e:#}"));
                    tokio::time::sleep(target.pace * attempt).await;
                }
            }
        }
        let Some(error) = last else { continue };
        if target.healthy().await.is_err() {
            return Ok(Alone::StoreTrouble);
        }
        return Ok(Alone::Refused(
            event.envelope.event_id,
            format!("refused {ATTEMPTS_ALONE} times on its own while the store answered its health probe: {error}"),
        ));
    }
    Ok(Alone::AllApplied)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Mutex;

    use super::*;
    use crate::event::test_event;
    use crate::projection::Held;

    /// How the fake store answers a batch holding the refused event.
    #[derive(Clone, Copy)]
    enum Refusal {
        Poison,
        Unexplained,
        Transient,
    }

    /// A store that refuses every batch holding `refused`, and records what it applied.
    struct Fake {
        refused: Uuid,
        refusal: Refusal,
        healthy: bool,
        applied: Mutex<Vec<Uuid>>,
    }

    impl Fake {
        fn new(refused: Uuid, refusal: Refusal, healthy: bool) -> Self {
            Self { refused, refusal, healthy, applied: Mutex::default() }
        }

        fn applied(&self) -> Vec<Uuid> {
            self.applied.lock().unwrap().clone()
        }
    }

    #[async_trait::async_trait]
    impl Projection for Fake {
        fn name(&self) -> &'static str {
            "fake"
        }

        async fn apply(&self, events: &[Event], _: &Checkpoint) -> Result<(), ApplyError> {
            if events.iter().any(|e| e.envelope.event_id == self.refused) {
                return Err(match self.refusal {
                    Refusal::Poison => ApplyError::Poison { event_id: self.refused, reason: "no such case".into() },
                    Refusal::Unexplained => ApplyError::Unexplained(anyhow::anyhow!("something went wrong")),
                    Refusal::Transient => ApplyError::Transient(anyhow::anyhow!("connection reset")),
                });
            }
            self.applied.lock().unwrap().extend(events.iter().map(|e| e.envelope.event_id));
            Ok(())
        }

        async fn held(&self, _: Uuid) -> anyhow::Result<Vec<Held>> {
            Ok(Vec::new())
        }

        async fn healthy(&self) -> anyhow::Result<()> {
            anyhow::ensure!(self.healthy, "the store is away");
            Ok(())
        }
    }

    /// What the policy recorded.
    #[derive(Default)]
    struct Book {
        failures: Mutex<Vec<(String, &'static str)>>,
        recoveries: Mutex<usize>,
        parked: Mutex<Vec<(Uuid, String)>>,
    }

    #[async_trait::async_trait]
    impl Ledger for Book {
        async fn failed(&self, error: &str, class: ErrorClass) {
            let class = match class {
                ErrorClass::Transient => "transient",
                ErrorClass::Deterministic => "deterministic",
            };
            self.failures.lock().unwrap().push((error.to_owned(), class));
        }

        async fn recovered(&self) {
            *self.recoveries.lock().unwrap() += 1;
        }

        async fn park(&self, _: &str, event: &events::EventEnvelope, _: &[u8], why: &str) -> anyhow::Result<()> {
            self.parked.lock().unwrap().push((event.event_id, why.to_owned()));
            Ok(())
        }
    }

    /// Stream A's versions 1-3 with stream B's version 1 between them.
    fn batch() -> Vec<Event> {
        let payload =
            serde_json::json!({ "name": "Support", "description": null, "created_at": "2026-11-20T09:00:00Z" });
        let a: Vec<Event> = (1..=3).map(|v| test_event("team", v, "TeamCreated", payload.clone())).collect();
        let mut b = test_event("team", 1, "TeamCreated", payload);
        b.envelope.stream_id = Uuid::from_u128(0xb);
        b.envelope.event_id = Uuid::from_u128(0xb1);
        let mut events = a;
        events.insert(1, b);
        events
    }

    fn ids(events: &[Event]) -> Vec<Uuid> {
        events.iter().map(|e| e.envelope.event_id).collect()
    }

    fn quick(projection: &dyn Projection, on_trouble: OnTrouble) -> Target<'_> {
        Target { projection, deadline: Duration::from_secs(5), on_trouble, pace: Duration::from_millis(1) }
    }

    #[tokio::test]
    async fn a_poison_event_is_parked_with_the_rest_of_its_stream_and_the_other_streams_applied() {
        let events = batch();
        let [a1, b1, a2, a3] = ids(&events)[..] else { panic!("four events") };
        let store = Fake::new(a2, Refusal::Poison, true);
        let (book, mut parked) = (Book::default(), HashSet::new());
        let applied =
            apply_or_park(quick(&store, OnTrouble::GiveBack), &book, events, &Checkpoint::default(), &mut parked)
                .await
                .unwrap();
        assert!(applied, "what was left was applied with the checkpoint");
        assert_eq!(store.applied(), vec![a1, b1]);
        let kept: Vec<Uuid> = book.parked.lock().unwrap().iter().map(|(id, _)| *id).collect();
        assert_eq!(kept, vec![a2, a3], "the poison event and the later events of its stream");
        assert_eq!(book.parked.lock().unwrap()[1].1, "an earlier event of this stream is parked");
        assert_eq!(parked.len(), 1);
        assert_eq!(book.failures.lock().unwrap().clone(), vec![("no such case".to_owned(), "deterministic")]);
    }

    #[tokio::test]
    async fn an_unexplained_failure_repeating_while_the_store_answers_is_found_and_parked_alone() {
        let events = batch();
        let [a1, b1, a2, a3] = ids(&events)[..] else { panic!("four events") };
        let store = Fake::new(a2, Refusal::Unexplained, true);
        let (book, mut parked) = (Book::default(), HashSet::new());
        apply_or_park(quick(&store, OnTrouble::Wait), &book, events, &Checkpoint::default(), &mut parked)
            .await
            .unwrap();
        // One by one, a1 and b1 went in before a2 was found (and again with the rest of the
        // batch: every store ignores what it holds); a3 waits behind a2.
        assert_eq!(store.applied(), vec![a1, b1, a1, b1]);
        let kept = book.parked.lock().unwrap().clone();
        assert_eq!(kept.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![a2, a3]);
        assert!(kept[0].1.contains("health probe") && kept[0].1.contains("something went wrong"), "{}", kept[0].1);
        let failures = book.failures.lock().unwrap().clone();
        let retried = failures.iter().filter(|(_, class)| *class == "transient").count();
        assert_eq!(retried as u32, ATTEMPTS_WHILE_HEALTHY, "{failures:?}");
        assert_eq!(failures.last().map(|f| f.1), Some("deterministic"));
    }

    #[tokio::test]
    async fn while_the_store_is_away_nothing_is_parked_however_long_it_fails() {
        let events = batch();
        let a2 = events[2].envelope.event_id;
        let store = Fake::new(a2, Refusal::Unexplained, false);
        let (book, mut parked) = (Book::default(), HashSet::new());
        let (target, checkpoint) = (quick(&store, OnTrouble::Wait), Checkpoint::default());
        let run = apply_or_park(target, &book, events, &checkpoint, &mut parked);
        assert!(tokio::time::timeout(Duration::from_millis(500), run).await.is_err(), "it keeps retrying");
        assert!(book.parked.lock().unwrap().is_empty());
        assert!(parked.is_empty());
        assert!(book.failures.lock().unwrap().len() > ATTEMPTS_WHILE_HEALTHY as usize);
    }

    #[tokio::test]
    async fn a_worker_holding_its_lock_is_given_the_stores_trouble_back_at_once() {
        let events = batch();
        let a2 = events[2].envelope.event_id;
        for (refusal, healthy) in [(Refusal::Transient, true), (Refusal::Unexplained, false)] {
            let store = Fake::new(a2, refusal, healthy);
            let (book, mut parked) = (Book::default(), HashSet::new());
            let target = quick(&store, OnTrouble::GiveBack);
            let given_back = apply_or_park(target, &book, batch(), &Checkpoint::default(), &mut parked).await;
            assert!(given_back.unwrap_err().is::<StoreUnavailable>());
            assert!(store.applied().is_empty() && book.parked.lock().unwrap().is_empty());
            assert_eq!(book.failures.lock().unwrap().len(), 1);
        }
    }

    #[tokio::test]
    async fn a_batch_applied_after_retries_is_recorded_as_recovered() {
        // Refused once (a transient failure), then the refused id is never seen again.
        struct Flaky(Mutex<u32>);
        #[async_trait::async_trait]
        impl Projection for Flaky {
            fn name(&self) -> &'static str {
                "flaky"
            }
            async fn apply(&self, _: &[Event], _: &Checkpoint) -> Result<(), ApplyError> {
                let mut calls = self.0.lock().unwrap();
                *calls += 1;
                if *calls == 1 {
                    return Err(ApplyError::Transient(anyhow::anyhow!("busy")));
                }
                Ok(())
            }
            async fn held(&self, _: Uuid) -> anyhow::Result<Vec<Held>> {
                Ok(Vec::new())
            }
            async fn healthy(&self) -> anyhow::Result<()> {
                Ok(())
            }
        }
        let store = Flaky(Mutex::new(0));
        let (book, mut parked) = (Book::default(), HashSet::new());
        let target = quick(&store, OnTrouble::Wait);
        assert!(apply_or_park(target, &book, batch(), &Checkpoint::default(), &mut parked).await.unwrap());
        assert_eq!(*book.recoveries.lock().unwrap(), 1);
        assert_eq!(*store.0.lock().unwrap(), 2);
    }
}
